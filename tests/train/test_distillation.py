"""Distillation from a classical teacher (slow): EMT copper → ENNP, force MAE target < 10 meV/Å.

Run with ``pytest -m slow tests/train/test_distillation.py -s``; prints the figures."""
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from cgkit.sampling import sample_configurations, write_extxyz
from cgkit.train import Trainer


@pytest.mark.slow
def test_emt_copper_distillation_reaches_force_mae_below_10_meV_per_A(tmp_path):
    cu = bulk("Cu", "fcc", 3.61, cubic=True) * (2, 2, 2)  # 32 atoms
    frames = sample_configurations([cu], EMT(), temperatures=(300, 600, 900, 1200, 2000),
                                   frames_per_temperature=24, md_steps_between=10,
                                   equilibration_steps=100, rattle=0.08, n_rattled=20,
                                   strains=(-0.03, -0.015, 0.015, 0.03) * 3, seed=0, progress=False)
    write_extxyz(frames, tmp_path / "cu.xyz")
    cfg = {"output": str(tmp_path / "run"), "seed": 0,
           "model": {"species": ["Cu"], "r_cut": 4.5, "channels": 16, "l_max": 1, "n_layers": 2,
                     "n_radial": 8, "radial_hidden": 32, "radial_layers": 2, "readout_hidden": 16,
                     "dtype": "float32"},
           "data": {"train": str(tmp_path / "cu.xyz"), "val_fraction": 0.1},
           "loss": {"energy": 1.0, "forces": 10.0, "stress": 1.0},
           "optimizer": {"lr": 0.01}, "scheduler": {"patience": 4, "factor": 0.5},
           "batch_size": 4, "max_epochs": 400, "max_time_minutes": 14.0,
           "early_stopping_patience": 40, "ema_decay": 0.99, "threads": 2}
    tr = Trainer(cfg).run()
    v = tr.results["validation"]
    print(json.dumps(tr.results, indent=1))
    assert v["forces_mae_eV_per_A"] < 0.010, v
