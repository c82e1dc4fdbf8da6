"""The ``cgkit`` command line: ``cgkit <command> --help`` explains every option with units.

Each command lives in its own module ``cgkit/commands/<name>.py`` exposing
``register(subparsers)``; that function adds a sub-parser and sets ``func`` (called with
the parsed arguments, returning an exit code). Heavy imports happen inside ``func``.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .errors import CgkitError


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, commands

    parser = argparse.ArgumentParser(
        prog="cgkit",
        description="Multiscale simulation of matter: equivariant potentials, coarse-graining, "
                    "force matching, phonons, elastic constants, polymer analysis. "
                    "Units: eV, Å, fs, amu, GPa, THz.")
    parser.add_argument("--version", action="version", version=f"cgkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        module = importlib.import_module(f"{commands.__name__}.{mod}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CgkitError as exc:
        print(f"cgkit {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
