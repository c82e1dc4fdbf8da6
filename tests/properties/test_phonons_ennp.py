"""Analytic-Hessian phonons of a trained ENNP against phonopy finite displacements."""
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from cgkit.calculator import CgkitCalculator
from properties.phonons import Phonons

SW_A = 5.43095


@pytest.fixture(scope="module")
def trained_ennp(tmp_path_factory):
    """A small float64 ENNP fitted briefly to Stillinger–Weber labels of rattled Si cells."""
    from ase.io import write

    from cgkit.potentials import StillingerWeber
    from cgkit.train import Trainer

    tmp = tmp_path_factory.mktemp("ennp_si")
    sw = CgkitCalculator(StillingerWeber())
    rng = np.random.default_rng(3)
    frames = []
    for k in range(12):
        a = bulk("Si", "diamond", SW_A * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.calc = sw
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        frames.append(a)
    write(tmp / "sw.xyz", frames)
    cfg = {"output": str(tmp / "run"), "seed": 0,
           "model": {"species": ["Si"], "r_cut": 4.0, "channels": 8, "l_max": 1, "n_layers": 2,
                     "n_radial": 6, "radial_hidden": 16, "dtype": "float64"},
           "data": {"train": str(tmp / "sw.xyz"), "val_fraction": 0.25},
           "loss": {"energy": 1.0, "forces": 10.0, "stress": 0.0},
           "batch_size": 3, "max_epochs": 6, "early_stopping_patience": 100, "threads": 1}
    trainer = Trainer(cfg).run()
    from cgkit import load_potential
    pot = load_potential(tmp / "run" / "model.pt", dtype=torch.float64)
    return pot, trainer


def test_trained_ennp_analytic_bands_match_phonopy_finite_displacements(trained_ennp):
    pot, _ = trained_ennp
    atoms = bulk("Si", "diamond", SW_A)
    kw = dict(supercell=(2, 2, 2), mesh=(4, 4, 4), band_npoints=11, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a briefly trained model may have soft/imaginary modes
        an = Phonons(atoms, pot, **kw).run()
        fd = Phonons(atoms, CgkitCalculator(pot, dtype=torch.float64), method="finite_displacement",
                     displacement=0.001, **kw).run()
    assert an.results.method == "analytic"
    diff = max(np.abs(np.asarray(a) - np.asarray(b)).max()
               for a, b in zip(an.results.band["frequencies"], fd.results.band["frequencies"]))
    assert diff < 1e-3  # THz, every frequency on the path
    assert an.results.max_frequency > 1.0  # a real, non-trivial spectrum
