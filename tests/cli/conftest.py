"""Shared set-up of the CLI tests: clean reference results and the fitted CG potential."""
from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cgkit.jsonutil import loads_strict

from . import corpus, data


@dataclass
class CliResult:
    argv: list
    rc: int
    out: str
    err: str
    warnings: str
    unraisable: str = ""      # "Exception ignored in ..." tracebacks Python prints at run time


    @property
    def text(self) -> str:
        return self.out + "\n" + self.err + "\n" + self.warnings

    def describe(self) -> str:
        err = "\n    ".join(self.err.strip().splitlines()[-6:])
        return f"`cgkit {' '.join(self.argv)}` exited {self.rc}\n  stderr (last lines):\n    {err}"


def run_cli(argv: list[str]) -> CliResult:
    """``cgkit.cli.main(argv)`` in-process; stdout/stderr captured, Python warnings recorded."""
    import gc
    import sys
    from cgkit.cli import main
    out, err = io.StringIO(), io.StringIO()
    unraisable = []
    hook = sys.unraisablehook
    # a user's terminal shows these as "Exception ignored in ...: Traceback ..." (e.g. a reader's
    # __del__ failing after a refused file); under pytest they would only become a warning
    sys.unraisablehook = lambda u: unraisable.append(
        f"Exception ignored in {u.object!r}: {type(u.exc_value).__name__}: {u.exc_value}")
    try:
        with warnings.catch_warnings(record=True) as rec, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as exc:      # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
            gc.collect()
    finally:
        sys.unraisablehook = hook
    w = "\n".join(f"{r.category.__name__}: {r.message}" for r in rec)
    return CliResult([str(a) for a in argv], rc, out.getvalue(), err.getvalue(), w, "\n".join(unraisable))


# ----------------------------------------------------------------------------- output scans
TEXT_SUFFIXES = {".dat", ".csv", ".xvg", ".txt", ".table", ".yaml", ".yml", ".md", ".extxyz", ".xyz", ".pdb",
                 ".psf", ".in", ".data", ".html"}
BAD_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?(nan|inf|infinity)(?![A-Za-z_])", re.IGNORECASE)


def scan_outputs(folder: Path) -> list[str]:
    """Problems in a finished output folder: non-strict JSON, nan/inf in text data files,
    non-finite numbers in trajectories / npz archives."""
    problems = []
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = f.relative_to(folder)
        suf = f.suffix.lower()
        name = f.name.upper()
        try:
            if suf == ".json":
                loads_strict(f.read_text())
            elif suf in TEXT_SUFFIXES or name in ("FORCE_CONSTANTS",):
                for k, line in enumerate(f.read_text(errors="replace").splitlines()):
                    m = BAD_NUMBER.search(line)
                    if m and not line.lstrip().startswith(("#", "@", "REMARK", "!")):
                        problems.append(f"{rel}:{k + 1}: '{m.group(0)}' in: {line.strip()[:120]}")
                        break
            elif suf == ".npz":
                with np.load(f, allow_pickle=False) as z:
                    for key in z.files:
                        a = z[key]
                        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                            problems.append(f"{rel}: array '{key}' holds NaN/inf")
            elif suf in (".trr", ".dcd", ".xtc"):
                problems += _scan_trajectory(f, folder)
        except ValueError as exc:
            problems.append(f"{rel}: {exc}")
    return problems


def _scan_trajectory(f: Path, folder: Path) -> list[str]:
    import MDAnalysis as mda
    psf = [p for p in folder.glob("*.psf")] + [p for p in folder.glob("*.pdb")]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if psf:
                u = mda.Universe(str(psf[0]), str(f))
            else:
                return []
    except Exception as exc:     # noqa: BLE001 - report, do not hide
        return [f"{f.name}: unreadable by MDAnalysis ({type(exc).__name__}: {exc})"]
    probs = []
    for ts in u.trajectory:
        if not np.all(np.isfinite(ts.positions)):
            probs.append(f"{f.name}: frame {ts.frame} has non-finite positions")
        if ts.has_forces and not np.all(np.isfinite(ts.forces)):
            probs.append(f"{f.name}: frame {ts.frame} has non-finite forces")
    return probs


def leftovers(out: Path) -> list[str]:
    """Files a refused run must not leave: the --out folder, staging folders beside it."""
    found = []
    if out.exists():
        found.append(f"{out} exists ({sorted(str(p.relative_to(out)) for p in out.rglob('*'))[:8]})")
    found += [str(p) for p in out.parent.glob(f".{out.name}.partial-*")]
    return found


def assert_one_line_error(res: CliResult, command: str):
    lines = [l for l in res.err.splitlines() if l.strip()]
    errs = [l for l in lines if l.startswith(f"cgkit {command}: error: ")]
    assert "Traceback" not in res.err, res.describe()
    assert not res.unraisable, ("a traceback reaches the terminal after the error message "
                                f"(Python prints it as 'Exception ignored in ...'): {res.unraisable}\n  "
                                + res.describe())
    assert len(errs) == 1 and lines[-1] == errs[0], \
        f"no single one-line 'cgkit {command}: error: ...' as the last stderr line\n  " + res.describe()


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def cli_refs(tmp_path_factory):
    """Clean reference results the fuzz checks compare with (computed once):

    * ``clean_map_positions``: bead positions of the clean atomistic frames mapped with the
      public Mapping API (not the CLI);
    * ``phonons``: summary of ``cgkit phonons`` on clean primitive Si, 4×4×4 supercell;
    * ``elastic_cu`` / ``elastic_si``: summaries of ``cgkit elastic`` on the clean cubic cells.
    """
    from cgkit.mapping import Mapping
    d = tmp_path_factory.mktemp("cli_refs")
    gro, trr = data.write_aa_hexane(d, corpus.N_AA_FRAMES, gro="conf.gro", trr="traj.trr")
    P, _, B = data.aa_frames(gro, trr)
    m = Mapping.from_yaml(corpus.HEXMAP, str(gro))
    clean = np.array([m.map_positions(P[k], np.diag(B[k][:3]), True) for k in range(len(P))])
    refs = {"clean_map_positions": clean}
    for key, argv in (
            ("phonons", corpus._phonons_argv("{d}/Si.extxyz", "cgkit:sw", ("4", "4", "4"))),
            ("elastic_cu", corpus._elastic_argv()),
            ("elastic_si", corpus._elastic_argv("{d}/Si.extxyz", "cgkit:sw"))):
        kd = d / key
        kd.mkdir()
        if key == "elastic_cu":
            corpus.write_structure(kd / "Cu.extxyz", "clean", corpus._cu4())
        elif key == "elastic_si":
            corpus.write_structure(kd / "Si.extxyz", "clean", corpus._si8())
        else:
            corpus.write_structure(kd / "Si.extxyz", "clean", corpus._si2())
        res = run_cli([a.replace("{d}", str(kd)) for a in argv])
        refs[key] = loads_strict((kd / "out" / "summary.json").read_text()) if res.rc == 0 else None
        refs[key + "_result"] = res
    return refs


@pytest.fixture(scope="session")
def cg_potential(tmp_path_factory):
    """cg_potential.pt fitted by ``cgkit fm`` on the clean CG hexane subset (for md cases)."""
    d = tmp_path_factory.mktemp("cg_potential")
    return corpus.fit_potential(d)
