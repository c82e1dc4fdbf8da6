"""Uniform cubic B-spline bases (open or periodic) for force-matching tables."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError

__all__ = ["BSplineBasis"]


class BSplineBasis:
    """Cubic B-splines on a uniform grid of knots x_min, x_min + h, ..., x_max.

    Open basis: ``n_intervals + 3`` functions, every x in [x_min, x_max] sees exactly four
    nonzero ones (the partition of unity holds). Periodic basis (dihedrals, period
    x_max - x_min): ``n_intervals`` functions, indices wrapped.
    """

    def __init__(self, x_min: float, x_max: float, spacing: float, periodic: bool = False):
        if not (math.isfinite(x_min) and math.isfinite(x_max) and x_max > x_min):
            raise InputError(f"a spline grid needs x_min < x_max, got [{x_min}, {x_max}]")
        if not (spacing > 0):
            raise InputError(f"the grid spacing must be > 0, got {spacing}")
        self.n_intervals = max(int(round((x_max - x_min) / spacing)), 1 if not periodic else 4)
        self.x_min, self.x_max = float(x_min), float(x_max)
        self.h = (self.x_max - self.x_min) / self.n_intervals
        self.periodic = periodic
        self.size = self.n_intervals if periodic else self.n_intervals + 3

    def knots(self) -> np.ndarray:
        return self.x_min + self.h * np.arange(self.n_intervals + 1)

    def evaluate(self, x: torch.Tensor, derivative: bool = False):
        """Indices (m, 4) long and values (m, 4) of the nonzero basis functions at x (m,).

        x outside [x_min, x_max] (open basis) is evaluated on the end polynomial pieces
        (callers drop such samples before fitting). ``derivative`` returns d/dx values.
        """
        u = (x - self.x_min) / self.h
        if self.periodic:
            u = torch.remainder(u, float(self.n_intervals))
        i = torch.floor(u).long().clamp(0, self.n_intervals - 1)
        t = u - i.to(u.dtype)
        if derivative:
            vals = torch.stack([-(1 - t) ** 2 / 2, (3 * t * t - 4 * t) / 2,
                                (-3 * t * t + 2 * t + 1) / 2, t * t / 2], dim=1) / self.h
        else:
            t2, t3 = t * t, t * t * t
            vals = torch.stack([(1 - t) ** 3 / 6, (3 * t3 - 6 * t2 + 4) / 6,
                                (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6], dim=1)
        idx = i[:, None] + torch.arange(4, device=x.device)[None, :]
        if self.periodic:
            idx = idx % self.n_intervals
        return idx, vals

    def value(self, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Σ_k c_k B_k(x) for coefficient vector(s) coef (size,) or (s, size)."""
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
        idx, vals = self.evaluate(xt)
        c = np.asarray(coef, dtype=np.float64)
        return (c[..., idx.numpy()] * vals.numpy()).sum(-1)

    def second_difference(self) -> np.ndarray:
        """(size-2 or size, size) second-difference operator on the coefficients (a smoothness
        penalty that extrapolates undetermined coefficients linearly)."""
        n = self.size
        if self.periodic:
            D = np.zeros((n, n))
            for k in range(n):
                D[k, (k - 1) % n] += 1.0
                D[k, k] -= 2.0
                D[k, (k + 1) % n] += 1.0
            return D
        D = np.zeros((n - 2, n))
        for k in range(n - 2):
            D[k, k:k + 3] = (1.0, -2.0, 1.0)
        return D

    def support(self, k: int) -> tuple[float, float]:
        """x-range where basis function k is nonzero (open basis: clipped to the grid)."""
        if self.periodic:
            lo = self.x_min + (k - 3) * self.h
            return lo, lo + 4 * self.h
        return max(self.x_min, self.x_min + (k - 3) * self.h), min(self.x_max, self.x_min + (k + 1) * self.h)
