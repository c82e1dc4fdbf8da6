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
        if action.required or action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS or action.default in ([], ""):
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


# ----------------------------------------------------------------------------- CG methods
#: CG MD and update settings shared by ``cgkit ibi``, ``cgkit relent`` and ``cgkit fm --bonded
#: ibi`` (the values of :data:`cgkit.forcematch.ibi.IBI_DEFAULTS`, kept here so that ``--help``
#: does not import torch; a test checks that the two agree). Friction in 1/ps on the command line.
CG_MD_DEFAULTS = {"md_steps": 5000, "equilibration": 1000, "timestep": 5.0, "friction_per_ps": 10.0,
                  "alpha": 1.0, "bins": 100}


def add_cg_reference_options(parser, *, required: bool = True, what: str = "mapped reference CG trajectory"):
    """``--cg-trajectory``, ``--cg-topology`` (PSF from ``cgkit map``) and ``--exclude``."""
    parser.add_argument("--cg-trajectory", required=required, help=f"{what} (trr or extxyz, from `cgkit map`)")
    parser.add_argument("--cg-topology", required=required,
                        help="CG topology PSF written by `cgkit map` (bonds, angles, dihedrals)")
    parser.add_argument("--exclude", type=int, default=2,
                        help="exclude non-bonded pairs up to this many bonds apart (2: 1-2 and 1-3)")


def add_cg_md_options(parser, *, aliases: dict | None = None):
    """CG MD of every iteration: ``--md-steps``, ``--equilibration``, ``--timestep`` (fs),
    ``--friction`` (1/ps). ``aliases``: {old option: dest} accepted but hidden from ``--help``."""
    d = CG_MD_DEFAULTS
    parser.add_argument("--md-steps", type=int, default=d["md_steps"], help="CG MD sampling steps per iteration")
    parser.add_argument("--equilibration", type=int, default=d["equilibration"],
                        help="CG MD equilibration steps per iteration")
    parser.add_argument("--timestep", type=float, default=d["timestep"], help="CG MD time step, fs")
    parser.add_argument("--friction", type=float, default=d["friction_per_ps"], help="Langevin friction, 1/ps")
    for opt, dest in (aliases or {}).items():
        parser.add_argument(opt, dest=dest, type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_iteration_options(parser, *, iterations: int, iterations_help: str, kinds_verb: str, alpha: float,
                          alpha_help: str, bins_help: str = "histogram bins per distribution",
                          kinds: bool = True, iterations_option: str = "--iterations"):
    """Iteration settings: ``--iterations`` (or ``iterations_option``), ``--kinds``, ``--alpha``,
    ``--bins``, ``--pressure`` (GPa)."""
    parser.add_argument(iterations_option, type=int, default=iterations, help=iterations_help)
    if kinds:
        parser.add_argument("--kinds", default="pair",
                            help=f"comma-separated interactions to {kinds_verb}: pair,bond,angle,dihedral")
        parser.add_argument("--pressure", type=float, default=None,
                            help="target pressure, GPa (enables the pressure correction)")
    parser.add_argument("--alpha", type=float, default=alpha, help=alpha_help)
    parser.add_argument("--bins", type=int, default=CG_MD_DEFAULTS["bins"], help=bins_help)


def add_grid_option(parser):
    """``--grid "KIND T1-T2[-..]=min:max[:spacing]"`` (repeatable; read with :func:`parse_grids`)."""
    parser.add_argument("--grid", action="append", default=[], metavar="LABEL=MIN:MAX[:SPACING]",
                        help='grid of one interaction, e.g. "pair A-B=3:10:0.25" (Å), "angle A-B-A=60:180:5" '
                             '(deg) or "dihedral A-B-B-A=20" (spacing, deg); "=none" drops it; repeatable')


def parse_grids(items) -> dict:
    """``--grid`` values → {label: (min, max[, spacing]) | spacing | None} (labels normalised,
    e.g. "pair  A-B" → "pair A-B"); errors name the offending item."""
    from .errors import InputError
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f'--grid expects "KIND T1-T2=min:max[:spacing]", got "{item}"')
        label, spec = item.split("=", 1)
        parts = label.split()
        if len(parts) != 2 or parts[0] not in ("pair", "bond", "angle", "dihedral"):
            raise InputError(f'--grid "{item}": the label must be "KIND T1-T2[-..]" with KIND pair, bond, '
                             "angle or dihedral")
        label = " ".join(parts)
        if spec.strip().lower() == "none":
            out[label] = None
            continue
        try:
            vals = [float(v) for v in spec.split(":")]
        except ValueError as exc:
            raise InputError(f'--grid "{item}": min:max[:spacing] must be numbers') from exc
        if parts[0] == "dihedral" and len(vals) == 1:
            out[label] = vals[0]
        elif len(vals) not in (2, 3):
            raise InputError(f'--grid "{item}": give min:max or min:max:spacing')
        else:
            out[label] = tuple(vals)
    return out
