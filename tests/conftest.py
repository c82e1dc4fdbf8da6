"""Shared fixtures: small periodic structures in triclinic cells, float64 throughout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)
# Small systems: one thread is fastest and keeps parallel test runs from oversubscribing 2 cores.
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def triclinic_si(rng, repeat=(2, 2, 2), rattle=0.08, shear=0.15):
    """Rattled diamond Si in a sheared (triclinic) cell."""
    from ase.build import bulk
    atoms = bulk("Si", "diamond", a=5.43095).repeat(repeat)
    cell = atoms.cell.array @ (np.eye(3) + shear * rng.uniform(-1, 1, (3, 3)))
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    return atoms


def argon_liquid(rng, n=32, density=0.0213, shear=0.1):
    """Random-ish LJ argon at liquid density (atoms/Å³) in a triclinic cell, no overlaps."""
    from ase import Atoms
    L = (n / density) ** (1 / 3)
    cell = L * (np.eye(3) + shear * rng.uniform(-1, 1, (3, 3)))
    # jittered lattice to avoid overlaps
    m = int(np.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] / m
    frac = grid + rng.normal(0, 0.03, grid.shape)
    return Atoms("Ar%d" % n, scaled_positions=frac % 1.0, cell=cell, pbc=True)
