"""Training on per-structure l = 2 (symmetric traceless 3×3) targets with the ENNP tensor head.

Reference: a bond-charge quadrupole, an exactly known equivariant function of the positions,

    T = ½ Σ_i Σ_{j≠i} q_i q_j u(r_ij) (r_ij r_ijᵀ − r_ij² I/3),   u(r) = (1 − r/r_c)² for r < r_c,

of small two-species clusters (C: q = +1, O: q = −0.7, e·Å² units).
"""
import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from cgkit.data import batch_graphs
from cgkit.errors import InputError
from cgkit.train import Trainer
from cgkit.train.dataset import graphs_from_atoms, symmetric_traceless_target
from cgkit.train.trainer import structure_heads

R_CUT = 3.5
CHARGE = {"C": 1.0, "O": -0.7}


def bond_quadrupole(atoms, r_cut=R_CUT) -> np.ndarray:
    q = np.array([CHARGE[s] for s in atoms.get_chemical_symbols()])
    r = atoms.positions
    T = np.zeros((3, 3))
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            d = r[j] - r[i]
            dist = np.linalg.norm(d)
            if i == j or dist >= r_cut:
                continue
            T += 0.5 * q[i] * q[j] * (1 - dist / r_cut) ** 2 * (np.outer(d, d) - dist ** 2 * np.eye(3) / 3)
    return T


def random_cluster(rng, n=6) -> Atoms:
    pos = []
    while len(pos) < n:  # random points in a 3 Å box, at least 1.0 Å apart
        p = rng.uniform(0, 3.0, size=3)
        if all(np.linalg.norm(p - q) > 1.0 for q in pos):
            pos.append(p)
    a = Atoms(rng.choice(["C", "O"], size=n), positions=pos)
    a.info["energy"] = 0.0
    a.info["quadrupole"] = bond_quadrupole(a)
    return a


def random_o3(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q  # det −1: a proper rotation times the inversion (an improper element of O(3))


MODEL = {"species": ["C", "O"], "r_cut": R_CUT, "channels": 8, "l_max": 2, "n_layers": 2, "n_radial": 6,
         "radial_hidden": 16, "radial_layers": 1, "readout_hidden": 4, "tensor_head": True,
         "dtype": "float64"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("tensor")
    frames = [random_cluster(rng) for _ in range(60)]
    write(out / "clusters.xyz", frames, format="extxyz")
    cfg = {"output": str(out / "run"), "seed": 0, "model": MODEL,
           "data": {"train": str(out / "clusters.xyz"), "val_fraction": 0.2, "tensor_key": "quadrupole"},
           "loss": {"energy": 0.0, "forces": 0.0, "tensors": 1.0},
           "optimizer": {"lr": 0.01}, "batch_size": 4, "max_epochs": 12, "ema_decay": 0.9,
           "checkpoint_every": 1000, "threads": 1}
    return Trainer(cfg).run(), out


def test_training_on_quadrupoles_beats_predicting_zero(trained):
    tr, out = trained
    v = tr.results["validation"]
    summary = json.loads((out / "run" / "summary.json").read_text())["validation"]
    assert summary["tensors_rmse"] == pytest.approx(v["tensors_rmse"])
    # the error of predicting zero is the RMS of the reference components
    assert v["tensors_ref_rms"] > 0.05
    assert v["tensors_rmse"] < 0.3 * v["tensors_ref_rms"], v  # measured: 0.15 after 12 epochs
    assert v["tensors_mae"] <= v["tensors_rmse"]
    first = tr.state["log"][0]["val_tensors_rmse"]
    assert tr.state["log"][-1]["val_tensors_rmse"] < 0.5 * first


def test_predicted_structure_tensors_rotate_as_R_T_Rt(trained):
    tr, _ = trained
    model = tr.model
    rng = np.random.default_rng(5)
    a = random_cluster(rng, n=7)
    R = random_o3(rng)
    b = a.copy()
    b.positions = a.positions @ R.T + rng.normal(size=3)  # rotation-reflection and translation
    ga, gb = (graphs_from_atoms([x], model.type_names, model.cutoff, tensor_key="quadrupole")[0]
              for x in (a, b))
    Ta, Tb = (structure_heads(model, batch_graphs([g]), ["tensors"])["tensors"][0].detach().numpy()
              for g in (ga, gb))
    assert np.abs(Ta).max() > 1e-3
    assert np.allclose(Ta, Ta.T, atol=1e-12) and abs(np.trace(Ta)) < 1e-12
    assert np.abs(Tb - R @ Ta @ R.T).max() < 1e-10 * np.abs(Ta).max()
    # the reference transforms the same way (a check of the test's own oracle)
    assert np.allclose(bond_quadrupole(b), R @ bond_quadrupole(a) @ R.T, atol=1e-12)


def test_tensor_targets_accept_nine_numbers_and_reject_non_traceless_or_asymmetric():
    T = np.array([[1.0, 0.2, -0.3], [0.2, -0.4, 0.5], [-0.3, 0.5, -0.6]])
    assert np.allclose(symmetric_traceless_target(T.ravel()), T)
    with pytest.raises(InputError, match="traceless"):
        symmetric_traceless_target(T + np.eye(3) * 0.1)
    A = T.copy()
    A[0, 1] += 0.05
    with pytest.raises(InputError, match=r"\(T \+ Tᵀ\)/2"):
        symmetric_traceless_target(A)
    with pytest.raises(InputError, match="3×3"):
        symmetric_traceless_target(np.ones(6))


def test_tensor_loss_needs_a_tensor_head(tmp_path):
    rng = np.random.default_rng(1)
    write(tmp_path / "c.xyz", [random_cluster(rng) for _ in range(5)], format="extxyz")
    cfg = {"output": str(tmp_path / "run"), "model": {**MODEL, "tensor_head": False},
           "data": {"train": str(tmp_path / "c.xyz"), "val_fraction": 0.2, "tensor_key": "quadrupole"},
           "loss": {"energy": 0.0, "forces": 0.0, "tensors": 1.0}, "max_epochs": 1}
    with pytest.raises(InputError, match="tensor_head: true"):
        Trainer(cfg).run()
