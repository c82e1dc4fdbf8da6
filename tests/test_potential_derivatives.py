"""Forces, stress and Hessians from autograd agree with finite differences of the energy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cgkit.potentials import LennardJones, StillingerWeber
from cgkit.testing import fd_forces, fd_hessian, fd_stress
from tests.conftest import argon_liquid, triclinic_si

CASES = {
    "lj_argon": (lambda: LennardJones(sigma=3.405, epsilon=0.0103, cutoff=8.5, r_on=7.0),
                 lambda rng: argon_liquid(rng, n=24)),
    "lj_argon_shifted_force": (lambda: LennardJones(sigma=3.405, epsilon=0.0103, cutoff=8.5,
                                                    mode="shifted_force"),
                               lambda rng: argon_liquid(rng, n=24)),
    "sw_silicon": (StillingerWeber, lambda rng: triclinic_si(rng, repeat=(1, 1, 2))),
}


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(params=sorted(CASES))
def case(request, rng):
    make_pot, make_atoms = CASES[request.param]
    return make_pot(), make_atoms(rng)


def test_forces_match_finite_differences(case):
    pot, atoms = case
    out = pot.compute(pot.graph(atoms))
    assert rel_err(out["forces"].numpy(), fd_forces(pot, atoms)) < 1e-6


def test_stress_matches_energy_strain_derivative(case):
    pot, atoms = case
    out = pot.compute(pot.graph(atoms), stress=True)
    assert rel_err(out["stress"][0].numpy(), fd_stress(pot, atoms)) < 1e-6
    assert np.allclose(out["stress"][0].numpy(), out["stress"][0].numpy().T, atol=1e-14)


def test_hessian_matches_finite_differences_and_sum_rule(case):
    pot, atoms = case
    H = pot.hessian(pot.graph(atoms)).numpy()
    assert rel_err(H, fd_hessian(pot, atoms)) < 1e-6
    assert np.abs(H - H.T).max() < 1e-12 * np.abs(H).max()
    # acoustic sum rule: rigid translation costs no energy → Σ_b H[a, b] = 0 per Cartesian pair
    n = len(atoms)
    asr = H.reshape(n, 3, n, 3).sum(axis=2)
    assert np.abs(asr).max() < 1e-8


def test_strain_hessian_blocks_match_finite_differences(rng):
    """Extended Hessian over (positions, Voigt strains η): the strain block against second
    differences of the energy, the mixed block against differences of strained gradients."""
    from cgkit.potential import _voigt_strain
    from cgkit.testing import energy_at, graph_for_fd

    pot = StillingerWeber()
    atoms = triclinic_si(rng, repeat=(1, 1, 1))
    H = pot.hessian(pot.graph(atoms), include_strain=True).numpy()
    n3 = 3 * len(atoms)
    g = graph_for_fd(pot, atoms)

    def deform(eta_vec):
        return torch.eye(3) + _voigt_strain(torch.as_tensor(eta_vec).reshape(1, 6))[0]

    def E(eta_vec):
        F = deform(eta_vec)
        return energy_at(pot, g, g.positions @ F, g.cell @ F)

    h = 1e-4
    num = np.zeros((6, 6))
    for k in range(6):
        for m in range(6):
            ek, em = np.eye(6)[k] * h, np.eye(6)[m] * h
            num[k, m] = (E(ek + em) - E(ek - em) - E(-ek + em) + E(-ek - em)) / (4 * h * h)
    assert rel_err(H[n3:, n3:], num) < 1e-6

    # mixed block: d/dη of ∂E/∂x, where x are the undeformed coordinates (x' = x F)
    mixed = np.zeros((n3, 6))
    hs = 1e-5
    for k in range(6):
        grads = []
        for sgn in (1, -1):
            F = deform(np.eye(6)[k] * sgn * hs)
            gs = g.with_positions(g.positions @ F, g.cell[0] @ F, rebuild=False)
            f = pot.compute(gs)["forces"]
            grads.append((-f @ F.T).numpy().ravel())
        mixed[:, k] = (grads[0] - grads[1]) / (2 * hs)
    assert rel_err(H[:n3, n3:], mixed) < 1e-6


def test_sum_of_potentials_adds_energies_forces_and_hessians(rng):
    a = LennardJones(sigma=2.0, epsilon=0.01, cutoff=4.0, type_names=["Si"])
    b = StillingerWeber()
    atoms = triclinic_si(rng, repeat=(1, 1, 1))
    s = a + b
    g = s.graph(atoms)
    oa, ob, os_ = a.compute(g, stress=True), b.compute(g, stress=True), s.compute(g, stress=True)
    for key in ("energy", "forces", "stress"):
        np.testing.assert_allclose(os_[key].numpy(), (oa[key] + ob[key]).numpy(), atol=1e-12)
    np.testing.assert_allclose(s.hessian(g).numpy(), (a.hessian(g) + b.hessian(g)).numpy(), atol=1e-10)
