"""``cgkit relent``: relative-entropy minimisation of CG potentials with CG MD in cgkit or LAMMPS.

The optimised potentials are cubic B-spline expansions of the energy (pairs per bead-type pair,
bonds, angles, dihedrals per type); their coefficients λ follow damped Newton–Raphson steps on
the relative entropy S_rel between the mapped reference CG trajectory (``cgkit map`` output:
PSF + TRR/extxyz, periodic box) and Langevin CG MD with the current potential:
∇S = β(⟨∂U/∂λ⟩_ref − ⟨∂U/∂λ⟩_CG), H = β² Cov_CG(∂U/∂λ). The start is the Boltzmann
inverse of the reference distributions, or the tables of ``--start-potential`` (e.g. an IBI or
force-matching result). Writes ``summary.json`` (per iteration: JS divergences, |∇S|, predicted ΔS_rel),
``cg_potential.pt`` (usable by ``cgkit md``), ``tables/`` and ``plots/``.
"""
from __future__ import annotations

import argparse

_EPILOG = """example:
  cgkit relent --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --temperature 300 --iterations 8 \\
               --kinds pair,bond,angle --md-steps 20000 --grid "pair A-B=3.0:10:0.25" --out relent/

Units: Å, deg (angle/dihedral grids), K, fs, 1/ps, GPa; energies eV."""

from ..options import add_grid_option, add_output_options, add_seed_option
from .ibi import add_common_arguments


def register(subparsers):
    p = subparsers.add_parser("relent", help="relative-entropy minimisation with cgkit CG MD",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, iterations_help="Newton iterations", kinds_verb="optimise",
                         alpha=0.7, alpha_help="Newton step damping α in (0, 1] (a step length, not IBI's "
                                               "update damping)",
                         bins_help="histogram bins per distribution (scores, start)")
    add_grid_option(p)
    p.add_argument("--start-potential", default=None,
                   help="saved tabulated cgkit potential (.pt) whose tables replace the Boltzmann-inverted start")
    p.add_argument("--ridge", type=float, default=0.3,
                   help="Levenberg-Marquardt damping μ: H + μ diag(H) (default 0.3)")
    p.add_argument("--eigen-floor", type=float, default=1e-3,
                   help="smallest Hessian eigenvalue kept, relative to the largest (default 0.001)")
    p.add_argument("--significance", type=float, default=2.0,
                   help="follow only Hessian eigen-directions whose gradient exceeds z times its "
                        "block-averaged noise (z, default 2; 0: all)")
    p.add_argument("--coupling", choices=("full", "block"), default="full",
                   help="Hessian: full, or block-diagonal per interaction (robust with few CG frames)")
    p.add_argument("--max-step", type=float, default=2.0,
                   help="largest potential change per interaction and iteration, in kT (default 2)")
    p.add_argument("--min-samples", type=int, default=20,
                   help="reference samples a basis function needs to be optimised (default 20)")
    p.add_argument("--sample-every", type=int, default=50, help="steps between CG samples (default 50)")
    add_seed_option(p)
    add_output_options(p, "relent_out")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..errors import InputError
    from ..forcematch.relent import RelativeEntropyMinimisation
    from ..forcematch.tabulated import TabulatedPotential
    from ..options import parse_grids
    from ..outputs import OutputFolder
    from .ibi import read_reference

    grids = parse_grids(args.grid)
    kinds, (tn, species, masses, top, pos, boxes) = read_reference(args, "relative-entropy minimisation")
    start = None
    if args.start_potential:
        from ..io_potential import load_potential
        pot = load_potential(args.start_potential)
        if not isinstance(pot, TabulatedPotential):
            raise InputError(f"--start-potential must be a tabulated CG potential (cgkit fm/ibi/relent "
                             f"output); {args.start_potential} holds a {type(pot).__name__}")
        start = pot.tables
    with OutputFolder(args.out, overwrite=args.overwrite, command="relent") as out:
        re = RelativeEntropyMinimisation(
            tn, species, top, masses, pos, boxes, pos[-1], boxes[-1], temperature=args.temperature,
            pair_cutoff=args.pair_cutoff, bins=args.bins, kinds=kinds, alpha=args.alpha,
            md_steps=args.md_steps, equilibration=args.equilibration, sample_every=args.sample_every,
            timestep=args.timestep, friction=args.friction / 1000.0, pressure=args.pressure, seed=args.seed,
            progress=True, start_tables=start, grids=grids, ridge=args.ridge,
            eigen_floor=args.eigen_floor, max_step=args.max_step, min_samples=args.min_samples,
            significance=args.significance, coupling=args.coupling, engine=args.engine)
        for k in range(args.iterations):
            rec = re.step()
            js = ", ".join(f"{lab}: {v['js']:.3g}" for lab, v in rec["scores"].items())
            print(f"iteration {k + 1}/{args.iterations}: JS {js}; |∇S| = {rec['gradient_norm']:.3g} /eV; "
                  f"ΔS_rel ≈ {rec['delta_S_rel_fep']:.3g}"
                  + (f"; P = {rec['pressure_GPa']:.4f} GPa" if rec["pressure_GPa"] is not None else ""),
                  flush=True)
            re.plot_iteration(out / "plots" / f"iteration_{len(re.history) - 1:03d}.png")
        re.potential.save(out / "cg_potential.pt", metadata={"masses": masses.tolist()})
        re.write_tables(out / "tables")
        if re.history:
            re.plot_history(out / "plots" / "history.png")
        re.to_json(out / "summary.json")
    print(f"wrote {args.out}/")
    return 0
