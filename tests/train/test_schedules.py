"""E0s (given or least-squares), learning-rate schedules (plateau, cosine with warm-up,
exponential), stage two (new loss weights and lr), and exact extension of such runs."""
import csv
import math

import numpy as np
import pytest
from ase.io import read

import cgkit
from cgkit.errors import InputError
from cgkit.train import Trainer
from cgkit.train.dataset import split_three

from .conftest import tiny_config


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_given_e0s_are_stored_in_the_model_and_predictions_include_them(cu_data, tmp_path):
    cfg = tiny_config(cu_data, tmp_path / "run", max_epochs=1, e0s={"Cu": -3.25})
    tr = Trainer(cfg, progress=False).run()
    assert tr.results["e0s_eV"] == {"Cu": -3.25} and tr.results["statistics"]["e0s"] == "given"
    model = cgkit.load_potential(tmp_path / "run" / "model.pt")
    atoms = read(cu_data, "0")
    atoms.calc = cgkit.CgkitCalculator(model)
    e_with = atoms.get_potential_energy()
    model.set_statistics(shift=[0.0])
    atoms.calc = cgkit.CgkitCalculator(model)
    assert e_with - atoms.get_potential_energy() == pytest.approx(-3.25 * len(atoms), abs=1e-9)


def test_e0s_average_is_the_least_squares_fit_to_the_training_energies(cu_data, tmp_path):
    tr = Trainer(tiny_config(cu_data, tmp_path / "run", max_epochs=1, refit_shifts=False), progress=False).run()
    frames = read(cu_data, ":")
    ti, _, _ = split_three(len(frames), 0.2, 0.0, 3)
    counts = np.array([[len(frames[i])] for i in ti], dtype=float)
    energies = np.array([frames[i].get_potential_energy() for i in ti])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    assert tr.results["e0s_eV"]["Cu"] == pytest.approx(e0[0], rel=1e-12)
    # with the end-of-training refit (the default) the final shifts are these E0s + the refit's δ
    tr = Trainer(tiny_config(cu_data, tmp_path / "run2", max_epochs=1), progress=False).run()
    delta = tr.results["statistics"]["shift_refit"]["delta_eV"]["Cu"]
    assert tr.results["e0s_eV"]["Cu"] == pytest.approx(e0[0] + delta, rel=1e-12)


@pytest.mark.parametrize("e0s, match", [({"Cu": -1.0, "Au": -2.0}, r"not in the model \['Au'\]"),
                                        ({"Au": -2.0}, r"missing \['Cu'\]"),
                                        ({"Cu": "x"}, "e0s.Cu must be a number"),
                                        ("mean", "e0s must be 'average'")])
def test_bad_e0s_are_refused(cu_data, tmp_path, e0s, match):
    with pytest.raises(InputError, match=match):
        Trainer(tiny_config(cu_data, tmp_path / "run", e0s=e0s), progress=False).run()
    assert not (tmp_path / "run").exists()


def _lr_of(step, n_batches, name, **sc):
    """The schedules written out independently (per optimizer step)."""
    lr0, lr_min, warm = 0.01, sc.get("min_lr", 1e-6), sc.get("warmup_epochs", 0) * n_batches
    f = min(1.0, (step + 1) / warm) if warm else 1.0
    if name == "exponential":
        return max(lr_min, lr0 * sc["gamma"] ** (step // n_batches)) * f
    total = sc["cosine_epochs"] * n_batches
    p = min(1.0, max(0.0, (step - warm) / (total - warm)))
    return (lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * p)) / 2) * f


@pytest.mark.parametrize("sc", [{"name": "cosine", "warmup_epochs": 1.5, "cosine_epochs": 3},
                                {"name": "exponential", "gamma": 0.5, "warmup_epochs": 1}])
def test_cosine_and_exponential_schedules_follow_their_formulas(cu_data, tmp_path, sc):
    rows = _rows(Trainer(tiny_config(cu_data, tmp_path / "run", scheduler=sc), progress=False).run().out
                 / "log.csv")
    n_batches = 4  # 14 training structures, batch 4
    for r in rows:  # the lr of the last step of every epoch
        assert float(r["lr"]) == pytest.approx(_lr_of(int(r["step"]) - 1, n_batches, **sc), rel=1e-12), r["epoch"]
    assert float(rows[0]["lr"]) < 0.01 if sc["name"] == "cosine" else True


def test_stage_two_switches_loss_weights_and_lr_and_keeps_its_best_model(cu_data, tmp_path):
    cfg = tiny_config(cu_data, tmp_path / "run", max_epochs=4,
                      stage_two={"start_epoch": 2, "energy_weight": 1000.0, "lr": 0.001})
    tr = Trainer(cfg, progress=False).run()
    rows = _rows(tmp_path / "run" / "log.csv")
    assert [r["stage"] for r in rows] == ["1", "1", "2", "2"]
    assert [float(r["lr"]) for r in rows[2:]] == [0.001, 0.001]
    assert tr.results["stage_two_from_epoch"] == 2 and tr.results["best_epoch"] >= 2
    # validation loss = w_E RMSE_E² + w_F RMSE_F² + w_S RMSE_S² with the weights of the stage
    for r, w_e in zip(rows, (1.0, 1.0, 1000.0, 1000.0)):
        expect = (w_e * float(r["val_energy_rmse"]) ** 2 + 10 * float(r["val_forces_rmse"]) ** 2
                  + float(r["val_stress_rmse"]) ** 2)
        assert float(r["val_loss"]) == pytest.approx(expect, rel=1e-9), r["epoch"]


def test_bad_stage_two_and_scheduler_are_refused(cu_data, tmp_path):
    for over, match in (({"stage_two": {"energy_weight": 1.0}}, "stage_two needs start_epoch"),
                        ({"stage_two": {"start_epoch": 2, "swa": True}}, r"unknown keys \['swa'\] in stage_two"),
                        ({"stage_two": {"start_epoch": 2, "lr": 0}}, "stage_two.lr must be > 0"),
                        ({"scheduler": {"name": "step"}}, "scheduler.name must be one of plateau, cosine"),
                        ({"scheduler": {"name": "cosine", "warmup_epochs": 5, "cosine_epochs": 4}},
                         "must exceed"),
                        ({"data": {"train": "x.xyz", "test": "t.xyz", "test_fraction": 0.1}}, "not both")):
        with pytest.raises(InputError, match=match):
            Trainer({**tiny_config(cu_data, tmp_path / "run"), **over}, progress=False)


def test_checkpoints_written_before_the_new_keys_existed_still_resume():
    """A checkpoint config without e0s/scheduler.name/stage_two/test keys compares equal to a
    config that leaves them at their defaults, and differs from one that sets them."""
    from cgkit.train.trainer import (_comparable, _config_difference, _with_new_defaults, merge_config,
                                     validate_config)
    cfg = validate_config(merge_config(tiny_config("cu.xyz", "out")))
    old = _comparable(cfg)
    for key in ("e0s", "charges_weight", "dipole_weight", "stage_two"):
        del old[key]
    for key in ("name", "warmup_epochs", "cosine_epochs", "gamma"):
        del old["scheduler"][key]
    del old["data"]["test"], old["data"]["test_fraction"]
    assert _config_difference(_with_new_defaults(old), _comparable(cfg)) == ""
    new = validate_config(merge_config(tiny_config("cu.xyz", "out", e0s={"Cu": -1.0})))
    assert "e0s: 'average' in the checkpoint" in _config_difference(_with_new_defaults(old), _comparable(new))
