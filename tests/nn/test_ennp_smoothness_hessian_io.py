"""Smoothness across r_cut, Hessian vs finite differences, save/load round trip, errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms

import cgkit
from cgkit.errors import InputError, UnknownSpeciesError
from cgkit.nn import ENNP

from .conftest import tiny_model


def _dimer_scan(model, rs):
    """Energy, force on atom 1 along x and d²E/dx₁² of a Si–C dimer at distances ``rs`` (Å)."""
    E, F, K = [], [], []
    for r in rs:
        a = Atoms("SiC", positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
        g = model.graph(a)
        out = model.compute(g)
        E.append(float(out["energy"][0]))
        F.append(float(out["forces"][1, 0]))
        K.append(float(model.hessian(g)[3, 3]) if g.n_edges else 0.0)
    return np.array(E), np.array(F), np.array(K)


def test_energy_forces_curvature_continuous_when_atom_crosses_cutoff():
    rc = 3.0
    model = tiny_model(r_cut=rc)
    e_far = _dimer_scan(model, [50.0])[0][0]
    rs = np.linspace(2.2, 3.4, 25)
    E, F, K = _dimer_scan(model, rs)
    dr = rs[1] - rs[0]
    # no jumps along the scan: neighbouring points differ by O(dr)
    assert np.max(np.abs(np.diff(E))) < 2 * np.max(np.abs(F)) * dr + 1e-12
    assert np.max(np.abs(np.diff(F))) < 2 * np.max(np.abs(K)) * dr + 1e-12
    assert np.abs(F).max() > 1e-3
    # beyond r_cut the atoms do not interact: exactly the separated-atoms energy, zero force
    out = rs > rc
    assert np.allclose(E[out], e_far, atol=1e-12, rtol=0)
    assert np.all(F[out] == 0.0) and np.all(K[out] == 0.0)
    # C² (at least): inside, E − E_far = O((r_c − r)³), F = O((r_c − r)²), K = O(r_c − r) → 0.
    # (With the Bessel basis at its initial frequencies, sin(nπr/r_c) adds one more order.)
    d = np.array([1e-2, 1e-3])
    Ei, Fi, Ki = _dimer_scan(model, rc - d)
    assert abs((Ei[0] - e_far) / (Ei[1] - e_far)) > 700
    assert abs(Fi[0] / Fi[1]) > 70
    assert abs(Ki[0] / Ki[1]) > 7
    assert abs(Ki[1]) < 1e-4 * np.abs(K).max()
    # the same with non-Bessel-zero frequencies (as after training): still C²
    with torch.no_grad():
        model.bessel.freqs.mul_(1.07)
    e_far = _dimer_scan(model, [50.0])[0][0]
    Ei, Fi, Ki = _dimer_scan(model, rc - d)
    assert 700 < abs((Ei[0] - e_far) / (Ei[1] - e_far)) < 1300
    assert 70 < abs(Fi[0] / Fi[1]) < 130
    assert 7 < abs(Ki[0] / Ki[1]) < 13


def test_hessian_equals_finite_differences_of_forces(crystal):
    model = tiny_model()
    a = crystal[:5].copy()
    a.pbc = False
    a.center(vacuum=4.0)
    g = model.graph(a)
    H = model.hessian(g).numpy()
    h = 1e-4
    fd = np.zeros_like(H)
    x0 = a.positions.copy()
    for k in range(3 * len(a)):
        fs = []
        for s in (+1, -1):
            x = x0.copy()
            x.reshape(-1)[k] += s * h
            fs.append(model.compute(g.with_positions(x))["forces"].numpy().reshape(-1))
        fd[:, k] = -(fs[0] - fs[1]) / (2 * h)
    assert np.abs(H).max() > 1e-3
    assert np.max(np.abs(H - fd)) < 1e-6 * np.abs(H).max()
    assert np.allclose(H, H.T, atol=1e-12)


def test_forces_and_stress_equal_finite_differences_of_energy(crystal):
    model = tiny_model()
    g = model.graph(crystal)
    out = model.compute(g, stress=True)
    h = 1e-5
    x0 = crystal.positions.copy()
    for k in (0, 7, 13):
        ep = []
        for s in (+1, -1):
            x = x0.copy()
            x.reshape(-1)[k] += s * h
            ep.append(float(model.energy(g.with_positions(x))[0]))
        assert abs(-(ep[0] - ep[1]) / (2 * h) - float(out["forces"].reshape(-1)[k])) < 1e-7
    # stress: σ_xy = (1/V) dE/dε_xy with a symmetric strain
    eps = np.zeros((3, 3))
    eps[0, 1] = eps[1, 0] = 0.5
    es = []
    for s in (+1, -1):
        D = np.eye(3) + s * h * eps
        es.append(float(model.energy(g.with_positions(x0 @ D, crystal.cell.array @ D))[0]))
    vol = crystal.get_volume()
    assert abs((es[0] - es[1]) / (2 * h) / vol - float(out["stress"][0, 0, 1])) < 1e-7


def test_save_load_roundtrip_gives_identical_outputs_and_metadata(tmp_path, crystal):
    model = tiny_model(correlation=2, vector_head=True)
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = cgkit.load_potential(path)
    assert isinstance(loaded, ENNP)
    assert loaded.type_names == ("Si", "C") and loaded.cutoff == 3.5
    assert loaded.metadata["cutoff"] == 3.5 and loaded.metadata["type_names"] == ["Si", "C"]
    assert loaded.metadata["dtype"] == "float64"
    assert loaded.get_config() == model.get_config()
    a, b = model.compute(model.graph(crystal), stress=True), loaded.compute(loaded.graph(crystal), stress=True)
    for k in a:
        assert torch.equal(a[k], b[k])
    # loading in a fresh process needs only cgkit
    code = (f"import cgkit; p = cgkit.load_potential({str(path)!r}); "
            "import json; print(json.dumps(list(p.type_names)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(res.stdout) == ["Si", "C"]


def test_float32_model_agrees_with_float64_copy(crystal):
    m64 = tiny_model()
    m32 = ENNP.from_config({**m64.get_config(), "dtype": "float32"})
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    e64 = m64.compute(m64.graph(crystal))["forces"]
    e32 = m32.compute(m32.graph(crystal))["forces"]
    assert e32.dtype == torch.float32
    assert torch.allclose(e32.double(), e64, atol=1e-4 * e64.abs().max())


def test_ase_calculator_runs_the_model(crystal):
    model = tiny_model()
    crystal.calc = cgkit.CgkitCalculator(model)
    out = model.compute(model.graph(crystal))
    assert abs(crystal.get_potential_energy() - float(out["energy"][0])) < 1e-12
    assert np.allclose(crystal.get_forces(), out["forces"].numpy(), atol=1e-12)


def test_bad_model_options_and_unknown_species_raise_clear_errors():
    with pytest.raises(InputError, match="r_cut"):
        ENNP(["Si"], -1.0)
    with pytest.raises(InputError, match="species"):
        ENNP(["Si", "Si"], 4.0)
    with pytest.raises(InputError, match="channels"):
        ENNP(["Si"], 4.0, channels=[8, 8], l_max=2)
    with pytest.raises(InputError, match="dtype"):
        ENNP(["Si"], 4.0, dtype="float16")
    with pytest.raises(InputError, match="preset"):
        ENNP.from_preset("huge", ["Si"])
    model = tiny_model(species=("Si",))
    with pytest.raises(UnknownSpeciesError, match="Cu"):
        model.graph(Atoms("SiCu", positions=[[0, 0, 0], [2, 0, 0]]))
