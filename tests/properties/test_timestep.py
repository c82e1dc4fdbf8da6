"""Stable MD time step: against the phonon maximum frequency, finite differences, the mass
scaling of a CG system, and NVE runs just below / above dt_max (ASE velocity Verlet)."""
import math

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.errors import InputError
from cgkit.properties.timestep import StableTimestep, timestep_from_frequency, timestep_gain


@pytest.fixture(scope="module")
def sw():
    from cgkit.potentials.stillinger_weber import StillingerWeber
    return StillingerWeber().to(torch.float64)


@pytest.fixture(scope="module")
def lj():
    from cgkit.potentials.lennard_jones import LennardJones
    return LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.5).to(torch.float64)


def _nve_energy_deviation(atoms, pot, dt_fs, steps, T=5.0):
    """max |E(t) − E(0)| / KE(0) of an ASE velocity-Verlet run (inf once it blows up)."""
    from ase.md.verlet import VelocityVerlet
    from ase.md.velocitydistribution import Stationary
    from cgkit.sampling import thermalize
    a = atoms.copy()
    a.calc = CgkitCalculator(pot, dtype=torch.float64)
    thermalize(a, T, np.random.default_rng(1))
    Stationary(a)
    e0, ke0 = a.get_total_energy(), a.get_kinetic_energy()
    md = VelocityVerlet(a, timestep=dt_fs * units.fs)
    worst = 0.0
    for _ in range(steps // 10):
        md.run(10)
        e = a.get_total_energy()
        worst = max(worst, abs(e - e0) / ke0 if np.isfinite(e) else np.inf)
        if worst > 1e6:
            break
    return worst


def test_sw_silicon_dt_max_from_17_833_thz_optical_mode(sw):
    r = StableTimestep(bulk("Si", "diamond", 5.43095, cubic=True), sw).run().results
    assert r.nu_max == pytest.approx(17.833, abs=1e-3)
    assert r.dt_max == pytest.approx(2.0 / (2 * math.pi * 17.833e-3), rel=1e-4)  # ≈ 17.85 fs
    assert r.dt_recommended == pytest.approx(r.dt_max * math.pi / 20)
    assert abs(r.lambda_min) < 1e-8  # acoustic translations


def test_finite_difference_route_matches_analytic_hessian(lj):
    atoms = bulk("Ar", "fcc", 5.26)
    an = StableTimestep(atoms, lj, supercell=(2, 2, 2)).run().results
    fd = StableTimestep(atoms, CgkitCalculator(lj, dtype=torch.float64), supercell=(2, 2, 2),
                        method="finite_difference").run().results
    assert fd.method.startswith("finite differences")
    assert fd.dt_max == pytest.approx(an.dt_max, rel=1e-5)


def test_cg_beads_twice_as_heavy_allow_sqrt2_larger_step(lj):
    atoms = bulk("Ar", "fcc", 5.26, cubic=True)
    aa = StableTimestep(atoms, lj).run()
    cg = StableTimestep(atoms, lj, masses=2.0 * atoms.get_masses()).run()
    gain = timestep_gain(aa, cg)
    assert gain["gain"] == pytest.approx(math.sqrt(2.0), rel=1e-10)


def test_lj_argon_nve_bounded_below_dt_max_and_diverges_above(lj):
    atoms = bulk("Ar", "fcc", 5.26, cubic=True)
    dt_max = StableTimestep(atoms, lj).run().results.dt_max
    assert _nve_energy_deviation(atoms, lj, 0.9 * dt_max, 200) < 5.0
    assert _nve_energy_deviation(atoms, lj, 1.1 * dt_max, 200) > 1e3


def test_sw_silicon_nve_bounded_below_dt_max_and_diverges_above(sw):
    atoms = bulk("Si", "diamond", 5.43095, cubic=True)
    dt_max = StableTimestep(atoms, sw).run().results.dt_max
    assert _nve_energy_deviation(atoms, sw, 0.9 * dt_max, 80) < 5.0
    assert _nve_energy_deviation(atoms, sw, 1.1 * dt_max, 80) > 1e3


@pytest.mark.slow
def test_sw_silicon_nve_long_run_bounded_at_0_9_dt_max(sw):
    atoms = bulk("Si", "diamond", 5.43095, cubic=True)
    dt_max = StableTimestep(atoms, sw).run().results.dt_max
    assert _nve_energy_deviation(atoms, sw, 0.9 * dt_max, 1000) < 5.0


def test_bad_timestep_inputs_are_rejected(lj):
    with pytest.raises(InputError):
        timestep_from_frequency(0.0)
    with pytest.raises(InputError):
        timestep_from_frequency(10.0, points_per_period=2.0)
    atoms = bulk("Ar", "fcc", 5.26)
    with pytest.raises(InputError, match="masses"):
        StableTimestep(atoms, lj, masses=[1.0, 2.0, 3.0])


def test_stable_timestep_follows_the_results_protocol(tmp_path):
    from cgkit.jsonutil import loads_strict
    from cgkit.potentials.stillinger_weber import StillingerWeber
    from cgkit.results import Analysis
    ts = StableTimestep(bulk("Si", "diamond", 5.43095, cubic=True), StillingerWeber().to(torch.float64))
    assert isinstance(ts, Analysis) and ts.run() is ts
    s = loads_strict(ts.to_json(tmp_path / "ts.json"))
    assert s["units"]["dt_max"] == "fs" and s["dt_max"] == pytest.approx(ts.results.dt_max)
    assert ts.plot(tmp_path) == []


def test_non_finite_hessian_is_a_structure_error():
    from cgkit.errors import StructureError
    from cgkit.properties.timestep import stability_from_hessian
    H = np.eye(6)
    H[0, 0] = np.nan
    with pytest.raises(StructureError, match="non-finite"):
        stability_from_hessian(H, [1.0, 1.0])
