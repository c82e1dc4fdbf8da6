"""``cgkit polymer``: chain size, stiffness, scaling, structure and dynamics of a trajectory."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from cgkit.options import add_output_options
    p = subparsers.add_parser(
        "polymer",
        help="polymer analysis of an atomistic or CG trajectory (R_g, R_ee, C_n, l_p, ν, "
             "distributions, RDF, MSD) with block-average error bars",
        description="Analyse every chain in the selection, per chain species (residue names + "
                    "backbone length). Chains and their backbone order come from the bonds, and "
                    "chains are unwrapped across periodic boundaries by their bonds. Writes "
                    "DIR/summary.json (every quantity with unit and error bar, all curves and "
                    "histograms) and PNG plots, into a folder written whole or not at all (a "
                    "non-empty --out is refused unless --overwrite). Input checks: NaN/inf "
                    "positions stop the run with an error naming the file, the 0-based frame and "
                    "the atoms; a trajectory that ends in an incomplete frame (a killed run) is "
                    "analysed up to its last complete frame, with a warning naming that frame "
                    "(also in summary.json). Progress over frames is reported (a bar on a "
                    "terminal, a line with an ETA every 30 s otherwise; --no-progress silences "
                    "it). Units: Å, fs, degrees, Å²/fs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--topology", required=True,
                   help="topology with bonds, any MDAnalysis format (TPR, PSF, LAMMPS data, PDB "
                        "with CONECT, ...)")
    p.add_argument("--trajectory", nargs="*", default=[],
                   help="trajectory file(s) (XTC, TRR, DCD, LAMMPS dump, ...); none: the "
                        "topology's own coordinates")
    p.add_argument("--select", default="all",
                   help="MDAnalysis selection of the chain atoms (whole molecules or a bonded backbone)")
    add_output_options(p)
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
    p.add_argument("--no-progress", action="store_true", help="do not report progress over frames")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from cgkit.errors import InputError
    from cgkit.jsonutil import write_json
    from cgkit.outputs import OutputFolder
    from cgkit.properties.compare import Comparison
    from cgkit.properties.polymer import PolymerAnalysis
    from cgkit.trajectory import (complete_frames, is_lammps_dump, load_universe,
                                  recording_truncation)

    for f in [args.topology, *args.trajectory] + ([args.compare] if args.compare else []):
        if not Path(f).exists():
            raise InputError(f"file not found: {f}")
    if args.step is not None and args.step <= 0:
        raise InputError("--step must be a positive number of frames")
    notes: list[str] = []
    source = " ".join(args.trajectory) or args.topology
    with recording_truncation(notes):
        dumps = [is_lammps_dump(t) for t in args.trajectory]
        if any(dumps) and not all(dumps):
            raise InputError("give either LAMMPS dumps or other trajectory files, not a mix")
        u = load_universe(args.topology, *args.trajectory,
                          **({"format": "LAMMPSDUMP"} if dumps and all(dumps) else {}))
        n_frames = complete_frames(u, source)
    start, stop, step = slice(args.start, args.stop, args.step).indices(n_frames)
    if not len(range(start, stop, step)):
        raise InputError(f"no frames selected: {source} has {n_frames} complete frame(s); check "
                         "--start/--stop/--step")
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
    ref = None
    if args.compare:
        from cgkit.jsonutil import loads_strict
        try:
            ref = loads_strict(Path(args.compare).read_text())
            ref["groups"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InputError(f"--compare {args.compare} is not a summary.json of `cgkit polymer` "
                             f"({type(exc).__name__}: {exc})") from None
    with OutputFolder(args.out, overwrite=args.overwrite, command="polymer") as out:
        pa.run(start=start, stop=stop, step=step, progress=not args.no_progress)
        summary = pa.summary()
        summary["input"] = dict(topology=str(args.topology), trajectory=[str(t) for t in args.trajectory],
                                select=args.select, start=args.start, stop=args.stop, step=args.step,
                                complete_frames=n_frames)
        summary["warnings"] = notes
        write_json(out / "summary.json", summary)
        if not args.no_plots:
            pa.plot(out)
        lines = []
        for lab, g in summary["groups"].items():
            def fmt(k):
                q = g[k]
                return f"{k} = {q['value']} ± {q['error']} {q['unit']}"
            lines.append(f"{lab}: {g['n_chains']} chains; " + "; ".join(
                fmt(k) for k in ("rg", "ree2", "C_n", "nu", "lp_acf")))
        if ref is not None:
            cmp = Comparison.from_summaries(ref, summary, labels=("reference", "this run")).run()
            cmp.to_json(out / "comparison.json")
            if not args.no_plots:
                cmp.plot(out)
            lines.append(f"comparison with {args.compare}: {Path(args.out) / 'comparison.json'}")
    print("\n".join(lines))
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0
