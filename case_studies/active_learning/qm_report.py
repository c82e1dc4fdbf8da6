"""Tables for the QM-teacher comparison (qm_xtb.yaml): labels to reach several test force RMSE
targets, the ratio random/sigma per seed with mean, std, min and max, and the test error per
system and per temperature of every iteration's committee.

Reads OUT/selection_comparison.json and the run folders written by
``python compare_selection.py qm_xtb.yaml --methods sigma random --seeds 0 1 2 --target T --out OUT``
(only the committees saved there are evaluated: nothing is trained or labelled). Writes
OUT/qm_report.json and prints Markdown tables.

Run: python qm_report.py OUT --targets 0.15 0.14 0.13
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase.io import read

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare_selection import labels_to_reach  # noqa: E402  (the same interpolation as the study)


def ratio_stats(ratios):
    ok = [r for r in ratios if r is not None]
    if not ok:
        return {"mean": None, "std": None, "min": None, "max": None, "not_reached": len(ratios)}
    return {"mean": float(np.mean(ok)), "std": float(np.std(ok)), "min": float(np.min(ok)),
            "max": float(np.max(ok)), "not_reached": len(ratios) - len(ok)}


def power_law(curve):
    """Least-squares fit log e = log a - b log n over the points after the seed set: (a, b)."""
    n, e = np.array(curve[1:], dtype=np.float64).T
    slope, icpt = np.polyfit(np.log(n), np.log(e), 1)
    return float(np.exp(icpt)), float(-slope)


def committee_errors(run_dir: Path, counts, test, key):
    """{group: [[labels, force RMSE eV/Å], ...]} of every iteration's committee mean on the test
    frames grouped by ``info[key]``."""
    from cgkit.ensemble import EnsemblePotential
    from cgkit.io_potential import load_potential
    from cgkit.learn.pareto import held_out_errors
    out = {}
    for it, n in enumerate(counts):
        d = run_dir / f"iter_{it:03d}"
        members = sorted(d.glob("member_*/model.pt"))
        if not members:
            continue
        ens = EnsemblePotential([load_potential(str(p)) for p in members])
        for g in sorted({a.info[key] for a in test}):
            sub = [a for a in test if a.info[key] == g]
            out.setdefault(str(g), []).append([n, held_out_errors(ens, sub)["forces_rmse_eV_per_A"]])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the --out folder of compare_selection.py")
    ap.add_argument("--targets", type=float, nargs="+", required=True, help="test force RMSE targets (eV/Å)")
    ap.add_argument("--test", default=str(HERE / "qm_xtb_test.extxyz"))
    ap.add_argument("--no-temperatures", action="store_true", help="skip the per-temperature errors")
    args = ap.parse_args()
    out = Path(args.out)
    comp = json.loads((out / "selection_comparison.json").read_text())
    runs = comp["runs"]
    seeds = sorted({r["seed"] for r in runs})
    rep = {"targets": {}, "curves": {}, "by_temperature": {}}
    print("| seed | method | " + " | ".join(str(n) for n, _ in runs[0]["curve"]) + " |")
    for r in runs:
        rep["curves"][f"{r['method']}_seed{r['seed']}"] = r["curve"]
        print(f"| {r['seed']} | {r['method']} | " + " | ".join(f"{e:.3f}" for _, e in r["curve"]) + " |")
    for t in args.targets:
        row = {"sigma": [], "random": [], "ratio": [], "fit_sigma": [], "fit_random": [], "fit_ratio": []}
        for s in seeds:
            a = next(r for r in runs if r["seed"] == s and r["method"] == "sigma")
            b = next(r for r in runs if r["seed"] == s and r["method"] == "random")
            na, nb = labels_to_reach(a["curve"], t), labels_to_reach(b["curve"], t)
            row["sigma"].append(na)
            row["random"].append(nb)
            row["ratio"].append(None if na is None or nb is None else nb / na)
            # the same from power-law fits (smooths the iteration-to-iteration noise; beyond the last
            # point it is an extrapolation, flagged in the output)
            (aa, ba), (ab, bb) = power_law(a["curve"]), power_law(b["curve"])
            fa = (aa / t) ** (1 / ba) if ba > 0 else None
            fb = (ab / t) ** (1 / bb) if bb > 0 else None
            row["fit_sigma"].append(fa)
            row["fit_random"].append(fb)
            row["fit_ratio"].append(None if fa is None or fb is None else fb / fa)
        row["ratio_stats"] = ratio_stats(row["ratio"])
        row["fit_ratio_stats"] = ratio_stats(row["fit_ratio"])
        n_max = max(n for r in runs for n, _ in r["curve"])
        row["fit_extrapolated"] = any(v is not None and v > n_max for v in row["fit_sigma"] + row["fit_random"])
        rep["targets"][str(t)] = row
        fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"target {t}: sigma {[fmt(v) for v in row['sigma']]} random {[fmt(v) for v in row['random']]} "
              f"ratio {[None if v is None else round(v, 2) for v in row['ratio']]} {row['ratio_stats']}")
        print(f"   power-law fit: sigma {[fmt(v) for v in row['fit_sigma']]} random {[fmt(v) for v in row['fit_random']]} "
              f"ratio {[None if v is None else round(v, 2) for v in row['fit_ratio']]} {row['fit_ratio_stats']}"
              f"{' (extrapolated beyond the last point)' if row['fit_extrapolated'] else ''}")
    for r in runs:
        a, b = power_law(r["curve"])
        rep.setdefault("power_law", {})[f"{r['method']}_seed{r['seed']}"] = {"a": a, "b": b}
        print(f"{r['method']} seed {r['seed']}: RMSE = {a:.3f} n^-{b:.3f}")
    if not args.no_temperatures:
        test = read(args.test, ":")
        for r in runs:
            counts = [n for n, _ in r["curve"]]
            name = f"{r['method']}_seed{r['seed']}"
            rep["by_temperature"][name] = committee_errors(out / name, counts, test, "temperature_K")
            print(name, {k: [round(e, 3) for _, e in v] for k, v in rep["by_temperature"][name].items()})
    (out / "qm_report.json").write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
