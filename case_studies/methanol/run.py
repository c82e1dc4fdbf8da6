"""Methanol case study: OPLS-AA methanol (GROMACS, VOTCA csg-tutorials) mapped to one bead
(VOTCA's own mapping) and to two beads (CH3 + OH, ``mappings/methanol_2bead.yaml``); spline
MS-CG pair (one bead), pair + three-body (one bead), pair + bond and pair + bond + Coulomb (two
beads); CG MD of each; structure, pressure and speed against the mapped atomistic trajectory;
the one-bead pair table against VOTCA ``csg_fmatch`` on the same trajectory with the tutorial's
grid.

Steps (every number goes to ``results/results.json``; the README quotes them):

0. ``run_atomistic.sh`` (needs gmx + votca-tutorials): 1000 methanol molecules, 10 ps
   equilibration + 50 ps with positions and forces every 0.25 ps (201 frames), into
   WORK/atomistic (not committed: 29 MB).
1. ``cgkit map`` with the tutorial's ``methanol.xml`` (one bead, weights C 12, H 1, O 16) and
   with ``mappings/methanol_2bead.yaml`` (``--noise``: basic vs optimized force map).
2. ``cgkit fm``: pair (one bead), pair + ``--threebody`` (one bead), pair + bond (two beads),
   pair + bond + fixed bead-charge Coulomb (two beads, ``--coulomb auto``);
   ``cgkit fm --votca-settings fmatch.xml`` (with and without ``--votca-conventions``) and
   ``csg_fmatch`` on the atomistic trajectory with the tutorial's mapping and settings.
3. ``cgkit md`` (Langevin, 300 K, NVT in the atomistic box, ``--reference`` the mapped
   trajectory) with each model; structure (:class:`properties.water_structure.WaterStructure`
   for one bead, :class:`cgkit.forcematch.validate.StructuralValidation` for both), virial
   pressure, speed in molecule·ns/day against GROMACS.

    python case_studies/methanol/run.py [--work /tmp/cg-methanol] [--skip-atomistic]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
TUTORIAL = Path(os.environ.get("VOTCA_METHANOL_TUTORIAL", "/usr/share/votca/csg-tutorials/methanol"))
MAP1 = TUTORIAL / "atomistic" / "methanol.xml"          # VOTCA's one-bead map (type A)
FMATCH = TUTORIAL / "force_matching" / "fmatch.xml"     # VOTCA's force-matching settings
MAP2 = ROOT / "mappings" / "methanol_2bead.yaml"        # CH3 (type ME) + OH (type OH), one bond
TEMPERATURE = 300.0
BEAD_MASS_1 = 32.0424          # amu, OPLS-AA methanol
N_MOLECULES = 1000
CGKIT = [sys.executable, "-m", "cgkit.cli"]
# The one-bead g(r) has a hydrogen-bond peak at 3.4 Å (about 2 neighbours: chains), a minimum
# at 3.85 Å and a broad second peak at 4.5 Å. First shell (triplet angles) = the H-bond shell.
R_SHELL = 3.9                  # Å, first minimum of the one-bead g(r)
# three-body (SW-type): cut-off a a little beyond that shell, range γ as in the water case
THREEBODY = "A-A-A:a=4.2:gamma=0.8"
RDF_MAX = 15.0                 # Å (box 40.9 Å)


def sh(cmd, log: Path, env=None, cwd=None):
    """Run a command (cgkit CLI, gmx, csg_fmatch), its output into ``log``; raise on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        r = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
                           env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}; see {log}")
    return time.perf_counter() - t0


def cg_frames(top, traj, start=0):
    """(positions (n, 3) Å, box (3,) Å) of every frame of a CG trajectory (MDAnalysis)."""
    import MDAnalysis as mda
    u = mda.Universe(str(top), str(traj))
    for ts in u.trajectory[start:]:
        yield u.atoms.positions.astype(float), ts.dimensions[:3].astype(float)


def pressure_bar(potential_file, psf, frames, temperature=TEMPERATURE):
    """Virial pressure (bar) of a CG potential on frames of the CG system of ``psf``
    (:mod:`cgkit.properties.pressure`); mean and standard error over frames (positions (n, 3) Å,
    box (3,) Å)."""
    from cgkit.io_potential import load_potential
    from cgkit.properties.pressure import pressure_summary, virial_pressures
    from cgkit.trajectory import read_cg_system
    pot = load_potential(potential_file)
    type_names, species, _, _ = read_cg_system(psf)
    sp = np.array([list(pot.type_names).index(type_names[s]) for s in species])
    return pressure_summary(virial_pressures(pot, frames, sp, pot.type_names, temperature), "bar")


def gmx_pressure(edr: Path, work: Path):
    """Mean pressure (bar) of the atomistic run from its energy file (gmx energy), block error."""
    out = work / "pressure.xvg"
    r = subprocess.run(["gmx", "-quiet", "energy", "-f", str(edr), "-o", str(out)], input="Pressure\n\n",
                       capture_output=True, text=True)
    if r.returncode:
        return None
    vals = np.array([float(line.split()[1]) for line in out.read_text().splitlines()
                     if line and line[0] not in "#@"])
    nb = 10
    bm = np.array([b.mean() for b in np.array_split(vals, nb)])
    return {"value": float(vals.mean()), "error": float(bm.std(ddof=1) / np.sqrt(nb)), "unit": "bar",
            "frames": int(len(vals))}


def cpu_seconds(cmd, log: Path, cwd=None) -> float:
    """CPU time (user + system, s) of a child command, single-threaded (OMP_NUM_THREADS=1)."""
    import resource
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sh(cmd, log, cwd=cwd)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def speed_benchmark(work: Path, aa: Path, pots: dict, cgs: dict, models, previous=None) -> dict:
    """Molecule·ns/day per core from CPU time, robust to the load of a shared machine: each engine
    runs n1 and n2 steps and the CPU-time difference (start-up, input checks and set-up cancel)
    gives the CPU seconds per step. GROMACS: ``gmx mdrun -nt 1`` on the atomistic tpr (1 fs);
    cgkit: ``cgkit md`` as in the case study (2 fs, Langevin, no trajectory). Engines already
    in ``previous`` (an earlier result of this function) are not measured again."""
    bench = work / "bench"
    bench.mkdir(exist_ok=True)
    out = {}
    per_step = {k: (v["cpu_seconds_per_step"], v["timestep_fs"]) for k, v in (previous or {}).items()}
    n1, n2 = 500, 1500
    t = None
    if "gromacs_all_atom" not in per_step:
        t = [cpu_seconds(["gmx", "-quiet", "mdrun", "-nt", "1", "-s", aa / "topol.tpr", "-nsteps", n,
                          "-deffnm", f"gmx{n}", "-g", f"gmx{n}.log"], bench / f"gmx{n}.out", cwd=bench)
             for n in (n1, n2)]
    if t is not None:
        per_step["gromacs_all_atom"] = ((t[1] - t[0]) / (n2 - n1), 1.0)
    for name in models:
        if name in per_step:
            continue
        m1, m2 = (100, 300) if name in ("threebody1", "pair2_coulomb") else (500, 2500)
        tt = [cpu_seconds(CGKIT + ["md", "--potential", pots[name], "--structure", cgs[name] / "cg.psf",
                                   "--frames", cgs[name] / "cg.trr", "--frame", "0", "--timestep", "2",
                                   "--temperature", TEMPERATURE, "--steps", m, "--write-every", 0,
                                   "--out", bench / f"{name}_{m}", "--overwrite"], bench / f"{name}_{m}.log")
              for m in (m1, m2)]
        per_step[name] = ((tt[1] - tt[0]) / (m2 - m1), 2.0)
    for name, (cpu, dt_fs) in per_step.items():
        nsd = dt_fs * 1e-6 * 86400.0 / cpu          # ns simulated per CPU-day
        out[name] = {"cpu_seconds_per_step": cpu, "timestep_fs": dt_fs, "ns_per_day_per_core": nsd,
                     "molecule_ns_per_day_per_core": nsd * N_MOLECULES}
    g = out["gromacs_all_atom"]["molecule_ns_per_day_per_core"]
    for name in out:
        out[name]["speedup_vs_gromacs"] = out[name]["molecule_ns_per_day_per_core"] / g
    return out


def gmx_ns_per_day(log: Path):
    """GROMACS performance (ns/day) from the last 'Performance:' line of md.log."""
    perf = [ln.split() for ln in log.read_text().splitlines() if ln.startswith("Performance:")] \
        if log.is_file() else []
    return float(perf[-1][1]) if perf else None


def votca_parity(work: Path, aa: Path, results: dict, out_dir: Path):
    """csg_fmatch (tutorial mapping + fmatch.xml, on the atomistic trajectory) against cgkit fm
    --votca-settings on cgkit's mapped trajectory (cgkit defaults, and --votca-conventions):
    relative RMS of the force-table difference and the fraction within 2 σ_VOTCA (block error)
    over the range cgkit's default fit keeps (≥ 10 samples per grid interval)."""
    from cgkit.forcematch.votca import KJ_PER_MOL_NM_PER_EV_PER_A, read_votca_table
    from cgkit.io_potential import load_potential
    vd = work / "votca_fmatch"
    if not (vd / "CG-CG.force").is_file():
        vd.mkdir(parents=True, exist_ok=True)
        shutil.copy(FMATCH, vd / "fmatch.xml")
        t = sh([shutil.which("csg_fmatch"), "--top", aa / "topol.tpr", "--trj", aa / "traj.trr",
                "--cg", MAP1, "--options", "fmatch.xml"], work / "csg_fmatch.log", cwd=vd)
        results.setdefault("timing_seconds", {})["csg_fmatch"] = t
    x, fv, ev = read_votca_table(vd / "CG-CG.force", "pair")
    s_def = json.loads((work / "fm1_votca" / "summary.json").read_text())
    lo, hi = next(v["table_range"] for v in s_def["interactions"] if v["interaction"] == "pair A-A")
    ok = (x >= lo) & (x < hi - 1e-9) & (ev > 0)
    out = {"range_A": [lo, hi], "points": int(ok.sum()), "grid": "fmatch.xml: 0.29-1.54 nm, step 0.02 nm",
           "frames_per_block": 5}
    for name in ("fm1_votca", "fm1_votca_conventions"):
        tab = load_potential(work / name / "cg_potential.pt").table("pair", ("A", "A"))
        d = tab(x[ok])[1] - fv[ok]
        z = np.abs(d) / ev[ok]
        out[name] = {"relative_rms": float(np.sqrt(np.mean(d ** 2) / np.mean(fv[ok] ** 2))),
                     "mean_difference_kJ_mol_nm": float(d.mean() * KJ_PER_MOL_NM_PER_EV_PER_A),
                     "median_abs_diff_over_sigma": float(np.median(z)),
                     "fraction_within_2sigma": float(np.mean(z <= 2))}
    results["votca_parity"] = out
    _plot_parity(work, x, fv, ev, ok, out, out_dir)


def _plot_parity(work, x, fv, ev, ok, out, out_dir):
    from cgkit.io_potential import load_potential
    from cgkit.plotting import pyplot, savefig
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.fill_between(x[ok], fv[ok] - 2 * ev[ok], fv[ok] + 2 * ev[ok], alpha=0.3, color="C0",
                    label="csg_fmatch ± 2σ (blocks)")
    ax.plot(x[ok], fv[ok], color="C0")
    for name, c in (("fm1_votca", "C1"), ("fm1_votca_conventions", "C2")):
        tab = load_potential(work / name / "cg_potential.pt").table("pair", ("A", "A"))
        ax.plot(x[ok], tab(x[ok])[1], "--", color=c,
                label=f"cgkit {'--votca-conventions' if 'conv' in name else 'defaults'} "
                      f"(relRMS {out[name]['relative_rms']:.3f})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("pair force A-A (eV/Å)")
    ax.set_ylim(-0.15, 0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    savefig(fig, out_dir / "votca_parity.png")
    plt.close(fig)


def first_peak(r, g):
    """(height, position) of the highest g(r) maximum (the first peak of these liquids)."""
    k = int(np.argmax(g))
    return float(g[k]), float(r[k])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/cg-methanol", type=Path)
    ap.add_argument("--out", default=HERE / "results", type=Path)
    ap.add_argument("--md-steps", type=int, default=10000, help="production steps of the pair CG MD (2 fs)")
    ap.add_argument("--md-equilibration", type=int, default=2000)
    ap.add_argument("--threebody-md-steps", type=int, default=2500,
                    help="production steps of the three-body and Coulomb CG MD (torch path, slower per step)")
    ap.add_argument("--threebody-md-equilibration", type=int, default=500)
    ap.add_argument("--skip-atomistic", action="store_true", help="reuse WORK/atomistic")
    ap.add_argument("--skip-fit", action="store_true", help="reuse WORK/fm*")
    ap.add_argument("--skip-md", action="store_true", help="reuse WORK/md_*")
    ap.add_argument("--models", default="pair1,threebody1,pair2,pair2_coulomb")
    ap.add_argument("--skip-bench", action="store_true", help="skip the CPU-time speed benchmark")
    ap.add_argument("--rebench", action="store_true",
                    help="measure every engine again (default: only those not in results.json)")
    args = ap.parse_args(argv)
    work, out = args.work, args.out
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / "results.json"
    results = json.loads(res_file.read_text()) if res_file.is_file() else {}
    timing = results.setdefault("timing_seconds", {})
    aa = work / "atomistic"
    if not args.skip_atomistic:
        timing["atomistic"] = sh(["nice", "-n", "10", "bash", HERE / "run_atomistic.sh", aa, "1"],
                                 work / "run_atomistic.log")
    # 1. map
    cg1, cg2 = work / "cg1", work / "cg2"
    if not (cg1 / "cg.trr").is_file():
        timing["map1"] = sh(CGKIT + ["map", "--mapping", MAP1, "--topology", aa / "topol.tpr", "--trajectory",
                                     aa / "traj.trr", "--out", cg1, "--overwrite"], work / "map1.log")
    if not (cg2 / "cg.trr").is_file():
        timing["map2"] = sh(CGKIT + ["map", "--mapping", MAP2, "--topology", aa / "topol.tpr", "--trajectory",
                                     aa / "traj.trr", "--noise", "--optimize-frames", 50, "--out", cg2, "--overwrite"], work / "map2.log")
    results["mapping"] = {"one_bead": json.loads((cg1 / "summary.json").read_text()),
                          "two_bead": json.loads((cg2 / "summary.json").read_text())}
    if (cg2 / "force_noise.json").is_file():
        results["mapping"]["two_bead_force_noise"] = json.loads((cg2 / "force_noise.json").read_text())
    # 2. fits
    fits = {"pair1": (cg1, []), "threebody1": (cg1, ["--threebody", THREEBODY]), "pair2": (cg2, []),
            "pair2_coulomb": (cg2, ["--coulomb", "auto"]),
            # the frames csg_fmatch uses: 40 blocks of 5 (it drops the 201st)
            "fm1_votca": (cg1, ["--votca-settings", FMATCH, "--stop", 200]),
            "fm1_votca_conventions": (cg1, ["--votca-settings", FMATCH, "--votca-conventions", "--stop", 200])}
    for name, (cg, extra) in fits.items():
        fm = work / f"fm_{name}" if not name.startswith("fm1_votca") else work / name
        if not args.skip_fit or not (fm / "summary.json").is_file():
            timing[f"fit_{name}"] = sh(CGKIT + ["fm", "--cg-trajectory", cg / "cg.trr", "--cg-topology",
                                                cg / "cg.psf", *extra, "--out", fm, "--overwrite"],
                                       work / f"fm_{name}.log")
        s = json.loads((fm / "summary.json").read_text())
        results.setdefault("fit", {})[name] = {"residual": s.get("residual_per_bead_type"),
                                               "interactions": s.get("interactions"),
                                               "warnings": s.get("warnings"), "timing": s.get("timing")}
    if shutil.which("csg_fmatch") and FMATCH.is_file():
        votca_parity(work, aa, results, out)
    # 3. CG MD
    pots = {name: work / f"fm_{name}" / "cg_potential.pt" for name in ("pair1", "threebody1", "pair2",
                                                                        "pair2_coulomb")}
    cgs = {"pair1": cg1, "threebody1": cg1, "pair2": cg2, "pair2_coulomb": cg2}
    models = args.models.split(",")
    for name in models:
        md = work / f"md_{name}"
        tb = name in ("threebody1", "pair2_coulomb")   # torch path: shorter runs
        if not args.skip_md or not (md / "summary.json").is_file():
            timing[f"md_{name}"] = sh(CGKIT + [
                "md", "--potential", pots[name], "--structure", cgs[name] / "cg.psf", "--frames",
                cgs[name] / "cg.trr", "--frame", "0", "--timestep", "2", "--temperature", TEMPERATURE,
                "--steps", args.threebody_md_steps if tb else args.md_steps,
                "--equilibration", args.threebody_md_equilibration if tb else args.md_equilibration,
                "--write-every", 100, "--trajectory", "traj.dcd", "--reference", cgs[name] / "cg.trr",
                "--out", md, "--overwrite"], work / f"md_{name}.log")
        results.setdefault("md", {})[name] = json.loads((md / "summary.json").read_text())
    # 4. analysis
    from cgkit.forcematch.validate import StructuralValidation
    from cgkit.properties.water_structure import WaterStructure, compare_structures, plot_structures
    from cgkit.trajectory import read_cg_system
    ana = results.setdefault("structure", {})
    ref1 = WaterStructure(cg_frames(cg1 / "cg.psf", cg1 / "cg.trr"), bead_mass=BEAD_MASS_1, r_max=RDF_MAX,
                          r_shell=R_SHELL, label="atomistic (mapped)").run()
    structs = {"atomistic (mapped)": ref1}
    ana["one_bead"] = {"atomistic": ref1.summary()}
    for name in ("pair1", "threebody1"):
        if name not in models:
            continue
        md = work / f"md_{name}"
        top = md / "traj.pdb" if (md / "traj.pdb").is_file() else cg1 / "cg.psf"
        st = WaterStructure(cg_frames(top, md / "traj.dcd"), bead_mass=BEAD_MASS_1, r_max=RDF_MAX,
                            r_shell=R_SHELL, label=name).run()
        structs[name] = st
        ana["one_bead"][name] = st.summary()
        cmp = compare_structures(ref1, st)
        # g of the CG model at the atomistic first-peak position (the H-bond peak), over the
        # atomistic peak height: compare_structures takes each curve's own maximum
        k = int(np.argmax(ref1.results["rdf"]["g"]))
        cmp["rdf_ratio_at_reference_peak"] = st.results["rdf"]["g"][k] / ref1.results["rdf"]["g"][k]
        ana["one_bead"][name]["vs_atomistic"] = cmp
    plot_structures(structs, out / "one_bead")
    for name in ("pair2", "pair2_coulomb"):
        if name not in models:
            continue
        tn, sp, _, top2 = read_cg_system(cg2 / "cg.psf")
        ref_fr = list(cg_frames(cg2 / "cg.psf", cg2 / "cg.trr"))
        md = work / f"md_{name}"
        tst_top = md / "traj.pdb" if (md / "traj.pdb").is_file() else cg2 / "cg.psf"
        tst_fr = list(cg_frames(tst_top, md / "traj.dcd"))
        v = StructuralValidation(np.array([f[0] for f in ref_fr]), np.array([f[0] for f in tst_fr]), tn, sp, top2,
                                 reference_boxes=np.array([f[1] for f in ref_fr]),
                                 test_boxes=np.array([f[1] for f in tst_fr]), rdf_max=RDF_MAX, bins=150).run()
        key = "two_bead" if name == "pair2" else "two_bead_coulomb"
        v.plot(out / key)
        s2 = v.summary()
        for lab, d in v.results["rdf"].items():
            ha, ra = first_peak(d["r"], d["g_reference"])
            hb, rb = first_peak(d["r"], d["g_test"])
            s2["rdf"][lab].update(first_peak_reference={"g": ha, "r": ra}, first_peak_test={"g": hb, "r": rb},
                                  first_peak_ratio=hb / ha)
        ana[key] = s2
    # pressure (the box and so the density are fixed: NVT in the atomistic box)
    press = {"atomistic_gromacs": gmx_pressure(aa / "ener.edr", work)}
    for name in models:
        md, cg = work / f"md_{name}", cgs[name]
        top = md / "traj.pdb" if (md / "traj.pdb").is_file() else cg / "cg.psf"
        press[name] = pressure_bar(pots[name], cg / "cg.psf", list(cg_frames(top, md / "traj.dcd"))[::5])
    for name in ("pair1", "pair2", "pair2_coulomb"):
        if name not in models:
            continue
        press[f"{name}_on_atomistic_frames"] = pressure_bar(
            pots[name], cgs[name] / "cg.psf", list(cg_frames(cgs[name] / "cg.psf", cgs[name] / "cg.trr"))[::10])
    results["pressure_bar"] = press
    results["density_g_cm3"] = ref1.summary().get("mass_density_g_cm3")
    # speed: molecule·ns/day per core (GROMACS -nt 1; cgkit md with OMP_NUM_THREADS=1)
    gmx = gmx_ns_per_day(aa / "md.log")
    speed = {"gromacs_all_atom": {"ns_per_day": gmx, "molecule_ns_per_day": gmx and gmx * N_MOLECULES}}
    for name in models:
        nsd = results["md"][name]["md"]["ns_per_day"]
        speed[name] = {"ns_per_day": nsd, "molecule_ns_per_day": nsd * N_MOLECULES,
                       "speedup_vs_gromacs": nsd / gmx if gmx else None,
                       "force_kernel": results["md"][name]["md"].get("force_kernel")}
    results["speed_wall_clock"] = speed
    if not args.skip_bench:
        results["speed_cpu"] = speed_benchmark(work, aa, pots, cgs, models,
                                               None if args.rebench else results.get("speed_cpu"))
    from cgkit.jsonutil import write_json
    write_json(res_file, results)
    print(json.dumps({k: results.get(k) for k in ("votca_parity", "pressure_bar", "speed_cpu")}, indent=1))


if __name__ == "__main__":
    main()
