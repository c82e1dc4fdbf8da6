"""Side-by-side comparison of a reference (e.g. atomistic mapped to CG) and a candidate (e.g. CG
model) — distributions, curves and scalar quantities.

The API works on plain objects so any analysis can use it (polymer analysis, force-matching
validation, case studies):

* :class:`Distribution` — a histogram (edges, probability density) of one observable;
* :class:`Curve` — y(x) with optional error bars (RDF, R(|i−j|), MSD, bond ACF);
* scalars — ``{"value": v, "error": e, "unit": u}`` dicts (cgkit's summary format) or numbers.

:class:`Comparison` takes two dicts ``{name: Distribution | Curve | scalar}`` and computes the
Jensen–Shannon divergence of every common distribution, the RMS and maximum deviation of every
common curve (on the overlap of their x ranges), and the ratio candidate/reference (with error
propagated from both error bars) plus the z-score of every common scalar.
:meth:`Comparison.from_summaries` builds both sides from two ``summary.json`` files written by
``cgkit polymer``.

Jensen–Shannon divergence (base 2, in [0, 1]): JS(P, Q) = ½ KL(P‖M) + ½ KL(Q‖M), M = (P + Q)/2,
evaluated on bin probabilities. Histograms on different grids are first re-binned onto the union
of both grids by integrating their piecewise-constant densities exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cgkit.errors import InputError
from cgkit.stats import Distribution, js_divergence, rebin  # noqa: F401  (one home: cgkit.stats)

__all__ = ["Distribution", "Curve", "js_divergence", "rebin", "ratio", "Comparison"]


@dataclass
class Curve:
    """y(x) with optional error bars; units for x and y."""

    x: np.ndarray
    y: np.ndarray
    yerr: np.ndarray | None = None
    xunit: str = ""
    yunit: str = ""
    log: bool = False           # plot on log–log axes

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=float)
        self.y = np.asarray(self.y, dtype=float)
        if self.x.shape != self.y.shape or self.x.ndim != 1:
            raise InputError(f"a Curve needs 1-D x and y of equal length; got {self.x.shape}, {self.y.shape}")
        if self.yerr is not None:
            self.yerr = np.asarray(self.yerr, dtype=float)


def _scalar(v):
    """(value, error, unit) from a summary scalar dict, a (value, error) pair or a number."""
    if isinstance(v, dict):
        val, err = v.get("value"), v.get("error")
        conv = lambda z: np.nan if z is None else (np.inf if z == "inf" else float(z))  # noqa: E731
        return conv(val), conv(err), v.get("unit", "")
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return float(v[0]), float(v[1]), ""
    return float(v), np.nan, ""


def ratio(a, sa, b, sb) -> tuple[float, float]:
    """b / a with first-order propagated error (independent errors sa, sb)."""
    r = b / a if a != 0 else np.nan
    terms = [(sa / a) ** 2 if np.isfinite(sa) and a != 0 else 0.0,
             (sb / b) ** 2 if np.isfinite(sb) and b != 0 else 0.0]
    known = np.isfinite(sa) or np.isfinite(sb)
    return float(r), float(abs(r) * np.sqrt(sum(terms))) if known else float("nan")


@dataclass
class Comparison:
    """Compare ``candidate`` against ``reference`` (dicts name → Distribution | Curve | scalar).

    ``labels`` name the two sides in plots and JSON (default atomistic vs CG). After
    :meth:`run`: ``results = {"distributions": {name: {js_divergence, mean_reference,
    mean_candidate}}, "curves": {name: {rms_difference, max_abs_difference, relative_rms}},
    "scalars": {name: {reference, candidate, ratio, ratio_error, z_score, unit}}}``.
    """

    reference: dict
    candidate: dict
    labels: tuple = ("atomistic", "CG")
    results: dict = field(default_factory=dict)

    def run(self):
        ref, cand = self.reference, self.candidate
        common = [k for k in ref if k in cand]
        if not common:
            raise InputError("the two sides share no quantity to compare: check that they come from "
                             "the same kind of analysis (and the same chain species names)")
        out = dict(distributions={}, curves={}, scalars={})
        for k in common:
            a, b = ref[k], cand[k]
            if isinstance(a, Distribution) and isinstance(b, Distribution):
                out["distributions"][k] = dict(js_divergence=js_divergence(a, b), mean_reference=a.mean(),
                                               mean_candidate=b.mean(), unit=a.unit)
            elif isinstance(a, Curve) and isinstance(b, Curve):
                lo, hi = max(a.x.min(), b.x.min()), min(a.x.max(), b.x.max())
                xs = a.x[(a.x >= lo) & (a.x <= hi)]
                if len(xs) == 0:
                    continue
                ya, yb = np.interp(xs, a.x, a.y), np.interp(xs, b.x, b.y)
                ok = np.isfinite(ya) & np.isfinite(yb)
                diff = yb[ok] - ya[ok]
                scale = np.sqrt(np.mean(ya[ok] ** 2)) if ok.any() else np.nan
                out["curves"][k] = dict(rms_difference=float(np.sqrt(np.mean(diff ** 2))) if ok.any() else np.nan,
                                        max_abs_difference=float(np.abs(diff).max()) if ok.any() else np.nan,
                                        relative_rms=float(np.sqrt(np.mean(diff ** 2)) / scale) if scale else np.nan,
                                        unit=a.yunit)
            elif not isinstance(a, (Distribution, Curve)) and not isinstance(b, (Distribution, Curve)):
                va, ea, ua = _scalar(a)
                vb, eb, _ = _scalar(b)
                r, re = ratio(va, ea, vb, eb)
                sig = np.sqrt(np.nansum([ea ** 2, eb ** 2])) if (np.isfinite(ea) or np.isfinite(eb)) else np.nan
                z = (vb - va) / sig if sig and np.isfinite(sig) and sig > 0 else np.nan
                out["scalars"][k] = dict(reference=va, reference_error=ea, candidate=vb,
                                         candidate_error=eb, ratio=r, ratio_error=re,
                                         z_score=float(z), unit=ua)
        self.results = out
        return self

    def to_json(self, path=None) -> str:
        from cgkit.jsonutil import jsonable
        text = json.dumps(jsonable(dict(labels=list(self.labels), **self.results)), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def plot(self, outdir=None) -> dict:
        """One overlaid figure per distribution and curve (JS divergence in the title), and a
        bar chart of the scalar ratios. Saved as PNG in ``outdir`` when given."""
        import matplotlib
        if outdir is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        figs = {}
        la, lb = self.labels
        for k, res in self.results.get("distributions", {}).items():
            a, b = self.reference[k], self.candidate[k]
            fig, ax = plt.subplots(figsize=(5, 3.6))
            ax.stairs(a.density, a.edges, label=la)
            ax.stairs(b.density, b.edges, label=lb)
            ax.set_xlabel(f"{k} ({a.unit})" if a.unit else k)
            ax.set_ylabel("probability density")
            ax.set_title(f"JS divergence = {res['js_divergence']:.3g} bit", fontsize=9)
            ax.legend()
            fig.tight_layout()
            figs[k] = fig
        for k in self.results.get("curves", {}):
            a, b = self.reference[k], self.candidate[k]
            fig, ax = plt.subplots(figsize=(5, 3.6))
            for c, lab in ((a, la), (b, lb)):
                ax.errorbar(c.x, c.y, yerr=c.yerr, label=lab, ms=2, marker="o", lw=1)
            if a.log:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(f"x ({a.xunit})" if a.xunit else "x")
            ax.set_ylabel(f"{k} ({a.yunit})" if a.yunit else k)
            ax.legend()
            fig.tight_layout()
            figs[k] = fig
        sc = self.results.get("scalars", {})
        if sc:
            names = list(sc)
            fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
            r = np.array([sc[n]["ratio"] for n in names], dtype=float)
            e = np.array([sc[n]["ratio_error"] for n in names], dtype=float)
            ax.barh(names, r, xerr=np.where(np.isfinite(e), e, 0), color="C1")
            ax.axvline(1.0, color="k", lw=1)
            ax.set_xlabel(f"ratio {lb} / {la}")
            fig.tight_layout()
            figs["ratios"] = fig
        if outdir is not None:
            out = Path(outdir)
            out.mkdir(parents=True, exist_ok=True)
            for name, f in figs.items():
                f.savefig(out / f"compare_{name.replace('/', '_').replace(':', '_')}.png", dpi=110)
                plt.close(f)
        return figs

    @classmethod
    def from_summaries(cls, reference, candidate, labels=("atomistic", "CG")):
        """Both sides from ``cgkit polymer`` summaries (paths to summary.json or dicts). Chain
        species are matched by name; when each side has one species they are matched whatever
        their names (atomistic-mapped and CG trajectories often name residues differently)."""
        sa, sb = (json.loads(Path(s).read_text()) if not isinstance(s, dict) else s
                  for s in (reference, candidate))
        ga, gb = sa["groups"], sb["groups"]
        single = len(ga) == 1 and len(gb) == 1
        return cls(polymer_comparables(sa, single), polymer_comparables(sb, single), labels)


SCALARS = ("rg", "rg2", "ree", "ree2", "ree2_over_rg2", "C_n", "asphericity", "kappa2", "bond_length",
           "nu", "lp_acf", "lp_wlc", "trans_fraction", "gauche_plus_fraction", "gauche_minus_fraction")


def polymer_comparables(summary: dict, drop_labels: bool = False) -> dict:
    """Distributions, curves and scalars of a polymer summary keyed ``species/quantity``
    (``quantity`` alone when ``drop_labels``)."""
    def arr(x):
        return np.array([np.nan if v is None else v for v in x], dtype=float)
    out = {}
    for lab, g in summary["groups"].items():
        pre = "" if drop_labels else f"{lab}/"
        for k in SCALARS:
            if k in g:
                out[pre + k] = g[k]
        for k, d in g.get("distributions", {}).items():
            try:
                out[pre + k] = Distribution(d["edges"], d["density"], d.get("unit", ""))
            except InputError:
                pass
        idd = g["internal_distances"]
        out[pre + "R2_internal"] = Curve(arr(idd["n"])[1:], arr(idd["R2"])[1:], arr(idd["R2_error"])[1:],
                                         "|i-j|", "Å^2", log=True)
        acf = g["bond_acf"]
        out[pre + "bond_acf"] = Curve(arr(acf["n"]), arr(acf["C"]), arr(acf["C_error"]), "n", "1")
    if summary.get("rdf"):
        r = summary["rdf"]
        for k in ("g_total", "g_inter", "g_intra"):
            out["rdf_" + k] = Curve(arr(r["r"]), arr(r[k]), None, "Å", "1")
    if summary.get("msd"):
        m = summary["msd"]
        for k in ("com", "monomer"):
            if m.get(k):
                out[f"msd_{k}"] = Curve(arr(m["time"]), arr(m[k]["msd"]), arr(m[k]["msd_error"]), "fs", "Å^2", log=True)
                out[f"D_{k}"] = m[k]["D"]
    return out
