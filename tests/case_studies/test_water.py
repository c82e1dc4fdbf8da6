"""Water case study (slow): the committed numbers of case_studies/water/results/results.json,
quoted by its README, hold; with the atomistic run present (CGKIT_WATER_WORK, default
/tmp/cg-water, made by case_studies/water/run_atomistic.sh), the structure analysis of the
mapped atomistic trajectory and the constraint check are recomputed and compared."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "case_studies" / "water"
COMMITTED = HERE / "results" / "results.json"
WORK = Path(os.environ.get("CGKIT_WATER_WORK", "/tmp/cg-water"))


def _run_module():
    spec = importlib.util.spec_from_file_location("water_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_committed_results_and_readme_agree():
    res = json.loads(COMMITTED.read_text())
    readme = (HERE / "README.md").read_text()
    st = res["structure"]
    for name in ("spline", "threebody", "nn"):
        js = st[name]["vs_atomistic"]["triplet_angle_js"]
        assert f"{js:.4f}" in readme, f"README does not quote the {name} triplet-angle JS {js:.4f}"
        assert f"{st[name]['vs_atomistic']['rdf_first_peak_ratio']:.4f}" in readme
    # acceptance (issue 14): many-body models cut the triplet-angle JS at least 3x below pair-only;
    # RDF first peak within 5 % of the atomistic one (the neural model with its defaults: mixed-shell
    # angular invariants; the first neural model, nn_v1, was 5.9 % low)
    js_pair = st["spline"]["vs_atomistic"]["triplet_angle_js"]
    assert js_pair / st["threebody"]["vs_atomistic"]["triplet_angle_js"] > 3
    assert js_pair / st["nn"]["vs_atomistic"]["triplet_angle_js"] > 3
    assert abs(st["threebody"]["vs_atomistic"]["rdf_first_peak_ratio"] - 1) < 0.05
    assert abs(st["nn"]["vs_atomistic"]["rdf_first_peak_ratio"] - 1) < 0.05
    assert res["fit"]["neural"]["kind"] == "descriptor"
    # every neural variant quoted in the README, with its numbers; the joint fits' objective fell
    # monotonically
    for name, fv in res.get("fit_variants", {}).items():
        assert f"{st[name]['vs_atomistic']['rdf_first_peak_ratio']:.4f}" in readme, name
        assert f"{st[name]['vs_atomistic']['triplet_angle_js']:.4f}" in readme, name
        if fv.get("backfit") and fv["backfit"]["rounds"]:
            assert fv["backfit"]["monotonic"], name
    if res["fit"].get("nn_backfit") and res["fit"]["nn_backfit"]["rounds"]:
        assert res["fit"]["nn_backfit"]["monotonic"]
    # tetrahedral order: pair-only loses it, both many-body models recover most of it
    q_aa = st["atomistic"]["q_mean"]
    assert st["spline"]["q_mean"] < q_aa - 0.15
    assert st["threebody"]["q_mean"] > q_aa - 0.08 and st["nn"]["q_mean"] > q_aa - 0.10
    ev = res["fit"]["neural"]["residual_variance_explained"]["validation"]
    assert f"{100 * ev:.1f}" in readme
    # constraint check on the real SETTLE water: the unaware optimized map is biased, the
    # constraint-aware one is the basic map
    c = res["constraints"]
    assert c["optimized_no_constraints"]["bias_vs_basic"]["z"] > 5
    assert abs(c["optimized_constraint_aware"]["bias_vs_basic"]["difference"]) < 1e-10
    assert abs(c["basic"]["identity"]["z"]) < 3
    # the neural fit explains a real share of the residual the pair prior leaves
    assert ev > 0.15                      # measured 0.185 (first model 0.172; the ENNP: ~0.01 after 2 epochs)
    # speed acceptance: the default neural fit took less than 30 min
    assert res["fit"]["nn_timing_seconds"]["cache"] + res["fit"]["nn_timing_seconds"]["training"] < 1800


@pytest.mark.slow
def test_recomputed_reference_structure_and_constraint_check_match_committed():
    aa = WORK / "atomistic"
    cg = WORK / "cg_map"
    if not (aa / "traj.trr").is_file() or not (cg / "cg.trr").is_file():
        pytest.skip(f"no atomistic water run in {WORK} (run case_studies/water/run_atomistic.sh and "
                    "case_studies/water/run.py, or set CGKIT_WATER_WORK)")
    res = json.loads(COMMITTED.read_text())
    run = _run_module()
    from cgkit.properties.water_structure import WaterStructure
    ref = WaterStructure(run.cg_frames(cg / "cg.psf", cg / "cg.trr")).run().summary()
    old = res["structure"]["atomistic"]
    assert ref["rdf_first_peak"]["g"] == pytest.approx(old["rdf_first_peak"]["g"], rel=1e-6)
    assert ref["q_mean"] == pytest.approx(old["q_mean"], rel=1e-6)
    new = {}
    run.constraint_check(aa, new)
    assert new["constraints"]["optimized_no_constraints"]["bias_vs_basic"]["z"] == pytest.approx(
        res["constraints"]["optimized_no_constraints"]["bias_vs_basic"]["z"], rel=1e-6)
