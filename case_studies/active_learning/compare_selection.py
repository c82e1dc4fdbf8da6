"""Data efficiency of active learning: uncertainty + farthest-point selection against random
selection from the same exploration pool, over several seeds (issue 16's acceptance study).

For each seed and each method (``fps``: candidates between the trust levels, farthest-point
sampled; ``random``: uniform draws from every explored frame below hi) the config's loop runs
with the same label budget and never stops early (candidate_fraction 0), so both methods reach
the same number of labels. The test-set force RMSE after every retraining gives a learning
curve; the labels each method needs to reach ``--target`` (eV/Å, log-linear interpolation) give
the ratio. Writes OUT/selection_comparison.json and OUT/learning_curves.png.

Run (about 2 × seeds × the config's run time):
  python compare_selection.py cu_emt.yaml --seeds 0 1 2 --target 0.1 --out cu_compare
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
    ap.add_argument("--methods", nargs="+", default=["fps", "random"],
                    help="selection methods to run (the last is the reference the others are compared with)")
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
            run_dir = out / f"{method}_seed{seed}"
            al = ActiveLearning(cfg, run_dir, base=cfg_path.parent).run()
            pts = curve(al.state)
            results["runs"].append({"seed": seed, "method": method, "curve": pts,
                                    "labels_to_target": labels_to_reach(pts, args.target)})
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
    (out / "selection_comparison.json").write_text(json.dumps(results, indent=2))
    plt = pyplot()
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
