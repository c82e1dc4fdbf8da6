"""Mean-pressure constrained spline force matching (solve(pressure=PressureTarget(...))).

Reference: the virial pressure of the fitted TabulatedPotential computed independently by
Potential.compute(stress=True) (autograd strain derivative) on the fitted frames.
"""
import warnings

import numpy as np
import pytest

from cgkit.data import AtomicGraph
from cgkit.errors import InputError
from cgkit.forcematch import SplineForceMatching, SparseSamplingWarning
from cgkit.forcematch.pressure_match import EV_PER_A3_IN_BAR, KB_EV_PER_K, PressureTarget

from .conftest import RC
from .test_cli import cg_files  # noqa: F401  (PSF + extxyz of the dimer liquid)

T = 150.0


def _fm(d, frames=slice(None)):
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.2),
                             bond=(0.8, 2.4, 0.1), block_size=5)
    fm.accumulate(d["positions"][frames], d["forces"][frames], d["cell"], progress=False)
    return fm


def _solve(fm, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        # trim=False, min_samples=1: the tables are the spline itself on the whole grid (no walls);
        # 80 table points per interval: table interpolation error < 1e-9 relative (20: ~2e-8)
        return fm.solve(trim=False, min_samples=1, table_points=80, **kw)


def _mean_pressure_bar(pot, d, frames):
    """Mean N k_B T/V + tr(virial)/(3V) of ``pot`` on the frames (independent: autograd stress)."""
    V = abs(np.linalg.det(d["cell"]))
    out = []
    for x in d["positions"][frames]:
        g = AtomicGraph.from_arrays(x, d["cell"], True, pot.cutoff, type_names=("A",))
        W = float(np.trace(pot.compute(g, forces=False, stress=True)["virial"].detach().numpy()[0]))
        out.append(len(x) * KB_EV_PER_K * T / V + W / (3 * V))
    return float(np.mean(out)) * EV_PER_A3_IN_BAR


@pytest.fixture(scope="module")
def fits(dimer_liquid):
    fm = _fm(dimer_liquid, slice(0, 40))
    free = _solve(fm)
    free_p = _mean_pressure_bar(free.potential, dimer_liquid, slice(0, 40))
    target = free_p + 300.0  # a clearly different mean pressure
    con = _solve(fm, pressure=PressureTarget(bar=target, temperature_K=T))
    con_p = _mean_pressure_bar(con.potential, dimer_liquid, slice(0, 40))
    return fm, free, free_p, con, con_p, target


def test_virial_row_reproduces_the_pressure_of_the_fitted_tables(fits):
    fm, free, free_p, con, con_p, target = fits
    p = con.pressure
    # the unconstrained ⟨P⟩ the row predicts = the pressure of the unconstrained tables (autograd)
    assert p["unconstrained_mean_bar"] == pytest.approx(free_p, rel=1e-8, abs=1e-6)
    assert p["constrained_mean_bar"] == pytest.approx(con_p, rel=1e-8, abs=1e-6)
    assert abs(free_p - target) > 250  # the constraint had work to do


def test_constrained_fit_hits_the_target_at_small_force_cost(fits):
    fm, free, free_p, con, con_p, target = fits
    assert con_p == pytest.approx(target, rel=1e-6)
    p = con.pressure
    assert p["target_bar"] == target and p["temperature_K"] == T
    assert p["kinetic_bar"] == pytest.approx(32 * KB_EV_PER_K * T / 11.0 ** 3 * EV_PER_A3_IN_BAR, rel=1e-12)
    # a 300 bar shift costs some force accuracy (the unconstrained fit is the optimum; the model
    # here is exact, so its residual is ~1e-4 of the force) but stays < 1 % of the RMS force
    r_c, r_f = p["rms_residual_constrained_eV_per_A"], p["rms_residual_unconstrained_eV_per_A"]
    assert r_f < r_c < 0.01 * p["rms_force_eV_per_A"]
    assert p["residual_increase_percent"] == pytest.approx(100 * (r_c / r_f - 1))
    assert "pressure" in con.summary() and "pressure" not in free.summary()


def test_pressure_target_refusals(dimer_liquid, chains):
    with pytest.raises(InputError, match="temperature"):
        PressureTarget(bar=1.0)
    with pytest.raises(InputError, match="positive"):
        PressureTarget(bar=1.0, temperature_K=-3.0)
    with pytest.raises(InputError, match="finite"):
        PressureTarget(bar=float("nan"), temperature_K=300.0)
    # non-periodic frames: no volume
    top = chains["topology"]
    fm = SplineForceMatching(["A", "B"], chains["species"], top, pair=None, bond=(1.1, 1.9, 0.05),
                             angle=(40.0, 180.0, 5.0), dihedral=15.0)
    fm.accumulate(chains["positions"][:5], chains["forces"][:5], None, progress=False)
    with pytest.raises(InputError, match="frame 0 has no periodic box"):
        _solve(fm, pressure=PressureTarget(bar=1.0, temperature_K=T))
    # three-body terms carry a virial the row does not hold
    from cgkit.forcematch import ThreeBody
    d = dimer_liquid
    fm3 = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.2),
                              bond=(0.8, 2.4, 0.1), threebody=[ThreeBody(("A", "A", "A"), 4.0, 1.2)])
    fm3.accumulate(d["positions"][:3], d["forces"][:3], d["cell"], progress=False)
    with pytest.raises(InputError, match="three-body"):
        _solve(fm3, pressure=PressureTarget(bar=1.0, temperature_K=T))
    # added normal equations carry no virial
    fa = _fm(d, slice(0, 3))
    fa.add(_fm(d, slice(3, 6)).normal_equations)
    with pytest.raises(InputError, match="added normal equations"):
        _solve(fa, pressure=PressureTarget(bar=1.0, temperature_K=T))


def test_cli_pressure_target_and_refusal(cg_files, tmp_path, capsys):
    from cgkit.cli import main
    from cgkit.jsonutil import loads_strict
    base = ["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
            "--exclude", "1", "--pair-cutoff", "6", "--stop", "20", "--temperature", "150"]
    out = tmp_path / "fm"
    assert main(base + ["--pressure-target", "-49", "--out", str(out)]) == 0
    p = loads_strict((out / "summary.json").read_text())["pressure"]
    assert p["target_bar"] == -49.0 and p["temperature_K"] == 150.0 and p["n_frames"] == 20
    assert p["constrained_mean_bar"] == pytest.approx(-49.0, rel=1e-6)
    assert abs(p["unconstrained_mean_bar"] + 49.0) > 50.0
    capsys.readouterr()
    assert main(base + ["--pressure-target", "-49", "--bonded", "boltzmann", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "--pressure-target needs --bonded fm" in err and not (tmp_path / "x").exists()
    no_t = [a for a in base if a not in ("--temperature", "150")]
    assert main(no_t + ["--pressure-target", "-49", "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "--pressure-target needs --temperature" in err and not (tmp_path / "y").exists()


def test_solver_equality_matches_the_lagrange_multiplier_solution():
    """min cᵀAc - 2bᵀc subject to e·c = d: the exact KKT system as reference."""
    from cgkit.forcematch.solver import solve_system
    rng = np.random.default_rng(0)
    G = rng.normal(size=(40, 8))
    A, b = G.T @ G, G.T @ rng.normal(size=40)
    e, d = rng.normal(size=8) * 1e-3, 0.7e-3  # a small-scale row, as the virial row in eV/Å³
    c = solve_system([], A, b, 0.0, 0.0, "lstsq", equality=(e[None], [d]))
    K = np.block([[A, e[:, None]], [e[None], np.zeros((1, 1))]])
    ref = np.linalg.solve(K, np.concatenate([b, [d]]))[:8]
    np.testing.assert_allclose(c, ref, rtol=1e-9, atol=1e-12)
    assert e @ c == pytest.approx(d, rel=1e-12)
