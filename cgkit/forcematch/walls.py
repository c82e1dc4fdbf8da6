"""Tables from fitted splines, and their continuation beyond the sampled range.

:func:`make_table` integrates a fitted generalised force f(x) = Σ c_k B_k(x) into a fine
(U, dU) table (Simpson on each interval; pairs zero at the cutoff, bonded minimum zero) with
jackknife force error bars. :func:`add_walls` continues a table trimmed to its sampled range
with confining quadratic walls (an unsampled coordinate is an improbable one).

Units: x in Å or rad, U in eV, f in eV/Å or eV/rad.
"""
from __future__ import annotations

import math

import numpy as np

from .tabulated import Table

__all__ = ["make_table", "add_walls", "wall_stiffness"]


def make_table(it, coef, jk_coef, x_lo, x_hi, points_per_interval):
    """Fine table (U, dU) of one interaction from its spline coefficients, plus force error bars."""
    b = it.basis
    n_pts = max(int(round((x_hi - x_lo) / b.h * points_per_interval)), 2) + 1
    if b.periodic:
        n_pts = b.n_intervals * points_per_interval + 1
    x = np.linspace(x_lo, x_hi, n_pts)
    if it.kind == "angle":  # a grid commensurate with [0, π]: the walls end exactly at 0 and π
        M = int(math.ceil(math.pi / (b.h / points_per_interval)))
        hh = math.pi / M
        i_lo = max(int(math.floor(x_lo / hh + 1e-9)), 0)
        i_hi = min(max(int(math.ceil(x_hi / hh - 1e-9)), i_lo + 2), M)
        x = hh * np.arange(i_lo, i_hi + 1)
    h = x[1] - x[0]
    f = b.value(coef, x)
    if b.periodic:
        f = f - np.trapezoid(f, x) / (x[-1] - x[0])  # a periodic potential has zero mean force
    fm = b.value(coef, 0.5 * (x[1:] + x[:-1]))
    if b.periodic:
        fm = fm - (np.trapezoid(b.value(coef, x), x) / (x[-1] - x[0]))
    # U(x) = -∫ f dx, Simpson on each table interval (exact for the cubic pieces)
    incr = -(h / 6.0) * (f[:-1] + 4 * fm + f[1:])
    U = np.concatenate([[0.0], np.cumsum(incr)])
    if it.kind == "pair":
        U -= U[-1]  # zero at the cutoff
    else:
        U -= U.min()  # minimum zero for bonded
    if b.periodic:
        U[-1] = U[0]
    ferr = None
    if jk_coef is not None and len(jk_coef) >= 2:
        fk = b.value(jk_coef, x)
        nb = len(jk_coef)
        ferr = np.sqrt((nb - 1) / nb * ((fk - fk.mean(0)) ** 2).sum(0))
    return Table(it.kind, it.types, x[0], h, U, -f), ferr


def wall_stiffness(x, U, dU, outward: float, w: float) -> float:
    """Curvature k (eV/Å² or eV/rad²) of the quadratic wall at one table end.

    ``outward`` is +1 at the upper end and -1 at the lower end. k is the largest of
    (a) the curvature of the table over its last fifth at that end (a harmonic well continues
    as itself: Boltzmann-inverted tables keep their physical stiffness), (b) a floor that lets
    the wall rise by max(ΔU_table, 0.1 eV) over one table width, and (c) where the end slope
    points the wrong way (U falling into the unsampled region), the stiffness that turns it
    round within a tenth of the width.
    """
    m = max(3, len(x) // 5)
    xs, Us = (x[-m:], U[-m:]) if outward > 0 else (x[:m], U[:m])
    k_end = max(2.0 * float(np.polyfit(xs - xs.mean(), Us, 2)[0]), 0.0)
    k_floor = 2.0 * max(float(np.ptp(U)), 0.1) / w ** 2
    slope = float(dU[-1] if outward > 0 else dU[0]) * outward  # > 0: rising outward (confining)
    k_turn = -slope / (0.1 * w) if slope < 0 else 0.0
    return max(k_end, k_floor, k_turn)


def add_walls(t: Table, ferr, *, lower: bool, upper: bool):
    """Continue a trimmed table into its unsampled ends with confining quadratic walls.

    Unsampled means improbable, i.e. a high free energy: beyond the sampled range the potential
    must rise. Linear continuation of a fitted end slope can point the wrong way (an angle
    potential falling towards unsampled small angles folds the molecule; a pair table whose
    fitted slope is attractive at its closest sampled distance would dig a false well below it).
    The wall U = U_end + s Δ + ½ k Δ² rises monotonically: s is the end slope U'_end when it
    points outward-up and 0 when it points the wrong way (then U' jumps there, U stays
    continuous and the table's minimum stays inside the sampled range); k is chosen per end by
    :func:`wall_stiffness`. Angles are extended to [0, π] and the wall gets a cubic term that
    makes dU/dθ = 0 at θ = 0 and π (a potential smooth in Cartesian coordinates; a non-zero
    slope there makes the bead forces diverge as 1/sin θ) while U' keeps its sign; bonds and
    pairs are extended by half the width.
    """
    if not (lower or upper):
        return t, ferr
    x, U, dU = t.x, t.U.copy(), t.dU.copy()
    w = x[-1] - x[0]
    h = t.dx
    lo_x = np.zeros(0)
    hi_x = np.zeros(0)
    if lower:
        end = 0.0 if t.kind == "angle" else max(x[0] - 0.5 * w, 0.0 if t.kind != "pair" else 0.1)
        n = int(np.floor((x[0] - end) / h + 1e-6))
        lo_x = x[0] - h * np.arange(n, 0, -1)
    if upper:
        end = math.pi if t.kind == "angle" else x[-1] + 0.5 * w
        n = int(np.floor((end - x[-1]) / h + 1e-6))
        hi_x = x[-1] + h * np.arange(1, n + 1)
    parts_x, parts_U, parts_dU = [], [], []
    if len(lo_x):
        d = lo_x - x[0]  # negative
        slope = min(float(dU[0]), 0.0)  # a wrong-way end slope is not continued: no new minimum
        k = wall_stiffness(x, U, dU, -1.0, w)
        c = 0.0
        if t.kind == "angle" and lo_x[0] <= 1e-6:  # dU/dθ = 0 at θ = 0 (smooth in Cartesians)
            D = x[0] - lo_x[0]
            c = (k * D - slope) / (3 * D * D)
        parts_x.append(lo_x)
        parts_U.append(U[0] + slope * d + 0.5 * k * d * d + c * d ** 3)
        parts_dU.append(slope + k * d + 3 * c * d * d)
    parts_x.append(x)
    parts_U.append(U)
    parts_dU.append(dU)
    if len(hi_x):
        d = hi_x - x[-1]
        slope = max(float(dU[-1]), 0.0)
        k = wall_stiffness(x, U, dU, 1.0, w)
        c = 0.0
        if t.kind == "angle" and hi_x[-1] >= math.pi - 1e-6:  # dU/dθ = 0 at θ = π
            D = hi_x[-1] - x[-1]
            c = -(slope + k * D) / (3 * D * D)
        parts_x.append(hi_x)
        parts_U.append(U[-1] + slope * d + 0.5 * k * d * d + c * d ** 3)
        parts_dU.append(slope + k * d + 3 * c * d * d)
    xx = np.concatenate(parts_x)
    UU = np.concatenate(parts_U)
    if t.kind != "pair":
        UU = UU - UU.min()
    else:
        UU = UU - UU[-1]
    if ferr is not None:
        ferr = np.concatenate([np.full(len(lo_x), np.nan), ferr, np.full(len(hi_x), np.nan)])
    return Table(t.kind, t.types, xx[0], h, UU, np.concatenate(parts_dU)), ferr
