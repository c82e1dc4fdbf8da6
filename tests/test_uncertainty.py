"""Committee uncertainty: invariance by construction, calibration against known error models,
persistence, and the ASE calculator reporting the calibrated spreads."""
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from cgkit.ensemble import EnsembleCalculator, EnsemblePotential
from cgkit.errors import InputError
from cgkit.io_potential import load_potential
from cgkit.jsonutil import loads_strict
from cgkit.nn import ENNP
from cgkit.uncertainty import Calibration, CalibrationAnalysis, calibration_curve

TINY = dict(channels=4, l_max=2, n_layers=2, n_radial=6, radial_hidden=8, radial_layers=1,
            readout_hidden=4, dtype="float64")


def committee(k=3):
    members = []
    for seed in range(k):
        torch.manual_seed(seed)
        m = ENNP(["Si", "C"], 3.5, **{**TINY, "init_seed": seed})
        m.set_statistics(shift=[-1.5, -1.8], scale=0.7, avg_num_neighbors=8.0)
        members.append(m)
    return EnsemblePotential(members)


def structure(seed=3):
    a = bulk("Si", "diamond", 4.6, cubic=True)
    a.symbols[[1, 4, 6]] = "C"
    a.set_cell(a.cell.array + np.array([[0, 0.3, 0.1], [0.2, 0, -0.1], [0.1, 0.2, 0]]), scale_atoms=True)
    a.rattle(0.1, seed=seed)
    return a


def spreads(ens, atoms):
    out = ens.compute_with_uncertainty(ens.graph(atoms))
    return float(out["energy_std"][0]), out["forces_std"].numpy()


def rotation(seed, reflect):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if reflect else q


@pytest.mark.parametrize("op", ["rotation", "reflection", "translation", "permutation"])
def test_committee_spreads_are_invariant(op):
    ens = committee()
    a = structure()
    e0, f0 = spreads(ens, a)
    assert e0 > 1e-6 and f0.min() > 1e-6  # a real spread, so the check can fail
    b = a.copy()
    perm = np.arange(len(a))
    if op in ("rotation", "reflection"):
        R = rotation(7, op == "reflection")
        cell = a.cell.array @ R.T
        if op == "reflection":  # same lattice, rows swapped so the cell stays right-handed
            cell = cell[[1, 0, 2]]
        b.set_cell(cell, scale_atoms=False)
        b.positions = a.positions @ R.T
    elif op == "translation":
        b.positions = a.positions + np.array([0.37, -1.2, 2.9])
    else:
        perm = np.random.default_rng(1).permutation(len(a))
        b = a[perm]
    e1, f1 = spreads(ens, b)
    assert abs(e1 - e0) < 1e-10 * max(1.0, e0)
    np.testing.assert_allclose(f1, f0[perm], rtol=1e-10, atol=1e-12)


def synthetic(rng, n, true_factor, dim):
    sigma = rng.lognormal(mean=-2.0, sigma=0.8, size=n)
    # errors whose total variance is (true_factor * sigma)^2, spread over `dim` components
    comp = rng.normal(size=(n, dim)) * (true_factor * sigma / np.sqrt(dim))[:, None]
    return sigma, np.linalg.norm(comp, axis=1)


@pytest.mark.parametrize("method", ["scale", "isotonic"])
def test_calibration_recovers_a_known_miscalibration(method):
    rng = np.random.default_rng(0)
    s_e, err_e = synthetic(rng, 4000, 0.5, 1)   # committee too wide by 2x on energies
    s_f, err_f = synthetic(rng, 20000, 3.0, 3)  # too narrow by 3x on forces
    cal = Calibration.fit(s_e, err_e, s_f, err_f, method=method)
    if method == "scale":
        assert cal.energy.scale == pytest.approx(0.5, rel=0.05)
        assert cal.forces.scale == pytest.approx(3.0, rel=0.03)
    # held-out data from the same error model: calibrated sigma predicts the error per quantile
    s_e2, err_e2 = synthetic(rng, 4000, 0.5, 1)
    s_f2, err_f2 = synthetic(rng, 20000, 3.0, 3)
    raw = calibration_curve(s_f2, err_f2)
    good = calibration_curve(cal.forces_std(s_f2), err_f2)
    assert raw["worst_factor"] > 2.5
    assert good["worst_factor"] < 1.15
    assert calibration_curve(cal.energy_std(s_e2), err_e2)["worst_factor"] < 1.25


def test_isotonic_handles_a_nonlinear_error_model_that_a_scale_cannot():
    rng = np.random.default_rng(2)
    sigma = rng.lognormal(-2.0, 0.8, size=30000)
    true = 0.3 * np.sqrt(sigma)          # observed error grows like sqrt(sigma), not sigma
    err = np.abs(rng.normal(size=sigma.size) * true)
    iso = Calibration.fit(sigma[:200], err[:200], sigma, err, method="isotonic")
    sc = Calibration.fit(sigma[:200], err[:200], sigma, err, method="scale")
    s2 = rng.lognormal(-2.0, 0.8, size=30000)
    e2 = np.abs(rng.normal(size=s2.size) * 0.3 * np.sqrt(s2))
    assert calibration_curve(iso.forces_std(s2), e2)["worst_factor"] < 1.2
    assert calibration_curve(sc.forces_std(s2), e2)["worst_factor"] > 1.5


def test_isotonic_extrapolates_in_proportion_to_sigma():
    rng = np.random.default_rng(3)
    s, e = synthetic(rng, 2000, 2.0, 3)
    cal = Calibration.fit(s, e, s, e, method="isotonic")
    big = np.array([10 * s.max(), 100 * s.max()])
    out = cal.forces_std(big)
    assert out[1] / out[0] == pytest.approx(10.0, rel=1e-9)
    assert out[0] > cal.forces_std(np.array([s.max()]))[0]


def labelled(ens_teacher, seeds):
    """Structures labelled by one member of another committee (a stand-in teacher)."""
    out = []
    for s in seeds:
        a = structure(seed=s)
        out.append(a)
        g = ens_teacher.graph(a)
        r = ens_teacher.compute(g)
        a.calc = SinglePointCalculator(a, energy=float(r["energy"][0]), forces=r["forces"].numpy())
    return out


def test_calibration_analysis_saves_with_the_ensemble_and_the_calculator_reports_it(tmp_path):
    ens = committee(3)
    torch.manual_seed(11)
    teacher = ENNP(["Si", "C"], 3.5, **{**TINY, "init_seed": 11})
    teacher.set_statistics(shift=[-1.5, -1.8], scale=0.7, avg_num_neighbors=8.0)
    held_out = labelled(teacher, range(10, 16))
    ana = CalibrationAnalysis(ens, held_out, method="scale").run()
    r = ana.results
    assert r.forces["scale"] > 0 and r.energy["scale"] > 0
    # the calibrated scale is the ML estimate: calibrated NLL is never worse than the raw one
    assert r.forces["nll_calibrated"] <= r.forces["nll_raw"] + 1e-12
    assert r.energy["nll_calibrated"] <= r.energy["nll_raw"] + 1e-12
    summary = loads_strict(ana.to_json())
    assert summary["calibration"]["method"] == "scale"
    paths = ana.plot(tmp_path)
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)

    ana.apply()
    a = structure(seed=21)
    raw = ens.compute_with_uncertainty(ens.graph(a), calibrated=False)
    cal = ens.compute_with_uncertainty(ens.graph(a))
    np.testing.assert_allclose(cal["forces_std"].numpy(), r.forces["scale"] * raw["forces_std"].numpy(), rtol=1e-12)
    ens.save(tmp_path / "committee.pt")
    back = load_potential(tmp_path / "committee.pt")
    assert back.calibration == ens.calibration
    a.calc = EnsembleCalculator(back)
    a.get_potential_energy()
    np.testing.assert_allclose(a.calc.results["forces_std"], cal["forces_std"].numpy(), rtol=1e-10)
    assert a.calc.results["energy_std"] == pytest.approx(float(cal["energy_std"][0]), rel=1e-10)


def test_calibration_refuses_unlabelled_or_identical_members():
    ens = committee(2)
    with pytest.raises(InputError, match="structure 0 .*no reference energy"):
        CalibrationAnalysis(ens, [structure()]).run()
    with pytest.raises(InputError, match="different seeds"):
        Calibration.fit(np.zeros(5), np.ones(5), np.zeros(5), np.ones(5))
    with pytest.raises(InputError, match="unknown calibration method"):
        Calibration(method="bayes")
