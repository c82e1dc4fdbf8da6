"""properties.water_structure against analytic limits: a diamond lattice (perfect tetrahedra:
q = 1, triplet angle 109.47°) and an ideal gas (g(r) = 1, ⟨q⟩ = 0, triplet angles ∝ sin θ)."""
from __future__ import annotations

import numpy as np
import pytest

from cgkit.stats import Distribution, js_divergence
from cgkit.properties.water_structure import WaterStructure, compare_structures, tetrahedral_q, triplet_angles


def _diamond(a=4.5, n=3):
    basis = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    basis = np.r_[basis, basis + 0.25]
    cells = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)])
    return ((cells[:, None, :] + basis[None]) * a).reshape(-1, 3), np.full(3, n * a)


def test_diamond_lattice_is_perfectly_tetrahedral():
    x, L = _diamond()
    q = tetrahedral_q(x, L)
    np.testing.assert_allclose(q, 1.0, atol=1e-12)
    d_nn = 4.5 * np.sqrt(3) / 4                       # 1.95 Å; second neighbours at 3.18 Å
    ang = triplet_angles(x, L, 0.5 * (d_nn + 4.5 / np.sqrt(2)))
    assert len(ang) == 6 * len(x)
    np.testing.assert_allclose(ang, np.degrees(np.arccos(-1 / 3)), atol=1e-9)


def test_ideal_gas_limits():
    rng = np.random.default_rng(0)
    L = np.full(3, 24.0)
    frames = [(rng.uniform(0, 24, (400, 3)), L) for _ in range(20)]
    s = WaterStructure(frames, bead_mass=18.0, r_max=10.0, r_shell=4.0, rdf_bins=50).run()
    r = np.asarray(s.results["rdf"]["r"])
    g = np.asarray(s.results["rdf"]["g"])
    sel = r > 3
    assert abs(g[sel].mean() - 1) < 0.02
    assert abs(s.results["q"]["mean"]) < 4 * s.results["q"]["stderr"] + 0.01
    e = np.asarray(s.results["triplet_angle"]["edges"])
    th = np.radians(e)
    sine = Distribution(e, np.cos(th[:-1]) - np.cos(th[1:]))
    assert js_divergence(s.distribution("triplet_angle"), sine) < 0.005
    assert s.results["number_density_per_A3"] == pytest.approx(400 / 24 ** 3)
    c = compare_structures(s, s)
    assert c["triplet_angle_js"] == 0 and c["rdf_first_peak_ratio"] == 1
