"""Markdown tables of a pool study (the README's tables): pool composition per seed, mean test
force RMSE per label count, labels to reach each target per seed and strategy with the ratios
random ÷ strategy (mean ± std and min–max over the seeds that reach it), and what each strategy
labelled (per regime, in the first batch, per temperature). ``--regime liquid`` measures the
learning curves on that test regime only. ``--plot FILE.png`` draws the learning curves of
every strategy (mean over seeds, min–max band), each to its own length, on the whole test set
and per regime: the figure for studies whose strategies ran to different label counts.

Run: python pool_study_tables.py results/pool_study_ladder_b8.json --targets 0.05 0.045 0.04
"""
import argparse
import json
import sys
from pathlib import Path
from collections import Counter
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_study import labels_to_reach
ap = argparse.ArgumentParser(); ap.add_argument("files", nargs="+"); ap.add_argument("--targets", type=float, nargs="+", required=True)
ap.add_argument("--regime", default="all", help="test regime of the curves (all = whole test set)")
ap.add_argument("--plot", default=None, help="PNG of the learning curves of every strategy and regime")
a = ap.parse_args()
REG = a.regime
runs = []; seeds = None; strats = []; comp = None
for f in a.files:
    r = json.load(open(f)); runs += r["runs"]; seeds = r["args"]["seeds"]
    strats += [s for s in r["args"]["strategies"] if s not in strats]
    comp = r.get("pool_composition") or comp
def run(st, sd): return next(x for x in runs if x["strategy"] == st and x["seed"] == sd)
if comp:
    regs = [k for k in ["crystal", "vacancy", "surface", "liquid"] if any(k in c["per_regime"] for c in comp.values())]
    regs += sorted({k for c in comp.values() for k in c["per_regime"]} - set(regs))
    print("| seed | frames | " + " | ".join(regs) + " | melted per T (K) |")
    print("|---|---|" + "---|" * len(regs) + "---|")
    for s, c in comp.items():
        print(f"| {s} | {c['frames']} | " + " | ".join(str(c['per_regime'].get(k, 0)) for k in regs) + " | "
              + ", ".join(f"{k}: {v}" for k, v in c["melted_per_temperature_K"].items()) + " |")
    print()
# strategies may have been run to different label counts (e.g. random extended further)
ns = max(([n for n, _ in run(st, seeds[0])["curve"]] for st in strats), key=len)
print("| labels | " + " | ".join(str(n) for n in ns) + " |"); print("|---|" + "---|" * len(ns))
for st in strats:
    m = min(len(run(st, sd)["curve"]) for sd in seeds)
    E = np.array([[e[REG] for _, e in run(st, sd)["curve"][:m]] for sd in seeds])
    cells = [f"{a:.3f} ± {b:.3f}" for a, b in zip(E.mean(0), E.std(0))] + ["–"] * (len(ns) - m)
    print(f"| {st} | " + " | ".join(cells) + " |")
print()
print("| target (eV/Å) | " + " | ".join(f"{st} (seeds {'/'.join(map(str, seeds))})" for st in strats)
      + " | " + " | ".join(f"random ÷ {st}: per seed; mean ± std (min–max)" for st in strats if st != "random") + " |")
print("|---|" + "---|" * (2 * len(strats) - 1))
for t in a.targets:
    need = {st: [labels_to_reach([(n, e[REG]) for n, e in run(st, sd)["curve"]], t) for sd in seeds] for st in strats}
    cells = [" / ".join("n.r." if v is None else f"{v:.1f}" for v in need[st]) for st in strats]
    for st in strats:
        if st == "random": continue
        rat = [None if x is None or y is None else x / y for x, y in zip(need["random"], need[st])]
        ok = [x for x in rat if x is not None]
        c = " / ".join("–" if x is None else f"{x:.2f}" for x in rat)
        if ok:
            c += f"; {np.mean(ok):.2f} ± {np.std(ok):.2f} ({min(ok):.2f}–{max(ok):.2f})" + ("" if len(ok) == len(seeds) else f" [{len(ok)} seeds]")
        cells.append(c)
    print(f"| {t:g} | " + " | ".join(cells) + " |")
print()
print("| strategy | picks per regime (3 seeds) | first batch | picks per T (K) |"); print("|---|---|---|---|")
for st in strats:
    c = Counter(p.get("regime", "?") for sd in seeds for b in run(st, sd)["picks"] for p in b)
    c1 = Counter(p.get("regime", "?") for sd in seeds for p in run(st, sd)["picks"][0])
    T = Counter(int(p["T"]) for sd in seeds for b in run(st, sd)["picks"] for p in b)
    names = [k for k in ["crystal", "vacancy", "surface", "liquid"] if k in c] + sorted(set(c) - {"crystal", "vacancy", "surface", "liquid"})
    f = lambda d: ", ".join(f"{k} {d.get(k, 0)}" for k in names)
    print(f"| {st} | {f(c)} | {f(c1)} | " + ", ".join(f"{k}: {v}" for k, v in sorted(T.items())) + " |")
if a.plot:
    from cgkit.plotting import pyplot, savefig
    plt = pyplot()
    regs = ["all"] + sorted(k for k in run(strats[0], seeds[0])["curve"][0][1] if k != "all")
    fig, axes = plt.subplots(1, len(regs), figsize=(3.2 * len(regs), 3.4), sharex=True)
    for ax, reg in zip(np.atleast_1d(axes), regs):
        for k, st in enumerate(strats):
            m = min(len(run(st, sd)["curve"]) for sd in seeds)
            n = [x for x, _ in run(st, seeds[0])["curve"][:m]]
            E = np.array([[e[reg] for _, e in run(st, sd)["curve"][:m]] for sd in seeds])
            ax.plot(n, E.mean(0), "o-", color=f"C{k}", ms=3, label=st)
            ax.fill_between(n, E.min(0), E.max(0), color=f"C{k}", alpha=0.15)
        ax.set_yscale("log"); ax.set_xlabel("labels"); ax.set_title(reg if reg != "all" else "all (test set)")
    np.atleast_1d(axes)[0].set_ylabel("test force RMSE (eV/Å)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    savefig(fig, a.plot)
    print(f"wrote {a.plot}")
