"""Forces, stress, Hessians and charge gradients (autograd through the public API) against
central finite differences of the energy, float64, for every method."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cgkit.electrostatics import Electrostatics, Exclusions

from ._refs import lammps_cell, random_ionic
from ._util import evaluate, fd_charge_gradient, fd_forces, fd_stress, rel


def _system(method):
    rng = np.random.default_rng(42)
    if method in ("ewald", "pme", "dsf"):
        cell = lammps_cell(8.0, 8.5, 9.0, 2.5, -2.0, 3.0)
        pbc = [True] * 3
    elif method == "slab":
        cell = lammps_cell(8.0, 8.5, 9.0, 2.5)
        pbc = [True, True, False]
    else:
        cell = lammps_cell(8.0, 8.5, 9.0)
        pbc = [False] * 3
    pos, q = random_ionic(rng, 4, cell, min_dist=1.8)
    if method == "slab":
        pos[:, 2] = 0.5 * pos[:, 2] + 2.0
    return pos, q, cell, pbc


SETTINGS = {
    "ewald": dict(method="ewald", accuracy=1e-12),
    "pme": dict(method="pme", accuracy=1e-5, cutoff=6.0, pme_order=6),
    "slab": dict(method="slab", accuracy=1e-12),
    "direct": dict(method="direct"),
    "dsf": dict(method="dsf", dsf_alpha=0.25, dsf_cutoff=6.0),
}
EXCL = Exclusions(np.array([[0, 5], [1, 2]]), np.array([0.0, 0.5]))


@pytest.mark.parametrize("method", list(SETTINGS))
def test_forces_stress_equal_finite_differences(method):
    pos, q, cell, pbc = _system(method)
    es = Electrostatics(**SETTINGS[method])
    periodic = all(pbc)
    E, F, S, _ = evaluate(es, pos, q, cell, pbc, exclusions=EXCL, stress=periodic)
    assert rel(F, fd_forces(es, pos, q, cell, pbc, exclusions=EXCL)) < 1e-6
    if periodic:
        E, F, S, _ = evaluate(es, pos, q, cell, pbc)
        assert rel(S, fd_stress(es, pos, q, cell, pbc)) < 1e-6


def _autograd_hessian(es, pos, q, cell, pbc, rows):
    x = torch.tensor(pos, requires_grad=True)
    E = es.energy(x, torch.tensor(q), torch.tensor(cell), pbc)
    g, = torch.autograd.grad(E, x, create_graph=True)
    g = g.reshape(-1)
    out = [torch.autograd.grad(g[k], x, retain_graph=True)[0].reshape(-1) for k in rows]
    return torch.stack(out).detach().numpy()


def _fd_hessian(es, pos, q, cell, pbc, rows, h=1e-4):
    H = np.zeros((len(rows), pos.size))
    for r, k in enumerate(rows):
        f = []
        for s in (-2, -1, 1, 2):
            x = pos.copy().reshape(-1)
            x[k] += s * h
            f.append(evaluate(es, x.reshape(-1, 3), q, cell, pbc, stress=False)[1].reshape(-1))
        H[r] = -(f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    return H


@pytest.mark.parametrize("method", ["ewald", "pme", "direct"])
def test_hessian_equals_finite_differences_of_forces(method):
    pos, q, cell, pbc = _system(method)
    es = Electrostatics(**SETTINGS[method])
    rows = list(range(pos.size)) if method != "pme" else [0, 4, 8, 13, 23]  # PME: some rows (time)
    H = _autograd_hessian(es, pos, q, cell, pbc, rows)
    if method != "pme":
        assert np.abs(H - H.T).max() < 1e-8 * np.abs(H).max()
    assert rel(H, _fd_hessian(es, pos, q, cell, pbc, rows)) < 1e-6


@pytest.mark.parametrize("method", ["ewald", "pme", "slab", "direct", "dsf"])
def test_charge_gradients_equal_finite_differences(method):
    pos, q, cell, pbc = _system(method)
    es = Electrostatics(**SETTINGS[method], background=True)
    x = torch.tensor(pos)
    qt = torch.tensor(q, requires_grad=True)
    E = es.energy(x, qt, torch.tensor(cell), pbc)
    g, = torch.autograd.grad(E, qt)
    assert rel(g.numpy(), fd_charge_gradient(es, pos, q, cell, pbc)) < 1e-6


def test_cell_gradient_flows_and_float32_matches_float64():
    pos, q, cell, pbc = _system("ewald")
    es = Electrostatics(method="ewald", accuracy=1e-5)
    E64, F64, S64, _ = evaluate(es, pos, q, cell, pbc)
    E32, F32, S32, _ = evaluate(es, pos, q, cell, pbc, dtype=torch.float32)
    assert abs(E32 - E64) < 1e-5 * abs(E64)
    assert rel(F32, F64) < 1e-4
    assert rel(S32, S64) < 1e-4
    x = torch.tensor(pos, dtype=torch.float32)
    e = es.atomic_energies(x, torch.tensor(q, dtype=torch.float32), torch.tensor(cell, dtype=torch.float32), pbc)
    assert e.dtype == torch.float32 and e.shape == (len(q),)
