"""Topologies of polymer chains: linear chains with ends (melts) and infinite periodic chains
(crystals).

:func:`chain_topology` reads the chains from per-site arrays (``chain_id``, ``chain_index``, as
written by :func:`cgkit.potentials.pe_melt.build_pe_melt`); :func:`crystal_chain_topology` finds
the bonds of infinite chains from distances (any site order, e.g. phonopy's supercells);
:func:`unwrap_chains` makes every chain whole (:meth:`cgkit.topology.Topology.unwrap`).
Positions in Å.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..topology import Topology

__all__ = ["chain_topology", "crystal_chain_topology", "unwrap_chains"]


def chain_topology(atoms) -> Topology:
    """Topology of linear chains from ``arrays['chain_id']`` and ``arrays['chain_index']``.

    Consecutive sites of a chain are bonded; angles, dihedrals and 1-2/1-3/1-4 exclusions follow
    (:meth:`Topology.from_bonds`); ``molecule`` is the chain id.
    """
    cid = atoms.arrays.get("chain_id")
    cix = atoms.arrays.get("chain_index")
    if cid is None or cix is None:
        raise InputError("atoms.arrays must hold 'chain_id' and 'chain_index' (as written by "
                         "build_pe_melt) to derive the chain topology; or pass a Topology")
    cid = np.asarray(cid, dtype=np.int64)
    cix = np.asarray(cix, dtype=np.int64)
    order = np.lexsort((cix, cid))
    same = cid[order][1:] == cid[order][:-1]
    step = cix[order][1:] - cix[order][:-1]
    if np.any(same & (step != 1)):
        raise InputError("chain_index must run 0, 1, 2, ... without gaps or repeats within a chain")
    bonds = np.stack([order[:-1][same], order[1:][same]], axis=1)
    _, mol = np.unique(cid, return_inverse=True)
    return Topology.from_bonds(len(atoms), bonds, exclude=3, molecule=mol)


def unwrap_chains(atoms, topology: Topology | None = None) -> np.ndarray:
    """(n, 3) Å positions with every chain made whole (:meth:`cgkit.topology.Topology.unwrap`;
    the first site of each chain kept in place)."""
    topology = topology if topology is not None else chain_topology(atoms)
    return topology.unwrap(atoms.get_positions(), atoms.cell.array, atoms.pbc)


def crystal_chain_topology(atoms, bond_cutoff: float = 1.9) -> Topology:
    """Topology of infinite (periodic) chains in a crystal, from distances.

    Sites closer than ``bond_cutoff`` Å (minimum image) are bonded; every site must have exactly
    two bonds, and each periodic chain must be long enough (≥ 8 sites per period) that all
    1-2, 1-3 and 1-4 neighbours are distinct sites whose minimum-image vectors follow the bonds.
    Angles, dihedrals and 1-2/1-3/1-4 exclusions follow (:meth:`Topology.from_bonds`); works for
    any site order (e.g. phonopy's supercells).
    """
    from ase.neighborlist import neighbor_list
    if not atoms.pbc.all():
        raise InputError("crystal_chain_topology needs a structure periodic in all three directions")
    i, j, D = neighbor_list("ijD", atoms, float(bond_cutoff))
    keep = i < j
    pairs = np.unique(np.stack([i[keep], j[keep]], 1), axis=0)
    n = len(atoms)
    deg = np.bincount(pairs.reshape(-1), minlength=n)
    nb_count = np.bincount(i, minlength=n)  # bonded neighbours counting periodic images
    if np.any(deg != 2) or np.any(nb_count != 2):
        bad = int(np.nonzero((deg != 2) | (nb_count != 2))[0][0])
        raise InputError(f"site {bad} has {int(nb_count[bad])} neighbours within {bond_cutoff} Å "
                         f"({int(deg[bad])} distinct sites); every site of an infinite chain needs "
                         "exactly 2. Use at least 4 unit cells along the chains and a bond_cutoff "
                         "between the bond length and the 1-3 distance")
    topo = Topology.from_bonds(n, pairs, exclude=3)
    # minimum-image consistency: the 1-4 vector must be the sum of the three bond vectors
    pos, cell = atoms.get_positions(), atoms.cell.array
    inv = np.linalg.inv(cell)

    def mic(d):
        f = d @ inv
        return (f - np.round(f)) @ cell
    d = topo.dihedrals
    path = sum(mic(pos[d[:, k + 1]] - pos[d[:, k]]) for k in range(3))
    direct = mic(pos[d[:, 3]] - pos[d[:, 0]])
    if len(topo.exclusions) != 3 * n or not np.allclose(path, direct, atol=1e-6):
        raise InputError("the periodic chains are too short for unique 1-4 neighbours under minimum "
                         "image; repeat the cell at least 4 times along the chains (≥ 8 sites)")
    return topo
