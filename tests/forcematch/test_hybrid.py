"""The one hybrid recipe, the one Boltzmann inversion, streaming accumulation, immutable
interactions and atomic normal-equation files (all through the public API)."""
import dataclasses
import math
import warnings

import numpy as np
import pytest

from cgkit.errors import InputError
from cgkit.forcematch import (IBI_DEFAULTS, IBISettings, Interaction, IterativeBoltzmannInversion,
                              NormalEquations, SparseSamplingWarning, SplineForceMatching, Table,
                              boltzmann_bonded_tables, boltzmann_table, hybrid_fit)
from cgkit.jsonutil import loads_strict
from cgkit.topology import Topology
from cgkit.units import KB_EV

from .conftest import RC, L
from .reference import lj_force


def _triatomic_liquid(n_frames=400, seed=0):
    """Independent A-B-A molecules with harmonic bond and angle sampled exactly from their
    Boltzmann distribution (no box)."""
    rng = np.random.default_rng(seed)
    kT = KB_EV * 300.0
    kb, r0, ka, t0 = 3.0, 2.5, 0.3, math.radians(140.0)
    n = n_frames

    def draw(logp, lo, hi, m):
        x = np.linspace(lo, hi, 4001)
        lp = logp(x)
        w = np.exp(lp - lp.max())
        cdf = np.cumsum(w) / w.sum()
        return np.interp(rng.uniform(size=m), cdf, x)
    r = draw(lambda x: 2 * np.log(x) - 0.5 * kb * (x - r0) ** 2 / kT, 1.5, 3.5, 2 * n)
    th = draw(lambda x: np.log(np.sin(x) + 1e-300) - 0.5 * ka * (x - t0) ** 2 / kT, 0.0, math.pi, n)
    pos = np.zeros((n, 3, 3))
    pos[:, 0, 0] = r[:n]
    pos[:, 2, 0] = r[n:] * np.cos(th)
    pos[:, 2, 1] = r[n:] * np.sin(th)
    top = Topology(n_particles=3, bonds=[[0, 1], [1, 2]], angles=[[0, 1, 2]])
    return pos, top


def test_ibi_and_fm_bonded_start_from_the_same_table_for_the_same_histogram(dimer_liquid):
    """`cgkit ibi` (IterativeBoltzmannInversion's start) and `cgkit fm --bonded` (hybrid_fit →
    boltzmann_bonded_tables) invert one histogram with one function: identical tables."""
    d = dimer_liquid
    for bins in (40, 100):
        ibi = IterativeBoltzmannInversion(["A"], np.zeros(32, int), d["topology"], 39.95, d["positions"],
                                          [L] * 3, d["positions"][-1], [L] * 3, temperature=150,
                                          pair_cutoff=5.5, bins=bins, kinds=("pair",))
        (fm_start,) = boltzmann_bonded_tables(["A"], np.zeros(32, int), d["topology"], d["positions"], [L] * 3,
                                              temperature=150, bins=bins)
        ibi_start = ibi.tables[("bond", ("A", "A"))]
        assert ibi_start.x0 == fm_start.x0 and ibi_start.dx == fm_start.dx
        assert np.array_equal(ibi_start.U, fm_start.U) and np.array_equal(ibi_start.dU, fm_start.dU)
    # and hybrid_fit uses exactly these bonded tables
    fit = hybrid_fit(["A"], np.zeros(32, int), d["topology"], d["positions"], d["cell"], temperature=150,
                     positions=d["positions"], forces=d["forces"], boxes=d["cell"], bins=100,
                     fm=dict(pair=(2.5, RC, 0.2), dihedral=None))
    assert np.array_equal(fit.bonded_tables[0].U, fm_start.U)


def test_one_edge_rule_bonded_tables_rise_at_least_kT_per_bin_beyond_the_samples():
    pos, top = _triatomic_liquid()
    kT = KB_EV * 300.0
    tabs = {t.kind: t for t in boltzmann_bonded_tables(["A", "B"], [0, 1, 0], top, pos, None, temperature=300.0,
                                                       bins=60)}
    b = tabs["bond"]
    r = np.concatenate([np.linalg.norm(pos[:, 1] - pos[:, 0], axis=1), np.linalg.norm(pos[:, 2] - pos[:, 1], axis=1)])
    beyond = b.x > r.max() + 3 * b.dx  # (two smoothing passes reach two bins)
    assert beyond.any()
    assert np.all(np.diff(b.U[beyond]) >= 0.999 * kT)
    below = b.x < r.min() - 3 * b.dx
    assert below.any() and np.all(np.diff(b.U[below]) <= -kT * 0.999)
    # within the well: the Boltzmann inverse of the harmonic bond (kb = 3 eV/Å², r0 = 2.5 Å)
    x = np.linspace(2.4, 2.6, 11)
    U = b(x)[0]
    ref = 0.5 * 3.0 * (x - 2.5) ** 2
    assert np.abs((U - U.mean()) - (ref - ref.mean())).max() < 0.5 * kT


def test_hybrid_fit_is_boltzmann_inversion_then_force_matching_with_fixed_tables(dimer_liquid):
    """hybrid_fit = boltzmann_bonded_tables + SplineForceMatching(fixed=...) by hand (the same
    coefficients), whether frames come as arrays or streamed in chunks; the pair it recovers is
    the reference LJ pair."""
    d = dimer_liquid
    P, F, cell = d["positions"], d["forces"], d["cell"]
    kw = dict(pair=(2.5, RC, 0.2), dihedral=None, block_size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        bonded = boltzmann_bonded_tables(["A"], np.zeros(32, int), d["topology"], P, cell, temperature=150)
        fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], bond=None, angle=None, fixed=bonded, **kw)
        fm.accumulate(P, F, cell, progress=False)
        by_hand = fm.solve()
    fit = hybrid_fit(["A"], np.zeros(32, int), d["topology"], P, cell, temperature=150, positions=P, forces=F,
                     boxes=cell, fm=kw)
    assert np.allclose(fit.fit.coefficients, by_hand.coefficients, rtol=1e-10, atol=1e-12)
    chunks = [(P[k:k + 17], F[k:k + 17], cell, list(range(k, min(k + 17, len(P))))) for k in range(0, len(P), 17)]
    streamed = hybrid_fit(["A"], np.zeros(32, int), d["topology"], P, cell, temperature=150, chunks=chunks, fm=kw)
    assert np.allclose(streamed.fit.coefficients, by_hand.coefficients, rtol=1e-8, atol=1e-10)
    assert streamed.normal_equations.n_frames == len(P)
    assert {t.label for t in fit.potential.tables} == {"pair A-A", "bond A-A"} and fit.ibi is None
    pair = fit.potential.table("pair", ("A", "A"))
    r = np.linspace(3.3, 5.5, 23)
    p = d["ref"].p
    fr = lj_force(r, p["sigma"], p["eps"], p["rc"])
    assert np.abs(pair(r)[1] - fr).max() < 0.1 * np.abs(fr).max()
    loads_strict(fit.to_json())


def test_hybrid_fit_with_ibi_refines_only_the_bonded_tables(dimer_liquid):
    d = dimer_liquid
    seen = []
    fit = hybrid_fit(["A"], np.zeros(32, int), d["topology"], d["positions"], d["cell"], temperature=150,
                     positions=d["positions"], forces=d["forces"], boxes=d["cell"],
                     fm=dict(pair=(2.5, RC, 0.2), dihedral=None), bins=55, masses=39.95,
                     ibi=IBISettings(iterations=2, md_steps=200, equilibration=20, timestep=4.0),
                     callback=lambda rec: seen.append(rec["iteration"]) or False)
    assert seen == [0] and len(fit.history) == 1  # the callback stopped the run after one iteration
    pair_fm = fit.fit.potential.table("pair", ("A", "A"))
    pair_final = fit.potential.table("pair", ("A", "A"))
    assert np.array_equal(pair_fm.U, pair_final.U)  # pairs kept
    assert not np.array_equal(fit.bonded_tables[0].U, fit.potential.table("bond", ("A", "A")).U)
    assert fit.ibi.alpha == IBI_DEFAULTS["alpha"] == 1.0
    s = loads_strict(fit.to_json())
    assert s["ibi"]["iterations"][0]["iteration"] == 0 and s["settings"]["ibi"]["md_steps"] == 200


def test_solve_does_not_touch_the_interactions_and_they_are_immutable(dimer_liquid):
    d = dimer_liquid
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.2),
                             bond=(0.8, 2.4, 0.1), grids={"bond A-A": (5.0, 6.0, 0.1)}, on_empty="drop")
    before = fm.interactions
    fm.accumulate(d["positions"][:20], d["forces"][:20], d["cell"], progress=False)
    with pytest.warns(SparseSamplingWarning, match="bond A-A: no samples"):
        res = fm.solve()
    assert fm.interactions is before and isinstance(before, tuple)
    assert [i["interaction"] for i in res.interactions] == ["pair A-A"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before[0].offset = 3
    it = Interaction.parse("pair  B-A")
    assert it == Interaction("pair", ("A", "B")) and str(it) == "pair A-B" and hash(it) == hash(Interaction("pair", "AB"))
    with pytest.raises(InputError, match="not an interaction label"):
        Interaction.parse("pairA-B")


def test_streaming_accumulation_needs_no_private_calls(dimer_liquid, tmp_path):
    """accumulate() per chunk + the normal_equations property (open block closed) give the
    same normal equations as one call, and they survive save/load."""
    d = dimer_liquid
    kw = dict(pair=(2.5, RC, 0.2), bond=(0.8, 2.4, 0.1), block_size=7)
    one = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], **kw)
    one.accumulate(d["positions"], d["forces"], d["cell"], progress=False)
    parts = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], **kw)
    for k in range(0, len(d["positions"]), 21):
        parts.accumulate(d["positions"][k:k + 21], d["forces"][k:k + 21], d["cell"], progress=False)
    a, b = one.normal_equations, parts.normal_equations
    assert np.allclose(a.A, b.A, rtol=1e-12, atol=1e-12) and a.n_frames == b.n_frames == len(d["positions"])
    assert sum(a.block_frames) == len(d["positions"])
    path = a.save(tmp_path / "ne.npz")
    assert np.allclose(NormalEquations.load(path).A, a.A)


def test_normal_equations_save_is_atomic_and_load_refuses_other_files(tmp_path, monkeypatch, dimer_liquid):
    d = dimer_liquid
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.2), bond=(0.8, 2.4, 0.1))
    fm.accumulate(d["positions"][:5], d["forces"][:5], d["cell"], progress=False)
    ne = fm.normal_equations
    target = tmp_path / "normal_equations.npz"

    def killed(file, **kw):  # a run killed while writing
        (open(file, "wb") if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__") else file).write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", killed)
    with pytest.raises(KeyboardInterrupt):
        ne.save(target)
    monkeypatch.undo()
    assert not target.exists() and not list(tmp_path.iterdir())
    ne.save(target)
    data = target.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    for bad in ("cut.npz", "text.npz", "other.npz"):
        with pytest.raises(InputError, match="not a cgkit normal-equations file"):
            NormalEquations.load(tmp_path / bad)


def test_non_finite_positions_or_forces_name_the_frame_and_beads(dimer_liquid):
    d = dimer_liquid
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.2), bond=(0.8, 2.4, 0.1))
    P = d["positions"][:10].copy()
    P[6, 15] = np.nan
    with pytest.raises(InputError, match=r"frame 16 of traj.trr: the positions of beads \[15\]") as e:
        fm.accumulate(P, d["forces"][:10], d["cell"], progress=False, frame_indices=range(10, 20),
                      source="traj.trr")
    assert "atoms" not in str(e.value)
    F = d["forces"][:10].copy()
    F[3, 2, 1] = np.inf
    fm2 = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.2), bond=(0.8, 2.4, 0.1))
    fm2.accumulate(d["positions"][:5], d["forces"][:5], d["cell"], progress=False)
    with pytest.raises(InputError, match=r"frame 8 of the trajectory: the forces of beads \[2\]"):
        fm2.accumulate(d["positions"][:10], F, d["cell"], progress=False)  # running count: 5 + 3


def test_summaries_are_strict_json_even_with_nan(dimer_liquid):
    d = dimer_liquid
    ibi = IterativeBoltzmannInversion(["A"], np.zeros(32, int), d["topology"], 39.95, d["positions"], [L] * 3,
                                      d["positions"][-1], [L] * 3, temperature=150, pair_cutoff=5.5, bins=55)
    ibi.history.append({"iteration": 0, "scores": {"pair A-A": {"js": float("nan"), "rms": float("inf")}},
                        "pressure_GPa": None})
    s = loads_strict(ibi.to_json())
    assert s["iterations"][0]["scores"]["pair A-A"] == {"js": None, "rms": "inf"}


def test_boltzmann_table_refuses_an_empty_distribution():
    from cgkit.forcematch import ForceMatchError
    x = np.linspace(1.0, 2.0, 50)
    with pytest.raises(ForceMatchError, match="bond A-A"):
        boltzmann_table("bond", ("A", "A"), x, np.zeros(50), KB_EV * 300)
    assert isinstance(boltzmann_table("pair", ("A", "A"), x, np.exp(-((x - 1.5) ** 2)), KB_EV * 300), Table)
