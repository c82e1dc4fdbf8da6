"""``cgkit ibi``: iterative Boltzmann inversion of CG tables with cgkit CG MD.

Targets are the pair RDFs and bonded distributions of a mapped reference CG trajectory
(``cgkit map`` output: PSF + TRR/extxyz, periodic box). Every iteration runs Langevin CG MD
with the current tables and updates U ← U + α kT ln(P/P_target); optional pressure
correction. Writes ``summary.json`` (JS divergences per iteration), ``cg_potential.pt``
(final tables, usable by ``cgkit md``) and ``tables/``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

_EPILOG = """example:
  cgkit ibi --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --temperature 300 --iterations 10 \\
            --kinds pair --md-steps 20000 --out ibi/

Units: Å, K, fs, GPa."""


def register(subparsers):
    p = subparsers.add_parser("ibi", help="iterative Boltzmann inversion with cgkit CG MD",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_iteration_arguments(p, iterations_help="IBI iterations (default 5)", kinds_verb="iterate",
                            alpha=0.5, alpha_help="update damping α in (0, 1] (default 0.5)",
                            bins_help="histogram bins per distribution")
    p.add_argument("--out", default="ibi_out", help="output folder")
    p.set_defaults(func=_run)


def add_iteration_arguments(p, *, iterations_help: str, kinds_verb: str, alpha: float, alpha_help: str,
                            bins_help: str) -> None:
    """Options shared by the iterative CG methods (``cgkit ibi``, ``cgkit relent``): the mapped
    reference, the interactions, and the CG MD of every iteration (Å, K, fs, 1/ps, GPa)."""
    p.add_argument("--cg-trajectory", required=True, help="mapped reference CG trajectory (trr or extxyz)")
    p.add_argument("--cg-topology", required=True, help="CG PSF from `cgkit map`")
    p.add_argument("--exclude", type=int, default=2, help="exclude pairs up to this many bonds apart (default 2)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--iterations", type=int, default=5, help=iterations_help)
    p.add_argument("--kinds", default="pair",
                   help=f"comma-separated interactions to {kinds_verb}: pair,bond,angle,dihedral")
    p.add_argument("--alpha", type=float, default=alpha, help=alpha_help)
    p.add_argument("--pair-cutoff", type=float, default=10.0, help="Å (default 10; at most half the box)")
    p.add_argument("--bins", type=int, default=100, help=bins_help)
    p.add_argument("--md-steps", type=int, default=10000, help="sampling steps per iteration")
    p.add_argument("--equilibration", type=int, default=2000, help="equilibration steps per iteration")
    p.add_argument("--timestep", type=float, default=5.0, help="fs")
    p.add_argument("--friction", type=float, default=10.0, help="Langevin friction, 1/ps")
    p.add_argument("--pressure", type=float, default=None, help="target pressure, GPa (enables the correction)")


def _run(args) -> int:
    from ..forcematch.ibi import IterativeBoltzmannInversion
    from ..forcematch.tabulated import write_table_files
    from ..trajectory import read_cg_reference

    tn, species, masses, top, pos, boxes = read_cg_reference(args.cg_topology, args.cg_trajectory,
                                                             exclude=args.exclude, needed_by="IBI")
    ibi = IterativeBoltzmannInversion(
        tn, species, top, masses, pos, boxes, pos[-1], boxes[-1],
        temperature=args.temperature, pair_cutoff=args.pair_cutoff, bins=args.bins,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()), alpha=args.alpha,
        md_steps=args.md_steps, equilibration=args.equilibration, timestep=args.timestep,
        friction=args.friction / 1000.0, pressure=args.pressure, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(args.iterations):
        rec = ibi.step()
        js = ", ".join(f"{k}: {v['js']:.3g}" for k, v in rec["scores"].items())
        print(f"iteration {rec['iteration']}: JS {js}"
              + (f"; P = {rec['pressure_GPa']:.4f} GPa" if rec["pressure_GPa"] is not None else ""))
        ibi.to_json(out / "summary.json")
    ibi.potential.save(out / "cg_potential.pt", metadata={"masses": masses.tolist()})
    write_table_files(ibi.potential.tables, out / "tables")
    (out / "summary.json").write_text(json.dumps(ibi.summary(), indent=1))
    print(f"wrote {out}/")
    return 0
