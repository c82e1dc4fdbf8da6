"""Solving the MS-CG normal equations (state passed as arguments, nothing mutated).

``(A + λ_r s I + λ_s s DᵀD) c = b`` with a tiny ridge (λ_r) and a second-difference smoothness
penalty (λ_s) per interaction, both relative to the interaction's mean diagonal s
(``method="ridge"``), or the unregularised system (``method="lstsq"``), which raises
:class:`ForceMatchError` naming the interactions the data cannot determine when singular.
``terms`` is the list of :class:`~cgkit.forcematch.interaction.Term` whose columns make up A.
"""
from __future__ import annotations

import numpy as np

from .boltzmann import ForceMatchError

__all__ = ["regulariser", "check_singular", "solve_system", "natural_constraints", "angle_end_constraints",
           "METHODS"]

METHODS = ("ridge", "lstsq")


def regulariser(terms, A: np.ndarray, ridge: float, smooth: float) -> np.ndarray:
    """Ridge + smoothness penalty matrix for the columns of ``terms``."""
    R = np.zeros_like(A)
    for it in terms:
        cols = it.columns
        d = np.diag(A)[cols]
        s = float(d[d > 0].mean()) if np.any(d > 0) else 1.0
        D = it.basis.second_difference()
        R[cols, cols] += ridge * s * np.eye(it.size) + smooth * s * (D.T @ D)
    return R


def check_singular(terms, A: np.ndarray) -> None:
    """Raise ForceMatchError naming the interactions (and x ranges) that leave A singular."""
    d = np.diag(A)
    zero = d <= 1e-14 * max(d.max(), 1e-300)
    if zero.any():
        parts = []
        for it in terms:
            z = np.nonzero(zero[it.columns])[0]
            if len(z):
                lo = it.basis.support(int(z[0]))[0]
                hi = it.basis.support(int(z[-1]))[1]
                parts.append(f"{it.label} for x in {it.range_str(lo, hi)}")
        raise ForceMatchError("singular normal matrix: no samples determine " + "; ".join(parts)
                              + ". Use the regularised solver (method='ridge'), shrink those "
                              "grids to the sampled range, or add frames")
    sc = 1.0 / np.sqrt(d)
    w, V = np.linalg.eigh(A * sc[:, None] * sc[None, :])
    if w[0] < 1e-13 * w[-1]:
        v = np.abs(V[:, 0])
        share = {it.label: float((v[it.columns] ** 2).sum()) for it in terms}
        worst = sorted(share, key=share.get, reverse=True)[:3]
        raise ForceMatchError(
            f"singular normal matrix (condition number {w[-1] / max(w[0], 1e-300):.2g}): the data "
            f"cannot separate the forces of {worst} (e.g. two interactions always acting "
            "together); regularise (method='ridge'), merge those interaction types or add frames")


def natural_constraints(terms, n: int) -> np.ndarray:
    """(2·T, n) rows C with C c = 0 ⇔ f''(x) = 0 at both ends of every non-periodic term: the
    natural cubic spline on the same knots, the function space of VOTCA's ``csg_fmatch``
    (uniform cubic B-splines: f''(x_min) = (c₀ - 2c₁ + c₂)/h², likewise at x_max)."""
    rows = []
    for it in terms:
        if it.basis.periodic or it.size < 4:
            continue
        o, m = it.offset, it.size
        for first in (o, o + m - 3):
            r = np.zeros(n)
            r[first:first + 3] = (1.0, -2.0, 1.0)
            rows.append(r)
    return np.array(rows).reshape(-1, n)


def angle_end_constraints(terms, n: int) -> np.ndarray:
    """Rows C with C c = 0 ⇔ the generalised force f = -dU/dθ vanishes at θ = 0 and θ = π for
    every angle grid that reaches them (a PMF smooth in Cartesian coordinates has zero slope
    there; otherwise the bead forces diverge as 1/sin θ). Open cubic B-splines:
    f(x_min) = (c₀ + 4c₁ + c₂)/6, f(x_max) = (c_{m-3} + 4c_{m-2} + c_{m-1})/6."""
    import math
    rows = []
    for it in terms:
        b = it.basis
        if it.kind != "angle" or b.periodic:
            continue
        o, m = it.offset, it.size
        for at_end, first in ((b.x_min <= 1e-9, o), (b.x_max >= math.pi - 1e-9, o + m - 3)):
            if at_end:
                r = np.zeros(n)
                r[first:first + 3] = (1.0, 4.0, 1.0)
                rows.append(r)
    return np.array(rows).reshape(-1, n)


def _null_space(C: np.ndarray, n: int) -> np.ndarray:
    if len(C) == 0:
        return np.eye(n)
    _, sv, Vt = np.linalg.svd(C)
    rank = int((sv > 1e-12 * sv.max()).sum())
    return Vt[rank:].T


def solve_system(terms, A, b, ridge: float, smooth: float, method: str, natural: bool = False,
                 equality=None) -> np.ndarray:
    """Coefficients c of the (regularised) system on the columns of ``terms``, with f = 0 at
    θ = 0 and π for angle grids that reach them (:func:`angle_end_constraints`); ``natural``:
    also f'' = 0 at both grid ends of every non-periodic term (VOTCA's natural cubic splines);
    ``equality``: None or (E (k, n), d (k,)), extra inhomogeneous constraints E c = d (e.g. the
    mean-pressure row of :mod:`.pressure_match`).
    Constraints are imposed exactly: c = c₀ + Z z with c₀ the minimum-norm particular solution
    of [C; E] c = [0; d] and Z the null space of [C; E]; z minimises the (regularised) cost."""
    C = angle_end_constraints(terms, len(b))
    if natural:
        C = np.concatenate([C, natural_constraints(terms, len(b))])
    d = np.zeros(len(C))
    if equality is not None:
        E = np.atleast_2d(np.asarray(equality[0], dtype=np.float64))
        e = np.atleast_1d(np.asarray(equality[1], dtype=np.float64))
        norm = np.linalg.norm(E, axis=1)
        if E.shape != (len(e), len(b)) or not np.all(norm > 0) or not np.all(np.isfinite(e)):
            raise ForceMatchError("an equality constraint row is zero, non-finite or has the wrong size: "
                                  "the constrained quantity does not depend on the fitted coefficients")
        C = np.concatenate([C, E / norm[:, None]])  # unit rows: the rank test sees every row alike
        d = np.concatenate([d, e / norm])
    if len(C):
        Z = _null_space(C, len(b))
        c0 = np.linalg.lstsq(C, d, rcond=None)[0] if np.any(d) else np.zeros(len(b))
        if np.any(d) and not np.allclose(C @ c0, d, rtol=1e-8, atol=1e-10 * max(1.0, np.abs(d).max())):
            raise ForceMatchError("the equality constraint contradicts the other constraints (f = 0 at the "
                                  "angle-grid ends / natural splines): no coefficients satisfy both")
        M = A if method == "lstsq" else A + regulariser(terms, A, ridge, smooth)
        Mz = Z.T @ M @ Z
        if method == "lstsq":
            dz = np.sqrt(np.clip(np.diag(Mz), 1e-300, None))
            w = np.linalg.eigvalsh(Mz / dz[:, None] / dz[None, :])
            if w[0] < 1e-13 * w[-1]:
                check_singular(terms, A)  # names the unsampled ranges when there are any
                raise ForceMatchError(f"singular constrained normal matrix (condition number "
                                      f"{w[-1] / max(w[0], 1e-300):.2g}); use method='ridge', shrink "
                                      "the grids to the sampled range or add frames")
        try:
            z = np.linalg.solve(Mz, Z.T @ (b - M @ c0))
        except np.linalg.LinAlgError as exc:
            raise ForceMatchError(f"the constrained normal matrix is singular ({exc}); use "
                                  "method='ridge', shrink the grids to the sampled range or add frames") from exc
        c = c0 + Z @ z
        if not np.all(np.isfinite(c)):
            raise ForceMatchError("the solution contains NaN/inf; increase the regularisation "
                                  "(ridge/smooth) or check the input forces")
        return c
    if method == "lstsq":
        check_singular(terms, A)
        return np.linalg.solve(A, b)
    M = A + regulariser(terms, A, ridge, smooth)
    try:
        c = np.linalg.solve(M, b)
    except np.linalg.LinAlgError as exc:
        check_singular(terms, M)
        raise ForceMatchError(f"the regularised normal matrix is singular ({exc}); "
                              "increase ridge/smooth") from exc
    if not np.all(np.isfinite(c)):
        raise ForceMatchError("the solution contains NaN/inf; increase the regularisation "
                              "(ridge/smooth) or check the input forces")
    return c
