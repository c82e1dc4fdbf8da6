"""Structural validation of a CG model: CG MD vs the mapped atomistic reference.

For every bond, angle and dihedral type the distributions of the internal coordinate, and for
every bead-type pair the radial distribution function g(r) (non-excluded pairs only), are
histogrammed for both trajectories; the summary gives the Jensen–Shannon divergence (base 2,
0 = identical, 1 = disjoint; :func:`cgkit.stats.js_divergence`) of every distribution,
the JS divergence of the pair-distance distributions r² g(r) and the RMS deviation of g(r),
plus the bead number densities. :meth:`StructuralValidation.plot` writes overlay PNGs.

Units: distances Å, angles degrees, densities beads/Å³.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..neighbors import neighbor_list
from ..results import Analysis, Results
from ..topology import Topology
from .geometry import as_cell, bonded_x, type_key, type_label

__all__ = ["StructuralValidation", "rdf", "bonded_samples", "outside_fraction"]


def _frames(positions, boxes, n_beads):
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[1:] != (n_beads, 3):
        raise InputError(f"positions must be (n_frames, {n_beads}, 3), got {pos.shape}")
    if boxes is None:
        bx = [None] * len(pos)
    else:
        b = np.asarray(boxes, dtype=np.float64)
        bx = [b] * len(pos) if (b.ndim == 1 or b.shape == (3, 3)) else list(b)
        if len(bx) != len(pos):
            raise InputError(f"{len(bx)} boxes for {len(pos)} frames")
    return pos, bx


def bonded_samples(kind: str, positions, boxes, names, topology: Topology) -> dict:
    """{type tuple: samples (Å or degrees)} of all bonds/angles/dihedrals over the frames."""
    idx = getattr(topology, kind + "s")
    if len(idx) == 0:
        return {}
    pos, bx = _frames(positions, boxes, topology.n_particles)
    keys = [type_key(kind, tuple(names[a] for a in row)) for row in idx]
    out = {k: [] for k in sorted(set(keys))}
    idx_t = torch.as_tensor(idx)
    keys_arr = np.array(["|".join(k) for k in keys])
    for p, b in zip(pos, bx):
        cell, pbc = as_cell(b)
        x = bonded_x(kind, torch.as_tensor(p), idx_t, torch.as_tensor(cell), torch.as_tensor(pbc)).numpy()
        if kind != "bond":
            x = np.degrees(x)
        for k in out:
            out[k].append(x[keys_arr == "|".join(k)])
    return {k: np.concatenate(v) for k, v in out.items()}


def rdf(positions, boxes, names, topology: Topology | None, r_max: float, n_bins: int = 100,
        details: bool = False):
    """g(r) per bead-type pair (non-excluded pairs): {(A, B): g (n_bins,)}, bin edges (Å) and
    the mean number density (beads/Å³). Normalisation: ideal-gas pair count N_A N_B (or
    N_A(N_A-1)/2) · shell volume / V per frame. ``details=True`` appends {(A, B): {"r_min":
    closest approach Å, "n": pair samples within r_max, "r": None}} (for range checks)."""
    n = len(names)
    pos, bx = _frames(positions, boxes, n)
    names = np.asarray(names)
    types = sorted(set(names.tolist()))
    t_of = np.array([types.index(t) for t in names])
    counts_t = np.bincount(t_of, minlength=len(types))
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = {}
    info = {}
    vol_sum = 0.0
    for p, b in zip(pos, bx):
        cell, pbc = as_cell(b)
        if not pbc.all():
            raise InputError("RDFs need a periodic box in every frame")
        ei, S = neighbor_list(p, cell, pbc, r_max)
        i, j = ei
        keep = i < j
        i, j, S = i[keep], j[keep], S[keep]
        if topology is not None and len(topology.exclusions):
            ex = topology.exclusion_mask(torch.as_tensor(i), torch.as_tensor(j)).numpy()
            i, j, S = i[~ex], j[~ex], S[~ex]
        r = np.linalg.norm(p[j] - p[i] + S @ cell, axis=1)
        a, c = np.minimum(t_of[i], t_of[j]), np.maximum(t_of[i], t_of[j])
        V = abs(np.linalg.det(cell))
        vol_sum += V
        for ta in range(len(types)):
            for tb in range(ta, len(types)):
                sel = (a == ta) & (c == tb)
                h, _ = np.histogram(r[sel], bins=edges)
                n_pairs = counts_t[ta] * (counts_t[ta] - 1) / 2 if ta == tb else counts_t[ta] * counts_t[tb]
                shell = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
                key = (types[ta], types[tb])
                hist[key] = hist.get(key, 0.0) + h / np.maximum(n_pairs * shell / V, 1e-300)
                if details:
                    d = info.setdefault(key, {"r_min": math.inf, "n": 0, "r": []})
                    rs = r[sel]
                    d["n"] += len(rs)
                    if len(rs):
                        d["r_min"] = min(d["r_min"], float(rs.min()))
                        d["r"].append(np.sort(rs)[:1000])  # the closest pairs (range checks)
    g = {k: v / len(pos) for k, v in hist.items()}
    if details:
        for d in info.values():
            d["r"] = np.sort(np.concatenate(d["r"])) if d["r"] else np.zeros(0)
        return g, edges, n * len(pos) / vol_sum, info
    return g, edges, n * len(pos) / vol_sum


def outside_fraction(reference, test, *, lower: bool = True, upper: bool = True) -> dict:
    """How much of ``test`` lies outside the range sampled by ``reference`` (1-D samples).

    Returns {"fraction", "count", "expected", "flagged", "range"}: ``expected`` is the count an
    identical distribution would put beyond the extremes of ``len(reference)`` samples
    (n_test · k/(n_ref + 1), k = number of open ends checked); ``flagged`` when the count exceeds
    expected + 3√expected + 3 (sampling where the reference has none: a CG model that leaves
    the atomistic range, e.g. into a false well of an extrapolated table)."""
    a = np.asarray(reference, dtype=float)
    b = np.asarray(test, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return {"fraction": None, "count": 0, "expected": None, "flagged": False, "range": None}
    lo, hi = float(a.min()), float(a.max())
    out = np.zeros(len(b), dtype=bool)
    if lower:
        out |= b < lo
    if upper:
        out |= b > hi
    count = int(out.sum())
    expected = len(b) * (int(lower) + int(upper)) / (len(a) + 1)
    return {"fraction": count / len(b), "count": count, "expected": expected,
            "flagged": bool(count > expected + 3 * math.sqrt(expected) + 3), "range": [lo, hi]}


def _pair_outside(ref, test) -> dict:
    """outside_fraction for pair distances: test pairs closer than the reference's closest."""
    if not ref or not test or ref["n"] == 0 or test["n"] == 0:
        return outside_fraction([], [])
    r_min = ref["r_min"]
    count = int((test["r"] < r_min).sum())
    expected = test["n"] / (ref["n"] + 1)
    return {"fraction": count / test["n"], "count": count, "expected": expected,
            "flagged": bool(count > expected + 3 * math.sqrt(expected) + 3), "range": [r_min, None]}


class StructuralValidation(Analysis):
    """Compare a CG trajectory (``test``) with the mapped reference (``reference``).

    reference_positions, test_positions : (n_frames, n_beads, 3) Å
    reference_boxes, test_boxes : per-frame or single boxes (see :func:`as_cell`), or None
    type_names, species : bead types (indices into type_names) — or ``names`` (n_beads,)
    topology : CG :class:`Topology` (bonded terms and exclusions)
    rdf_max : Å (default: 12); bins : histogram bins for every distribution

    ``run()`` fills ``results``: {"distributions": {label: {"js": float, "reference":
    Distribution, "test": Distribution}}, "rdf": {label: {"js": , "rms_g": , "r": , "g_ref":,
    "g_test":}}, "density": {...}}.
    """

    def __init__(self, reference_positions, test_positions, type_names, species, topology: Topology, *,
                 reference_boxes=None, test_boxes=None, rdf_max: float = 12.0, bins: int = 100):
        self.type_names = tuple(type_names)
        self.names = np.asarray(self.type_names)[np.asarray(species, dtype=np.int64)]
        self.topology = topology
        self.ref = (reference_positions, reference_boxes)
        self.test = (test_positions, test_boxes)
        self.rdf_max, self.bins = float(rdf_max), int(bins)
        self.results = Results()

    def run(self) -> "StructuralValidation":
        from cgkit.stats import Distribution, js_divergence
        res = {"distributions": {}, "rdf": {}, "density": {}}
        for kind in ("bond", "angle", "dihedral"):
            a = bonded_samples(kind, *self.ref, self.names, self.topology)
            b = bonded_samples(kind, *self.test, self.names, self.topology)
            for key in a:
                if key not in b or len(a[key]) == 0 or len(b[key]) == 0:
                    continue
                lo = min(a[key].min(), b[key].min())
                hi = max(a[key].max(), b[key].max())
                if kind == "angle":
                    lo, hi = max(0.0, lo), min(180.0, hi)
                if kind == "dihedral":
                    lo, hi = -180.0, 180.0
                unit = "Å" if kind == "bond" else "deg"
                da = Distribution.from_samples(a[key], bins=self.bins, range=(lo, hi), unit=unit)
                db = Distribution.from_samples(b[key], bins=self.bins, range=(lo, hi), unit=unit)
                res["distributions"][type_label(kind, key)] = {
                    "js": js_divergence(da, db), "reference": da, "test": db,
                    "mean_reference": float(a[key].mean()), "mean_test": float(b[key].mean()),
                    "outside_reference": (outside_fraction(a[key], b[key]) if kind != "dihedral" else
                                          outside_fraction([], []))}
        ref_box, test_box = self.ref[1], self.test[1]
        if ref_box is not None and test_box is not None:
            ga, edges, rho_a, ia = rdf(*self.ref, self.names, self.topology, self.rdf_max, self.bins, details=True)
            gb, _, rho_b, ib = rdf(*self.test, self.names, self.topology, self.rdf_max, self.bins, details=True)
            rc = 0.5 * (edges[1:] + edges[:-1])
            for key in ga:
                pa = Distribution.from_counts(edges, ga[key] * rc ** 2 + 1e-300)
                pb = Distribution.from_counts(edges, gb[key] * rc ** 2 + 1e-300)
                res["rdf"][type_label("pair", key)] = {
                    "js": js_divergence(pa, pb), "rms_g": float(np.sqrt(np.mean((ga[key] - gb[key]) ** 2))),
                    "r": rc, "g_reference": ga[key], "g_test": gb[key],
                    "outside_reference": _pair_outside(ia.get(key), ib.get(key))}
            res["density"] = {"reference_beads_per_A3": rho_a, "test_beads_per_A3": rho_b,
                              "relative_difference": (rho_b - rho_a) / rho_a if rho_a > 0 else None}
        self.results = Results(res)
        return self

    def summary(self) -> dict:
        """JS divergences, means and densities (strict-JSON ready: NaN → null)."""
        from ..jsonutil import jsonable
        r = self.results
        if not r:
            return {}
        flagged = sorted([k for k, v in r["distributions"].items() if v["outside_reference"]["flagged"]]
                         + [k for k, v in r["rdf"].items() if v["outside_reference"]["flagged"]])
        return jsonable({"distributions": {k: {"js_divergence": v["js"], "mean_reference": v["mean_reference"],
                                      "mean_test": v["mean_test"],
                                      "outside_reference": v["outside_reference"]}
                                           for k, v in r["distributions"].items()},
                "rdf": {k: {"js_divergence_r2g": v["js"], "rms_g": v["rms_g"],
                            "outside_reference": v["outside_reference"]} for k, v in r["rdf"].items()},
                "density": r["density"],
                "sampling_outside_reference": flagged,
                "note": "Jensen-Shannon divergence in bits (0 identical, 1 disjoint); angles in deg; "
                        "outside_reference: fraction/count of CG samples beyond the range the reference "
                        "samples (pairs: closer than its closest approach), flagged when well above "
                        "the count an identical distribution would give"})

    def plot(self, directory) -> list[Path]:
        """Overlay PNGs: ``distributions.png`` (bonded) and ``rdf.png`` (pairs)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .interaction import Interaction
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for name, items in (("distributions", self.results["distributions"]), ("rdf", self.results["rdf"])):
            if not items:
                continue
            n = len(items)
            fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.0), squeeze=False)
            for ax, (label, v) in zip(axes[0], items.items()):
                if name == "rdf":
                    ax.plot(v["r"], v["g_reference"], label="reference")
                    ax.plot(v["r"], v["g_test"], "--", label="CG")
                    ax.set_xlabel("r (Å)")
                    ax.set_ylabel("g(r)")
                else:
                    for key, ls in (("reference", "-"), ("test", "--")):
                        dist = v[key]
                        ax.plot(dist.centres, dist.density, ls, label="reference" if key == "reference" else "CG")
                    kind = Interaction.parse(label).kind
                    ax.set_xlabel(kind + (" (Å)" if kind == "bond" else " (deg)"))
                    ax.set_ylabel("probability density")
                ax.set_title(f"{label}\nJS = {v['js']:.2g}", fontsize=9)
                ax.legend(fontsize=7)
            fig.tight_layout()
            p = d / f"{name}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            out.append(p)
        return out
