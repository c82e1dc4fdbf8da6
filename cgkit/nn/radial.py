"""Radial basis of the ENNP: Bessel functions times a smooth polynomial cutoff envelope.

``bessel(r)_n = sqrt(2/r_c) · sin(n π r / r_c) / r``   (n = 1..N, r in Å), optionally with
learnable frequencies, and the polynomial envelope of order ``p`` (Klicpera et al., DimeNet):

``u(x) = 1 − (p+1)(p+2)/2 · x^p + p(p+2) · x^(p+1) − p(p+1)/2 · x^(p+2)``,  x = r/r_c,

which vanishes at x = 1 together with its first and second derivatives (C² at r_c: energies,
forces and Hessians are continuous when an atom crosses the cutoff); u = 0 beyond r_c.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError

__all__ = ["BesselBasis", "PolynomialEnvelope"]


class BesselBasis(torch.nn.Module):
    """(E,) distances Å → (E, n_radial) Bessel basis values (1/Å^{3/2})."""

    def __init__(self, r_cut: float, n_radial: int = 8, trainable: bool = True):
        super().__init__()
        if n_radial < 1:
            raise InputError(f"n_radial must be >= 1, got {n_radial}")
        self.r_cut = float(r_cut)
        self.prefactor = math.sqrt(2.0 / self.r_cut)
        freqs = torch.arange(1, n_radial + 1, dtype=torch.float64) * math.pi
        if trainable:
            self.freqs = torch.nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = r.unsqueeze(-1) / self.r_cut
        return self.prefactor * torch.sin(self.freqs * x) / r.unsqueeze(-1)


class PolynomialEnvelope(torch.nn.Module):
    """(E,) distances Å → (E,) envelope in [0, 1]; value, slope and curvature vanish at r_c."""

    def __init__(self, r_cut: float, p: int = 6):
        super().__init__()
        if p < 2:
            raise InputError(f"the envelope exponent p must be >= 2 (C² at r_cut), got {p}")
        self.r_cut = float(r_cut)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.r_cut
        xp = x ** p
        u = 1.0 - 0.5 * (p + 1) * (p + 2) * xp + p * (p + 2) * xp * x - 0.5 * p * (p + 1) * xp * x * x
        return u * (x < 1.0).to(u.dtype)
