"""Committee uncertainty and its calibration on held-out data.

A committee (:class:`cgkit.ensemble.EnsemblePotential`) predicts, per structure, the spread of
its members' energies σ_E (eV) and, per atom, the spread of their forces
σ_F,i = sqrt(Σ_α Var_k F_iα) (eV/Å, the root of the summed per-component variances). Both are
invariant under rotations, reflections, translations and permutations by construction (a
variance of a scalar; the trace of a covariance of a vector).

A raw committee spread is usually too small or too large: members trained on the same data
agree more than they are right. :class:`Calibration` maps a raw σ to a calibrated one so that
the observed errors on held-out data match it:

* ``method="scale"``: σ_cal = s·σ with s² = ⟨err²/σ²⟩ (the maximum-likelihood scale of a
  Gaussian error model; for forces err² = |F_pred − F_ref|², whose expectation is σ_F² when
  the components are Gaussian with variances summing to σ_F²);
* ``method="isotonic"``: σ_cal² = g(σ) with g the non-decreasing least-squares fit of err² on
  σ (pool-adjacent-violators), interpolated linearly between knots and extended beyond them in
  proportion to σ (so an extrapolating committee stays flagged).

:class:`CalibrationAnalysis` (an :class:`cgkit.results.Analysis`) fits a calibration on
labelled held-out structures, reports calibration curves (RMS observed error against RMS
predicted σ in quantile bins of σ), the miscalibration area and the Gaussian negative
log-likelihood before and after, and draws the calibration and miscalibration figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import InputError
from .results import Analysis, Results

__all__ = ["Calibration", "CalibrationAnalysis", "committee_predictions", "calibration_curve"]

_METHODS = ("scale", "isotonic")
_TINY = 1e-300


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) least-squares fit of ``y`` (pool adjacent violators)."""
    vals, wts, counts = [], [], []
    for yi, wi in zip(y, w):
        vals.append(float(yi)); wts.append(float(wi)); counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, c2 = vals.pop(), wts.pop(), counts.pop()
            v1, w1, c1 = vals.pop(), wts.pop(), counts.pop()
            wt = w1 + w2
            vals.append((v1 * w1 + v2 * w2) / wt); wts.append(wt); counts.append(c1 + c2)
    return np.repeat(vals, counts)


@dataclass(frozen=True)
class _Map:
    """One quantity's map from raw σ to calibrated σ (see :class:`Calibration`)."""

    scale: float = 1.0
    knots_sigma: tuple = ()
    knots_var: tuple = ()

    def __call__(self, sigma):
        s = np.asarray(sigma, dtype=np.float64)
        if not self.knots_sigma:
            return self.scale * s
        xs, vs = np.asarray(self.knots_sigma), np.asarray(self.knots_var)
        var = np.interp(s, xs, vs)
        # beyond the last knot: grow in proportion to sigma; below the first: shrink likewise
        hi, lo = s > xs[-1], s < xs[0]
        var = np.where(hi, vs[-1] * (s / xs[-1]) ** 2, var)
        var = np.where(lo, vs[0] * (s / max(xs[0], _TINY)) ** 2, var)
        return np.sqrt(np.maximum(var, 0.0))

    def to_dict(self) -> dict:
        return {"scale": self.scale, "knots_sigma": list(self.knots_sigma),
                "knots_var": list(self.knots_var)}

    @classmethod
    def fit(cls, sigma: np.ndarray, err2: np.ndarray, method: str, what: str) -> "_Map":
        sigma = np.asarray(sigma, dtype=np.float64).ravel()
        err2 = np.asarray(err2, dtype=np.float64).ravel()
        ok = sigma > 0
        if ok.sum() < 2:
            raise InputError(f"cannot calibrate the {what} uncertainty: fewer than 2 held-out samples "
                             "with a non-zero committee spread (are the members identical? train them "
                             "with different seeds)")
        sigma, err2 = sigma[ok], err2[ok]
        scale = float(np.sqrt(np.mean(err2 / sigma**2)))
        if method == "scale":
            return cls(scale=scale)
        order = np.argsort(sigma, kind="stable")
        xs, ys = sigma[order], err2[order]
        # bin into at most 50 quantile groups first: a knot per sample overfits the noise
        n_bins = int(min(50, max(2, len(xs) // 10)))
        edges = np.linspace(0, len(xs), n_bins + 1).astype(int)
        bx = np.array([xs[a:b].mean() for a, b in zip(edges[:-1], edges[1:]) if b > a])
        by = np.array([ys[a:b].mean() for a, b in zip(edges[:-1], edges[1:]) if b > a])
        bw = np.array([b - a for a, b in zip(edges[:-1], edges[1:]) if b > a], dtype=float)
        fitted = _pav(by, bw)
        fitted = np.maximum(fitted, (scale * bx) ** 2 * 1e-6)  # never a zero σ
        return cls(scale=scale, knots_sigma=tuple(map(float, bx)), knots_var=tuple(map(float, fitted)))


@dataclass(frozen=True)
class Calibration:
    """Maps a committee's raw σ_E (eV) and σ_F (eV/Å, per atom) to calibrated values.

    ``Calibration()`` is the identity. Use :meth:`fit` (or :class:`CalibrationAnalysis`) to make
    one from held-out data; it is saved with an ensemble (``EnsemblePotential.calibration``)."""

    method: str = "scale"
    energy: _Map = field(default_factory=_Map)
    forces: _Map = field(default_factory=_Map)
    n_structures: int = 0
    n_atoms: int = 0

    def __post_init__(self):
        if self.method not in _METHODS:
            raise InputError(f"unknown calibration method {self.method!r}: use one of {', '.join(_METHODS)}")

    @property
    def is_identity(self) -> bool:
        return self.n_structures == 0

    def energy_std(self, sigma):
        """Calibrated energy uncertainty (eV) of raw committee spreads ``sigma`` (eV)."""
        return self.energy(sigma)

    def forces_std(self, sigma):
        """Calibrated per-atom force uncertainty (eV/Å) of raw spreads ``sigma`` (eV/Å)."""
        return self.forces(sigma)

    @classmethod
    def fit(cls, energy_std, energy_err, forces_std, forces_err, *, method: str = "scale",
            n_atoms_per_structure=None) -> "Calibration":
        """Fit from raw spreads and observed errors: ``energy_std``/``energy_err`` (G,) eV (energy
        errors per structure), ``forces_std`` (n,) eV/Å and ``forces_err`` (n,) = |ΔF_i| eV/Å."""
        if method not in _METHODS:
            raise InputError(f"unknown calibration method {method!r}: use one of {', '.join(_METHODS)}")
        e = _Map.fit(energy_std, np.square(energy_err), method, "energy")
        f = _Map.fit(forces_std, np.square(forces_err), method, "force")
        return cls(method=method, energy=e, forces=f, n_structures=int(np.size(energy_std)),
                   n_atoms=int(np.size(forces_std)))

    def to_dict(self) -> dict:
        return {"method": self.method, "energy": self.energy.to_dict(), "forces": self.forces.to_dict(),
                "n_structures": self.n_structures, "n_atoms": self.n_atoms}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Calibration":
        if not d:
            return cls()
        mk = lambda m: _Map(scale=float(m.get("scale", 1.0)), knots_sigma=tuple(m.get("knots_sigma", ())),
                            knots_var=tuple(m.get("knots_var", ())))
        return cls(method=d.get("method", "scale"), energy=mk(d.get("energy", {})),
                   forces=mk(d.get("forces", {})), n_structures=int(d.get("n_structures", 0)),
                   n_atoms=int(d.get("n_atoms", 0)))


def _reference(atoms, index: int) -> tuple[float, np.ndarray]:
    from .data import _targets_from_atoms
    t = _targets_from_atoms(atoms)
    if "energy" not in t or "forces" not in t:
        raise InputError(f"structure {index} of the held-out set has no reference energy and forces "
                         "(store them with a SinglePointCalculator or in extxyz energy=/forces)")
    return float(t["energy"][0]), t["forces"].numpy()


def committee_predictions(ensemble, structures: Sequence, *, raw: bool = True) -> dict:
    """Committee mean and spread on each structure.

    Returns ``energy`` (G,) eV, ``energy_std`` (G,) eV, ``forces`` (n,3) eV/Å, ``forces_std``
    (n,) eV/Å (atoms of all structures concatenated in order) and ``structure`` (n,) index;
    ``raw=True`` gives the uncalibrated spreads."""
    if not hasattr(ensemble, "compute_with_uncertainty"):
        raise InputError("uncertainty needs a committee (an EnsemblePotential, e.g. `cgkit train "
                         "--ensemble K`'s ensemble.pt)")
    E, Es, F, Fs, idx = [], [], [], [], []
    for g, atoms in enumerate(structures):
        graph = ensemble.graph(atoms)
        out = ensemble.compute_with_uncertainty(graph, calibrated=not raw)
        E.append(float(out["energy"][0])); Es.append(float(out["energy_std"][0]))
        F.append(out["forces"].detach().cpu().numpy().astype(np.float64))
        Fs.append(out["forces_std"].detach().cpu().numpy().astype(np.float64))
        idx.append(np.full(len(atoms), g))
    if not E:
        raise InputError("the held-out set is empty")
    return {"energy": np.array(E), "energy_std": np.array(Es), "forces": np.concatenate(F),
            "forces_std": np.concatenate(Fs), "structure": np.concatenate(idx)}


def calibration_curve(sigma, err, n_bins: int = 10) -> dict:
    """RMS predicted σ and RMS observed error in ``n_bins`` quantile bins of σ (same units)."""
    sigma = np.asarray(sigma, dtype=np.float64).ravel()
    err = np.asarray(err, dtype=np.float64).ravel()
    order = np.argsort(sigma, kind="stable")
    edges = np.linspace(0, len(order), min(n_bins, len(order)) + 1).astype(int)
    ps, os_, n = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            sel = order[a:b]
            ps.append(float(np.sqrt(np.mean(sigma[sel] ** 2))))
            os_.append(float(np.sqrt(np.mean(err[sel] ** 2))))
            n.append(int(b - a))
    ps, os_ = np.array(ps), np.array(os_)
    # miscalibration: mean |log(observed/predicted)| over bins (0 = calibrated; log(2) = off by 2x)
    ok = (ps > 0) & (os_ > 0)
    mis = float(np.mean(np.abs(np.log(os_[ok] / ps[ok])))) if ok.any() else float("nan")
    worst = float(np.max(np.maximum(os_[ok] / ps[ok], ps[ok] / os_[ok]))) if ok.any() else float("nan")
    return {"predicted_rms": ps.tolist(), "observed_rms": os_.tolist(), "count": n,
            "mean_abs_log_ratio": mis, "worst_factor": worst}


def _nll(sigma, err2, dim: int) -> float:
    """Mean Gaussian negative log-likelihood of squared errors of a ``dim``-component quantity
    whose total variance is σ² (per component σ²/dim)."""
    var = np.maximum(np.asarray(sigma, dtype=np.float64) ** 2 / dim, _TINY)
    return float(np.mean(0.5 * (np.asarray(err2) / var + dim * np.log(2 * np.pi * var))))


class CalibrationAnalysis(Analysis):
    """Fit and assess the calibration of a committee on labelled held-out structures.

    ``CalibrationAnalysis(ensemble, structures, method="scale").run()``; ``structures`` carry
    reference energies (eV) and forces (eV/Å) (extxyz or a SinglePointCalculator). Results:
    ``calibration`` (:class:`Calibration`), ``energy``/``forces`` dicts with ``curve_raw``,
    ``curve_calibrated`` (:func:`calibration_curve`), ``nll_raw``/``nll_calibrated``,
    ``rmse`` (eV, eV/Å) and ``mean_sigma_raw``. ``apply()`` stores the calibration on the
    ensemble, which its calculator then reports."""

    def __init__(self, ensemble, structures: Sequence, *, method: str = "scale", n_bins: int = 10):
        if method not in _METHODS:
            raise InputError(f"unknown calibration method {method!r}: use one of {', '.join(_METHODS)}")
        self.ensemble = ensemble
        self.structures = list(structures)
        self.method = method
        self.n_bins = int(n_bins)
        self.results = Results()

    def run(self) -> "CalibrationAnalysis":
        refs = [_reference(a, i) for i, a in enumerate(self.structures)]
        pred = committee_predictions(self.ensemble, self.structures, raw=True)
        e_err = pred["energy"] - np.array([r[0] for r in refs])
        f_ref = np.concatenate([r[1] for r in refs])
        f_err = np.linalg.norm(pred["forces"] - f_ref, axis=1)
        cal = Calibration.fit(pred["energy_std"], e_err, pred["forces_std"], f_err, method=self.method)
        r = self.results
        r.calibration = cal
        for name, sig, err, dim, m in (("energy", pred["energy_std"], e_err, 1, cal.energy),
                                       ("forces", pred["forces_std"], f_err, 3, cal.forces)):
            sc = m(sig)
            r[name] = {"curve_raw": calibration_curve(sig, err, self.n_bins),
                       "curve_calibrated": calibration_curve(sc, err, self.n_bins),
                       "nll_raw": _nll(sig, err**2, dim), "nll_calibrated": _nll(sc, err**2, dim),
                       "rmse": float(np.sqrt(np.mean(err**2))), "mean_sigma_raw": float(np.mean(sig)),
                       "mean_sigma_calibrated": float(np.mean(sc)), "scale": m.scale}
        r.n_structures = len(self.structures)
        r.n_atoms = int(len(f_err))
        self._raw = {"energy": (pred["energy_std"], np.abs(e_err)), "forces": (pred["forces_std"], f_err)}
        return self

    def apply(self) -> None:
        """Store the fitted calibration on the ensemble (saved with it)."""
        self.ensemble.calibration = self.results.calibration

    def summary(self) -> dict:
        r = self.results
        out = {k: r[k] for k in ("energy", "forces", "n_structures", "n_atoms")}
        out["calibration"] = r.calibration.to_dict()
        return out

    def plot(self, directory) -> list[Path]:
        from .plotting import pyplot, savefig
        plt = pyplot()
        directory = Path(directory)
        paths = []
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, name, unit in zip(axes, ("energy", "forces"), ("eV", "eV/Å")):
            d = self.results[name]
            for key, lab, mk in (("curve_raw", "raw committee", "o"), ("curve_calibrated", "calibrated", "s")):
                c = d[key]
                ax.loglog(c["predicted_rms"], c["observed_rms"], mk + "-", label=lab)
            lo = min(min(d["curve_raw"]["predicted_rms"] + d["curve_raw"]["observed_rms"]), 1e30)
            hi = max(d["curve_raw"]["predicted_rms"] + d["curve_raw"]["observed_rms"]
                     + d["curve_calibrated"]["predicted_rms"])
            lo = max(lo, hi * 1e-4)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="ideal")
            ax.set_xlabel(f"predicted RMS σ ({unit})"); ax.set_ylabel(f"observed RMS error ({unit})")
            ax.set_title(name); ax.legend(fontsize=8)
        paths.append(savefig(fig, directory / "calibration.png"))
        fig, ax = plt.subplots(figsize=(5, 4))
        sig, err = self._raw["forces"]
        cal = self.results.calibration.forces(sig)
        ax.loglog(np.maximum(cal, _TINY), np.maximum(err, _TINY), ".", ms=2, alpha=0.4)
        hi = float(max(cal.max(), err.max()))
        ax.plot([hi * 1e-4, hi], [hi * 1e-4, hi], "k--", lw=0.8)
        ax.set_xlabel("calibrated σ_F per atom (eV/Å)"); ax.set_ylabel("|ΔF| per atom (eV/Å)")
        ax.set_title("per-atom force error vs uncertainty")
        paths.append(savefig(fig, directory / "miscalibration.png"))
        return paths
