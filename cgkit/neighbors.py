"""Periodic neighbor lists (cell lists, linear in the number of atoms).

The search itself is done by `vesin <https://github.com/Luthaf/vesin>`_, a maintained
C++ cell-list implementation (linear scaling, triclinic and mixed boundary conditions,
any number of periodic images); this module validates input, makes the result
identical to ``ase.neighborlist.neighbor_list`` (full list, pairs ``(i, j, S)`` with
``|r_j - r_i + S·cell| < cutoff``, self-pairs only with a nonzero shift), and returns
integer shifts so that edge vectors can be rebuilt differentiably in positions *and*
cell (see :func:`edge_vectors`).
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import InputError, StructureError

__all__ = ["neighbor_list", "edge_vectors", "validate_structure"]


def validate_structure(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
    """Raise :class:`StructureError` for inputs no neighbor search or potential can handle.

    positions: (n, 3) Å; cell: (3, 3) Å, rows are lattice vectors; pbc: (3,) bool.
    """
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise StructureError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        bad = np.unique(np.nonzero(~np.isfinite(positions))[0])
        raise StructureError(
            f"positions of atoms {bad[:10].tolist()}{'...' if len(bad) > 10 else ''} are NaN or "
            "infinite; fix the input structure (a diverged simulation leaves such frames)")
    if cell.shape != (3, 3) or not np.all(np.isfinite(cell)):
        raise StructureError(f"cell must be a finite (3, 3) matrix of lattice vectors (rows), got {cell!r}")
    if pbc.any():
        det = float(np.linalg.det(cell))
        norms = np.linalg.norm(cell, axis=1)
        if np.any(norms[pbc] < 1e-8):
            raise StructureError(
                f"periodic direction(s) {np.nonzero(pbc & (norms < 1e-8))[0].tolist()} have a zero "
                "lattice vector; give the cell or set pbc=False along them")
        if pbc.all():
            if abs(det) < 1e-8 * max(1.0, float(np.prod(norms))):
                raise StructureError(f"the cell has zero volume (det = {det:.3g} Å³); give three "
                                     "linearly independent lattice vectors")
            if det < 0:
                raise StructureError(
                    f"the cell is left-handed (det = {det:.6g} Å³ < 0); swap two lattice vectors "
                    "(and the matching fractional coordinates) or use atoms.cell.standard_form()")


def _complete_cell(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Replace lattice vectors of non-periodic directions so that the box is invertible.

    A non-periodic direction contributes no image, so any vector independent of the others
    gives the same neighbor list; the search backend, however, wants an invertible box.
    """
    cell = np.array(cell, dtype=np.float64, copy=True)
    if pbc.all():
        return cell
    per = [d for d in range(3) if pbc[d]]
    non = [d for d in range(3) if not pbc[d]]
    for d in non:
        cell[d] = 0.0
    # Build orthonormal completions of the span of the periodic vectors.
    basis = [cell[d] / np.linalg.norm(cell[d]) for d in per]
    if len(basis) == 2:
        n = np.cross(basis[0], basis[1])
        cell[non[0]] = n / np.linalg.norm(n)
    elif len(basis) == 1:
        a = basis[0]
        trial = np.eye(3)[np.argmin(np.abs(a))]
        u = trial - a * (trial @ a)
        u /= np.linalg.norm(u)
        v = np.cross(a, u)
        cell[non[0]], cell[non[1]] = u, v
    else:
        cell[:] = np.eye(3)
    # keep it right-handed for the backend
    if np.linalg.det(cell) < 0:
        cell[non[0]] *= -1.0
    return cell


def neighbor_list(positions, cell, pbc, cutoff: float, *, n_threads: int = 1):
    """All pairs closer than ``cutoff``, over periodic images.

    Parameters
    ----------
    positions : (n_atoms, 3) array, Å
    cell : (3, 3) array, Å, lattice vectors as rows (ignored along non-periodic directions)
    pbc : (3,) bool array or bool
    cutoff : float, Å, > 0
    n_threads : worker threads of the backend (1 by default: callers parallelise elsewhere)

    Returns
    -------
    edge_index : (2, n_edges) int64 — ``edge_index[0] = i`` (centre), ``edge_index[1] = j``
    cell_shifts : (n_edges, 3) int64 — ``S`` with ``r_ij = r_j - r_i + S @ cell``

    Both directions of every pair are listed (a full list). An atom is its own neighbor only
    through a nonzero periodic shift, which happens when the cell is thinner than the cutoff.
    """
    positions = np.ascontiguousarray(np.asarray(positions, dtype=np.float64))
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cutoff = float(cutoff)
    if not np.isfinite(cutoff) or cutoff <= 0.0:
        raise InputError(f"the neighbor cutoff must be a positive distance in Å, got {cutoff}")
    validate_structure(positions, cell, pbc)
    n = len(positions)
    if n == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    if pbc.any() and not pbc.all():
        # the backend only needs an invertible box; periodic vectors must be independent
        per = cell[pbc]
        if np.linalg.matrix_rank(per, tol=1e-8) < len(per):
            raise StructureError("the periodic lattice vectors are linearly dependent")
    box = _complete_cell(cell, pbc)
    import vesin

    nl = vesin.NeighborList(cutoff=cutoff, full_list=True, n_threads=n_threads)
    i, j, shifts = nl.compute(positions, box, pbc, quantities="ijS", copy=True)
    edge_index = np.stack([np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)])
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    return edge_index, shifts


def edge_vectors(positions: torch.Tensor, cell: torch.Tensor, edge_index: torch.Tensor,
                 cell_shifts: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable edge vectors ``r_ij = r_j - r_i + S_ij · cell`` (Å), shape (n_edges, 3).

    positions: (n_atoms, 3); cell: (3, 3) or (n_graphs, 3, 3); edge_index: (2, E) long;
    cell_shifts: (E, 3) integer-valued; batch: (n_atoms,) graph index of every atom when
    ``cell`` is batched. Gradients flow to both ``positions`` and ``cell``.
    """
    i, j = edge_index[0], edge_index[1]
    shifts = cell_shifts.to(positions.dtype)
    if cell.dim() == 2:
        offset = shifts @ cell
    elif cell.shape[0] == 1:  # a single structure: one matrix product, no per-edge gather
        offset = shifts @ cell[0]
    else:
        if batch is None:
            raise InputError("a batched cell (n_graphs, 3, 3) needs the batch vector")
        offset = torch.einsum("ek,ekl->el", shifts, cell[batch[i]])
    return positions[j] - positions[i] + offset
