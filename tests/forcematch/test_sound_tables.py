"""Physically sound force-matched tables: zero angle slope at 180°, monotonic walls beyond the
sampled range, stable CG MD of near-linear molecules, sampling-range flags in validation."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from cgkit.forcematch import SplineForceMatching, suggest_grids
from cgkit.forcematch.interaction import Interaction
from cgkit.forcematch.tabulated import Table
from cgkit.forcematch.validate import outside_fraction
from cgkit.forcematch.walls import add_walls
from cgkit.topology import Topology

ROOT = Path(__file__).resolve().parents[2]
HEXANE = ROOT / "case_studies" / "hexane" / "data"
KB, R0 = 5.0, 2.5       # eV/Å², Å
KA = 2.0                # eV/rad², U = KA (θ - π)²
KT = 0.025852           # eV at 300 K


def _trimers(n_mol=40, n_frames=30, noise=0.3, seed=0):
    """Isolated A-B-A trimers (no box) sampled from U = KB Σ(r - R0)² + KA (θ - π)² at 300 K,
    with the exact forces plus Gaussian noise (eV/Å) standing in for the thermal noise of
    mapped forces."""
    rng = np.random.default_rng(seed)
    P, F = [], []
    for _ in range(n_frames):
        pos, frc = [], []
        for m in range(n_mol):
            r1, r2 = R0 + rng.normal(0, math.sqrt(KT / (2 * KB)), 2)
            while True:  # p(θ) ∝ sin θ exp(-KA (θ-π)²/kT)
                th = math.pi - abs(rng.normal(0, math.sqrt(KT / (2 * KA))))
                if rng.uniform() < math.sin(th) / max(math.pi - th, 1e-12) * 0.999:
                    break
            R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
            c = np.array([30.0 * m, 0, 0])
            x1 = c + R @ np.array([r1, 0, 0])
            x3 = c + R @ np.array([r2 * math.cos(th), r2 * math.sin(th), 0])
            X = np.array([x1, c, x3])
            b1, b2 = X[0] - X[1], X[2] - X[1]
            n1, n2 = np.linalg.norm(b1), np.linalg.norm(b2)
            f = np.zeros((3, 3))
            f[0] -= 2 * KB * (n1 - R0) * b1 / n1
            f[2] -= 2 * KB * (n2 - R0) * b2 / n2
            f[1] -= f[0] + f[2]
            cs = b1 @ b2 / (n1 * n2)
            dth = -1 / math.sqrt(max(1 - cs * cs, 1e-300))
            g1 = (b2 / (n1 * n2) - cs * b1 / n1 ** 2) * dth
            g3 = (b1 / (n1 * n2) - cs * b2 / n2 ** 2) * dth
            fa = -2 * KA * (math.acos(np.clip(cs, -1, 1)) - math.pi)
            f[0] += fa * g1
            f[2] += fa * g3
            f[1] -= fa * (g1 + g3)
            pos.append(X)
            frc.append(f)
        P.append(np.concatenate(pos))
        F.append(np.concatenate(frc) + rng.normal(0, noise, (3 * n_mol, 3)))
    n = 3 * n_mol
    top = Topology(n_particles=n, bonds=np.array([[3 * m + a, 3 * m + 1] for m in range(n_mol) for a in (0, 2)]),
                   angles=np.array([[3 * m, 3 * m + 1, 3 * m + 2] for m in range(n_mol)]),
                   molecule=np.repeat(np.arange(n_mol), 3))
    return np.array(P), np.array(F), top


def _fit_trimers(**solve_kw):
    P, F, top = _trimers()
    sp = np.tile([0, 1, 0], len(P[0]) // 3)
    fm = SplineForceMatching(("A", "B"), sp, top, pair=None, bond=(2.0, 3.0, 0.05), angle=(120.0, 180.0, 5.0),
                             dihedral=None, block_size=5)
    fm.accumulate(P, F, None, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.solve(**solve_kw), top, sp


def test_angle_slope_vanishes_at_180():
    res, _, _ = _fit_trimers()
    t = next(t for t in res.tables if t.kind == "angle")
    info = next(i for i in res.interactions if i["kind"] == "angle")
    assert abs(t.x_max - math.pi) < 1e-9
    noise = np.nanmedian(np.asarray(info["force_error"])[t.x > math.radians(160)])
    assert noise > 0
    assert abs(t.dU[-1]) < 1e-9 * max(1.0, noise)  # exactly zero, far below the fit noise
    _, f = t(np.array([math.pi - 1e-4, math.pi]))
    assert np.all(np.abs(f) < 0.05 * noise)
    # the fitted law is recovered where sampled (f = -2 KA (θ - π))
    x = np.radians(np.linspace(168, 178, 6))
    assert np.allclose(t(x)[1], -2 * KA * (x - math.pi), atol=5 * noise + 0.03)


def test_stiff_near_linear_trimer_md_conserves_energy():
    """NVE CG MD of the fitted stiff near-linear trimers: a non-zero dU/dθ at 180° would kick the
    beads with forces ∝ 1/sin θ whenever a molecule straightens (energy jumps, blow-up)."""
    from cgkit.md import MolecularDynamics
    res, top, sp = _fit_trimers()
    P, _, _ = _trimers(n_frames=1, seed=5)
    n = len(sp)
    md = MolecularDynamics(res.potential, positions=P[0], cell=np.eye(3) * 1300.0, pbc=True,
                           masses=np.tile([29.0, 28.0, 29.0], n // 3), species=sp, type_names=("A", "B"),
                           timestep=1.0, integrator="verlet", temperature=300.0, log_every=10,
                           progress=False, seed=0, min_distance=0.0)
    md.run(600)
    e = np.asarray(md.results.total_energy)
    assert np.all(np.isfinite(e))
    assert np.ptp(e) < 0.02 * n * KT  # tiny compared with the kinetic energy (~1.5 n kT)


def test_forces_continuous_through_linear_trimer():
    """A PMF smooth in Cartesian coordinates: the bead forces of the fitted model are continuous
    when a trimer passes through the linear configuration (a non-zero dU/dθ at 180° is a cusp:
    the force perpendicular to the axis flips sign, by 2|dU/dθ(π)|/r)."""
    import torch

    from cgkit.data import AtomicGraph
    res, _, _ = _fit_trimers()
    pot = res.potential
    t = pot.table("angle", ("A", "B", "A"))
    sp = np.array([0, 1, 0])
    from cgkit.forcematch.tabulated import TabulatedPotential
    one = TabulatedPotential(("A", "B"), Topology(n_particles=3, bonds=np.array([[0, 1], [1, 2]]),
                                                  angles=np.array([[0, 1, 2]])), pot.tables)
    F = []
    for eps in (1e-4, -1e-4):
        X = np.array([[-R0, 0.0, 0.0], [0.0, eps, 0.0], [R0, 0.0, 0.0]])
        g = AtomicGraph.from_arrays(X, np.zeros((3, 3)), np.zeros(3, bool), 1.0, species=sp, type_names=("A", "B"))
        F.append(one.compute(g)["forces"].detach().numpy())
    jump = np.abs(F[0] - F[1]).max()
    assert jump < 1e-3 * abs(2 * KA * 0.1) + 1e-6, (jump, t.dU[-1])


def _local_minima_outside(t: Table, lo: float, hi: float) -> list:
    U, x = t.U, t.x
    i = np.nonzero((U[1:-1] < U[:-2]) & (U[1:-1] <= U[2:]))[0] + 1
    return [float(x[k]) for k in i if x[k] < lo - 1e-9 or x[k] > hi + 1e-9]


@pytest.mark.parametrize("slope", [-0.5, 0.0, 0.3])  # eV/Å at the closest sampled distance
def test_pair_wall_never_digs_a_well(slope):
    """A fitted pair table whose slope at its first (closest sampled) point is attractive
    (wrong way) is continued by a wall that rises monotonically towards r → 0."""
    x = np.linspace(3.1, 10.0, 200)
    U = 0.02 * np.cos(x) * np.exp(-(x - 3.1))
    dU = np.gradient(U, x)
    dU[0] = slope
    t, _ = add_walls(Table("pair", ("B", "B"), x[0], x[1] - x[0], U - U[-1], dU), None, lower=True, upper=False)
    below = t.x < 3.1 - 1e-9
    assert below.sum() > 10
    assert np.all(t.dU[below] <= 1e-12)  # repulsive all the way in
    assert t.U[below].min() >= t.U[np.argmin(np.abs(t.x - 3.1))] - 1e-12
    assert not _local_minima_outside(t, 3.1, 10.0)


def _hexane_fit(n_frames=20):
    from cgkit.trajectory import read_cg_arrays
    P, F, B, tn, sp, _, top = read_cg_arrays(HEXANE / "hexane_cg.psf", HEXANE / "hexane_cg.trr")
    g = suggest_grids(tn, sp, top, P[:10], B[:10], pair_cutoff=10.0)
    grids = {k: (v[0], v[1], {"pair": 0.1, "bond": 0.02, "angle": 4.0}[k.split()[0]]) for k, v in g.items()}
    fm = SplineForceMatching(tn, sp, top, pair=None, bond=None, angle=None, dihedral=None, grids=grids)
    fm.accumulate(P[:n_frames], F[:n_frames], B[:n_frames], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.solve(), (P, B, tn, sp, top)


def _check_no_minimum_outside(res):
    for t, info in zip(res.tables, res.interactions):
        if t.kind == "dihedral":
            continue
        lo, hi = info["table_range"]
        if t.kind == "angle":
            lo, hi = math.radians(lo), math.radians(hi)
        assert not _local_minima_outside(t, lo, hi), (t.label, lo, hi)
        if t.kind == "angle":
            assert abs(t.dU[0]) < 1e-9 and abs(t.dU[-1]) < 1e-9, t.label


def test_fitted_tables_have_no_minimum_outside_sampled_range():
    res, _ = _hexane_fit()
    _check_no_minimum_outside(res)
    res2, _, _ = _fit_trimers()
    _check_no_minimum_outside(res2)


def test_boltzmann_tables_have_no_minimum_outside_sampled_range():
    from cgkit.forcematch import boltzmann_bonded_tables
    from cgkit.trajectory import read_cg_arrays
    P, F, B, tn, sp, _, top = read_cg_arrays(HEXANE / "hexane_cg.psf", HEXANE / "hexane_cg.trr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = boltzmann_bonded_tables(tn, sp, top, P[:40], B[:40], temperature=300.0)
    from cgkit.forcematch.validate import bonded_samples
    names = np.asarray(tn)[sp]
    for t in tables:
        s = bonded_samples(t.kind, P[:40], B[:40], names, top)[t.types]
        lo, hi = (s.min(), s.max()) if t.kind == "bond" else (math.radians(s.min()), math.radians(s.max()))
        assert not _local_minima_outside(t, lo, hi), t.label


def test_validation_flags_sampling_outside_reference():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 20000)
    same = outside_fraction(ref, rng.normal(0, 1, 20000))
    assert not same["flagged"] and same["count"] <= same["expected"] + 3 * math.sqrt(same["expected"]) + 3
    shifted = outside_fraction(ref, np.concatenate([rng.normal(0, 1, 19980), np.full(20, -6.0)]))
    assert shifted["flagged"] and shifted["count"] >= 20
    assert shifted["fraction"] == pytest.approx(shifted["count"] / 20000)


def test_structural_validation_reports_pairs_closer_than_reference():
    """CG frames with a few B-B pairs closer than any in the reference are flagged even though
    their JS divergence is small (the hexane false-well symptom)."""
    from cgkit.forcematch import StructuralValidation
    from cgkit.trajectory import read_cg_arrays
    P, F, B, tn, sp, _, top = read_cg_arrays(HEXANE / "hexane_cg.psf", HEXANE / "hexane_cg.trr")
    ref, test = P[:6], P[6:12].copy()
    b_beads = np.nonzero(np.asarray(sp) == tn.index("B"))[0]
    for f in range(len(test)):  # move 5 B beads next to another molecule's B bead (2.6 Å)
        for k in range(5):
            i, j = b_beads[2 * k + 10 * f], b_beads[2 * k + 1 + 10 * f]
            d = test[f, i] - test[f, j]
            test[f, i] = test[f, j] + 2.6 * d / np.linalg.norm(d)
    v = StructuralValidation(ref, test, tn, sp, top, reference_boxes=B[:6], test_boxes=B[6:12]).run()
    s = v.summary()
    assert s["rdf"]["pair B-B"]["outside_reference"]["flagged"]
    assert s["rdf"]["pair B-B"]["outside_reference"]["count"] >= 30
    assert "pair B-B" in s["sampling_outside_reference"]
    assert s["rdf"]["pair B-B"]["js_divergence_r2g"] < 0.01


@pytest.mark.slow
def test_hexane_case_study_tables_are_sound(tmp_path):
    """The tables the hexane case study makes (its final model after hybrid FM + IBI, quick run):
    no minimum outside the mapped data's sampled range, angle slope zero at 0° and 180°."""
    import subprocess
    import sys

    from cgkit.io_potential import load_potential
    from cgkit.trajectory import read_cg_arrays
    from cgkit.forcematch.validate import bonded_samples
    r = subprocess.run([sys.executable, str(ROOT / "case_studies" / "hexane" / "run.py"), "--quick", "--no-neural",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=3000,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pot = load_potential(tmp_path / "out" / "cg_potential.pt")
    P, F, B, tn, sp, _, top = read_cg_arrays(HEXANE / "hexane_cg.psf", HEXANE / "hexane_cg.trr")
    names = np.asarray(tn)[sp]
    from cgkit.forcematch.validate import rdf
    closest = rdf(P[::10], B[::10], names, top, 12.0, details=True)[3]
    for t in pot.tables:
        if t.kind == "pair":
            assert not _local_minima_outside(t, closest[t.types]["r_min"], t.x_max), t.label
        else:
            s = bonded_samples(t.kind, P, B, names, top)[t.types]
            lo, hi = (s.min(), s.max()) if t.kind == "bond" else (math.radians(s.min()), math.radians(s.max()))
            assert not _local_minima_outside(t, lo, hi), t.label
        if t.kind == "angle":
            assert abs(t.x0) < 1e-9 and abs(t.x_max - math.pi) < 1e-9, t.label
            assert abs(t.dU[0]) < 1e-9 and abs(t.dU[-1]) < 1e-9, t.label
