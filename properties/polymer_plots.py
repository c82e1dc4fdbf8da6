"""Figures for :class:`cgkit.properties.polymer.PolymerAnalysis` (from its JSON summary)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_polymer", "polymer_figures"]


def _arr(x):
    return np.array([np.nan if v is None else (np.inf if v == "inf" else v) for v in x], dtype=float)


def _val(q):
    v = q["value"]
    return np.nan if v is None else (np.inf if v == "inf" else float(v))


def plot_polymer(summary: dict, directory) -> list[Path]:
    """Write the figures of a summary dict as PNGs into ``directory``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, f in polymer_figures(summary).items():
        paths.append(out / f"{name}.png")
        f.savefig(paths[-1], dpi=110)
        plt.close(f)
    return paths


def polymer_figures(summary: dict) -> dict:
    """The figures of a summary dict: {name: matplotlib Figure} (not saved)."""
    import matplotlib.pyplot as plt

    figs = {}
    groups = summary["groups"]

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    titles = dict(bond_length="bond length (Å)", bond_angle="bond angle θ (deg)",
                  dihedral="dihedral φ (deg, trans = 180)", ree="end-to-end distance R_ee (Å)")
    for ax, name in zip(axes.flat, titles):
        for lab, g in groups.items():
            dist = g["distributions"].get(name)
            if dist:
                e = _arr(dist["edges"])
                ax.stairs(_arr(dist["density"]), e, label=lab)
        ax.set_xlabel(titles[name])
        ax.set_ylabel("probability density")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    figs["distributions"] = fig

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for lab, g in groups.items():
        idd = g["internal_distances"]
        n, r2 = _arr(idd["n"])[1:], _arr(idd["R2"])[1:]
        a1.loglog(n, np.sqrt(r2), "o", ms=3, label=f"{lab}")
        nu = _val(g["nu"])
        lo, hi = g["flory_range"]
        if np.isfinite(nu):
            m = (n >= lo) & (n <= hi)
            if m.any():
                k = np.flatnonzero(m)[len(np.flatnonzero(m)) // 2]
                a1.loglog(n[m], np.sqrt(r2[k]) * (n[m] / n[k]) ** nu, "-", label=f"ν = {nu:.3f}")
        cr = g["characteristic_ratio_n"]
        a2.plot(_arr(cr["n"]), _arr(cr["C"]), label=lab)
    a1.set_xlabel("|i − j|")
    a1.set_ylabel("R(|i − j|) (Å)")
    a1.legend(fontsize=8)
    a2.set_xlabel("n")
    a2.set_ylabel("C(n) = R²(n) / (n⟨b²⟩)")
    fig.tight_layout()
    figs["scaling"] = fig

    fig, ax = plt.subplots(figsize=(5, 4))
    for lab, g in groups.items():
        acf = g["bond_acf"]
        s, c = _arr(acf["s"]), _arr(acf["C"])
        ax.plot(s, c, "o", ms=3, label=lab)
        lp = _val(g["lp_acf"])
        if np.isfinite(lp) and lp > 0:
            ax.plot(s, np.exp(-s / lp), "-", label=f"exp(−s/l_p), l_p = {lp:.3g} Å")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_xlabel("s = n⟨b⟩ (Å)")
    ax.set_ylabel("⟨b̂_i · b̂_{i+n}⟩")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figs["bond_acf"] = fig

    fig, ax = plt.subplots(figsize=(6, 4))
    for lab, g in groups.items():
        ts = g["timeseries"]
        ax.plot(_arr(ts["time"]), _arr(ts["rg"]), label=f"R_g {lab}")
        ax.plot(_arr(ts["time"]), _arr(ts["ree"]), "--", label=f"R_ee {lab}")
    ax.set_xlabel("time (fs)")
    ax.set_ylabel("chain average (Å)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figs["timeseries"] = fig

    msd = summary.get("msd")
    if msd:
        fig, ax = plt.subplots(figsize=(5, 4))
        t = _arr(msd["time"])
        for key in ("com", "monomer"):
            if msd.get(key):
                m = _arr(msd[key]["msd"])
                D = _val(msd[key]["D"])
                ax.loglog(t[1:], m[1:], label=f"{key}: D = {D:.3g} Å²/fs")
                i0, i1 = msd[key]["fit_indices"]
                ax.loglog(t[i0:i1], 6 * D * t[i0:i1], "k:", lw=1)
        ax.set_xlabel("lag time (fs)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figs["msd"] = fig

    rdf = summary.get("rdf")
    if rdf:
        fig, ax = plt.subplots(figsize=(5, 4))
        r = _arr(rdf["r"])
        for key in ("g_total", "g_inter", "g_intra"):
            ax.plot(r, _arr(rdf[key]), label=key)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figs["rdf"] = fig

    fs = summary.get("flory_from_sizes")
    if fs:
        fig, ax = plt.subplots(figsize=(5, 4))
        N, rg2 = _arr(fs["N"]), _arr(fs["rg2"])
        ax.loglog(N, np.sqrt(rg2), "o")
        nu, a = _val(fs["nu"]), _val(fs["prefactor"])
        ax.loglog(N, a * N ** nu, "-", label=f"ν = {nu:.3f}")
        ax.set_xlabel("N (backbone beads)")
        ax.set_ylabel("⟨R_g²⟩^{1/2} (Å)")
        ax.legend()
        fig.tight_layout()
        figs["flory_sizes"] = fig
    return figs
