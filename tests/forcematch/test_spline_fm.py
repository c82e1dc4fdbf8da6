"""Spline MS-CG force matching: recovery of known forces, additivity, error handling."""
import math
import warnings

import numpy as np
import pytest

from cgkit.errors import InputError
from cgkit.forcematch import (ForceMatchError, NormalEquations, SparseSamplingWarning,
                              SplineForceMatching)
from cgkit.topology import Topology

from .conftest import RC
from .reference import lj_force


def _sampled(res, table):
    """Mask of the table points inside the sampled (fitted) range; outside are the walls."""
    info = {i["interaction"]: i for i in res.interactions}[table.label]
    lo, hi = info["table_range"]
    x = np.degrees(table.x) if table.kind in ("angle", "dihedral") else table.x
    return (x >= lo - 1e-9) & (x <= hi + 1e-9)


def _fit(d, **kw):
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.1),
                             bond=(0.8, 2.4, 0.05), **kw)
    fm.accumulate(d["positions"], d["forces"], d["cell"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        return fm, fm.solve()


@pytest.fixture(scope="module")
def dimer_fit(dimer_liquid):
    return _fit(dimer_liquid)


def test_identity_map_recovers_lj_pair_and_harmonic_bond_within_1_percent(dimer_fit):
    fm, res = dimer_fit
    p = res.potential.table("pair", ("A", "A"))
    m = _sampled(res, p)
    fref = lj_force(p.x[m], 3.4, 0.0104, RC)
    err = np.abs(p.force[m] - fref).max() / np.ptp(fref)
    assert err < 0.01, f"pair force error {err:.2%} of its range"
    b = res.potential.table("bond", ("A", "A"))
    mb = _sampled(res, b)
    bref = -10.0 * (b.x[mb] - 1.5)
    berr = np.abs(b.force[mb] - bref).max() / np.ptp(bref)
    assert berr < 0.01, f"bond force error {berr:.2%} of its range"
    # beyond the sampled range the tables continue with confining walls
    assert np.all(np.diff(p.U[~m][:20]) < 0) and np.all(b.force[b.x < b.x[mb][0]] > 0)
    assert np.all(b.force[b.x > b.x[mb][-1]] < 0)
    # potential: integrated, zero at the cutoff, equal to the shifted-force LJ up to resolution
    s6 = (3.4 / p.x[m]) ** 6
    s6c = (3.4 / RC) ** 6
    uref = 4 * 0.0104 * ((s6 * s6 - s6) - (s6c * s6c - s6c)) + (p.x[m] - RC) * lj_force(RC, 3.4, 0.0104, 1e9)
    assert p.U[-1] == 0.0
    assert np.abs(p.U[m] - uref).max() < 0.01 * np.ptp(uref)
    # bonded potential has its minimum at zero, at r0
    assert b.U.min() == 0.0 and abs(b.x[np.argmin(b.U)] - 1.5) < 0.02
    # mapped-force residual is tiny for exact forces (noise-free)
    assert res.residual["A"]["rms_residual_eV_per_A"] < 0.01 * res.residual["A"]["rms_force_eV_per_A"]


def test_fitted_potential_reproduces_reference_forces_on_a_frame(dimer_liquid, dimer_fit):
    from cgkit.data import AtomicGraph
    fm, res = dimer_fit
    x = dimer_liquid["positions"][-1]
    g = AtomicGraph.from_arrays(x, dimer_liquid["cell"], True, res.potential.cutoff,
                                type_names=("A",))
    f = res.potential.compute(g)["forces"].numpy()
    ref = dimer_liquid["forces"][-1]
    assert np.abs(f - ref).max() < 0.01 * np.abs(ref).max()


def test_bonded_angle_and_dihedral_forces_recovered(chains):
    top = chains["topology"]
    fm = SplineForceMatching(["A", "B"], chains["species"], top, pair=None, bond=(1.1, 1.9, 0.05),
                             angle=(40.0, 180.0, 5.0), dihedral=15.0)
    fm.accumulate(chains["positions"], chains["forces"], None, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        res = fm.solve()
    pot = res.potential
    assert {t.label for t in pot.tables} == {"bond A-B", "bond B-B", "angle A-B-B", "dihedral A-B-B-A"}
    for kind, types, fref in [
        ("bond", ("A", "B"), lambda x: -10.0 * (x - 1.5)),
        ("bond", ("B", "B"), lambda x: -10.0 * (x - 1.5)),
        ("angle", ("A", "B", "B"), lambda x: -2.0 * (x - math.radians(110))),
        ("dihedral", ("A", "B", "B", "A"), lambda x: 3 * 0.05 * np.sin(3 * x)),
    ]:
        t = pot.table(kind, types)
        m = _sampled(res, t) if kind != "dihedral" else np.ones(len(t.x), bool)
        ref = fref(t.x[m])
        err = np.abs(t.force[m] - ref).max() / np.ptp(ref)
        assert err < 0.01, f"{t.label}: error {err:.2%} of the force range"
    # the fitted potential's Cartesian forces reproduce the reference forces (frames whose bonds
    # and angles all fall inside the fitted ranges; elsewhere the tables continue linearly)
    from cgkit.data import AtomicGraph
    errs = []
    for x, f in zip(chains["positions"], chains["forces"]):
        g = AtomicGraph.from_arrays(x, np.zeros((3, 3)), False, 1.0, species=chains["species"],
                                    type_names=("A", "B"))
        errs.append(np.abs(pot.compute(g)["forces"].numpy() - f).max() / np.abs(f).max())
    assert np.median(errs) < 1e-3


def test_normal_equations_from_chunks_add_up_to_the_full_run(dimer_liquid, tmp_path):
    d = dimer_liquid
    kw = dict(pair=(2.5, RC, 0.2), bond=(0.8, 2.4, 0.1), block_size=5)
    full = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], **kw)
    full.accumulate(d["positions"], d["forces"], d["cell"], progress=False)
    parts = []
    for chunk in np.array_split(np.arange(len(d["positions"])), 3):
        fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], **kw)
        fm.accumulate(d["positions"][chunk], d["forces"][chunk], d["cell"], progress=False)
        fm.normal_equations.save(tmp_path / f"ne{chunk[0]}.npz")
        parts.append(tmp_path / f"ne{chunk[0]}.npz")
    comb = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], **kw)
    for p in parts:
        comb.add(NormalEquations.load(p))
    assert np.allclose(comb.normal_equations.A, full.normal_equations.A, rtol=1e-12, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        c1 = full.solve().coefficients
        c2 = comb.solve().coefficients
    assert np.allclose(c1, c2, rtol=1e-6, atol=1e-8)
    # the same grids are required to combine
    other = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.1),
                                bond=(0.8, 2.4, 0.1))
    with pytest.raises(InputError, match="different interactions or grids"):
        other.add(NormalEquations.load(parts[0]))


def test_jackknife_error_bars_track_force_noise(dimer_liquid):
    d = dimer_liquid
    rng = np.random.default_rng(0)
    noise = 0.05  # eV/Å per component
    F = d["forces"] + rng.normal(scale=noise, size=d["forces"].shape)
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(3.0, RC, 0.2),
                             bond=(1.2, 1.8, 0.1), block_size=10)
    fm.accumulate(d["positions"], F, d["cell"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        res = fm.solve(smooth=1e-6)
    info = {i["interaction"]: i for i in res.interactions}
    t = res.potential.table("pair", ("A", "A"))
    sel = t.x > 3.6  # well sampled
    err = np.abs(t.force - lj_force(t.x, 3.4, 0.0104, RC))[sel]
    sig = np.asarray(info["pair A-A"]["force_error"])[sel]
    ratio = np.sqrt(np.mean(err ** 2) / np.mean(sig ** 2))
    assert 0.3 < ratio < 3.0, f"rms error / rms jackknife error = {ratio:.2f}"
    # noise floor: the residual equals the added noise
    r = res.residual["A"]["rms_residual_eV_per_A"]
    assert abs(r - noise) < 0.1 * noise


def test_trajectory_without_forces_is_rejected(dimer_liquid):
    d = dimer_liquid
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.1))
    with pytest.raises(InputError, match="no forces"):
        fm.accumulate(d["positions"], None, d["cell"])
    with pytest.raises(InputError, match="no forces"):
        fm.accumulate(d["positions"], np.zeros_like(d["positions"]), d["cell"])
    bad = d["forces"].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fm.accumulate(d["positions"], bad, d["cell"])


def test_mapping_not_matching_topology_is_rejected(dimer_liquid):
    d = dimer_liquid
    with pytest.raises(InputError, match="do not match"):
        SplineForceMatching(["A"], np.zeros(30, int), d["topology"])
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.1))
    with pytest.raises(InputError, match="does not match"):
        fm.accumulate(d["positions"][:, :30], d["forces"][:, :30], d["cell"])


def test_interaction_without_samples_raises_or_is_dropped_with_its_name(dimer_liquid):
    d = dimer_liquid
    kw = dict(pair=(2.5, RC, 0.1), bond=(0.8, 2.4, 0.05), grids={"bond A-A": (3.0, 4.0, 0.1)})
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], **kw)
    fm.accumulate(d["positions"][:10], d["forces"][:10], d["cell"], progress=False)
    with pytest.raises(ForceMatchError, match=r"bond A-A: no samples in its grid range \[3, 4\] Å"):
        fm.solve()
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], on_empty="drop", **kw)
    fm.accumulate(d["positions"][:10], d["forces"][:10], d["cell"], progress=False)
    with pytest.warns(SparseSamplingWarning, match="bond A-A: no samples"):
        res = fm.solve()
    assert [t.label for t in res.tables] == ["pair A-A"]


def test_sparse_bins_warn_with_range_and_lstsq_names_singular_interaction(dimer_liquid):
    d = dimer_liquid
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(1.0, RC, 0.1),
                             bond=(0.8, 2.4, 0.05))
    fm.accumulate(d["positions"][:20], d["forces"][:20], d["cell"], progress=False)
    with pytest.warns(SparseSamplingWarning, match=r"pair A-A: fewer than 10 samples .* \[1, "):
        res = fm.solve()
    t = res.potential.table("pair", ("A", "A"))
    info = {i["interaction"]: i for i in res.interactions}["pair A-A"]
    assert info["table_range"][0] > 2.8  # the fit is kept on the sampled range only
    assert np.all(np.isfinite(t.U)) and np.all(np.isfinite(t.force))
    assert np.all(t.force[t.x < info["table_range"][0]] > 0)  # repulsive wall below it
    with pytest.raises(ForceMatchError, match=r"singular normal matrix: no samples determine pair A-A for x in \[1, "):
        fm.solve(method="lstsq")


def test_grid_wider_than_data_gives_singular_matrix_error_naming_the_bond():
    rng = np.random.default_rng(2)
    pos = rng.uniform(0, 8, size=(30, 2, 3))
    F = rng.normal(size=(30, 2, 3))
    top = Topology(n_particles=2, bonds=[(0, 1)], exclusions=[(0, 1)])
    fm = SplineForceMatching(["A", "B"], [0, 1], top, pair=None, bond=(0.0, 15.0, 1.0),
                             grids={})
    fm.accumulate(pos, F, None, progress=False)
    # most of the 0-15 Å grid has no samples (random pairs in an 8 Å box) → singular
    with pytest.raises(ForceMatchError, match="bond A-B"):
        fm.solve(method="lstsq")
