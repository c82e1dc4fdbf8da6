"""Structure of one-site (CG) water and other simple liquids: RDF, triplet angles within the
first shell, tetrahedral order parameter q, number density / mass density.

:class:`WaterStructure` loops over frames of bead positions (Å) in orthorhombic boxes:

- ``rdf``: g(r) of all bead pairs (ideal-gas normalised with each frame's volume), 0..r_max;
- ``triplet_angle``: distribution of the angle θ_jik (degrees) over all pairs j, k of neighbours
  of i with r_ij, r_ik < ``r_shell`` (the first shell: first minimum of g(r), 3.3 Å for SPC/E
  centres of mass) — the "O–O–O triplet angle" of water;
- ``q``: the tetrahedral order parameter of Errington & Debenedetti (Nature 2001), with the
  four nearest neighbours j, k of i: q_i = 1 − 3/8 Σ_{j<k} (cos ψ_jik + 1/3)²; q = 1 for a
  perfect tetrahedron, ⟨q⟩ = 0 for an ideal gas; its distribution and mean;
- ``density``: number density (Å⁻³) and, given the bead mass, the mass density (g/cm³).

``compare(reference, candidate)`` returns JS divergences of the distributions, the RDF's
first-peak height and position, and the differences of the means. Units: Å, degrees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cgkit.errors import InputError
from cgkit.results import Analysis, Results
from cgkit.stats import Distribution, js_divergence

__all__ = ["WaterStructure", "compare_structures", "tetrahedral_q", "triplet_angles"]

AMU_PER_A3_IN_G_CM3 = 1.66053906660  # 1 amu/Å³ in g/cm³


def _box_lengths(box):
    b = np.asarray(box, dtype=float)
    if b.shape == (3, 3):
        if np.abs(b - np.diag(np.diag(b))).max() > 1e-6:
            raise InputError("WaterStructure needs orthorhombic boxes")
        b = np.diag(b)
    if b.shape != (3,) or np.any(b <= 0) or not np.all(np.isfinite(b)):
        raise InputError(f"box {np.asarray(box).tolist()} is not three positive lengths (Å)")
    return b


def triplet_angles(x, box, r_shell: float) -> np.ndarray:
    """Angles θ_jik (degrees) over all pairs j < k of neighbours of every i within ``r_shell``."""
    from scipy.spatial import cKDTree
    L = _box_lengths(box)
    x = np.mod(np.asarray(x, dtype=float), L)
    tree = cKDTree(x, boxsize=L)
    pairs = tree.query_pairs(r_shell, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0)
    i = np.r_[pairs[:, 0], pairs[:, 1]]
    j = np.r_[pairs[:, 1], pairs[:, 0]]
    d = x[j] - x[i]
    d -= L * np.round(d / L)
    u = d / np.linalg.norm(d, axis=1)[:, None]
    order = np.argsort(i, kind="stable")
    i, u = i[order], u[order]
    counts = np.bincount(i, minlength=len(x))
    start = np.r_[0, np.cumsum(counts)[:-1]]
    out = []
    for c in np.unique(counts):
        if c < 2:
            continue
        centres = np.where(counts == c)[0]
        idx = start[centres][:, None] + np.arange(c)[None, :]
        U = u[idx]                                           # (m, c, 3)
        cos = np.einsum("mja,mka->mjk", U, U)
        a, b = np.triu_indices(c, 1)
        out.append(cos[:, a, b].ravel())
    if not out:
        return np.zeros(0)
    return np.degrees(np.arccos(np.clip(np.concatenate(out), -1.0, 1.0)))


def tetrahedral_q(x, box) -> np.ndarray:
    """(n,) Errington–Debenedetti q of every bead from its four nearest neighbours."""
    from scipy.spatial import cKDTree
    L = _box_lengths(box)
    x = np.mod(np.asarray(x, dtype=float), L)
    tree = cKDTree(x, boxsize=L)
    _, nb = tree.query(x, k=5)
    nb = nb[:, 1:]
    d = x[nb] - x[:, None, :]
    d -= L * np.round(d / L)
    u = d / np.linalg.norm(d, axis=2)[..., None]
    cos = np.einsum("nja,nka->njk", u, u)
    a, b = np.triu_indices(4, 1)
    return 1.0 - 3.0 / 8.0 * ((cos[:, a, b] + 1.0 / 3.0) ** 2).sum(1)


class WaterStructure(Analysis):
    """Structure of a one-site liquid over frames.

    frames: iterable of (positions (n, 3) Å, box (3,) or (3, 3) Å); bead_mass: amu (for the
    mass density; None: number density only); r_max: RDF range, Å; r_shell: first-shell radius
    for triplet angles, Å. ``run()`` fills ``results`` (see the module docstring)."""

    def __init__(self, frames, *, bead_mass: float | None = 18.0153, r_max: float = 10.0,
                 r_shell: float = 3.3, rdf_bins: int = 200, angle_bins: int = 90, q_bins: int = 60,
                 label: str = ""):
        self.frames = frames
        self.bead_mass = bead_mass
        self.r_max = float(r_max)
        self.r_shell = float(r_shell)
        self.rdf_bins, self.angle_bins, self.q_bins = rdf_bins, angle_bins, q_bins
        self.label = label
        self.results = Results()

    def run(self) -> "WaterStructure":
        from scipy.spatial import cKDTree
        r_edges = np.linspace(0, self.r_max, self.rdf_bins + 1)
        a_edges = np.linspace(0, 180, self.angle_bins + 1)
        q_edges = np.linspace(-1.5, 1.0, self.q_bins + 1)
        h_r = np.zeros(self.rdf_bins)
        h_a = np.zeros(self.angle_bins)
        h_q = np.zeros(self.q_bins)
        ideal = np.zeros(self.rdf_bins)
        nf = 0
        rho, qmean, nshell = [], [], []
        shell_vol = 4.0 / 3.0 * np.pi * (r_edges[1:] ** 3 - r_edges[:-1] ** 3)
        for x, box in self.frames:
            L = _box_lengths(box)
            x = np.asarray(x, dtype=float)
            if x.ndim != 2 or x.shape[1] != 3 or not np.all(np.isfinite(x)):
                raise InputError(f"frame {nf}: positions must be finite (n, 3) Å")
            if 2 * self.r_max > L.min():
                raise InputError(f"frame {nf}: r_max {self.r_max} Å exceeds half the box {L.min()} Å")
            n = len(x)
            xw = np.mod(x, L)
            tree = cKDTree(xw, boxsize=L)
            pr = tree.query_pairs(self.r_max, output_type="ndarray")
            d = xw[pr[:, 0]] - xw[pr[:, 1]]
            d -= L * np.round(d / L)
            r = np.linalg.norm(d, axis=1)
            h_r += 2 * np.histogram(r, r_edges)[0]
            vol = float(np.prod(L))
            ideal += n * (n - 1) / vol * shell_vol
            nshell.append(2 * np.sum(r < self.r_shell) / n)
            ang = triplet_angles(xw, L, self.r_shell)
            h_a += np.histogram(ang, a_edges)[0]
            q = tetrahedral_q(xw, L)
            h_q += np.histogram(q, q_edges)[0]
            qmean.append(float(q.mean()))
            rho.append(n / vol)
            nf += 1
        if nf == 0:
            raise InputError("no frames for the water structure analysis")
        g = h_r / ideal
        rc = 0.5 * (r_edges[1:] + r_edges[:-1])
        k = int(np.argmax(g))
        rho = np.asarray(rho)
        self._dists = {"triplet_angle": Distribution(a_edges, h_a / max(h_a.sum(), 1) / np.diff(a_edges)
                                                     if h_a.sum() else np.ones(len(h_a)), unit="deg"),
                       "q": Distribution(q_edges, h_q / h_q.sum() / np.diff(q_edges), unit="")}
        self.results = Results({
            "label": self.label, "frames": nf, "units": {"r": "Å", "angle": "deg", "density": "g/cm^3"},
            "rdf": {"r": rc.tolist(), "g": g.tolist()},
            "rdf_first_peak": {"r": float(rc[k]), "g": float(g[k])},
            "first_shell": {"r_shell": self.r_shell, "mean_neighbours": float(np.mean(nshell))},
            "triplet_angle": {"edges": a_edges.tolist(), "density": self._dists["triplet_angle"].density.tolist(),
                              "mean": float((0.5 * (a_edges[1:] + a_edges[:-1]) * h_a).sum() / max(h_a.sum(), 1))},
            "q": {"edges": q_edges.tolist(), "density": self._dists["q"].density.tolist(),
                  "mean": float(np.mean(qmean)),
                  "stderr": float(np.std(qmean, ddof=1) / np.sqrt(nf)) if nf > 1 else None},
            "number_density_per_A3": float(rho.mean()),
            "mass_density_g_cm3": (float(rho.mean() * self.bead_mass * AMU_PER_A3_IN_G_CM3)
                                   if self.bead_mass else None),
        })
        return self

    def distribution(self, name: str) -> Distribution:
        """The triplet-angle ('triplet_angle') or q ('q') histogram as a Distribution."""
        return self._dists[name]

    def summary(self) -> dict:
        r = dict(self.results)
        return {k: r[k] for k in ("label", "frames", "rdf_first_peak", "first_shell",
                                  "number_density_per_A3", "mass_density_g_cm3")} | {
            "q_mean": r["q"]["mean"], "triplet_angle_mean": r["triplet_angle"]["mean"]}

    def plot(self, directory) -> list[Path]:
        return plot_structures({self.label or "structure": self}, directory)


def compare_structures(reference: WaterStructure, candidate: WaterStructure) -> dict:
    """JS divergences (bits) of the triplet-angle and q distributions, RDF first-peak height
    ratio and position shift, RMS g(r) deviation, and differences of ⟨q⟩ and density."""
    a, b = reference.results, candidate.results
    ga, gb = np.asarray(a["rdf"]["g"]), np.asarray(b["rdf"]["g"])
    if len(ga) != len(gb):
        raise InputError("compare structures computed on the same RDF grid")
    out = {
        "triplet_angle_js": js_divergence(reference.distribution("triplet_angle"),
                                          candidate.distribution("triplet_angle")),
        "q_js": js_divergence(reference.distribution("q"), candidate.distribution("q")),
        "rdf_first_peak_ratio": b["rdf_first_peak"]["g"] / a["rdf_first_peak"]["g"],
        "rdf_first_peak_shift_A": b["rdf_first_peak"]["r"] - a["rdf_first_peak"]["r"],
        "rdf_rms_deviation": float(np.sqrt(np.mean((ga - gb) ** 2))),
        "q_mean_difference": b["q"]["mean"] - a["q"]["mean"],
        "mean_neighbours_difference": (b["first_shell"]["mean_neighbours"]
                                       - a["first_shell"]["mean_neighbours"]),
    }
    if a["mass_density_g_cm3"] and b["mass_density_g_cm3"]:
        out["density_ratio"] = b["mass_density_g_cm3"] / a["mass_density_g_cm3"]
    return out


def plot_structures(structures: dict, directory) -> list[Path]:
    """RDF, triplet-angle and q plots of several WaterStructure results in one figure each."""
    from cgkit.plotting import pyplot, savefig
    plt = pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, xlabel in (("rdf", "r (Å)"), ("triplet_angle", "θ (deg)"), ("q", "q")):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for lab, s in structures.items():
            r = s.results
            if name == "rdf":
                ax.plot(r["rdf"]["r"], r["rdf"]["g"], label=lab)
                ax.set_ylabel("g(r)")
            else:
                e = np.asarray(r[name]["edges"])
                ax.plot(0.5 * (e[1:] + e[:-1]), r[name]["density"], label=lab)
                ax.set_ylabel("probability density")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = directory / f"{name}.png"
        savefig(fig, p)
        plt.close(fig)
        paths.append(p)
    return paths
