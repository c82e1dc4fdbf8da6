"""Command-line options shared by several ``cgkit`` commands, registered in one place.

Each ``add_*`` function adds one group of options to an ``argparse`` parser, with units and
defaults in the help text, so that commands cannot drift apart in names or defaults.
"""
from __future__ import annotations

import argparse

__all__ = ["add_output_options", "add_potential_option", "add_seed_option", "HelpFormatter", "RawHelpFormatter",
           "POTENTIAL_HELP"]

POTENTIAL_HELP = ("saved cgkit model file, a built-in (cgkit:sw, cgkit:lj:sigma=3.4,epsilon=0.0104,"
                  "cutoff=8.5, ...), or an ASE calculator with keyword arguments (ase:EMT, "
                  "ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True)")


class _DefaultsMixin:
    """Appends ``(default: X)`` to every option that has a meaningful default and does not
    state it already (no "(default: None)" on required options or flags)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower():
            return text
        if action.required or action.default in (None, argparse.SUPPRESS, False, [], ""):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                               argparse._HelpAction, argparse._VersionAction)):
            return text
        if not action.option_strings:
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(d) for d in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


class HelpFormatter(_DefaultsMixin, argparse.HelpFormatter):
    """Wrapped descriptions; every default shown (see ``_DefaultsMixin``)."""


class RawHelpFormatter(_DefaultsMixin, argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written (examples, tables); every default shown."""


def add_output_options(parser, default: str | None = None, *, what: str = "output folder"):
    """``--out`` (required when ``default`` is None) and ``--overwrite``; use with
    :class:`cgkit.outputs.OutputFolder`."""
    if default is None:
        parser.add_argument("--out", required=True, help=what)
    else:
        parser.add_argument("--out", default=default, help=f"{what} (default: {default})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier cgkit run in --out (otherwise a "
                             "non-empty --out is refused); other files there are kept")


def add_potential_option(parser, *, required: bool = True, help: str | None = None):
    """``--potential`` in the one spec syntax every command accepts
    (resolved by :func:`cgkit.io_potential.load_model`)."""
    parser.add_argument("--potential", required=required, help=help or POTENTIAL_HELP)


def add_seed_option(parser, default: int = 0):
    """``--seed``: every random choice of the command derives from it."""
    parser.add_argument("--seed", type=int, default=default,
                        help=f"random seed; the same seed gives the same numbers (default: {default})")
