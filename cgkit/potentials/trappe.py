"""TraPPE-UA united-atom force field for alkanes and polyethylene (flexible variant).

Sites (united atoms, element ``C`` with the hydrogens folded in): ``CH4``, ``CH3``, ``CH2``,
``CH``. The energy is

.. math::

    U = \\sum_{bonds} \\tfrac{k_b}{2}(r - r_0)^2
      + \\sum_{angles} \\tfrac{k_θ}{2}(θ - θ_0)^2
      + \\sum_{dihedrals} c_0 + c_1(1 + \\cos φ) + c_2(1 - \\cos 2φ) + c_3(1 + \\cos 3φ)
      + \\sum_{pairs} 4ε_{ij}[(σ_{ij}/r)^{12} - (σ_{ij}/r)^6]\\, S(r)

with the published TraPPE-UA parameters (Martin & Siepmann, J. Phys. Chem. B 102, 2569 (1998)
for n-alkanes; J. Phys. Chem. B 103, 4508 (1999) for the branch point CH), in kelvin
(energy / k_B):

=====================  =====================================================================
LJ ε/k_B, σ            CH4 148 K, 3.73 Å · CH3 98 K, 3.75 Å · CH2 46 K, 3.95 Å · CH 10 K, 4.68 Å;
                       unlike pairs by Lorentz–Berthelot (σ arithmetic, ε geometric mean)
bond                   r_0 = 1.54 Å; TraPPE keeps bonds rigid, the flexible variant uses a
                       harmonic bond with k_b/k_B = 452,900 K/Å² (U = k_b/2 (r − r_0)²; the
                       stiff C–C constant commonly used to make the SKS/TraPPE-UA alkane
                       models flexible, e.g. Mundy, Siepmann & Klein, J. Chem. Phys. 102, 3376
                       (1995); ≈ 900 kcal mol⁻¹ Å⁻², i.e. LAMMPS ``bond_style harmonic``
                       K = 450 kcal mol⁻¹ Å⁻²); ``bond_k`` changes it
angle CHx–CH2–CHy      θ_0 = 114°, k_θ/k_B = 62,500 K/rad² (U = k_θ/2 (θ − θ_0)²)
angle CHx–CH–CHy       θ_0 = 112°, same k_θ
torsion CHx–CH2–CH2–CHy  c_0 = 0, c_1 = 355.03 K, c_2 = −68.19 K, c_3 = 791.32 K
torsion CHx–CH2–CH–CHy   c_0 = −251.06 K, c_1 = 428.73 K, c_2 = −111.85 K, c_3 = 441.27 K
(and CHx–CH–CH–CHy)
=====================  =====================================================================

φ is the IUPAC dihedral (trans = 180°, where the torsion energy is zero for n-alkanes).
Lennard-Jones acts between sites more than three bonds apart and between different molecules
(1-2, 1-3 and 1-4 pairs of the topology are excluded; only the bonded, minimum-image copy of an
excluded pair is excluded, other periodic images interact, as in LAMMPS). The LJ energy is
multiplied by the C2 switch ``S(x) = 1 − 10x³ + 15x⁴ − 6x⁵``, ``x = (r − r_on)/(r_cut − r_on)``
between ``r_on`` and ``r_cut`` (LAMMPS ``pair_style lj/mdf r_on r_cut``); defaults 8.5 / 10 Å.
No tail corrections. (ASE's ``LennardJones(smooth=True)`` uses a different, C1 switch that is
cubic in r², so it is not the same function.)

Units: eV, Å (parameters in kelvin are converted with :data:`cgkit.units.KB_EV`).
Bonded energies are split equally among the participating sites, each pair energy half to
each partner, so ``atomic_energies`` sum to the total.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, NotSupportedError, UnknownSpeciesError
from ..potential import Potential
from ..topology import Topology, bonded_vectors
from ..units import KB_EV
from .pe_topology import chain_topology, crystal_chain_topology

__all__ = ["TraPPEUA", "PECrystalTraPPEUA", "pe_crystal_potential", "TRAPPE_TYPES", "TRAPPE_LJ",
           "TRAPPE_MASSES", "BOND_R0", "BOND_K", "ANGLE_K", "torsion_energy_K"]

#: site types in the order of ``graph.species``
TRAPPE_TYPES = ("CH4", "CH3", "CH2", "CH")
#: (ε/k_B in K, σ in Å)
TRAPPE_LJ = {"CH4": (148.0, 3.73), "CH3": (98.0, 3.75), "CH2": (46.0, 3.95), "CH": (10.0, 4.68)}
#: united-atom masses, amu
TRAPPE_MASSES = {"CH4": 16.043, "CH3": 15.035, "CH2": 14.027, "CH": 13.019}
#: number of carbon neighbours each site type must have
VALENCE = {"CH4": 0, "CH3": 1, "CH2": 2, "CH": 3}
BOND_R0 = 1.54            # Å
BOND_K = 452_900.0        # K/Å², U = k/2 (r - r0)^2
ANGLE_K = 62_500.0        # K/rad², U = k/2 (θ - θ0)^2
ANGLE_T0 = {"CH2": 114.0, "CH": 112.0}  # degrees, by vertex type
#: (c0, c1, c2, c3) in K, by the (sorted) types of the two central sites
TORSION_C = {("CH2", "CH2"): (0.0, 355.03, -68.19, 791.32),
             ("CH", "CH2"): (-251.06, 428.73, -111.85, 441.27),
             ("CH", "CH"): (-251.06, 428.73, -111.85, 441.27)}


def torsion_energy_K(phi_rad, c) -> np.ndarray:
    """OPLS/TraPPE torsion energy in K at dihedral angles ``phi_rad`` (trans = π)."""
    phi = np.asarray(phi_rad, dtype=np.float64)
    c0, c1, c2, c3 = c
    return c0 + c1 * (1 + np.cos(phi)) + c2 * (1 - np.cos(2 * phi)) + c3 * (1 + np.cos(3 * phi))


def _topology_from_config(d: dict) -> Topology:
    return Topology(n_particles=int(d["n_particles"]),
                    bonds=np.asarray(d["bonds"], dtype=np.int64).reshape(-1, 2),
                    angles=np.asarray(d["angles"], dtype=np.int64).reshape(-1, 3),
                    dihedrals=np.asarray(d["dihedrals"], dtype=np.int64).reshape(-1, 4),
                    molecule=np.asarray(d["molecule"], dtype=np.int64),
                    exclusions=np.asarray(d["exclusions"], dtype=np.int64).reshape(-1, 2))


def _topology_to_config(t: Topology) -> dict:
    return {"n_particles": int(t.n_particles), "bonds": t.bonds.tolist(),
            "angles": t.angles.tolist(), "dihedrals": t.dihedrals.tolist(),
            "molecule": np.asarray(t.molecule).tolist(), "exclusions": t.exclusions.tolist()}


class TraPPEUA(Potential):
    """TraPPE-UA (flexible) for a given system of united-atom sites.

    Parameters
    ----------
    site_types : sequence of n str — ``'CH3'``, ``'CH2'``, ``'CH'`` or ``'CH4'`` per site, in
        the order of the structure's atoms
    topology : :class:`cgkit.topology.Topology` of the same n sites, usually
        ``Topology.from_bonds(n, bonds)`` (angles, proper dihedrals and 1-2/1-3/1-4 exclusions
        derived from the bonds); a dict as written by :meth:`get_config` is accepted too
    r_on, r_cut : Å, start and end of the LJ switch (0 < r_on < r_cut); ``cutoff = r_cut``
    bond_k : K/Å², harmonic bond constant k_b/k_B with U = k_b/2 (r − r_0)²

    Structures must hold the sites in the same order (``atoms.arrays['bead_types']`` names the
    site types; see :func:`cgkit.potentials.polyethylene.build_pe_melt`). A batch of several
    structures is accepted when each is a copy of the same system. Bonded terms use minimum-image
    vectors (:func:`cgkit.topology.bonded_vectors`): bonds must stay shorter than half the
    smallest cell width. Build a potential for ASE atoms with :meth:`from_atoms`.
    """

    type_names = TRAPPE_TYPES

    def __init__(self, site_types=None, topology=None, *, r_on: float = 8.5, r_cut: float = 10.0,
                 bond_k: float = BOND_K):
        super().__init__()
        if site_types is None or topology is None:
            raise InputError(
                "TraPPEUA needs the system it describes: the per-site types and the bonded "
                "topology. Build it in Python with TraPPEUA.from_atoms(atoms) (e.g. atoms, topo = "
                "cgkit.potentials.polyethylene.build_pe_melt(...); TraPPEUA(atoms.arrays['bead_types'], "
                "topo)), then save it with potential.save('trappe.pt') and pass that file instead of "
                "'cgkit:trappe_ua'")
        if isinstance(topology, dict):
            topology = _topology_from_config(topology)
        if not isinstance(topology, Topology):
            raise InputError("topology must be a cgkit.topology.Topology (e.g. Topology.from_bonds(n, bonds))")
        site_types = [str(s) for s in np.asarray(site_types).reshape(-1)]
        unknown = sorted(set(site_types) - set(TRAPPE_TYPES))
        if unknown:
            raise UnknownSpeciesError(f"site types {unknown} are not TraPPE-UA alkane sites; use "
                                      f"{list(TRAPPE_TYPES)}")
        n = len(site_types)
        if topology.n_particles != n:
            raise InputError(f"the topology has {topology.n_particles} particles but {n} site types "
                             "were given; they must describe the same sites")
        r_on, r_cut = float(r_on), float(r_cut)
        if not (np.isfinite(r_on) and np.isfinite(r_cut) and 0.0 < r_on < r_cut):
            raise InputError(f"need 0 < r_on < r_cut (Å) for the LJ switch, got r_on={r_on}, r_cut={r_cut}")
        if not (np.isfinite(bond_k) and bond_k > 0):
            raise InputError(f"bond_k must be a positive force constant in K/Å², got {bond_k}")
        self.site_types = tuple(site_types)
        self.topology = topology
        self.r_on, self.r_cut, self.bond_k = r_on, r_cut, float(bond_k)
        self.cutoff = r_cut
        self.n_sites = n

        # valence check: catches wrong type assignments (e.g. CH2 chain ends)
        deg = np.bincount(topology.bonds.reshape(-1), minlength=n) if len(topology.bonds) else np.zeros(n, int)
        for k, (t, d) in enumerate(zip(site_types, deg)):
            if VALENCE[t] != d:
                raise InputError(f"site {k} is {t} but has {d} bonds (a {t} site has {VALENCE[t]}); "
                                 "fix the site types or the bonds")

        kb = KB_EV
        sp = np.array([TRAPPE_TYPES.index(t) for t in site_types], dtype=np.int64)
        self.register_buffer("site_species", torch.as_tensor(sp), persistent=False)
        # bonds
        self.register_buffer("bond_idx", torch.as_tensor(topology.bonds), persistent=False)
        self.register_buffer("bond_kr", torch.tensor([self.bond_k * kb, BOND_R0], dtype=torch.float64))
        # angles: θ0 by vertex type
        ang = topology.angles
        t0 = []
        for a in ang:
            v = site_types[a[1]]
            if v not in ANGLE_T0:
                raise InputError(f"angle {a.tolist()} has a {v} vertex, which TraPPE-UA does not "
                                 "define (quaternary carbon is not supported)")
            t0.append(np.deg2rad(ANGLE_T0[v]))
        self.register_buffer("angle_idx", torch.as_tensor(ang), persistent=False)
        self.register_buffer("angle_t0", torch.tensor(t0, dtype=torch.float64).reshape(-1))
        self.register_buffer("angle_k", torch.tensor(ANGLE_K * kb, dtype=torch.float64))
        # dihedrals: coefficients by central pair
        dih = topology.dihedrals
        cs = []
        for d in dih:
            key = tuple(sorted((site_types[d[1]], site_types[d[2]])))
            if key not in TORSION_C:
                raise InputError(f"dihedral {d.tolist()} has central sites {key}, which this "
                                 "TraPPE-UA implementation does not define")
            cs.append(TORSION_C[key])
        self.register_buffer("dih_idx", torch.as_tensor(dih), persistent=False)
        self.register_buffer("dih_c", torch.tensor(cs, dtype=torch.float64).reshape(-1, 4) * kb)
        # LJ tables (Lorentz–Berthelot)
        eps = np.array([TRAPPE_LJ[t][0] for t in TRAPPE_TYPES]) * kb
        sig = np.array([TRAPPE_LJ[t][1] for t in TRAPPE_TYPES])
        self.register_buffer("lj_eps", torch.as_tensor(np.sqrt(eps[:, None] * eps[None, :])))
        self.register_buffer("lj_sigma", torch.as_tensor(0.5 * (sig[:, None] + sig[None, :])))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_atoms(cls, atoms, topology: Topology | None = None, **kwargs) -> "TraPPEUA":
        """Potential for ASE ``atoms`` whose ``arrays['bead_types']`` hold the site types.

        Without ``topology`` it is rebuilt from ``arrays['chain_id']`` and
        ``arrays['chain_index']`` (linear chains, as written by
        :func:`cgkit.potentials.polyethylene.build_pe_melt`).
        """
        types = atoms.arrays.get("bead_types")
        if types is None:
            raise InputError("atoms.arrays['bead_types'] must name the TraPPE-UA site type "
                             "(CH3/CH2/...) of every atom")
        if topology is None:
            topology = chain_topology(atoms)
        return cls(types, topology, **kwargs)

    def get_config(self) -> dict:
        return {"site_types": list(self.site_types), "topology": _topology_to_config(self.topology),
                "r_on": self.r_on, "r_cut": self.r_cut, "bond_k": self.bond_k}

    # ------------------------------------------------------------------ energy
    def _check(self, graph) -> int:
        n = self.n_sites
        G = graph.n_graphs
        if graph.n_atoms != G * n:
            raise InputError(f"this TraPPEUA potential was built for {n} sites, the structure has "
                             f"{graph.n_atoms} atoms in {G} structure(s); build the potential for "
                             "this system (TraPPEUA.from_atoms(atoms))")
        if G > 1:
            expect = torch.arange(G, device=graph.batch.device).repeat_interleave(n)
            if not torch.equal(graph.batch, expect):
                raise InputError("every structure of the batch must be a copy of the system this "
                                 "TraPPEUA potential was built for")
        if tuple(graph.type_names) == TRAPPE_TYPES:
            sp = graph.species
        else:
            lut = []
            for t in graph.type_names:
                lut.append(TRAPPE_TYPES.index(t) if t in TRAPPE_TYPES else -1)
            sp = torch.as_tensor(lut, device=graph.species.device)[graph.species]
        if not torch.equal(sp, self.site_species.to(sp.device).repeat(G)):
            bad = int(torch.nonzero(sp != self.site_species.repeat(G))[0, 0])
            raise InputError(f"atom {bad} has a different site type than the topology this TraPPEUA "
                             "potential was built for; the atoms must be in the same order "
                             "with the same bead_types")
        return G

    def _bonded(self, pos, cell, pbc, e_atom, off):
        """Add bonded energies of one structure (sites ``off:off+n``) into ``e_atom``."""
        if len(self.bond_idx):
            a, b = self.bond_idx[:, 0], self.bond_idx[:, 1]
            r = torch.linalg.norm(bonded_vectors(pos, cell, pbc, a, b), dim=1)
            u = 0.5 * self.bond_kr[0] * (r - self.bond_kr[1]) ** 2
            e_atom.index_add_(0, a + off, 0.5 * u)
            e_atom.index_add_(0, b + off, 0.5 * u)
        if len(self.angle_idx):
            i, j, k = self.angle_idx.unbind(1)
            v1 = bonded_vectors(pos, cell, pbc, j, i)
            v2 = bonded_vectors(pos, cell, pbc, j, k)
            theta = torch.atan2(torch.linalg.norm(torch.cross(v1, v2, dim=1), dim=1),
                                (v1 * v2).sum(1))
            u = 0.5 * self.angle_k * (theta - self.angle_t0) ** 2 / 3.0
            for idx in (i, j, k):
                e_atom.index_add_(0, idx + off, u)
        if len(self.dih_idx):
            i, j, k, l = self.dih_idx.unbind(1)
            b1 = bonded_vectors(pos, cell, pbc, i, j)
            b2 = bonded_vectors(pos, cell, pbc, j, k)
            b3 = bonded_vectors(pos, cell, pbc, k, l)
            n1 = torch.cross(b1, b2, dim=1)
            n2 = torch.cross(b2, b3, dim=1)
            c = (n1 * n2).sum(1) / (torch.linalg.norm(n1, dim=1) * torch.linalg.norm(n2, dim=1))
            c0, c1, c2, c3 = self.dih_c.unbind(1)
            # cos 2φ = 2c² − 1, cos 3φ = 4c³ − 3c (no angle needed: smooth through φ = 0, π)
            u = c0 + c1 * (1 + c) + c2 * (2 - 2 * c * c) + c3 * (1 + 4 * c ** 3 - 3 * c)
            u = u / 4.0
            for idx in (i, j, k, l):
                e_atom.index_add_(0, idx + off, u)

    def atomic_energies(self, graph, positions, cell):
        """(n_atoms,) eV; see the module docstring for the functional form."""
        G = self._check(graph)
        n = self.n_sites
        e_atom = positions.new_zeros(graph.n_atoms)
        for g in range(G):
            pbc = graph.pbc[g]
            if bool(pbc.any()) and not bool(pbc.all()):
                raise NotSupportedError("TraPPEUA supports fully periodic structures or molecules "
                                        "in vacuum (pbc all False), not mixed boundary conditions")
            self._bonded(positions[g * n:(g + 1) * n], cell[g], pbc, e_atom, g * n)

        # non-bonded LJ over graph edges (full list: each pair twice, half the energy each)
        i, j, vec, dist = self.neighbor_edges(graph, positions, cell)
        excl = self.topology.exclusion_mask(i % n, j % n)
        if bool(excl.any()):
            # exclude only the bonded (minimum-image) copy of an excluded pair
            ie, je, ve = i[excl], j[excl], vec[excl].detach()
            gb = graph.batch[ie]
            pbc_e = graph.pbc[gb]
            with torch.no_grad():
                d0 = positions[je].detach() - positions[ie].detach()
                if bool(pbc_e.any()):
                    ce = cell[gb].detach()
                    frac = torch.linalg.solve(ce.transpose(1, 2), d0.unsqueeze(-1)).squeeze(-1)
                    shift = -torch.round(frac) * pbc_e.to(frac.dtype)
                    d0 = d0 + torch.einsum("ea,eab->eb", shift, ce)
                is_min = torch.linalg.norm(ve - d0, dim=1) < 1e-6
            sub = excl.clone()
            sub[excl] = is_min
            excl = sub
        keep = ~excl
        i, j, dist = i[keep], j[keep], dist[keep]
        si, sj = self.site_species[i % n], self.site_species[j % n]
        eps, sig = self.lj_eps[si, sj], self.lj_sigma[si, sj]
        sr6 = (sig / dist) ** 6
        u = 4.0 * eps * (sr6 * sr6 - sr6)
        x = ((dist - self.r_on) / (self.r_cut - self.r_on)).clamp(0.0, 1.0)
        s = 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x)
        e_atom = e_atom.index_add(0, i, 0.5 * u * s)
        return e_atom


class PECrystalTraPPEUA(TraPPEUA):
    """TraPPE-UA for an all-CH2 system whose structures may label sites by element only.

    Identical to :class:`~cgkit.potentials.trappe.TraPPEUA`, except that a structure without
    ``arrays['bead_types']`` whose atoms are all carbon is read as all-``CH2`` — as for the
    supercells that phonopy builds from a PE crystal unit cell (phonopy keeps only element
    symbols). Build it with :func:`pe_crystal_potential`.
    """

    def __init__(self, site_types=None, topology=None, **kwargs):
        super().__init__(site_types, topology, **kwargs)
        if set(self.site_types) != {"CH2"}:
            raise InputError("PECrystalTraPPEUA is for systems of CH2 sites only (infinite "
                             "chains); use TraPPEUA for chains with ends")

    def graph(self, atoms, *, dtype=None, cutoff=None):
        if atoms.arrays.get("bead_types") is not None:
            return super().graph(atoms, dtype=dtype, cutoff=cutoff)
        if set(atoms.get_chemical_symbols()) != {"C"}:
            raise InputError("without arrays['bead_types'] every atom must be carbon (a CH2 site)")
        from dataclasses import replace

        from ..data import AtomicGraph
        g = AtomicGraph.from_atoms(atoms, cutoff or self.cutoff, type_names=("C",),
                                   dtype=dtype or self.dtype)
        return replace(g, type_names=("CH2",))


def pe_crystal_potential(atoms, topology: Topology | None = None, *, bond_cutoff: float = 1.9,
                         **kwargs) -> PECrystalTraPPEUA:
    """TraPPE-UA potential for a PE crystal in the site order of ``atoms``.

    ``topology`` defaults to :func:`crystal_chain_topology` (bonds from distances, any site
    order), so it works for phonopy's supercells of :func:`pe_crystal_unit_cell`:
    ``pe_crystal_potential(phonopy_to_ase(phonon.supercell))``. ``kwargs`` go to
    :class:`TraPPEUA` (``r_on``, ``r_cut``, ``bond_k``).
    """
    topology = topology if topology is not None else crystal_chain_topology(atoms, bond_cutoff)
    return PECrystalTraPPEUA(["CH2"] * len(atoms), topology, **kwargs)
