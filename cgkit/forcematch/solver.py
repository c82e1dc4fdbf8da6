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

__all__ = ["regulariser", "check_singular", "solve_system", "METHODS"]

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


def solve_system(terms, A, b, ridge: float, smooth: float, method: str) -> np.ndarray:
    """Coefficients c of the (regularised) system on the columns of ``terms``."""
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
