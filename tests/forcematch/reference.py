"""Independent reference potentials for the force-matching tests (plain torch, analytic forms).

Written separately from cgkit.forcematch on purpose: the fitted tables are checked against
these closed forms, never against themselves.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cgkit.potential import Potential


def lj_force(r, sigma, eps, rc):
    """Generalised pair force -dU/dr of shifted-force LJ (eV/Å)."""
    def f(x):
        s6 = (sigma / x) ** 6
        return 4 * eps * (12 * s6 * s6 - 6 * s6) / x
    return f(r) - f(rc)


class MoleculeReference(Potential):
    """Harmonic bonds k_b/2 (r-r0)², harmonic angles k_a/2 (θ-θ0)², cosine dihedrals
    k_d (1 + cos(3φ)), and shifted-force LJ between beads of different molecules (or more than
    ``excl`` bonds apart is not needed: all intramolecular pairs excluded).

    Bead-by-bead loops over explicit index lists; minimum image by rounding (orthorhombic box).
    """

    def __init__(self, molecule, bonds, angles=(), dihedrals=(), *, sigma=3.4, eps=0.0104, rc=8.0,
                 kb=10.0, r0=1.5, ka=2.0, th0=math.radians(110), kd=0.05, lj=True):
        super().__init__()
        self.cutoff = rc
        self.molecule = torch.as_tensor(np.asarray(molecule))
        self.bonds = torch.as_tensor(np.asarray(bonds, dtype=np.int64).reshape(-1, 2))
        self.angles = torch.as_tensor(np.asarray(angles, dtype=np.int64).reshape(-1, 3))
        self.dihedrals = torch.as_tensor(np.asarray(dihedrals, dtype=np.int64).reshape(-1, 4))
        self.p = dict(sigma=sigma, eps=eps, rc=rc, kb=kb, r0=r0, ka=ka, th0=th0, kd=kd)
        self.lj = lj

    def _mic(self, d, cell, pbc):
        if not bool(pbc.any()):
            return d
        L = torch.diagonal(cell[0])
        return d - L * torch.round(d / L)

    def atomic_energies(self, graph, positions, cell):
        p = self.p
        e = torch.zeros(graph.n_atoms, dtype=positions.dtype)
        if self.lj:
            i, j, _, r = self.neighbor_edges(graph, positions, cell)
            keep = self.molecule[i] != self.molecule[j]
            i, r = i[keep], r[keep]
            s6 = (p["sigma"] / r) ** 6
            s6c = (p["sigma"] / p["rc"]) ** 6
            u = 4 * p["eps"] * (s6 * s6 - s6) - 4 * p["eps"] * (s6c * s6c - s6c)
            u = u + (r - p["rc"]) * 4 * p["eps"] * (12 * s6c * s6c - 6 * s6c) / p["rc"]
            e = e.index_add(0, i, 0.5 * u)
        pbc = graph.pbc[0]
        if len(self.bonds):
            a, b = self.bonds[:, 0], self.bonds[:, 1]
            r = torch.linalg.norm(self._mic(positions[b] - positions[a], cell, pbc), dim=1)
            e = e.index_add(0, a, 0.5 * p["kb"] * (r - p["r0"]) ** 2)
        if len(self.angles):
            a, b, c = self.angles.T
            u1 = self._mic(positions[a] - positions[b], cell, pbc)
            u2 = self._mic(positions[c] - positions[b], cell, pbc)
            cos = (u1 * u2).sum(1) / (u1.norm(dim=1) * u2.norm(dim=1))
            th = torch.acos(cos.clamp(-1 + 1e-12, 1 - 1e-12))
            e = e.index_add(0, b, 0.5 * p["ka"] * (th - p["th0"]) ** 2)
        if len(self.dihedrals):
            a, b, c, d = self.dihedrals.T
            b1 = self._mic(positions[b] - positions[a], cell, pbc)
            b2 = self._mic(positions[c] - positions[b], cell, pbc)
            b3 = self._mic(positions[d] - positions[c], cell, pbc)
            # Blondel–Karplus formula, written independently of cgkit's
            y = (b2.norm(dim=1) * (b1 * torch.cross(b2, b3, dim=1)).sum(1))
            x = (torch.cross(b1, b2, dim=1) * torch.cross(b2, b3, dim=1)).sum(1)
            phi = torch.atan2(y, x)
            e = e.index_add(0, b, p["kd"] * (1 + torch.cos(3 * phi)))
        return e


def reference_forces(pot, positions, cell, pbc=True):
    from cgkit.data import AtomicGraph
    out = []
    for x in positions:
        g = AtomicGraph.from_arrays(x, cell, pbc, max(pot.cutoff, 1.0))
        out.append(pot.compute(g)["forces"].numpy())
    return np.array(out)
