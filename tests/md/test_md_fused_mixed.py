"""The mixed-precision pair loop of the fused MD loop (``pair_precision="mixed"``: float32
relative coordinates, table and per-particle sums; positions, velocities, integration and force
totals in float64): forces and energies against autograd in float64 to float32 accuracy, NVE
energy conservation as good as the double loop's, the same Langevin ensemble, the reported
precision, and the generic (non-AVX-512) build."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cgkit.errors import InputError, StructureError
from cgkit.forcematch import pair_kernel
from cgkit.md import MolecularDynamics

from .test_md_fused import _autograd_forces as _autograd  # the fixtures have one home
from .test_md_fused import _liquid, _molecular, needs_kernel


def _md(pot, pos, cell, species, names, **kw):
    args = dict(positions=pos, cell=cell, masses=np.full(len(pos), 30.0), species=species, type_names=names,
                timestep=2.0, temperature=150.0, progress=False, min_distance=0.0, seed=4, pair_precision="mixed")
    args.update(kw)
    return MolecularDynamics(pot, **args)


def _check_against_autograd(md, pot, cell, species, names):
    """float32 accuracy: every force component within 1e-5 of the largest force (relative) and
    the energy within 1e-7 eV per particle (float32 pair energies of ~0.01 eV); returns the
    largest force error."""
    ref_f, ref_e = _autograd(pot, md.positions[0], cell, species, names)
    f = md._forces.numpy()
    scale = np.abs(ref_f).max()
    err = np.abs(f - ref_f).max()
    assert scale > 0.05
    assert err < 1e-5 * scale, (err, scale)
    per = np.linalg.norm(f - ref_f, axis=1) / np.maximum(np.linalg.norm(ref_f, axis=1), 0.05 * scale)
    assert per.max() < 2e-5, per.max()
    assert abs(float(md._energy[0]) - ref_e) < 1e-7 * len(f) + 1e-6 * abs(ref_e)
    return err


@needs_kernel
@pytest.mark.parametrize("two_types", [True, False])
def test_mixed_forces_and_energy_match_autograd(two_types):
    pot, pos, cell, species, names = _liquid(two_types=two_types)
    md = _md(pot, pos, cell, species, names, integrator="verlet", log_every=1)
    md.run(3)
    s = md.summary()
    assert md.loop == "fused" and s["md_loop"] == "fused" and s["pair_precision"] == "mixed"
    err = _check_against_autograd(md, pot, cell, species, names)
    assert err > 1e-12   # float32 rounding is visible: the mixed loop ran, not the double one


@needs_kernel
def test_mixed_nve_conserves_energy_like_the_double_loop():
    """NVE (velocity Verlet) from the same equilibrated state: the total energy's linear drift and
    its fluctuation with the mixed loop are those of the double loop (within a small margin), and
    the trajectories agree closely over the first steps."""
    pot, pos, cell, species, names = _liquid(n=250, two_types=False, triclinic=False)
    eq = _md(pot, pos, cell, species, names, pair_precision="double", log_every=0, temperature=120.0)
    eq.run(300)
    x0, v0 = eq.positions[0], eq.velocities_A_per_fs[0]
    stats, traj = {}, {}
    for prec in ("double", "mixed"):
        md = _md(pot, x0, cell, species, names, pair_precision=prec, integrator="verlet", velocities=v0,
                 log_every=5, temperature=120.0)
        md.run(10)
        traj[prec] = md.positions[0].copy()
        md.run(1990)
        assert md.results.pair_precision == prec and md.n_rebuilds > 10
        t, e = md.results.time, md.results.total_energy[:, 0] / len(x0)
        fit = np.polyfit(t, e, 1)
        stats[prec] = (abs(fit[0]) * (t[-1] - t[0]), np.std(e - np.polyval(fit, t)))  # drift over the run, RMS
    d = np.abs(traj["mixed"] - traj["double"]).max()
    assert 0 < d < 1e-4, d
    (dd, rd), (dm, rm) = stats["double"], stats["mixed"]
    assert rm < 1.5 * rd, stats                    # fluctuation: that of the integrator, not of float32
    assert dm < max(3 * dd, 2 * rd), stats         # drift over the 4 ps per particle


@needs_kernel
def test_mixed_langevin_samples_the_same_ensemble_as_double():
    pot, pos, cell, species, names = _liquid(n=250, two_types=False, triclinic=False)
    kw = dict(n_replicas=4, log_every=5, temperature=120.0, friction=0.05)
    means = {}
    for prec in ("double", "mixed"):
        md = _md(pot, pos, cell, species, names, pair_precision=prec, **kw)
        md.run(200)
        md.results.clear_frames()
        md.results.sample_from_step = 200
        md.run(300)
        tc = md.results.temperature_check()
        assert tc["consistent"], tc
        w = md.results.potential_energy[-60:]
        means[prec] = (w.mean(), w.mean(0).std(ddof=1) / 2.0, tc["mean_K"])
    (ea, sa, ta), (eb, sb, tb) = means["double"], means["mixed"]
    assert abs(ea - eb) < 4 * math.hypot(sa, sb) + 1e-3 * abs(eb), means
    assert abs(ta - tb) < 0.05 * 120.0


@needs_kernel
def test_mixed_refusals_name_the_step_and_particles():
    pot, pos, cell, species, names = _liquid(n=200, two_types=False)
    v = np.zeros((200, 3))
    v[17] = [60.0, 0, 0]  # Å/fs: thrown across the box
    md = _md(pot, pos, cell, species, names, integrator="verlet", velocities=v, temperature=0.0)
    with pytest.raises(StructureError, match=r"diverged at MD step 1 .*bead 17 moved"):
        md.run(5)
    md = _md(pot, pos, cell, species, names, integrator="verlet", temperature=0.0)
    md.run(2)
    p = md.graph.positions.clone()
    d = torch.cdist(p, p) + torch.eye(len(p)) * 1e9
    a, b = sorted(divmod(int(torch.argmin(d)), len(p)))
    p[a] = p[b]
    md.graph = md.graph.with_positions(p, rebuild=False)
    md.velocities = torch.zeros_like(md.velocities)
    md._forces = torch.zeros_like(md._forces)
    with pytest.raises(StructureError, match=rf"MD step 3 .*beads {a} and {b} are at the same"):
        md.run(3)


@needs_kernel
def test_pair_precision_is_checked_and_reported():
    pot, pos, cell, species, names = _liquid(n=200, two_types=False)
    with pytest.raises(InputError, match="pair_precision must be one of"):
        _md(pot, pos, cell, species, names, pair_precision="half")
    md = _md(pot, pos, cell, species, names)
    md.run(2)
    assert md.summary()["pair_precision"] == "mixed"
    md.run(2, observer=lambda m: False)     # the per-step loop: compiled kernel in double
    assert md.loop == "python" and md.summary()["pair_precision"] == "double"
    md = _md(pot, pos, cell, species, names, pair_precision="double")
    md.run(2)
    assert md.summary()["pair_precision"] == "double"
    # a switch of precision between runs makes a new C state (and the forces follow)
    md.pair_precision = "mixed"
    md.run(1)
    assert md.summary()["pair_precision"] == "mixed"
    with pytest.raises(ValueError, match="precision must be one of"):
        pair_kernel.FusedMD(md._kernel, md._cell64(), md.nl_cutoff, md.skin, np.zeros(200), np.zeros(200), 1,
                            precision="single")


@pytest.mark.slow
@needs_kernel
def test_mixed_loop_of_a_generic_build_matches_autograd(tmp_path):
    """The kernel built without -march=native (no AVX-512: the plain C float32 loop and the
    scalar Langevin noise), in a fresh process and cache: the same float32 accuracy, and the
    same normals as this process's build (vectorised with AVX-512) to rounding."""
    import os
    import subprocess
    import sys
    code = (
        "import sys, numpy as np; sys.path.insert(0, %r)\n"
        "from tests.md import test_md_fused_mixed as T\n"
        "from cgkit.forcematch import pair_kernel\n"
        "assert pair_kernel.available(), pair_kernel.unavailable_reason()\n"
        "for two in (True, False):\n"
        "    pot, pos, cell, species, names = T._liquid(two_types=two)\n"
        "    md = T._md(pot, pos, cell, species, names, integrator='verlet', log_every=1)\n"
        "    md.run(3)\n"
        "    assert md.loop == 'fused'\n"
        "    print(T._check_against_autograd(md, pot, cell, species, names))\n"
        "pot, pos, cell, species, names = T._liquid(n=401, two_types=False)\n"
        "md = T._md(pot, pos, cell, species, names)\n"
        "fm = pair_kernel.FusedMD(md._kernel, md._cell64(), md.nl_cutoff, md.skin, np.zeros(401), np.zeros(401), 3)\n"
        "np.save(%r, np.stack([fm.noise(k) for k in range(9)]))\n") % (str(Path(__file__).resolve().parents[2]),
                                                                       str(tmp_path / "noise.npy"))
    env = dict(os.environ, CGKIT_KERNEL_CFLAGS="-fno-math-errno", CGKIT_CACHE_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert all(float(v) > 1e-12 for v in r.stdout.split())
    pot, pos, cell, species, names = _liquid(n=401, two_types=False)
    md = _md(pot, pos, cell, species, names)
    fm = pair_kernel.FusedMD(md._kernel, md._cell64(), md.nl_cutoff, md.skin, np.zeros(401), np.zeros(401), 3)
    here = np.stack([fm.noise(k) for k in range(9)])     # 3·401 normals per step: odd, unaligned blocks
    generic = np.load(tmp_path / "noise.npy")
    assert np.abs(here - generic).max() < 1e-12 and abs(here.std() - 1) < 0.05


@needs_kernel
def test_mixed_with_bonds_and_exclusions_matches_autograd():
    """Bond tables (float64) and pair exclusions with the mixed pair loop."""
    pot, pos, cell, species, names = _molecular()
    md = _md(pot, pos, cell, species, names, integrator="verlet", log_every=1)
    md.run(3)
    assert md.loop == "fused" and md.summary()["pair_precision"] == "mixed"
    assert _check_against_autograd(md, pot, cell, species, names) > 1e-12
