"""Copper case study (slow): rerun case_studies/copper/run.py (full mode, ≈ 11 min on one
thread) and check the numbers quoted in its README (results/results.json) within tolerances,
plus the acceptance targets: validation force MAE < 10 meV/Å (issue 3), EMT's elastic
constants within 0.2 GPa of issue 6's reference, and the distilled ENNP's phonons and
elastic constants close to EMT's."""
import importlib.util
import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "case_studies" / "copper"
COMMITTED = HERE / "results" / "results.json"
#: earlier versions of run.py (one lattice constant in the sampling, stress weight 300), kept
#: for the README's "what it took" section; not rerun (their numbers are checked against these)
EARLIER = [HERE / "results" / "earlier_runs" / d / "results.json"
           for d in ("r_cut_4.5_one_volume", "r_cut_5.0_one_volume")]

# acceptance tolerances of the distilled ENNP against EMT (the committed full run meets them
# with a margin; see the README)
FORCE_MAE_MAX = 10.0        # meV/Å, issue 3
PHONON_MAX_DIFF = 0.10      # THz, max |ν_ENNP − ν_EMT| over every branch along the fcc path
ELASTIC_MAX_DIFF = 6.0      # GPa, max |ΔC_ij| (relaxed ion)
A0_MAX_DIFF = 0.004         # Å
DT_MAX_REL = 0.02           # relative difference of dt_max
CV300_MAX_DIFF = 0.1        # J/(K·mol)


def _load_run():
    spec = importlib.util.spec_from_file_location("copper_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _close(new, old, abs_):
    return abs(new - old) <= abs_


def readme_numbers(res: dict, earlier: list) -> list[str]:
    """Every number of the README, formatted as it is quoted there."""
    e, n, c = res["EMT"], res["ENNP"], res["comparison"]
    v32, v64, t = res["validation_float32"], res["validation_float64"], res["test_800K_float64"]
    out = [f"{v32['forces_mae_meV_per_A']:.2f}", f"{v32['energy_mae_meV_per_atom']:.3f}",
           f"{v32['stress_mae_GPa']:.3f}", f"{v64['forces_mae_meV_per_A']:.2f}",
           f"{t['forces_mae_meV_per_A']:.2f}", f"{v32['forces_ref_rms_meV_per_A']:.0f}",
           f"{res['validation_by_kind_float64']['liquid 2500 K']['forces_mae_meV_per_A']:.1f}",
           f"{e['lattice']['a0_A']:.5f}", f"{n['lattice']['a0_A']:.5f}", f"{c['a0_diff_A']:+.5f}",
           f"{abs(c['a0_diff_A']):.5f}", f"{abs(c['dt_max_diff_fs']):.2f}",
           f"{c['phonon_max_abs_diff_THz']:.3f}", f"{c['phonon_mean_abs_diff_THz']:.3f}",
           f"{c['phonon_max_abs_diff_at_emt_a0_THz']:.3f}",
           f"{e['phonons']['max_frequency_band_THz']:.3f}", f"{n['phonons']['max_frequency_band_THz']:.3f}",
           f"{e['timestep']['dt_max']:.2f}", f"{n['timestep']['dt_max']:.2f}",
           f"{c['elastic_max_abs_diff_GPa']:.1f}", f"{c['ennp_pressure_at_emt_a0_GPa']:.3f}",
           f"{res['training']['epochs']}", f"{res['data']['n_frames']}",
           f"{res['timings']['total_s'] / 60:.0f}", f"{res['timings']['training_s'] / 60:.1f}"]
    for m in (e, n):
        out += [f"{m['elastic']['relaxed'][k]:.1f}" for k in ("C11", "C12", "C44")]
        out += [f"{m['elastic']['bulk_modulus_hill_GPa']:.1f}", f"{m['elastic']['shear_modulus_hill_GPa']:.1f}"]
        out += [f"{m['phonons']['long_wave'][k]:.1f}" for k in ("C11_GPa", "C44_GPa")]
        out += [f"{m['thermal_300K'][k]:.3f}" for k in ("free_energy_kJ_per_mol", "entropy_J_per_K_mol",
                                                         "heat_capacity_J_per_K_mol")]
    out += [f"{c['thermal_300K_diff'][k]:+.3f}" for k in ("free_energy_kJ_per_mol", "entropy_J_per_K_mol",
                                                           "heat_capacity_J_per_K_mol")]
    out += [f"{c['bulk_modulus_diff_GPa']:+.1f}", f"{c['shear_modulus_diff_GPa']:+.1f}",
            f"{max(abs(r['comparison']['bulk_modulus_diff_GPa']) for r in earlier):.1f}",
            f"{abs(c['thermal_300K_diff']['free_energy_kJ_per_mol']):.3f}",
            f"{n['elastic']['analytic_vs_finite_strain_GPa']['relaxed']:.2f}"]
    for r in earlier:
        out += [f"{r['ENNP']['elastic']['relaxed'][k]:.1f}" for k in ("C11", "C12", "C44")]
        out += [f"{r['ENNP']['elastic']['bulk_modulus_hill_GPa']:.1f}", f"{r['comparison']['phonon_max_abs_diff_THz']:.3f}",
                f"{r['validation_float32']['forces_mae_meV_per_A']:.2f}"]
    return out


@pytest.mark.slow
def test_readme_quotes_the_committed_results():
    res = json.loads(COMMITTED.read_text())
    earlier = [json.loads(p.read_text()) for p in EARLIER]
    readme = (HERE / "README.md").read_text()
    missing = [s for s in readme_numbers(res, earlier) if s not in readme]
    assert not missing, f"README does not quote {missing}"
    # and the committed run met the targets it is quoted for
    assert res["mode"] == "full"
    assert res["validation_float32"]["forces_mae_meV_per_A"] < FORCE_MAE_MAX
    assert res["comparison"]["phonon_max_abs_diff_THz"] < PHONON_MAX_DIFF
    assert res["comparison"]["elastic_max_abs_diff_GPa"] < ELASTIC_MAX_DIFF
    assert re.search(r"run\.py", readme)


@pytest.mark.slow
def test_rerun_reproduces_readme_numbers_and_meets_acceptance(tmp_path):
    run = _load_run()
    assert run.main(["--out", str(tmp_path)]) == 0
    old = json.loads(COMMITTED.read_text())
    new = json.loads((tmp_path / "results.json").read_text())
    for f in ("results.json", "results_table.csv", "band.csv", "thermal.csv", "phonons.png", "thermal.png",
              "elastic.png", "force_parity.png", "ennp/model.pt", "ennp/learning_curve.png"):
        assert (tmp_path / f).is_file(), f
    # acceptance: force MAE (issue 3) on the validation split and on the unseen 800 K test set
    assert new["validation_float32"]["forces_mae_meV_per_A"] < FORCE_MAE_MAX
    assert new["test_800K_float64"]["forces_mae_meV_per_A"] < FORCE_MAE_MAX
    # the float64 evaluation of the float32-trained model agrees with the trainer's numbers
    assert _close(new["validation_float64"]["forces_mae_meV_per_A"],
                  new["validation_float32"]["forces_mae_meV_per_A"], 0.01)
    # EMT itself is deterministic: the committed numbers exactly, issue 6's reference within 0.2 GPa
    e_new, e_old = new["EMT"], old["EMT"]
    assert _close(e_new["lattice"]["a0_A"], e_old["lattice"]["a0_A"], 1e-5)
    assert _close(e_new["lattice"]["a0_A"], run.EMT_REFERENCE["a0_A"], 5e-4)
    for k in ("C11", "C12", "C44"):
        assert _close(e_new["elastic"]["relaxed"][k], e_old["elastic"]["relaxed"][k], 0.01)
        assert _close(e_new["elastic"]["relaxed"][k], run.EMT_REFERENCE[k], 0.2)
    assert _close(e_new["phonons"]["max_frequency_band_THz"], e_old["phonons"]["max_frequency_band_THz"], 1e-4)
    for k, v in e_old["thermal_300K"].items():
        assert _close(e_new["thermal_300K"][k], v, 1e-4), k
    assert _close(e_new["timestep"]["dt_max"], e_old["timestep"]["dt_max"], 1e-3)
    # phonons and elastic constants agree through the method of long waves: EMT (range ≈ 5 Å)
    # within 0.5 GPa; the 2-layer ENNP's force constants reach beyond the 108-atom supercell, so
    # its small-q slope is interpolated and C11 from v_LA may differ by a few GPa (see README)
    for m, tol in (("EMT", 0.5), ("ENNP", 3.5)):
        lw, el = new[m]["phonons"]["long_wave"], new[m]["elastic"]["relaxed"]
        assert _close(lw["C11_GPa"], el["C11"], tol) and _close(lw["C44_GPa"], el["C44"], tol), (m, lw, el)
        # the phonon Γ-point time step and cgkit.properties.timestep's agree (same 108-atom cell)
        assert _close(new[m]["phonons"]["dt_max_supercell_gamma_fs"], new[m]["timestep"]["dt_max"], 0.05)
    # the distilled ENNP against EMT: acceptance tolerances
    c = new["comparison"]
    assert c["phonon_max_abs_diff_THz"] < PHONON_MAX_DIFF, c
    assert c["elastic_max_abs_diff_GPa"] < ELASTIC_MAX_DIFF, c
    assert abs(c["a0_diff_A"]) < A0_MAX_DIFF, c
    assert abs(c["dt_max_diff_fs"]) < DT_MAX_REL * e_new["timestep"]["dt_max"], c
    assert abs(c["thermal_300K_diff"]["heat_capacity_J_per_K_mol"]) < CV300_MAX_DIFF, c
    assert new["ENNP"]["elastic"]["stable"] and new["ENNP"]["phonons"]["min_frequency_THz"] > -0.01
    # ... and the README's ENNP numbers within the run-to-run spread of a time-capped training
    n_new, n_old = new["ENNP"], old["ENNP"]
    assert _close(new["validation_float32"]["forces_mae_meV_per_A"],
                  old["validation_float32"]["forces_mae_meV_per_A"], 2.5)
    assert _close(n_new["lattice"]["a0_A"], n_old["lattice"]["a0_A"], 0.002)
    assert _close(c["phonon_max_abs_diff_THz"], old["comparison"]["phonon_max_abs_diff_THz"], 0.05)
    for k in ("C11", "C12", "C44"):
        assert _close(n_new["elastic"]["relaxed"][k], n_old["elastic"]["relaxed"][k], 4.0), k
    assert _close(n_new["phonons"]["max_frequency_band_THz"], n_old["phonons"]["max_frequency_band_THz"], 0.05)
    assert _close(n_new["timestep"]["dt_max"], n_old["timestep"]["dt_max"], 0.3)
    for k, tol in (("free_energy_kJ_per_mol", 0.05), ("entropy_J_per_K_mol", 0.2), ("heat_capacity_J_per_K_mol", 0.05)):
        assert _close(n_new["thermal_300K"][k], n_old["thermal_300K"][k], tol), k
