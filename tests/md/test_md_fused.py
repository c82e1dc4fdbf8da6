"""The fused C step loop of MD with pair-only tabulated potentials
(cgkit.forcematch.pair_kernel.FusedMD, used by MolecularDynamics when it applies): forces
against autograd, NVE trajectories against the per-step Python loop, reproducibility of the
counter-based Langevin noise, Langevin statistics against the per-step loop, and the refusals."""
import math

import numpy as np
import pytest
import torch

from cgkit.data import AtomicGraph
from cgkit.errors import InputError, StructureError
from cgkit.forcematch import Table, TabulatedPotential
from cgkit.forcematch import pair_kernel
from cgkit.md import MolecularDynamics
from cgkit.potential import Potential
from cgkit.topology import Topology

needs_kernel = pytest.mark.skipif(not pair_kernel.available(),
                                  reason=f"no compiled pair kernel: {pair_kernel.unavailable_reason()}")


def _pair(types, rc, eps=0.01, sigma=3.0, x0=2.4, dx=0.02):
    """Shifted LJ table (zero force at rc), from x0 (pairs below continue linearly)."""
    r = np.arange(x0, rc + 1e-9, dx)
    lj = lambda x: 4 * eps * ((sigma / x) ** 12 - (sigma / x) ** 6)                            # noqa: E731
    dlj = lambda x: 4 * eps * (-12 * sigma ** 12 / x ** 13 + 6 * sigma ** 6 / x ** 7)          # noqa: E731
    return Table("pair", types, r[0], dx, lj(r) - lj(rc) - dlj(rc) * (r - rc), dlj(r) - dlj(rc))


def _liquid(n=300, box=24.0, triclinic=True, two_types=True, seed=0):
    """A jittered lattice liquid; two types with A-A and A-B tables (B-B without a table) or one type."""
    rng = np.random.default_rng(seed)
    m = math.ceil(n ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    frac = (grid + 0.5 + rng.uniform(-0.15, 0.15, grid.shape)) / m
    cell = np.diag([box, box * 1.05, box * 0.97])
    if triclinic:
        cell[1, 0], cell[2, 0], cell[2, 1] = 0.2 * box, -0.15 * box, 0.1 * box
    pos = frac @ cell + rng.integers(-1, 2, (n, 3)) @ cell  # some particles outside the cell
    if two_types:
        tables = [_pair(("A", "A"), 6.0), _pair(("A", "B"), 5.0, eps=0.02, sigma=2.8)]
        species = rng.integers(0, 2, n)
        pot = TabulatedPotential(["A", "B"], Topology(n_particles=n), tables)
        names = ("A", "B")
    else:
        pot = TabulatedPotential(["A"], Topology(n_particles=n), [_pair(("A", "A"), 6.0)])
        species, names = np.zeros(n, int), ("A",)
    return pot, pos, cell, species, names


def _md(pot, pos, cell, species, names, **kw):
    args = dict(positions=pos, cell=cell, masses=np.full(len(pos), 30.0), species=species, type_names=names,
                timestep=2.0, temperature=150.0, progress=False, min_distance=0.0, seed=4)
    args.update(kw)
    return MolecularDynamics(pot, **args)


def _autograd_forces(pot, pos, cell, species, names):
    g = AtomicGraph.from_arrays(pos, cell, True, pot.cutoff, species=species, type_names=names, dtype=torch.float64)
    out = Potential.compute(pot, g, forces=True)
    return out["forces"].numpy(), float(out["energy"][0])


@needs_kernel
@pytest.mark.parametrize("two_types", [True, False])
def test_fused_forces_and_energy_equal_autograd(two_types):
    pot, pos, cell, species, names = _liquid(two_types=two_types)
    md = _md(pot, pos, cell, species, names, integrator="verlet", log_every=1)
    md.run(3)
    assert md.loop == "fused" and md.summary()["md_loop"] == "fused"
    ref_f, ref_e = _autograd_forces(pot, md.positions[0], cell, species, names)
    assert np.abs(md._forces.numpy() - ref_f).max() < 1e-10
    assert abs(float(md._energy[0]) - ref_e) < 1e-10 * max(1.0, abs(ref_e))
    assert np.abs(ref_f).max() > 0.05


@needs_kernel
def test_fused_nve_trajectory_equals_the_per_step_loop_with_replicas():
    pot, pos, cell, species, names = _liquid()
    kw = dict(integrator="verlet", n_replicas=2, log_every=7, skin=0.6)
    fused = _md(pot, pos, cell, species, names, **kw).run(150)
    slow = _md(pot, pos, cell, species, names, fused=False, **kw).run(150)
    assert fused.loop == "fused" and slow.loop == "python"
    assert fused.n_rebuilds > 3
    assert np.abs(fused.positions - slow.positions).max() < 1e-8
    assert np.abs(fused.velocities_A_per_fs - slow.velocities_A_per_fs).max() < 1e-10
    assert np.allclose(fused.results.potential_energy, slow.results.potential_energy, rtol=1e-10, atol=1e-12)
    assert np.allclose(fused.results.total_energy, slow.results.total_energy, rtol=1e-10, atol=1e-12)
    assert np.abs(fused.positions[0] - fused.positions[1]).max() > 0.05  # replicas have own velocities


@needs_kernel
def test_fused_langevin_is_reproducible_however_the_run_is_split():
    pot, pos, cell, species, names = _liquid()
    a = _md(pot, pos, cell, species, names, log_every=10).run(60)
    b = _md(pot, pos, cell, species, names, log_every=7, write_every=0)
    b.run(25)
    b.run(35)
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.velocities.numpy(), b.velocities.numpy())
    c = _md(pot, pos, cell, species, names, log_every=10, seed=5).run(60)
    assert np.abs(c.positions - a.positions).max() > 1e-3


@needs_kernel
def test_fused_noise_is_standard_normal_and_uncorrelated():
    from scipy import stats
    pot, pos, cell, species, names = _liquid(n=400, two_types=False)
    md = _md(pot, pos, cell, species, names)
    fm = pair_kernel.FusedMD(md._kernel, md._cell64(), md.nl_cutoff, md.skin, np.zeros(400), np.zeros(400), 4)
    z = np.stack([fm.noise(s) for s in range(50)])                 # (50, 400, 3)
    assert np.array_equal(z[3], fm.noise(3))                        # a function of the step
    flat = z.reshape(-1)
    assert abs(flat.mean()) < 4 / math.sqrt(flat.size) and abs(flat.var() - 1) < 0.02
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    lag = np.corrcoef(z[:-1].reshape(-1), z[1:].reshape(-1))[0, 1]  # step to step
    comp = np.corrcoef(z[..., 0].reshape(-1), z[..., 1].reshape(-1))[0, 1]  # x with y of a row
    assert abs(lag) < 4 / math.sqrt(flat.size / 50 * 49) and abs(comp) < 4 / math.sqrt(z[..., 0].size)
    other = pair_kernel.FusedMD(md._kernel, md._cell64(), md.nl_cutoff, md.skin, np.zeros(400), np.zeros(400), 5)
    assert abs(np.corrcoef(other.noise(0).reshape(-1), z[0].reshape(-1))[0, 1]) < 0.1


@needs_kernel
def test_fused_langevin_samples_the_same_ensemble_as_the_per_step_loop():
    pot, pos, cell, species, names = _liquid(n=250, two_types=False, triclinic=False)
    kw = dict(n_replicas=4, log_every=5, temperature=120.0, friction=0.05)
    means = {}
    for fused in (None, False):
        md = _md(pot, pos, cell, species, names, fused=fused, **kw)
        md.run(200)
        md.results.clear_frames()
        md.results.sample_from_step = 200
        md.run(300)
        assert md.loop == ("fused" if fused is None else "python")
        tc = md.results.temperature_check()
        assert tc["consistent"], tc
        w = md.results.potential_energy[-60:]              # (60, R)
        means[fused] = (w.mean(), w.mean(0).std(ddof=1) / 2.0, tc["mean_K"])
    (ea, sa, ta), (eb, sb, tb) = means[None], means[False]
    assert abs(ea - eb) < 4 * math.hypot(sa, sb) + 1e-3 * abs(eb), means
    assert abs(ta - tb) < 0.05 * 120.0


@needs_kernel
def test_fused_refusals_name_the_step_and_particles():
    pot, pos, cell, species, names = _liquid(n=200, two_types=False)
    # a particle thrown across the box: "moved ... since the neighbor list was built"
    v = np.zeros((200, 3))
    v[17] = [60.0, 0, 0]  # Å/fs
    md = _md(pot, pos, cell, species, names, integrator="verlet", velocities=v, temperature=0.0)
    with pytest.raises(StructureError, match=r"diverged at MD step 1 .*bead 17 moved"):
        md.run(5)
    # NaN velocities: the positions become NaN
    v[17] = [np.nan, 0, 0]
    md = _md(pot, pos, cell, species, names, integrator="verlet", velocities=v, temperature=0.0)
    with pytest.raises(StructureError, match=r"MD step 1 .*positions of beads 17 became NaN"):
        md.run(5)
    # two particles at the same position in the middle of a run (zero force, no velocity)
    # (moved by less than 3 Å + skin: the list is rebuilt, then the pair has zero distance)
    md = _md(pot, pos, cell, species, names, integrator="verlet", temperature=0.0)
    md.run(2)
    p = md.graph.positions.clone()
    d = torch.cdist(p, p) + torch.eye(len(p)) * 1e9
    a, b = sorted(divmod(int(torch.argmin(d)), len(p)))   # the closest pair (in the cell)
    assert float(d[a, b]) < 3.5
    p[a] = p[b]
    md.graph = md.graph.with_positions(p, rebuild=False)
    md.velocities = torch.zeros_like(md.velocities)
    md._forces = torch.zeros_like(md._forces)
    with pytest.raises(StructureError, match=rf"MD step 3 .*beads {a} and {b} are at the same"):
        md.run(3)


@needs_kernel
def test_fused_option_is_checked():
    pot, pos, cell, species, names = _liquid(n=200, two_types=False)
    with pytest.raises(InputError, match="fused must be"):
        _md(pot, pos, cell, species, names, fused="yes")
    # angle (and dihedral) tables are evaluated in torch: the per-step loop; bond tables run fused
    top = Topology(n_particles=200, bonds=[(0, 1), (1, 2)], angles=[(0, 1, 2)])
    angle = Table("angle", ("A", "A", "A"), 0.0, 0.1, np.zeros(32), np.zeros(32))
    bond = Table("bond", ("A", "A"), 1.0, 0.1, np.zeros(40), np.zeros(40))
    bonded = TabulatedPotential(["A"], top, [_pair(("A", "A"), 6.0), bond, angle])
    with pytest.raises(InputError, match="angle tables"):
        _md(bonded, pos, cell, species, names, fused=True)
    md = _md(bonded, pos, cell, species, names)
    md.run(2)
    assert md.loop == "python"
    md = _md(TabulatedPotential(["A"], top, [_pair(("A", "A"), 6.0), bond]), pos, cell, species, names)
    md.run(2)
    assert md.loop == "fused"
    # an observer needs the per-step loop
    md = _md(pot, pos, cell, species, names)
    md.run(3, observer=lambda m: False)
    assert md.loop == "python"
    md.run(3)
    assert md.loop == "fused" and md.step == 6


@pytest.mark.slow
@needs_kernel
def test_fused_loop_of_a_generic_build_equals_autograd(tmp_path):
    """The kernel built without -march=native / -fopenmp-simd (what a machine without AVX-512,
    or CGKIT_KERNEL_CFLAGS, gives): the same forces, in a fresh process and cache."""
    import os
    import subprocess
    import sys
    code = (
        "import sys, numpy as np; sys.path.insert(0, %r)\n"
        "import test_md_fused as T\n"
        "from cgkit.forcematch import pair_kernel\n"
        "assert pair_kernel.available(), pair_kernel.unavailable_reason()\n"
        "pot, pos, cell, species, names = T._liquid()\n"
        "md = T._md(pot, pos, cell, species, names, integrator='verlet', log_every=1)\n"
        "md.run(3)\n"
        "assert md.loop == 'fused'\n"
        "f, e = T._autograd_forces(pot, md.positions[0], cell, species, names)\n"
        "print(np.abs(md._forces.numpy() - f).max(), abs(float(md._energy[0]) - e))\n") % os.path.dirname(__file__)
    env = dict(os.environ, CGKIT_KERNEL_CFLAGS="-fno-math-errno", CGKIT_CACHE_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    df, de = (float(v) for v in r.stdout.split())
    assert df < 1e-10 and de < 1e-9
    assert any(p.name.endswith(".so") for p in (tmp_path / "kernels").iterdir())


@needs_kernel
def test_fused_and_per_step_runs_can_alternate():
    """run(0), fused, per-step (observer), fused again: NVE stays the per-step loop's trajectory."""
    pot, pos, cell, species, names = _liquid(n=200, two_types=False)
    a = _md(pot, pos, cell, species, names, integrator="verlet", log_every=5)
    a.run(0)
    a.run(20)
    a.run(20, observer=lambda m: False)
    a.run(20)
    b = _md(pot, pos, cell, species, names, integrator="verlet", log_every=5, fused=False).run(60)
    assert a.loop == "fused" and a.step == 60
    assert np.abs(a.positions - b.positions).max() < 1e-8


def _molecular(n_mol=150, box=22.0, seed=0):
    """Two-bead molecules (A-B, bond table around 1.5 Å, the bonded pair excluded from the pair
    tables), three pair tables, a triclinic cell, partners placed in other images."""
    rng = np.random.default_rng(seed)
    m = math.ceil(n_mol ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_mol]
    cell = np.diag([box, box * 1.03, box * 0.98])
    cell[1, 0] = 0.1 * box
    c = (grid + 0.5 + rng.uniform(-0.1, 0.1, grid.shape)) / m @ cell
    u = rng.normal(size=(n_mol, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    pos = np.empty((2 * n_mol, 3))
    pos[0::2], pos[1::2] = c - 0.75 * u, c + 0.75 * u
    pos += rng.integers(-1, 2, (2 * n_mol, 3)) @ cell
    bonds = np.stack([np.arange(0, 2 * n_mol, 2), np.arange(1, 2 * n_mol, 2)], 1)
    r = np.arange(0.8, 2.6, 0.01)
    tables = [_pair(("A", "A"), 6.0), _pair(("A", "B"), 5.5, eps=0.02, sigma=2.8),
              _pair(("B", "B"), 5.0, eps=0.015), Table("bond", ("A", "B"), r[0], 0.01, 5.0 * (r - 1.5) ** 2,
                                                      10.0 * (r - 1.5))]
    pot = TabulatedPotential(["A", "B"], Topology(n_particles=2 * n_mol, bonds=bonds, exclusions=bonds), tables)
    return pot, pos, cell, np.tile([0, 1], n_mol), ("A", "B")


@needs_kernel
def test_fused_bonds_and_exclusions_equal_autograd_and_the_per_step_loop():
    """Bond tables and pair exclusions in the fused loop (two-bead molecules, e.g. 2-bead
    methanol): forces and energy equal autograd to 1e-10, NVE equals the per-step loop."""
    pot, pos, cell, species, names = _molecular()
    md = _md(pot, pos, cell, species, names, integrator="verlet", log_every=1)
    md.run(3)
    assert md.loop == "fused"
    ref_f, ref_e = _autograd_forces(pot, md.positions[0], cell, species, names)
    assert np.abs(md._forces.numpy() - ref_f).max() < 1e-10 and np.abs(ref_f).max() > 0.5
    assert abs(float(md._energy[0]) - ref_e) < 1e-10 * max(1.0, abs(ref_e))
    kw = dict(integrator="verlet", n_replicas=2, log_every=7, skin=0.6)
    fused = _md(pot, pos, cell, species, names, **kw).run(150)
    slow = _md(pot, pos, cell, species, names, fused=False, **kw).run(150)
    assert fused.loop == "fused" and slow.loop == "python" and fused.n_rebuilds > 3
    assert np.abs(fused.positions - slow.positions).max() < 1e-8
    assert np.allclose(fused.results.total_energy, slow.results.total_energy, rtol=1e-10, atol=1e-12)
    # without the exclusions the bonded pair gets the A-B pair force too: a different result
    free = TabulatedPotential(["A", "B"], Topology(n_particles=len(pos), bonds=pot.topology.bonds), pot.tables)
    other = _md(free, pos, cell, species, names, integrator="verlet", log_every=1)
    other.run(3)
    assert np.abs(other._forces.numpy() - md._forces.numpy()).max() > 1e-3
