"""Iterative Boltzmann inversion: analytic Boltzmann inversion, one driver step, convergence (slow)."""
import math

import numpy as np
import pytest

from cgkit.forcematch import IterativeBoltzmannInversion, boltzmann_table
from cgkit.units import KB_EV

from .conftest import L


def test_boltzmann_inversion_removes_the_jacobians():
    kT = KB_EV * 300
    b = np.linspace(1.0, 2.0, 201)
    k, b0 = 5.0, 1.5
    P = b ** 2 * np.exp(-0.5 * k * (b - b0) ** 2 / kT)
    t = boltzmann_table("bond", ("A", "A"), b, P / np.trapezoid(P, b), kT)
    sel = np.abs(b - b0) < 0.3
    assert np.abs(t(b[sel])[0] - 0.5 * k * (b[sel] - b0) ** 2).max() < 2e-3
    th = np.linspace(0.01, math.pi - 0.01, 300)
    ka, th0 = 1.0, math.radians(120)
    P = np.sin(th) * np.exp(-0.5 * ka * (th - th0) ** 2 / kT)
    t = boltzmann_table("angle", ("A", "B", "A"), th, P, kT)
    sel = np.abs(th - th0) < 0.4
    assert np.abs(t(th[sel])[0] - 0.5 * ka * (th[sel] - th0) ** 2).max() < 2e-3
    r = np.linspace(0.05, 8.0, 160)
    U = 0.05 * np.exp(-(r - 3.0) ** 2) - 0.05 * np.exp(-(8.0 - 3.0) ** 2)
    t = boltzmann_table("pair", ("A", "A"), r, np.exp(-U / kT), kT)
    assert np.abs(t(r)[0] - U).max() < 2e-3
    assert t.U[-1] == 0.0


def test_ibi_step_runs_md_scores_and_applies_pressure_correction(dimer_liquid):
    d = dimer_liquid
    ibi = IterativeBoltzmannInversion(["A"], np.zeros(32, int), d["topology"], 39.95, d["positions"],
                                      [L] * 3, d["positions"][-1], [L] * 3, temperature=150,
                                      pair_cutoff=5.5, bins=55, kinds=("pair", "bond"), md_steps=300,
                                      equilibration=50, sample_every=10, timestep=4.0, friction=0.02,
                                      pressure=0.0)
    before = ibi.tables[("pair", ("A", "A"))].U.copy()
    rec = ibi.step()
    assert set(rec["scores"]) == {"pair A-A", "bond A-A"}
    assert all(0 <= v["js"] < 0.2 for v in rec["scores"].values())
    assert rec["pressure_GPa"] is not None and np.isfinite(rec["pressure_GPa"])
    after = ibi.tables[("pair", ("A", "A"))].U
    assert np.all(np.isfinite(after)) and not np.allclose(before, after)
    assert '"iterations"' in ibi.to_json()


@pytest.mark.slow
def test_ibi_improves_the_rdf_of_a_dense_lennard_jones_liquid():
    from ase.build import bulk
    from cgkit.md import MolecularDynamics
    from cgkit.potentials.lennard_jones import LennardJones
    from cgkit.topology import Topology
    atoms = bulk("Ar", "fcc", a=5.5, cubic=True).repeat((3, 3, 3))
    lj = LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.0)
    md = MolecularDynamics(lj, atoms, timestep=5.0, temperature=110, friction=0.02, store_every=20,
                           log_every=0, progress=False)
    md.run(2000)
    md.results._data["positions"].clear()
    md.run(4000)
    ref = md.results.positions[:, 0]
    box = np.diag(atoms.cell.array)
    ibi = IterativeBoltzmannInversion(["Ar"], np.zeros(len(atoms), int), Topology(n_particles=len(atoms)),
                                      39.95, ref, box, ref[-1], box, temperature=110, pair_cutoff=8.0,
                                      bins=80, md_steps=3000, equilibration=500, sample_every=20,
                                      timestep=5.0, friction=0.02, alpha=0.8)
    js = [ibi.step()["scores"]["pair Ar-Ar"]["js"] for _ in range(4)]
    assert js[-1] < 0.5 * js[0], js


def test_bonded_tables_confine_outside_the_resolved_range_even_with_a_wrong_way_end_slope():
    """After an IBI update the end slope of a bond table can point outwards-down; the continued
    table must still rise outwards (at least kT per bin) so that no bond escapes."""
    from cgkit.forcematch.boltzmann import boltzmann_table, confining_slope, fill_linear
    from cgkit.units import KB_EV
    kT = KB_EV * 450.0
    x = np.linspace(3.0, 6.0, 61)
    valid = (x > 4.0) & (x < 5.0)
    U = np.where(valid, -0.05 * (x - 4.5) ** 2, np.nan)  # an inverted well: both end slopes wrong-way
    slope = confining_slope("bond", x, kT)
    V = fill_linear(x, U, valid, False, "bond B-B", confining_slope=slope)
    left, right = x <= x[valid][0], x >= x[valid][-1]
    assert np.all(np.diff(V[left]) < 0) and np.all(np.diff(V[right]) > 0)
    assert np.diff(V[right]).min() >= slope * (x[1] - x[0]) * (1 - 1e-12)
    # Boltzmann inversion of a narrow bond distribution confines on both sides as well
    dens = np.exp(-0.5 * ((x - 4.5) / 0.08) ** 2)
    t = boltzmann_table("bond", ("B", "B"), x, dens, kT)
    i0 = int(np.argmin(t.U))
    assert np.all(np.diff(t.U[:i0]) < 0) and np.all(np.diff(t.U[i0:]) > 0)
    assert confining_slope("pair", x, kT) is None and confining_slope("dihedral", x, kT) is None


def test_an_empty_pair_target_that_is_not_iterated_is_warned_not_fatal():
    """Bonded-only IBI (kinds bond, angle) of isolated A-B-A molecules: no pair is ever within the
    cutoff, so the pair targets are empty. That must not stop the refinement of the bonded terms
    (it raised "pair A-A: the distribution is empty" before); iterating pairs still refuses."""
    from cgkit.errors import CgkitError
    from cgkit.topology import Topology

    rng = np.random.default_rng(0)
    n_mol, box = 2, 60.0
    frames = []
    for _ in range(30):
        x = []
        for m in range(n_mol):
            c = np.array([15.0 + 30.0 * m, 30.0, 30.0])
            a = c + rng.normal(scale=0.05, size=3) + [2.5, 0, 0]
            b = c + rng.normal(scale=0.05, size=3) + [-1.0, 2.3, 0]
            x += [a, c, b]
        frames.append(np.array(x))
    frames = np.array(frames)
    bonds = [(3 * m + i, 3 * m + 1) for m in range(n_mol) for i in (0, 2)]
    topo = Topology.from_bonds(3 * n_mol, bonds, exclude=2)
    species = np.array([0, 1, 0] * n_mol)
    args = (["A", "B"], species, topo, np.full(3 * n_mol, 14.0), frames, np.array([box] * 3),
            frames[0], np.array([box] * 3))
    with pytest.warns(UserWarning, match="not iterated"):
        ibi = IterativeBoltzmannInversion(*args, pair_cutoff=8.0, kinds=("bond", "angle"), bins=20)
    assert {k[0] for k in ibi.tables} == {"bond", "angle"}
    with pytest.raises(CgkitError, match="empty"):
        IterativeBoltzmannInversion(*args, pair_cutoff=8.0, kinds=("pair", "bond"), bins=20)
