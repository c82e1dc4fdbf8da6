"""Charged classical potentials (issue 15): the ``charges`` field of AtomicGraph, the built-in
specs, forces/stress/Hessians against finite differences (float64), refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from cgkit.data import AtomicGraph, batch_graphs
from cgkit.errors import CgkitError, InputError, StructureError
from cgkit.testing import fd_forces, fd_hessian, fd_stress

from .test_charged_lammps import rattled_nacl, water_box


# ------------------------------------------------------------------ data model
def test_graph_charges_from_initial_charges_batched_split_and_back():
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    assert AtomicGraph.from_atoms(a, 3.0).charges is None           # no initial charges
    a.set_initial_charges(np.zeros(len(a)))
    assert AtomicGraph.from_atoms(a, 3.0).charges is None           # all zero: none
    q = np.where(np.array(a.get_chemical_symbols()) == "Na", 0.8, -0.8)
    a.set_initial_charges(q)
    g = AtomicGraph.from_atoms(a, 3.0)
    assert g.charges.dtype == torch.float64 and np.allclose(g.charges.numpy(), q)
    assert g.to(torch.float32).charges.dtype == torch.float32
    assert np.allclose(g.with_positions(g.positions + 0.01).charges.numpy(), q)
    b = bulk("NaCl", "rocksalt", a=5.64)                             # 2 atoms, no charges
    gb = batch_graphs([g, AtomicGraph.from_atoms(b, 3.0, type_names=g.type_names), g])
    assert np.allclose(gb.charges.numpy(), np.concatenate([q, [0.0, 0.0], q]))
    parts = gb.split()
    assert np.allclose(parts[2].charges.numpy(), q) and np.allclose(parts[1].charges.numpy(), 0)
    assert batch_graphs([AtomicGraph.from_atoms(b, 3.0)] * 2).charges is None
    assert np.allclose(g.to_atoms().get_initial_charges(), q)
    with pytest.raises(InputError, match="charges"):
        AtomicGraph.from_arrays(a.positions, a.cell.array, True, 3.0, charges=q[:3])


# ------------------------------------------------------------------ specs
def test_builtin_specs_load_everywhere():
    from cgkit.calculator import CgkitCalculator
    from cgkit.io_potential import load_calculator, load_potential
    from cgkit.potentials import CoulombPotential, NaClBMH, SPCFw
    assert isinstance(load_potential("cgkit:coulomb:accuracy=1e-8"), CoulombPotential)
    p = load_potential("cgkit:nacl-bmh:cutoff=6.5,mode=switch")
    assert isinstance(p, NaClBMH) and p.cutoff == 6.5 and p.mode == "switch"
    assert isinstance(load_potential("cgkit:spcfw"), SPCFw)
    calc = load_calculator("cgkit:nacl-bmh:cutoff=6")
    assert isinstance(calc, CgkitCalculator)
    a = rattled_nacl(2)
    a.calc = calc
    assert np.isfinite(a.get_potential_energy()) and np.abs(a.get_forces().sum(0)).max() < 1e-8
    with pytest.raises(InputError, match="cutoff"):
        load_potential("cgkit:nacl-bmh:cutoff=2")
    with pytest.raises(InputError, match="unknown parameter"):
        load_potential("cgkit:spcfw:sigma=3")


def test_save_and_load_round_trip(tmp_path):
    from cgkit.io_potential import load_potential
    from cgkit.potentials import NaClBMH
    pot = NaClBMH(cutoff=6.0, accuracy=1e-8)
    pot.save(tmp_path / "nacl.pt")
    back = load_potential(tmp_path / "nacl.pt")
    a = rattled_nacl(3)
    e1 = pot.compute(pot.graph(a))["energy"]
    e2 = back.compute(back.graph(a))["energy"]
    assert torch.allclose(e1, e2, rtol=1e-12)


# ------------------------------------------------------------------ finite differences
def _charged_cluster_and_crystal():
    rng = np.random.default_rng(4)
    cell = 6.0 * (np.eye(3) + 0.15 * rng.uniform(-1, 1, (3, 3)))   # strongly skewed, 8 ions
    frac = (np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 2
    frac += rng.normal(0, 0.03, frac.shape)
    crystal = Atoms("Na4Cl4", scaled_positions=frac, cell=cell, pbc=True)
    crystal.set_initial_charges([0.7, -0.7, -0.7, 0.7, -0.7, 0.7, 0.7, -0.7])
    cluster = Atoms("NaClNaCl", positions=[[0, 0, 0], [2.6, 0.2, 0], [2.4, 2.9, 0.3],
                                           [-0.2, 2.5, 0.1]], pbc=False)
    cluster.set_initial_charges([1.0, -1.0, 1.0, -0.5])            # open: any net charge
    return crystal, cluster


def _check_fd(pot, atoms, *, stress=True, hessian=True, tol=1e-6):
    g = pot.graph(atoms, dtype=torch.float64)
    out = pot.compute(g, forces=True, stress=stress)
    f = out["forces"].numpy()
    f_fd = fd_forces(pot, atoms)
    assert np.abs(f - f_fd).max() < tol * np.abs(f_fd).max(), np.abs(f - f_fd).max()
    if stress:
        s_fd = fd_stress(pot, atoms)
        s = out["stress"][0].numpy()
        assert np.abs(s - s_fd).max() < tol * np.abs(s_fd).max(), np.abs(s - s_fd).max()
    if hessian:
        H = pot.hessian(g).numpy()
        H_fd = fd_hessian(pot, atoms)
        assert np.abs(H - H_fd).max() < tol * np.abs(H_fd).max(), np.abs(H - H_fd).max()


def test_coulomb_derivatives_equal_finite_differences():
    from cgkit.potentials import CoulombPotential
    crystal, cluster = _charged_cluster_and_crystal()
    pot = CoulombPotential(accuracy=1e-12)
    _check_fd(pot, crystal)
    _check_fd(pot, cluster, stress=False)
    # born effective charges: q·I
    z = pot.born_effective_charges(crystal)
    assert np.allclose(z, crystal.get_initial_charges()[:, None, None] * np.eye(3))


def test_nacl_bmh_derivatives_equal_finite_differences():
    from cgkit.potentials import NaClBMH
    for mode in ("switch", "shift"):
        pot = NaClBMH(cutoff=5.5, mode=mode, accuracy=1e-12)
        _check_fd(pot, rattled_nacl(5, shear=0.1), stress=(mode == "shift"), hessian=(mode == "shift"))
    a = rattled_nacl(5)
    z = pot.born_effective_charges(a)
    q = np.where(np.array(a.get_chemical_symbols()) == "Na", 1.0, -1.0)
    assert np.allclose(z, q[:, None, None] * np.eye(3))


def test_spcfw_derivatives_equal_finite_differences():
    from cgkit.potentials import SPCFw
    pot = SPCFw(cutoff=4.5, accuracy=1e-12)
    atoms = water_box(2, 3.1, seed=7, shear=0.08)[:9]    # 3 molecules in the 6.2 Å cell
    _check_fd(pot, atoms)
    # an isolated molecule (open boundaries, no Coulomb partners): bond and angle terms only
    mol = water_box(1, 3.1, seed=2)
    mol.pbc = False
    _check_fd(pot, mol, stress=False)


# ------------------------------------------------------------------ physics checks
def test_nacl_madelung_and_spcfw_isolated_molecule():
    """Coulomb part of the perfect rock-salt crystal: −M k_e/r0 per ion pair (M = 1.747565);
    an isolated SPC/Fw molecule at its equilibrium geometry has zero energy (intramolecular
    Coulomb excluded)."""
    from cgkit.potentials import NaClBMH, SPCFw
    from cgkit.potentials.coulomb import K_E
    a0 = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a0, cubic=True)
    pot = NaClBMH(cutoff=5.0, accuracy=1e-10)
    g = pot.graph(atoms)
    q = pot.q_species[g.species]
    from cgkit.potentials.coulomb import coulomb_atomic_energies
    e = float(coulomb_atomic_energies(pot.es, g, g.positions, g.cell, q).sum())
    assert abs(e / 4 - (-1.747564594633 * K_E / (a0 / 2))) < 1e-8
    w = SPCFw()
    th = np.radians(113.24)
    mol = Atoms("OHH", positions=[[0, 0, 0], [1.012, 0, 0], [1.012 * np.cos(th), 1.012 * np.sin(th), 0]])
    out = w.compute(w.graph(mol))
    assert abs(float(out["energy"][0])) < 1e-12 and np.abs(out["forces"].numpy()).max() < 1e-10


# ------------------------------------------------------------------ refusals
def test_bad_inputs_are_refused_with_cgkit_errors():
    from cgkit.potentials import CoulombPotential, SPCFw
    pot = CoulombPotential()
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    with pytest.raises(InputError, match="initial_charges"):
        pot.compute(pot.graph(a))                                   # no charges
    a.set_initial_charges([1.0] * 4 + [-0.5] * 4)                   # net +2 e, periodic
    with pytest.raises(CgkitError, match="(?i)charge"):
        pot.compute(pot.graph(a))
    w = SPCFw()
    broken = water_box(2, 3.1, seed=3)
    broken.positions[1] = broken.positions[0] + [1.1, 1.1, 0.0]      # H pulled off its O
    with pytest.raises(StructureError, match="hydrogen atom 1"):
        w.compute(w.graph(broken))
    with pytest.raises(CgkitError, match="H and O only"):
        w.born_effective_charges(bulk("Si"))
    tagged = water_box(2, 3.1, seed=3)
    tagged.arrays["mol-id"] = np.array([k // 3 for k in range(len(tagged))])
    w.graph(tagged)                                                  # consistent topology
    tagged.arrays["mol-id"][[1, 4]] = tagged.arrays["mol-id"][[4, 1]]
    with pytest.raises(StructureError, match="mol-id"):
        w.graph(tagged)
