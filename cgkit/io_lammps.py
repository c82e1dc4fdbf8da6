"""LAMMPS conventions shared by every LAMMPS writer in cgkit (one home for the box frame).

Used by :mod:`cgkit.export.lammps` (CG tables and data files) and
:mod:`cgkit.potentials.pe_io` (atomistic polyethylene data files).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["lammps_box"]


def lammps_box(cell):
    """LAMMPS's frame for a cell: rotation Q (3, 3) and the lower-triangular cell (3, 3).

    LAMMPS holds a triclinic box as a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz). For a
    right-handed cell (rows, Å) the rotation Q with ``cell @ Q`` lower triangular comes from
    the QR decomposition of cellᵀ; positions and forces go into LAMMPS as ``x @ Q`` and come
    back as ``x_lammps @ Q.T``.
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if np.linalg.det(cell) <= 0:
        raise InputError("the cell must be right-handed with positive volume for LAMMPS")
    q, r = np.linalg.qr(cell.T)
    sign = np.sign(np.diag(r))
    q, r = q * sign, (r.T * sign).T
    return q, r.T
