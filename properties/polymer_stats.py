"""Numerical kernels for the polymer analyses: FFT correlations, block errors, fits.

All functions are vectorised over chains/particles; none loops over atoms in Python.
"""
from __future__ import annotations

import numpy as np

__all__ = ["autocorrelation_sum", "mean_square_separation", "block_indices", "flory_fit",
           "exponential_decay_length", "wlc_persistence_length", "wlc_mean_square_ree",
           "diffusion_fit"]


def _nfft(n: int) -> int:
    return 1 << int(np.ceil(np.log2(max(2, 2 * n))))


def autocorrelation_sum(x: np.ndarray) -> np.ndarray:
    """S[..., k] = Σ_i x[..., i, :]·x[..., i+k, :] for k = 0..n-1, by FFT.

    x: (..., n, d). Returns (..., n). Not normalised (divide by n - k for the mean over pairs).
    """
    n = x.shape[-2]
    f = np.fft.rfft(x, n=_nfft(n), axis=-2)
    power = (f.real ** 2 + f.imag ** 2).sum(axis=-1)
    return np.fft.irfft(power, n=_nfft(n), axis=-1)[..., :n]


def mean_square_separation(x: np.ndarray) -> np.ndarray:
    """R²[..., k] = mean over i of |x[..., i+k, :] − x[..., i, :]|², k = 0..n-1, in O(n log n).

    Used both along a chain (internal distances R²(|i−j|), x: (chains, beads, 3)) and along
    time (mean-squared displacement, x: (particles, frames, 3)). Units: those of x squared.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=-2, keepdims=True)            # reduces round-off, result unchanged
    n = x.shape[-2]
    d = (x * x).sum(axis=-1)
    p = np.concatenate([np.zeros(d.shape[:-1] + (1,)), np.cumsum(d, axis=-1)], axis=-1)
    k = np.arange(n)
    s1 = p[..., n - k] + (p[..., n:n + 1] - p[..., k])
    s2 = autocorrelation_sum(x)
    out = (s1 - 2.0 * s2) / (n - k)
    out[..., 0] = 0.0
    return np.maximum(out, 0.0)


def block_indices(n: int, n_blocks: int) -> list[np.ndarray]:
    """Contiguous blocks of range(n) (at most n blocks)."""
    return [b for b in np.array_split(np.arange(n), min(n_blocks, n)) if len(b)]


def block_error(full: float, blocks) -> float:
    """Standard error of the mean from independent block estimates: std(blocks, ddof=1)/sqrt(nb)."""
    b = np.asarray([v for v in blocks if np.isfinite(v)], dtype=float)
    if len(b) < 2:
        return float("nan")
    return float(np.std(b, ddof=1) / np.sqrt(len(b)))


def flory_fit(n: np.ndarray, r2: np.ndarray, n_range=None) -> tuple[float, float]:
    """Flory exponent ν and prefactor A from R²(n) = A² n^(2ν) by least squares in log–log.

    n: separations (integers ≥ 1); r2: mean-square distances Å². ``n_range=(n_min, n_max)``
    (inclusive) restricts the fit; the fit uses log-spaced n so every scale weighs the same.
    Returns (ν, A [Å]).
    """
    n = np.asarray(n, dtype=float)
    r2 = np.asarray(r2, dtype=float)
    lo, hi = (n_range if n_range is not None else (1, n.max()))
    ok = (n >= lo) & (n <= hi) & (r2 > 0) & np.isfinite(r2)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    nn = n[ok]
    # log-spaced subset (unique integers)
    pick = np.unique(np.round(np.geomspace(nn.min(), nn.max(), num=min(len(nn), 40))))
    sel = np.isin(nn, pick)
    slope, icpt = np.polyfit(np.log(nn[sel]), 0.5 * np.log(r2[ok][sel]), 1)
    return float(slope), float(np.exp(icpt))


def exponential_decay_length(s: np.ndarray, c: np.ndarray, threshold: float | None = 0.05) -> float:
    """Decay length λ of C(s) = exp(−s/λ), fitted by nonlinear least squares.

    s: (n,) distances along the chain Å (s[0] = 0); c: (n,) correlation with c[0] = 1.
    ``threshold``: fit only up to the first point where C drops below it (noise floor, that point
    included when positive); None fits
    every point (MDAnalysis' choice). Returns λ in Å (inf for a correlation that does not decay).
    """
    from scipy.optimize import curve_fit
    s = np.asarray(s, dtype=float)
    c = np.asarray(c, dtype=float)
    if threshold is not None:
        below = np.flatnonzero(c < threshold)
        stop = below[0] if len(below) else len(c)
        if len(below) and c[stop] > 0:
            stop += 1                      # keep the first point under the floor (if positive)
        s, c = s[:stop], c[:stop]
    if len(s) < 2:
        return float("nan")
    if np.all(c[1:] > 1.0 - 1e-9):
        return float("inf")
    guess = s[1] / max(1e-12, -np.log(np.clip(c[1], 1e-12, 1.0 - 1e-12)))
    try:
        (lam,), _ = curve_fit(lambda x, a: np.exp(-x / a), s, c, p0=[guess], maxfev=10000)
    except RuntimeError:
        return float("nan")
    return float(abs(lam))


def wlc_mean_square_ree(lp, contour):
    """Worm-like chain ⟨R_ee²⟩ = 2 P L − 2 P² (1 − e^(−L/P)) (Å²) for persistence length P
    and contour length L (Å)."""
    lp = np.asarray(lp, dtype=float)
    return 2 * lp * contour - 2 * lp ** 2 * (-np.expm1(-contour / lp))


def wlc_persistence_length(r2: float, contour: float) -> float:
    """Invert :func:`wlc_mean_square_ree`: persistence length P (Å) giving ⟨R_ee²⟩ = r2 (Å²)
    for contour length ``contour`` (Å). inf when r2 ≥ L² (rigid rod)."""
    from scipy.optimize import brentq
    if not (np.isfinite(r2) and np.isfinite(contour)) or r2 <= 0 or contour <= 0:
        return float("nan")
    if r2 >= contour ** 2 * (1 - 1e-10):
        return float("inf")
    f = lambda t: np.log(wlc_mean_square_ree(np.exp(t), contour)) - np.log(r2)  # noqa: E731
    lo, hi = np.log(contour * 1e-9), np.log(contour * 1e9)
    if f(lo) > 0:
        return float(np.exp(lo))
    return float(np.exp(brentq(f, lo, hi, xtol=1e-12)))


def diffusion_fit(t: np.ndarray, msd: np.ndarray, window=(0.1, 0.5), dim: int = 3) -> tuple[float, tuple[int, int]]:
    """Einstein diffusion coefficient D from MSD(t) = 2·dim·D·t + c over a lag window.

    t: lag times fs; msd: Å². ``window``: (first, last) fraction of the largest lag.
    Returns (D in Å²/fs, (i0, i1) index range used, inclusive/exclusive).
    """
    t = np.asarray(t, dtype=float)
    tmax = t[-1]
    i0 = int(np.searchsorted(t, window[0] * tmax))
    i1 = int(np.searchsorted(t, window[1] * tmax, side="right"))
    i0 = max(i0, 1)
    if i1 - i0 < 2:
        i0, i1 = 1, len(t)
    if i1 - i0 < 2:
        return float("nan"), (i0, i1)
    slope = np.polyfit(t[i0:i1], msd[i0:i1], 1)[0]
    return float(slope / (2 * dim)), (i0, i1)
