"""The active-learning case study's configs are valid as shipped: every key known, every value
checked, every structure (files relative to the config) built, and the test set present."""
from pathlib import Path

import pytest
import yaml

from cgkit.learn.config import build_structures, merge_config, validate_config

FOLDER = Path(__file__).resolve().parents[2] / "case_studies" / "active_learning"
CONFIGS = sorted(FOLDER.glob("*.yaml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"cu_emt.yaml", "qm_xtb.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_case_study_config_is_valid(path):
    cfg = validate_config(merge_config(yaml.safe_load(path.read_text()), where=str(path)))
    structures = build_structures(cfg["structures"], path.parent)
    assert structures and all(len(a) > 0 for a in structures)
    test = cfg.get("test") or {}
    if test.get("file"):
        assert (path.parent / test["file"]).is_file(), test["file"]
