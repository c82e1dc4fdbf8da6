"""Bonded topology of a particle system (united atoms, CG beads, or atoms).

A :class:`Topology` is index arrays into the particles: bonds (nb, 2), angles (na, 3),
dihedrals (nd, 4), a molecule index per particle, and the non-bonded exclusions. It is shared by
classical force fields (TraPPE-UA), the coarse-graining :mod:`cgkit.mapping`, force matching
and the polymer analyses. Interaction *types* are derived from per-particle type names with
:meth:`Topology.bond_types` etc. (a bond A–B and B–A are the same type).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InputError

__all__ = ["Topology", "bonded_vectors", "UnwrapPlan"]


def _as_idx(a, width: int, name: str) -> np.ndarray:
    a = np.asarray(a if a is not None else np.zeros((0, width)), dtype=np.int64)
    if a.size == 0:
        return np.zeros((0, width), dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != width:
        raise InputError(f"{name} must have shape (n, {width}), got {a.shape}")
    return a


class UnwrapPlan:
    """How to make molecules whole: the one chain/molecule unwrapper of cgkit.

    Built once from the bonds (a breadth-first walk from the first particle of every
    connected component), then applied to any number of frames: every bonded particle is
    placed at the minimum image of its parent along the walk, so each molecule becomes
    continuous and keeps its first particle where it was. Bond vectors must be shorter than
    half the box (always true for a physical bond in a valid box).

    bonds: (nb, 2) particle indices; n_particles: number of particles.
    """

    def __init__(self, n_particles: int, bonds):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import breadth_first_order, connected_components
        bonds = _as_idx(bonds, 2, "bonds")
        n = int(n_particles)
        self.n_particles = n
        depth = np.zeros(n, dtype=np.int64)
        parent = np.full(n, -1, dtype=np.int64)
        if len(bonds):
            g = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
            _, comp = connected_components(g, directed=False)
            roots = np.unique(comp, return_index=True)[1]
            for r in roots:
                order, pred = breadth_first_order(g, int(r), directed=False, return_predecessors=True)
                for v in order[1:]:  # BFS order: a parent's depth is known before its children's
                    parent[v] = pred[v]
                    depth[v] = depth[pred[v]] + 1
        #: per BFS level: (children, parents) index arrays
        self.levels = [(np.flatnonzero(depth == d), parent[depth == d]) for d in range(1, int(depth.max(initial=0)) + 1)]

    def apply(self, positions, cell, pbc=True) -> np.ndarray:
        """Whole molecules: positions (..., n, 3) Å (any number of leading frame axes), cell
        (3, 3) Å rows (or (..., 3, 3) per frame), pbc bool or (3,) bools. Returns a new float64
        array; with no periodic direction (or a zero cell) the positions are returned as given."""
        x = np.array(positions, dtype=np.float64, copy=True)
        if x.shape[-2] != self.n_particles:
            raise InputError(f"positions hold {x.shape[-2]} particles, the bonds {self.n_particles}")
        cell = np.asarray(cell, dtype=np.float64)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
        if not pbc.any() or not np.any(cell):
            return x
        inv = np.linalg.inv(cell)
        out = x.copy()
        for child, par in self.levels:
            d = x[..., child, :] - x[..., par, :]
            f = d @ inv
            f = f - np.round(f) * pbc
            out[..., child, :] = out[..., par, :] + f @ cell
        return out


@dataclass(frozen=True)
class Topology:
    """Bonded topology.

    n_particles: number of particles; bonds (nb, 2), angles (na, 3) with the vertex in the middle,
    dihedrals (nd, 4) proper dihedrals i-j-k-l; molecule (n,) molecule index of each particle;
    exclusions (ne, 2) with i < j: pairs that get no non-bonded interaction.
    """

    n_particles: int
    bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    angles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    dihedrals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    molecule: np.ndarray | None = None
    exclusions: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))

    def __post_init__(self):
        object.__setattr__(self, "bonds", _as_idx(self.bonds, 2, "bonds"))
        object.__setattr__(self, "angles", _as_idx(self.angles, 3, "angles"))
        object.__setattr__(self, "dihedrals", _as_idx(self.dihedrals, 4, "dihedrals"))
        excl = _as_idx(self.exclusions, 2, "exclusions")
        if len(excl):
            excl = np.unique(np.sort(excl, axis=1), axis=0)
        object.__setattr__(self, "exclusions", excl)
        for name in ("bonds", "angles", "dihedrals", "exclusions"):
            arr = getattr(self, name)
            if len(arr) and (arr.min() < 0 or arr.max() >= self.n_particles):
                raise InputError(f"{name} refer to particles outside 0..{self.n_particles - 1}")
        if self.molecule is None:
            object.__setattr__(self, "molecule", self._connected_components())
        else:
            object.__setattr__(self, "molecule", np.asarray(self.molecule, dtype=np.int64))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bonds(cls, n_particles: int, bonds, *, angles: bool = True, dihedrals: bool = True,
                   exclude: int = 3, molecule=None) -> "Topology":
        """Derive angles, proper dihedrals and exclusions from the bond graph.

        ``exclude``: non-bonded pairs separated by at most this many bonds are excluded
        (3 → 1-2, 1-3 and 1-4 pairs excluded, the usual TraPPE/OPLS-UA choice).
        """
        bonds = _as_idx(bonds, 2, "bonds")
        adj = [[] for _ in range(n_particles)]
        for a, b in bonds:
            adj[a].append(b)
            adj[b].append(a)
        ang = []
        if angles or dihedrals:
            for j in range(n_particles):
                nb = sorted(adj[j])
                for x in range(len(nb)):
                    for y in range(x + 1, len(nb)):
                        ang.append((nb[x], j, nb[y]))
        dih = []
        if dihedrals:
            for j, k in bonds:
                for i in adj[j]:
                    if i == k:
                        continue
                    for l in adj[k]:
                        if l == j or l == i:
                            continue
                        dih.append((i, j, k, l))
        excl = cls._pairs_within(n_particles, adj, exclude)
        return cls(n_particles=n_particles, bonds=bonds,
                   angles=np.array(ang, dtype=np.int64).reshape(-1, 3) if angles else None,
                   dihedrals=np.array(dih, dtype=np.int64).reshape(-1, 4) if dihedrals else None,
                   molecule=molecule, exclusions=excl)

    @staticmethod
    def _pairs_within(n: int, adj, depth: int) -> np.ndarray:
        pairs = []
        if depth <= 0:
            return np.zeros((0, 2), dtype=np.int64)
        for s in range(n):
            seen = {s: 0}
            frontier = [s]
            for d in range(1, depth + 1):
                nxt = []
                for u in frontier:
                    for v in adj[u]:
                        if v not in seen:
                            seen[v] = d
                            nxt.append(v)
                frontier = nxt
            pairs.extend((s, v) for v in seen if v > s)
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _connected_components(self) -> np.ndarray:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        n = self.n_particles
        if len(self.bonds) == 0:
            return np.arange(n, dtype=np.int64)
        m = coo_matrix((np.ones(len(self.bonds)), (self.bonds[:, 0], self.bonds[:, 1])), shape=(n, n))
        return connected_components(m, directed=False)[1].astype(np.int64)

    def unwrap(self, positions, cell, pbc=True) -> np.ndarray:
        """Molecules made whole along the bonds (:class:`UnwrapPlan`): positions (..., n, 3) Å,
        cell (3, 3) Å rows. For many frames build the plan once and call ``plan.apply``."""
        return UnwrapPlan(self.n_particles, self.bonds).apply(positions, cell, pbc)

    # ------------------------------------------------------------------ types
    @staticmethod
    def _type_of(names, idx: np.ndarray, symmetric_reverse: bool = True) -> list[tuple[str, ...]]:
        out = []
        for row in idx:
            t = tuple(str(names[k]) for k in row)
            if symmetric_reverse and t[::-1] < t:
                t = t[::-1]
            out.append(t)
        return out

    def bond_types(self, names) -> list[tuple[str, str]]:
        """Canonical type tuple of every bond (A-B == B-A)."""
        return self._type_of(names, self.bonds)

    def angle_types(self, names) -> list[tuple[str, str, str]]:
        return self._type_of(names, self.angles)

    def dihedral_types(self, names) -> list[tuple[str, str, str, str]]:
        return self._type_of(names, self.dihedrals)

    def exclusion_mask(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """(E,) bool: True where the pair (i, j) is excluded from non-bonded interactions."""
        if len(self.exclusions) == 0:
            return torch.zeros(i.shape, dtype=torch.bool, device=i.device)
        n = self.n_particles
        key = torch.as_tensor(self.exclusions[:, 0] * n + self.exclusions[:, 1], device=i.device)
        lo, hi = torch.minimum(i, j), torch.maximum(i, j)
        return torch.isin(lo * n + hi, key)


def bonded_vectors(positions: torch.Tensor, cell: torch.Tensor, pbc, a: torch.Tensor,
                   b: torch.Tensor) -> torch.Tensor:
    """Minimum-image vectors r_b - r_a (Å), differentiable in positions and cell.

    The integer image shift is chosen from the current geometry (no gradient flows through
    the choice, which is piecewise constant); the vector then depends smoothly on both
    ``positions`` (n, 3) and ``cell`` (3, 3). Valid while bonded distances stay below half
    the shortest cell width. ``pbc`` (3,) bool.
    """
    d = positions[b] - positions[a]
    pbc_t = torch.as_tensor(pbc, dtype=torch.bool)
    if not bool(pbc_t.any()):
        return d
    with torch.no_grad():
        frac = d.detach() @ torch.linalg.inv(cell.detach())
        shift = -torch.round(frac) * pbc_t.to(frac.dtype)
    return d + shift @ cell
