"""Silicon case study (slow): the README quotes case_studies/silicon/results/results.json, the
committed DFT labels are reproduced by PySCF with the stated settings, and a rerun of run.py
reproduces the committed numbers within tolerances and meets the targets of issue 8."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parents[2] / "case_studies" / "silicon"
COMMITTED = HERE / "results" / "results.json"
DISTILLED, REFINED = "SW-distilled ENNP", "DFT-refined ENNP"


def _load(name):
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(f"silicon_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _close(new, old, rel, abs_):
    return abs(new - old) <= max(abs_, rel * abs(old))


def _check_targets(res):
    d = res["properties"][DISTILLED]
    # issue 8: distilled ENNP within 0.3 THz of SW along the band path, elastic constants within 5 GPa
    assert d["phonons_vs_SW"]["max_abs_diff_THz"] <= 0.3, d["phonons_vs_SW"]
    assert d["elastic_max_abs_diff_vs_SW_GPa"] <= 5.0, d["elastic_vs_SW_GPa"]
    # the teacher's own numbers are the published SW values
    sw, pub = res["properties"]["SW"], res["published_sw"]
    for k in ("C11", "C12", "C44_relaxed", "C44_clamped"):
        assert sw[k] == pytest.approx(pub[k], abs=0.1), k
    assert sw["dt_max_fs"] == pytest.approx(pub["dt_max_fs"], abs=0.01)
    # the recipe: a few DFT labels lower the force error against held-out DFT cells
    e = res["errors"]
    assert e[REFINED]["vs_DFT_test"]["forces_rmse_eV_per_A"] < 0.9 * e[DISTILLED]["vs_DFT_test"]["forces_rmse_eV_per_A"]
    # the ensemble is more uncertain on the (untrained) liquid than on the crystal
    assert res["ensemble"]["std_ratio_liquid_over_crystal"] > 2.0
    # the liquid really is a liquid (atoms far from their lattice sites)
    assert res["sw_data"]["mean_site_displacement_A"]["liquid"] > 0.8


@pytest.mark.slow
def test_readme_quotes_the_committed_results():
    res = json.loads(COMMITTED.read_text())
    readme = (HERE / "README.md").read_text()
    p, e = res["properties"], res["errors"]
    quoted = [f"{p[DISTILLED]['phonons_vs_SW']['max_abs_diff_THz']:.3f}",
              f"{p[REFINED]['phonons_vs_SW']['max_abs_diff_THz']:.3f}",
              f"{p[DISTILLED]['elastic_max_abs_diff_vs_SW_GPa']:.2f}"]
    for name in ("SW", DISTILLED, REFINED):
        for k in ("C11", "C12", "C44_relaxed", "C44_clamped"):
            quoted.append(f"{p[name][k]:.1f}")
        quoted.append(f"{p[name]['dt_max_fs']:.2f}")
        quoted.append(f"{e[name]['vs_DFT_test']['forces_rmse_eV_per_A']:.3f}")
    quoted += [f"{1e3 * res['ensemble'][k]['mean_force_std_eV_per_A']:.0f}" for k in ("crystal", "liquid")]
    quoted += [f"{v['forces_rmse_vs_DFT_test']:.3f} / {v['forces_rmse_vs_DFT_train']:.3f}" for v in res["refinement_sweep"]]
    quoted += [f"{res['dft']['eos']['a0_A']:.3f}", f"{res['dft']['eos']['bulk_modulus_GPa']:.0f}",
               f"{res['dft']['alignment_delta_eV_per_atom']:.4f}"]
    missing = [q for q in quoted if q not in readme]
    assert not missing, f"README does not quote {missing}"


@pytest.mark.slow
def test_committed_results_meet_the_targets_and_dft_check_passes():
    res = json.loads(COMMITTED.read_text())
    _check_targets(res)
    # analytic DFT derivatives vs central differences of the DFT energy: agreement to ~1 % of
    # the force (≈ 0.5 eV/Å) and stress (≈ 0.05 eV/Å³) scales, the O(h²) truncation error
    for c in res["dft"]["finite_difference_check"]["components"]:
        tol = 5e-4 if "stress" in c["what"] else 5e-3  # eV/Å³ resp. eV/Å
        assert abs(c["difference"]) < tol, c


@pytest.mark.slow
def test_committed_dft_label_is_reproduced_by_pyscf_with_the_stated_settings():
    pytest.importorskip("pyscf")
    dft = _load("dft")
    train, test, summary = dft.load(HERE / "data")
    assert summary["settings"] == dft.SETTINGS
    atoms = test[0]
    r = dft.dft_calculation(atoms, stress=False)
    assert r["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
    np.testing.assert_allclose(r["forces"], atoms.get_forces(), atol=1e-4)


@pytest.mark.slow
def test_rerun_reproduces_committed_numbers_and_meets_targets(tmp_path):
    old = json.loads(COMMITTED.read_text())
    run = _load("run")
    assert run.main(["--out", str(tmp_path)]) == 0
    new = json.loads((tmp_path / "results.json").read_text())
    _check_targets(new)
    po, pn = old["properties"], new["properties"]
    for name in (DISTILLED, REFINED):  # training is epoch-limited and seeded: close reproduction
        assert _close(pn[name]["phonons_vs_SW"]["max_abs_diff_THz"], po[name]["phonons_vs_SW"]["max_abs_diff_THz"],
                      0.2, 0.05), name
        for k in ("C11", "C12", "C44_relaxed", "C44_clamped"):
            assert _close(pn[name][k], po[name][k], 0.0, 2.0), (name, k)
        assert _close(pn[name]["dt_max_fs"], po[name]["dt_max_fs"], 0.02, 0.0), name
        for ref in ("vs_DFT_test", "vs_SW_crystal_test"):
            a = new["errors"][name][ref]["forces_rmse_eV_per_A"]
            b = old["errors"][name][ref]["forces_rmse_eV_per_A"]
            assert _close(a, b, 0.15, 0.005), (name, ref, a, b)
    for vn, vo in zip(new["refinement_sweep"], old["refinement_sweep"]):
        for key in ("forces_rmse_vs_DFT_test", "forces_rmse_vs_SW_crystal_test"):
            assert _close(vn[key], vo[key], 0.15, 0.005), (vn["folder"], key, vn[key], vo[key])
        assert _close(vn["C11"], vo["C11"], 0.05, 2.0), vn["folder"]
    for k in ("crystal", "liquid"):
        a = new["ensemble"][k]["mean_force_std_eV_per_A"]
        b = old["ensemble"][k]["mean_force_std_eV_per_A"]
        assert _close(a, b, 0.3, 0.005), (k, a, b)
    assert new["dft"]["alignment_delta_eV_per_atom"] == pytest.approx(old["dft"]["alignment_delta_eV_per_atom"], abs=1e-9)
