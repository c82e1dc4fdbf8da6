"""Regression for the hexane A-B-A angle (issue 5): hybrid force matching.

Diagnosis: with every interaction force-matched, CG MD of hexane bends the molecules (CG mean
angle 128-141 deg vs 155-157 deg mapped, JS 0.14-0.28), with 21 or 200 frames alike. The halves
of the data give the same angle table, and the bonded-only CG MD with Boltzmann-inverted tables
reproduces the angle (below), so neither the data volume nor the angle forces/MD are at fault:
the separable basis cannot hold the torsion-coupled mean force. The fix is the hybrid scheme —
bonded terms fixed (Boltzmann inversion, optionally IBI), pairs force-matched on the rest.
"""
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from cgkit.forcematch import (SparseSamplingWarning, SplineForceMatching, Table,
                              TabulatedPotential, boltzmann_bonded_tables)
from cgkit.md import MolecularDynamics
from cgkit.topology import Topology
from cgkit.units import KB_EV

from .conftest import RC
from .reference import lj_force

DATA = Path(__file__).resolve().parents[2] / "case_studies" / "hexane" / "data"


def _harmonic_bond_table(k, r0, lo=0.5, hi=2.5, n=401):
    x = np.linspace(lo, hi, n)
    return Table("bond", ("A", "A"), x[0], x[1] - x[0], 0.5 * k * (x - r0) ** 2, k * (x - r0))


def test_fixed_bond_forces_are_subtracted_and_pair_is_recovered_within_1_percent(dimer_liquid):
    d = dimer_liquid
    fixed = [_harmonic_bond_table(10.0, 1.5)]  # the reference bond of the dimer liquid
    fm = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.1),
                             bond=(0.8, 2.4, 0.05), fixed=fixed)
    assert [it.label for it in fm.interactions] == ["pair A-A"]  # the bond is not fitted
    # the subtracted forces are those of the fixed table: compare with an independent route
    p0 = d["positions"][0]
    fb = fm.fixed_forces(p0, d["cell"])
    bonds = d["topology"].bonds
    v = p0[bonds[:, 1]] - p0[bonds[:, 0]]
    v -= d["cell"][0, 0] * np.round(v / d["cell"][0, 0])
    r = np.linalg.norm(v, axis=1)
    f_on_1 = (-10.0 * (r - 1.5))[:, None] * v / r[:, None]
    ref = np.zeros_like(p0)
    np.add.at(ref, bonds[:, 1], f_on_1)
    np.add.at(ref, bonds[:, 0], -f_on_1)
    assert np.abs(fb - ref).max() < 1e-8
    fm.accumulate(d["positions"], d["forces"], d["cell"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        res = fm.solve()
    p = res.potential.table("pair", ("A", "A"))
    info = {i["interaction"]: i for i in res.interactions}
    lo, hi = info["pair A-A"]["table_range"]
    m = (p.x >= lo) & (p.x <= hi)
    fref = lj_force(p.x[m], 3.4, 0.0104, RC)
    assert np.abs(p.force[m] - fref).max() / np.ptp(fref) < 0.01
    assert info["bond A-A"]["fixed"] is True
    assert res.potential.table("bond", ("A", "A")) is fixed[0]
    # the model (fixed bond + fitted pair) explains the exact reference forces
    assert res.residual["A"]["rms_residual_eV_per_A"] < 0.01 * np.sqrt(np.mean(d["forces"] ** 2))
    # a wrong fixed bond (zero force) leaves the bond forces unexplained
    fm0 = SplineForceMatching(["A"], np.zeros(32, int), d["topology"], pair=(2.5, RC, 0.1),
                              bond=None, fixed=[_harmonic_bond_table(0.0, 1.5)])
    fm0.accumulate(d["positions"], d["forces"], d["cell"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        res0 = fm0.solve()
    assert res0.residual["A"]["rms_residual_eV_per_A"] > 10 * res.residual["A"]["rms_residual_eV_per_A"]


def _sample(rng, n, logp, lo, hi):
    """Rejection sampling of n values from exp(logp) on [lo, hi]."""
    grid = np.linspace(lo, hi, 2001)
    pmax = np.exp(logp(grid)).max() * 1.01
    out = []
    while sum(len(o) for o in out) < n:
        x = rng.uniform(lo, hi, 4 * n)
        out.append(x[rng.uniform(0, pmax, len(x)) < np.exp(logp(x))])
    return np.concatenate(out)[:n]


def test_boltzmann_inversion_recovers_analytic_bond_and_angle_potentials():
    """Samples drawn from P(r) ∝ r² e^{-U_b/kT}, P(θ) ∝ sin θ e^{-U_θ/kT} (exact Jacobians);
    the inverted tables must equal U_b, U_θ (up to a constant) where sampled."""
    rng = np.random.default_rng(5)
    kT = KB_EV * 300.0
    kb, r0, ka, t0 = 3.0, 2.55, 0.25, math.radians(150.0)
    n = 60000
    r = _sample(rng, 2 * n, lambda x: 2 * np.log(x) - 0.5 * kb * (x - r0) ** 2 / kT, 1.8, 3.3)
    th = _sample(rng, n, lambda x: np.log(np.sin(x) + 1e-300) - 0.5 * ka * (x - t0) ** 2 / kT, 0.0, math.pi)
    pos = np.zeros((n, 3, 3))
    pos[:, 0, 0] = r[:n]
    pos[:, 2, 0] = r[n:] * np.cos(th)
    pos[:, 2, 1] = r[n:] * np.sin(th)
    # one 3-bead molecule A1-B-A2 per "frame" (B at the origin), no box
    top = Topology(n_particles=3, bonds=[[0, 1], [1, 2]], angles=[[0, 1, 2]])
    tabs = {t.kind: t for t in boltzmann_bonded_tables(["A", "B"], [0, 1, 0], top, pos, None,
                                                       temperature=300.0)}
    a = tabs["angle"]
    x = np.radians(np.arange(120.0, 176.0, 1.0))  # within ~2σ of the peak of P(θ)
    U = a(x)[0]
    Uref = 0.5 * ka * (x - t0) ** 2
    dev = (U - U.mean()) - (Uref - Uref.mean())
    assert np.abs(dev).max() < 0.5 * kT, f"angle BI deviates by {np.abs(dev).max() / kT:.2f} kT"
    b = tabs["bond"]
    xb = np.linspace(r0 - 0.15, r0 + 0.15, 31)
    Ub = b(xb)[0]
    Ubr = 0.5 * kb * (xb - r0) ** 2
    devb = (Ub - Ub.mean()) - (Ubr - Ubr.mean())
    assert np.abs(devb).max() < 0.5 * kT, f"bond BI deviates by {np.abs(devb).max() / kT:.2f} kT"
    # beyond the sampled range the tables confine (no folding towards small angles)
    assert a(np.radians([30.0]))[0][0] > a(np.radians([100.0]))[0][0] > U.min()


def _hexane():
    mda = pytest.importorskip("MDAnalysis")
    if not (DATA / "hexane_cg.trr").exists():
        pytest.fail(f"{DATA}/hexane_cg.trr is missing: run case_studies/hexane/make_aa_trajectory.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(DATA / "hexane_cg.psf"), str(DATA / "hexane_cg.trr"))
    P = np.array([ts.positions.astype(float) for ts in u.trajectory])
    box = u.dimensions[:3].astype(float)
    sp = np.array([["A", "B"].index(str(t)) for t in u.atoms.types])
    return P, box, sp, np.asarray(u.atoms.masses, float), u.bonds.indices, u.angles.indices


def _topology(n, bonds, angles):
    bonds = bonds[np.all(bonds < n, axis=1)]
    angles = angles[np.all(angles < n, axis=1)]
    return Topology(n_particles=n, bonds=bonds, angles=angles,
                    exclusions=Topology.from_bonds(n, bonds, exclude=2).exclusions)


def test_hexane_boltzmann_bonded_tables_reproduce_mapped_bond_and_angle_in_cg_md():
    """On the GROMACS hexane data: CG MD with the inverted bond/angle tables (intramolecular
    1-2/1-3 pairs excluded, no other interactions) gives the mapped distributions, JS < 0.01."""
    from cgkit.forcematch.validate import bonded_samples
    from cgkit.stats import Distribution, js_divergence
    P, box, sp, masses, bonds, angles = _hexane()
    top = _topology(len(sp), bonds, angles)
    tabs = boltzmann_bonded_tables(["A", "B"], sp, top, P, box, temperature=300.0)
    n = 3 * 80  # CG MD of 80 molecules
    sub = _topology(n, bonds, angles)
    pot = TabulatedPotential(["A", "B"], sub, tabs)
    md = MolecularDynamics(pot, positions=P[-1, :n], cell=np.diag(box), masses=masses[:n], species=sp[:n],
                           type_names=("A", "B"), timestep=5.0, temperature=300.0, log_every=0,
                           progress=False, seed=4)
    md.run(300)
    md.store_every = 20
    md.run(3000)
    X = md.results.positions[:, 0]
    names = np.array(["A", "B"])[sp]
    for kind, key, lo, hi in (("bond", ("A", "B"), 2.0, 3.1), ("angle", ("A", "B", "A"), 60.0, 180.0)):
        ref = bonded_samples(kind, P, box, names, top)[key]
        cg = bonded_samples(kind, X, box, names[:n], sub)[key]
        js = js_divergence(Distribution.from_samples(ref, bins=50, range=(lo, hi)),
                           Distribution.from_samples(cg, bins=50, range=(lo, hi)))
        assert js < 0.01, f"{kind}: JS {js:.4f}, mean {cg.mean():.3f} vs mapped {ref.mean():.3f}"
        assert abs(cg.mean() - ref.mean()) < (0.01 if kind == "bond" else 1.5)


def test_boltzmann_inversion_of_too_few_samples_warns_and_inverts_a_gaussian_fit():
    """30 harmonic-bond samples fill fewer than 4 bins with 20 each: the table is the inverse of
    the fitted Gaussian (a warning names the interaction), close to the true harmonic bond."""
    from cgkit.forcematch import SparseSamplingWarning
    rng = np.random.default_rng(2)
    kT = KB_EV * 300.0
    kb, r0 = 5.0, 2.5
    r = r0 + rng.normal(0, np.sqrt(kT / kb), 30)
    pos = np.zeros((30, 2, 3))
    pos[:, 1, 0] = r
    top = Topology(n_particles=2, bonds=[[0, 1]])
    with pytest.warns(SparseSamplingWarning, match="bond A-B.*Gaussian"):
        (t,) = boltzmann_bonded_tables(["A", "B"], [0, 1], top, pos, None, temperature=300.0)
    xm = t.x[np.argmin(t.U)]
    assert abs(xm - r.mean()) < 0.01 and abs(xm - r0) < 3 * np.sqrt(kT / kb / 30) + 0.01
    k_fit = np.polyfit(t.x, t.U, 2)[0] * 2
    assert 0.5 * kb < k_fit < 2.0 * kb  # sample variance of 30 draws: within a factor 2
    assert np.allclose(t.force[1:-1], -np.gradient(t.U, t.dx)[1:-1], atol=1e-6 * kb)


def test_boltzmann_inversion_bad_input_names_the_interaction():
    from cgkit.errors import InputError
    from cgkit.forcematch import ForceMatchError
    top = Topology(n_particles=3, bonds=[[0, 1], [1, 2]], angles=[[0, 1, 2]])
    pos = np.array([[[0.0, 0, 0], [2.5, 0, 0], [2.5, 2.5, 0]]] * 5)  # 5 identical frames: no spread
    with pytest.raises(ForceMatchError, match="bond A-B"):
        boltzmann_bonded_tables(["A", "B"], [0, 1, 0], top, pos, None)
    with pytest.raises(InputError, match="bonds and angles"):
        boltzmann_bonded_tables(["A", "B"], [0, 1, 0], top, pos, None, kinds=("dihedral",))
    # a fixed table whose bead types the system does not know is refused by name
    bad = Table("bond", ("A", "C"), 1.0, 0.1, np.zeros(5), np.zeros(5))
    with pytest.raises(InputError, match="C"):
        SplineForceMatching(["A", "B"], [0, 1, 0], top, pair=None, fixed=[bad])
