"""Training: loss decreases, outputs written, statistics fitted, exact resume after SIGKILL."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from ase.io import read

import cgkit
from cgkit.errors import InputError, TrainingError
from cgkit.train import Trainer, fit_statistics, graphs_from_atoms

from .conftest import tiny_config, write_config


def _log(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_training_reduces_loss_and_writes_model_log_curve_report(cu_data, tmp_path):
    cfg = tiny_config(cu_data, tmp_path / "run", max_epochs=6, ema_decay=0.5, optimizer={"lr": 0.02})
    tr = Trainer(cfg).run()
    for f in ("model.pt", "checkpoint.pt", "log.csv", "learning_curve.png", "summary.json"):
        assert (tmp_path / "run" / f).is_file(), f
    rows = _log(tmp_path / "run" / "log.csv")
    assert len(rows) == 6
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    v = summary["validation"]
    assert summary["n_train"] + summary["n_val"] == 18
    # the report's MAE is the independent evaluation of the saved model on the validation frames
    model = cgkit.load_potential(tmp_path / "run" / "model.pt")
    frames = read(cu_data, ":")
    errs = []
    for a in frames:
        b = a.copy()
        b.calc = cgkit.CgkitCalculator(model)
        errs.append(np.abs(b.get_forces() - a.get_forces()).ravel())
    assert 0 < v["forces_mae_eV_per_A"] < 2 * np.mean(np.concatenate(errs)) + 1e-9
    assert model.metadata["trained"] is True


def test_statistics_are_least_squares_reference_energies_and_force_rms(cu_data):
    frames = read(cu_data, ":")
    graphs = graphs_from_atoms(frames, ("Cu",), 4.0)
    st = fit_statistics(graphs, 1)
    e = np.array([a.get_potential_energy() / len(a) for a in frames])
    assert abs(st["shift"][0] - e.mean()) < 1e-10  # one species, equal sizes: mean E/atom
    f = np.concatenate([a.get_forces().ravel() for a in frames])
    assert abs(st["scale"] - np.sqrt(np.mean(f ** 2))) < 1e-12


def test_resume_after_sigkill_gives_the_same_weights_as_an_uninterrupted_run(cu_data, tmp_path):
    ref = Trainer(tiny_config(cu_data, tmp_path / "ref", max_epochs=8, batch_size=2)).run()
    ref_state = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]

    cfg_path = write_config(tiny_config(cu_data, tmp_path / "killed", max_epochs=8, batch_size=2),
                            tmp_path / "cfg.yaml")
    cmd = [sys.executable, "-m", "cgkit.cli", "train", str(cfg_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    t0 = time.time()
    killed_at = None
    while time.time() - t0 < 300 and proc.poll() is None:
        if ckpt.is_file():
            try:
                step = torch.load(ckpt, weights_only=False)["state"]["step"]
            except Exception:  # noqa: BLE001 - being replaced right now
                continue
            if step >= 6:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = step
                break
        time.sleep(0.02)
    assert killed_at is not None, "training finished before it could be killed"
    assert not (tmp_path / "killed" / "model.pt").exists()
    # resuming is explicit: the same command without --resume is refused and changes nothing
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1 and "--resume" in res.stderr, res.stderr
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    state = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    for k, v in ref_state.items():
        assert torch.equal(v, state[k]), k
    a, b = _log(tmp_path / "ref" / "log.csv"), _log(tmp_path / "killed" / "log.csv")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


def test_source_weights_scale_the_loss_terms_and_mixed_sources_train(cu_data, tmp_path):
    """Structure weights multiply every squared error (weight 0 → no contribution); a config
    mixing a cheap source and a re-weighted source trains."""
    from cgkit.data import batch_graphs
    from cgkit.train.trainer import _loss_terms
    cfg = tiny_config(cu_data, tmp_path / "mix", max_epochs=1)
    cfg["data"] = {"train": [str(cu_data), {"path": str(cu_data), "weight": 5.0}], "val_fraction": 0.1}
    tr = Trainer(cfg).run()
    assert tr.results["n_train"] + tr.results["n_val"] == 36
    w = {"energy": 1, "forces": 1, "stress": 1}
    sums = {}
    for weight in (0.0, 1.0, 2.0):
        g = graphs_from_atoms(read(cu_data, ":4"), ("Cu",), 4.0, weight=weight)
        sums[weight], _ = _loss_terms(tr.model, batch_graphs(g), w, create_graph=False)
    assert set(sums[1.0]) == {"energy", "forces", "stress"}
    for k in sums[1.0]:
        assert float(sums[0.0][k]) == 0.0 and float(sums[1.0][k]) > 0
        assert abs(float(sums[2.0][k]) - 2 * float(sums[1.0][k])) < 1e-12 * float(sums[1.0][k])


def test_bad_training_configs_raise_clear_errors(cu_data, tmp_path):
    with pytest.raises(InputError, match="unknown training config keys"):
        Trainer({"learning_rate": 1.0})
    with pytest.raises(InputError, match="does not exist"):
        Trainer(tiny_config(tmp_path / "nope.xyz", tmp_path / "x")).run()
    frames = read(cu_data, ":")
    for a in frames:
        a.calc.results.pop("stress")
    from ase.io import write
    write(tmp_path / "nostress.xyz", frames)
    with pytest.raises(TrainingError, match="stress"):
        Trainer(tiny_config(tmp_path / "nostress.xyz", tmp_path / "y")).run()
    with pytest.raises(InputError, match="optimizer.name"):
        Trainer(tiny_config(cu_data, tmp_path / "z", optimizer={"name": "sgd"})).run()


def test_energy_shifts_are_refitted_at_the_end_and_nothing_else_changes(cu_data, tmp_path):
    """refit_shifts (default auto with e0s: average): the final model's per-species shifts are the
    least-squares fit to the training energies it leaves — the saved model's mean per-atom energy
    residual over the training frames is 0 — while forces equal those of the same run without
    the refit, and its energies differ by n_atoms·δ exactly."""
    from ase.io import read
    from cgkit import load_potential
    runs = {}
    for name, refit in (("on", "auto"), ("off", False)):
        cfg = tiny_config(cu_data, tmp_path / name, refit_shifts=refit, max_epochs=2)
        cfg["data"]["val_fraction"] = 0.0
        t = Trainer(cfg, progress=False).run()
        runs[name] = (t, load_potential(tmp_path / name / "model.pt", dtype=torch.float64))
    rep = runs["on"][0].summary()["statistics"]["shift_refit"]
    assert "shift_refit" not in runs["off"][0].summary()["statistics"]
    assert rep["train_energy_rmse_eV_per_atom_after"] <= rep["train_energy_rmse_eV_per_atom_before"]
    delta = rep["delta_eV"]["Cu"]
    assert abs(delta) > 1e-6  # two epochs leave an offset to remove
    frames = read(cu_data, ":")
    res = []
    for a in frames:
        on, off = (m.compute(m.graph(a)) for _, m in (runs["on"], runs["off"]))
        assert torch.allclose(on["forces"], off["forces"], atol=1e-12, rtol=0)
        assert abs(float(on["energy"] - off["energy"]) - len(a) * delta) < 1e-9
        res.append((a.get_potential_energy() - float(on["energy"])) / len(a))
    assert abs(np.mean(res)) < 1e-9, np.mean(res)
    with pytest.raises(InputError, match="refit_shifts must be auto, true or false"):
        Trainer(tiny_config(cu_data, tmp_path / "bad", refit_shifts="yes"), progress=False)
