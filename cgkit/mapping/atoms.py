"""AtomTable: the few per-atom facts a mapping needs, from MDAnalysis, ASE or plain arrays.

Fields (n atoms, R residues):
    names (n,) str, masses (n,) amu, resindex (n,) int (residue of each atom, 0..R-1, residues in
    topology order), resnames (R,) str, res_molecule (R,) int (molecule of each residue; -1 when
    the topology does not say), bonds (nb, 2) atom-index pairs (may be empty), universe (the
    MDAnalysis Universe when there is one, for ``selection`` templates).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["AtomTable", "atom_table"]


@dataclass
class AtomTable:
    names: np.ndarray
    masses: np.ndarray
    resindex: np.ndarray
    resnames: np.ndarray
    res_molecule: np.ndarray
    bonds: np.ndarray
    elements: np.ndarray | None = None
    universe: object = None
    source: str = ""
    charges: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.names)

    @property
    def n_residues(self) -> int:
        return len(self.resnames)

    def residue_atoms(self) -> list[np.ndarray]:
        order = np.argsort(self.resindex, kind="stable")
        bounds = np.searchsorted(self.resindex[order], np.arange(self.n_residues + 1))
        return [order[bounds[r]:bounds[r + 1]] for r in range(self.n_residues)]


def _has(ag, attr) -> bool:
    try:
        getattr(ag, attr)
        return True
    except (AttributeError, Exception):  # MDAnalysis raises NoDataError (an AttributeError)
        return False


def from_universe(u, source: str = "") -> AtomTable:
    atoms = u.atoms
    n = len(atoms)
    names = np.asarray(atoms.names, dtype=object) if _has(atoms, "names") else \
        np.asarray(atoms.types, dtype=object)
    if _has(atoms, "masses"):
        masses = np.asarray(atoms.masses, dtype=np.float64)
    else:
        masses = np.ones(n)
    resindex = np.asarray(atoms.resindices, dtype=np.int64)
    resnames = np.asarray(u.residues.resnames, dtype=object) if _has(u.residues, "resnames") else \
        np.full(len(u.residues), "RES", dtype=object)
    bonds = np.zeros((0, 2), dtype=np.int64)
    res_mol = np.full(len(u.residues), -1, dtype=np.int64)
    if _has(atoms, "bonds") and len(atoms.bonds):
        bonds = np.asarray(atoms.bonds.indices, dtype=np.int64)
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        g = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
        comp = connected_components(g, directed=False)[1]
        res_mol = _residue_molecule(comp, resindex, len(resnames))
    elif _has(atoms, "molnums"):
        res_mol = _residue_molecule(np.asarray(atoms.molnums), resindex, len(resnames))
    elif _has(atoms, "segindices") and len(u.segments) > 1:
        res_mol = _residue_molecule(np.asarray(atoms.segindices), resindex, len(resnames))
    elements = None
    if _has(atoms, "elements"):
        elements = np.asarray(atoms.elements, dtype=object)
    charges = None
    if _has(atoms, "charges"):
        charges = np.asarray(atoms.charges, dtype=np.float64)
    return AtomTable(names=names, masses=masses, resindex=resindex, resnames=resnames,
                     res_molecule=res_mol, bonds=bonds, elements=elements, universe=u, source=source,
                     charges=charges)


def _residue_molecule(atom_mol, resindex, n_res):
    res_mol = np.full(n_res, -1, dtype=np.int64)
    res_mol[resindex] = atom_mol
    # a residue split across molecules has no single molecule: keep the first atom's
    first = np.full(n_res, -1, dtype=np.int64)
    seen = np.zeros(n_res, bool)
    for i in range(len(resindex)):
        r = resindex[i]
        if not seen[r]:
            seen[r] = True
            first[r] = atom_mol[i]
    return first


def from_ase(atoms, source: str = "") -> AtomTable:
    """ASE Atoms: residues from ``residuenames``/``residuenumbers`` arrays (PDB reader) when
    present; otherwise each bonded molecule (ASE natural cutoffs) is a residue named by its
    chemical formula, and atoms are named element + running number within the molecule
    (e.g. water: O1 H1 H2)."""
    n = len(atoms)
    symbols = np.asarray(atoms.get_chemical_symbols(), dtype=object)
    masses = np.asarray(atoms.get_masses(), dtype=np.float64)
    from ase.neighborlist import natural_cutoffs, neighbor_list
    if n:
        i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms))
        mask = i < j
        bonds = np.stack([i[mask], j[mask]], 1).astype(np.int64)
    else:
        bonds = np.zeros((0, 2), np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    comp = connected_components(coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])),
                                           shape=(n, n)), directed=False)[1] if n else np.zeros(0, int)
    if "residuenames" in atoms.arrays and "residuenumbers" in atoms.arrays:
        rn = np.asarray(atoms.arrays["residuenames"], dtype=object)
        rnum = np.asarray(atoms.arrays["residuenumbers"])
        key_change = np.r_[True, (rnum[1:] != rnum[:-1]) | (rn[1:] != rn[:-1])] if n else np.zeros(0, bool)
        resindex = np.cumsum(key_change) - 1
        resnames = np.asarray([str(x).strip() for x in rn[key_change]], dtype=object)
        names = np.asarray([str(x).strip() for x in atoms.arrays.get("atomtypes", symbols)], dtype=object)
    else:
        # residues = molecules in order of first atom
        _, first = np.unique(comp, return_index=True)
        order = np.argsort(first)
        remap = np.empty_like(order)
        remap[order] = np.arange(len(order))
        resindex = remap[comp] if n else np.zeros(0, int)
        from ase.formula import Formula
        resnames = np.empty(len(order), dtype=object)
        names = np.empty(n, dtype=object)
        for r in range(len(order)):
            idx = np.where(resindex == r)[0]
            resnames[r] = Formula("".join(symbols[idx])).format("hill")
            count: dict = {}
            for k in idx:
                count[symbols[k]] = count.get(symbols[k], 0) + 1
                names[k] = f"{symbols[k]}{count[symbols[k]]}"
    res_mol = _residue_molecule(comp, resindex, len(resnames))
    charges = None
    if "initial_charges" in atoms.arrays:
        charges = np.asarray(atoms.get_initial_charges(), dtype=np.float64)
    return AtomTable(names=names, masses=masses, resindex=np.asarray(resindex, np.int64),
                     resnames=resnames, res_molecule=res_mol, bonds=bonds, elements=symbols,
                     source=source, charges=charges)


def atom_table(topology) -> AtomTable:
    """Build an AtomTable from an MDAnalysis Universe/AtomGroup, ASE Atoms, an AtomTable, or a
    file path (read with MDAnalysis; extxyz/xyz via ASE)."""
    if isinstance(topology, AtomTable):
        return topology
    if isinstance(topology, (str, Path)):
        p = Path(topology)
        if not p.is_file():
            raise InputError(f"topology file not found: {p}")
        if p.suffix.lower() in (".xyz", ".extxyz", ".traj"):
            import ase.io
            return from_ase(ase.io.read(str(p), index=0), source=str(p))
        import MDAnalysis as mda
        try:
            kw = {"format": "DATA"} if p.suffix.lower() in (".data", ".lmp") else {}
            u = mda.Universe(str(p), **kw)
        except Exception as exc:  # MDAnalysis raises many types
            raise InputError(f"cannot read topology {p} with MDAnalysis: {exc}") from None
        return from_universe(u, source=str(p))
    try:
        import MDAnalysis as mda
        if isinstance(topology, mda.Universe):
            return from_universe(topology)
    except ImportError:  # pragma: no cover
        pass
    try:
        from ase import Atoms
        if isinstance(topology, Atoms):
            return from_ase(topology)
    except ImportError:  # pragma: no cover
        pass
    raise InputError(f"cannot use {type(topology).__name__} as a topology; give an MDAnalysis "
                     "Universe, ASE Atoms or a topology file")
