"""Charge and dipole targets (charges_weight, dipole_weight) with a stub model that implements
``atomic_charges`` (the CHARGE/DIPOLE TRAINING CONTRACT); refusals without the method or labels."""
import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import cgkit
from cgkit.errors import InputError, TrainingError
from cgkit.jsonutil import loads_strict
from cgkit.potential import Potential, scatter_sum
from cgkit.train import Trainer

from .conftest import tiny_config

Q_REF = {"O": -0.8, "H": 0.4}


class ChargeStub(Potential):
    """Per-species charges q_s and a harmonic pair energy: just enough to train charges and
    dipoles."""

    def __init__(self, species, r_cut: float = 2.0):
        super().__init__()
        self.type_names = tuple(species)
        self.cutoff = float(r_cut)
        self.q = torch.nn.Parameter(torch.zeros(len(species), dtype=torch.float64))
        self.k = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def get_config(self):
        return {"species": list(self.type_names), "r_cut": self.cutoff}

    def atomic_energies(self, graph, positions, cell):
        i, _, _, d = self.neighbor_edges(graph, positions, cell)
        return scatter_sum(0.25 * self.k * (d - 1.0) ** 2, i, graph.n_atoms)

    def atomic_charges(self, graph, positions, cell):
        return self.q[graph.species]


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """12 rattled water molecules with fixed reference charges (O −0.8 e, H +0.4 e) and their
    dipoles μ = Σ q_i r_i (e·Å), in a file without and a file with the labels."""
    d = tmp_path_factory.mktemp("water")
    frames, plain = [], []
    for k in range(12):
        a = molecule("H2O")
        a.rattle(0.1, seed=k)
        a.positions += 0.5 * k  # dipoles depend on the origin: not translated back
        q = np.array([Q_REF[s] for s in a.get_chemical_symbols()])
        e = float(np.sum((a.get_all_distances()[0, 1:] - 1.0) ** 2))
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=e)
        plain.append(b)
        a.calc = SinglePointCalculator(a, energy=e, charges=q, dipole=q @ a.positions)
        frames.append(a)
    write(d / "water.xyz", frames)
    write(d / "plain.xyz", plain)
    model = ChargeStub(["H", "O"])
    model.save(d / "stub.pt", metadata={"trained": False})
    return d


def _cfg(water, out, **over):
    cfg = {"output": str(out), "seed": 0, "model": {"file": str(water / "stub.pt")},
           "data": {"train": str(water / "water.xyz"), "val_fraction": 0.25},
           "loss": {"energy": 0.0, "forces": 0.0}, "optimizer": {"lr": 0.05}, "ema_decay": 0.0,
           "batch_size": 3, "max_epochs": 12, "threads": 1}
    cfg.update(over)
    return cfg


def test_charges_and_dipoles_train_and_their_metrics_are_independent_sums(water, tmp_path):
    frames = read(water / "water.xyz", ":")
    assert np.allclose(frames[3].calc.results["dipole"],
                       frames[3].calc.results["charges"] @ frames[3].positions)
    tr = Trainer(_cfg(water, tmp_path / "run", charges_weight=1.0, dipole_weight=0.01),
                 progress=False).run()
    s = loads_strict((tmp_path / "run" / "summary.json").read_text())
    model = cgkit.load_potential(tmp_path / "run" / "model.pt")
    # predicting q = 0 (the initial model) gives a charge MAE of (0.8 + 2·0.4)/3 = 0.533 e
    assert s["validation"]["charges_mae_e"] < 0.05, s["validation"]
    # the reported validation errors equal sums over the saved model's charges, in numpy
    val = [frames[i] for i in range(12) if i not in _train_indices(tr)]
    dq, dmu = [], []
    for a in val:
        g = model.graph(a)
        q = model.atomic_charges(g, g.positions, g.cell).detach().numpy()
        dq.append(q - a.calc.results["charges"])
        dmu.append(q @ a.positions - a.calc.results["dipole"])
    dq, dmu = np.concatenate(dq), np.array(dmu)
    assert s["validation"]["charges_mae_e"] == pytest.approx(np.abs(dq).mean(), rel=1e-9)
    assert s["validation"]["dipole_rmse_eA"] == pytest.approx(np.sqrt((dmu ** 2).mean()), rel=1e-9)
    rows = [float(r.split(",")[4]) for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert rows[-1] < 0.05 * rows[0]  # train loss


def _train_indices(tr):
    from cgkit.train.dataset import split_three
    ti, _, _ = split_three(12, 0.25, 0.0, 0)
    return set(ti.tolist())


def test_charge_targets_are_refused_without_atomic_charges_or_labels(water, cu_data, tmp_path):
    with pytest.raises(InputError, match="charges_weight > 0 but the model .ENNP. predicts no atomic charges"):
        Trainer(tiny_config(cu_data, tmp_path / "a", charges_weight=1.0), progress=False).run()
    with pytest.raises(TrainingError, match=r"dipole_weight > 0 but 9 training structures have no dipole"):
        Trainer(_cfg(water, tmp_path / "b", dipole_weight=1.0,
                     data={"train": str(water / "plain.xyz"), "val_fraction": 0.25}), progress=False).run()
    with pytest.raises(InputError, match="dipole_weight must be >= 0"):
        Trainer(_cfg(water, tmp_path / "c", dipole_weight=-1.0), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
