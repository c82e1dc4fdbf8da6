"""Neural CG potential (ENNP on beads + spline prior) trained on mapped forces."""
import warnings

import numpy as np
import pytest

from cgkit.forcematch import SparseSamplingWarning, SplineForceMatching
from cgkit.forcematch.neural import NeuralCGTraining, force_residuals
from cgkit.io_potential import load_potential


def _bond_prior(d):
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=None, bond=(0.8, 2.4, 0.05))
    fm.accumulate(d["positions"], d["forces"], d["cell"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        return fm.solve().potential


def test_neural_cg_pipeline_trains_saves_and_reloads(dimer_liquid, tmp_path):
    d = dimer_liquid
    prior = _bond_prior(d)
    nn = NeuralCGTraining(prior, d["positions"][:5], d["forces"][:5], d["cell"], np.zeros(32, int), 39.95,
                          tmp_path, r_cut=5.0, model={"channels": 4, "l_max": 0, "n_layers": 1},
                          train={"max_epochs": 1}).run()
    back = load_potential(tmp_path / "cg_nn_potential.pt")
    r1 = force_residuals(nn.potential, d["positions"][:3], d["forces"][:3], d["cell"], ("A",), np.zeros(32, int))
    r2 = force_residuals(back, d["positions"][:3], d["forces"][:3], d["cell"], ("A",), np.zeros(32, int))
    assert np.isclose(r1["A"]["rms_residual_eV_per_A"], r2["A"]["rms_residual_eV_per_A"], rtol=1e-10)
    assert np.isfinite(nn.results["prior_plus_nn"]["A"]["rms_residual_eV_per_A"])
    assert (tmp_path / "nn" / "model.pt").is_file()


@pytest.mark.slow
def test_network_learns_the_pair_forces_missing_from_a_bond_only_prior(dimer_liquid, tmp_path):
    d = dimer_liquid
    prior = _bond_prior(d)
    nn = NeuralCGTraining(prior, d["positions"][:60], d["forces"][:60], d["cell"], np.zeros(32, int), 39.95,
                          tmp_path, r_cut=6.0, model={"channels": 8, "l_max": 0, "n_layers": 1},
                          train={"max_epochs": 40, "optimizer": {"lr": 0.02}}).run()
    # held-out frames
    test = slice(70, 100)
    before = force_residuals(prior, d["positions"][test], d["forces"][test], d["cell"], ("A",), np.zeros(32, int))
    after = force_residuals(nn.potential, d["positions"][test], d["forces"][test], d["cell"], ("A",), np.zeros(32, int))
    assert after["A"]["rms_residual_eV_per_A"] < 0.5 * before["A"]["rms_residual_eV_per_A"]
