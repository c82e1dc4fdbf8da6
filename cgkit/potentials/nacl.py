"""Rigid-ion NaCl: Born–Mayer–Huggins short-range repulsion and dispersion (Fumi–Tosi
parameters) plus the full Coulomb interaction of charges +1 e (Na) and −1 e (Cl).

    E = Σ_{i<j} φ_ij(r_ij) + E_Coulomb,
    φ_ij(r) = A_ij exp((σ_ij − r)/ρ) − C_ij/r⁶ − D_ij/r⁸          (r < cutoff)

Parameters (Fumi & Tosi, J. Phys. Chem. Solids 25, 31 (1964); Tosi & Fumi, ibid. 25, 45;
in the form used e.g. by Anwar, Frenkel & Noro, J. Chem. Phys. 118, 728 (2003)):
A_ij = c_ij·b with b = 0.338e-19 J = 0.21096 eV and Pauling factors c_++ = 1.25, c_+- = 1,
c_-- = 0.75; ρ = 0.317 Å; σ_ij = σ_i + σ_j with σ_Na = 1.170 Å, σ_Cl = 1.585 Å;
C_++ = 1.68, C_+- = 11.2, C_-- = 116 (1e-79 J·m⁶); D_++ = 0.8, D_+- = 13.9, D_-- = 233
(1e-99 J·m⁸) — converted here to eV, Å (see :data:`FUMI_TOSI`).

Short-range cutoff. φ is cut at ``cutoff`` (default 8 Å) and, in the default ``mode="shift"``,
shifted to zero there — exactly LAMMPS ``pair_style born/coul/long <cutoff>`` with
``pair_modify shift yes`` (LAMMPS's ``D`` enters with the opposite sign: ``D_lammps = −D``).
``mode="truncate"`` drops the shift; ``mode="switch"`` multiplies φ by the C² switch of
:func:`~cgkit.potentials.lennard_jones.polynomial_switch` between ``r_on`` and ``cutoff``
(smooth forces for MD). The Coulomb part has no cutoff: it is an Ewald sum for periodic
cells and a direct sum for clusters (:class:`cgkit.electrostatics.Electrostatics`, relative
``accuracy``).

Charges are fixed by species (Na +1, Cl −1; ASE ``initial_charges`` are ignored), so any
NaCl structure works as it is; the Born effective charges are ±1 e·I and the model's
high-frequency dielectric constant is ε∞ = 1 (rigid ions are not polarisable).

For phonons ``short_range_cutoff`` = ``cutoff``: with the non-analytic correction
(``--nac``) the supercell must be at least twice that wide (the Coulomb long range is taken
exactly by phonopy's dipole–dipole Ewald sum, which for rigid ions with ε∞ = 1 is the
harmonic Coulomb interaction itself).

Units: eV, Å, e.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, UnknownSpeciesError
from ..potential import Potential
from .coulomb import coulomb_atomic_energies, fixed_born_charges, make_electrostatics
from .lennard_jones import polynomial_switch

__all__ = ["NaClBMH", "FUMI_TOSI"]

_J_TO_EV = 1.0 / 1.602176634e-19
_b = 0.338e-19 * _J_TO_EV
#: Fumi–Tosi NaCl in eV and Å; rows/columns (Na, Cl)
FUMI_TOSI = {
    "A": [[1.25 * _b, 1.0 * _b], [1.0 * _b, 0.75 * _b]],                       # eV
    "rho": 0.317,                                                              # Å
    "sigma": [[2.340, 2.755], [2.755, 3.170]],                                 # Å
    "C": [[1.68e-79 * _J_TO_EV * 1e60, 11.2e-79 * _J_TO_EV * 1e60],
          [11.2e-79 * _J_TO_EV * 1e60, 116e-79 * _J_TO_EV * 1e60]],            # eV·Å⁶
    "D": [[0.8e-99 * _J_TO_EV * 1e80, 13.9e-99 * _J_TO_EV * 1e80],
          [13.9e-99 * _J_TO_EV * 1e80, 233e-99 * _J_TO_EV * 1e80]],            # eV·Å⁸
}

_MODES = ("shift", "truncate", "switch")


class NaClBMH(Potential):
    """Rigid-ion Born–Mayer–Huggins NaCl with Fumi–Tosi parameters (module docstring).

    Parameters
    ----------
    cutoff : Å, cutoff of the short-range (BMH) part
    mode : "shift" (LAMMPS born/coul/long + pair_modify shift yes), "truncate" or "switch"
    r_on : Å, start of the switch (mode "switch"; default 0.8·cutoff)
    method, accuracy, real_space_cutoff : Coulomb settings, see
        :class:`~cgkit.potentials.coulomb.CoulombPotential`
    """

    type_names = ("Na", "Cl")
    #: e, charges of (Na, Cl)
    CHARGES = (1.0, -1.0)

    def __init__(self, cutoff: float = 8.0, mode: str = "shift", r_on: float | None = None,
                 method: str = "auto", accuracy: float = 1e-6,
                 real_space_cutoff: float | None = None):
        super().__init__()
        if mode not in _MODES:
            raise InputError(f"cgkit:nacl-bmh: mode must be one of {_MODES}, got '{mode}'")
        if not (isinstance(cutoff, (int, float)) and cutoff > 3.0):
            raise InputError(f"cgkit:nacl-bmh: cutoff must be > 3 Å (beyond the nearest "
                             f"neighbours), got {cutoff!r}")
        self.cutoff = float(cutoff)
        self.short_range_cutoff = self.cutoff
        self.mode = mode
        self.r_on = float(r_on) if r_on is not None else 0.8 * self.cutoff
        if mode == "switch" and not 0 < self.r_on < self.cutoff:
            raise InputError(f"cgkit:nacl-bmh: need 0 < r_on < cutoff, got r_on={self.r_on}")
        self.es = make_electrostatics(method, accuracy, real_space_cutoff)
        self._config = {"cutoff": self.cutoff, "mode": mode, "r_on": r_on, "method": method,
                        "accuracy": float(accuracy), "real_space_cutoff": real_space_cutoff}
        ft = FUMI_TOSI
        self.register_buffer("A", torch.tensor(ft["A"], dtype=torch.float64))
        self.register_buffer("sigma", torch.tensor(ft["sigma"], dtype=torch.float64))
        self.register_buffer("C", torch.tensor(ft["C"], dtype=torch.float64))
        self.register_buffer("D", torch.tensor(ft["D"], dtype=torch.float64))
        self.register_buffer("rho", torch.tensor(ft["rho"], dtype=torch.float64))
        self.register_buffer("q_species", torch.tensor(self.CHARGES, dtype=torch.float64))

    def get_config(self) -> dict:
        return dict(self._config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items())

    def bmh(self, r, ti, tj):
        """φ(r) without the cutoff treatment (eV) for type indices ti, tj (0 Na, 1 Cl)."""
        A, s, C, D = (t.to(r.dtype)[ti, tj] for t in (self.A, self.sigma, self.C, self.D))
        r2 = r * r
        r6 = r2 * r2 * r2
        return A * torch.exp((s - r) / self.rho.to(r.dtype)) - C / r6 - D / (r6 * r2)

    def pair_energy(self, r, ti, tj):
        """φ(r) with the cutoff treatment of ``mode`` (eV)."""
        e = self.bmh(r, ti, tj)
        if self.mode == "shift":
            return e - self.bmh(torch.full_like(r, self.cutoff), ti, tj)
        if self.mode == "switch":
            return e * polynomial_switch(r, self.r_on, self.cutoff)
        return e

    def atomic_energies(self, graph, positions, cell):
        i, j, _, r = self.neighbor_edges(graph, positions, cell)
        ti, tj = graph.species[i], graph.species[j]
        e_pair = self.pair_energy(r, ti, tj)
        out = torch.zeros(graph.n_atoms, dtype=positions.dtype, device=positions.device)
        out = out.index_add(0, i, 0.5 * e_pair)
        q = self.q_species.to(positions.dtype)[graph.species]
        return out + coulomb_atomic_energies(self.es, graph, positions, cell, q)

    def charges_of(self, atoms) -> np.ndarray:
        """(n,) e: +1 for Na, −1 for Cl."""
        syms = atoms.get_chemical_symbols()
        bad = sorted(set(syms) - set(self.type_names))
        if bad:
            raise UnknownSpeciesError(f"cgkit:nacl-bmh knows Na and Cl only; the structure has {bad}")
        q = self.q_species.detach().cpu().double().numpy()
        return np.array([q[self.type_names.index(s)] for s in syms])

    def born_effective_charges(self, atoms) -> np.ndarray:
        """(n, 3, 3) e: ±1·I (rigid ions)."""
        return fixed_born_charges(self.charges_of(atoms))
