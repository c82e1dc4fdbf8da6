"""Neighbor lists equal ASE's on random, thin, skewed and partly periodic cells."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgkit.errors import InputError, StructureError
from cgkit.neighbors import edge_vectors, neighbor_list


def as_set(i, j, S):
    return set(zip(np.asarray(i).tolist(), np.asarray(j).tolist(), map(tuple, np.asarray(S).tolist())))


def cgkit_set(positions, cell, pbc, cutoff):
    ei, S = neighbor_list(positions, cell, pbc, cutoff)
    return as_set(ei[0], ei[1], S)


def ase_set(positions, cell, pbc, cutoff):
    atoms = Atoms(positions=positions, cell=cell, pbc=pbc, numbers=[1] * len(positions))
    return as_set(*ase_neighbor_list("ijS", atoms, cutoff))


@st.composite
def random_system(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 24))
    lengths = draw(st.lists(st.floats(0.8, 9.0), min_size=3, max_size=3))
    skew = draw(st.floats(0.0, 1.2))
    pbc = np.array(draw(st.lists(st.booleans(), min_size=3, max_size=3)))
    cell = np.diag(lengths) + skew * rng.uniform(-1, 1, (3, 3)) * (1 - np.eye(3)) * np.array(lengths)[:, None]
    if np.linalg.det(cell) < 0:
        cell[[0, 1]] = cell[[1, 0]]
    # cells must not be degenerate: require reasonable volume relative to the edge lengths
    if abs(np.linalg.det(cell)) < 0.05 * np.prod(np.linalg.norm(cell, axis=1)):
        cell = np.diag(lengths)
    frac = rng.uniform(-0.3, 1.3, (n, 3))  # includes atoms outside the cell
    positions = frac @ cell
    cutoff = draw(st.floats(0.5, 7.0))
    return positions, cell, pbc, cutoff


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_system())
def test_pairs_identical_to_ase_on_random_cells(system):
    positions, cell, pbc, cutoff = system
    assert cgkit_set(positions, cell, pbc, cutoff) == ase_set(positions, cell, pbc, cutoff)


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (True, False, False),
                                 (False, False, False)])
def test_slab_wire_and_molecule_with_zero_cell_vectors(pbc, rng):
    """Non-periodic directions may have zero lattice vectors, as ASE slabs and molecules do."""
    cell = np.diag([3.1, 2.7, 4.0]) + 0.4 * np.triu(rng.uniform(-1, 1, (3, 3)), 1)
    for d in range(3):
        if not pbc[d]:
            cell[d] = 0.0
    positions = rng.uniform(0, 3, (9, 3))
    assert cgkit_set(positions, cell, pbc, 5.0) == ase_set(positions, cell, pbc, 5.0)


def test_one_atom_fcc_primitive_cell_with_6A_cutoff():
    atoms = bulk("Cu", "fcc", a=3.6)
    ei, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 6.0)
    assert as_set(ei[0], ei[1], S) == as_set(*ase_neighbor_list("ijS", atoms, 6.0))
    # 12 + 6 + 24 + 12 + 24 neighbours of fcc inside 6 Å at a = 3.6 Å (shells 2.55, 3.6, 4.41, 5.09, 5.69)
    assert ei.shape[1] == 78
    assert not np.any((ei[0] == ei[1]) & np.all(S == 0, axis=1)), "self pair without shift"


def test_edge_vectors_are_differentiable_in_positions_and_cell(rng):
    atoms = bulk("Si", "diamond", a=5.43)
    ei, S = neighbor_list(atoms.positions, atoms.cell.array, True, 4.0)
    pos = torch.tensor(atoms.positions, requires_grad=True)
    cell = torch.tensor(atoms.cell.array, requires_grad=True)
    vec = edge_vectors(pos, cell, torch.as_tensor(ei), torch.as_tensor(S))
    ref = atoms.positions[ei[1]] - atoms.positions[ei[0]] + S @ atoms.cell.array
    np.testing.assert_allclose(vec.detach().numpy(), ref, atol=1e-12)
    (vec.norm(dim=1) ** 2).sum().backward()
    # d/dcell of sum |r|^2 = 2 Σ S_e ⊗ r_e
    expected = 2 * S.T.astype(float) @ ref
    np.testing.assert_allclose(cell.grad.numpy(), expected, atol=1e-9)
    assert pos.grad is not None and torch.isfinite(pos.grad).all()


@pytest.mark.parametrize("cutoff", [0.0, -1.0, float("nan")])
def test_non_positive_cutoff_is_rejected(cutoff):
    with pytest.raises(InputError, match="cutoff"):
        neighbor_list(np.zeros((2, 3)), np.eye(3) * 5, True, cutoff)


def test_nan_coordinates_are_rejected_naming_the_atoms():
    pos = np.zeros((4, 3))
    pos[2, 1] = np.nan
    with pytest.raises(StructureError, match=r"atoms \[2\]"):
        neighbor_list(pos, np.eye(3) * 5, True, 2.0)


def test_zero_volume_and_left_handed_cells_are_rejected():
    with pytest.raises(StructureError, match="zero volume"):
        neighbor_list(np.zeros((1, 3)), np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0.0]]), True, 2.0)
    with pytest.raises(StructureError, match="left-handed"):
        neighbor_list(np.zeros((1, 3)), np.diag([3.0, 3.0, -3.0]), True, 2.0)
