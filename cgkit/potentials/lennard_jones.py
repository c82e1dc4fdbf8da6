"""Lennard-Jones pair potential with a smooth cutoff.

φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶] with one of three treatments at the cutoff r_c:

* ``"switch"`` (default, C²): φ(r)·S(x), S = 1 − 10x³ + 15x⁴ − 6x⁵, x = (r − r_on)/(r_c − r_on)
  for r_on < r < r_c. Identical to LAMMPS ``pair_style lj/mdf`` (τ = (1−x)³(1+3x+6x²)).
* ``"ase_smooth"`` (C¹ only): φ(r)·S(r²) with the cubic-in-r² switch of ASE's
  ``LennardJones(smooth=True)`` (``ro`` = r_on); for comparison with ASE — its second
  derivative jumps at r_on and r_c, so prefer ``"switch"`` for Hessians and phonons.
* ``"shift"``: φ(r) − φ(r_c) (ASE's ``smooth=False``; energy continuous, force not).
* ``"shifted_force"``: φ(r) − φ(r_c) − (r − r_c)φ'(r_c) (C¹; LAMMPS ``lj/smooth/linear``).

Units: σ, r in Å; ε in eV. Several species: give ``type_names`` with per-type ``sigma`` and
``epsilon`` lists (Lorentz–Berthelot mixing) or full ``(n_types, n_types)`` matrices.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from ..potential import Potential

__all__ = ["LennardJones", "polynomial_switch"]

_MODES = ("switch", "ase_smooth", "shift", "shifted_force")


def polynomial_switch(r: torch.Tensor, r_on: float, r_cut: float) -> torch.Tensor:
    """S(r): 1 below r_on, 0 above r_cut, 1 − 10x³ + 15x⁴ − 6x⁵ between (C², x ∈ [0, 1])."""
    x = ((r - r_on) / (r_cut - r_on)).clamp(0.0, 1.0)
    return 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x ** 2)


def _pair_matrix(values, n: int, mixing, name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64)
    if t.dim() == 0:
        return t.expand(n, n).clone()
    if t.dim() == 1:
        if len(t) != n:
            raise InputError(f"{name} needs one value per type ({n}), got {len(t)}")
        return mixing(t[:, None], t[None, :])
    if t.shape != (n, n) or not torch.allclose(t, t.T):
        raise InputError(f"{name} as a matrix must be symmetric ({n}, {n})")
    return t


class LennardJones(Potential):
    """Lennard-Jones with a smooth cutoff (see module docstring).

    Parameters
    ----------
    sigma : Å — float, per-type list, or symmetric matrix
    epsilon : eV — same forms
    cutoff : Å (default 3σ_max, as ASE)
    r_on : Å, start of the switch (default 0.66·cutoff, as ASE's ``ro``); ``"switch"`` mode only
    mode : "switch" | "ase_smooth" | "shift" | "shifted_force"
    type_names : species names matching ``graph.species`` (None: one type, any element)
    """

    def __init__(self, sigma=1.0, epsilon=1.0, cutoff: float | None = None, r_on: float | None = None,
                 mode: str = "switch", type_names=None):
        super().__init__()
        if mode not in _MODES:
            raise InputError(f"mode must be one of {_MODES}, got '{mode}'")
        n = len(type_names) if type_names else 1
        sig = _pair_matrix(sigma, n, lambda a, b: 0.5 * (a + b), "sigma")
        eps = _pair_matrix(epsilon, n, lambda a, b: torch.sqrt(a * b), "epsilon")
        if (sig <= 0).any() or (eps < 0).any():
            raise InputError("sigma must be > 0 Å and epsilon ≥ 0 eV")
        self.cutoff = float(cutoff if cutoff is not None else 3.0 * float(sig.max()))
        if self.cutoff <= 0:
            raise InputError(f"cutoff must be > 0 Å, got {self.cutoff}")
        self.r_on = float(r_on if r_on is not None else 0.66 * self.cutoff)
        if mode in ("switch", "ase_smooth") and not (0 <= self.r_on < self.cutoff):
            raise InputError(f"need 0 ≤ r_on < cutoff, got r_on={self.r_on}, cutoff={self.cutoff}")
        self.mode = mode
        self.type_names = tuple(type_names) if type_names else None
        self.register_buffer("sigma", sig)
        self.register_buffer("epsilon", eps)
        self._args = {"sigma": sigma if not isinstance(sigma, torch.Tensor) else sigma.tolist(),
                      "epsilon": epsilon if not isinstance(epsilon, torch.Tensor) else epsilon.tolist()}

    def get_config(self) -> dict:
        return {**self._args, "cutoff": self.cutoff, "r_on": self.r_on, "mode": self.mode,
                "type_names": list(self.type_names) if self.type_names else None}

    def pair_energy(self, r: torch.Tensor, sig: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """φ(r) with the cutoff treatment (eV); r, sig, eps broadcast together."""
        def lj(x):
            s6 = (sig / x) ** 6
            return 4.0 * eps * (s6 * s6 - s6)

        if self.mode == "switch":
            return lj(r) * polynomial_switch(r, self.r_on, self.cutoff)
        if self.mode == "ase_smooth":
            r2, ro2, rc2 = r * r, self.r_on ** 2, self.cutoff ** 2
            x2 = r2.clamp(ro2, rc2)
            return lj(r) * (rc2 - x2) ** 2 * (rc2 + 2 * x2 - 3 * ro2) / (rc2 - ro2) ** 3
        rc = torch.full_like(r, self.cutoff)
        if self.mode == "shift":
            return lj(r) - lj(rc)
        s6c = (sig / rc) ** 6
        dlj_c = 4.0 * eps * (-12.0 * s6c * s6c + 6.0 * s6c) / rc
        return lj(r) - lj(rc) - (r - rc) * dlj_c

    def atomic_energies(self, graph, positions, cell):
        i, j, _, r = self.neighbor_edges(graph, positions, cell)
        ti, tj = (graph.species[i], graph.species[j]) if self.type_names else (0, 0)
        sig = self.sigma.to(r.dtype)[ti, tj]
        eps = self.epsilon.to(r.dtype)[ti, tj]
        e_pair = self.pair_energy(r, sig, eps)
        out = torch.zeros(graph.n_atoms, dtype=positions.dtype, device=positions.device)
        return out.index_add(0, i, 0.5 * e_pair)  # full list: each pair counted from both ends
