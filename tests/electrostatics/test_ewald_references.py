"""Ewald summation against independent references: Madelung constants, LAMMPS
``kspace_style ewald`` (Debian ``lmp``) and pymatgen's ``EwaldSummation``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from cgkit.electrostatics import K_E, Electrostatics

from ._refs import LMP, have_pymatgen, lammps_cell, random_ionic, run_lammps, run_pymatgen
from ._util import evaluate, rel

needs_lmp = pytest.mark.skipif(LMP is None, reason="LAMMPS executable 'lmp' not found (Debian package lammps)")
needs_pmg = pytest.mark.skipif(not have_pymatgen(), reason="pymatgen not installed (pip install pymatgen)")

A = 5.64

# name, structure builder, charges, nearest-neighbour distance r0, Madelung constant (per r0)
MADELUNG = [
    ("NaCl", lambda cubic: bulk("NaCl", "rocksalt", a=A, cubic=cubic), A / 2, 1.747564594633),
    ("CsCl", lambda cubic: bulk("CsCl", "cesiumchloride", a=4.1), 4.1 * np.sqrt(3) / 2, 1.762674773070),
    ("ZnS", lambda cubic: bulk("ZnS", "zincblende", a=A, cubic=cubic), A * np.sqrt(3) / 4, 1.638055053388),
]


def madelung(atoms, r0, **kw) -> float:
    q = np.array([1.0 if i % 2 == 0 else -1.0 for i in range(len(atoms))])
    es = Electrostatics(method="ewald", **kw)
    with torch.no_grad():
        E = float(es.energy(torch.tensor(atoms.positions), torch.tensor(q),
                            torch.tensor(atoms.cell.array), [True] * 3))
    return -E * r0 / (K_E * len(atoms) / 2)


def reduced_skew(cell):
    """The same lattice described by a strongly skewed (still right-handed) basis."""
    M = np.array([[1, 0, 0], [1, 1, 0], [-1, 2, 1]])  # det 1
    return M @ cell


@pytest.mark.parametrize("name,build,r0,ref", MADELUNG, ids=[m[0] for m in MADELUNG])
def test_madelung_constants_conventional_primitive_and_skewed_cells(name, build, r0, ref):
    prim = build(False)
    assert prim.get_chemical_symbols()[0] != prim.get_chemical_symbols()[1]
    values = {"primitive": madelung(prim, r0, accuracy=1e-12)}
    if name != "CsCl":
        conv = build(True)
        assert len(conv) == 8
        values["conventional"] = madelung(conv, r0, accuracy=1e-12)
    sk = prim.copy()
    sk.set_cell(reduced_skew(prim.cell.array), scale_atoms=False)
    values["skewed basis"] = madelung(sk, r0, accuracy=1e-12)
    for cell_kind, m in values.items():
        assert abs(m - ref) / ref < 1e-9, (cell_kind, m, ref)
    # energy independent of α / cutoff to 1e-10
    for cutoff in (6.0, 9.0, 14.0):
        m = madelung(prim, r0, accuracy=1e-13, cutoff=cutoff)
        assert abs(m - values["primitive"]) / ref < 1e-10, (cutoff, m)


def _configs():
    rng = np.random.default_rng(20261204)
    out = []
    for cell in (lammps_cell(11.0, 12.0, 13.0, 3.0, -4.0, 5.0),     # triclinic
                 lammps_cell(9.0, 10.0, 12.0, 7.5, -8.0, 8.5)):       # strongly skewed (tilt > L/2)
        out.append((cell, *random_ionic(rng, 16, cell)))
    return out


CONFIGS = _configs()


@needs_lmp
@pytest.mark.parametrize("k", range(len(CONFIGS)), ids=["triclinic", "skewed"])
def test_ewald_equals_lammps_energy_forces_stress_per_atom(k):
    cell, pos, q = CONFIGS[k]
    E_l, F_l, S_l, e_l = run_lammps(pos, q, cell, accuracy=1e-10, r_cut=10.0)
    E, F, S, e = evaluate(Electrostatics(method="ewald", accuracy=1e-10), pos, q, cell, [True] * 3)
    assert abs(E - E_l) / abs(E_l) < 1e-6
    assert rel(F, F_l) < 1e-6
    assert rel(S, S_l) < 1e-6
    assert rel(e, e_l) < 1e-6
    # at the default accuracy, within the requested accuracy (LAMMPS convention: k_e q² / Å)
    E6, F6, _, _ = evaluate(Electrostatics(method="ewald", accuracy=1e-6), pos, q, cell, [True] * 3)
    scale = K_E * np.mean(q ** 2)
    assert abs(E6 - E_l) / len(q) < 1e-6 * scale
    assert np.abs(F6 - F_l).max() < 1e-6 * scale


@needs_pmg
@pytest.mark.parametrize("k", range(len(CONFIGS)), ids=["triclinic", "skewed"])
def test_ewald_equals_pymatgen(k):
    cell, pos, q = CONFIGS[k]
    E_p, F_p = run_pymatgen(pos, q, cell, accuracy=16.0)
    E, F, _, _ = evaluate(Electrostatics(method="ewald", accuracy=1e-10), pos, q, cell, [True] * 3)
    assert abs(E - E_p) / abs(E_p) < 1e-6
    assert rel(F, F_p) < 1e-6


@needs_lmp
def test_charged_cell_with_background_equals_lammps():
    cell, pos, q = CONFIGS[0]
    q = q.copy()
    q[0] += 0.4
    E_l, F_l, S_l, e_l, alpha_l = run_lammps(pos, q, cell, accuracy=1e-10, r_cut=10.0, return_alpha=True)
    E, F, S, e = evaluate(Electrostatics(method="ewald", accuracy=1e-10, background=True), pos, q,
                          cell, [True] * 3)
    assert abs(E - E_l) / abs(E_l) < 1e-6
    assert rel(F, F_l) < 1e-6
    assert rel(e, e_l) < 1e-6
    # LAMMPS (29 Sep 2021) leaves the volume derivative of the background energy
    # −π k_e Q²/(2 V α²) out of its virial; cgkit's stress includes it (checked against finite
    # differences in test_derivatives.py). Add it to the LAMMPS stress with LAMMPS' own α.
    V = np.linalg.det(cell)
    S_l = S_l + np.eye(3) * np.pi * K_E * q.sum() ** 2 / (2 * V * V * alpha_l ** 2)
    assert rel(S, S_l) < 1e-6


@needs_lmp
@pytest.mark.slow
def test_ewald_equals_lammps_and_pymatgen_1000_ions():
    rng = np.random.default_rng(7)
    cell = lammps_cell(26.0, 27.0, 28.0, 6.0, -5.0, 7.0)
    pos, q = random_ionic(rng, 500, cell, min_dist=1.5)
    E_l, F_l, S_l, _ = run_lammps(pos, q, cell, accuracy=1e-8, r_cut=12.0)
    E, F, S, _ = evaluate(Electrostatics(method="ewald", accuracy=1e-8), pos, q, cell, [True] * 3)
    assert abs(E - E_l) / abs(E_l) < 1e-6
    assert rel(F, F_l) < 1e-6
    assert rel(S, S_l) < 1e-6
    # PME on the same 1000 ions, within its requested accuracy of the Ewald result
    scale = K_E * np.mean(q ** 2)
    Ep, Fp, Sp, _ = evaluate(Electrostatics(method="pme", accuracy=1e-6), pos, q, cell, [True] * 3)
    assert abs(Ep - E) / len(q) < 1e-6 * scale
    assert np.abs(Fp - F).max() < 1e-6 * scale
    if have_pymatgen():
        E_p, F_p = run_pymatgen(pos, q, cell, accuracy=14.0)
        assert abs(E - E_p) / abs(E_p) < 1e-6
        assert rel(F, F_p) < 1e-6
