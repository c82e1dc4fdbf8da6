"""Three-body (Stillinger–Weber-type) spline force matching: recovery of a known potential
(cgkit's independent StillingerWeber implementation), closed-form forces vs autograd, LAMMPS
export checked with lmp, refusals."""
from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from cgkit.data import AtomicGraph
from cgkit.errors import InputError, NotSupportedError
from cgkit.forcematch import SplineForceMatching
from cgkit.forcematch.threebody import ThreeBody, ThreeBodyPotential, ThreeBodyTable
from cgkit.potentials.stillinger_weber import StillingerWeber
from cgkit.topology import Topology

N, L, NF = 64, 11.0, 12
EPS, SIG, A, LAM, GAM = 2.1683, 2.0951, 1.80, 21.0, 1.20


@pytest.fixture(scope="module")
def sw_data():
    """Random 64-atom configurations (nearest neighbours ≥ 2.2 Å) with SW silicon forces."""
    rng = np.random.default_rng(0)
    sw = StillingerWeber()
    P, F = [], []
    while len(P) < NF:
        x = []
        while len(x) < N:
            c = rng.uniform(0, L, 3)
            if x:
                d = np.array(x) - c
                d -= L * np.round(d / L)
                if np.linalg.norm(d, axis=1).min() < 2.2:
                    continue
            x.append(c)
        x = np.array(x)
        g = AtomicGraph.from_arrays(x, np.eye(3) * L, np.ones(3, bool), sw.cutoff, species=np.zeros(N, int),
                                    type_names=("Si",))
        F.append(sw.compute(g)["forces"].detach().numpy())
        P.append(x)
    return np.array(P), np.array(F)


def _fit(sw_data, basis, **solve_kw):
    P, F = sw_data
    spec = ThreeBody(("Si", "Si", "Si"), a=A * SIG, gamma=GAM * SIG, basis=basis, spacing=0.2)
    fm = SplineForceMatching(("Si",), np.zeros(N, int), Topology(n_particles=N), pair=(2.2, A * SIG, 0.05),
                             bond=None, angle=None, dihedral=None, threebody=[spec], block_size=4)
    fm.accumulate(P, F, [np.eye(3) * L] * NF, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.solve(**solve_kw)


def _graph(pot, x):
    return AtomicGraph.from_arrays(x, np.eye(3) * L, np.ones(3, bool), pot.cutoff, species=np.zeros(len(x), int),
                                   type_names=("Si",))


@pytest.mark.parametrize("basis", ["cos2", "spline"])
def test_sw_three_body_is_recovered(sw_data, basis):
    res = _fit(sw_data, basis, method="lstsq" if basis == "cos2" else "ridge")
    pot = res.potential
    assert isinstance(pot, ThreeBodyPotential)
    t3 = pot.tables3[0]
    c = np.linspace(-1.0, 1.0 if basis == "cos2" else 0.6, 21)  # cos θ > 0.6: unsampled (r ≥ 2.2 Å)
    f_true = LAM * EPS * (c + 1 / 3) ** 2  # eV
    assert np.abs(t3.f(c)[0] - f_true).max() < 2e-3 * f_true.max()
    # the pair table recovers SW's two-body force
    r = np.linspace(2.4, 3.6, 13)
    rt = torch.tensor(r, requires_grad=True)
    Ab, Bb, p = 7.049556277, 0.6022245584, 4.0
    phi = Ab * EPS * (Bb * (SIG / rt) ** p - 1.0) * torch.exp(SIG / (rt - A * SIG))
    (d,) = torch.autograd.grad(phi.sum(), rt)
    _, f_pair = pot.table("pair", ("Si", "Si"))(r)
    assert np.abs(f_pair + d.numpy()).max() < 2e-3 * np.abs(d.numpy()).max()
    # forces on a configuration not used in the fit
    P, F = sw_data
    assert res.residual["Si"]["rms_residual_eV_per_A"] < 1e-3 * res.residual["Si"]["rms_force_eV_per_A"]


def test_closed_form_forces_equal_autograd(sw_data):
    res = _fit(sw_data, "spline")
    pot = res.potential.to(torch.float64)
    g = _graph(pot, sw_data[0][3])
    closed = pot.compute(g)
    auto = pot.compute(g, stress=True)  # the autograd route
    scale = float(closed["forces"].abs().max())
    assert float((closed["forces"] - auto["forces"]).abs().max()) < 1e-10 * scale
    assert abs(float(closed["energy"].sum() - auto["energy"].sum())) < 1e-10 * abs(float(auto["energy"].sum()))
    # and the forces are -dE/dx by central finite differences
    x = sw_data[0][3].copy()
    h = 1e-5
    for a, ax in ((5, 0), (17, 2)):
        e = []
        for s in (+1, -1):
            y = x.copy()
            y[a, ax] += s * h
            e.append(float(pot.compute(_graph(pot, y))["energy"].sum()))
        assert abs(-(e[0] - e[1]) / (2 * h) - float(closed["forces"][a, ax])) < 1e-6 * scale


def test_potential_round_trips_through_a_file(sw_data, tmp_path):
    from cgkit.io_potential import load_potential
    res = _fit(sw_data, "cos2", method="lstsq")
    res.potential.save(tmp_path / "p.pt")
    back = load_potential(tmp_path / "p.pt")
    g = _graph(res.potential, sw_data[0][1])
    assert torch.allclose(back.compute(g)["forces"], res.potential.compute(g)["forces"], atol=1e-12)


@pytest.mark.skipif(shutil.which("lmp") is None, reason="LAMMPS executable 'lmp' not found (apt-get install lammps)")
def test_lammps_forces_with_exported_sw_terms_equal_cgkit(sw_data, tmp_path):
    from cgkit.export import write_lammps
    res = _fit(sw_data, "cos2", method="lstsq")
    pot = res.potential
    x = sw_data[0][2]
    w = write_lammps(pot, tmp_path, positions=x, box=[L, L, L], masses=28.0, species=np.zeros(N, int),
                     run_forces_only=True)
    assert "threebody_1" in w
    r = subprocess.run(["lmp", "-in", "in.cg", "-log", "log.lammps", "-screen", "none"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (tmp_path / "log.lammps").read_text()[-2000:]
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    rows = rows[np.argsort(rows[:, 0])]
    f_cg = pot.compute(_graph(pot, x))["forces"].detach().numpy()
    assert np.abs(rows[:, 5:8] - f_cg).max() < 1e-4 * np.abs(f_cg).max()


def test_lammps_export_refusals(sw_data, tmp_path):
    from cgkit.export import write_lammps
    res = _fit(sw_data, "spline")
    with pytest.raises(NotSupportedError, match="sw/angle/table"):
        write_lammps(res.potential, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    neg = ThreeBodyPotential(("Si",), Topology(n_particles=N),
                             [ThreeBodyTable(ThreeBody(("Si", "Si", "Si"), 3.7, 2.5, "cos2"), [-1.0, 0.0, 1.0])])
    with pytest.raises(NotSupportedError, match="negative"):
        write_lammps(neg, tmp_path / "b")


def test_threebody_input_errors():
    with pytest.raises(InputError):
        ThreeBody(("A", "A"), 3.0, 1.0)
    with pytest.raises(InputError):
        ThreeBody(("A", "A", "A"), -3.0, 1.0)
    with pytest.raises(InputError):
        ThreeBody(("A", "A", "A"), 3.0, 1.0, basis="legendre")
    with pytest.raises(InputError, match="not in type_names"):
        SplineForceMatching(("A",), np.zeros(3, int), Topology(n_particles=3), pair=(1.0, 3.0, 0.1), bond=None,
                            angle=None, dihedral=None, threebody=[ThreeBody(("A", "B", "B"), 3.0, 1.0)])


def test_unsampled_three_body_angles_are_reported_as_sparse(sw_data):
    """No triplet has cos θ > 0.82 here (neighbours ≥ 2.2 Å apart within a = 3.77 Å): the fit
    names that range as sparse (warning and ``sparse_ranges``) instead of reporting none."""
    from cgkit.forcematch.mscg import SparseSamplingWarning
    P, F = sw_data
    spec = ThreeBody(("Si", "Si", "Si"), a=A * SIG, gamma=GAM * SIG, basis="spline", spacing=0.1)
    fm = SplineForceMatching(("Si",), np.zeros(N, int), Topology(n_particles=N), pair=(2.2, A * SIG, 0.05),
                             bond=None, angle=None, dihedral=None, threebody=[spec], block_size=4)
    fm.accumulate(P, F, [np.eye(3) * L] * NF, progress=False)
    with pytest.warns(SparseSamplingWarning, match=r"threebody Si-Si-Si: fewer than 10 triplets"):
        res = fm.solve()
    info = {i["interaction"]: i for i in res.interactions}["threebody Si-Si-Si"]
    assert info["sparse_ranges"], info["sparse_ranges"]
    assert info["sparse_ranges"][-1][1] == pytest.approx(1.0)
    assert min(lo for lo, _, _ in info["sparse_ranges"]) >= 0.8 - 1e-9
    assert info["sparse_ranges"][-1][2] < 10
