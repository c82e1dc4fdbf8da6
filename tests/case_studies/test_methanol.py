"""Methanol case study (case_studies/methanol).

Fast: on the committed 10-frame one-bead subset of the mapped OPLS-AA methanol trajectory
(case_studies/methanol/data/one_bead_10frames, made by `cgkit map --stop 10` with VOTCA's
tutorial mapping), cgkit in VOTCA's conventions reproduces VOTCA ``csg_fmatch`` with the
tutorial's own fmatch.xml (independent reference; skipped without csg_fmatch).

Slow: the committed numbers of results/results.json are the ones the README quotes and meet the
stated bounds; with the atomistic run present (CGKIT_METHANOL_WORK, default /tmp/cg-methanol,
made by run_atomistic.sh + run.py) the reference structure and the VOTCA comparison are
recomputed and compared with the committed numbers.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parents[2] / "case_studies" / "methanol"
DATA = HERE / "data" / "one_bead_10frames"
COMMITTED = HERE / "results" / "results.json"
WORK = Path(os.environ.get("CGKIT_METHANOL_WORK", "/tmp/cg-methanol"))
FMATCH = Path("/usr/share/votca/csg-tutorials/methanol/force_matching/fmatch.xml")
CSG = shutil.which("csg_fmatch")


def _run_module():
    spec = importlib.util.spec_from_file_location("methanol_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(CSG is None or not FMATCH.is_file(),
                    reason="needs VOTCA csg_fmatch and votca-tutorials (apt-get install votca votca-tutorials)")
def test_one_bead_pair_table_matches_csg_fmatch_on_real_methanol(tmp_path):
    from cgkit.forcematch import SplineForceMatching
    from cgkit.forcematch.votca import read_votca_settings, read_votca_table, votca_options
    from cgkit.trajectory import read_cg_arrays
    P, F, B, tn, sp, masses, top = read_cg_arrays(DATA / "cg.psf", DATA / "cg.trr")
    assert P.shape == (10, 1000, 3) and list(tn) == ["A"]
    (tmp_path / "topol.xml").write_text(
        f'<topology><molecules><molecule name="MeO" nmols="{len(sp)}" nbeads="1">'
        f'<bead name="C0" type="A" mass="{masses[0]:.4f}" q="0"/></molecule></molecules></topology>\n')
    shutil.copy(FMATCH, tmp_path / "fmatch.xml")
    run = subprocess.run([CSG, "--top", "topol.xml", "--trj", str(DATA / "cg.trr"), "--no-map",
                          "--options", "fmatch.xml"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    st = read_votca_settings(tmp_path / "fmatch.xml", interactions=["pair A-A"])
    assert st.frames_per_block == 5 and st.grids["pair A-A"] == pytest.approx((2.9, 15.4, 0.2))
    fm_kw, solve_kw = votca_options(st)
    fm = SplineForceMatching(tn, sp, top, **fm_kw)
    fm.accumulate(P, F, B, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # 6 samples below 2.9 Å: extrapolated, as csg_fmatch does
        res = fm.solve(**solve_kw)
    x, fv, ev = read_votca_table(tmp_path / "CG-CG.force", "pair")
    f = res.tables[0](x)[1]
    rms = np.sqrt(np.mean(fv ** 2))
    # measured: relative RMS 0.0056, largest |Δ| 0.024 RMS at the grid's lower end (2.9 Å)
    assert np.sqrt(np.mean((f - fv) ** 2)) / rms < 0.015
    assert np.abs(f - fv).max() / rms < 0.05
    # both see the same physics: repulsive core, the H-bond minimum near 3.6 Å
    assert fv[x < 3.0].min() > 0.3 and f[x < 3.0].min() > 0.3
    k = (x > 3.4) & (x < 3.9)
    assert abs(x[k][np.argmin(f[k])] - x[k][np.argmin(fv[k])]) < 0.05


@pytest.mark.slow
def test_committed_results_and_readme_agree():
    res = json.loads(COMMITTED.read_text())
    readme = (HERE / "README.md").read_text()
    vp = res["votca_parity"]
    for name in ("fm1_votca", "fm1_votca_conventions"):
        assert f"{vp[name]['relative_rms']:.4f}" in readme, name
        assert f"{100 * vp[name]['fraction_within_2sigma']:.1f} %" in readme, name
    # cgkit in VOTCA's conventions reproduces csg_fmatch within its block errors (issue 14 item 1)
    assert vp["fm1_votca_conventions"]["relative_rms"] < 0.005          # measured 0.0017
    assert vp["fm1_votca_conventions"]["fraction_within_2sigma"] > 0.98  # measured 1.0
    assert vp["fm1_votca"]["relative_rms"] < 0.03 and vp["fm1_votca"]["fraction_within_2sigma"] > 0.9
    one = res["structure"]["one_bead"]
    for name in ("pair1", "threebody1"):
        v = one[name]["vs_atomistic"]
        assert f"{v['rdf_first_peak_ratio']:.3f}" in readme and f"{v['triplet_angle_js']:.4f}" in readme
        assert abs(v["rdf_first_peak_ratio"] - 1) < 0.03
        assert res["md"][name]["validation"]["sampling_outside_reference"] == []
    # three-body lowers the triplet-angle JS of the pair model (measured 1.6x)
    assert one["pair1"]["vs_atomistic"]["triplet_angle_js"] > 1.3 * one["threebody1"]["vs_atomistic"]["triplet_angle_js"]
    two = res["structure"]["two_bead"]
    assert two["sampling_outside_reference"] == []
    bond = two["distributions"]["bond ME-OH"]
    assert bond["js_divergence"] < 0.002 and abs(bond["mean_test"] - bond["mean_reference"]) < 0.005
    for lab, v in two["rdf"].items():
        assert v["js_divergence_r2g"] < 1e-3, lab
        assert f"{v['first_peak_ratio']:.3f}" in readme, lab
    # the two-bead pair model misses the ME-OH and OH-OH first-peak heights (README: 15 % low,
    # 10 % high); the test holds that finding so that a change is noticed
    assert 0.75 < two["rdf"]["pair ME-OH"]["first_peak_ratio"] < 0.93
    assert 1.03 < two["rdf"]["pair OH-OH"]["first_peak_ratio"] < 1.2
    # with the bead charges' Coulomb as a fixed term: the same structure (README)
    twc = res["structure"]["two_bead_coulomb"]
    assert twc["sampling_outside_reference"] == [] and twc["distributions"]["bond ME-OH"]["js_divergence"] < 0.005
    for lab, v in twc["rdf"].items():
        assert f"{v['first_peak_ratio']:.3f}" in readme, lab
        assert abs(v["first_peak_ratio"] - two["rdf"][lab]["first_peak_ratio"]) < 0.03, lab
    # pressure: no model is pressure-consistent (FM does not constrain it); quoted in the README
    p = res["pressure_bar"]
    for name in ("atomistic_gromacs", "pair1", "threebody1", "pair2", "pair2_coulomb"):
        assert f"{p[name]['value']:.0f}" in readme, name
    assert p["pair1"]["value"] > p["atomistic_gromacs"]["value"] + 1000
    # speed (CPU time per step, same run): the pair-table CG MD is far faster than GROMACS all-atom
    sp = res["speed_cpu"]
    for name in ("pair1", "threebody1", "pair2"):
        assert f"{sp[name]['speedup_vs_gromacs']:.1f}" in readme, name
    assert f"{sp['pair2_coulomb']['speedup_vs_gromacs']:.2f}" in readme
    assert sp["pair1"]["speedup_vs_gromacs"] > 10
    # mapping: the tutorial run has no constraints, and the tpr says so
    assert res["mapping"]["two_bead"]["force_map_constraints"] == "topology (0 constrained pairs)"


@pytest.mark.slow
def test_rerun_reference_structure_votca_parity_and_pair_cg_md(tmp_path):
    aa, cg1 = WORK / "atomistic", WORK / "cg1"
    if not (cg1 / "cg.trr").is_file() or not (WORK / "votca_fmatch" / "CG-CG.force").is_file():
        pytest.skip(f"no methanol run in {WORK} (run case_studies/methanol/run_atomistic.sh and run.py, or set "
                    "CGKIT_METHANOL_WORK)")
    res = json.loads(COMMITTED.read_text())
    run = _run_module()
    from cgkit.properties.water_structure import WaterStructure
    ref = WaterStructure(run.cg_frames(cg1 / "cg.psf", cg1 / "cg.trr"), bead_mass=run.BEAD_MASS_1,
                         r_max=run.RDF_MAX, r_shell=run.R_SHELL).run().summary()
    old = res["structure"]["one_bead"]["atomistic"]
    assert ref["rdf_first_peak"]["g"] == pytest.approx(old["rdf_first_peak"]["g"], rel=1e-6)
    assert ref["q_mean"] == pytest.approx(old["q_mean"], rel=1e-6)
    new = {}
    run.votca_parity(WORK, aa, new, tmp_path)
    for name in ("fm1_votca", "fm1_votca_conventions"):
        assert new["votca_parity"][name]["relative_rms"] == pytest.approx(
            res["votca_parity"][name]["relative_rms"], rel=1e-6)
    # the pair fit and a short CG MD, rerun from the mapped trajectory
    fm, md = tmp_path / "fm", tmp_path / "md"
    run.sh(run.CGKIT + ["fm", "--cg-trajectory", cg1 / "cg.trr", "--cg-topology", cg1 / "cg.psf", "--out", fm],
           tmp_path / "fm.log")
    s = json.loads((fm / "summary.json").read_text())
    assert s["residual_per_bead_type"]["A"]["rms_residual_eV_per_A"] == pytest.approx(
        res["fit"]["pair1"]["residual"]["A"]["rms_residual_eV_per_A"], rel=1e-6)
    run.sh(run.CGKIT + ["md", "--potential", fm / "cg_potential.pt", "--structure", cg1 / "cg.psf", "--frames",
                        cg1 / "cg.trr", "--frame", "0", "--timestep", "2", "--steps", 4000, "--equilibration", 1000,
                        "--write-every", 100, "--reference", cg1 / "cg.trr", "--seed", 1, "--out", md],
           tmp_path / "md.log")
    v = json.loads((md / "summary.json").read_text())["validation"]
    assert v["rdf"]["pair A-A"]["js_divergence_r2g"] < 3e-4          # committed run: 4.2e-5
    st = WaterStructure(run.cg_frames(md / "traj.pdb" if (md / "traj.pdb").is_file() else cg1 / "cg.psf",
                                      md / "traj.dcd"), bead_mass=run.BEAD_MASS_1, r_max=run.RDF_MAX,
                        r_shell=run.R_SHELL).run().summary()
    assert st["rdf_first_peak"]["g"] / old["rdf_first_peak"]["g"] == pytest.approx(
        res["structure"]["one_bead"]["pair1"]["vs_atomistic"]["rdf_first_peak_ratio"], abs=0.04)
