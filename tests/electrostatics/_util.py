"""Shared helpers of the electrostatics tests: energy, forces and stress through the public
API (autograd), and central finite differences of the energy as the independent reference."""
from __future__ import annotations

import numpy as np
import torch


def evaluate(es, positions, charges, cell, pbc, exclusions=None, dtype=torch.float64, stress=True):
    """E (eV), forces (n, 3) eV/Å, stress (3, 3) eV/Å³ (σ = (1/V) ∂E/∂ε) and per-atom energies."""
    x = torch.tensor(np.asarray(positions), dtype=dtype, requires_grad=True)
    c = torch.tensor(np.asarray(cell), dtype=dtype)
    eps = torch.zeros(3, 3, dtype=dtype, requires_grad=True)
    F = torch.eye(3, dtype=dtype) + 0.5 * (eps + eps.T)
    e_i = es.atomic_energies(x @ F, torch.tensor(np.asarray(charges), dtype=dtype), c @ F, pbc,
                             exclusions=exclusions)
    E = e_i.sum()
    gx, ge = torch.autograd.grad(E, [x, eps])
    vol = abs(float(np.linalg.det(np.asarray(cell)))) if stress else 1.0
    return (float(E.detach()), -gx.double().numpy(), ge.double().numpy() / vol,
            e_i.detach().double().numpy())


def energy_np(es, positions, charges, cell, pbc, exclusions=None) -> float:
    with torch.no_grad():
        return float(es.energy(torch.tensor(positions), torch.tensor(charges), torch.tensor(cell),
                               pbc, exclusions=exclusions))


def fd_forces(es, positions, charges, cell, pbc, h=1e-4, exclusions=None):
    x0 = np.asarray(positions, float)
    F = np.zeros_like(x0)
    for a in range(len(x0)):
        for d in range(3):
            e = []
            for s in (-2, -1, 1, 2):
                x = x0.copy()
                x[a, d] += s * h
                e.append(energy_np(es, x, charges, cell, pbc, exclusions))
            F[a, d] = -(e[0] - 8 * e[1] + 8 * e[2] - e[3]) / (12 * h)
    return F


def fd_stress(es, positions, charges, cell, pbc, h=1e-5):
    x0, c0 = np.asarray(positions, float), np.asarray(cell, float)
    sig = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            e = []
            for s in (-2, -1, 1, 2):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * s * h
                eps[b, a] += 0.5 * s * h
                Fm = np.eye(3) + eps
                e.append(energy_np(es, x0 @ Fm, charges, c0 @ Fm, pbc))
            sig[a, b] = sig[b, a] = (e[0] - 8 * e[1] + 8 * e[2] - e[3]) / (12 * h)
    return sig / abs(np.linalg.det(c0))


def fd_charge_gradient(es, positions, charges, cell, pbc, h=1e-5):
    """∂E/∂q_i (eV/e) by central differences, charges varied one at a time (the net charge
    changes, so ``es`` must allow a background for periodic cells)."""
    q0 = np.asarray(charges, float)
    g = np.zeros_like(q0)
    for i in range(len(q0)):
        e = []
        for s in (-2, -1, 1, 2):
            q = q0.copy()
            q[i] += s * h
            e.append(energy_np(es, positions, q, cell, pbc))
        g[i] = (e[0] - 8 * e[1] + 8 * e[2] - e[3]) / (12 * h)
    return g


def rel(a, b) -> float:
    """max |a − b| / max |b|."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / np.abs(b).max())
