"""Distributions of observables and how far apart two of them are.

:class:`Distribution` is a normalised histogram; :func:`js_divergence` the Jensen–Shannon
divergence (base 2, in [0, 1]) used everywhere cgkit compares a CG model with its reference
(force-matching validation, polymer comparison, demo, case studies):
JS(P, Q) = ½ KL(P‖M) + ½ KL(Q‖M), M = (P + Q)/2, on bin probabilities. Histograms on different
grids are first re-binned onto the union of both grids by integrating their piecewise-constant
densities exactly (:func:`rebin`). :func:`js_of_samples` histograms two sample sets on the
reference's range first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Distribution", "js_divergence", "rebin", "js_of_samples"]


@dataclass
class Distribution:
    """Histogram of an observable: edges (n+1,) in ``unit``; density (n,) normalised so that
    Σ density·width = 1."""

    edges: np.ndarray
    density: np.ndarray
    unit: str = ""
    label: str = ""

    def __post_init__(self):
        self.edges = np.asarray(self.edges, dtype=float)
        d = np.asarray(self.density, dtype=float)
        if self.edges.ndim != 1 or d.ndim != 1 or len(self.edges) != len(d) + 1:
            raise InputError(f"a Distribution needs edges of length n+1 and density of length n; "
                             f"got {self.edges.shape} and {d.shape}")
        if np.any(np.diff(self.edges) <= 0):
            raise InputError("Distribution edges must increase strictly")
        if np.any(d < 0) or not np.all(np.isfinite(d)):
            raise InputError("Distribution density must be finite and non-negative")
        mass = (d * np.diff(self.edges)).sum()
        if mass <= 0:
            raise InputError("Distribution is empty (zero total probability)")
        self.density = d / mass

    @classmethod
    def from_samples(cls, samples, bins=100, range=None, unit="", label=""):
        """Histogram of 1-D samples."""
        counts, edges = np.histogram(np.ravel(samples), bins=bins, range=range)
        return cls(edges, counts / np.diff(edges), unit, label)

    @classmethod
    def from_counts(cls, edges, counts, unit="", label=""):
        """From raw bin counts (any normalisation)."""
        edges = np.asarray(edges, dtype=float)
        return cls(edges, np.asarray(counts, dtype=float) / np.diff(edges), unit, label)

    @property
    def probabilities(self) -> np.ndarray:
        return self.density * np.diff(self.edges)

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def mean(self) -> float:
        return float((self.probabilities * self.centres).sum())


def rebin(dist: Distribution, edges) -> np.ndarray:
    """Probability of ``dist`` in each bin of ``edges`` (exact for its piecewise-constant density)."""
    edges = np.asarray(edges, dtype=float)
    cdf_x = dist.edges
    cdf_y = np.concatenate([[0.0], np.cumsum(dist.probabilities)])
    return np.diff(np.interp(edges, cdf_x, cdf_y, left=0.0, right=1.0))


def js_divergence(p: Distribution, q: Distribution) -> float:
    """Jensen–Shannon divergence (bits, 0 = identical, 1 = disjoint supports) of two histograms."""
    if len(p.edges) == len(q.edges) and np.allclose(p.edges, q.edges):
        a, b = p.probabilities, q.probabilities
    else:
        edges = np.union1d(p.edges, q.edges)
        a, b = rebin(p, edges), rebin(q, edges)
    a = a / a.sum()
    b = b / b.sum()
    m = 0.5 * (a + b)

    def kl(x):
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())
    return float(min(1.0, max(0.0, 0.5 * kl(a) + 0.5 * kl(b))))


def js_of_samples(reference, candidate, n_bins: int = 40, unit: str = "", value_range=None):
    """JS divergence (bits) of two 1-D sample sets histogrammed on ``n_bins`` equal bins over
    ``value_range`` (default: min to max of ``reference``). Candidate samples outside the range
    are counted in the end bins, so an outlier is penalised without coarsening the bins for the
    rest. Returns ``(js, P, Q)`` with the two :class:`Distribution` objects."""
    ref = np.ravel(np.asarray(reference, dtype=float))
    cand = np.ravel(np.asarray(candidate, dtype=float))
    if ref.size == 0 or cand.size == 0:
        raise InputError("js_of_samples needs samples on both sides (one side is empty)")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cand))):
        raise InputError("js_of_samples: samples contain NaN or inf")
    lo, hi = (float(ref.min()), float(ref.max())) if value_range is None else map(float, value_range)
    if not hi > lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi + 1e-9, n_bins + 1)
    r = np.clip(ref, edges[0], edges[-1] - 1e-12)
    c = np.clip(cand, edges[0], edges[-1] - 1e-12)
    p = Distribution.from_counts(edges, np.histogram(r, edges)[0], unit)
    q = Distribution.from_counts(edges, np.histogram(c, edges)[0], unit)
    return js_divergence(p, q), p, q
