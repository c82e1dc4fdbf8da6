"""examples/train_config.yaml runs as its README says: data from examples/make_cu_data.py,
`cgkit train`, refusal of a second run into the same folder, `--resume --max-epochs` extends."""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_molecule_qm_example_trains_and_its_test_metrics_equal_cgkit_evaluate(tmp_path, capsys):
    """examples/molecule_qm on tiny EMT data (the QM labeller, tblite, is optional): the config
    runs (1 epoch), summary.json 'test' equals `cgkit evaluate` on the same file."""
    src = EXAMPLES / "molecule_qm"
    shutil.copy(src / "train.yaml", tmp_path)
    import runpy
    make_data = runpy.run_path(str(src / "make_data.py"), run_name="make_data")["main"]
    make_data(["--calculator", "emt", "--frames", "8", "--test-frames", "3", "--out", str(tmp_path)])
    cfg = yaml.safe_load((tmp_path / "train.yaml").read_text())
    assert cfg["data"]["test"] == "test.xyz" and cfg["stage_two"]["start_epoch"] < cfg["max_epochs"]
    assert main(["train", str(tmp_path / "train.yaml"), "--max-epochs", "1"]) == 0
    summary = loads_strict((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_test"] == 3 and summary["scheduler"] == "cosine"
    assert main(["evaluate", str(tmp_path / "run" / "model.pt"), str(tmp_path / "test.xyz"),
                 "--out", str(tmp_path / "eval")]) == 0
    ev = loads_strict((tmp_path / "eval" / "summary.json").read_text())
    for key in ("energy", "forces"):
        for m, v in summary["test"][key].items():
            if m != "per_species":
                assert ev[key][m] == pytest.approx(v, rel=1e-6, abs=1e-7), (key, m)
    assert set(ev["forces"]["per_species"]) == {"C", "H", "O"}
    assert "test set (3 structures): energy MAE" in capsys.readouterr().out


def _documented_keys():
    """(key, default text) of every row of the tables under '## Reference' in docs/training.md."""
    import re
    text = (EXAMPLES.parent / "docs" / "training.md").read_text()
    ref = text[text.index("\n## Reference"):]
    rows = {}
    for line in ref.splitlines():
        m = re.match(r"\| `([a-z_0-9.]+)` \|([^|]*)\|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_documented_config_keys_equal_the_trainers_accepted_keys_and_defaults():
    import inspect

    from cgkit.nn import ENNP
    from cgkit.train.trainer import STAGE_TWO_KEYS
    documented = _documented_keys()
    accepted = set(DEFAULT_CONFIG)
    for key, val in DEFAULT_CONFIG.items():
        if isinstance(val, dict) and key != "model":
            accepted |= {f"{key}.{k}" for k in val}
    accepted |= {f"stage_two.{k}" for k in STAGE_TWO_KEYS}
    model_opts = [n for n, p in inspect.signature(ENNP._build).parameters.items() if p.kind is p.KEYWORD_ONLY]
    accepted |= {f"model.{k}" for k in ("file", "preset", "species", "r_cut", "long_range", *model_opts)}
    assert set(documented) == accepted, (sorted(set(documented) - accepted), sorted(accepted - set(documented)))
    for key, text in documented.items():  # defaults of the trainer's own keys
        section, _, sub = key.partition(".")
        if section == "model" or not text.startswith("`"):
            continue
        default = DEFAULT_CONFIG[section][sub] if sub and section != "stage_two" else (
            None if sub else DEFAULT_CONFIG[section])
        if isinstance(default, dict):
            default = {k: v for k, v in default.items()}
        assert yaml.safe_load(text.strip("`")) == default, (key, text, default)


def test_model_init_help_lists_every_model_option(capsys):
    import inspect

    import pytest as _pytest

    from cgkit.nn import ENNP
    with _pytest.raises(SystemExit):
        main(["model", "init", "--help"])
    text = capsys.readouterr().out
    for name, p in inspect.signature(ENNP._build).parameters.items():
        if p.kind is p.KEYWORD_ONLY:
            assert f"\n  {name} " in text, name
    assert "docs/training.md" in text
