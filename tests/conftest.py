"""Shared fixtures: small periodic structures in triclinic cells, float64 throughout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)
# One torch thread for the whole suite: the systems are small, and threads only oversubscribe
# a 2-core machine running other work (tests that need more set it locally).
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


def train_small_si_ennp(tmp, *, epochs: int = 6, dtype: str = "float64"):
    """A small ENNP fitted briefly to Stillinger–Weber labels of 12 rattled, strained 8-atom Si
    cells (seconds of training); returns the loaded Potential. For tests that need a *trained*
    model (phonons, NVE), not an accurate one."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from cgkit import load_potential
    from cgkit.calculator import CgkitCalculator
    from cgkit.potentials import StillingerWeber
    from cgkit.train import Trainer

    sw = CgkitCalculator(StillingerWeber())
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(12):
        a = bulk("Si", "diamond", 5.43095 * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.calc = sw
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        frames.append(a)
    write(tmp / "sw.xyz", frames)
    cfg = {"output": str(tmp / "run"), "seed": 0,
           "model": {"species": ["Si"], "r_cut": 4.0, "channels": 8, "l_max": 1, "n_layers": 2,
                     "n_radial": 6, "radial_hidden": 16, "dtype": dtype},
           "data": {"train": str(tmp / "sw.xyz"), "val_fraction": 0.25},
           "loss": {"energy": 1.0, "forces": 10.0, "stress": 0.0},
           "batch_size": 3, "max_epochs": epochs, "early_stopping_patience": 100, "threads": 1}
    Trainer(cfg).run()
    return load_potential(tmp / "run" / "model.pt")
