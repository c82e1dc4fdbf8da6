"""``cgkit demo``: the whole multiscale chain on a built-in default, ending in a report."""
from __future__ import annotations

from cgkit.options import add_output_options, add_seed_option

STAGE_NAMES = ("teacher", "atomistic", "forcematch", "cg", "silicon", "report")


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="run the whole multiscale chain on a built-in example and write a report",
        description="Teacher → ENNP (TraPPE-UA polyethylene melt, Stillinger–Weber silicon) → ENNP "
                    "atomistic MD → 4:1 mapping and spline force matching → CG MD compared with the "
                    "mapped atomistic run (bond/angle distributions, RDF, R_g, R_ee, persistence "
                    "length, density, speed-up) → silicon phonons and elastic constants (ENNP vs SW). "
                    "Writes OUT/report/index.html, OUT/report/report.md and OUT/summary.json. Every "
                    "budget is a fixed number of epochs, MD steps or iterations with seeds from "
                    "--seed, so the same command gives the same numbers on any machine (wall times "
                    "and speeds aside); the default size takes about 15 minutes on 2 CPU cores. Each "
                    "stage also has a wall-clock safety limit: a stage that reaches it FAILS (marked "
                    "in the report, exit code 1) rather than giving machine-dependent numbers. "
                    "Example: cgkit demo --out demo_output")
    add_output_options(p, "demo_output",
                       what="output folder of a whole run (a non-empty folder is refused unless "
                            "--overwrite); with --stage, the existing demo folder to rerun stages in")
    p.add_argument("--size", default="default", choices=["small", "default", "large"],
                   help="small: a plumbing check of a few minutes (numbers meaningless); default: "
                        "8 chains of C24 and 64-atom Si cells (~15 min on 2 cores); large: 16 chains "
                        "of C48, longer training and MD (several times the default time)")
    p.add_argument("--steps", type=float, default=1.0,
                   help="scale factor for the MD step counts (teacher, atomistic and CG MD)")
    p.add_argument("--time-limit-scale", type=float, default=1.0,
                   help="multiply every stage's wall-clock safety limit by this factor (for slow "
                        "machines); the limits never change the numbers of a run that stays within "
                        "them")
    add_seed_option(p)
    p.add_argument("--stage", action="append", default=None, metavar="NAME", choices=STAGE_NAMES,
                   help="rerun only this stage (repeatable): teacher, atomistic, forcematch, cg, "
                        "silicon, report. The one in-place mode: stages run inside the existing "
                        "demo folder --out (made with the same --size/--steps/--seed) and read the "
                        "earlier stages' files there; each stage's folder is replaced only when the "
                        "stage succeeds. The report is rewritten whenever a stage is rerun")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from cgkit.demo import run_demo

    stages = args.stage
    if stages and "report" not in stages:
        stages = list(stages) + ["report"]  # keep the report in step with what was rerun
    results = run_demo(args.out, size=args.size, steps=args.steps, seed=args.seed, stages=stages,
                       time_limit_scale=args.time_limit_scale, overwrite=args.overwrite)
    bad = [st for st, r in results.items() if r.get("status") == "failed"]
    for st, r in results.items():
        print(f"  {st:11s} {r.get('status', '?'):8s} {float(r.get('wall_time_s') or 0):7.1f} s")
    index = Path(args.out) / "report" / "index.html"
    if index.is_file():
        print(f"report: {index.resolve()}")
    if bad:
        print(f"cgkit demo: failed stage(s): {', '.join(bad)} (reasons in {Path(args.out) / 'summary.json'})")
    return 1 if bad else 0
