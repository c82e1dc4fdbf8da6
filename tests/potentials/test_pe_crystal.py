"""Orthorhombic polyethylene crystal (TraPPE-UA, infinite united-atom chains): geometry,
density, periodic topology, forces against finite differences, and analytic-Hessian phonons of
the relaxed crystal against phonopy's finite displacements."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cgkit.calculator import CgkitCalculator
from cgkit.errors import InputError
from cgkit.potentials.polyethylene import (PECrystalTraPPEUA, build_pe_crystal,
                                           crystal_chain_topology, pe_crystal_potential,
                                           pe_crystal_unit_cell)
from cgkit.potentials.trappe import TraPPEUA
from cgkit.testing import fd_forces, fd_stress

AVOGADRO = 6.02214076e23
CH2_AMU = 14.027  # TraPPE-UA CH2 site mass


@pytest.fixture(scope="module")
def relaxed_unit():
    """The TraPPE-UA minimum (cell and positions) of the orthorhombic crystal."""
    return pe_crystal_unit_cell(relax=True, relax_cell=True, fmax=1e-5)


def _mic(atoms, d):
    cell = atoms.cell.array
    f = d @ np.linalg.inv(cell)
    return (f - np.round(f)) @ cell


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # spglib's error-handling notice
def test_experimental_cell_has_density_near_1_g_cm3_and_space_group_pnam():
    unit = pe_crystal_unit_cell()
    assert len(unit) == 4 and (unit.arrays["bead_types"] == "CH2").all()
    # 4 CH2 per 7.42 × 4.95 × 2.55 Å³ cell, computed by hand
    rho = 4 * CH2_AMU / AVOGADRO / (7.42 * 4.95 * 2.55 * 1e-24)
    assert abs(rho - 0.9948) < 1e-3
    got = unit.get_masses().sum() / AVOGADRO / (unit.get_volume() * 1e-24)
    assert abs(got - rho) < 1e-9
    import spglib
    cell = (unit.cell.array, unit.get_scaled_positions(), [6] * 4)
    assert spglib.get_symmetry_dataset(cell, symprec=1e-5).number == 62  # Pnma ≡ Pnam


def test_bond_lengths_angles_and_setting_angle_of_the_built_crystal():
    atoms, topo = build_pe_crystal((2, 1, 4), c=2.55, bond=1.54, setting_angle=42.0)
    pos = atoms.get_positions()
    bonds = np.linalg.norm(_mic(atoms, pos[topo.bonds[:, 1]] - pos[topo.bonds[:, 0]]), axis=1)
    assert np.allclose(bonds, 1.54, atol=1e-10)
    # planar zig-zag with repeat c: the angle follows from c and the bond
    expect = np.degrees(2 * np.arctan(1.275 / np.sqrt(1.54 ** 2 - 1.275 ** 2)))
    angles = [atoms.get_angle(*a, mic=True) for a in topo.angles]
    assert abs(expect - 111.77) < 0.01 and np.allclose(angles, expect, atol=1e-8)
    # all dihedrals trans; zig-zag planes at ±42° to a
    for i, j, k, l in topo.dihedrals:
        assert abs(abs(atoms.get_dihedral(i, j, k, l, mic=True) - 180.0)) < 1e-6
    seen = set()
    for i, j in topo.bonds:
        d = _mic(atoms, pos[j] - pos[i])
        seen.add(round(np.degrees(np.arctan(d[1] / d[0])), 6))
    assert seen == {42.0, -42.0}


def test_periodic_topology_is_connected_rings_with_one_angle_and_dihedral_per_site():
    rep = (2, 2, 5)
    atoms, topo = build_pe_crystal(rep)
    n = len(atoms)
    assert n == 4 * np.prod(rep)
    assert (np.bincount(topo.bonds.reshape(-1), minlength=n) == 2).all()
    assert len(topo.bonds) == len(topo.angles) == len(topo.dihedrals) == n
    assert len(topo.exclusions) == 3 * n  # 1-2, 1-3, 1-4 partners on each side, all distinct
    # one molecule per chain (2 per unit cell in the a-b plane), each a ring of 2·n_c sites
    n_chains = 2 * rep[0] * rep[1]
    assert len(np.unique(topo.molecule)) == n_chains
    assert (np.bincount(topo.molecule) == 2 * rep[2]).all()
    assert (topo.molecule == atoms.arrays["chain_id"]).all()
    # each chain runs straight along c through the periodic boundary
    pos = atoms.get_positions()
    dz = _mic(atoms, pos[topo.bonds[:, 1]] - pos[topo.bonds[:, 0]])[:, 2]
    assert np.allclose(np.abs(dz), 2.55 / 2)
    # the distance-based topology finds the same bonds in any site order
    perm = np.random.default_rng(0).permutation(n)
    t2 = crystal_chain_topology(atoms[perm])
    a = {tuple(sorted(b)) for b in topo.bonds.tolist()}
    b = {tuple(sorted((int(perm[x]), int(perm[y])))) for x, y in t2.bonds.tolist()}
    assert a == b
    assert len(t2.angles) == len(t2.dihedrals) == n and len(t2.exclusions) == 3 * n


def test_too_short_chains_are_rejected_with_a_clear_message():
    with pytest.raises(InputError, match="at least 4"):
        build_pe_crystal((1, 1, 3))
    with pytest.raises(InputError, match="4 unit cells|too short"):
        crystal_chain_topology(pe_crystal_unit_cell().repeat((1, 1, 3)))


def test_trappe_forces_and_stress_match_finite_differences_on_a_rattled_crystal():
    atoms, topo = build_pe_crystal((1, 1, 4))
    atoms.rattle(0.03, rng=np.random.default_rng(2))
    pot = TraPPEUA(atoms.arrays["bead_types"], topo).to(torch.float64)
    out = pot.compute(pot.graph(atoms), stress=True)
    F = out["forces"].numpy()
    Fd = fd_forces(pot, atoms)
    assert np.abs(F).max() > 0.1  # the rattle gives real forces
    assert np.abs(F - Fd).max() < 1e-7
    assert np.abs(out["stress"][0].numpy() - fd_stress(pot, atoms)).max() < 1e-8
    # the element-labelled variant (phonopy's supercells) gives the same forces
    plain = atoms.copy()
    del plain.arrays["bead_types"]
    el = pe_crystal_potential(plain).to(torch.float64)
    assert isinstance(el, PECrystalTraPPEUA)
    assert np.abs(el.compute(el.graph(plain))["forces"].numpy() - F).max() < 1e-12


def test_relaxed_crystal_is_at_zero_force_and_stress_with_trappe_geometry(relaxed_unit):
    atoms, topo = build_pe_crystal((1, 1, 4), unit_cell=relaxed_unit)
    atoms.calc = CgkitCalculator(TraPPEUA(atoms.arrays["bead_types"], topo), dtype=torch.float64)
    assert np.abs(atoms.get_forces()).max() < 1e-4
    assert np.abs(atoms.get_stress()).max() < 1e-5  # eV/Å³
    cell = relaxed_unit.cell.array
    assert np.allclose(cell, np.diag(np.diag(cell)), atol=1e-10)  # still orthorhombic
    ang = [atoms.get_angle(*a, mic=True) for a in topo.angles]
    assert abs(np.mean(ang) - 114.0) < 0.5  # TraPPE θ₀, unlike the experimental 111.8°


def test_relaxed_crystal_phonons_analytic_match_phonopy_fd_with_no_imaginary_modes(relaxed_unit):
    from phonopy import Phonopy

    from cgkit.properties.phonons import Phonons, SmallSupercellWarning, ase_to_phonopy, phonopy_to_ase
    # 3 cells along b: with only 2 (9.9 Å, less than twice the 10 Å cutoff) the folded force
    # constants bend the acoustic branch near Γ along b below zero (an interpolation artefact)
    sc = (1, 3, 4)
    ph = Phonopy(ase_to_phonopy(relaxed_unit), supercell_matrix=np.diag(sc), primitive_matrix="P",
                 log_level=0)
    pot = pe_crystal_potential(phonopy_to_ase(ph.supercell)).to(torch.float64)
    # 1×3×4 is narrower than twice the 10 Å reach (3×5×8 would fit, 480 sites): this test
    # compares the analytic and the finite-displacement routes on the same folded supercell,
    # which agree for any supercell, so the size check is overridden explicitly
    kw = dict(supercell=sc, primitive_matrix="P", mesh=(4, 4, 4), band_npoints=11,
              temperatures=(0, 300, 300), progress=False, allow_small_supercell=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ImaginaryModeWarning fails the test
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=SmallSupercellWarning)  # overridden on purpose
        an = Phonons(relaxed_unit, pot, **kw).run()
    fd = Phonons(relaxed_unit, CgkitCalculator(pot, dtype=torch.float64),
                 method="finite_displacement", displacement=0.001, **kw).run()
    assert an.results.method == "analytic" and fd.results.n_force_calls >= 1
    diff = max(np.abs(np.asarray(a) - np.asarray(b)).max()
               for a, b in zip(an.results.band["frequencies"], fd.results.band["frequencies"]))
    assert diff < 1e-3  # THz, every frequency on the band path
    g_an, g_fd = np.asarray(an.results.gamma["frequencies"]), np.asarray(fd.results.gamma["frequencies"])
    assert np.abs(g_an - g_fd).max() < 1e-3
    # a stable minimum: no imaginary modes beyond acoustic noise; optical modes up to the
    # C-C stretch (~40 THz for 14 amu sites)
    assert an.results.imaginary["min_frequency"] > -1e-3
    assert np.sort(np.abs(g_an))[:3].max() < 1e-3 and g_an[3:].min() > 0.1
    assert 30.0 < an.results.max_frequency < 50.0
    # analytic force constants obey the acoustic sum rule up to the symmetry distribution of
    # the independent rows (the relaxed crystal is symmetric to ~1e-5 Å): ~1e-8 eV/Å²
    assert an.results.asr["drift_before"] < 1e-6 and an.results.asr["max_change"] < 1e-6
