"""torchrun with 2 CPU processes (gloo) reproduces the single-process loss curve."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cgkit.train import Trainer

from .conftest import tiny_config, write_config

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this python")
def test_two_process_ddp_reproduces_single_process_loss_curve(cu_data, tmp_path):
    cfg = tiny_config(cu_data, tmp_path / "single", max_epochs=2, batch_size=4)
    single = Trainer(cfg).run()
    ddp_cfg = write_config(dict(cfg, output=str(tmp_path / "ddp")), tmp_path / "ddp.yaml")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "cgkit.cli", "train",
                          str(ddp_cfg)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "ddp" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    ref = single.state["log"]
    assert len(rows) == len(ref) == 2
    for a, b in zip(ref, rows):
        for key in ("train_loss", "val_loss", "val_forces_mae"):
            assert abs(a[key] - float(b[key])) <= 1e-9 * abs(a[key]), (key, a[key], b[key])
    s1 = torch.load(tmp_path / "single" / "model.pt", weights_only=True)["state_dict"]
    s2 = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)["state_dict"]
    for k in s1:
        assert torch.allclose(s1[k], s2[k], rtol=1e-9, atol=1e-12), k
