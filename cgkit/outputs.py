"""Output folders that are written whole or not at all.

Every command writes its files into :class:`OutputFolder`::

    with OutputFolder(args.out, overwrite=args.overwrite, command="md") as out:
        ...                        # write into ``out`` (a staging folder beside the target)
    print(f"wrote {args.out}/")    # only reached on success

* **Checked first.** Entering creates a hidden staging folder ``.<name>.partial-<pid>-<random>``
  in the target's parent (so the final move is a rename on the same file system); an
  unwritable or uncreatable location is an :class:`~cgkit.errors.InputError` before any work.
* **Refuses to mix.** A non-empty target is refused unless ``overwrite=True``; then only the
  files a previous cgkit run wrote there (listed in its ``.cgkit-files.json`` manifest) are
  removed, files of the user's own are kept, and a folder without a manifest is refused.
* **Atomic.** On success the staging folder is renamed into place (an empty or absent target)
  or its entries are moved in; on any exception (including Ctrl-C) it is deleted, so a failed
  or interrupted run leaves neither a partial folder nor half-written files such as
  ``normal_equations.npz`` that a later ``--add`` could take.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from .errors import InputError
from .jsonutil import loads_strict, write_json

__all__ = ["OutputFolder", "MANIFEST", "check_writable_file"]

#: file listing what a cgkit run wrote into its output folder
MANIFEST = ".cgkit-files.json"


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def check_writable_file(path) -> Path:
    """Refuse early (InputError) when ``path``'s folder cannot be created or written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {parent} for {path.name}: {exc.strerror or exc}; "
                         "choose another output location") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {parent}: permission denied; choose another output location")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name")
    return path


class OutputFolder:
    """Context manager for a command's output folder (see the module docstring).

    Parameters
    ----------
    path : target folder.
    overwrite : replace the files of a previous cgkit run in ``path``.
    command : name recorded in the manifest (e.g. ``"md"``).
    """

    def __init__(self, path, *, overwrite: bool = False, command: str = "cgkit"):
        self.path = Path(path)
        self.overwrite = bool(overwrite)
        self.command = command
        self.staging: Path | None = None
        self._old_files: list[str] = []

    # -- checks -----------------------------------------------------------------------
    def _check_target(self):
        p = self.path
        if p.exists() and not p.is_dir():
            raise InputError(f"--out {p} exists and is not a folder; choose another --out")
        if p.is_dir() and any(p.iterdir()):
            manifest = p / MANIFEST
            if not self.overwrite:
                raise InputError(f"--out {p} exists and is not empty; choose a new folder or pass "
                                 "--overwrite to replace the files of the earlier cgkit run there")
            if not manifest.is_file():
                raise InputError(f"--out {p} holds files that cgkit did not write (no {MANIFEST}); "
                                 "--overwrite only replaces the output of an earlier cgkit run: "
                                 "choose another --out or empty the folder yourself")
            try:
                self._old_files = list(loads_strict(manifest.read_text())["files"])
            except (ValueError, KeyError, TypeError, OSError) as exc:
                raise InputError(f"{manifest} is unreadable ({exc}); empty {p} yourself or choose "
                                 "another --out") from exc

    def __enter__(self) -> Path:
        self._check_target()
        parent = self.path.parent if str(self.path.parent) else Path(".")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = parent / f".{self.path.name}.partial-{os.getpid()}-{secrets.token_hex(3)}"
            staging.mkdir()
        except OSError as exc:
            raise InputError(f"cannot create the output folder {self.path}: {exc.strerror or exc}; "
                             "choose a location you can write to") from exc
        self.staging = staging
        return staging

    def __exit__(self, exc_type, exc, tb):
        staging, self.staging = self.staging, None
        if exc_type is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return False
        try:
            self._commit(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return False

    # -- commit -----------------------------------------------------------------------
    def _commit(self, staging: Path):
        files = _listing(staging)
        write_json(staging / MANIFEST, {"command": self.command, "files": files})
        target = self.path
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if not target.exists():
            os.replace(staging, target)
            return
        # overwrite: remove what the earlier run wrote, then move the new entries in
        for rel in self._old_files + [MANIFEST]:
            f = target / rel
            if f.is_file() or f.is_symlink():
                f.unlink()
        for d in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()  # empty sub-folders left behind by the removal
            except OSError:
                pass
        for entry in staging.iterdir():
            dest = target / entry.name
            if dest.is_dir() and entry.is_dir():
                shutil.copytree(entry, dest, dirs_exist_ok=True)
            else:
                os.replace(entry, dest)
        shutil.rmtree(staging, ignore_errors=True)
