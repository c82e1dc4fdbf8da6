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


def _assert_teacher_labels(frames, teacher, atol_forces, atol_energy=None):
    """Each frame's stored forces (and energy, if ``atol_energy``) equal a fresh ``teacher`` call."""
    for a in frames:
        b = a.copy()
        b.calc = teacher
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=atol_forces)
        if atol_energy is not None:
            assert abs(a.get_potential_energy() - b.get_potential_energy()) < atol_energy


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


def test_pool_takes_the_configs_teacher_and_timestep(pool_study):
    """si_sw.yaml: the pool is run by Stillinger-Weber (cgkit:sw), not EMT, at the config's 1 fs;
    its labels are SW's forces; repeats are independent runs."""
    from cgkit.io_potential import load_calculator
    cfg = merge_config(yaml.safe_load((FOLDER / "si_sw.yaml").read_text()))
    assert cfg["teacher"] == "cgkit:sw" and cfg["exploration"]["timestep_fs"] == 1.0
    pool = pool_study.teacher_pool(cfg, 0, 10, 5, 0, [300.0], [0.0], repeats=2)
    assert len(pool) == 3 * 2 * 2
    assert [a.info["repeat"] for a in pool[:4]] == [0, 0, 1, 1]
    assert not np.allclose(pool[0].positions, pool[2].positions)  # another MD seed
    _assert_teacher_labels((pool[0], pool[-1]), load_calculator("cgkit:sw"), 1e-8)
    # 10 steps of 1 fs at 300 K: the crystal is intact (RMS displacement well below a bond)
    assert max(a.info["rms_disp"] for a in pool) < 0.1
    seeds = pool_study.seed_set(cfg, 0)
    assert len(seeds) == 6 and all(np.isfinite(a.get_forces()).all() for a in seeds)


def test_xtb_molecule_set_files_are_what_the_config_says(pool_study):
    """qm_xtb_molset.yaml (GFN2-xTB through tblite): 19 relaxed C/H/O molecules with their chemical
    class; the test set is 20 frames per molecule at 300-1200 K whose labels are GFN2-xTB's (checked
    on 5 frames against a fresh tblite calculation, to the SCF tolerance: an SCF restarted from the
    last MD step's density and a fresh one differ by up to 3e-4 eV/Å); the pool is run by the same
    teacher, and its labels are tblite's too."""
    pytest.importorskip("tblite.ase", reason="needs tblite (GFN2-xTB): pip install tblite")
    from ase.io import read
    from collections import Counter
    from cgkit.io_potential import load_calculator
    cfg = merge_config(yaml.safe_load((FOLDER / "qm_xtb_molset.yaml").read_text()))
    starts = read(str(FOLDER / "qm_molset_start.extxyz"), ":")
    assert len(starts) == 19 and set("".join(a.get_chemical_formula() for a in starts)) <= set("CHO0123456789")
    assert Counter(a.info["class"] for a in starts) == {"alkane": 5, "unsaturated": 3, "alcohol_ether": 4,
                                                       "carbonyl": 4, "acid_ester": 3}
    teacher = load_calculator(cfg["teacher"])
    a = starts[9].copy()  # ethanol, relaxed: BFGS to fmax 0.01 eV/Å
    a.calc = teacher
    assert np.abs(a.get_forces()).max() < 0.011
    test = read(str(FOLDER / cfg["test"]["file"]), ":")
    assert len(test) == 380
    assert Counter(a.info["system"] for a in test) == {s.info["system"]: 20 for s in starts}
    assert Counter(a.info["temperature_K"] for a in test) == {300.0: 95, 600.0: 95, 900.0: 95, 1200.0: 95}
    assert {a.info["regime"] for a in test} == {s.info["class"] for s in starts}
    _assert_teacher_labels(test[::76], teacher, 1e-3, 1e-4)
    pool = pool_study.teacher_pool(cfg, 0, 10, 5, 0, [300.0], [0.0])
    assert len(pool) == 19 * 2
    _assert_teacher_labels((pool[0], pool[-1]), teacher, 1e-3)


def test_xtb_test_set_labels_are_gfn2_xtb():
    """qm_xtb_test.extxyz (qm_xtb.yaml's test set) holds GFN2-xTB labels (4 frames recomputed with
    the config's teacher, to the SCF tolerance)."""
    pytest.importorskip("tblite.ase", reason="needs tblite (GFN2-xTB): pip install tblite")
    from ase.io import read
    from cgkit.io_potential import load_calculator
    cfg = merge_config(yaml.safe_load((FOLDER / "qm_xtb.yaml").read_text()))
    test = read(str(FOLDER / cfg["test"]["file"]), ":")
    assert len(test) == 60
    _assert_teacher_labels(test[::15], load_calculator(cfg["teacher"]), 1e-3, 1e-4)
