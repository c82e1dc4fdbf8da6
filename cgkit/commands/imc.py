"""``cgkit imc``: inverse Monte Carlo (Lyubartsev-Laaksonen) of CG tables with CG MD in cgkit or
LAMMPS.

Targets are the pair RDFs and bonded distributions of a mapped reference CG trajectory
(``cgkit map`` output: PSF + TRR/extxyz, periodic box); the start is their Boltzmann inverse (as
``cgkit ibi``). Every iteration runs Langevin CG MD with the current tables (``--engine cgkit``
or ``--engine lammps``), histograms every stored frame, and takes the Newton step
ΔU = -kT K⁻¹ (S* - ⟨S⟩) from the covariance K of the bin counts S (all bins of all iterated
interactions coupled), Tikhonov-regularised as VOTCA's csg_imc_solve, damped by α and capped by
--max-step. Needs more CG frames per iteration than IBI (several per coupled bin). Prints
"IMC iteration k/N" after every iteration. Writes ``summary.json``, ``cg_potential.pt`` (usable
by ``cgkit md``), ``tables/`` and ``imc_history.png`` into a new --out folder (whole or not at all).
"""
from __future__ import annotations

from ..options import add_output_options, add_seed_option

_EPILOG = """example:
  cgkit imc --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --temperature 300 --iterations 5 \\
            --kinds pair --md-steps 20000 --sample-every 25 --out imc/

Units: Å, K, fs, 1/ps, GPa; --max-step in kT."""


def register(subparsers):
    from ..options import RawHelpFormatter
    from .ibi import add_common_arguments
    p = subparsers.add_parser("imc", help="inverse Monte Carlo (Newton steps on distributions) with CG MD",
                              description=__doc__, epilog=_EPILOG, formatter_class=RawHelpFormatter)
    add_common_arguments(p, iterations_help="IMC iterations", kinds_verb="iterate", alpha=1.0,
                         alpha_help="Newton step damping α in (0, 1]")
    p.add_argument("--sample-every", type=int, default=25,
                   help="CG MD steps between the frames whose bin counts give the covariance")
    p.add_argument("--regularization", type=float, default=0.1,
                   help="Tikhonov parameter relative to the largest eigenvalue of the count covariance")
    p.add_argument("--max-step", type=float, default=1.0, help="largest |ΔU| per bin and iteration, kT")
    add_seed_option(p)
    add_output_options(p, "imc_out")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..errors import InputError
    from ..forcematch.imc import InverseMonteCarlo
    from ..forcematch.tabulated import write_table_files
    from ..outputs import OutputFolder
    from .ibi import read_reference

    if args.sample_every < 1 or args.sample_every > args.md_steps:
        raise InputError(f"--sample-every must be in [1, --md-steps], got {args.sample_every}")
    if not (args.regularization > 0) or not (args.max_step > 0):
        raise InputError("--regularization and --max-step must be > 0")
    kinds, (tn, species, masses, top, pos, boxes) = read_reference(args, "IMC")
    with OutputFolder(args.out, overwrite=args.overwrite, command="imc") as out:
        imc = InverseMonteCarlo(
            tn, species, top, masses, pos, boxes, pos[-1], boxes[-1],
            temperature=args.temperature, pair_cutoff=args.pair_cutoff, bins=args.bins, kinds=kinds,
            alpha=args.alpha, md_steps=args.md_steps, equilibration=args.equilibration,
            sample_every=args.sample_every, timestep=args.timestep, friction=args.friction / 1000.0,
            pressure=args.pressure, seed=args.seed, progress=True, engine=args.engine,
            regularization=args.regularization, max_step=args.max_step)
        imc.run(args.iterations)
        imc.potential.save(out / "cg_potential.pt", metadata={"masses": masses.tolist()})
        write_table_files(imc.potential.tables, out / "tables")
        imc.plot(out)
        imc.to_json(out / "summary.json")
    print(f"wrote {args.out}/ (summary.json, cg_potential.pt, tables/, imc_history.png)")
    return 0
