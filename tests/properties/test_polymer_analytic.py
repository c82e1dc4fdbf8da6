"""Polymer analysis against analytic chain statistics (FJC, FRC, WLC, rigid rod, SAW)."""
from __future__ import annotations

import numpy as np
import pytest

from cgkit.properties.polymer import PolymerAnalysis
from tests.properties.test_polymer_generators import (fjc, frc, make_universe, rod, saw_pivot, wlc,
                                                      wlc_mean_cos)


def _run(coords, **kw):
    kw.setdefault("rdf", False)
    kw.setdefault("msd", None)
    kw.setdefault("error_method", "chains")
    pa = PolymerAnalysis(make_universe(coords).atoms, **kw).run()
    (g,) = pa.results.groups.values()
    return pa, g


def _within(q, expected, nsig=3.5, floor=0.0):
    assert np.isfinite(q["error"]) and q["error"] > 0
    assert abs(q["value"] - expected) <= nsig * q["error"] + floor, (q, expected)


def test_freely_jointed_chain_mean_square_end_to_end_is_N_b2():
    rng = np.random.default_rng(10)
    L, b = 40, 1.3
    pa, g = _run(fjc(rng, 600, L, b).reshape(3, 200, L, 3))
    _within(g["ree2"], (L - 1) * b ** 2)
    _within(g["C_n"], 1.0)
    # exact discrete ideal chain: <Rg^2> = b^2 (L^2 - 1) / (6 L)
    _within(g["rg2"], b ** 2 * (L * L - 1) / (6 * L))
    _within(g["nu"], 0.5)
    assert g["bond_length"]["value"] == pytest.approx(b, rel=1e-6)
    # internal distances: R^2(n) = n b^2 at every separation
    idd = g["internal_distances"]
    n = idd["n"][1:]
    assert np.all(np.abs(idd["R2"][1:] - n * b * b) <= 4 * idd["R2_error"][1:] + 1e-9)
    # bond angles of an FJC are uniform in cos θ: CDF(θ) = (1 − cos θ)/2 (Kolmogorov distance)
    d = g["distributions"]["bond_angle"]
    cdf = np.concatenate([[0], np.cumsum(d["density"] * np.diff(d["edges"]))])
    assert np.abs(cdf - 0.5 * (1 - np.cos(np.radians(d["edges"])))).max() < 1.6 / np.sqrt(d["n_samples"] / 3)


def test_freely_rotating_chain_characteristic_ratio_and_persistence_length():
    rng = np.random.default_rng(11)
    L, b, c = 60, 1.54, np.cos(np.radians(180 - 112.0))   # bond angle 112°
    pa, g = _run(frc(rng, 400, L, b, c).reshape(2, 200, L, 3))
    nb = L - 1
    cn_exact = (1 + c) / (1 - c) - 2 * c * (1 - c ** nb) / (nb * (1 - c) ** 2)
    _within(g["C_n"], cn_exact)
    # bond ACF is exactly c^n for a freely-rotating chain
    acf = g["bond_acf"]
    k = slice(0, 8)
    assert np.all(np.abs(acf["C"][k] - c ** acf["n"][k]) <= 4 * np.nan_to_num(acf["C_error"][k]) + 1e-12)
    _within(g["lp_acf"], -b / np.log(c), floor=0.01 * b)
    # all bond angles at 112°
    d = g["distributions"]["bond_angle"]
    assert d["edges"][np.argmax(d["density"])] == pytest.approx(112.0, abs=1.0)
    # C(n) curve tends to C_inf = (1+c)/(1-c)
    cinf = (1 + c) / (1 - c)
    cr = g["characteristic_ratio_n"]["C"]
    assert abs(cr[-1] - cinf * (1 - 2 * c / ((L - 1) * (1 - c * c)))) < 0.15 * cinf


def test_worm_like_chain_recovers_its_persistence_length():
    rng = np.random.default_rng(12)
    L, b, kappa = 80, 1.0, 12.0
    lp_true = -b / np.log(wlc_mean_cos(kappa))          # ≈ 11.5 b
    pa, g = _run(wlc(rng, 400, L, b, kappa).reshape(2, 200, L, 3))
    _within(g["lp_acf"], lp_true, floor=0.02 * lp_true)
    # from <R_ee^2> through the continuous WLC relation (discretisation: O(b/lp) ≈ 5 %)
    assert abs(g["lp_wlc"]["value"] - lp_true) < 3.5 * g["lp_wlc"]["error"] + 0.06 * lp_true
    assert g["kappa2"]["value"] > 0.2


def test_rigid_rod_size_shape_and_infinite_stiffness():
    L, b = 25, 2.0
    pa, g = _run(np.stack([rod(6, L, b)] * 4), error_method="time", n_blocks=2)
    assert g["ree"]["value"] == pytest.approx((L - 1) * b, rel=1e-5)
    assert g["rg2"]["value"] == pytest.approx(b * b * (L * L - 1) / 12.0, rel=1e-5)
    assert g["kappa2"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert g["asphericity"]["value"] == pytest.approx(g["rg2"]["value"], rel=1e-5)
    assert g["nu"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert g["lp_acf"]["value"] == np.inf and g["lp_wlc"]["value"] == np.inf
    assert g["ree2_over_rg2"]["value"] == pytest.approx(12 * (L - 1) / (L + 1), rel=1e-5)


def test_self_avoiding_walk_flory_exponent_is_0588():
    rng = np.random.default_rng(13)
    L = 100
    x = saw_pivot(rng, 240, L, 2000)
    pa, g = _run(x.reshape(2, 120, L, 3), flory_range=(5, 50), n_blocks=6)
    assert g["nu"]["error"] < 0.015
    _within(g["nu"], 0.588)
    # and clearly not ideal
    assert g["nu"]["value"] - 0.5 > 5 * g["nu"]["error"]


def test_flory_exponent_from_chain_lengths_of_several_molecule_types():
    rng = np.random.default_rng(14)
    lengths = [10, 20, 40, 80]
    per = 120
    chains = [fjc(rng, per, L, 1.0) for L in lengths]
    coords = np.concatenate([c.reshape(-1, 3) for c in chains])[None]
    chain_lengths = np.repeat(lengths, per)
    resnames = np.repeat([f"P{L}" for L in lengths], per)
    u = make_universe(coords, chain_lengths=chain_lengths, resnames=resnames)
    pa = PolymerAnalysis(u.atoms, rdf=False, msd=None).run()
    assert set(pa.results.groups) == {f"P{L}:N{L}" for L in lengths}
    for L in lengths:
        g = pa.results.groups[f"P{L}:N{L}"]
        assert g["n_chains"] == per
        _within(g["rg2"], (L * L - 1) / (6 * L))
    fs = pa.results.flory_from_sizes
    # exact discrete ideal chain Rg^2 ∝ (L^2-1)/L: the log-log slope on these lengths
    nu_exact = np.polyfit(np.log(lengths), 0.5 * np.log([(L * L - 1) / L for L in lengths]), 1)[0]
    _within(fs["nu"], nu_exact)
    assert abs(nu_exact - 0.5) < 0.01


def test_trans_gauche_fractions_of_a_chain_with_set_dihedrals():
    """Build chains from internal coordinates with chosen dihedrals; count trans/gauche."""
    rng = np.random.default_rng(15)
    C, L, b, theta = 50, 30, 1.54, np.radians(112.0)
    choices = np.array([180.0, 60.0, -60.0])
    p = np.array([0.6, 0.25, 0.15])
    phis = np.radians(choices[rng.choice(3, size=(C, L - 3), p=p)] + rng.normal(0, 8, (C, L - 3)))
    x = np.zeros((C, L, 3))
    x[:, 1] = [b, 0, 0]
    x[:, 2] = x[:, 1] + b * np.array([-np.cos(theta), np.sin(theta), 0])
    for i in range(3, L):          # natural extension reference frame (NeRF)
        a, bb, c = x[:, i - 3], x[:, i - 2], x[:, i - 1]
        bc = c - bb
        bc /= np.linalg.norm(bc, axis=1, keepdims=True)
        n = np.cross(bb - a, bc)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        m = np.cross(n, bc)
        ph = phis[:, i - 3][:, None]
        d2 = np.stack([-b * np.cos(theta) * np.ones(C), b * np.sin(theta) * np.cos(ph[:, 0]),
                       b * np.sin(theta) * np.sin(ph[:, 0])], axis=1)
        x[:, i] = c + d2[:, :1] * bc + d2[:, 1:2] * m + d2[:, 2:3] * n
    from MDAnalysis.lib.distances import calc_dihedrals
    ref = np.degrees(calc_dihedrals(x[:, :-3].reshape(-1, 3), x[:, 1:-2].reshape(-1, 3),
                                    x[:, 2:-1].reshape(-1, 3), x[:, 3:].reshape(-1, 3)))
    pa, g = _run(np.stack([x, x]))
    expected = [(np.abs(ref) > 120).mean(), ((ref >= 0) & (ref <= 120)).mean(), ((ref < 0) & (ref >= -120)).mean()]
    got = [g[k]["value"] for k in ("trans_fraction", "gauche_plus_fraction", "gauche_minus_fraction")]
    assert np.allclose(got, expected, atol=1e-12)
    assert abs(expected[0] - 0.6) < 0.05            # the generated chains carry what we asked
    d = g["distributions"]["dihedral"]
    h = np.histogram(ref, bins=d["edges"])[0]
    assert np.allclose(d["density"], h / (h.sum() * np.diff(d["edges"])))
