"""Relative-entropy minimisation: φ accumulation vs the simulated potential's energy, gradient
and Hessian vs finite differences of S_rel, recovery of a known LJ + harmonic-dimer potential,
unsampled interactions, and the ``cgkit relent`` command."""
import math
import warnings

import numpy as np
import pytest

from cgkit.cli import main
from cgkit.jsonutil import loads_strict
from cgkit.data import AtomicGraph
from cgkit.forcematch.mscg import SparseSamplingWarning
from cgkit.forcematch.relent import RelativeEntropyMinimisation, relative_entropy_derivatives
from cgkit.forcematch.tabulated import Table, TabulatedPotential
from cgkit.md import MolecularDynamics
from cgkit.topology import Topology

from .reference import MoleculeReference
from .test_cli import cg_files  # noqa: F401  (fixture: PSF + extxyz of the dimer liquid)

T = 150.0  # K
BOX = 19.0  # Å
RC = 6.0  # Å
N_MOL = 64
SIGMA, EPS, KB, R0 = 3.4, 0.0104, 10.0, 1.5  # Å, eV, eV/Å², Å
BONDS = np.stack([np.arange(0, 2 * N_MOL, 2), np.arange(1, 2 * N_MOL, 2)], 1)


def shifted_force_lj(r, sigma=SIGMA, eps=EPS, rc=RC):
    """U (eV) and dU/dr (eV/Å) of shifted-force LJ (the reference's pair potential)."""
    s6, s6c = (sigma / r) ** 6, (sigma / rc) ** 6
    fc = 4 * eps * (12 * s6c * s6c - 6 * s6c) / rc
    U = 4 * eps * (s6 * s6 - s6) - 4 * eps * (s6c * s6c - s6c) + (r - rc) * fc
    return U, -4 * eps * (12 * s6 * s6 - 6 * s6) / r + fc


def lj_dimer_tables(sigma, eps, kb, r0):
    r = np.linspace(2.0, RC, 401)
    b = np.linspace(1.0, 2.0, 201)
    return [Table("pair", ("A", "A"), r[0], r[1] - r[0], *shifted_force_lj(r, sigma, eps)),
            Table("bond", ("A", "A"), b[0], b[1] - b[0], 0.5 * kb * (b - r0) ** 2, kb * (b - r0))]


@pytest.fixture(scope="module")
def lj_dimers():
    """64 LJ dimers (128 beads, harmonic bonds, intramolecular LJ excluded) at 150 K sampled by
    Langevin MD with the independent reference potential: 100 frames, 40 fs apart."""
    rng = np.random.default_rng(0)
    g = (np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * BOX / 4
    d = rng.normal(size=(N_MOL, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    pos = np.concatenate([g - 0.75 * d, g + 0.75 * d], 1).reshape(-1, 3)
    ref = MoleculeReference(np.repeat(np.arange(N_MOL), 2), BONDS, rc=RC, sigma=SIGMA, eps=EPS, kb=KB, r0=R0)
    md = MolecularDynamics(ref, positions=pos, cell=np.eye(3) * BOX, pbc=True, masses=np.full(2 * N_MOL, 39.95),
                           species=np.zeros(2 * N_MOL, int), type_names=("A",), timestep=4.0,
                           temperature=400.0, friction=0.02, log_every=0, progress=False, seed=1)
    md.run(400)  # melt the lattice start
    md.temperature = T
    md.run(500)
    md.store_every = 10
    md.run(1000)
    return {"positions": md.results.positions[:, 0], "topology": Topology.from_bonds(2 * N_MOL, BONDS, exclude=1)}


def _re(data, quiet=True, **kw):
    P = data["positions"]
    opts = dict(temperature=T, pair_cutoff=RC, bins=60, kinds=("pair", "bond"), md_steps=800,
                equilibration=100, sample_every=8, timestep=4.0, friction=0.02)
    opts.update(kw)
    with warnings.catch_warnings():
        if quiet:  # the unsampled pair core and bond tails are expected here
            warnings.simplefilter("ignore", SparseSamplingWarning)
        return RelativeEntropyMinimisation(["A"], np.zeros(len(P[0]), int), data["topology"], 39.95, P,
                                           [BOX] * 3, P[-1], [BOX] * 3, **opts)


def _energy(potential, x, cell):
    g = AtomicGraph.from_arrays(x, cell, True, potential.cutoff, species=np.zeros(len(x), int), type_names=("A",))
    return float(potential.compute(g, forces=False)["energy"][0])


def test_basis_sums_equal_finite_differences_of_the_simulated_energy(lj_dimers):
    """φ_k(frame) from the bincount accumulation = ∂E/∂λ_k of the TabulatedPotential actually
    simulated (its energy summed over pairs/bonds by the potential's own code), including
    bond lengths outside the (deliberately narrow) bond grid, where U continues linearly."""
    re = _re(lj_dimers, grids={"bond A-A": (1.46, 1.54, 0.02), "pair A-A": (3.0, RC, 0.3)})
    P = lj_dimers["positions"][[0, 50, 99]]
    cell = np.eye(3) * BOX
    G = re.basis_vectors(P, cell)
    rng = np.random.default_rng(1)
    lam = re.coef + 0.01 * rng.normal(size=re.n_params) * re.free
    eps = 1e-3

    def energies(coef):
        pot = TabulatedPotential(("A",), re.topology, [re.table(it, coef) for it in re.interactions])
        return np.array([_energy(pot, x, cell) for x in P])

    fd = np.zeros_like(G)
    for k in np.nonzero(re.free)[0]:
        e = np.zeros(re.n_params)
        e[k] = eps
        fd[:, k] = (energies(lam + e) - energies(lam - e)) / (2 * eps)
    free = re.free
    bond = re.interactions[1]
    b = np.linalg.norm(P[:, BONDS[:, 1]] - P[:, BONDS[:, 0]], axis=-1)
    assert np.mean((b < 1.46) | (b > 1.54)) > 0.1  # the linear continuation is exercised
    assert G[:, bond.columns].sum(1) == pytest.approx(np.full(3, len(BONDS)), rel=1e-12)  # partition of unity
    assert np.abs(fd[:, free] - G[:, free]).max() < 1e-6 * np.abs(G).max()


def test_gradient_and_hessian_match_finite_differences_of_the_relative_entropy(lj_dimers):
    """S(λ) = β⟨U_λ⟩_AA + ln⟨exp(-β(U_λ - U_λ0))⟩_CG(λ0) (the relative entropy up to a constant,
    CG ensemble reweighted) differentiated numerically equals the analytic ∇S and β² Cov_CG(φ)."""
    re = _re(lj_dimers)
    G = re.basis_vectors(lj_dimers["positions"], [BOX] * 3)
    G_aa, G_cg = G[::2], G[1::2]  # two ensembles of configurations
    beta = re.beta
    rng = np.random.default_rng(2)
    lam0 = rng.normal(scale=0.01, size=re.n_params)

    def S(lam):
        a = -beta * (G_cg @ (lam - lam0))
        m = a.max()
        return beta * (G_aa @ lam).mean() + m + math.log(np.mean(np.exp(a - m)))

    grad, hess = relative_entropy_derivatives(G_aa.mean(0), G_cg, beta)
    h = 1e-6  # eV: β φ h ~ 1e-2, finite differences accurate to ~1e-4
    E = np.eye(re.n_params) * h
    fd_grad = np.array([(S(lam0 + E[k]) - S(lam0 - E[k])) / (2 * h) for k in range(re.n_params)])
    assert np.abs(fd_grad - grad).max() < 1e-4 * np.abs(grad).max()
    idx = np.nonzero(re.active)[0][::2]
    fd_hess = np.array([[(S(lam0 + E[k] + E[m]) - S(lam0 + E[k] - E[m]) - S(lam0 - E[k] + E[m])
                          + S(lam0 - E[k] - E[m])) / (4 * h * h) for m in idx] for k in idx])
    assert np.abs(fd_hess - hess[np.ix_(idx, idx)]).max() < 1e-3 * np.abs(hess).max()
    assert np.abs(hess).max() > 0 and np.allclose(hess, hess.T)


def _pair_wall(table, kT):
    """r (Å) where the pair potential falls below 2 kT."""
    r = np.linspace(2.6, 4.0, 1401)
    return r[np.argmax(table(r)[0] < 2 * kT)]


def _recovery(data, n_iter, **kw):
    re = _re(data, start_tables=lj_dimer_tables(3.1, 0.5 * EPS, 5.0, 1.55), **kw)
    r = np.linspace(2.6, 4.0, 1401)
    true_wall = r[np.argmax(shifted_force_lj(r)[0] < 2 * re.kT)]
    walls = [_pair_wall(re.tables[("pair", ("A", "A"))], re.kT) - true_wall]
    recs = []
    for _ in range(n_iter):
        recs.append(re.step())
        walls.append(_pair_wall(re.tables[("pair", ("A", "A"))], re.kT) - true_wall)
    js = [{k: v["js"] for k, v in rec["scores"].items()} for rec in recs]
    return re, js, walls, recs


def test_relative_entropy_recovers_lj_dimers_from_a_perturbed_start(lj_dimers):
    """Start: σ 3.1 Å (true 3.4), ε/2, bond k 5 eV/Å² at 1.55 Å (true 10 at 1.5). Two Newton
    steps (scores of the third run are those of the twice-updated potential)."""
    re, js, walls, recs = _recovery(lj_dimers, 3)
    print("JS per iteration", js, "wall error (Å)", walls)
    assert js[0]["pair A-A"] > 0.01 and js[0]["bond A-A"] > 0.1  # the start is visibly wrong
    assert js[2]["pair A-A"] < 0.6 * js[0]["pair A-A"]
    assert js[2]["bond A-A"] < 0.25 * js[0]["bond A-A"]
    assert abs(walls[0]) > 0.3 and abs(walls[2]) < 0.4 * abs(walls[0])  # repulsive wall moved to the true one
    assert recs[0]["delta_S_rel_fep"] < 0 and recs[0]["gradient_norm"] > recs[2]["gradient_norm"]
    assert np.all(np.isfinite(re.coef))


@pytest.mark.slow
def test_relative_entropy_converges_to_the_known_lj_dimer_potential(lj_dimers):
    re, js, walls, recs = _recovery(lj_dimers, 6, md_steps=2000, sample_every=10)
    x, g = re.targets[("pair", ("A", "A"))]
    sel = g > 0.3  # the sampled range of r
    rms = np.sqrt(np.mean((re.tables[("pair", ("A", "A"))](x[sel])[0] - shifted_force_lj(x[sel])[0]) ** 2))
    print("JS per iteration", js, "wall error (Å)", walls, "pair RMS error (eV)", rms)
    assert rms < 0.5 * re.kT
    assert js[-1]["pair A-A"] < 0.25 * js[0]["pair A-A"]
    assert js[-1]["bond A-A"] < 0.05 * js[0]["bond A-A"]
    assert abs(walls[-1]) < 0.1
    b = np.linspace(1.45, 1.55, 21)  # bond: within ±1.4 σ_b of the mean
    Ub = re.tables[("bond", ("A", "A"))](b)[0]
    Ut = 0.5 * KB * (b - R0) ** 2
    assert np.abs((Ub - Ub.mean()) - (Ut - Ut.mean())).max() < 0.5 * re.kT


def test_an_interaction_without_reference_samples_is_held_with_a_warning(lj_dimers):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        re = _re(lj_dimers, quiet=False, grids={"bond A-A": (3.0, 4.0, 0.1)})
    msgs = [str(w.message) for w in caught if issubclass(w.category, SparseSamplingWarning)]
    assert any(m.startswith("bond A-A: the reference has no samples in its grid [3, 4] Å") for m in msgs), msgs
    bond = re.interactions[1]
    assert bond.label == "bond A-A" and not re.active[bond.columns].any()
    G = re.basis_vectors(lj_dimers["positions"][:20], [BOX] * 3)
    grad, hess = relative_entropy_derivatives(re.target_mean, G, re.beta)
    d, _, _ = re.newton_step(grad, hess)
    assert np.all(np.isfinite(d)) and np.all(d[bond.columns] == 0) and np.any(d != 0)
    s = re.summary()
    info = {i["interaction"]: i for i in s["interactions"]}["bond A-A"]
    assert info["reference_samples"] == 0 and info["n_optimised"] == 0
    assert all(np.all(np.isfinite(t.U)) for t in re.potential.tables)


def test_pressure_correction_adds_the_projected_linear_ramp_to_pair_potentials(lj_dimers):
    """Too high a pressure (ΔP > 0) → A = -min(ΔP·scale, 0.1 kT) (1 - r/r_c) on every pair
    potential (Reith et al.), as in IBI; bonds untouched."""
    re = _re(lj_dimers, pressure=0.0, pressure_scale=0.01)
    d, A = re.pressure_shift(0.5)  # GPa above the target
    assert A == pytest.approx(-min(0.5 * 0.01, 0.1 * re.kT))
    pair, bond = re.interactions
    r = np.linspace(pair.basis.x_min, RC - 1.0, 50)  # away from the cutoff, where U is pinned smooth
    dU = pair.basis.value(d[pair.columns], r)
    assert np.abs(dU - A * (1 - r / RC)).max() < 0.05 * abs(A)
    assert np.all(d[bond.columns] == 0)
    assert re.pressure_shift(None)[1] is None


@pytest.mark.filterwarnings("ignore::cgkit.forcematch.mscg.SparseSamplingWarning")
def test_cgkit_relent_writes_summary_potential_tables_and_plots(cg_files, tmp_path):  # noqa: F811
    out = tmp_path / "re"
    rc = main(["relent", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--temperature", "150", "--iterations", "1", "--kinds", "pair,bond",
               "--pair-cutoff", "5.5", "--bins", "55", "--md-steps", "200", "--equilibration", "20",
               "--timestep", "4", "--pressure", "0", "--grid", "pair A-A=2.8:5.5:0.3", "--out", str(out)])
    assert rc == 0
    s = loads_strict((out / "summary.json").read_text())
    assert len(s["iterations"]) == 1 and set(s["iterations"][0]["scores"]) == {"pair A-A", "bond A-A"}
    rec = s["iterations"][0]
    assert np.isfinite(rec["gradient_norm"]) and np.isfinite(rec["delta_S_rel_fep"])
    assert np.isfinite(rec["pressure_GPa"]) and rec["pressure_shift_eV"] is not None
    grid = {i["interaction"]: i for i in s["interactions"]}["pair A-A"]
    assert grid["grid"] == [2.8, 5.5] and grid["spacing"] == pytest.approx(0.3)
    for f in ("cg_potential.pt", "tables/pair_A-A.dat", "tables/bond_A-A.dat", "plots/iteration_000.png",
              "plots/history.png"):
        assert (out / f).is_file(), f
    from cgkit.io_potential import load_potential
    pot = load_potential(out / "cg_potential.pt")
    assert {t.label for t in pot.tables} == {"pair A-A", "bond A-A"}


def test_relent_angle_tables_keep_zero_slope_at_180_degrees():
    """Trimers whose bond angle is sampled up to 180°: the start (Boltzmann inversion) and every
    Newton step keep dU/dθ = 0 at θ = 0 and π (the B-spline end rule), so the table never gets a
    cusp at the linear configuration; the step still changes the angle table."""
    n_mol, box, kb, r0, ka = 27, 15.0, 10.0, 1.5, 0.2  # Å, eV/Å², Å, eV/rad²
    g = (np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * box / 3
    pos = np.concatenate([g - [r0, 0, 0], g, g + [r0, 0, 0]], 1).reshape(-1, 3)
    bonds = np.array([[3 * m + a, 3 * m + a + 1] for m in range(n_mol) for a in (0, 1)])
    top = Topology.from_bonds(3 * n_mol, bonds, exclude=2)
    th = np.linspace(0.0, math.pi, 181)
    b = np.linspace(1.0, 2.0, 101)
    r = np.linspace(2.0, RC, 201)
    tables = [Table("pair", ("A", "A"), r[0], r[1] - r[0], *shifted_force_lj(r, 2.8, 0.005)),
              Table("bond", ("A", "A"), b[0], b[1] - b[0], 0.5 * kb * (b - r0) ** 2, kb * (b - r0)),
              Table("angle", ("A", "A", "A"), 0.0, th[1] - th[0], ka * (1 + np.cos(th)), -ka * np.sin(th))]
    ref = TabulatedPotential(("A",), top, tables)
    md = MolecularDynamics(ref, positions=pos, cell=np.eye(3) * box, pbc=True, masses=np.full(3 * n_mol, 39.95),
                           species=np.zeros(3 * n_mol, int), type_names=("A",), timestep=4.0, temperature=T,
                           friction=0.02, log_every=0, progress=False, seed=3)
    md.run(200)
    md.store_every = 10
    md.run(1000)
    P = md.results.positions[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        re = RelativeEntropyMinimisation(["A"], np.zeros(3 * n_mol, int), top, 39.95, P, [box] * 3, P[-1],
                                         [box] * 3, temperature=T, pair_cutoff=RC, bins=40,
                                         kinds=("angle",), md_steps=300, equilibration=50, sample_every=5,
                                         timestep=4.0, friction=0.02, start_tables=tables[:2])
        it = re.interactions[0]
        assert it.kind == "angle"
        start = re.table(it)
        re.step()
    after = re.table(it)
    for t in (start, after):
        assert t.x[0] == 0.0 and t.x[-1] == pytest.approx(math.pi)
        assert abs(t.dU[0]) < 1e-12 and abs(t.dU[-1]) < 1e-12
    assert np.abs(after.U - start.U).max() > 1e-4  # the step did move the table
