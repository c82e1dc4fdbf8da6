"""The active-learning pool study's teacher pool (case_studies/active_learning/pool_study.py):
every frame carries its RMS displacement from the run's start, regimes come from it (melted
frames are 'liquid'), and the composition counts every frame once."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgkit.learn.config import merge_config

FOLDER = Path(__file__).resolve().parents[2] / "case_studies" / "active_learning"


@pytest.fixture(scope="module")
def pool_study():
    spec = importlib.util.spec_from_file_location("pool_study", FOLDER / "pool_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_short_teacher_pool_is_solid_and_counted_once(pool_study):
    cfg = merge_config(yaml.safe_load((FOLDER / "cu_emt.yaml").read_text()))
    pool = pool_study.teacher_pool(cfg, 0, 20, 10, 0, [300.0], [0.0])
    n_structures = len(cfg["structures"]) if isinstance(cfg["structures"], list) else 1
    assert len(pool) >= 2 * n_structures
    disp = np.array([a.info["rms_disp"] for a in pool])
    assert np.all(np.isfinite(disp)) and np.all(disp > 0) and np.all(disp < pool_study.MELT_RMS_DISP)
    names = ["crystal", "surface", "vacancy", "other"]
    comp = pool_study.pool_composition(pool, names)
    assert sum(comp["per_regime"].values()) == len(pool) == comp["frames"]
    assert "liquid" not in comp["per_regime"]
    a = pool[0].copy()
    a.info.update(pool[0].info, rms_disp=1.0)
    assert pool_study.frame_regime(a, names) == "liquid"
