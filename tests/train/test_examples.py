"""examples/train_config.yaml runs as its README says: data from examples/make_cu_data.py,
`cgkit train`, refusal of a second run into the same folder, `--resume --max-epochs` extends."""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cgkit.cli import main
from cgkit.jsonutil import loads_strict
from cgkit.train import DEFAULT_CONFIG

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_train_example_config_runs_refuses_reruns_and_extends(tmp_path, capsys):
    shutil.copy(EXAMPLES / "train_config.yaml", tmp_path)
    r = subprocess.run([sys.executable, str(EXAMPLES / "make_cu_data.py"), str(tmp_path / "cu_emt.xyz")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "train_config.yaml"
    assert yaml.safe_load(cfg.read_text())["data"]["train"] == "cu_emt.xyz"
    out = tmp_path / "cu_run"
    assert main(["train", str(cfg), "--max-epochs", "1"]) == 0  # the README's command, shortened
    stdout = capsys.readouterr().out
    assert f"wrote {out / 'model.pt'}" in stdout
    summary = loads_strict((out / "summary.json").read_text())
    assert summary["n_train"] + summary["n_val"] == 40 and summary["epochs"] == 1
    assert main(["train", str(cfg), "--max-epochs", "1"]) == 1  # a second run is refused
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(cfg), "--resume", "--max-epochs", "2"]) == 0
    with open(out / "log.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [0, 1]
    assert loads_strict((out / "summary.json").read_text())["resumed_from"]["epoch"] == 1


def test_train_help_shows_a_minimal_config_and_every_key_with_its_default(capsys):
    import pytest
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "Minimal complete config" in text and "data: {train: cu.xyz}" in text
    assert "docstring" not in text
    flat = {}
    for key, val in DEFAULT_CONFIG.items():
        if isinstance(val, dict) and key != "model":
            flat.update({k: v for k, v in val.items() if k != "train"})  # train: required
        elif key not in ("model", "output"):
            flat[key] = val
    for key, val in flat.items():
        shown = "null" if val is None else str(val).lower() if isinstance(val, bool) else str(val)
        if key == "min_lr":
            shown = "1.0e-6"
        assert f"{key}: {shown}" in text, (key, shown)
    for flag in ("--resume", "--overwrite", "--max-epochs"):
        assert flag in text
