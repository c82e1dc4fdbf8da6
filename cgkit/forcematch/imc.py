"""Inverse Monte Carlo (IMC) of tabulated CG potentials (Lyubartsev & Laaksonen, Phys. Rev. E
52, 3730 (1995)), with CG MD in cgkit or LAMMPS — the Newton-step sibling of IBI.

The potential of every iterated interaction is a table U_j on the bins j of its target
distribution (pair g(r), bond/angle/dihedral histograms; the grids of
:class:`~cgkit.forcematch.ibi.IterativeBoltzmannInversion`, whose targets, start, sampling,
scores and table update it shares). Let S_j be the number of pairs / bonded instances in bin j
of one configuration, so that the CG energy is E = Σ_j U_j S_j (+ terms not iterated). Then,
exactly, in the canonical ensemble

    ∂⟨S_i⟩/∂U_j = -β (⟨S_i S_j⟩ - ⟨S_i⟩⟨S_j⟩) = -β K_ij,

and one IMC iteration is the Newton step that makes the linearised ⟨S⟩ equal to the target
S*: ΔU = -kT K⁻¹ (S* - ⟨S⟩). K couples all bins of all iterated interactions (cross
correlations included), unlike IBI's bin-by-bin update; it also makes IMC need more
sampling (K from the frames of one CG run). Measured on Lennard-Jones liquids (docs/cg_md.md):
the first IMC step is about as good as IBI's, later ones drift at the repulsive edge, so IMC
does not converge in fewer iterations there.
As VOTCA's ``csg_imc_solve``, the step is regularised (Tikhonov):

    ΔU = -kT (K² + μ² I)⁻¹ K (S* - ⟨S⟩),  μ = ``regularization`` · (largest eigenvalue of K),

which leaves well-determined directions unchanged and suppresses those the run hardly
samples; then α damps it and ``max_step`` caps |ΔU| per bin (kT). Bins that are not
resolved in the target or in the run are continued by the edge rule of the Boltzmann
inversion, as in IBI.

Target counts: S*_j = P*_j · c_j with c_j the count per unit of the distribution in the CG
box (pairs: N_pairs · shell volume / V; bonded: instances per frame × bin width), so the
reference may come from frames of slightly different volume (g(r) is volume-normalised).

Units: Å, rad, eV, K, fs, GPa.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import InputError
from .geometry import type_label
from .ibi import IBI_DEFAULTS, IterativeBoltzmannInversion

__all__ = ["InverseMonteCarlo", "IMC_DEFAULTS", "imc_step"]

#: IMC settings (MD as IBI's; Newton step damping, Tikhonov regularisation, step cap in kT)
IMC_DEFAULTS = {**IBI_DEFAULTS, "alpha": 1.0, "regularization": 0.1, "max_step": 1.0, "sample_every": 25,
                "significance": 2.0}


def imc_step(S: np.ndarray, target: np.ndarray, kT: float, regularization: float = IMC_DEFAULTS["regularization"],
             significance: float = 0.0, n_blocks: int = 10):
    """The regularised IMC Newton step.

    S : (n_frames, m) per-frame bin counts of the CG run; target : (m,) target mean counts;
    kT : eV. Returns (ΔU (m,) eV, info dict). ΔU solves -β K ΔU = S* - ⟨S⟩ (K the covariance
    of S over the frames) in the Tikhonov sense, μ = ``regularization`` × the largest
    eigenvalue of K. With ``significance`` z > 0, only eigen-directions v of K whose residual
    |v·(S* - ⟨S⟩)| exceeds z times its statistical error (from ``n_blocks`` block averages of
    the frames, so correlated frames count as what they are) are followed: the others are
    noise, which the inverse of a small eigenvalue would amplify."""
    S = np.asarray(S, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64) - S.mean(0)
    K = np.cov(S, rowvar=False, ddof=1) if len(S) > 1 else np.zeros((S.shape[1], S.shape[1]))
    K = np.atleast_2d(K)
    w, V = np.linalg.eigh(0.5 * (K + K.T))
    w = np.clip(w, 0.0, None)
    mu = regularization * (w.max() if w.size and w.max() > 0 else 1.0)
    filt = w / (w * w + mu * mu)
    proj = V.T @ b
    keep = np.ones(len(w), dtype=bool)
    if significance > 0 and len(S) >= 2 * n_blocks:
        blocks = np.array([blk.mean(0) for blk in np.array_split(S, n_blocks)])
        err = np.sqrt(np.einsum("ij,jk,ki->i", V.T, np.atleast_2d(np.cov(blocks, rowvar=False)), V) / n_blocks)
        keep = np.abs(proj) > significance * err
    dU = -kT * (V @ (keep * filt * proj))
    return dU, {"mu": float(mu), "eigenvalue_max": float(w.max()) if w.size else 0.0,
                "n_effective": int(((w > mu) & keep).sum())}


class InverseMonteCarlo(IterativeBoltzmannInversion):
    """IMC of pair (and optionally bonded) tables; parameters as
    :class:`~cgkit.forcematch.ibi.IterativeBoltzmannInversion` (the CG system, the mapped
    reference, ``kinds``, the CG MD of every iteration, ``engine``, pressure correction), and

    alpha : Newton step damping in (0, 1] (default 1: the full step)
    regularization : Tikhonov μ relative to the largest eigenvalue of the count covariance
        (default 0.1; smaller follows the Newton step more closely, which pays only with long,
        well-decorrelated sampling: with 1e-2 and 300 frames 50 fs apart the first step on a
        Lennard-Jones liquid overshot)
    max_step : cap on |ΔU| per bin and iteration, kT (default 1)
    significance : follow only eigen-directions of K whose residual exceeds this many of its
        block-averaged standard errors (default 2; 0: all, as plain Tikhonov)

    The Newton system couples every resolved bin of every iterated interaction: it needs
    several times more CG frames than bins (``md_steps / sample_every``); a warning says
    when there are fewer.
    """

    _method = "IMC"

    def __init__(self, *args, regularization: float = IMC_DEFAULTS["regularization"],
                 max_step: float = IMC_DEFAULTS["max_step"], alpha: float = IMC_DEFAULTS["alpha"],
                 significance: float = IMC_DEFAULTS["significance"], **kw):
        if not (regularization > 0 and math.isfinite(regularization)):
            raise InputError(f"regularization must be > 0, got {regularization}")
        if not (max_step > 0):
            raise InputError(f"max_step must be > 0 kT, got {max_step}")
        kw.setdefault("sample_every", IMC_DEFAULTS["sample_every"])
        super().__init__(*args, alpha=alpha, **kw)
        self.regularization = float(regularization)
        self.significance = float(significance)
        self.max_step = float(max_step)

    # ------------------------------------------------------------------ counts per frame
    def _count_scale(self, key, x, frame0) -> np.ndarray:
        """c_j: per-frame count per unit of the distribution in bin j of ``key`` (CG box)."""
        V = abs(float(np.linalg.det(self.cell)))
        dx = np.diff(x).mean() if len(x) > 1 else 1.0
        if key[0] == "pair":
            a, b = key[1]
            na, nb = int((self.names == a).sum()), int((self.names == b).sum())
            n_pairs = na * (na - 1) / 2 if a == b else na * nb
            edges = np.append(x - 0.5 * dx, x[-1] + 0.5 * dx)
            shell = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
            return n_pairs * shell / V
        total = float(frame0[key].sum())   # bonded instances of this type per frame
        return np.full(len(x), total * dx)

    def frame_counts(self, positions, keys) -> tuple[np.ndarray, dict]:
        """(n_frames, Σ bins) bin counts S of every frame for the interactions ``keys`` (in
        order, the targets' bins), and {key: c_j}. Pair counts come from one half neighbour
        list per frame (:func:`cgkit.forcematch.pair_kernel.half_neighbor_list`), bonded ones
        from the IBI histograms."""
        from .pair_kernel import half_neighbor_list
        pos = np.asarray(positions, dtype=np.float64)
        _, counts0 = self._histograms(pos[:1], self.cell)
        scale = {k: self._count_scale(k, self.targets[k][0], counts0) for k in keys}
        pair_keys = [k for k in keys if k[0] == "pair"]
        bonded = [k for k in keys if k[0] != "pair"]
        types = sorted(set(self.names.tolist()))
        t_of = np.array([types.index(t) for t in self.names])
        rows = []
        for f in range(len(pos)):
            row = {}
            if pair_keys:
                i, j, S, _ = half_neighbor_list(pos[f], self.cell, True, self.pair_cutoff)
                i, j = i.astype(np.int64), j.astype(np.int64)
                if len(self.topology.exclusions):
                    import torch
                    ex = self.topology.exclusion_mask(torch.as_tensor(i), torch.as_tensor(j)).numpy()
                    i, j, S = i[~ex], j[~ex], S[~ex]
                r = np.linalg.norm(pos[f][j] - pos[f][i] + S.astype(np.float64) @ self.cell, axis=1)
                a, c = np.minimum(t_of[i], t_of[j]), np.maximum(t_of[i], t_of[j])
                for k in pair_keys:
                    x = self.targets[k][0]
                    dx = x[1] - x[0]
                    edges = np.append(x - 0.5 * dx, x[-1] + 0.5 * dx)
                    ta, tb = sorted((types.index(k[1][0]), types.index(k[1][1])))
                    row[k] = np.histogram(r[(a == ta) & (c == tb)], bins=edges)[0].astype(np.float64)
            if bonded:
                dists, _ = self._histograms(pos[f:f + 1], self.cell)
                for k in bonded:
                    row[k] = dists[k][1] * scale[k]
            rows.append(np.concatenate([row[k] for k in keys]))
        return np.array(rows), scale

    # ------------------------------------------------------------------ iteration
    def step(self) -> dict:
        """One IMC iteration: CG MD, per-frame counts, the regularised Newton step; returns the
        iteration record (scores of the potential before the update, as IBI's)."""
        it = len(self.history)
        pos, pressure = self._simulate(it)
        dists = self._distributions(pos, self.cell)
        rec = {"iteration": it, "scores": self._scores(dists), "pressure_GPa": pressure}
        keys = [k for k in self.targets if k[0] in self.kinds and k in dists]
        if not keys:
            self.history.append(rec)
            return rec
        S, scale = self.frame_counts(pos, keys)
        # resolved bins: target and run both above the density floor (as IBI)
        from .ibi import _EPS
        masks, sizes = [], []
        for k in keys:
            cur, target = dists[k][1], self.targets[k][1]
            ok = (cur > _EPS * cur.max()) & (target > _EPS * target.max())
            if ok.sum() < 3:
                warnings.warn(f"IMC iteration {it}: {type_label(*k)} has fewer than 3 bins resolved in both "
                              "the target and the CG run; its table is kept unchanged (sample longer)",
                              stacklevel=2)
                ok[:] = False
            masks.append(ok)
            sizes.append(len(ok))
        mask = np.concatenate(masks)
        target_S = np.concatenate([self.targets[k][1] * scale[k] for k in keys])
        n_bins = int(mask.sum())
        if len(S) < 2 * n_bins:
            warnings.warn(f"IMC iteration {it}: {len(S)} CG frames for {n_bins} coupled bins; the covariance "
                          "is poorly determined (the regularisation damps it): store frames more often "
                          "(sample_every) or run longer (md_steps)", stacklevel=2)
        dU_all = np.zeros(len(mask))
        info = {"mu": None, "eigenvalue_max": None, "n_effective": 0}
        if n_bins:
            d, info = imc_step(S[:, mask], target_S[mask], self.kT, self.regularization, self.significance)
            d = self.alpha * d
            cap = self.max_step * self.kT
            dU_all[mask] = np.clip(d, -cap, cap)
        start = 0
        for k, ok, m in zip(keys, masks, sizes):
            x = self.targets[k][0]
            if ok.any():
                U = self.tables[k](x)[0]
                self._apply_update(k, x, U, dU_all[start:start + m], ok, pressure)
            start += m
        rec["imc"] = {"n_frames": int(len(S)), "n_bins": n_bins, "regularization_mu": info["mu"],
                      "n_effective_directions": info["n_effective"],
                      "max_abs_dU_kT": float(np.abs(dU_all).max() / self.kT) if n_bins else 0.0}
        self.potential = self._potential()
        self.history.append(rec)
        return rec

    def summary(self) -> dict:
        s = super().summary()
        s.update(method="inverse Monte Carlo (Lyubartsev-Laaksonen), Tikhonov-regularised Newton steps",
                 regularization=self.regularization, max_step_kT=self.max_step, significance=self.significance)
        return s
