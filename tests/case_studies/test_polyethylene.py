"""Polyethylene case study (case_studies/polyethylene).

Fast: the long-range LJ pressure correction that run.py adds to the NPT target equals what
LAMMPS computes as the pressure difference between full LJ (long cut-off + analytic tail) and
cgkit's switched ``lj/mdf 8.5 10`` LJ on the same melt configuration.

Slow: the README is exactly what make_readme.py renders from the committed results.json and
quotes its numbers; the committed results meet the targets that hold; a rerun of run.py
reproduces them within stated tolerances. Ideal-chain scaling (ν = 0.5 ± 0.1 from relaxed
chains) is an expected failure: the chains do not relax in the affordable run lengths."""
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "case_studies" / "polyethylene"
COMMITTED = HERE / "results" / "results.json"
needs_lammps = pytest.mark.skipif(shutil.which("lmp") is None,
                                  reason="LAMMPS (lmp, Debian package 'lammps') is not installed")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"polyethylene_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _close(new, old, rel, abs_=0.0):
    return abs(new - old) <= max(abs_, rel * abs(old))


def _lammps_pressure(workdir, name, text):
    (workdir / f"in.{name}").write_text(text)
    subprocess.run(["lmp", "-in", f"in.{name}", "-log", f"log.{name}", "-screen", "none"], cwd=workdir,
                   check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    log = (workdir / f"log.{name}").read_text()
    row = log.split("Step Press Density")[1].splitlines()[1].split()
    return float(row[1]), float(row[2])


@needs_lammps
def test_tail_pressure_equals_lammps_full_lj_minus_switched_lj(tmp_path):
    from cgkit.potentials.polyethylene import build_pe_melt, write_lammps_data
    run = _load("run")
    atoms, topo = build_pe_melt(20, 24, 0.75, seed=0, relax=False, temperature_K=450.0)
    write_lammps_data(tmp_path / "melt.data", atoms, topo)
    head = run.lammps_input("melt.data", seed=1, npt_steps=0, nvt_steps=0, dump_every=1,
                            tail_k_bar=0.0).split("neighbor 2.0 bin")[0]
    tail = "neighbor 2.0 bin\nneigh_modify one 20000 page 400000\nthermo_style custom step press density\nrun 0\n"
    p_switched, rho = _lammps_pressure(tmp_path, "mdf", head + "pair_modify tail no\n" + tail)
    # full LJ: explicit to 25 Å, LAMMPS's analytic tail beyond
    full = head.replace("pair_style lj/mdf 8.5 10.0", "pair_style lj/cut 25.0") + "pair_modify tail yes\n" + tail
    p_full, _ = _lammps_pressure(tmp_path, "full", full)
    dp_lammps = p_full - p_switched
    dp_formula = run.lj_tail_pressure_coefficient(24) * rho ** 2
    assert dp_lammps < -200.0                      # the missing attraction is a few hundred bar
    assert abs(dp_formula - dp_lammps) < 0.03 * abs(dp_lammps), (dp_formula, dp_lammps)


def test_readme_renderer_reports_failed_targets_as_such():
    """The template states a missed JS target as missed (it does not hard-code success)."""
    mk = _load("make_readme")
    if not COMMITTED.is_file():
        pytest.skip("no committed results.json")
    res = json.loads(COMMITTED.read_text())
    k = next(iter(res["bonded_js"]))
    res["bonded_js"][k]["bond"] = 0.5
    text = mk.render(res)
    assert "What does not" in text and "0.5000" in text.split("What does not")[1].split("## Method")[0]


def _quoted(res):
    """Numbers the README quotes, with the format it uses."""
    out = [f"{res['flory']['cg_fit']['nu']:.3f}", f"{res['flory']['cg_fit']['nu_error']:.3f}",
           f"{res['flory']['atomistic_fit']['nu']:.3f}",
           f"{res['characteristic_ratio']['extrapolation']['C_inf']:.2f}",
           f"{res['speed']['speedup_vs_cgkit_torch']:.0f}", f"{res['speed']['speedup_vs_lammps']:.1f}"]
    for r in res["sizes"]["atomistic"]:
        out += [f"{r['rg']['value']:.2f}", f"{r['density_npt_g_cm3']:.3f}", f"{r['C_N']['value']:.2f}"]
    for r in res["sizes"]["cg"]:
        out += [f"{r['rg']['value']:.2f}", f"{r['C_N']['value']:.2f}"]
    for v in res["bonded_js"].values():
        out += [f"{v['bond']:.4f}", f"{v['angle']:.4f}"]
    for h in res["ibi"]["history"]:
        out += [f"{v:.4f}" for v in h["js"].values()]
    return out


@pytest.mark.slow
def test_readme_is_rendered_from_the_committed_results():
    res = json.loads(COMMITTED.read_text())
    readme = (HERE / "README.md").read_text()
    assert readme == _load("make_readme").render(res), "README.md is stale: run make_readme.py"
    for s in _quoted(res):
        assert s in readme, f"README does not quote {s} from results.json"
    for fig in ("rg_vs_n.png", "distributions.png", "speed.png"):
        assert (HERE / "results" / fig).is_file() and fig in readme


def _check_targets(res):
    # bonded distributions after IBI: CG vs mapped atomistic for every length (the demo's target)
    for k, v in res["bonded_js"].items():
        assert v["bond"] < 0.02 and v["angle"] < 0.02, (k, v)
    # no wholesale bond escape: at most 0.2 % of CG bond samples outside the mapped range (README:
    # rare impulsive outliers from the dihedral force near collinear triplets)
    for k, v in res["bonded_js"].items():
        assert v["cg_bonds_outside_mapped_range"] < 0.002 * v["cg_bond_samples"], (k, v)
    # IBI improved the bonds of the hybrid model on its reference melt
    h = res["ibi"]["history"]
    for lab in h[0]["js"]:
        if lab.startswith("bond"):
            assert min(x["js"][lab] for x in h[1:]) < h[0]["js"][lab], (lab, h)
    # CG chain size within 10 % of the mapped atomistic chains wherever both exist
    for r in res["sizes"]["cg"]:
        if "rg_rel_diff_vs_atomistic" in r:
            assert abs(r["rg_rel_diff_vs_atomistic"]) < 0.10, r
    # CG and atomistic runs at the thermostat temperature (a broken table heats the melt)
    for key in ("cg", "atomistic"):
        for r in res["sizes"][key]:
            assert abs(r["mean_temperature_K"] - 450.0) < 15.0, (key, r)
    # speed-up over the same atomistic model in cgkit's own engine
    assert res["speed"]["speedup_vs_cgkit_torch"] >= 10.0, res["speed"]
    # NPT at 1 atm with the tail-corrected pressure: the corrected mean pressure is near 1 atm
    # (6 ps mean of ~1000 sites scatters by ~100 bar) and the density is that of a PE melt at 450 K
    # within the model's accuracy (experiment ≈ 0.77 g/cm³ for long chains, lower for short ones)
    for k, v in res["density"]["npt_pressures_bar"].items():
        assert abs(v["corrected"] - 1.0) < 300.0, (k, v)
        assert v["tail_correction"] < -150.0, (k, v)
    for r in res["sizes"]["atomistic"]:
        assert 0.66 < r["density_npt_g_cm3"] < 0.80, r


@pytest.mark.slow
def test_committed_results_meet_targets():
    _check_targets(json.loads(COMMITTED.read_text()))


@pytest.mark.slow
@pytest.mark.xfail(reason="the chains do not relax in 50 ps atomistic / 40 ps CG runs (end-to-end vector "
                          "autocorrelation over the run 0.5-1.0, README Caveats): ν is that of the melt "
                          "builder's chains, not of equilibrated melts", strict=True)
def test_committed_cg_chains_are_relaxed_ideal_chains():
    res = json.loads(COMMITTED.read_text())
    for r in res["sizes"]["cg"]:
        assert r["ree_autocorrelation_over_run"] < 0.3, r
    assert abs(res["flory"]["cg_fit"]["nu"] - 0.5) < 0.1, res["flory"]


@pytest.mark.slow
@needs_lammps
def test_rerun_reproduces_readme_numbers_and_meets_targets(tmp_path):
    old = json.loads(COMMITTED.read_text())
    run = _load("run")
    assert run.main(["--out", str(tmp_path)]) == 0
    new = json.loads((tmp_path / "results.json").read_text())
    _check_targets(new)
    # stochastic MD of a few chains: sizes within 12 % or 3 combined standard errors (4-40 chains
    # per length), densities within 0.015 g/cm³, ν within 0.15 (3 × its standard error), JS within
    # 0.01 or 100 %
    for key in ("atomistic", "cg"):
        for a, b in zip(new["sizes"][key], old["sizes"][key]):
            assert a["n_carbons"] == b["n_carbons"]
            for qty, rel in (("rg", 0.12), ("ree", 0.2)):
                err = 3.0 * (a[qty]["error"] ** 2 + b[qty]["error"] ** 2) ** 0.5
                assert _close(a[qty]["value"], b[qty]["value"], rel, err), (key, a["n_carbons"], qty)
    for a, b in zip(new["sizes"]["atomistic"], old["sizes"]["atomistic"]):
        assert _close(a["density_npt_g_cm3"], b["density_npt_g_cm3"], 0.0, 0.015)
    assert _close(new["flory"]["cg_fit"]["nu"], old["flory"]["cg_fit"]["nu"], 0.0, 0.15)
    for k, v in old["bonded_js"].items():
        for d in ("bond", "angle"):
            assert _close(new["bonded_js"][k][d], v[d], 1.0, 0.01), (k, d)
