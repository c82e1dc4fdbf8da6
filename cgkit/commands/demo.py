"""``cgkit demo``: the whole multiscale chain on a built-in default, ending in a report."""
from __future__ import annotations


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="run the whole multiscale chain on a built-in example and write a report",
        description="Teacher → ENNP (TraPPE-UA polyethylene melt, Stillinger–Weber silicon) → ENNP "
                    "atomistic MD → 4:1 mapping and spline force matching → CG MD compared with the "
                    "mapped atomistic run (bond/angle distributions, RDF, R_g, R_ee, persistence "
                    "length, density, speed-up) → silicon phonons and elastic constants (ENNP vs SW). "
                    "Writes OUT/report/index.html, OUT/report/report.md and OUT/summary.json. The "
                    "default size runs in about 15 minutes on 2 CPU cores; every stage has a "
                    "wall-clock budget.")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--size", default="default", choices=["small", "default", "large"],
                   help="small: seconds-scale plumbing check (numbers meaningless); default: 8 chains "
                        "of C24 and 64-atom Si cells (~15 min); large: 16 chains of C48, longer "
                        "training and MD (about 6× the default time)")
    p.add_argument("--steps", type=float, default=1.0,
                   help="scale factor for the MD step counts (teacher, atomistic and CG MD; "
                        "the MD budgets grow with it); default 1")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every wall-clock budget (stage budgets, ENNP training minutes) by "
                        "this factor: >1 on slow or busy machines buys accuracy, <1 a quicker look "
                        "(default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every stage (default 0)")
    p.add_argument("--stage", action="append", default=None, metavar="NAME",
                   choices=["teacher", "atomistic", "forcematch", "cg", "silicon", "report"],
                   help="run only this stage (repeatable): teacher, atomistic, forcematch, cg, "
                        "silicon, report. Later stages read the earlier stages' files in --out; "
                        "the report is rewritten whenever it is among the stages")
    p.set_defaults(func=run)


def run(args) -> int:
    from cgkit.demo import run_demo

    stages = args.stage
    if stages and "report" not in stages:
        stages = list(stages) + ["report"]  # keep the report in step with what was rerun
    results = run_demo(args.out, size=args.size, steps=args.steps, seed=args.seed, stages=stages,
                       time_scale=args.time_scale)
    bad = [st for st, r in results.items() if r.get("status") == "failed"]
    for st, r in results.items():
        print(f"  {st:11s} {r.get('status', '?'):8s} {float(r.get('wall_time_s') or 0):7.1f} s")
    from pathlib import Path
    index = Path(args.out) / "report" / "index.html"
    if index.is_file():
        print(f"report: {index.resolve()}")
    return 1 if bad else 0
