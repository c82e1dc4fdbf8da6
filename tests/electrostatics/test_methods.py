"""PME, slab, direct sum, DSF and exclusions against independent references (Ewald at high
accuracy, LAMMPS ``kspace_modify slab``, ``coul/dsf``, ``special_bonds``, explicit pair sums)."""
from __future__ import annotations

import numpy as np
import pytest

from cgkit.electrostatics import K_E, Electrostatics, Exclusions

from ._refs import LMP, lammps_cell, random_ionic, run_lammps
from ._util import evaluate, rel

needs_lmp = pytest.mark.skipif(LMP is None, reason="LAMMPS executable 'lmp' not found (Debian package lammps)")

PBC = [True] * 3


@pytest.fixture(scope="module")
def ionic120():
    rng = np.random.default_rng(11)
    cell = lammps_cell(15.0, 16.0, 14.0, 4.0, -3.0, 5.0)
    pos, q = random_ionic(rng, 60, cell)
    ref = evaluate(Electrostatics(method="ewald", accuracy=1e-12), pos, q, cell, PBC)
    return cell, pos, q, ref


@pytest.mark.parametrize("accuracy,order", [(1e-4, 4), (1e-6, 6),
                                            pytest.param(1e-6, 4, marks=pytest.mark.slow),
                                            pytest.param(1e-4, 6, marks=pytest.mark.slow)])
def test_pme_equals_ewald_to_requested_accuracy(ionic120, accuracy, order):
    cell, pos, q, (E0, F0, S0, e0) = ionic120
    es = Electrostatics(method="pme", accuracy=accuracy, pme_order=order)
    E, F, S, e = evaluate(es, pos, q, cell, PBC)
    scale = K_E * np.mean(q ** 2)  # LAMMPS convention: force between unit charges 1 Å apart
    assert abs(E - E0) / len(q) < accuracy * scale
    assert np.abs(F - F0).max() < accuracy * scale
    assert np.abs(e - e0).max() < accuracy * scale
    assert np.abs(S - S0).max() * np.linalg.det(cell) / len(q) < accuracy * scale
    p = es.parameters_for(cell, PBC, len(q))
    assert p["method"] == "pme" and p["order"] == order and len(p["mesh"]) == 3


def test_ewald_accuracy_setting_is_met(ionic120):
    cell, pos, q, (E0, F0, S0, e0) = ionic120
    scale = K_E * np.mean(q ** 2)
    for accuracy in (1e-3, 1e-5, 1e-7):
        E, F, S, e = evaluate(Electrostatics(method="ewald", accuracy=accuracy), pos, q, cell, PBC)
        assert abs(E - E0) / len(q) < accuracy * scale
        assert np.abs(F - F0).max() < accuracy * scale


def _slab_config(seed=3):
    rng = np.random.default_rng(seed)
    cell = lammps_cell(12.0, 13.0, 10.0)
    pos, q = random_ionic(rng, 16, cell)
    pos[:, 2] = pos[:, 2] * 0.8 + 1.0
    return cell, pos, q


@needs_lmp
def test_slab_equals_lammps_slab_3():
    cell, pos, q = _slab_config()
    E_l, F_l, _, e_l = run_lammps(pos, q, cell, accuracy=1e-10, r_cut=10.0, slab=3.0, pbc_z=False)
    es = Electrostatics(method="slab", accuracy=1e-10, slab=3.0)
    E, F, _, e = evaluate(es, pos, q, cell, [True, True, False], stress=False)
    assert abs(E - E_l) / abs(E_l) < 1e-6
    assert rel(F, F_l) < 1e-6
    assert rel(e, e_l) < 1e-6
    # "auto" picks the slab method for two periodic directions
    E2, F2, _, _ = evaluate(Electrostatics(accuracy=1e-10), pos, q, cell, [True, True, False], stress=False)
    assert abs(E2 - E) < 1e-9 * abs(E)


@needs_lmp
def test_charged_slab_with_background_equals_lammps():
    cell, pos, q = _slab_config(4)
    q = q.copy()
    q[0] += 0.3
    E_l, F_l, _, _ = run_lammps(pos, q, cell, accuracy=1e-10, r_cut=10.0, slab=3.0, pbc_z=False)
    es = Electrostatics(method="slab", accuracy=1e-10, background=True)
    E, F, _, _ = evaluate(es, pos, q, cell, [True, True, False], stress=False)
    assert rel(F, F_l) < 1e-6
    # cgkit uses the Ewald-cell height L = 3 L_z in the constant −Q²L²/12 term of Ballenegger
    # et al. (2009), as LAMMPS' pppm does; LAMMPS' ewald (29 Sep 2021) uses L_z there.
    V = cell[0, 0] * cell[1, 1] * cell[2, 2] * 3.0
    shift = -2 * np.pi * K_E / V * q.sum() ** 2 * ((3 * cell[2, 2]) ** 2 - cell[2, 2] ** 2) / 12.0
    assert abs(E - (E_l + shift)) / abs(E_l) < 1e-6


def test_slab_converges_to_larger_vacuum():
    """The Yeh–Berkowitz corrected energy hardly depends on the vacuum factor."""
    cell, pos, q = _slab_config()
    pbc = [True, True, False]
    E3 = evaluate(Electrostatics(method="slab", accuracy=1e-10, slab=3.0), pos, q, cell, pbc, stress=False)[0]
    E6 = evaluate(Electrostatics(method="slab", accuracy=1e-10, slab=6.0), pos, q, cell, pbc, stress=False)[0]
    assert abs(E3 - E6) < 2e-3 * abs(E6)


def test_direct_sum_equals_explicit_pairs_and_exclusions():
    rng = np.random.default_rng(5)
    pos = rng.normal(size=(12, 3)) * 3.0
    q = rng.normal(size=12)
    pairs = np.array([[0, 1], [2, 5], [7, 3]])
    scale = np.array([0.0, 0.5, 0.8333])
    factor = np.ones((12, 12))
    for (i, j), s in zip(pairs, scale):
        factor[i, j] = factor[j, i] = s
    E_ref, e_ref = 0.0, np.zeros(12)
    for i in range(12):
        for j in range(i + 1, 12):
            v = K_E * factor[i, j] * q[i] * q[j] / np.linalg.norm(pos[i] - pos[j])
            E_ref += v
            e_ref[i] += v / 2
            e_ref[j] += v / 2
    es = Electrostatics()   # auto → direct for open boundaries
    assert es.parameters_for(np.zeros((3, 3)), [False] * 3, 12)["method"] == "direct"
    E, F, _, e = evaluate(es, pos, q, np.zeros((3, 3)), [False] * 3,
                          exclusions=Exclusions(pairs, scale), stress=False)
    assert abs(E - E_ref) < 1e-12 * abs(E_ref) + 1e-12
    assert np.abs(e - e_ref).max() < 1e-12
    # forces: analytic pair forces
    F_ref = np.zeros((12, 3))
    for i in range(12):
        for j in range(12):
            if i != j:
                r = pos[i] - pos[j]
                F_ref[i] += K_E * factor[i, j] * q[i] * q[j] * r / np.linalg.norm(r) ** 3
    assert rel(F, F_ref) < 1e-12


@needs_lmp
def test_dsf_equals_lammps_coul_dsf():
    rng = np.random.default_rng(8)
    cell = lammps_cell(14.0, 15.0, 16.0, 2.0, 1.0, -3.0)
    pos, q = random_ionic(rng, 20, cell)
    E_l, F_l, S_l, e_l = run_lammps(pos, q, cell, kspace=None, pair="coul/dsf 0.2 7.0")
    es = Electrostatics(method="dsf", dsf_alpha=0.2, dsf_cutoff=7.0)
    E, F, S, e = evaluate(es, pos, q, cell, PBC)
    # LAMMPS evaluates erfc by a polynomial (relative error ~1e-7)
    assert abs(E - E_l) / abs(E_l) < 1e-6
    assert rel(F, F_l) < 1e-6
    assert rel(S, S_l) < 1e-6
    assert rel(e, e_l) < 1e-6


@needs_lmp
@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_exclusions_equal_lammps_special_bonds(method):
    """Three-site molecules (bonds 0-1, 1-2): 1-2 pairs excluded, 1-3 pairs scaled by 0.5
    (LAMMPS ``special_bonds coul 0.0 0.5 1.0`` with coul/long + ewald)."""
    rng = np.random.default_rng(9)
    cell = lammps_cell(12.0, 12.5, 13.0, 2.0, -1.0, 1.5)
    nmol = 12
    pos, q, bonds, pairs, scale = [], [], [], [], []
    for m in range(nmol):
        c = rng.random(3) @ cell
        d1, d2 = rng.normal(size=3), rng.normal(size=3)
        p = [c, c + 1.0 * d1 / np.linalg.norm(d1), c + 1.0 * d2 / np.linalg.norm(d2)]
        pos += [p[1], p[0], p[2]]   # centre is atom 1
        q += [0.41, -0.82, 0.41]
        b = 3 * m
        bonds += [(b, b + 1), (b + 1, b + 2)]
        pairs += [(b, b + 1), (b + 1, b + 2), (b, b + 2)]
        scale += [0.0, 0.0, 0.5]
    pos, q = np.array(pos), np.array(q)
    E_l, F_l, S_l, e_l = run_lammps(pos, q, cell, accuracy=1e-10, r_cut=10.0, bonds=bonds,
                                    special="coul 0.0 0.5 1.0")
    acc = 1e-10 if method == "ewald" else 1e-7
    es = Electrostatics(method=method, accuracy=acc)
    E, F, S, e = evaluate(es, pos, q, cell, PBC, exclusions=Exclusions(np.array(pairs), np.array(scale)))
    tol = 1e-6 if method == "ewald" else 1e-5
    assert abs(E - E_l) / abs(E_l) < tol
    assert rel(F, F_l) < tol
    assert rel(S, S_l) < tol
