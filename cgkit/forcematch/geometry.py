"""Interaction geometry of CG (or atomistic) configurations: the internal coordinate x of every
pair / bond / angle / dihedral instance and its gradient ∂x/∂r_b with respect to each bead.

A potential U(x) of one interaction instance exerts the Cartesian force ``F_b = f(x) ∂x/∂r_b``
on bead b, where ``f = -dU/dx`` is the generalised force (eV/Å for distances, eV/rad for
angles). Force matching is linear in f, so these gradients are all it needs.

Conventions: distances in Å; angles θ ∈ [0, π] rad at the middle bead; proper dihedrals
φ ∈ (-π, π] rad, IUPAC/GROMACS/LAMMPS convention (trans = π).
Periodic images: bonded vectors use the minimum image (valid while bonded distances stay below
half the shortest cell width); non-bonded pairs come from the cell-list neighbor search.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["KINDS", "ARITY", "minimum_image", "bonded_x", "instance_gradients", "as_cell",
           "canonical", "type_key", "type_label"]

KINDS = ("pair", "bond", "angle", "dihedral")
ARITY = {"pair": 2, "bond": 2, "angle": 3, "dihedral": 4}


def as_cell(box) -> tuple[np.ndarray, np.ndarray]:
    """``box``: None (no periodicity), (3,) orthorhombic lengths Å, (6,) MDAnalysis
    [a, b, c, α, β, γ] or (3, 3) lattice vectors as rows → (cell (3, 3), pbc (3,))."""
    if box is None:
        return np.zeros((3, 3)), np.zeros(3, dtype=bool)
    b = np.asarray(box, dtype=np.float64)
    if b.shape == (3,):
        cell = np.diag(b)
    elif b.shape == (6,):
        from ase.geometry import cellpar_to_cell
        cell = cellpar_to_cell(b)
    elif b.shape == (3, 3):
        cell = b
    else:
        from ..errors import InputError
        raise InputError(f"a box must be (3,) lengths, (6,) cell parameters or (3, 3) vectors, got {b.shape}")
    pbc = np.linalg.norm(cell, axis=1) > 0
    return cell, pbc


def minimum_image(d: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                  graph_of: torch.Tensor | None = None) -> torch.Tensor:
    """Minimum-image version of difference vectors ``d`` (m, 3) Å.

    ``cell`` (3, 3) or (G, 3, 3) with ``graph_of`` (m,) the structure of each vector;
    ``pbc`` (3,) bool. The integer shift is chosen without gradient; the result stays
    differentiable in ``d`` and ``cell``.
    """
    if not bool(pbc.any()):
        return d
    c = cell if cell.dim() == 3 else cell.unsqueeze(0)
    with torch.no_grad():
        inv = torch.linalg.inv(c.detach()) if bool(pbc.all()) else torch.linalg.pinv(c.detach())
        gi = graph_of if (graph_of is not None and c.shape[0] > 1) else torch.zeros(
            d.shape[0], dtype=torch.long, device=d.device)
        frac = torch.einsum("mi,mij->mj", d.detach(), inv[gi])
        shift = -torch.round(frac) * pbc.to(frac.dtype)
    if c.shape[0] == 1:
        return d + shift @ c[0]
    return d + torch.einsum("mi,mij->mj", shift, c[gi])


def bonded_x(kind: str, pos: torch.Tensor, idx: torch.Tensor, cell: torch.Tensor,
             pbc: torch.Tensor, graph_of: torch.Tensor | None = None) -> torch.Tensor:
    """Internal coordinate of bonded instances ``idx`` (m, arity): bond length (Å),
    angle (rad) or dihedral (rad); differentiable in ``pos`` and ``cell``."""
    if kind == "bond":
        d = minimum_image(pos[idx[:, 1]] - pos[idx[:, 0]], cell, pbc, graph_of)
        return torch.linalg.norm(d, dim=1)
    if kind == "angle":
        b1 = minimum_image(pos[idx[:, 0]] - pos[idx[:, 1]], cell, pbc, graph_of)
        b2 = minimum_image(pos[idx[:, 2]] - pos[idx[:, 1]], cell, pbc, graph_of)
        return angle_from_vectors(b1, b2)
    if kind == "dihedral":
        b1 = minimum_image(pos[idx[:, 1]] - pos[idx[:, 0]], cell, pbc, graph_of)
        b2 = minimum_image(pos[idx[:, 2]] - pos[idx[:, 1]], cell, pbc, graph_of)
        b3 = minimum_image(pos[idx[:, 3]] - pos[idx[:, 2]], cell, pbc, graph_of)
        return dihedral_from_vectors(b1, b2, b3)
    raise ValueError(kind)


def angle_from_vectors(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """θ (rad) between b1 and b2 (m, 3); smooth away from 0 and π."""
    n1 = torch.linalg.norm(b1, dim=1)
    n2 = torch.linalg.norm(b2, dim=1)
    c = (b1 * b2).sum(1) / (n1 * n2)
    eps = 1e-12 if b1.dtype == torch.float64 else 1e-6
    return torch.acos(c.clamp(-1.0 + eps, 1.0 - eps))


def dihedral_from_vectors(b1, b2, b3) -> torch.Tensor:
    """φ (rad) in (-π, π], trans = π (IUPAC), from bond vectors b1 = r_j-r_i, b2 = r_k-r_j,
    b3 = r_l-r_k (m, 3)."""
    n1 = torch.cross(b1, b2, dim=1)
    n2 = torch.cross(b2, b3, dim=1)
    m1 = torch.cross(n1, b2 / torch.linalg.norm(b2, dim=1, keepdim=True), dim=1)
    x = (n1 * n2).sum(1)
    y = (m1 * n2).sum(1)
    return -torch.atan2(y, x)


def instance_gradients(kind: str, pos: torch.Tensor, idx: torch.Tensor, cell: torch.Tensor,
                       pbc: torch.Tensor, shifts: torch.Tensor | None = None):
    """x (m,) and ∂x/∂r_b (m, arity, 3) for instances ``idx`` (m, arity) of one structure.

    For ``kind == "pair"``, ``shifts`` (m, 3) are the integer cell shifts of the neighbor list
    (r_ij = r_j - r_i + S·cell); bonded kinds use the minimum image.
    """
    m = idx.shape[0]
    k = ARITY[kind]
    if m == 0:
        return pos.new_zeros(0), pos.new_zeros(0, k, 3)
    with torch.enable_grad():
        local = pos.detach()[idx].clone().requires_grad_(True)  # (m, k, 3): own copy per instance
        if kind == "pair":
            d = local[:, 1] - local[:, 0] + shifts.to(pos.dtype) @ cell
            x = torch.linalg.norm(d, dim=1)
        else:
            ar = torch.arange(k, device=pos.device).expand(m, k)
            flat = local.reshape(-1, 3)
            x = bonded_x(kind, flat, ar + k * torch.arange(m, device=pos.device)[:, None], cell, pbc)
        (grad,) = torch.autograd.grad(x.sum(), local)
    return x.detach(), grad


def canonical(types: tuple[str, ...]) -> tuple[str, ...]:
    """A-B == B-A, A-B-C == C-B-A, ...: the lexicographically smaller direction."""
    types = tuple(str(t) for t in types)
    return min(types, types[::-1])


def type_key(kind: str, types) -> tuple[str, ...]:
    if kind == "pair":
        return tuple(sorted(str(t) for t in types))
    return canonical(tuple(types))


def type_label(kind: str, types) -> str:
    """``"angle A-B-A"``."""
    return f"{kind} {'-'.join(types)}"
