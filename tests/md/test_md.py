"""cgkit.md: integrators checked against ASE, equipartition, energy conservation, I/O."""
import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.geometry import find_mic
from ase.md.verlet import VelocityVerlet

from cgkit.calculator import CgkitCalculator
from cgkit.errors import InputError, StructureError
from cgkit.md import MolecularDynamics
from cgkit.potential import Potential
from cgkit.potentials.lennard_jones import LennardJones


@pytest.fixture(scope="module")
def argon():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def lj():
    return LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.0)


class Harmonic(Potential):
    """Independent 3-D harmonic wells k/2 |r - r0|² (no neighbors needed)."""

    def __init__(self, r0, k):
        super().__init__()
        self.cutoff = 0.0
        self.register_buffer("r0", torch.as_tensor(r0))
        self.k = k

    def atomic_energies(self, graph, positions, cell):
        return 0.5 * self.k * ((positions - self.r0.to(positions.dtype)) ** 2).sum(1)


def test_velocity_verlet_matches_ase_velocity_verlet(argon, lj):
    md = MolecularDynamics(lj, argon, timestep=5.0, integrator="verlet", temperature=60,
                           log_every=0, progress=False)
    a = argon.copy()
    a.calc = CgkitCalculator(lj)
    a.set_velocities(md.velocities_A_per_fs[0] / units.fs)  # Å/fs → ASE units
    md.run(40)
    VelocityVerlet(a, timestep=5.0 * units.fs).run(40)
    d = find_mic(md.positions[0] - a.positions, a.cell)[0]
    assert np.abs(d).max() < 1e-9
    assert np.allclose(md.velocities_A_per_fs[0] / units.fs, a.get_velocities(), atol=1e-10)


def test_nve_energy_is_conserved_for_lennard_jones(argon, lj):
    md = MolecularDynamics(lj, argon, timestep=4.0, integrator="verlet", temperature=80,
                           log_every=5, progress=False)
    md.run(600)
    r = md.results
    etot = r.total_energy[:, 0]
    ke = r.kinetic_energy[:, 0]
    # drift and fluctuation of the total energy are far below the kinetic-energy fluctuation
    assert np.ptp(etot) < 0.02 * np.ptp(ke)
    assert md.n_rebuilds < 200  # the skin avoids a rebuild every step
    assert r.summary()["n_steps"] == 600


def test_neighbor_skin_gives_the_same_trajectory_as_rebuilding_every_step(argon, lj):
    kw = dict(timestep=5.0, integrator="verlet", temperature=100, log_every=0, progress=False, seed=4)
    a = MolecularDynamics(lj, argon, skin=1.0, **kw).run(200)
    b = MolecularDynamics(lj, argon, skin=0.0, **kw).run(200)
    assert b.n_rebuilds > 200 and a.n_rebuilds < 50
    d = find_mic(a.positions[0] - b.positions[0], argon.cell)[0]
    assert np.abs(d).max() < 1e-9


def test_langevin_baoab_samples_the_harmonic_boltzmann_distribution():
    n, k, T = 400, 0.5, 300.0
    rng = np.random.default_rng(1)
    r0 = rng.uniform(0, 10, (n, 3))
    pot = Harmonic(r0, k)
    md = MolecularDynamics(pot, positions=r0, pbc=False, masses=np.full(n, 12.0), timestep=4.0,
                           temperature=T, friction=0.05, skin=0.5, log_every=10, store_every=10,
                           progress=False, seed=2)
    md.run(1500)
    x = md.results.positions[30:, 0] - r0
    kT = units.kB * T
    # BAOAB is exact in configuration space for harmonic wells: <x²> = kT/k per component
    assert abs(np.mean(x ** 2) / (kT / k) - 1.0) < 0.03
    assert abs(md.results.temperature[30:, 0].mean() / T - 1.0) < 0.03


def test_replicas_run_independently_in_one_batch(argon, lj):
    md = MolecularDynamics(lj, argon, timestep=5.0, integrator="verlet", temperature=60,
                           n_replicas=3, log_every=10, progress=False)
    v = md.velocities_A_per_fs
    assert not np.allclose(v[0], v[1])
    single = MolecularDynamics(lj, argon, timestep=5.0, integrator="verlet", velocities=v[1],
                               log_every=10, progress=False)
    md.run(60)
    single.run(60)
    d = find_mic(md.positions[1] - single.positions[0], argon.cell)[0]
    assert np.abs(d).max() < 1e-9
    assert md.results.total_energy.shape[1] == 3


@pytest.mark.filterwarnings("ignore:Unknown masses:PendingDeprecationWarning",
                            "ignore:Element information is missing:UserWarning",
                            "ignore:DCDReader currently makes independent timesteps:DeprecationWarning")
def test_trajectories_are_readable_by_mdanalysis_and_ase(argon, lj, tmp_path):
    import ase.io
    import MDAnalysis as mda
    for suffix in (".dcd", ".xtc", ".extxyz"):
        path = tmp_path / f"traj{suffix}"
        md = MolecularDynamics(lj, argon, timestep=5.0, temperature=60, trajectory=path,
                               write_every=10, store_every=10, log_every=0, progress=False)
        md.run(30)
        ref = md.results.positions[:, 0]
        if suffix == ".extxyz":
            frames = ase.io.read(path, ":")
            got = np.array([f.positions for f in frames])
            assert frames[0].info["time_fs"] == 0.0
        else:
            u = mda.Universe(str(path.with_suffix(".pdb")), str(path))
            got = np.array([u.atoms.positions.copy() for _ in u.trajectory])
            assert np.allclose(u.dimensions[:3], np.diag(argon.cell), atol=1e-3)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < (6e-3 if suffix == ".xtc" else 1e-4)  # XTC keeps 0.01 Å


def test_md_bad_input_and_divergence_give_clear_errors(argon, lj):
    with pytest.raises(InputError, match="timestep"):
        MolecularDynamics(lj, argon, timestep=-1.0)
    with pytest.raises(InputError, match="integrator"):
        MolecularDynamics(lj, argon, integrator="leapfrog")
    with pytest.raises(InputError, match="masses"):
        MolecularDynamics(lj, positions=argon.positions, cell=argon.cell)
    with pytest.raises(InputError, match="format"):
        MolecularDynamics(lj, argon, trajectory="x.foo").run(1)
    squeezed = argon.copy()
    squeezed.positions[1] = squeezed.positions[0] + 0.3  # enormous repulsion
    with pytest.raises(StructureError, match="diverged"):
        MolecularDynamics(lj, squeezed, timestep=5.0, integrator="verlet", log_every=1,
                          progress=False).run(50)
