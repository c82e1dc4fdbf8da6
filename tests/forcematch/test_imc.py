"""Inverse Monte Carlo (cgkit.forcematch.imc) and the CG MD engine option of the iterative
methods (cgkit or LAMMPS): the Newton step against the analytic response of independent bins,
one driver iteration, `cgkit imc`, LAMMPS sampling against cgkit sampling, and (slow) IMC
against IBI on a Lennard-Jones liquid whose potential is known."""
import math
import shutil

import numpy as np
import pytest

from cgkit.cli import main
from cgkit.errors import InputError
from cgkit.forcematch import pair_kernel
from cgkit.forcematch.ibi import IterativeBoltzmannInversion
from cgkit.forcematch.imc import InverseMonteCarlo, imc_step
from cgkit.forcematch.tabulated import Table, TabulatedPotential
from cgkit.jsonutil import loads_strict
from cgkit.md import MolecularDynamics
from cgkit.topology import Topology
from cgkit.units import KB_EV

from .test_cli import cg_files  # noqa: F401  (the fixture: PSF + extxyz of the dimer liquid)

T = 100.0
RC = 7.5
SIGMA, EPS = 3.4, 0.0104
KEY = ("pair", ("A", "A"))


def lj_table(rc=RC):
    r = np.arange(2.6, rc + 1e-9, 0.01)
    u = lambda x: 4 * EPS * ((SIGMA / x) ** 12 - (SIGMA / x) ** 6)                      # noqa: E731
    du = lambda x: 4 * EPS * (-12 * SIGMA ** 12 / x ** 13 + 6 * SIGMA ** 6 / x ** 7)    # noqa: E731
    return Table("pair", ("A", "A"), r[0], 0.01, u(r) - u(rc) - du(rc) * (r - rc), du(r) - du(rc))


def lj_reference(n=200, rho=0.0204, steps=6000, every=20, seed=1):
    """Frames (n_frames, n, 3) Å of a Lennard-Jones liquid (argon-like, ρσ³ = 0.8, 100 K) sampled
    by cgkit MD with the known table, and the cubic box length."""
    L = (n / rho) ** (1 / 3)
    m = int(np.ceil(n ** (1 / 3)))
    grid = (np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] + 0.5) * (L / m)
    pot = TabulatedPotential(["A"], Topology(n_particles=n), [lj_table()])
    md = MolecularDynamics(pot, positions=grid, cell=np.eye(3) * L, masses=np.full(n, 39.95), timestep=5.0,
                           temperature=T, friction=0.01, log_every=0, progress=False, seed=seed)
    md.run(1500)
    md.store_every = every
    md.run(steps)
    return md.results.positions[:, 0], L


@pytest.fixture(scope="module")
def lj_liquid():
    pos, L = lj_reference()
    return {"positions": pos, "L": L, "n": pos.shape[1]}


def _driver(cls, liq, **kw):
    n, L, pos = liq["n"], liq["L"], liq["positions"]
    args = dict(temperature=T, pair_cutoff=RC, bins=60, kinds=("pair",), md_steps=3000, equilibration=500,
                sample_every=10, timestep=5.0, friction=0.01)
    args.update(kw)
    return cls(["A"], np.zeros(n, int), Topology(n_particles=n), 39.95, pos, [L] * 3, pos[-1], [L] * 3, **args)


def test_imc_step_is_the_newton_step_of_independent_bins():
    """M independent instances, each in bin j with p_j ∝ exp(-βU_j): the counts are multinomial,
    K = M (diag p - p pᵀ) and ⟨S⟩ = M p. For a small target change the Newton step is
    ΔU = -kT ln(p*/p) up to a constant (the exact answer to first order)."""
    kT = KB_EV * 300
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    M, F = 4000, 20000
    S = rng.multinomial(M, p, size=F).astype(float)
    target_p = p * np.exp(0.05 * np.array([1.0, -1.0, 0.5, 0.0, -0.3]))
    target_p /= target_p.sum()
    dU, info = imc_step(S, M * target_p, kT, regularization=1e-6)
    exact = -kT * np.log(target_p / S.mean(0) * M)
    d = (dU - dU.mean()) - (exact - exact.mean())
    assert np.abs(d).max() < 0.05 * np.abs(exact - exact.mean()).max()
    assert info["n_effective"] == 4  # the constant shift does not change the counts (M fixed)
    # the regularisation damps the directions the samples hardly determine, never amplifies
    dU_reg, _ = imc_step(S, M * target_p, kT, regularization=0.5)
    assert np.linalg.norm(dU_reg - dU_reg.mean()) < np.linalg.norm(dU - dU.mean())


@pytest.mark.skipif(not pair_kernel.available(), reason="no compiled pair kernel (needs a C compiler)")
def test_one_imc_iteration_moves_the_rdf_towards_the_target(lj_liquid, tmp_path):
    imc = _driver(InverseMonteCarlo, lj_liquid)
    before = imc.tables[KEY].U.copy()
    rec = imc.step()
    assert rec["imc"]["n_frames"] == 300 and rec["imc"]["n_bins"] > 20
    assert 0 < rec["imc"]["max_abs_dU_kT"] <= 1.0 + 1e-12
    after = imc.tables[KEY]
    assert np.all(np.isfinite(after.U)) and not np.allclose(before, after.U)
    rec2 = imc.step()  # scores of the updated potential
    assert rec2["scores"]["pair A-A"]["js"] < rec["scores"]["pair A-A"]["js"]
    s = loads_strict(imc.to_json())
    assert s["regularization"] == imc.regularization and len(s["iterations"]) == 2
    assert [p.name for p in imc.plot(tmp_path)] == ["imc_history.png"]


def test_engine_option_is_checked(lj_liquid, monkeypatch):
    with pytest.raises(InputError, match="engine must be one of"):
        _driver(IterativeBoltzmannInversion, lj_liquid, engine="gromacs")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="needs the LAMMPS binary"):
        _driver(InverseMonteCarlo, lj_liquid, engine="lammps")


def test_cgkit_imc_one_iteration(cg_files, tmp_path):  # noqa: F811
    out = tmp_path / "imc"
    rc = main(["imc", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--temperature", "150", "--iterations", "1", "--kinds", "pair,bond",
               "--pair-cutoff", "5.5", "--bins", "40", "--md-steps", "400", "--sample-every", "4",
               "--equilibration", "20", "--timestep", "4", "--out", str(out)])
    assert rc == 0
    s = loads_strict((out / "summary.json").read_text())
    assert s["engine"] == "cgkit" and len(s["iterations"]) == 1
    assert s["iterations"][0]["imc"]["n_frames"] == 100
    assert (out / "cg_potential.pt").is_file() and (out / "tables" / "pair_A-A.dat").is_file()
    assert (out / "imc_history.png").is_file()
    # refused before any work: a bad option leaves no output
    rc = main(["imc", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--regularization", "0", "--out", str(tmp_path / "bad")])
    assert rc == 1 and not (tmp_path / "bad").exists()


@pytest.mark.skipif(shutil.which("lmp") is None, reason="LAMMPS (lmp) not installed")
def test_ibi_iteration_samples_with_lammps(lj_liquid):
    """Fast variant of the comparison below: a short LAMMPS-sampled IBI iteration (exported
    tables, fix langevin) reproduces the target g(r) of the Boltzmann-inverted start as
    closely as cgkit's sampling does (JS 1.4e-3 with 3000 steps) and updates the table."""
    ibi = _driver(IterativeBoltzmannInversion, lj_liquid, engine="lammps", md_steps=1500, sample_every=25)
    before = ibi.tables[KEY].U.copy()
    rec = ibi.step()
    assert 0 < rec["scores"]["pair A-A"]["js"] < 5e-3
    assert not np.allclose(before, ibi.tables[KEY].U)
    assert loads_strict(ibi.to_json())["engine"] == "lammps"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("lmp") is None, reason="LAMMPS (lmp) not installed")
@pytest.mark.skipif(not pair_kernel.available(), reason="no compiled pair kernel (needs a C compiler)")
def test_ibi_update_with_lammps_sampling_equals_cgkit_sampling_within_noise(lj_liquid):
    """The first IBI update from the same start, sampled by LAMMPS (exported tables) and by
    cgkit MD: their difference is no larger than that between two cgkit runs with different
    seeds (the noise), while the update itself is well above the noise."""
    def update(engine, seed):
        ibi = _driver(IterativeBoltzmannInversion, lj_liquid, engine=engine, seed=seed, md_steps=6000,
                      sample_every=20)
        x = ibi.targets[KEY][0]
        u0 = ibi.tables[KEY](x)[0]
        ibi.step()
        return x, ibi.tables[KEY](x)[0] - u0
    x, a = update("cgkit", 0)
    _, b = update("cgkit", 1)
    _, c = update("lammps", 2)
    kT = KB_EV * T
    sel = (x > 3.3) & (x < RC - 0.5)  # well sampled by both
    noise = np.sqrt(np.mean((a[sel] - b[sel]) ** 2))
    assert np.sqrt(np.mean(((a + b)[sel] / 2) ** 2)) > 3 * noise  # a real update
    # c - (a+b)/2 has variance σ² + σ²/2 = 0.75 (a - b)'s: allow 2× the expected rms
    assert np.sqrt(np.mean((c[sel] - 0.5 * (a + b)[sel]) ** 2)) < 2.0 * math.sqrt(0.75) * noise + 0.01 * kT


@pytest.mark.slow
@pytest.mark.skipif(not pair_kernel.available(), reason="no compiled pair kernel (needs a C compiler)")
def test_first_imc_and_ibi_iterations_both_approach_the_target_of_a_lennard_jones_liquid():
    """LJ liquid (ρσ³ = 0.8, 100 K), target g(r) from the known potential, same sampling for
    both methods (3000 steps, 300 frames per iteration): the first update of each brings the
    r²-weighted JS divergence of g(r) down at least 2×. Measured beyond that (docs/cg_md.md):
    IBI stays at its noise floor, IMC drifts away after 2-3 iterations with this sampling."""
    pos, L = lj_reference()
    liq = {"positions": pos, "L": L, "n": pos.shape[1]}
    res = {}
    for name, cls in (("ibi", IterativeBoltzmannInversion), ("imc", InverseMonteCarlo)):
        it = _driver(cls, liq)
        res[name] = [it.step()["scores"]["pair A-A"]["js"] for _ in range(2)]
    print(res)
    for name, js in res.items():
        assert js[1] < 0.5 * js[0], (name, res)
