"""Structures given by users, checked at the edge before any calculation.

One home for reading a structure file and refusing what cannot be simulated as given
(empty, non-periodic or left-handed cells, NaN coordinates, overlapping atoms), shared by
phonons, elastic constants and any other command that takes ``--structure``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError, StructureError

__all__ = ["MIN_DISTANCE", "read_structure", "check_periodic", "check_overlaps", "close_pairs"]

#: closest allowed interatomic distance, Å (closer atoms are duplicates or a broken cell)
MIN_DISTANCE = 0.5


def close_pairs(positions, cell, pbc, cutoff: float, *, only=None, limit: int = 5) -> list:
    """The closest pairs ``(distance Å, i, j)`` (i < j, or i == j for a particle and its own
    periodic image; sorted, at most ``limit``) closer than ``cutoff`` Å; with ``only`` (indices)
    just the pairs that involve one of those particles. ``positions`` (n, 3) Å, ``cell`` (3, 3)
    Å, ``pbc`` (3,)."""
    from .neighbors import neighbor_list
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if cutoff <= 0 or len(positions) == 0:
        return []
    ei, shifts = neighbor_list(positions, cell, pbc, cutoff)
    i, j = ei
    shifts = np.asarray(shifts)
    first = np.take_along_axis(shifts, np.argmax(shifts != 0, axis=1)[:, None], axis=1)[:, 0]
    keep = (i < j) | ((i == j) & (first > 0))  # each self-image pair once
    if only is not None:
        sel = np.zeros(len(positions), dtype=bool)
        sel[np.asarray(list(only), dtype=np.int64)] = True
        keep &= sel[i] | sel[j]
    i, j, shifts = i[keep], j[keep], shifts[keep]
    d = np.linalg.norm(positions[j] - positions[i] + shifts @ cell, axis=1)
    order = np.argsort(d, kind="stable")[:limit]
    return [(float(d[k]), int(i[k]), int(j[k])) for k in order]


def check_overlaps(atoms, min_distance: float = MIN_DISTANCE):
    """Refuse (StructureError) atoms closer than ``min_distance`` Å, periodic images included."""
    if not np.all(np.isfinite(atoms.get_positions())) or not np.all(np.isfinite(atoms.cell.array)):
        bad = np.where(~np.all(np.isfinite(atoms.get_positions()), axis=1))[0]
        raise StructureError(f"non-finite positions (atoms {bad[:10].tolist()}) or cell: fix the structure")
    pairs = close_pairs(atoms.get_positions(), atoms.cell.array, atoms.pbc, min_distance, limit=1)
    if pairs:
        d, a, b = pairs[0]
        what = f"atoms {a} and {b}" if a != b else f"atom {a} and its own periodic image"
        raise StructureError(f"{what} are {d:.3g} Å apart (closer than {min_distance} Å): "
                             "overlapping atoms; remove duplicates or fix the cell")


def read_structure(structure):
    """ASE Atoms from a file name (any ASE-readable format) or a copy of given Atoms."""
    if isinstance(structure, (str, Path)):
        from ase.io import read
        try:
            return read(str(structure))
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
            raise InputError(f"cannot read structure '{structure}': {exc}") from exc
    if not hasattr(structure, "get_positions"):
        raise InputError(f"expected ASE Atoms or a structure file, got {type(structure).__name__}")
    return structure.copy()


def check_periodic(atoms, what: str):
    """Refuse (StructureError) anything but a 3D-periodic, non-degenerate, right-handed cell;
    ``what`` names the calculation in the message."""
    if len(atoms) == 0:
        raise StructureError(f"{what} needs at least one atom")
    if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-6:
        raise StructureError(f"{what} needs a crystal periodic in all three directions with a "
                             f"non-degenerate cell (got pbc={atoms.pbc.tolist()}, volume "
                             f"{abs(atoms.cell.volume):.3g} Å³); set atoms.pbc = True and a cell")
    det = float(np.linalg.det(np.asarray(atoms.cell.array)))
    if det < 0:
        raise StructureError(f"the cell is left-handed (det = {det:.6g} Å³ < 0); swap two lattice "
                             "vectors (and the matching fractional coordinates) or use "
                             "atoms.cell.standard_form()")
