"""The ASE calculator works with ASE MD, optimizers with cell filters, and phonopy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.potentials import LennardJones, StillingerWeber
from tests.conftest import triclinic_si


def test_nve_velocity_verlet_on_sw_silicon_conserves_energy():
    """64-atom SW Si, 1 fs, 10 ps from 1000 K: drift < 1e-4 eV/atom/ps (acceptance of issue 2)."""
    from ase.md.velocitydistribution import Stationary
    from cgkit.sampling import thermalize
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Si", "diamond", a=5.43095, cubic=True).repeat(2)
    thermalize(atoms, 1000, np.random.default_rng(7))
    Stationary(atoms)
    atoms.calc = CgkitCalculator(StillingerWeber())
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    n_steps, every = 10_000, 20
    times, energies = [], []
    for k in range(n_steps // every + 1):
        if k:
            dyn.run(every)
        times.append(k * every * 1e-3)  # ps
        energies.append(atoms.get_total_energy() / len(atoms))
    slope = np.polyfit(times, energies, 1)[0]
    assert abs(slope) < 1e-4, f"energy drift {slope:.2e} eV/atom/ps"
    assert np.ptp(energies) < 5e-3  # bounded fluctuations of the Verlet shadow energy
    assert atoms.get_temperature() > 200  # it really moved (equipartition halves 1000 K)


def test_cell_relaxation_through_ase_filter_finds_sw_lattice_constant():
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = bulk("Si", "diamond", a=5.60, cubic=True)
    atoms.calc = CgkitCalculator(StillingerWeber())
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-6, steps=200)
    a = np.cbrt(atoms.get_volume())
    assert abs(a - 5.43095) < 1e-4
    assert np.abs(atoms.get_stress()).max() < 1e-5


def test_analytic_hessian_equals_phonopy_finite_displacement_force_constants():
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = bulk("Si", "diamond", a=5.43095)
    ph = Phonopy(PhonopyAtoms(symbols=unit.get_chemical_symbols(), cell=unit.cell.array,
                              scaled_positions=unit.get_scaled_positions()),
                 supercell_matrix=np.diag([2, 2, 2]), primitive_matrix=None)
    ph.generate_displacements(distance=1e-3)
    calc = CgkitCalculator(StillingerWeber())
    forces = []
    from ase import Atoms
    for sc in ph.supercells_with_displacements:
        a = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        a.calc = calc
        forces.append(a.get_forces())
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    fc = ph.force_constants  # (n, n, 3, 3) eV/Å²
    sc = ph.supercell
    sc_atoms = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
    H = calc.get_hessian(sc_atoms)
    n = len(sc_atoms)
    H4 = H.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    # finite displacements of 1e-3 Å are accurate to O(u²) ≈ 1e-6 relative for SW
    assert np.abs(H4 - fc).max() < 1e-4 * np.abs(fc).max()


def test_calculator_gives_per_atom_energies_summing_to_total(rng):
    atoms = triclinic_si(rng)
    atoms.calc = CgkitCalculator(StillingerWeber())
    assert abs(atoms.get_potential_energies().sum() - atoms.get_potential_energy()) < 1e-10


def test_float32_calculation_is_close_to_float64(rng):
    atoms = triclinic_si(rng)
    f64 = CgkitCalculator(StillingerWeber(), dtype=torch.float64).get_forces(atoms)
    f32 = CgkitCalculator(StillingerWeber(), dtype=torch.float32).get_forces(atoms)
    assert np.abs(f32 - f64).max() < 1e-4


def test_molecule_in_vacuum_has_forces_but_no_stress():
    from ase.build import molecule
    atoms = molecule("CH4")
    atoms.calc = CgkitCalculator(LennardJones(sigma=1.5, epsilon=0.01, cutoff=5.0))
    f = atoms.get_forces()
    assert np.abs(f.sum(axis=0)).max() < 1e-12
    from ase.calculators.calculator import PropertyNotImplementedError
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def _fd_hessian(atoms, delta=1e-4):
    """Central finite differences of the calculator's forces, (3n, 3n) eV/Å² (independent route)."""
    n = len(atoms)
    H = np.zeros((3 * n, 3 * n))
    for a in range(n):
        for c in range(3):
            f = []
            for s in (+1, -1):
                moved = atoms.copy()
                moved.calc = atoms.calc
                moved.positions[a, c] += s * delta
                f.append(moved.get_forces().reshape(-1))
            H[3 * a + c] = -(f[0] - f[1]) / (2 * delta)
    return H


def test_readme_quick_tour_hessian_before_any_calculation():
    """README Quick tour, line by line: ``atoms.calc = CgkitCalculator(sw)`` then
    ``atoms.calc.get_hessian()`` (used to raise AttributeError: no atoms yet)."""
    from cgkit import load_potential

    sw = load_potential("cgkit:sw")
    atoms = bulk("Si", "diamond", a=5.43095, cubic=True)
    atoms.calc = CgkitCalculator(sw)
    H = atoms.calc.get_hessian()
    assert H.shape == (3 * len(atoms), 3 * len(atoms))
    graph = sw.graph(atoms)
    out = sw.compute(graph, stress=True)
    assert out["energy"].shape == (1,) and out["forces"].shape == (8, 3) and out["stress"].shape == (1, 3, 3)
    # the Hessian is the one of the attached structure: compare with finite differences
    atoms.rattle(0.05, seed=2)
    H = atoms.calc.get_hessian()  # the current positions, not a stale copy
    assert np.allclose(H, _fd_hessian(atoms), atol=2e-4)
    assert np.allclose(atoms.calc.get_hessian(atoms), H)


def test_get_hessian_of_a_calculator_without_structure_is_refused():
    from cgkit.errors import InputError
    with pytest.raises(InputError, match="attach the calculator"):
        CgkitCalculator(StillingerWeber()).get_hessian()


def test_get_hessian_follows_the_atoms_the_calculator_is_attached_to():
    calc = CgkitCalculator(StillingerWeber())
    a = bulk("Si", "diamond", a=5.43095, cubic=True)
    b = a.copy()
    b.rattle(0.1, seed=5)
    a.calc = calc
    a.get_potential_energy()
    b.calc = calc  # re-attached: get_hessian() now describes b
    H = calc.get_hessian()
    assert np.allclose(H, calc.get_hessian(b)) and not np.allclose(H, calc.get_hessian(a))
    import pickle
    assert isinstance(pickle.loads(pickle.dumps(calc)), CgkitCalculator)  # picklable
