"""``cgkit polymer``: chain size, stiffness, scaling, structure and dynamics of a trajectory."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "polymer",
        help="polymer analysis of an atomistic or CG trajectory (R_g, R_ee, C_n, l_p, ν, "
             "distributions, RDF, MSD) with block-average error bars",
        description="Analyse every chain in the selection, per chain species (residue names + "
                    "backbone length). Chains and their backbone order come from the bonds, and "
                    "chains are unwrapped across periodic boundaries by their bonds. Writes "
                    "DIR/summary.json (every quantity with unit and error bar, all curves and "
                    "histograms) and PNG plots. Units: Å, fs, degrees, Å²/fs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--topology", required=True,
                   help="topology with bonds, any MDAnalysis format (TPR, PSF, LAMMPS data, PDB "
                        "with CONECT, ...)")
    p.add_argument("--trajectory", nargs="*", default=[],
                   help="trajectory file(s) (XTC, TRR, DCD, LAMMPS dump, ...); none: the "
                        "topology's own coordinates")
    p.add_argument("--select", default="all",
                   help="MDAnalysis selection of the chain atoms (whole molecules or a bonded backbone)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--start", type=int, default=None, help="first frame index")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    p.add_argument("--step", type=int, default=None, help="analyse every STEP-th frame")
    p.add_argument("--blocks", type=int, default=5, help="number of blocks for error bars")
    p.add_argument("--error-method", choices=("auto", "time", "chains"), default="auto",
                   help="blocks over time, over chains, or auto (time when ≥ 2·blocks frames)")
    p.add_argument("--weights", choices=("mass", "none"), default="mass",
                   help="weights of R_g and centres of mass")
    p.add_argument("--flory-range", type=int, nargs=2, metavar=("NMIN", "NMAX"), default=None,
                   help="backbone separations |i−j| used to fit ν (default L/10 .. L/2)")
    p.add_argument("--rdf-rmax", type=float, default=None,
                   help="RDF upper limit in Å (default min(15, half the box)); 0 disables the RDF")
    p.add_argument("--rdf-bins", type=int, default=75, help="RDF bins")
    p.add_argument("--msd", choices=("all", "chains", "none"), default="all",
                   help="MSD of chain centres and monomers ('all'), centres only, or none")
    p.add_argument("--min-beads", type=int, default=2,
                   help="ignore bonded groups with fewer atoms (ions, water)")
    p.add_argument("--guess-bonds", action="store_true",
                   help="guess bonds from distances (MDAnalysis vdW radii) when the topology has none")
    p.add_argument("--compare", metavar="REF_SUMMARY", default=None,
                   help="summary.json of a reference run (e.g. atomistic mapped to CG): also write "
                        "comparison.json (Jensen–Shannon divergences, ratios) and overlay plots")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    import MDAnalysis as mda

    from cgkit.errors import InputError
    from cgkit.properties.compare import Comparison
    from cgkit.properties.polymer import PolymerAnalysis

    for f in [args.topology, *args.trajectory]:
        if not Path(f).exists():
            raise InputError(f"file not found: {f}")
    try:
        u = mda.Universe(args.topology, *args.trajectory)
    except Exception as exc:  # MDAnalysis raises many types for unreadable input
        raise InputError(f"MDAnalysis cannot read {args.topology} {' '.join(args.trajectory)}: {exc}") from exc
    if args.guess_bonds:
        u.guess_TopologyAttrs(to_guess=["bonds"])
    try:
        ag = u.select_atoms(args.select)
    except Exception as exc:
        raise InputError(f"invalid selection {args.select!r}: {exc}") from exc
    rdf = args.rdf_rmax is None or args.rdf_rmax > 0
    pa = PolymerAnalysis(ag, weights=None if args.weights == "none" else "mass", n_blocks=args.blocks,
                         error_method=args.error_method, flory_range=args.flory_range, rdf=rdf,
                         rdf_range=None if args.rdf_rmax is None or not rdf else (0.0, args.rdf_rmax),
                         rdf_bins=args.rdf_bins, msd=None if args.msd == "none" else args.msd,
                         min_beads=args.min_beads)
    pa.run(start=args.start, stop=args.stop, step=args.step)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = pa.summary()
    summary["input"] = dict(topology=str(args.topology), trajectory=[str(t) for t in args.trajectory],
                            select=args.select, start=args.start, stop=args.stop, step=args.step)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if not args.no_plots:
        pa.plot(out)
    lines = []
    for lab, g in summary["groups"].items():
        def fmt(k):
            q = g[k]
            return f"{k} = {q['value']} ± {q['error']} {q['unit']}"
        lines.append(f"{lab}: {g['n_chains']} chains; " + "; ".join(
            fmt(k) for k in ("rg", "ree2", "C_n", "nu", "lp_acf")))
    if args.compare:
        cmp = Comparison.from_summaries(args.compare, summary, labels=("reference", "this run")).run()
        cmp.to_json(out / "comparison.json")
        if not args.no_plots:
            cmp.plot(out)
        lines.append(f"comparison with {args.compare}: {out / 'comparison.json'}")
    print("\n".join(lines))
    print(f"wrote {out / 'summary.json'}")
    return 0
