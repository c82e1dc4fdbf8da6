"""Independent numerical references for testing potentials (yours and cgkit's).

Central finite differences of the energy (forces, stress) and of the forces (Hessian), and
random rigid motions for equivariance checks. All float64. The graph is built once with a
margin (``skin``) beyond the cutoff so that displaced pairs never drop out of the list.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import AtomicGraph
from .potential import _voigt_strain

__all__ = ["fd_forces", "fd_stress", "fd_hessian", "random_orthogonal", "graph_for_fd", "energy_at",
           "random_liquid"]


def graph_for_fd(potential, atoms, skin: float = 1.0) -> AtomicGraph:
    return potential.graph(atoms, dtype=torch.float64, cutoff=potential.cutoff + skin)


def energy_at(potential, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> float:
    with torch.no_grad():
        return float(potential.atomic_energies(graph, positions, cell).sum())


def fd_forces(potential, atoms, h: float = 1e-5) -> np.ndarray:
    """(n, 3) eV/Å: −∂E/∂r by 4th-order central differences of the energy."""
    g = graph_for_fd(potential, atoms)
    x0 = g.positions.clone()
    F = np.zeros(x0.shape)
    for a in range(x0.shape[0]):
        for d in range(3):
            e = []
            for s in (-2, -1, 1, 2):
                x = x0.clone()
                x[a, d] += s * h
                e.append(energy_at(potential, g, x, g.cell))
            F[a, d] = -(e[0] - 8 * e[1] + 8 * e[2] - e[3]) / (12 * h)
    return F


def fd_stress(potential, atoms, h: float = 1e-5) -> np.ndarray:
    """(3, 3) eV/Å³: σ = (1/V) ∂E/∂ε by central differences over the 6 Voigt strains."""
    g = graph_for_fd(potential, atoms)
    x0, c0 = g.positions, g.cell
    V = float(torch.linalg.det(c0[0]))
    dE = np.zeros(6)
    for k in range(6):
        e = []
        for s in (-2, -1, 1, 2):
            eta = torch.zeros(1, 6, dtype=torch.float64)
            eta[0, k] = s * h
            F = torch.eye(3, dtype=torch.float64) + _voigt_strain(eta)[0]
            e.append(energy_at(potential, g, x0 @ F, c0 @ F))
        dE[k] = (e[0] - 8 * e[1] + 8 * e[2] - e[3]) / (12 * h)
    sigma = np.zeros((3, 3))
    for k, (a, b) in enumerate(((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
        sigma[a, b] = sigma[b, a] = dE[k] / V
    return sigma


def fd_hessian(potential, atoms, h: float = 1e-4) -> np.ndarray:
    """(3n, 3n) eV/Å²: −∂F/∂r by 4th-order central differences of the autograd forces."""
    g = graph_for_fd(potential, atoms)
    x0 = g.positions.clone()
    n3 = x0.numel()
    H = np.zeros((n3, n3))
    for a in range(x0.shape[0]):
        for d in range(3):
            f = []
            for s in (-2, -1, 1, 2):
                x = x0.clone()
                x[a, d] += s * h
                f.append(potential.compute(g.with_positions(x, rebuild=False))["forces"].numpy().ravel())
            H[3 * a + d] = -(f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    return H


def random_orthogonal(rng: np.random.Generator, reflection: bool = False) -> np.ndarray:
    """A random 3×3 rotation (det +1), or an improper rotation (det −1) with ``reflection``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    if reflection:
        q = -q
    return q


def random_liquid(rng: np.random.Generator, n: int, box: float, dmin: float) -> np.ndarray:
    """(n, 3) positions, Å, drawn uniformly in a cubic periodic box of side ``box`` (Å) with every
    minimum-image distance ≥ ``dmin`` (Å), by rejection (a test liquid without overlaps)."""
    x = []
    while len(x) < n:
        p = rng.uniform(0, box, 3)
        if x:
            d = np.asarray(x) - p
            d -= box * np.round(d / box)
            if np.min(np.linalg.norm(d, axis=1)) < dmin:
                continue
        x.append(p)
    return np.asarray(x)
