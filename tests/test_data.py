"""AtomicGraph construction, batching and input validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from cgkit.data import AtomicGraph, batch_graphs
from cgkit.errors import CgkitError, InputError, StructureError, UnknownSpeciesError
from cgkit.potentials import LennardJones, StillingerWeber
from tests.conftest import argon_liquid, triclinic_si


def test_graph_from_atoms_holds_documented_shapes_and_units(rng):
    atoms = triclinic_si(rng)
    g = AtomicGraph.from_atoms(atoms, 4.0)
    assert g.positions.shape == (len(atoms), 3) and g.cell.shape == (1, 3, 3)
    assert g.edge_index.shape[0] == 2 and g.cell_shifts.shape == (g.n_edges, 3)
    assert g.cell_shifts.dtype == torch.long
    np.testing.assert_allclose(g.masses.numpy(), atoms.get_masses())
    assert g.type_names == ("Si",)
    np.testing.assert_allclose(g.volume().numpy(), [atoms.get_volume()])
    d = g.edge_vectors().norm(dim=1)
    assert float(d.max()) < 4.0


def test_batched_graph_gives_the_same_energies_forces_and_stress_as_single_ones(rng):
    pot = StillingerWeber()
    structures = [triclinic_si(rng, repeat=r) for r in ((1, 1, 1), (1, 1, 2), (2, 1, 1))]
    singles = [pot.compute(pot.graph(a), stress=True) for a in structures]
    batch = batch_graphs([pot.graph(a) for a in structures])
    assert batch.n_graphs == 3 and batch.atoms_per_graph().tolist() == [len(a) for a in structures]
    out = pot.compute(batch, stress=True)
    np.testing.assert_allclose(out["energy"].numpy(), [float(s["energy"][0]) for s in singles], atol=1e-10)
    np.testing.assert_allclose(out["forces"].numpy(), np.concatenate([s["forces"].numpy() for s in singles]),
                               atol=1e-10)
    np.testing.assert_allclose(out["stress"].numpy(), np.concatenate([s["stress"].numpy() for s in singles]),
                               atol=1e-12)
    parts = batch.split()
    for p, a in zip(parts, structures):
        np.testing.assert_allclose(p.positions.numpy(), a.positions)
        assert p.n_edges == pot.graph(a).n_edges


def test_targets_are_read_from_atoms_and_batched(rng):
    from ase.calculators.singlepoint import SinglePointCalculator
    graphs = []
    for r in ((1, 1, 1), (1, 1, 2)):
        a = triclinic_si(rng, repeat=r)
        a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.ones((len(a), 3)), stress=np.arange(6.0))
        graphs.append(AtomicGraph.from_atoms(a, 3.0, read_targets=True))
    b = batch_graphs(graphs)
    assert b.targets["energy"].shape == (2,)
    assert b.targets["forces"].shape == (b.n_atoms, 3)
    assert b.targets["stress"].shape == (2, 3, 3)
    assert float(b.targets["stress"][0, 1, 2]) == 3.0  # Voigt yz


def test_cg_beads_use_bead_types_as_species():
    atoms = Atoms("X3", positions=[[0, 0, 0], [1.5, 0, 0], [3, 0, 0]], masses=[42.0, 28.0, 42.0])
    atoms.arrays["bead_types"] = np.array(["A", "B", "A"])
    g = AtomicGraph.from_atoms(atoms, 2.0, type_names=("A", "B"))
    assert g.species.tolist() == [0, 1, 0]
    np.testing.assert_allclose(g.masses.numpy(), [42.0, 28.0, 42.0])
    back = g.to_atoms()
    assert list(back.arrays["bead_types"]) == ["A", "B", "A"]


def test_unknown_element_is_rejected_with_the_known_list():
    with pytest.raises(UnknownSpeciesError, match=r"\['Si'\]"):
        AtomicGraph.from_atoms(molecule("H2O"), 3.0, type_names=("Si",))


def test_nan_coordinates_raise_a_cgkit_error():
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1, 2] = np.inf
    with pytest.raises(StructureError, match="NaN or infinite"):
        StillingerWeber().graph(atoms)


def test_left_handed_and_flat_cells_raise_cgkit_errors():
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.set_cell(atoms.cell.array[[1, 0, 2]], scale_atoms=False)
    with pytest.raises(StructureError, match="left-handed"):
        AtomicGraph.from_atoms(atoms, 3.0)
    flat = Atoms("Ar", cell=[[1, 0, 0], [0, 1, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(StructureError, match="zero lattice vector"):
        AtomicGraph.from_atoms(flat, 3.0)


@pytest.mark.parametrize("cutoff", [0.0, -2.0])
def test_non_positive_cutoffs_raise(cutoff):
    with pytest.raises(InputError, match="cutoff"):
        AtomicGraph.from_atoms(bulk("Cu", "fcc", a=3.6), cutoff)


def test_stress_of_a_molecule_in_vacuum_is_refused_clearly():
    pot = LennardJones(sigma=2.0, epsilon=0.01, cutoff=5.0)
    with pytest.raises(CgkitError, match="periodic in all three"):
        pot.compute(pot.graph(molecule("CH4")), stress=True)


def test_graph_must_be_built_with_the_potential_cutoff(rng):
    pot = LennardJones(sigma=3.4, epsilon=0.01, cutoff=8.5)
    g = AtomicGraph.from_atoms(argon_liquid(rng, n=8), 4.0)
    with pytest.raises(InputError, match="potential.graph"):
        pot.compute(g)


def test_saved_potential_loads_with_identical_energy(tmp_path, rng):
    from cgkit import load_potential
    pot = LennardJones(sigma=[3.4, 3.6], epsilon=[0.01, 0.014], cutoff=8.0, type_names=["Ar", "Kr"])
    pot.save(tmp_path / "lj.pt")
    back = load_potential(tmp_path / "lj.pt")
    atoms = argon_liquid(rng, n=8)
    atoms.symbols[:3] = "Kr"
    assert float(back.energy(back.graph(atoms))[0]) == float(pot.energy(pot.graph(atoms))[0])
    assert back.metadata["units"]["energy"] == "eV"
    sw = load_potential("cgkit:sw")
    assert isinstance(sw, StillingerWeber)
    with pytest.raises(InputError, match="no potential file"):
        load_potential(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(InputError, match="not a cgkit model file"):
        load_potential(tmp_path / "junk.pt")
