"""Physics of compiled mappings: consistency (M·Dᵀ = I), equivariance, PBC, identity map,
mapped forces of bead-only potentials, momenta."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cgkit.mapping import Mapping, parse_definition
from cgkit.mapping.yamlio import load_yaml

from .conftest import MAPPINGS, build_universe, systems

SHIPPED = sorted(systems())


def _random_orthogonal(rng, reflect):
    R = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    return R @ np.diag([1, 1, -1]) if reflect else R


def _compile(name, force_map=None):
    import dataclasses

    from cgkit.mapping import load_definition
    u = systems()[name]()
    d = load_definition(MAPPINGS / f"{name}.yaml")
    if force_map:
        d = dataclasses.replace(d, force_map=force_map)
    return Mapping.compile(d, u), u


def test_every_shipped_mapping_directory_entry_is_tested():
    assert sorted(p.stem for p in MAPPINGS.glob("*.yaml")) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("force_map", ["basic", "weights", "optimized"])
def test_shipped_map_is_consistent_rows_sum_to_one_and_MDt_is_identity(name, force_map):
    m, u = _compile(name, force_map)
    M, D = m.M.toarray(), m.D.toarray()
    np.testing.assert_allclose(M.sum(1), 1.0, atol=1e-14)
    assert (M >= 0).all()
    if force_map == "optimized":
        rng = np.random.default_rng(0)
        m = m.optimize_force_map([rng.normal(size=(m.n_atoms, 3)) for _ in range(20)])
        D = m.D.toarray()
    np.testing.assert_allclose(M @ D.T, np.eye(m.n_beads), atol=1e-10)
    assert m.n_beads > 0 and len(m.bead_types) == m.n_beads
    assert np.all(m.bead_masses > 0)


@pytest.mark.parametrize("name", SHIPPED)
def test_mapped_positions_and_forces_are_E3_equivariant(name):
    m, u = _compile(name)
    rng = np.random.default_rng(42)
    x = u.atoms.positions.astype(float)
    f = rng.normal(size=x.shape)
    X, F = m.map_positions(x), m.map_forces(f)
    for reflect in (False, True):
        R = _random_orthogonal(rng, reflect)
        t = rng.normal(size=3) * 10
        np.testing.assert_allclose(m.map_positions(x @ R.T + t), X @ R.T + t, atol=1e-11)
        np.testing.assert_allclose(m.map_forces(f @ R.T), F @ R.T, atol=1e-12)


def test_periodic_image_shifts_of_atoms_leave_beads_unchanged_modulo_lattice():
    m, u = _compile("hexane_3bead")
    rng = np.random.default_rng(1)
    cell = np.array([[25.0, 0, 0], [6.0, 24.0, 0], [-5.0, 4.0, 23.0]])  # triclinic
    x = u.atoms.positions.astype(float)
    X = m.map_positions(x, cell)
    shifts = rng.integers(-2, 3, size=(len(x), 3))
    X2 = m.map_positions(x + shifts @ cell, cell)
    d = (X2 - X) @ np.linalg.inv(cell)
    np.testing.assert_allclose(d - np.round(d), 0.0, atol=1e-11)
    # rotating the whole periodic system (atoms and cell) rotates the beads
    R = _random_orthogonal(rng, False)
    X3 = m.map_positions(x @ R.T, cell @ R.T)
    np.testing.assert_allclose(X3, X @ R.T, atol=1e-10)


def test_permuting_identical_molecules_permutes_beads():
    m, u = _compile("hexane_3bead")
    rng = np.random.default_rng(2)
    x = u.atoms.positions.astype(float)
    f = rng.normal(size=x.shape)
    nmol, apm, bpm = 3, 20, 3
    perm = np.array([2, 0, 1])
    atom_perm = (perm[:, None] * apm + np.arange(apm)).ravel()
    bead_perm = (perm[:, None] * bpm + np.arange(bpm)).ravel()
    np.testing.assert_allclose(m.map_positions(x[atom_perm]), m.map_positions(x)[bead_perm], atol=1e-12)
    np.testing.assert_allclose(m.map_forces(f[atom_perm]), m.map_forces(f)[bead_perm], atol=1e-12)
    # the optimized map is per template, hence permutation-equivariant too
    mo = m.optimize_force_map([rng.normal(size=x.shape) for _ in range(10)])
    np.testing.assert_allclose(mo.map_forces(f[atom_perm]), mo.map_forces(f)[bead_perm], atol=1e-12)


def test_identity_map_reproduces_input_exactly():
    u = build_universe([[("SOL", ["OW", "HW1", "HW2"])]] * 5, seed=3)
    text = """
version: 1
molecules:
  - name: W
    resname: SOL
    beads:
      - {name: O, type: O, atoms: [OW]}
      - {name: H1, type: H, atoms: [HW1]}
      - {name: H2, type: H, atoms: [HW2]}
"""
    m = Mapping.compile(parse_definition(load_yaml(text)), u)
    rng = np.random.default_rng(0)
    x = u.atoms.positions.astype(float)
    f, v = rng.normal(size=x.shape), rng.normal(size=x.shape)
    cell = np.diag([30.0, 30.0, 30.0])
    assert np.array_equal(m.map_positions(x, cell), x)
    assert np.array_equal(m.map_forces(f), f)
    assert np.array_equal(m.map_velocities(v), v)
    np.testing.assert_allclose(m.bead_masses, u.atoms.masses)


def test_bead_straddling_triclinic_boundary_maps_to_its_unwrapped_centre():
    from ase.geometry import wrap_positions
    u = build_universe([[("SOL", ["OW", "HW1", "HW2"])]] * 1, seed=4, spread=0.8)
    text = """
version: 1
molecules:
  - {name: W, resname: SOL, beads: [{name: W, type: W, atoms: [OW, HW1, HW2], weights: mass}]}
"""
    m = Mapping.compile(parse_definition(load_yaml(text)), u)
    cell = np.array([[12.0, 0, 0], [5.0, 11.0, 0], [3.0, -4.0, 10.0]])
    x = u.atoms.positions.astype(float)
    # put the molecule on the corner of the cell so that wrapping splits it across faces
    x = x - x.mean(0)
    masses = u.atoms.masses
    com = (masses[:, None] * x).sum(0) / masses.sum()   # independent reference
    xw = wrap_positions(x, cell, pbc=True)
    assert np.abs(xw - x).max() > 5.0                 # really split across the boundary
    X = m.map_positions(xw, cell)[0]
    d = (X - com) @ np.linalg.inv(cell)
    np.testing.assert_allclose(d - np.round(d), 0.0, atol=1e-12)


def test_positions_match_mdanalysis_center_of_mass_per_residue(water_universe):
    u = water_universe
    m = Mapping.from_yaml(MAPPINGS / "spce_water_1bead.yaml", u)
    ref = u.atoms.center_of_mass(compound="residues")
    np.testing.assert_allclose(m.map_positions(u.atoms.positions), ref, atol=1e-5)


@pytest.mark.parametrize("force_map", ["basic", "optimized"])
def test_mapped_forces_of_a_bead_only_potential_equal_the_cg_forces(force_map):
    """If U depends on atoms only through bead positions, U = V(Mx), then f = -Mᵀ∇V and any
    consistent force map returns D f = -∇V exactly (analytic route, no fitting)."""
    m, u = _compile("hexane_3bead")
    rng = np.random.default_rng(5)
    if force_map == "optimized":
        m = m.optimize_force_map([rng.normal(size=(m.n_atoms, 3)) for _ in range(30)])
    x = u.atoms.positions.astype(float)
    X = m.map_positions(x)
    # V = sum over CG bonds of k (r - r0)^2
    k, r0 = 0.7, 3.0
    grad = np.zeros_like(X)
    for i, j in m.topology.bonds:
        d = X[j] - X[i]
        r = np.linalg.norm(d)
        g = 2 * k * (r - r0) * d / r
        grad[j] += g
        grad[i] -= g
    f_atoms = -(m.M.T @ grad)
    np.testing.assert_allclose(m.map_forces(f_atoms), -grad, atol=1e-12)


def test_velocities_are_time_derivative_of_bead_positions_and_momenta_sum_in_bead():
    m, u = _compile("methanol_2bead")
    rng = np.random.default_rng(6)
    x = u.atoms.positions.astype(float)
    v = rng.normal(size=x.shape) * 1e-2
    dt = 1e-3
    fd = (m.map_positions(x + v * dt) - m.map_positions(x - v * dt)) / (2 * dt)
    np.testing.assert_allclose(m.map_velocities(v), fd, atol=1e-10)
    p = u.atoms.masses[:, None] * v
    # mass-weighted beads: bead momentum = sum of its atoms' momenta
    ref = np.zeros((m.n_beads, 3))
    Mb = m.M.toarray()
    for b in range(m.n_beads):
        ref[b] = p[Mb[b] > 0].sum(0)
    np.testing.assert_allclose(m.map_momenta(p), ref, atol=1e-12)


def test_noid_bead_masses_for_geometric_weights():
    u = build_universe([[("MeO", ["C", "HA", "HB", "HC", "O", "H"])]] * 2, seed=7)
    text = """
version: 1
options: {bead_masses: noid}
molecules:
  - {name: M, resname: MeO, beads: [{name: M, atoms: [C, HA, HB, HC, O, H], weights: geometry}]}
"""
    m = Mapping.compile(parse_definition(load_yaml(text)), u)
    masses = u.atoms.masses[:6]
    np.testing.assert_allclose(m.bead_masses, 36.0 / np.sum(1.0 / masses))


def test_polymer_repeat_units_link_beads_along_each_chain_only():
    m, u = _compile("polyethylene_ua_4to1")
    # chains of 3 and 6 residues -> beads 0..2 and 3..8
    assert m.n_beads == 9
    bonds = {tuple(sorted(b)) for b in m.topology.bonds.tolist()}
    assert bonds == {(0, 1), (1, 2), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)}
    angles = {tuple(a) if a[0] < a[2] else tuple(a[::-1]) for a in m.topology.angles.tolist()}
    assert angles == {(0, 1, 2), (3, 4, 5), (4, 5, 6), (5, 6, 7), (6, 7, 8)}
    dih = {tuple(d) if d[0] < d[3] else tuple(d[::-1]) for d in m.topology.dihedrals.tolist()}
    assert dih == {(3, 4, 5, 6), (4, 5, 6, 7), (5, 6, 7, 8)}
    assert list(m.topology.molecule) == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert m.beads_per_type() == {"B": 5, "E": 4}


def test_mapping_is_immutable():
    m, _ = _compile("methanol_1bead")
    with pytest.raises(AttributeError):
        m.force_map = "x"
    with pytest.raises(ValueError):
        m.bead_masses[0] = 1.0
    M = m.M
    M.data[:] = 0
    assert m.M.data.sum() > 0
