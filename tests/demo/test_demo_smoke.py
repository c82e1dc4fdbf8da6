"""``cgkit demo``: stage plumbing on the tiny size (fast), reproducibility (fixed epochs and
steps: the same command gives the same numbers), the output folder rules, the helpers against
independent references, error messages, and (slow) the default demo's acceptance numbers."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cgkit.demo import STAGES, StageMissing, make_config, run_demo
from cgkit.demo.cgmd import bonded_samples
from cgkit.demo.common import StageClock, TimeLimitExceeded, check_training, run_md_steps
from cgkit.demo.report import summary_rows
from cgkit.demo.runner import reproducible_part
from cgkit.errors import InputError
from cgkit.jsonutil import loads_strict

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- tiny end-to-end
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    t0 = time.perf_counter()
    results = run_demo(out, size="small", seed=0, progress=False)  # seed 0: the CLI default
    return out, results, time.perf_counter() - t0


def test_every_stage_of_the_tiny_demo_completes_and_records_its_wall_time(small_run):
    out, results, _ = small_run
    assert list(results) == list(STAGES)
    for st, r in results.items():
        assert r["status"] == "ok", (st, r.get("reason"), r.get("traceback"))
        assert r["wall_time_s"] > 0 and r["time_limit_s"] > 0
        assert json.loads((out / st / "result.json").read_text())["status"] == "ok"


def test_tiny_demo_writes_models_trajectories_and_tables_that_later_stages_read(small_run):
    out, results, _ = small_run
    for rel in ("teacher/pe_ennp/model.pt", "teacher/si_ennp/model.pt", "teacher/pe_teacher.extxyz",
                "atomistic/trajectory.npz", "forcematch/cg_potential.pt", "forcematch/mapped.npz"):
        assert (out / rel).is_file(), rel
    traj = np.load(out / "atomistic" / "trajectory.npz")
    mapped = np.load(out / "forcematch" / "mapped.npz")
    cfg = make_config("small")
    n_sites = cfg["pe"]["n_chains"] * cfg["pe"]["n_carbons"]
    assert traj["positions"].shape[1:] == (n_sites, 3) and traj["forces"].shape == traj["positions"].shape
    assert mapped["positions"].shape == (len(traj["positions"]), n_sites // 4, 3)
    # the optimized force map minimises the mapped-force second moment over valid maps, and the
    # basic map (sum of each bead's 4 site forces) is one of them: never noisier than basic
    basic = traj["forces"].reshape(len(traj["forces"]), -1, 4, 3).sum(2)
    noise = results["forcematch"]["mapped_force_noise"]
    np.testing.assert_allclose(noise["basic_rms_eV_per_A"], np.sqrt(np.mean(basic ** 2)), rtol=1e-10)
    np.testing.assert_allclose(noise["used_rms_eV_per_A"], np.sqrt(np.mean(mapped["forces"] ** 2)), rtol=1e-10)
    assert noise["used_rms_eV_per_A"] <= noise["basic_rms_eV_per_A"] * (1 + 1e-9)
    # the neural CG potential (ENNP on the spline prior) is trained at this size and evaluated
    nn = results["forcematch"]["neural_cg"]
    assert nn["status"] == "ok" and (out / nn["potential"]).is_file()
    assert np.isfinite(nn["prior_plus_nn_residual_eV_per_A"]) and nn["prior_residual_eV_per_A"] > 0
    # the speed-up is CG simulated time per wall second over the atomistic run's, each from its
    # own step count, time step, replicas and MD wall time
    a, c = results["atomistic"], results["cg"]
    cfg = make_config("small")
    assert a["n_steps"] == cfg["atomistic"]["n_steps"] and c["n_steps"] == cfg["cg"]["n_steps"]
    assert a["fs_per_wall_s"] == pytest.approx(a["n_steps"] * a["timestep_fs"] / a["md_wall_s"], rel=1e-9)
    assert c["fs_per_wall_s"] == pytest.approx(c["n_steps"] * c["timestep_fs"] * c["n_replicas"] / c["md_wall_s"],
                                               rel=1e-9)
    assert c["speedup"] == pytest.approx(c["fs_per_wall_s"] / a["fs_per_wall_s"], rel=1e-9)


def test_tiny_demo_report_is_self_contained_with_a_marked_row_for_every_number(small_run):
    out, _, _ = small_run
    page = (out / "report" / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", page)
    assert len(imgs) >= 8
    for src in imgs:
        assert not src.startswith(("/", "http")) and (out / "report" / src).is_file(), src
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] and summary["report"] == "report/index.html"
    for r in summary["rows"]:
        assert r["status"] in ("PASS", "FAIL", "info", "skipped", "failed"), r
        if r["status"] in ("PASS", "FAIL"):
            assert r["target"] and r["value"] is not None, r
    assert any(r["quantity"].startswith("speed-up") for r in summary["rows"])
    md = (out / "report" / "report.md").read_text()
    assert "| mark |" in md and "![" in md


def test_a_stage_run_alone_without_its_inputs_names_the_stage_to_run_first(tmp_path):
    with pytest.raises(StageMissing, match="--stage atomistic"):
        run_demo(tmp_path / "empty", size="small", stages=["forcematch"], progress=False)
    with pytest.raises(StageMissing, match="--stage teacher"):
        run_demo(tmp_path / "empty", size="small", stages=["silicon"], progress=False)
    assert not (tmp_path / "empty").exists()  # a refused rerun leaves no folder behind


def test_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="unknown demo size"):
        make_config("huge")
    with pytest.raises(InputError, match="positive"):
        make_config("small", steps=0)
    with pytest.raises(InputError, match="unknown stage"):
        run_demo(tmp_path / "x", size="small", stages=["teacher", "phonons"], progress=False)
    proc = subprocess.run([sys.executable, "-m", "cgkit.cli", "demo", "--stage", "phonons"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_steps_scale_the_md_step_counts_only():
    a, b = make_config("default"), make_config("default", steps=2.0)
    assert b["atomistic"]["n_steps"] == 2 * a["atomistic"]["n_steps"]
    assert b["cg"]["n_steps"] == 2 * a["cg"]["n_steps"]
    assert b["ennp_pe"] == a["ennp_pe"] and b["silicon"] == a["silicon"]


# ---------------------------------------------------------------------------- reproducibility
def test_every_budget_is_a_count_and_the_time_limit_scale_changes_only_the_safety_limits():
    """No wall-clock budget is left in any size: training has epochs, MD steps, IBI iterations;
    --time-limit-scale changes nothing but the safety limits."""
    def walk(d, path=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from walk(v, f"{path}{k}.")
            else:
                yield f"{path}{k}", v
    for size in ("small", "default", "large"):
        cfg = make_config(size)
        keys = dict(walk(cfg))
        assert not [k for k in keys if "minute" in k or "budget" in k], (size, keys)
        assert cfg["ennp_pe"]["max_epochs"] >= 1 and cfg["ennp_si"]["max_epochs"] >= 1
        slow = make_config(size, time_limit_scale=3.0)
        assert slow["time_limit_s"] == {k: 3.0 * v for k, v in cfg["time_limit_s"].items()}
        assert {k: v for k, v in slow.items() if k not in ("time_limit_s", "time_limit_scale")} == \
               {k: v for k, v in cfg.items() if k not in ("time_limit_s", "time_limit_scale")}
    with pytest.raises(InputError, match="time-limit-scale"):
        make_config("small", time_limit_scale=0)


def test_md_runs_exactly_its_steps_and_a_reached_safety_limit_is_an_error():
    class FakeMD:
        def __init__(self):
            self.steps = []

        def run(self, k):
            self.steps.append(k)
    md = FakeMD()
    assert run_md_steps(md, 250, 100, StageClock("cg", 1e9), "CG MD") == 250
    assert md.steps == [100, 100, 50]
    md = FakeMD()
    with pytest.raises(TimeLimitExceeded, match=r"stage 'cg' reached its wall-clock safety limit.*CG MD \(step 100 of 250\)"):
        run_md_steps(md, 250, 100, StageClock("cg", -1.0), "CG MD")
    assert md.steps == [100]  # stopped, never silently shortened
    check_training({"stop_reason": "max_epochs", "epochs": 5}, StageClock("teacher", -1.0), "the PE ENNP")
    with pytest.raises(TimeLimitExceeded, match="after 3 epochs"):
        check_training({"stop_reason": "max_time_minutes", "epochs": 3}, StageClock("teacher", 10.0), "the PE ENNP")


def test_a_stage_that_reached_its_safety_limit_is_reported_as_failed():
    reason = "TimeLimitExceeded: stage 'silicon' reached its wall-clock safety limit of 300 s"
    rows = summary_rows({"silicon": {"status": "failed", "reason": reason}})
    si = [r for r in rows if r["section"] == "e. silicon"]
    assert si and all(r["status"] == "failed" and r["note"] == reason for r in si)
    assert "PASS" not in {r["status"] for r in rows}


def _copy_demo(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_rerunning_stages_in_place_reproduces_their_numbers_exactly(small_run, tmp_path):
    """Fixed steps and seeds: the atomistic, CG and silicon stages rerun on the same inputs give
    the same numbers (timings aside), and the rerun replaces those stages in place."""
    out, results, _ = small_run
    copy = _copy_demo(out, tmp_path / "again")
    new = run_demo(copy, size="small", seed=0, stages=["atomistic", "cg", "silicon", "report"], progress=False)
    for st in ("atomistic", "cg", "silicon"):
        assert new[st]["status"] == "ok", new[st].get("reason")
        assert reproducible_part(new[st]) == reproducible_part(results[st]), st
        on_disk = loads_strict((copy / st / "result.json").read_text())
        assert on_disk["wall_time_s"] == new[st]["wall_time_s"]  # the rerun's result replaced the old one
    a = loads_strict((out / "summary.json").read_text())
    b = loads_strict((copy / "summary.json").read_text())
    assert reproducible_part(a) == reproducible_part(b)
    assert not [p for p in copy.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    manifest = loads_strict((copy / ".cgkit-files.json").read_text())["files"]
    assert "silicon/result.json" in manifest and "summary.json" in manifest


def test_reproducible_part_drops_only_timings():
    summary = {"rows": [{"quantity": "speed-up", "value": 20.0, "timing": True},
                        {"quantity": "R_g", "value": 5.7}],
               "stages": {"cg": {"speedup": 20.0, "md_wall_s": 3.0, "js_bond": 0.01, "wall_time_s": 9.0}}}
    assert reproducible_part(summary) == {"rows": [{"quantity": "R_g", "value": 5.7}],
                                          "stages": {"cg": {"js_bond": 0.01}}}


# ---------------------------------------------------------------------------- output folder
def test_a_whole_run_refuses_a_non_empty_out_before_any_work(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="not empty"):
        run_demo(out, size="small", progress=False)
    assert time.perf_counter() - t0 < 5 and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    proc = subprocess.run([sys.executable, "-m", "cgkit.cli", "demo", "--size", "small", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "cgkit demo: error:" in proc.stderr and "--overwrite" in proc.stderr
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_stage_reruns_only_in_a_demo_folder_made_with_the_same_settings(small_run, tmp_path):
    out, _, _ = small_run
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("x")
    with pytest.raises(InputError, match="not one"):
        run_demo(other, size="small", stages=["report"], progress=False)
    copy = _copy_demo(out, tmp_path / "copy")
    with pytest.raises(InputError, match="--seed|seed"):
        run_demo(copy, size="small", seed=1, stages=["report"], progress=False)
    with pytest.raises(InputError, match="size"):
        run_demo(copy, size="default", stages=["report"], progress=False)


def test_a_failed_in_place_rerun_keeps_the_earlier_files_of_the_stage(small_run, tmp_path, monkeypatch):
    out, _, _ = small_run
    copy = _copy_demo(out, tmp_path / "copy")
    before = (copy / "silicon" / "result.json").read_text()
    from cgkit.demo import silicon
    from cgkit.errors import StructureError

    def broken(ctx):
        (ctx.dir("silicon") / "half_written.json").write_text("{")
        raise StructureError("simulated failure")
    monkeypatch.setattr(silicon, "run", broken)
    res = run_demo(copy, size="small", stages=["silicon"], progress=False)
    assert res["silicon"]["status"] == "failed" and "simulated failure" in res["silicon"]["reason"]
    assert (copy / "silicon" / "result.json").read_text() == before
    assert not (copy / "silicon" / "half_written.json").exists()
    assert not [p for p in copy.iterdir() if ".partial-" in p.name]


# ---------------------------------------------------------------------------- public API only
def _private_or_demo_imports(path: Path, forbid_demo: bool) -> list[str]:
    import ast
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            parts = [p for p in mod.split(".") if p]
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                bad.append(f"{path.name}: from {mod} import ...")
            bad += [f"{path.name}: from {mod} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
            if forbid_demo and (mod.startswith("cgkit.demo") or (node.level and "demo" in parts)):
                bad.append(f"{path.name}: from {mod} (the demo)")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if any(p.startswith("_") for p in a.name.split(".")) or (forbid_demo and a.name.startswith("cgkit.demo")):
                    bad.append(f"{path.name}: import {a.name}")
    return bad


def test_demo_and_case_studies_use_only_public_names():
    files = sorted((ROOT / "cgkit" / "demo").glob("*.py"))
    bad = [b for f in files for b in _private_or_demo_imports(f, forbid_demo=False)]
    for study in ("silicon", "copper"):
        for f in sorted((ROOT / "case_studies" / study).glob("*.py")):
            bad += _private_or_demo_imports(f, forbid_demo=True)
    assert not bad, bad
    # one JS divergence and one JSON conversion: the demo defines neither
    src = "\n".join(f.read_text() for f in files)
    assert "def _js" not in src and "def _jsonable" not in src and "1.6605" not in src


# ---------------------------------------------------------------------------- helpers vs references
def test_bonded_samples_match_mdanalysis_distances_and_angles(rng):
    from MDAnalysis.lib.distances import calc_angles, calc_bonds
    cell = np.diag([10.0, 11.0, 12.0])
    pos = rng.uniform(0, 10, size=(3, 6, 3))
    bonds = np.array([[0, 1], [1, 2], [3, 4], [4, 5]])
    angles = np.array([[0, 1, 2], [3, 4, 5]])
    b, a = bonded_samples(pos, cell, bonds, angles)
    box = np.array([10.0, 11.0, 12.0, 90, 90, 90])
    ref_b = np.concatenate([calc_bonds(p[bonds[:, 0]], p[bonds[:, 1]], box=box) for p in pos])
    ref_a = np.degrees(np.concatenate([calc_angles(p[angles[:, 0]], p[angles[:, 1]], p[angles[:, 2]], box=box)
                                       for p in pos]))
    np.testing.assert_allclose(b, ref_b, rtol=1e-5)  # MDAnalysis works in float32
    np.testing.assert_allclose(a, ref_a, rtol=1e-5)


def test_summary_marks_follow_the_issue_targets():
    def rows(js, rg_rel, speed, dnu, dC):
        res = {"cg": {"status": "ok", "js_bond": js, "js_angle": js, "bond_mean_A": {"reference": 4, "cg": 4},
                      "angle_mean_deg": {"reference": 120, "cg": 120},
                      "rg": {"reference": 10.0, "cg": 10.0 * (1 + rg_rel)}, "rg_rel_diff": rg_rel,
                      "ree": {"reference": 20, "cg": 20, "unit": "Å"},
                      "persistence_length": {"reference": 5, "cg": 5, "unit": "Å"},
                      "rdf_inter_rms_difference": 0.1,
                      "density_g_cm3": {"reference": 0.75, "cg": 0.75, "note": ""},
                      "speedup": speed, "atomistic_fs_per_wall_s": 10, "fs_per_wall_s": 10 * speed},
               "silicon": {"status": "ok", "phonon_max_abs_diff_THz": dnu, "phonon_mean_abs_diff_THz": dnu / 2,
                           "elastic_max_abs_diff_GPa": dC,
                           "SW": {"C11": 151.4, "C12": 76.4, "C44": 56.4, "max_band_frequency_THz": 17.8,
                                  "pressure_GPa": 0.0},
                           "ENNP": {"C11": 151.4 + dC, "C12": 76.4, "C44": 56.4, "pressure_GPa": 0.1}}}
        return {r["quantity"]: r["status"] for r in summary_rows(res)}
    good = rows(0.01, 0.03, 25.0, 0.2, 4.0)
    bad = rows(0.03, 0.08, 5.0, 0.5, 6.0)
    for q in ("JS divergence, bond length", "JS divergence, bond angle", "R_g (CG)",
              "speed-up (simulated time per wall second)", "max |ν_ENNP − ν_SW| along the band path",
              "C11 (relaxed ion), ENNP", "max |ΔC_ij| over the 6×6 tensor"):
        assert good[q] == "PASS" and bad[q] == "FAIL", q
    # stages that did not run are marked skipped, never passed
    marks = {r["status"] for r in summary_rows({})}
    assert "PASS" not in marks and "skipped" in marks


# ---------------------------------------------------------------------------- slow: seeds, load
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_small_demo_passes_for_every_seed(seed, tmp_path):
    """Issue 13.12: every stage of ``cgkit demo --size small`` completes for seeds 0-4 (seed 0
    is the module fixture of the default suite)."""
    results = run_demo(tmp_path / "d", size="small", seed=seed, progress=False)
    for st, r in results.items():
        assert r["status"] == "ok", (seed, st, r.get("reason"))


@pytest.mark.slow
def test_the_same_command_gives_the_same_summary_beside_a_cpu_bound_job(small_run, tmp_path):
    """Issue 12.9: a second run of the small demo, with a CPU-bound process competing for the
    cores, writes the same summary.json numbers (timings aside) as the quiet module run."""
    out, _, _ = small_run
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        again = tmp_path / "again"
        proc = subprocess.run([sys.executable, "-m", "cgkit.cli", "demo", "--size", "small", "--out", str(again)],
                              capture_output=True, text=True)
    finally:
        hog.kill()
        hog.wait()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    a = reproducible_part(loads_strict((out / "summary.json").read_text()))
    b = reproducible_part(loads_strict((again / "summary.json").read_text()))
    assert a == b


# ---------------------------------------------------------------------------- the real default demo
#: the numbers the README quotes for the default run (seed 0). The run is deterministic, so the
#: test allows only a 10 % margin (floating-point differences between CPUs and library builds)
README_NUMBERS = {"js_bond": 0.0055, "js_angle": 0.0091, "rg_rel_diff": 0.016,
                  "phonon_max_abs_diff_THz": 0.144, "elastic_max_abs_diff_GPa": 1.37}
NOISE_MARGIN = 0.10


def test_the_readme_quotes_the_numbers_the_slow_demo_test_holds():
    section = (ROOT / "README.md").read_text().split("## The main job")[1].split("\n## ")[0]
    for text in ("JS 0.0055 (bonds) and 0.0091 (angles) bit", "(1.6 %)", "within\n0.144 THz",
                 "within 1.37 GPa", "100 training epochs", "60\nfor the silicon ENNP"):
        assert text in section, text
    cfg = make_config("default")
    assert cfg["ennp_pe"]["max_epochs"] == 100 and cfg["ennp_si"]["max_epochs"] == 60


@pytest.mark.slow
def test_default_demo_meets_the_acceptance_targets_within_the_time_budget(tmp_path):
    """The README's claim for ``cgkit demo``: every acceptance target of the issue passes
    (config.TARGETS: JS < 0.02 bit, R_g within 5 %, speed-up >= 10x, Si phonons within
    0.3 THz, elastic constants within 5 GPa) in under 15 minutes on 2 cores. The run is
    deterministic (fixed epochs, steps and seeds), so there is no statistical margin on the
    computed numbers; only the wall time gets a start-up slack."""
    from cgkit.demo import TARGETS
    out = tmp_path / "demo_output"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cgkit.cli", "demo", "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert str((out / "report" / "index.html").resolve()) in proc.stdout
    summary = loads_strict((out / "summary.json").read_text())
    s = summary["stages"]
    assert not summary["failed_stages"] and summary["n_fail"] == 0, summary["failed_stages"]
    assert wall < 15 * 60 + 60  # 15 min plus interpreter/import start-up slack
    cg, si = s["cg"], s["silicon"]
    assert cg["js_bond"] < TARGETS["js_bond"] and cg["js_angle"] < TARGETS["js_angle"]
    assert cg["rg_rel_diff"] < TARGETS["rg_rel"]
    assert cg["speedup"] >= TARGETS["speedup"]
    assert si["phonon_max_abs_diff_THz"] <= TARGETS["phonon_thz"]
    assert si["elastic_max_abs_diff_GPa"] <= TARGETS["elastic_gpa"]
    # and what the README quotes, within the stated margin
    got = {"js_bond": cg["js_bond"], "js_angle": cg["js_angle"], "rg_rel_diff": cg["rg_rel_diff"],
           "phonon_max_abs_diff_THz": si["phonon_max_abs_diff_THz"],
           "elastic_max_abs_diff_GPa": si["elastic_max_abs_diff_GPa"]}
    for k, v in README_NUMBERS.items():
        assert got[k] == pytest.approx(v, rel=NOISE_MARGIN, abs=1e-3), (k, got[k], v)
    for key in ("pe", "si"):
        e = s["teacher"][key]["ennp"]
        assert e["stop_reason"] == "max_epochs"  # the fixed budget, never the safety limit
        assert e["force_mae"] < 0.25 * e["force_ref_rms"]
