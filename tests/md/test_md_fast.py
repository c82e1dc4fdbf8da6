"""The compiled pair kernel of MD with tabulated potentials (cgkit.forcematch.pair_kernel):
its neighbour list against vesin/ASE, its forces against the autograd forces of the same
potential (1e-10 eV/Å), trajectories against the torch path, and the refusals."""
import math

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cgkit.data import AtomicGraph
from cgkit.errors import InputError, StructureError
from cgkit.forcematch import Table, TabulatedPotential
from cgkit.forcematch import pair_kernel
from cgkit.md import MolecularDynamics
from cgkit.neighbors import neighbor_list
from cgkit.potential import Potential
from cgkit.topology import Topology

needs_kernel = pytest.mark.skipif(not pair_kernel.available(),
                                  reason=f"no compiled pair kernel: {pair_kernel.unavailable_reason()}")


def _pair(types, rc, scale=1.0, x0=2.0, dx=0.02):
    r = np.arange(x0, rc + 1e-9, dx)
    U = scale * (0.02 * (2.6 / r) ** 6 - 0.01 * np.exp(-(r - 4.0) ** 2))
    dU = scale * (-6 * 0.02 * (2.6 / r) ** 6 / r + 0.02 * (r - 4.0) * np.exp(-(r - 4.0) ** 2))
    return Table("pair", types, r[0], dx, U - U[-1], dU)


def _molecular_system(seed=0, n_mol=40, box=18.0, triclinic=True):
    """A-B-B-A chains (bonds, angles, dihedrals, 1-2/1-3 exclusions) in a (triclinic) cell,
    two pair tables with different cutoffs, the B-B pair without a table."""
    rng = np.random.default_rng(seed)
    bonds, angles, dih, pos = [], [], [], []
    for m in range(n_mol):
        o = 4 * m
        bonds += [(o, o + 1), (o + 1, o + 2), (o + 2, o + 3)]
        angles += [(o, o + 1, o + 2), (o + 1, o + 2, o + 3)]
        dih += [(o, o + 1, o + 2, o + 3)]
        x = [rng.uniform(0, box, 3)]
        for _ in range(3):
            v = rng.normal(size=3)
            x.append(x[-1] + 1.5 * v / np.linalg.norm(v))
        pos += x
    n = 4 * n_mol
    excl = Topology.from_bonds(n, bonds, exclude=2).exclusions
    top = Topology(n_particles=n, bonds=bonds, angles=angles, dihedrals=dih, exclusions=excl)
    rb = np.linspace(1.0, 2.0, 51)
    th = np.linspace(math.radians(40), math.pi, 91)
    ph = np.linspace(-math.pi, math.pi, 73)
    tables = [_pair(("A", "A"), 5.5), _pair(("A", "B"), 4.5, 0.5),
              Table("bond", ("A", "B"), rb[0], rb[1] - rb[0], 3 * (rb - 1.5) ** 2, 6 * (rb - 1.5)),
              Table("bond", ("B", "B"), rb[0], rb[1] - rb[0], 2 * (rb - 1.5) ** 2, 4 * (rb - 1.5)),
              Table("angle", ("A", "B", "B"), th[0], th[1] - th[0], 0.5 * (th - 2.0) ** 2, th - 2.0),
              Table("dihedral", ("A", "B", "B", "A"), ph[0], ph[1] - ph[0], 0.02 * (1 + np.cos(3 * ph)),
                    -0.06 * np.sin(3 * ph))]
    pot = TabulatedPotential(["A", "B"], top, tables)
    cell = np.diag([box, box * 1.1, box * 0.95])
    if triclinic:
        cell[1, 0], cell[2, 0], cell[2, 1] = 0.3 * box, -0.2 * box, 0.25 * box
    species = np.tile([0, 1, 1, 0], n_mol)
    return pot, np.array(pos), cell, species


def _autograd_forces(pot, pos, cell, species):
    g = AtomicGraph.from_arrays(pos, cell, True, pot.cutoff, species=species, type_names=pot.type_names,
                                dtype=torch.float64)
    out = Potential.compute(pot, g, forces=True)  # the base class: autograd of atomic_energies
    return out["forces"].numpy(), float(out["energy"][0])


@needs_kernel
def test_half_list_is_the_vesin_list_on_triclinic_cells_with_unwrapped_positions():
    rng = np.random.default_rng(1)
    cell = np.array([[20.0, 0, 0], [6.0, 21.0, 0], [-4.0, 5.0, 19.0]])
    pos = rng.uniform(0, 1, (400, 3)) @ cell + rng.integers(-3, 4, (400, 3)) @ cell  # images
    for rc in (4.0, 6.1):  # bins of rc/2 (5+ per direction) and of rc (3-4)
        i, j, S, tid = pair_kernel.half_neighbor_list(pos, cell, True, rc)
        assert (tid == 0).all()
        (vi, vj), vS = neighbor_list(pos, cell, True, rc)
        ref = {(a, b, *s) for a, b, s in zip(vi.tolist(), vj.tolist(), vS.tolist())}
        got = {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), S.tolist())}
        got |= {(b, a, *(-np.asarray(s)).tolist()) for a, b, *s in got}
        assert got == ref
        assert len(i) == len(vi) // 2


@needs_kernel
def test_small_cells_fall_back_to_vesin_with_self_images():
    cell = np.eye(3) * 7.0  # thinner than 3 cutoffs: the cell list cannot be used
    pos = np.random.default_rng(2).uniform(0, 7, (20, 3))
    i, j, S, _ = pair_kernel.half_neighbor_list(pos, cell, True, 7.5)
    (vi, vj), vS = neighbor_list(pos, cell, True, 7.5)
    assert len(i) == len(vi) // 2 and np.any(i == j)  # an atom meets its own images


@needs_kernel
@pytest.mark.parametrize("triclinic", [True, False])
def test_kernel_forces_equal_the_autograd_forces(triclinic):
    pot, pos, cell, species = _molecular_system(triclinic=triclinic)
    pos = pos + np.random.default_rng(5).normal(scale=0.05, size=pos.shape)
    md = MolecularDynamics(pot, positions=pos, cell=cell, masses=np.full(len(pos), 20.0), species=species,
                           type_names=("A", "B"), kernel="compiled", progress=False, min_distance=0.0)
    assert md.kernel == "compiled"
    md._maybe_rebuild(force=True)
    md._compute(0)
    ref_f, ref_e = _autograd_forces(pot, md.positions[0], cell, species)
    assert np.abs(md._forces.numpy() - ref_f).max() < 1e-10
    assert abs(float(md._energy[0]) - ref_e) < 1e-10 * max(1.0, abs(ref_e))
    assert np.abs(ref_f).max() > 0.01  # a real test: sizeable forces


@needs_kernel
def test_kernel_handles_pairs_below_and_beyond_the_table():
    """Linear continuation below the first grid point, zero beyond the cutoff, the cutoff itself."""
    t = _pair(("A", "A"), 5.0, x0=3.0)
    pot = TabulatedPotential(["A"], Topology(n_particles=4), [t])
    pos = np.array([[0.0, 0, 0], [2.2, 0, 0], [0, 5.0, 0], [0, -5.0001, 0]])  # 2.2 Å < x0; 5.0 = cutoff
    cell = np.eye(3) * 30.0
    md = MolecularDynamics(pot, positions=pos, cell=cell, masses=np.ones(4), kernel="compiled",
                           progress=False, min_distance=0.0)
    md._compute(0)
    ref_f, ref_e = _autograd_forces(pot, pos, cell, np.zeros(4, int))
    assert np.abs(md._forces.numpy() - ref_f).max() < 1e-12
    assert abs(float(md._energy[0]) - ref_e) < 1e-12
    assert abs(ref_f[1, 0] + t.dU[0]) < 1e-12  # the constant force of the linear continuation


@needs_kernel
def test_trajectory_equals_the_torch_path_with_replicas():
    pot, pos, cell, species = _molecular_system(n_mol=30, box=16.0)
    kw = dict(positions=pos, cell=cell, masses=np.full(len(pos), 30.0), species=species, type_names=("A", "B"),
              timestep=2.0, temperature=200.0, n_replicas=2, log_every=10, progress=False, seed=3,
              min_distance=0.0)
    fast = MolecularDynamics(pot, kernel="compiled", **kw).run(60)
    slow = MolecularDynamics(pot, kernel="torch", **kw).run(60)
    assert fast.n_rebuilds > 1
    assert np.abs(fast.positions - slow.positions).max() < 1e-8
    assert np.allclose(fast.results.potential_energy, slow.results.potential_energy, rtol=1e-9, atol=1e-12)
    # replicas differ (own velocities and noise) but each is the torch path's
    assert np.abs(fast.positions[0] - fast.positions[1]).max() > 0.1


@needs_kernel
def test_float32_md_uses_the_float64_kernel():
    pot, pos, cell, species = _molecular_system(n_mol=20, box=15.0)
    md = MolecularDynamics(pot, positions=pos, cell=cell, masses=np.full(len(pos), 30.0), species=species,
                           type_names=("A", "B"), dtype=torch.float32, kernel="compiled", progress=False,
                           min_distance=0.0)
    md._compute(0)
    assert md._forces.dtype == torch.float32
    ref_f, _ = _autograd_forces(pot, md.graph.positions.double().numpy(), cell, species)
    assert np.abs(md._forces.double().numpy() - ref_f).max() < 1e-5 * max(1.0, np.abs(ref_f).max())


@needs_kernel
def test_coincident_particles_are_refused_with_their_indices():
    pot = TabulatedPotential(["A"], Topology(n_particles=3), [_pair(("A", "A"), 5.0)])
    pos = np.array([[1.0, 1, 1], [1.0, 1, 1], [4.0, 4, 4]])
    with pytest.raises(StructureError, match="0 and 1 are at the same position"):
        MolecularDynamics(pot, positions=pos, cell=np.eye(3) * 20, masses=np.ones(3), kernel="compiled",
                          min_distance=0.0, progress=False).run(1)


def test_kernel_option_is_checked_and_the_fallback_is_announced(monkeypatch):
    from cgkit.potentials.lennard_jones import LennardJones
    pos = np.array([[0.0, 0, 0], [3.5, 0, 0]])
    with pytest.raises(InputError, match="kernel must be"):
        MolecularDynamics(LennardJones(), positions=pos, cell=np.eye(3) * 20, masses=np.ones(2), kernel="fast")
    with pytest.raises(InputError, match="only for tabulated potentials"):
        MolecularDynamics(LennardJones(), positions=pos, cell=np.eye(3) * 20, masses=np.ones(2), kernel="compiled")
    pot = TabulatedPotential(["A"], Topology(n_particles=2), [_pair(("A", "A"), 5.0)])
    monkeypatch.setattr(pair_kernel, "_LIBRARY", SimpleNamespace(
        get=lambda: None, available=lambda: False, unavailable_reason=lambda: "no C compiler (test)"))
    with pytest.raises(InputError, match="no C compiler"):
        MolecularDynamics(pot, positions=pos, cell=np.eye(3) * 20, masses=np.ones(2), kernel="compiled")
    with pytest.warns(pair_kernel.KernelUnavailableWarning, match="slower torch path"):
        md = MolecularDynamics(pot, positions=pos, cell=np.eye(3) * 20, masses=np.ones(2))
    assert md.kernel == "torch"


@pytest.mark.slow
@needs_kernel
def test_compiled_kernel_is_much_faster_than_the_torch_path_on_water():
    """One-bead water (2180 beads, 9 Å table): ≥ 5× the torch path's CPU steps/s, same run.
    (Against GROMACS and LAMMPS: benchmarks/cg_md.py.)"""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import cg_md
    if not cg_md.SPCE.is_dir():
        pytest.skip("votca-tutorials (spce/atomistic) absent")
    pos, cell = cg_md.read_spce_beads()
    pot, _ = cg_md.load_pair_potential(None, len(pos))
    _, c_fast, md = cg_md.run_cgkit(pot, pos, cell, 600, "auto")
    _, c_slow, _ = cg_md.run_cgkit(pot, pos, cell, 60, "torch")
    assert md.kernel == "compiled"
    speedup = (600 / c_fast) / (60 / c_slow)
    assert speedup > 5.0, speedup
    assert md.n_rebuilds < 700 / 5  # the list is reused (skin 1 Å)
