"""Chain identification and periodic unwrapping for the polymer analyses.

A *chain* is a connected component of the bond graph restricted to the selected atoms. Its
*backbone* is the longest bonded path through its non-hydrogen atoms (for a linear chain: the
chain itself, in bond order — never in atom order). Atoms off the backbone (hydrogens, side groups) belong to
the chain and are placed by following bonds outward from the backbone.

Unwrapping uses bonds only: each bond vector is reduced by the minimum-image convention and
the chain is rebuilt by cumulative sums along the backbone, so a chain that crosses the
periodic boundary (or is wrapped atom by atom) comes out whole. Bonds must be shorter than
half the smallest box width (true for any sensible simulation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from cgkit.errors import InputError

__all__ = ["Chains", "find_chains", "minimum_image"]


def minimum_image(vectors: np.ndarray, box) -> np.ndarray:
    """Minimum-image reduction of ``vectors`` (n, 3) Å for an MDAnalysis box
    ``[lx, ly, lz, alpha, beta, gamma]`` (Å, degrees); identity when ``box`` is None."""
    if box is None or len(vectors) == 0:
        return vectors
    from MDAnalysis.lib.distances import minimize_vectors
    return minimize_vectors(np.ascontiguousarray(vectors, dtype=np.float64), np.asarray(box, dtype=np.float64))


def has_box(dimensions) -> bool:
    """True when an MDAnalysis ``dimensions`` array describes a real periodic box."""
    if dimensions is None:
        return False
    d = np.asarray(dimensions, dtype=float)
    return bool(np.all(np.isfinite(d)) and np.all(d[:3] > 0))


@dataclass
class ChainGroup:
    """Chains of one species: same label and same backbone length ``n_beads``.

    chain_ids: (n_chains,) indices into :attr:`Chains.labels`; backbone: (n_chains, n_beads)
    positions (into the selection) of the backbone beads in bond order.
    """

    label: str
    n_beads: int
    chain_ids: np.ndarray
    backbone: np.ndarray


class Chains:
    """The chains in an MDAnalysis AtomGroup, ordered along their bonds.

    Parameters
    ----------
    atomgroup : MDAnalysis AtomGroup whose universe carries bonds (from the topology file,
        or from ``universe.guess_TopologyAttrs(to_guess=['bonds'])``).
    min_beads : components with fewer atoms than this are ignored (ions, water oxygens);
        at least one chain must remain.

    Attributes (indices are positions inside ``atomgroup``)
    ----------
    n_chains, labels (per chain), backbones (list of index arrays), atoms (list of index arrays),
    groups (list of :class:`ChainGroup`, chains of identical species and backbone length).
    """

    def __init__(self, atomgroup, *, min_beads: int = 2):
        self.atomgroup = atomgroup
        n = len(atomgroup)
        if n == 0:
            raise InputError("the selection matched no atoms, so there are no chains to analyse: "
                             "check the --select string against the atom names/types of the topology")
        universe = atomgroup.universe
        if not hasattr(universe._topology, "bonds") or len(universe.bonds) == 0:
            raise InputError(
                "the topology has no bonds, so chains and their backbone order cannot be found: "
                "load a topology file that stores bonds (TPR, PSF, LAMMPS data, PDB with CONECT, "
                "cgkit CG topology) or guess them first with "
                "universe.guess_TopologyAttrs(to_guess=['bonds']) (CLI: --guess-bonds)")
        # bonds restricted to the selection, in local indices
        local = np.full(universe.atoms.n_atoms, -1, dtype=np.int64)
        local[atomgroup.indices] = np.arange(n)
        bi = universe.bonds.indices
        lb = local[bi]
        lb = lb[(lb >= 0).all(axis=1)]
        lb = lb[lb[:, 0] != lb[:, 1]]
        if len(np.unique(atomgroup.indices)) != n:
            raise InputError("the selection contains the same atom twice; select each atom once")
        adj = sp.coo_matrix((np.ones(len(lb)), (lb[:, 0], lb[:, 1])), shape=(n, n)).tocsr()
        adj = ((adj + adj.T) > 0).astype(np.float64).tocsr()
        n_comp, comp = csgraph.connected_components(adj, directed=False)
        sizes = np.bincount(comp, minlength=n_comp)
        keep = np.flatnonzero(sizes >= max(2, int(min_beads)))
        if len(keep) == 0:
            if sizes.max() == 1:
                raise InputError(
                    f"every chain in the selection has one bead ({n} isolated atoms): no two selected "
                    "atoms are bonded. Select whole molecules or a bonded backbone (e.g. all carbons "
                    "of the chain, not every second one), or check that the topology has bonds")
            raise InputError(f"no chain in the selection has at least {min_beads} bonded atoms "
                             f"(largest has {sizes.max()}); lower min_beads or widen the selection")
        # order components by their first atom so chain numbering follows the topology
        order_atoms = np.argsort(comp, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        first_atom = np.array([order_atoms[bounds[c]] for c in keep])
        keep = keep[np.argsort(first_atom)]

        # hydrogens never make the backbone (united-atom and CG beads are never that light)
        if hasattr(universe._topology, "masses"):
            light = np.asarray(atomgroup.masses, dtype=float) < 1.5
        else:
            light = np.char.startswith(np.asarray(atomgroup.names, dtype=str), "H") \
                if hasattr(universe._topology, "names") else np.zeros(n, dtype=bool)
        resnames = getattr(atomgroup, "resnames", None) if hasattr(universe._topology, "resnames") else None
        self.backbones: list[np.ndarray] = []
        self.atoms: list[np.ndarray] = []
        self.labels: list[str] = []
        side_atoms, side_parent, side_depth = [], [], []
        for c in keep:
            members = np.sort(order_atoms[bounds[c]:bounds[c + 1]])
            sub = adj[members][:, members]
            heavy = np.flatnonzero(~light[members])
            if len(heavy) < 2 or len(heavy) == len(members):
                heavy = np.arange(len(members))
            hsub = sub[heavy][:, heavy]
            d0 = csgraph.dijkstra(hsub, directed=False, unweighted=True, indices=0)
            d0[~np.isfinite(d0)] = -1
            a = int(np.argmax(d0))
            d1, pred = csgraph.dijkstra(hsub, directed=False, unweighted=True, indices=a,
                                        return_predecessors=True)
            d1[~np.isfinite(d1)] = -1
            b = int(np.argmax(d1))
            path = [b]
            while path[-1] != a:
                path.append(int(pred[path[-1]]))
            path = heavy[np.asarray(path)]
            if members[path[0]] > members[path[-1]]:
                path = path[::-1]
            backbone = members[path]
            self.backbones.append(backbone)
            self.atoms.append(members)
            if len(path) < len(members):        # side atoms: multi-source BFS from the backbone
                dist, pred2, _ = csgraph.dijkstra(sub, directed=False, unweighted=True, indices=path,
                                                  return_predecessors=True, min_only=True)
                off = np.setdiff1d(np.arange(len(members)), path)
                side_atoms.append(members[off])
                side_parent.append(members[pred2[off]])
                side_depth.append(dist[off].astype(int))
            if resnames is not None:
                rn = "-".join(dict.fromkeys(resnames[backbone].tolist()))
                self.labels.append(f"{rn}:N{len(backbone)}")
            else:
                self.labels.append(f"N{len(backbone)}")
        self.n_chains = len(self.backbones)
        self.n_selected = n
        self._unwrap_plan = None
        self.n_dropped_atoms = int(n - sum(len(a) for a in self.atoms))

        # flat backbone arrays for vectorised unwrapping
        lens = np.array([len(b) for b in self.backbones])
        self.backbone_lengths = lens
        self.bb_order = np.concatenate(self.backbones)
        self.bb_start = np.concatenate([[0], np.cumsum(lens)[:-1]])
        self.bb_chain = np.repeat(np.arange(self.n_chains), lens)
        # side atoms grouped by depth from the backbone
        self.side_levels: list[tuple[np.ndarray, np.ndarray]] = []
        if side_atoms:
            sa, spar, sd = map(np.concatenate, (side_atoms, side_parent, side_depth))
            for d in range(1, int(sd.max()) + 1):
                m = sd == d
                self.side_levels.append((sa[m], spar[m]))
        # all chain atoms, grouped by chain
        self.atom_order = np.concatenate(self.atoms)
        self.atom_start = np.concatenate([[0], np.cumsum([len(a) for a in self.atoms])[:-1]])
        self.atom_counts = np.array([len(a) for a in self.atoms])
        self.atom_chain = np.repeat(np.arange(self.n_chains), self.atom_counts)
        # species groups
        self.groups: list[ChainGroup] = []
        labels = np.array(self.labels)
        for lab in dict.fromkeys(self.labels):
            ids = np.flatnonzero(labels == lab)
            L = len(self.backbones[ids[0]])
            self.groups.append(ChainGroup(lab, L, ids, np.stack([self.backbones[i] for i in ids])))

    def unwrap(self, positions: np.ndarray, box=None) -> np.ndarray:
        """Whole-chain coordinates.

        positions: (n_selected, 3) Å as read (possibly wrapped); box: MDAnalysis dimensions or
        None. Returns (n_selected, 3) Å float64 in which every chain is continuous along its
        bonds (atoms outside any chain are returned unchanged). Each chain keeps the position
        of its first backbone bead.
        """
        from cgkit.topology import UnwrapPlan
        from cgkit.trajectory import dimensions_to_cell
        if self._unwrap_plan is None:
            bb = [np.stack([b[:-1], b[1:]], axis=1) for b in self.backbones if len(b) > 1]
            side = [np.stack([a, p], axis=1) for a, p in self.side_levels]
            bonds = np.concatenate(bb + side) if bb or side else np.zeros((0, 2), dtype=np.int64)
            self._unwrap_plan = UnwrapPlan(self.n_selected, bonds)
        if not has_box(box):
            return np.asarray(positions, dtype=np.float64).copy()
        return self._unwrap_plan.apply(positions, dimensions_to_cell(box))


def find_chains(atomgroup, **kw) -> Chains:
    """Shorthand for :class:`Chains` (``atomgroup``, ``min_beads``)."""
    return Chains(atomgroup, **kw)
