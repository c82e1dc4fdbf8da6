"""``cgkit ibi``: iterative Boltzmann inversion of CG tables with CG MD in cgkit or LAMMPS.

Targets are the pair RDFs and bonded distributions of a mapped reference CG trajectory
(``cgkit map`` output: PSF + TRR/extxyz, periodic box). The start is the Boltzmann inverse of
the targets (the same inversion as ``cgkit fm --bonded``); every iteration runs Langevin CG MD
with the current tables (``--engine cgkit``, or ``--engine lammps`` on the exported tables) and
updates U ← U + α kT ln(P/P_target); optional pressure correction.
Prints "IBI iteration k/N" after every iteration. Writes ``summary.json`` (JS divergences per
iteration), ``cg_potential.pt`` (final tables, usable by ``cgkit md``), ``tables/`` and
``ibi_history.png`` into a new --out folder (written whole or not at all).
"""
from __future__ import annotations

from ..options import (add_cg_md_options, add_cg_reference_options, add_iteration_options, add_output_options,
                       add_seed_option)

_EPILOG = """example:
  cgkit ibi --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --temperature 300 --iterations 10 \\
            --kinds pair --md-steps 20000 --out ibi/

Defaults (α = 1, 5000 + 1000 steps of 5 fs, 10/ps, 100 bins) are those of `cgkit fm --bonded ibi`
and of cgkit.forcematch.IBI_DEFAULTS; use --alpha 0.2-0.5 for pair potentials that oscillate.
Units: Å, K, fs, 1/ps, GPa."""


def register(subparsers):
    from ..options import RawHelpFormatter
    p = subparsers.add_parser("ibi", help="iterative Boltzmann inversion with cgkit CG MD",
                              description=__doc__, epilog=_EPILOG, formatter_class=RawHelpFormatter)
    add_common_arguments(p, iterations_help="IBI iterations", kinds_verb="iterate", alpha=1.0,
                         alpha_help="update damping α in (0, 1]")
    add_seed_option(p)
    add_output_options(p, "ibi_out")
    p.set_defaults(func=_run)


def add_common_arguments(p, *, iterations_help: str, kinds_verb: str, alpha: float, alpha_help: str,
                         bins_help: str = "histogram bins per distribution") -> None:
    """Options shared by the iterative CG methods (``cgkit ibi``, ``cgkit relent``), all from
    :mod:`cgkit.options`: the mapped reference, the interactions, the iterations and the CG MD
    of every iteration (Å, K, fs, 1/ps, GPa)."""
    add_cg_reference_options(p)
    p.add_argument("--temperature", type=float, default=300.0, help="temperature of the reference, K")
    add_iteration_options(p, iterations=5, iterations_help=iterations_help, kinds_verb=kinds_verb, alpha=alpha,
                          alpha_help=alpha_help, bins_help=bins_help)
    p.add_argument("--pair-cutoff", type=float, default=10.0, help="Å (at most half the box)")
    add_cg_md_options(p)
    p.add_argument("--engine", choices=("cgkit", "lammps"), default="cgkit",
                   help="CG MD engine of every iteration: cgkit (cgkit md) or lammps (the `lmp` binary on "
                        "the tables exported as by cgkit.export.lammps; fix langevin + nve)")


def parse_kinds(text: str) -> tuple:
    from ..errors import InputError
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("pair", "bond", "angle", "dihedral")]
    if bad or not kinds:
        raise InputError(f"--kinds: {bad or 'nothing'} — give a comma-separated subset of pair,bond,angle,dihedral")
    return kinds


def check_common(args) -> None:
    """Cheap checks before any work (refused runs fail fast)."""
    from ..errors import InputError
    if not (0 < args.alpha <= 1):
        raise InputError(f"--alpha must be in (0, 1], got {args.alpha}")
    for opt, v in (("--iterations", args.iterations), ("--md-steps", args.md_steps), ("--bins", args.bins)):
        if v < 1:
            raise InputError(f"{opt} must be ≥ 1, got {v}")
    if args.equilibration < 0 or not (args.timestep > 0) or not (args.friction > 0):
        raise InputError("need --equilibration ≥ 0, --timestep > 0 fs and --friction > 0 /ps")
    from ..forcematch.ibi import check_engine
    check_engine(getattr(args, "engine", "cgkit"))


def read_reference(args, needed_by: str):
    """The shared start of ``cgkit ibi``/``relent``/``imc``: options checked, the mapped reference
    read (``read_cg_reference``) and the sampling engine checked against its topology. Returns
    ``(kinds, (type_names, species, masses, topology, positions, boxes))``."""
    from ..forcematch.ibi import check_engine
    from ..trajectory import read_cg_reference
    kinds = parse_kinds(args.kinds)
    check_common(args)
    ref = read_cg_reference(args.cg_topology, args.cg_trajectory, exclude=args.exclude, needed_by=needed_by)
    check_engine(args.engine, ref[3])
    return kinds, ref


def _run(args) -> int:
    from ..forcematch.ibi import IterativeBoltzmannInversion
    from ..forcematch.tabulated import write_table_files
    from ..outputs import OutputFolder

    kinds, (tn, species, masses, top, pos, boxes) = read_reference(args, "IBI")
    with OutputFolder(args.out, overwrite=args.overwrite, command="ibi") as out:
        ibi = IterativeBoltzmannInversion(
            tn, species, top, masses, pos, boxes, pos[-1], boxes[-1],
            temperature=args.temperature, pair_cutoff=args.pair_cutoff, bins=args.bins, kinds=kinds,
            alpha=args.alpha, md_steps=args.md_steps, equilibration=args.equilibration,
            timestep=args.timestep, friction=args.friction / 1000.0, pressure=args.pressure,
            seed=args.seed, progress=True, engine=args.engine)
        ibi.run(args.iterations)
        ibi.potential.save(out / "cg_potential.pt", metadata={"masses": masses.tolist()})
        write_table_files(ibi.potential.tables, out / "tables")
        ibi.plot(out)
        ibi.to_json(out / "summary.json")
    print(f"wrote {args.out}/ (summary.json, cg_potential.pt, tables/)")
    return 0
