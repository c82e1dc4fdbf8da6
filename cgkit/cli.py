"""The ``cgkit`` command line: ``cgkit <command> --help`` explains every option with units.

Each command lives in its own module ``cgkit/commands/<name>.py`` exposing
``register(subparsers)``; that function adds a sub-parser and sets ``func`` (called with
the parsed arguments, returning an exit code). Heavy imports happen inside ``func``.
"""
from __future__ import annotations

import argparse
import importlib
import os
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
    _use_formatter(parser)
    return parser


def _use_formatter(parser: argparse.ArgumentParser):
    """Every (sub-)parser shows its defaults (:class:`cgkit.options.HelpFormatter`)."""
    from .options import HelpFormatter, RawHelpFormatter
    raw = issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
    parser.formatter_class = RawHelpFormatter if raw else HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _use_formatter(child)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous_sigterm = _terminate_as_exception()
    restore = _one_line_warnings(args.command)
    try:
        return int(args.func(args) or 0)
    except CgkitError as exc:
        _print_error(f"cgkit {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _print_error(f"cgkit {args.command}: interrupted; no output was written")
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error of the command
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence, never a silent pass
        if os.environ.get("CGKIT_DEBUG"):
            raise
        if _is_external_calculation_failure(exc):
            # an ASE calculator (DFT, xTB, ...) that did not converge on this input: the input or
            # the calculator's settings must change, not cgkit
            _print_error(f"cgkit {args.command}: error: the ASE calculator failed on this input "
                         f"({type(exc).__name__}: {exc}); check that the calculator suits the structure "
                         "(e.g. a molecular method on a metal) and its convergence settings")
            return 1
        _print_error(f"cgkit {args.command}: internal error (a bug in cgkit, please report it with "
                     f"the command line; CGKIT_DEBUG=1 shows the traceback): "
                     f"{type(exc).__name__}: {exc}")
        return INTERNAL_ERROR
    finally:
        restore()
        if previous_sigterm is not None:
            import signal
            signal.signal(signal.SIGTERM, previous_sigterm)


def _one_line_warnings(command: str):
    """cgkit's own warnings (:class:`cgkit.errors.CgkitWarning`) print as one line naming the
    command, without Python's file:line prefix; other warnings keep the default format."""
    import warnings

    from .errors import CgkitWarning
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CgkitWarning):
            _print_error(f"cgkit {command}: warning: {message}")
        else:
            default(message, category, filename, lineno, file, line)
    warnings.showwarning = show

    def restore():
        if warnings.showwarning is show:
            warnings.showwarning = default
    return restore


def _terminate_as_exception():
    """SIGTERM (batch-system kills, ``kill PID``) raises KeyboardInterrupt like Ctrl-C, so that
    :class:`cgkit.outputs.OutputFolder` removes its staging folder and nothing partial stays."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a worker): leave the default
        return None


def _is_external_calculation_failure(exc) -> bool:
    """True for ASE's ``CalculationFailed`` (and its subclasses such as ``SCFError``), raised by a
    user's calculator, never by cgkit itself."""
    try:
        from ase.calculators.calculator import CalculationFailed
    except ImportError:  # pragma: no cover - ASE is a dependency
        return False
    return isinstance(exc, CalculationFailed)


#: exit code of an unexpected exception (a bug): distinct from 1, a refused input
INTERNAL_ERROR = 3


def _print_error(text: str):
    try:
        print(text, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
