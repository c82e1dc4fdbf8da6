"""AtomicGraph: the plain tensor container every cgkit potential works on.

An AtomicGraph holds one structure or a batch of structures (atoms or CG beads) with
their periodic neighbor graph. It knows nothing of models.

Shapes and units (n = atoms in the batch, G = structures, E = edges):

============== ============ ======================================================
positions      (n, 3)       Å
species        (n,)         long, index into ``type_names``
atomic_numbers (n,)         long, 0 for CG beads / unknown
masses         (n,)         amu
cell           (G, 3, 3)    Å, lattice vectors as rows (zeros for a molecule)
pbc            (G, 3)       bool
batch          (n,)         long, structure index of every atom
edge_index     (2, E)       long, (i, j): j is a neighbor of centre i
cell_shifts    (E, 3)       long, r_ij = r_j - r_i + cell_shifts @ cell
cutoff         float        Å, the neighbor-list cutoff the edges were built with
charges        (n,) or None e, fixed point charges (from ASE ``initial_charges``; None
                            when the structure carries none); used by Coulomb terms
============== ============ ======================================================

``targets`` holds optional training labels (``energy`` (G,), ``forces`` (n, 3),
``stress`` (G, 3, 3) eV/Å³, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from .errors import InputError, UnknownSpeciesError
from .neighbors import edge_vectors, neighbor_list

__all__ = ["AtomicGraph", "batch_graphs"]


@dataclass
class AtomicGraph:
    positions: torch.Tensor
    species: torch.Tensor
    atomic_numbers: torch.Tensor
    masses: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    cutoff: float
    type_names: tuple[str, ...]
    targets: dict = field(default_factory=dict)
    charges: torch.Tensor | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, positions, cell, pbc, cutoff: float, *, species=None,
                    type_names: Sequence[str] | None = None, atomic_numbers=None, masses=None,
                    dtype: torch.dtype = torch.float64, targets: dict | None = None,
                    charges=None) -> "AtomicGraph":
        """Build a single-structure graph from arrays.

        positions (n, 3) Å; cell (3, 3) Å; pbc (3,) bool or bool; cutoff Å;
        species (n,) indices into ``type_names`` (default: all type 0);
        masses (n,) amu (default: from atomic numbers, or 1 amu);
        charges (n,) e, fixed point charges (default None: no charges).
        """
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        n = len(positions)
        ei, shifts = neighbor_list(positions, cell, pbc, cutoff)
        if species is None:
            species = np.zeros(n, dtype=np.int64)
        species = np.asarray(species, dtype=np.int64)
        if type_names is None:
            type_names = tuple(f"T{k}" for k in range(int(species.max(initial=-1)) + 1))
        if len(species) != n or (n and (species.min() < 0 or species.max() >= len(type_names))):
            raise InputError("species must hold one index into type_names per atom")
        if atomic_numbers is None:
            atomic_numbers = np.zeros(n, dtype=np.int64)
        atomic_numbers = np.asarray(atomic_numbers, dtype=np.int64)
        if masses is None:
            from ase.data import atomic_masses
            masses = np.where(atomic_numbers > 0, atomic_masses[atomic_numbers], 1.0)
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape != (n,) or np.any(~np.isfinite(masses)) or np.any(masses <= 0):
            raise InputError("masses must be positive and finite, one per atom (amu)")
        if charges is not None:
            charges = np.asarray(charges, dtype=np.float64).reshape(-1)
            if charges.shape != (n,) or not np.all(np.isfinite(charges)):
                raise InputError(f"charges must be finite, one per atom (e): got shape "
                                 f"{charges.shape} for {n} atoms")
            charges = torch.as_tensor(charges, dtype=dtype)
        return cls(
            positions=torch.as_tensor(positions, dtype=dtype),
            species=torch.as_tensor(species),
            atomic_numbers=torch.as_tensor(atomic_numbers),
            masses=torch.as_tensor(masses, dtype=dtype),
            cell=torch.as_tensor(cell, dtype=dtype).unsqueeze(0),
            pbc=torch.as_tensor(pbc).unsqueeze(0),
            batch=torch.zeros(n, dtype=torch.long),
            edge_index=torch.as_tensor(ei),
            cell_shifts=torch.as_tensor(shifts),
            cutoff=float(cutoff),
            type_names=tuple(type_names),
            targets=dict(targets or {}),
            charges=charges,
        )

    @classmethod
    def from_atoms(cls, atoms, cutoff: float, *, type_names: Sequence[str] | None = None,
                   dtype: torch.dtype = torch.float64, read_targets: bool = False) -> "AtomicGraph":
        """Build a graph from an ASE ``Atoms``.

        ``type_names``: the ordered element symbols (or bead type names stored in
        ``atoms.arrays['bead_types']``) the caller's potential knows; default: the sorted
        symbols present. Atoms of a type not in ``type_names`` raise
        :class:`UnknownSpeciesError`. With ``read_targets`` the energy/forces/stress stored
        in ``atoms.calc`` or ``atoms.info``/``atoms.arrays`` become ``targets``.
        Non-zero ASE ``initial_charges`` (e) become ``charges``; without them (or all zero)
        ``charges`` is None.
        """
        names = atoms.arrays.get("bead_types")
        names = [str(s) for s in (names if names is not None else atoms.get_chemical_symbols())]
        if type_names is None:
            type_names = tuple(sorted(set(names)))
        lookup = {t: k for k, t in enumerate(type_names)}
        unknown = sorted(set(names) - set(lookup))
        if unknown:
            raise UnknownSpeciesError(
                f"species {unknown} are not known to this potential (it knows {list(type_names)}); "
                "use a potential trained for them or relabel the atoms")
        species = np.array([lookup[s] for s in names], dtype=np.int64)
        targets = _targets_from_atoms(atoms) if read_targets else None
        charges = None
        if "initial_charges" in atoms.arrays:
            q = np.asarray(atoms.get_initial_charges(), dtype=np.float64)
            if np.any(q != 0):
                charges = q
        return cls.from_arrays(atoms.get_positions(), atoms.cell.array, atoms.pbc, cutoff,
                               species=species, type_names=type_names,
                               atomic_numbers=atoms.get_atomic_numbers(),
                               masses=atoms.get_masses(), dtype=dtype, targets=targets,
                               charges=charges)

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_graphs(self) -> int:
        return int(self.cell.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    def atoms_per_graph(self) -> torch.Tensor:
        """(G,) number of atoms in every structure."""
        return torch.bincount(self.batch, minlength=self.n_graphs)

    def volume(self) -> torch.Tensor:
        """(G,) cell volumes, Å³ (determinant of the cell; meaningless without pbc)."""
        return torch.linalg.det(self.cell)

    def edge_vectors(self, positions: torch.Tensor | None = None,
                     cell: torch.Tensor | None = None) -> torch.Tensor:
        """(E, 3) Å, differentiable in ``positions`` and ``cell`` (defaults: the stored ones)."""
        positions = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        return edge_vectors(positions, cell, self.edge_index, self.cell_shifts, self.batch)

    # ------------------------------------------------------------------ conversions
    def to(self, dtype: torch.dtype | None = None, device=None) -> "AtomicGraph":
        """A copy with floating tensors cast to ``dtype`` and everything moved to ``device``."""
        def conv(t):
            if not isinstance(t, torch.Tensor):
                return t
            if t.is_floating_point() and dtype is not None:
                t = t.to(dtype)
            return t.to(device) if device is not None else t
        return replace(self, positions=conv(self.positions), species=conv(self.species),
                       atomic_numbers=conv(self.atomic_numbers), masses=conv(self.masses),
                       cell=conv(self.cell), pbc=conv(self.pbc), batch=conv(self.batch),
                       edge_index=conv(self.edge_index), cell_shifts=conv(self.cell_shifts),
                       targets={k: conv(v) for k, v in self.targets.items()},
                       charges=conv(self.charges))

    def with_positions(self, positions, cell=None, *, rebuild: bool = True) -> "AtomicGraph":
        """The same system at new positions (and cell); edges rebuilt unless ``rebuild=False``.

        Only for single structures when rebuilding.
        """
        positions = torch.as_tensor(positions, dtype=self.dtype)
        cell = self.cell if cell is None else torch.as_tensor(cell, dtype=self.dtype).reshape(-1, 3, 3)
        if not rebuild:
            return replace(self, positions=positions, cell=cell)
        if self.n_graphs != 1:
            return batch_graphs([g.with_positions(positions[self.batch == k], cell[k])
                                 for k, g in enumerate(self.split())])
        ei, shifts = neighbor_list(positions.detach().cpu().numpy(), cell[0].detach().cpu().numpy(),
                                   self.pbc[0].cpu().numpy(), self.cutoff)
        return replace(self, positions=positions, cell=cell, edge_index=torch.as_tensor(ei),
                       cell_shifts=torch.as_tensor(shifts))

    def split(self) -> list["AtomicGraph"]:
        """The structures of a batch as single graphs (edges kept)."""
        out = []
        counts = self.atoms_per_graph().tolist()
        starts = np.concatenate([[0], np.cumsum(counts)])
        edge_graph = self.batch[self.edge_index[0]]
        for k in range(self.n_graphs):
            a, b = int(starts[k]), int(starts[k + 1])
            em = edge_graph == k
            tg = {}
            for key, v in self.targets.items():
                if isinstance(v, torch.Tensor) and v.shape[:1] == (self.n_atoms,):
                    tg[key] = v[a:b]
                elif isinstance(v, torch.Tensor) and v.shape[:1] == (self.n_graphs,):
                    tg[key] = v[k:k + 1]
            out.append(AtomicGraph(
                positions=self.positions[a:b], species=self.species[a:b],
                atomic_numbers=self.atomic_numbers[a:b], masses=self.masses[a:b],
                cell=self.cell[k:k + 1], pbc=self.pbc[k:k + 1],
                batch=torch.zeros(b - a, dtype=torch.long),
                edge_index=self.edge_index[:, em] - a, cell_shifts=self.cell_shifts[em],
                cutoff=self.cutoff, type_names=self.type_names, targets=tg,
                charges=None if self.charges is None else self.charges[a:b]))
        return out

    def to_atoms(self, index: int = 0):
        """Structure ``index`` as an ASE ``Atoms`` (positions Å, masses amu)."""
        from ase import Atoms
        g = self.split()[index] if self.n_graphs > 1 else self
        atoms = Atoms(numbers=g.atomic_numbers.cpu().numpy(), positions=g.positions.detach().cpu().numpy(),
                      cell=g.cell[0].detach().cpu().numpy(), pbc=g.pbc[0].cpu().numpy(),
                      masses=g.masses.detach().cpu().numpy())
        if (g.atomic_numbers == 0).any():
            atoms.arrays["bead_types"] = np.array([self.type_names[s] for s in g.species.tolist()])
        if g.charges is not None:
            atoms.set_initial_charges(g.charges.detach().cpu().numpy())
        return atoms


def batch_graphs(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate structures into one batched graph (for training and replicas).

    All graphs must share ``type_names`` and ``cutoff``. Per-atom targets are concatenated,
    per-structure targets stacked. ``charges`` are concatenated when any structure has them
    (zeros for a structure without charges), None otherwise.
    """
    if not graphs:
        raise InputError("cannot batch an empty list of structures")
    g0 = graphs[0]
    for g in graphs[1:]:
        if g.type_names != g0.type_names:
            raise InputError(f"cannot batch structures with different type names: {g0.type_names} vs {g.type_names}")
        if abs(g.cutoff - g0.cutoff) > 1e-12:
            raise InputError("cannot batch structures built with different cutoffs")
    offsets = np.cumsum([0] + [g.n_atoms for g in graphs[:-1]])
    batch, n_graph = [], 0
    for g in graphs:
        batch.append(g.batch + n_graph)
        n_graph += g.n_graphs
    targets = {}
    keys = set.intersection(*[set(g.targets) for g in graphs])
    for key in keys:
        vals = [g.targets[key] for g in graphs]
        if all(isinstance(v, torch.Tensor) for v in vals):
            targets[key] = torch.cat(vals)
    return AtomicGraph(
        positions=torch.cat([g.positions for g in graphs]),
        species=torch.cat([g.species for g in graphs]),
        atomic_numbers=torch.cat([g.atomic_numbers for g in graphs]),
        masses=torch.cat([g.masses for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        batch=torch.cat(batch),
        edge_index=torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1),
        cell_shifts=torch.cat([g.cell_shifts for g in graphs]),
        cutoff=g0.cutoff, type_names=g0.type_names, targets=targets,
        charges=_batch_charges(graphs))


def _batch_charges(graphs):
    if all(g.charges is None for g in graphs):
        return None
    return torch.cat([g.charges if g.charges is not None
                      else torch.zeros(g.n_atoms, dtype=g.positions.dtype, device=g.positions.device)
                      for g in graphs])


def _targets_from_atoms(atoms) -> dict:
    """Energy (eV), forces (eV/Å) and stress (eV/Å³, 3×3) stored with an ASE Atoms."""
    from ase.stress import voigt_6_to_full_3x3_stress
    t = {}
    calc = atoms.calc
    res = dict(calc.results) if calc is not None else {}
    energy = res.get("energy", atoms.info.get("energy"))
    forces = res.get("forces", atoms.arrays.get("forces"))
    stress = res.get("stress", atoms.info.get("stress"))
    if energy is not None:
        t["energy"] = torch.tensor([float(energy)], dtype=torch.float64)
    if forces is not None:
        t["forces"] = torch.as_tensor(np.asarray(forces, dtype=np.float64))
    if stress is not None:
        s = np.asarray(stress, dtype=np.float64)
        s = voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s.reshape(3, 3)
        t["stress"] = torch.as_tensor(s).unsqueeze(0)
    return t
