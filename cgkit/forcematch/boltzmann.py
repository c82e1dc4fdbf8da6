"""The one Boltzmann inversion of cgkit: distributions → tables, with one edge rule.

Every CG method that starts from the mapped distributions (IBI, relative entropy, the hybrid
force-matching recipe, ``cgkit fm --bonded``, ``cgkit ibi``) goes through
:func:`boltzmann_table`, so that the same histogram always gives the same table:

    U(r) = -kT ln g(r);  U(b) = -kT ln[P(b)/b²];  U(θ) = -kT ln[P(θ)/sin θ];  U(φ) = -kT ln P(φ).

*Resolved range.* A histogram bin is resolved where its Jacobian-corrected density exceeds
``1e-4`` of the maximum and — when the sample counts are known (bonded distributions) — it holds
at least ``min_count`` samples. Gaps inside the resolved range are interpolated linearly.

*Edge rule* (one for every caller): outside the resolved range the table is continued linearly;
bonds and angles rise outwards on both sides by at least kT per histogram bin (an unsampled
coordinate is an improbable one: an end slope pointing the wrong way cannot let a bond or angle
escape), pairs are repulsive towards r → 0 with at least 1 eV/Å, dihedrals are periodic.
Where sample counts are known (bonded histograms), bins that hold samples but fewer than
``min_count`` continue the resolved table with its end curvature and outward-rising end slope
(a harmonic well continues as itself, instead of the noise of a few samples), and the linear
≥ kT-per-bin rise starts beyond the last sampled bin.
With fewer than 4 resolved bins a bond or angle is inverted from the Gaussian of the histogram's
mean and spread (a :class:`SparseSamplingWarning` names it); a pair or dihedral is refused.

*Histograms.* :func:`histogram_edges` is the one binning rule: bonds on ``bins`` bins over the
sampled range widened by half its width on each side (lower end ≥ 0), angles over [0, π],
dihedrals over [-π, π), pairs over [0, r_cut]. The table is smoothed with a (1, 2, 1)/4
filter after the continuation (:data:`SMOOTH` passes; IBI updates one pass).

Units: x in Å or rad (internal), U in eV (bonded: minimum 0; pairs: 0 at the last grid point),
temperature in K.
"""
from __future__ import annotations

from ..errors import CgkitWarning

import math
import warnings

import numpy as np

from ..errors import CgkitError, InputError
from ..topology import Topology
from ..units import KB_EV
from .geometry import type_label
from .tabulated import Table

__all__ = ["boltzmann_table", "boltzmann_bonded_tables", "histogram_edges", "bonded_histogram",
           "fill_linear", "confining_slope", "smooth_table", "table_from_values", "angle_end_caps",
           "SparseSamplingWarning",
           "ForceMatchError", "DENSITY_FLOOR", "MIN_COUNT", "BINS"]

#: bins of a Jacobian-corrected density below this fraction of its maximum are unresolved
DENSITY_FLOOR = 1e-4
#: a bonded histogram bin needs this many samples to be resolved (when counts are known)
MIN_COUNT = 20
#: default number of histogram bins per distribution (IBI, relative entropy, hybrid fit)
BINS = 100
#: (1, 2, 1)/4 smoothing passes of a Boltzmann-inverted table (IBI updates: one pass)
SMOOTH = 2


class ForceMatchError(CgkitError):
    """Force matching cannot give a meaningful answer (no samples, singular system, ...)."""


class SparseSamplingWarning(CgkitWarning):
    """Part of an interaction's grid has too few samples to determine the force there."""


def confining_slope(kind, x, kT):
    """Bonds and angles: U rises by at least kT per histogram bin outside the resolved range
    (eV/Å or eV/rad); None for pairs and dihedrals."""
    if kind not in ("bond", "angle"):
        return None
    return kT / (x[1] - x[0])


def fill_linear(x, U, valid, repulsive_left: bool, label: str = "a distribution", *,
                confining_slope: float | None = None):
    """Continue U linearly from the resolved region (``valid``) to the whole grid.

    ``repulsive_left`` (pairs): at least 1 eV/Å of repulsion below the closest approach.
    ``confining_slope`` (bonds, angles; eV per x unit): U rises outwards on both sides with at
    least this slope. Gaps inside the resolved range are interpolated."""
    idx = np.nonzero(valid)[0]
    if len(idx) < 3:
        raise InputError(f"{label}: fewer than 3 resolved histogram bins; sample more frames or use "
                         "fewer bins")
    U = U.copy()
    a, b = idx[0], idx[-1]
    sl = (U[idx[2]] - U[idx[0]]) / (x[idx[2]] - x[idx[0]])
    if repulsive_left:
        sl = min(sl, -1.0)
    sr = (U[idx[-1]] - U[idx[-3]]) / (x[idx[-1]] - x[idx[-3]])
    if confining_slope is not None:
        sl, sr = min(sl, -confining_slope), max(sr, confining_slope)
    U[:a] = U[a] + sl * (x[:a] - x[a])
    U[b + 1:] = U[b] + sr * (x[b + 1:] - x[b])
    inner = np.arange(a, b + 1)
    bad = inner[~valid[inner]]
    if len(bad):
        good = inner[valid[inner]]
        U[bad] = np.interp(x[bad], x[good], U[good])
    return U


def smooth_table(U, n=1):
    """``n`` passes of a (1, 2, 1)/4 filter (end points kept)."""
    for _ in range(n):
        U = np.concatenate([[U[0]], (U[:-2] + 2 * U[1:-1] + U[2:]) / 4, [U[-1]]])
    return U


def table_from_values(kind, types, x, U, smooth: int = 1) -> Table:
    """Table of U on the uniform grid x (bin centres), smoothed ``smooth`` times and shifted
    (pairs: 0 at the last point; bonds/angles: minimum 0); dihedrals are closed over the period;
    angles are continued to [0, π] with zero slope at both ends (:func:`angle_end_caps`)."""
    U = smooth_table(U, smooth)
    if kind == "pair":
        U = U - U[-1]
    elif kind != "dihedral":
        U = U - U.min()
    if kind == "dihedral":
        # periodic: x spans [-π, π) bin centres → close the period
        xs = np.append(x, x[0] + 2 * math.pi)
        Us = np.append(U, U[0])
        dU = np.gradient(np.concatenate([[Us[-2]], Us, [Us[1]]]), xs[1] - xs[0])[1:-1]
        return Table(kind, types, xs[0], xs[1] - xs[0], Us, dU)
    dU = np.gradient(U, x[1] - x[0])
    return angle_end_caps(Table(kind, types, x[0], x[1] - x[0], U, dU))


def _jacobian_corrected(kind, x, density):
    if kind == "bond":
        return density / np.maximum(x, 1e-6) ** 2
    if kind == "angle":
        return density / np.maximum(np.sin(x), 1e-6)
    return np.asarray(density, dtype=float)


def _gaussian_fallback(kind, types, x, density, kT, n_samples):
    """Boltzmann inverse of the Gaussian with the histogram's mean and spread (too few
    resolved bins), with a warning naming the interaction."""
    label = type_label(kind, types)
    w = np.asarray(density, dtype=float)
    tot = w.sum()
    mu = float((w * x).sum() / tot) if tot > 0 else float("nan")
    sd = float(np.sqrt((w * (x - mu) ** 2).sum() / tot)) if tot > 0 else 0.0
    if n_samples is not None and n_samples < 10 or not sd > 0 or not np.isfinite(mu):
        raise ForceMatchError(f"{label}: {n_samples if n_samples is not None else 'the'} samples without "
                              "spread cannot be Boltzmann-inverted; add frames (a longer trajectory)")
    unit = "deg" if kind == "angle" else "Å"
    conv = math.degrees if kind == "angle" else float
    warnings.warn(f"{label}: fewer than 4 histogram bins hold {MIN_COUNT} samples"
                  + (f" ({n_samples} samples)" if n_samples is not None else "")
                  + f"; using the Boltzmann inverse of a Gaussian fit (mean {conv(mu):.4g} {unit}, "
                  f"sd {conv(sd):.3g} {unit}); add frames for a real histogram",
                  SparseSamplingWarning, stacklevel=3)
    lo, hi = (0.0, math.pi) if kind == "angle" else (max(mu - 8 * sd, 1e-3), mu + 8 * sd)
    xx = np.linspace(lo, hi, 401)
    U = 0.5 * kT * (xx - mu) ** 2 / sd ** 2
    return Table(kind, types, lo, xx[1] - xx[0], U - U.min(), kT * (xx - mu) / sd ** 2)


def boltzmann_table(kind, types, x, density, kT, *, counts=None, min_count: int = MIN_COUNT) -> Table:
    """Table of -kT ln(density / Jacobian) on the uniform grid x (bin centres; Å or rad).

    ``density``: histogram (any normalisation; g(r) for pairs); ``counts``: samples per bin
    (bonded histograms), used for the resolved range (≥ ``min_count``). kT in eV. The edge rule
    and the sparse-sample fallback are described in the module docstring."""
    x = np.asarray(x, dtype=float)
    p = _jacobian_corrected(kind, x, np.asarray(density, dtype=float))
    if not np.any(p > 0):
        raise ForceMatchError(f"{type_label(kind, types)}: the distribution is empty; add frames")
    valid = p > DENSITY_FLOOR * p.max()
    if counts is not None:
        valid &= np.asarray(counts) >= min_count
    if kind in ("bond", "angle") and valid.sum() < 4:
        n = int(np.sum(counts)) if counts is not None else None
        return angle_end_caps(_gaussian_fallback(kind, types, x, density, kT, n))
    U = np.full_like(x, np.nan)
    ref = p[valid].max() if valid.any() else p.max()
    U[valid] = -kT * np.log(p[valid] / ref)
    label = type_label(kind, types)
    if counts is not None and valid.sum() >= 3:
        U, valid = _sparse_tails(x, U, valid, np.asarray(counts) > 0)
    U = fill_linear(x, U, valid, repulsive_left=kind == "pair", label=label,
                    confining_slope=confining_slope(kind, x, kT))
    return table_from_values(kind, types, x, U, smooth=SMOOTH)


def angle_end_caps(t: Table) -> Table:
    """An angle table on [0, π] with dU/dθ = 0 at θ = 0 and π (a PMF smooth in Cartesian
    coordinates; a non-zero end slope is a cusp at the linear configuration). The table is
    resampled on a grid of half its spacing commensurate with [0, π] (cubic Hermite data at the
    new nodes reproduce the same piecewise cubic); beyond its first/last point it continues with
    the quadratic that keeps U and U' continuous and flattens exactly at 0 / π (monotonic: no new
    minimum). Other kinds are returned unchanged."""
    if t.kind != "angle":
        return t
    M = max(int(round(math.pi / (0.5 * t.dx))), 4)
    xn = np.linspace(0.0, math.pi, M + 1)
    U, f = t(xn)
    dU = -f
    lo, hi = t.x0, t.x_max
    U0, s0 = t(np.array([lo]))[0][0], -t(np.array([lo]))[1][0]
    U1, s1 = t(np.array([hi]))[0][0], -t(np.array([hi]))[1][0]
    below, above = xn < lo, xn > hi
    if below.any():
        D = lo
        d = xn[below] - lo
        U[below] = U0 + s0 * d + s0 / (2 * D) * d * d
        dU[below] = s0 + s0 / D * d
    if above.any():
        D = math.pi - hi
        d = xn[above] - hi
        U[above] = U1 + s1 * d - s1 / (2 * D) * d * d
        dU[above] = s1 - s1 / D * d
    dU[0] = dU[-1] = 0.0  # (an end already at 0 / π only has its slope set to zero)
    return Table("angle", t.types, 0.0, xn[1] - xn[0], U - U.min(), dU)


def _sparse_tails(x, U, valid, sampled):
    """Between the resolved range and the last sampled bin on either side (samples, but fewer
    than ``min_count`` per bin) continue the resolved table with the quadratic fitted between
    its minimum and that end (a harmonic well continues as itself), its slope taken only where it
    rises outwards (else flat); returns
    (U, new resolved mask = resolved range widened to the sampled range). The edge rule then
    applies beyond the sampled range."""
    idx = np.nonzero(valid)[0]
    a, b = idx[0], idx[-1]
    U = U.copy()
    inner = np.arange(a, b + 1)
    gaps = inner[~valid[inner]]
    if len(gaps):
        U[gaps] = np.interp(x[gaps], x[idx], U[idx])
    s_idx = np.nonzero(sampled)[0]
    lo, hi = min(int(s_idx[0]), a), max(int(s_idx[-1]), b)
    i0 = a + int(np.argmin(U[a:b + 1]))
    for side in (-1, 1):
        # quadratic fit from the minimum to this end: robust against the noise of the edge bins
        # (at least the three outermost resolved bins)
        sel = np.arange(a, max(i0, a + 2) + 1) if side < 0 else np.arange(min(i0, b - 2), b + 1)
        c2, c1, _ = np.polyfit(x[sel] - x[sel].mean(), U[sel], 2)
        k = max(2.0 * c2, 0.0)
        e = a if side < 0 else b
        slope = c1 + 2 * c2 * (x[e] - x[sel].mean())
        slope = min(slope, 0.0) if side < 0 else max(slope, 0.0)  # rising outwards, or flat
        tail = np.arange(lo, a) if side < 0 else np.arange(b + 1, hi + 1)
        d = x[tail] - x[e]
        U[tail] = U[e] + slope * d + 0.5 * k * d * d
    new = np.zeros_like(valid)
    new[lo:hi + 1] = True
    return U, new


def histogram_edges(kind, samples=None, bins: int = BINS, *, r_cut: float | None = None,
                    value_range=None) -> np.ndarray:
    """The one binning rule (internal units: Å, rad). ``samples`` (bonds) in Å; ``value_range``
    (lo, hi) overrides the range of a bond histogram (IBI keeps the reference range for the CG
    runs)."""
    bins = int(bins)
    if bins < 4:
        raise InputError(f"need at least 4 histogram bins, got {bins}")
    if kind == "angle":
        return np.linspace(0.0, math.pi, bins + 1)
    if kind == "dihedral":
        return np.linspace(-math.pi, math.pi, bins + 1)
    if kind == "pair":
        return np.linspace(0.0, float(r_cut), bins + 1)
    if value_range is not None:
        lo, hi = value_range
    else:
        s = np.asarray(samples, dtype=float)
        w = float(np.ptp(s))
        if not w > 0:
            w = max(abs(float(s.mean())) * 1e-3, 1e-3)
        lo, hi = max(0.0, float(s.min()) - 0.5 * w), float(s.max()) + 0.5 * w
    return np.linspace(lo, hi, bins + 1)


def bonded_histogram(kind, samples, bins: int = BINS, *, value_range=None):
    """(bin centres, density, counts, edges) of bonded samples (Å for bonds, degrees for angles
    and dihedrals, as :func:`cgkit.forcematch.validate.bonded_samples` gives them); centres and
    edges in Å / rad, density normalised per unit of x."""
    s = np.asarray(samples, dtype=float)
    xs = s if kind == "bond" else np.radians(s)
    edges = histogram_edges(kind, s, bins, value_range=value_range)
    counts, _ = np.histogram(xs, bins=edges)
    total = counts.sum()
    density = counts / (total * np.diff(edges)) if total else np.zeros(len(counts))
    return 0.5 * (edges[1:] + edges[:-1]), density, counts, edges


def boltzmann_bonded_tables(type_names, species, topology: Topology, positions, boxes=None, *,
                            temperature: float = 300.0, kinds=("bond", "angle"), bins: int = BINS,
                            min_count: int = MIN_COUNT) -> list:
    """Bond and angle tables by Boltzmann inversion of the mapped distributions.

    The histograms are those of :func:`bonded_histogram` (``bins`` bins; the same as IBI's), the
    inversion is :func:`boltzmann_table` — so ``cgkit fm --bonded`` and ``cgkit ibi`` start from
    the same table for the same data. Dihedrals: use
    :class:`~cgkit.forcematch.ibi.IterativeBoltzmannInversion`. For hybrid force matching pass
    the result as ``SplineForceMatching(..., fixed=tables)`` (or use
    :func:`cgkit.forcematch.hybrid_fit`).

    positions (n_frames, n_beads, 3) Å; boxes per frame or one; temperature K. Returns a list
    of :class:`Table` (x in Å or rad, U eV, minimum zero).
    """
    from .validate import bonded_samples
    kT = KB_EV * float(temperature)
    names = np.asarray(type_names)[np.asarray(species)]
    out = []
    for kind in kinds:
        if kind not in ("bond", "angle"):
            raise InputError(f"boltzmann_bonded_tables inverts bonds and angles, got '{kind}'")
        for key, s in bonded_samples(kind, positions, boxes, names, topology).items():
            if len(s) < 10 or not np.ptp(s) > 0:
                raise ForceMatchError(f"{type_label(kind, key)}: {len(s)} samples without spread cannot be "
                                      "Boltzmann-inverted; add frames (a longer trajectory)")
            x, dens, cnt, _ = bonded_histogram(kind, s, bins)
            out.append(boltzmann_table(kind, key, x, dens, kT, counts=cnt, min_count=min_count))
    return out
