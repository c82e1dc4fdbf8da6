"""Analytic-Hessian phonons of a trained ENNP against phonopy finite displacements."""
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.properties.phonons import Phonons

SW_A = 5.43095


@pytest.fixture(scope="module")
def trained_ennp(tmp_path_factory):
    from tests.conftest import train_small_si_ennp
    return train_small_si_ennp(tmp_path_factory.mktemp("ennp_si")).to(torch.float64)


def test_trained_ennp_analytic_bands_match_phonopy_finite_displacements(trained_ennp):
    pot = trained_ennp
    atoms = bulk("Si", "diamond", SW_A)
    # both routes on the same supercell (narrower than 2 × layers × cutoff, hence allowed
    # explicitly): the analytic and finite-displacement force constants must agree
    kw = dict(supercell=(2, 2, 2), mesh=(4, 4, 4), band_npoints=11, progress=False,
              allow_small_supercell=True)
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
