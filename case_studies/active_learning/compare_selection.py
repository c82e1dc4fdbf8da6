"""Data efficiency of active learning: uncertainty-driven selection against random selection
from the same exploration pool, over several seeds (issue 16's acceptance study).

For each seed and each method (``sigma``: the largest calibrated σ over every explored frame,
with a descriptor exclusion radius; ``fps``: candidates between the trust levels,
farthest-point sampled; ``uniform``: uniform among those candidates; ``random``: uniform draws
from every explored frame below hi) the config's loop runs
with the same label budget and never stops early (candidate_fraction 0), so both methods reach
the same number of labels. The test-set force RMSE after every retraining gives a learning
curve; the labels each method needs to reach ``--target`` (eV/Å, log-linear interpolation) give
the ratio. Writes OUT/selection_comparison.json, OUT/learning_curves.png (every seed) and
OUT/learning_curves_mean.png (mean over seeds, band min..max). Runs already in OUT are resumed,
not repeated, so the same command with another --target only recomputes the numbers.

Run (about 2 × seeds × the config's run time):
  python compare_selection.py cu_emt.yaml --methods sigma random --seeds 0 1 2 --target 0.03 --out cu_compare
  python compare_selection.py qm_xtb.yaml --methods sigma random --seeds 0 1 2 --target 0.09 \
      --max-iterations 13 --label-budget 110 --out qm_long   # the xTB study to 110 labels (~1 h)
"""
import argparse
import copy
import json
from pathlib import Path

import numpy as np
import yaml

from cgkit.learn.loop import ActiveLearning
from cgkit.plotting import pyplot, savefig


def curve(state):
    pts = [(r["n_labels_before"], r["test"]["forces_rmse_eV_per_A"]) for r in state["iterations"] if r.get("test")]
    f = state.get("final") or {}
    if f.get("test"):
        pts.append((f["n_labels"], f["test"]["forces_rmse_eV_per_A"]))
    return pts


def regime_errors(al, run_dir):
    """Test force RMSE (eV/Å) per ``info['regime']`` of the test frames, of every iteration's
    committee: {regime: [[labels, rmse], ...]}."""
    from cgkit.ensemble import EnsemblePotential
    from cgkit.io_potential import load_potential
    from cgkit.learn.pareto import held_out_errors
    if not al.test or "regime" not in al.test[0].info:
        return None
    size = int(al.config["committee"]["size"])
    counts = [r["n_labels_before"] for r in al.state["iterations"]]
    if al.state.get("final"):
        counts.append(al.state["final"]["n_labels"])
    out = {}
    for it, n in enumerate(counts):
        d = Path(run_dir) / f"iter_{it:03d}"
        if not all((d / f"member_{m}" / "model.pt").is_file() for m in range(size)):
            continue
        ens = EnsemblePotential([load_potential(str(d / f"member_{m}" / "model.pt")) for m in range(size)])
        for reg in sorted({a.info["regime"] for a in al.test}):
            sub = [a for a in al.test if a.info["regime"] == reg]
            out.setdefault(reg, []).append([n, held_out_errors(ens, sub)["forces_rmse_eV_per_A"]])
    return out


def labels_to_reach(pts, target):
    """First label count where the (log-linearly interpolated) curve falls to ``target``."""
    for (n0, e0), (n1, e1) in zip(pts, pts[1:]):
        if e0 <= target:
            return float(n0)
        if e1 <= target:
            t = (np.log(e0) - np.log(target)) / (np.log(e0) - np.log(e1))
            return float(n0 + t * (n1 - n0))
    return float(pts[0][0]) if pts and pts[0][1] <= target else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--target", type=float, required=True, help="test force RMSE to reach (eV/Å)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", nargs="+", default=["sigma", "random"],
                    help="selection methods to run (the last is the reference the others are compared with)")
    ap.add_argument("--max-iterations", type=int, default=None,
                    help="override stop.max_iterations (a shorter study; finished longer runs are kept)")
    ap.add_argument("--label-budget", type=int, default=None,
                    help="override stop.label_budget (with --max-iterations: a longer study)")
    args = ap.parse_args()
    cfg_path = Path(args.config).resolve()
    base_cfg = yaml.safe_load(cfg_path.read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"config": str(cfg_path), "target_eV_per_A": args.target, "runs": []}
    for seed in args.seeds:
        for method in args.methods:
            cfg = copy.deepcopy(base_cfg)
            cfg["seed"] = seed
            cfg.setdefault("selection", {})["method"] = method
            cfg.setdefault("stop", {})["candidate_fraction"] = 0.0
            if args.max_iterations is not None:
                cfg["stop"]["max_iterations"] = args.max_iterations
            if args.label_budget is not None:
                cfg["stop"]["label_budget"] = args.label_budget
            run_dir = (out / f"{method}_seed{seed}").resolve()  # a symlink to a run made elsewhere
            al = ActiveLearning(cfg, run_dir, base=cfg_path.parent).run()
            pts = curve(al.state)
            labelling_s = [r.get("labelling_s") for r in al.state["iterations"]]
            results["runs"].append({"seed": seed, "method": method, "curve": pts,
                                    "labels_to_target": labels_to_reach(pts, args.target),
                                    "test_by_regime": regime_errors(al, run_dir),
                                    "labelling_seconds": labelling_s})
            (out / "selection_comparison.json").write_text(json.dumps(results, indent=2))
    ref = args.methods[-1]
    results["reference_method"] = ref
    results["ratios"] = {}
    for method in args.methods[:-1]:
        ratios = []
        for seed in args.seeds:
            a = next(r for r in results["runs"] if r["seed"] == seed and r["method"] == method)["labels_to_target"]
            b = next(r for r in results["runs"] if r["seed"] == seed and r["method"] == ref)["labels_to_target"]
            ratios.append(None if a is None or b is None else b / a)
        ok = [r for r in ratios if r is not None]
        results["ratios"][method] = {f"{ref}_labels_over_{method}_labels": ratios,
                                     "mean": float(np.mean(ok)) if ok else None,
                                     "min": float(np.min(ok)) if ok else None,
                                     "max": float(np.max(ok)) if ok else None,
                                     "not_reached": sum(r is None for r in ratios)}
    results["per_method"] = {}
    for method in args.methods:
        runs = [r for r in results["runs"] if r["method"] == method]
        need = [r["labels_to_target"] for r in runs]
        ok = [x for x in need if x is not None]
        ns = sorted({n for r in runs for n, _ in r["curve"]})
        mean_curve = []
        for n in ns:
            es = [e for r in runs for m, e in r["curve"] if m == n]
            if len(es) == len(runs):
                mean_curve.append({"labels": n, "mean": float(np.mean(es)), "std": float(np.std(es)),
                                   "min": float(np.min(es)), "max": float(np.max(es))})
        results["per_method"][method] = {
            "labels_to_target": need, "labels_to_target_mean": float(np.mean(ok)) if ok else None,
            "labels_to_target_std": float(np.std(ok)) if ok else None, "not_reached": len(need) - len(ok),
            "mean_curve": mean_curve}
    (out / "selection_comparison.json").write_text(json.dumps(results, indent=2))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, method in enumerate(args.methods):
        mc = results["per_method"][method]["mean_curve"]
        if not mc:
            continue
        n = [q["labels"] for q in mc]
        ax.plot(n, [q["mean"] for q in mc], ("o-", "^-", "s--", "d:")[k % 4], color=f"C{k}",
                label=f"{method} (mean of {len(args.seeds)} seeds)")
        ax.fill_between(n, [q["min"] for q in mc], [q["max"] for q in mc], color=f"C{k}", alpha=0.2)
    ax.axhline(args.target, color="k", lw=0.8, ls=":", label=f"target {args.target:g} eV/Å")
    ax.set_xlabel("labels"); ax.set_ylabel("test force RMSE (eV/Å)"); ax.set_yscale("log")
    ax.legend(fontsize=8)
    savefig(fig, out / "learning_curves_mean.png")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in results["runs"]:
        n, e = zip(*r["curve"]) if r["curve"] else ((), ())
        k = args.methods.index(r["method"])
        ax.plot(n, e, ("o-", "^-", "s--", "d:")[k % 4], color=f"C{k}", alpha=0.8,
                label=f"{r['method']} (seed {r['seed']})")
    ax.axhline(args.target, color="k", lw=0.8, ls=":")
    ax.set_xlabel("labels"); ax.set_ylabel("test force RMSE (eV/Å)"); ax.set_yscale("log")
    ax.legend(fontsize=7)
    savefig(fig, out / "learning_curves.png")
    print(json.dumps(results["ratios"]))


if __name__ == "__main__":
    main()
