"""Flexible SPC/Fw water (Wu, Tepper & Voth, J. Chem. Phys. 124, 024503 (2006)).

    E = Σ_OH ½ k_b (r_OH − r_0)² + Σ_HOH ½ k_θ (θ − θ_0)²                  (intramolecular)
      + Σ_{O–O pairs, r < cutoff} 4ε[(σ/r)¹² − (σ/r)⁶]                        (intermolecular)
      + E_Coulomb(q_O = −0.82 e, q_H = +0.41 e; intramolecular pairs excluded)

with k_b = 1059.162 kcal/mol/Å², r_0 = 1.012 Å, k_θ = 75.90 kcal/mol/rad², θ_0 = 113.24°,
σ = 3.165492 Å, ε = 0.1554253 kcal/mol (1 kcal/mol = 0.0433641 eV). LAMMPS writes the
harmonic terms as K(r − r_0)², i.e. ``bond_coeff 529.581 1.012`` and
``angle_coeff 37.95 113.24``; with ``pair_style lj/cut/coul/long <cutoff>``,
``pair_modify shift yes`` (default ``mode="shift"``), ``special_bonds lj/coul 0 0 0`` and an
Ewald/PPPM k-space it is the same model. ``mode="truncate"`` drops the LJ shift.

The Coulomb interaction between every pair of atoms of *different* molecules is computed by
:class:`cgkit.electrostatics.Electrostatics` (Ewald for periodic boxes, direct sum for
clusters); the three pairs within a molecule (O–H, O–H, H–H) are excluded (the pair vector
is the minimum image, so molecules may be split by the periodic boundary).

Molecules. Every H is bonded to the one O closer than ``r_oh_max`` (default 1.35 Å; the
intramolecular O–H distance of SPC/Fw water at room temperature stays below ~1.2 Å, the
shortest hydrogen bond H···O is ~1.6 Å), found from the neighbour graph with its periodic
shift, at every call. Input where an H has no such O (or two), or an O does not have exactly
two H, is refused with the offending atom named: SPC/Fw needs intact H₂O molecules and no
other species. When the ASE structure carries molecule ids (``atoms.arrays['mol-id']`` as
ASE's LAMMPS-data reader writes them, or ``'molecule_id'``/``'mol_id'``), :meth:`graph`
also checks that every molecule found is one of them.

Charges are fixed by species (ASE ``initial_charges`` are ignored). Intramolecular energies
are assigned to the oxygen atom of the molecule in the per-atom energies; LJ and Coulomb
pair energies are split equally.

Units: eV, Å, e, rad.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError, StructureError, UnknownSpeciesError
from ..potential import Potential
from .coulomb import coulomb_atomic_energies, fixed_born_charges, make_electrostatics

__all__ = ["SPCFw", "SPCFW_PARAMETERS", "KCAL_PER_MOL"]

#: eV per kcal/mol
KCAL_PER_MOL = 4.184 / 96.48533212331

#: SPC/Fw (Wu, Tepper, Voth 2006) in its own units (kcal/mol, Å, degrees, e)
SPCFW_PARAMETERS = {"k_bond": 1059.162, "r0": 1.012, "k_angle": 75.90, "theta0": 113.24,
                    "sigma": 3.165492, "epsilon": 0.1554253, "q_O": -0.82, "q_H": 0.41}

_MOL_ID_KEYS = ("mol-id", "molecule_id", "mol_id")


class SPCFw(Potential):
    """Flexible SPC/Fw water (module docstring).

    Parameters
    ----------
    cutoff : Å, O–O Lennard-Jones cutoff
    mode : "shift" (LJ shifted to zero at the cutoff, as LAMMPS pair_modify shift yes) or
        "truncate"
    r_oh_max : Å, the largest O–H distance counted as a bond when molecules are identified
    method, accuracy, real_space_cutoff : Coulomb settings, see
        :class:`~cgkit.potentials.coulomb.CoulombPotential`
    """

    type_names = ("H", "O")

    def __init__(self, cutoff: float = 9.0, mode: str = "shift", r_oh_max: float = 1.35,
                 method: str = "auto", accuracy: float = 1e-6,
                 real_space_cutoff: float | None = None):
        super().__init__()
        if mode not in ("shift", "truncate"):
            raise InputError(f"cgkit:spcfw: mode must be 'shift' or 'truncate', got '{mode}'")
        if not (isinstance(cutoff, (int, float)) and cutoff > 3.0):
            raise InputError(f"cgkit:spcfw: cutoff must be > 3 Å, got {cutoff!r}")
        if not (0.9 < r_oh_max < 1.6):
            raise InputError(f"cgkit:spcfw: r_oh_max must lie between 0.9 and 1.6 Å, got {r_oh_max}")
        self.cutoff = float(cutoff)
        self.short_range_cutoff = self.cutoff
        self.mode = mode
        self.r_oh_max = float(r_oh_max)
        self.es = make_electrostatics(method, accuracy, real_space_cutoff)
        self._config = {"cutoff": self.cutoff, "mode": mode, "r_oh_max": self.r_oh_max,
                        "method": method, "accuracy": float(accuracy),
                        "real_space_cutoff": real_space_cutoff}
        p = SPCFW_PARAMETERS
        k = KCAL_PER_MOL
        self.register_buffer("k_bond", torch.tensor(p["k_bond"] * k, dtype=torch.float64))   # eV/Å²
        self.register_buffer("r0", torch.tensor(p["r0"], dtype=torch.float64))
        self.register_buffer("k_angle", torch.tensor(p["k_angle"] * k, dtype=torch.float64))  # eV/rad²
        self.register_buffer("theta0", torch.tensor(math.radians(p["theta0"]), dtype=torch.float64))
        self.register_buffer("lj_sigma", torch.tensor(p["sigma"], dtype=torch.float64))
        self.register_buffer("lj_epsilon", torch.tensor(p["epsilon"] * k, dtype=torch.float64))
        self.register_buffer("q_species", torch.tensor([p["q_H"], p["q_O"]], dtype=torch.float64))

    def get_config(self) -> dict:
        return dict(self._config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items())

    # ------------------------------------------------------------------ molecules
    def molecules(self, graph, positions=None, cell=None):
        """``(oh_edges (2m,), o_index (m,), h1 (m,), h2 (m,))``: the O→H edges of the graph
        (two per molecule, ordered by molecule) and the atoms of every molecule; refuses
        structures that are not intact water molecules (module docstring)."""
        H, O = 0, 1
        sp = graph.species
        i, j = graph.edge_index[0], graph.edge_index[1]
        with torch.no_grad():
            d = torch.linalg.norm(graph.edge_vectors(positions, cell), dim=1)
        oh = torch.nonzero((sp[i] == O) & (sp[j] == H) & (d < self.r_oh_max)).reshape(-1)
        n_h_of_o = torch.bincount(i[oh], minlength=graph.n_atoms)
        n_o_of_h = torch.bincount(j[oh], minlength=graph.n_atoms)
        bad_h = torch.nonzero((sp == H) & (n_o_of_h != 1)).reshape(-1)
        if len(bad_h):
            a = int(bad_h[0])
            raise StructureError(
                f"cgkit:spcfw: hydrogen atom {a} has {int(n_o_of_h[a])} oxygen atoms within "
                f"r_oh_max = {self.r_oh_max} Å (needs exactly one); SPC/Fw needs intact H2O "
                f"molecules ({len(bad_h)} hydrogen atoms are not bonded to exactly one O)")
        bad_o = torch.nonzero((sp == O) & (n_h_of_o != 2)).reshape(-1)
        if len(bad_o):
            a = int(bad_o[0])
            raise StructureError(
                f"cgkit:spcfw: oxygen atom {a} has {int(n_h_of_o[a])} hydrogen atoms within "
                f"r_oh_max = {self.r_oh_max} Å (needs exactly two); SPC/Fw needs intact H2O "
                f"molecules ({len(bad_o)} oxygen atoms are not in a water molecule)")
        order = torch.argsort(i[oh] * (graph.n_atoms + 1) + j[oh], stable=True)
        oh = oh[order]
        o_idx = i[oh][0::2]
        return oh, o_idx, j[oh][0::2], j[oh][1::2]

    def graph(self, atoms, *, dtype=None, cutoff=None):
        """The AtomicGraph of ``atoms``; molecule ids stored with the structure (if any) are
        checked against the molecules found by distance."""
        g = super().graph(atoms, dtype=dtype, cutoff=cutoff)
        key = next((k for k in _MOL_ID_KEYS if k in atoms.arrays), None)
        if key is not None and len(atoms):
            _, o_idx, h1, h2 = self.molecules(g)
            ids = np.asarray(atoms.arrays[key]).reshape(-1)
            for o, a, b in zip(o_idx.tolist(), h1.tolist(), h2.tolist()):
                if not ids[o] == ids[a] == ids[b]:
                    raise StructureError(
                        f"cgkit:spcfw: atoms {o} (O), {a} and {b} (H) form a water molecule by "
                        f"distance but carry different '{key}' values ({ids[o]}, {ids[a]}, "
                        f"{ids[b]}); fix the topology or the coordinates")
            counts = np.unique(ids, return_counts=True)[1]
            if np.any(counts != 3):
                raise StructureError(f"cgkit:spcfw: the '{key}' ids do not all describe "
                                     "three-atom molecules")
        return g

    # ------------------------------------------------------------------ energy
    def atomic_energies(self, graph, positions, cell):
        dt = positions.dtype
        oh, o_idx, h1, h2 = self.molecules(graph, positions.detach(), cell.detach())
        vec = graph.edge_vectors(positions, cell)
        i, j = graph.edge_index[0], graph.edge_index[1]
        out = torch.zeros(graph.n_atoms, dtype=dt, device=positions.device)
        # bonds and angles (energies on the oxygen)
        v = vec[oh]
        r = torch.linalg.norm(v, dim=1)
        e_bond = 0.5 * self.k_bond.to(dt) * (r - self.r0.to(dt)) ** 2
        out = out.index_add(0, i[oh], e_bond)
        v1, v2 = v[0::2], v[1::2]
        cos_t = (v1 * v2).sum(1)
        sin_t = torch.linalg.norm(torch.cross(v1, v2, dim=1), dim=1)
        theta = torch.atan2(sin_t, cos_t)
        e_angle = 0.5 * self.k_angle.to(dt) * (theta - self.theta0.to(dt)) ** 2
        out = out.index_add(0, o_idx, e_angle)
        # O–O Lennard-Jones
        d = torch.linalg.norm(vec, dim=1)
        oo = (graph.species[i] == 1) & (graph.species[j] == 1) & (d.detach() < self.cutoff)
        sig, eps = self.lj_sigma.to(dt), self.lj_epsilon.to(dt)

        def lj(x):
            s6 = (sig / x) ** 6
            return 4.0 * eps * (s6 * s6 - s6)

        e_lj = lj(d[oo])
        if self.mode == "shift":
            e_lj = e_lj - lj(torch.full((), self.cutoff, dtype=dt))
        out = out.index_add(0, i[oo], 0.5 * e_lj)
        # Coulomb without the intramolecular pairs
        q = self.q_species.to(dt)[graph.species]
        return out + coulomb_atomic_energies(self.es, graph, positions, cell, q,
                                             self._exclusions(graph, o_idx, h1, h2))

    @staticmethod
    def _exclusions(graph, o_idx, h1, h2):
        """Per structure: ((3m, 2) local pairs O–H1, O–H2, H1–H2, (3m,) zeros)."""
        pairs = torch.cat([torch.stack([o_idx, h1], 1), torch.stack([o_idx, h2], 1),
                           torch.stack([h1, h2], 1)])
        if graph.n_graphs == 1:
            return [(pairs, torch.zeros(len(pairs), dtype=graph.positions.dtype))]
        counts = graph.atoms_per_graph()
        starts = torch.cumsum(counts, 0) - counts
        gid = graph.batch[pairs[:, 0]]
        out = []
        for k in range(graph.n_graphs):
            p = pairs[gid == k] - starts[k]
            out.append((p, torch.zeros(len(p), dtype=graph.positions.dtype)))
        return out

    def charges_of(self, atoms) -> np.ndarray:
        """(n,) e: −0.82 for O, +0.41 for H."""
        syms = atoms.get_chemical_symbols()
        bad = sorted(set(syms) - {"H", "O"})
        if bad:
            raise UnknownSpeciesError(f"cgkit:spcfw knows H and O only; the structure has {bad}")
        p = SPCFW_PARAMETERS
        return np.array([p["q_O"] if s == "O" else p["q_H"] for s in syms])

    def born_effective_charges(self, atoms) -> np.ndarray:
        """(n, 3, 3) e: q_i·I (fixed point charges)."""
        return fixed_born_charges(self.charges_of(atoms))
