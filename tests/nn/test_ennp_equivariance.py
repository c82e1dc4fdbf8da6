"""Symmetry of the ENNP in float64: E(3) invariance/equivariance to < 1e-10 relative."""
import numpy as np
import pytest
import torch
from ase import Atoms

from .conftest import random_rotation, tiny_model

TOL = 1e-10


def _compute(model, atoms, stress=True):
    out = model.compute(model.graph(atoms), stress=stress)
    return {k: v.numpy() for k, v in out.items()}


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def _transformed(atoms, R, t):
    """Atoms rotated by R (3x3, maybe improper) and translated by t; a left-handed cell
    is re-chosen right-handed by swapping two lattice vectors (the same lattice)."""
    b = atoms.copy()
    b.positions = atoms.positions @ R.T + t
    cell = atoms.cell.array @ R.T
    if np.linalg.det(cell) < 0:
        cell = cell[[1, 0, 2]]
    b.set_cell(cell, scale_atoms=False)
    return b


@pytest.mark.parametrize("reflect", [False, True])
def test_energy_invariant_forces_stress_equivariant_under_rotation_reflection_translation(crystal, reflect):
    model = tiny_model()
    ref = _compute(model, crystal)
    for seed in range(3):
        R = random_rotation(seed, reflect)
        t = np.random.default_rng(seed).normal(size=3) * 3.0
        out = _compute(model, _transformed(crystal, R, t))
        assert _rel(out["energy"], ref["energy"]) < TOL
        assert _rel(out["forces"], ref["forces"] @ R.T) < TOL
        assert _rel(out["stress"][0], R @ ref["stress"][0] @ R.T) < TOL


def test_molecule_energy_and_forces_equivariant_under_improper_rotation():
    rng = np.random.default_rng(1)
    mol = Atoms("SiCSiCC", positions=rng.normal(size=(5, 3)) * 1.2)
    model = tiny_model()
    ref = _compute(model, mol, stress=False)
    R = random_rotation(7, reflect=True)
    out = _compute(model, Atoms(mol.symbols, positions=mol.positions @ R.T + 5.0), stress=False)
    assert _rel(out["energy"], ref["energy"]) < TOL
    assert _rel(out["forces"], ref["forces"] @ R.T) < TOL


def test_atom_permutation_permutes_forces_and_keeps_energy(crystal):
    model = tiny_model()
    ref = _compute(model, crystal)
    perm = np.random.default_rng(0).permutation(len(crystal))
    out = _compute(model, crystal[perm])
    assert _rel(out["energy"], ref["energy"]) < TOL
    assert _rel(out["forces"], ref["forces"][perm]) < TOL
    assert _rel(out["stress"], ref["stress"]) < TOL


def test_lattice_vector_rechoice_gives_same_energy_forces_stress(crystal):
    model = tiny_model()
    ref = _compute(model, crystal)
    M = np.array([[1, 1, 0], [0, 1, 0], [-1, 0, 1]])  # unimodular, det +1: the same lattice
    assert round(np.linalg.det(M)) == 1
    b = crystal.copy()
    b.set_cell(M @ crystal.cell.array, scale_atoms=False)
    b.wrap()
    out = _compute(model, b)
    assert _rel(out["energy"], ref["energy"]) < TOL
    assert _rel(out["forces"], ref["forces"]) < TOL
    assert _rel(out["stress"], ref["stress"]) < TOL


def test_supercell_is_extensive_and_periodic_images_are_counted(crystal):
    """Energy of a 2x1x2 supercell = 4 × the cell's; forces repeat. The small cell has
    neighbours through several images (r_cut 3.5 Å, thin triclinic cell)."""
    model = tiny_model()
    ref = _compute(model, crystal)
    sup = crystal.repeat((2, 1, 2))
    out = _compute(model, sup)
    assert _rel(out["energy"], 4 * ref["energy"]) < TOL
    assert _rel(out["forces"], np.tile(ref["forces"], (4, 1))) < TOL
    assert _rel(out["stress"], ref["stress"]) < TOL
    # a primitive 2-atom cell thinner than the cutoff: many self-images
    from ase.build import bulk
    prim = bulk("Si", "diamond", 4.6)
    prim.rattle(0.05, seed=1)
    e1 = _compute(model, prim)["energy"]
    e27 = _compute(model, prim.repeat(3))["energy"]
    assert _rel(e27, 27 * e1) < TOL


def _chiral_pair():
    # a chiral tetrahedral arrangement: centre + 4 distinct neighbours at distinct distances
    pos = np.array([[0.0, 0.0, 0.0], [1.1, 0.1, 0.2], [-0.3, 1.3, 0.1], [-0.2, -0.4, 1.5],
                    [-0.9, -0.8, -0.7]])
    left = Atoms("SiCSiCC", positions=pos)
    right = Atoms("SiCSiCC", positions=pos * np.array([-1.0, 1.0, 1.0]))
    return left, right


def test_so3_model_distinguishes_enantiomers_and_o3_model_does_not():
    left, right = _chiral_pair()
    o3_model = tiny_model(parity=True, correlation=2)
    eL, eR = (_compute(o3_model, a, stress=False)["energy"][0] for a in (left, right))
    assert abs(eL - eR) < TOL * abs(eL)
    so3_model = tiny_model(parity=False, correlation=2)
    eL, eR = (_compute(so3_model, a, stress=False)["energy"][0] for a in (left, right))
    assert abs(eL - eR) > 1e-6 * abs(eL), (eL, eR)
    # ... while still invariant under proper rotations
    R = random_rotation(4, reflect=False)
    rot = Atoms(left.symbols, positions=left.positions @ R.T)
    assert abs(_compute(so3_model, rot, stress=False)["energy"][0] - eL) < TOL * abs(eL)
    # a 3-layer SO(3) model without body-order products is chiral too
    deep = tiny_model(parity=False, n_layers=3)
    eL, eR = (_compute(deep, a, stress=False)["energy"][0] for a in (left, right))
    assert abs(eL - eR) > 1e-6 * abs(eL)


def test_vector_and_tensor_heads_are_equivariant(crystal):
    model = tiny_model(vector_head=True, tensor_head=True)
    g = model.graph(crystal)
    ref = {k: v.detach().numpy() for k, v in model.equivariant_outputs(g).items()}
    assert np.allclose(ref["tensors"], np.swapaxes(ref["tensors"], 1, 2), atol=1e-14)
    assert np.allclose(np.trace(ref["tensors"], axis1=1, axis2=2), 0.0, atol=1e-13)
    assert np.abs(ref["vectors"]).max() > 1e-6 and np.abs(ref["tensors"]).max() > 1e-6
    for reflect in (False, True):
        R = random_rotation(11, reflect)
        b = _transformed(crystal, R, np.array([0.3, -1.0, 2.0]))
        out = {k: v.detach().numpy() for k, v in model.equivariant_outputs(model.graph(b)).items()}
        assert _rel(out["vectors"], ref["vectors"] @ R.T) < TOL
        assert _rel(out["tensors"], np.einsum("ab,nbc,dc->nad", R, ref["tensors"], R)) < TOL
