"""Water case study: SPC/E (GROMACS, SETTLE) mapped to one bead per molecule; pair-only spline
MS-CG, neural CG on the pair prior (and pair + three-body spline when cgkit's force matching has
a three-body term); CG MD of each; structure against the mapped atomistic trajectory.

Steps (every number goes to ``results/results.json``; the README quotes them):

0. ``run_atomistic.sh`` (needs gmx + votca-tutorials): 2180 SPC/E molecules, 200 ps, positions
   and forces every 1 ps (201 frames), into WORK/atomistic (not committed: 31 MB).
1. ``cgkit map`` with ``mappings/spce_water_1bead.yaml`` (centre of mass; force map basic — the
   only force map that respects SETTLE for one bead per rigid molecule). Constraint check: the
   optimized map without constraint handling vs the basic map, through the fit-free mean-force
   identity ⟨Σ h (F_I − F_J)·r̂⟩ = −2kT⟨Σ (h′ + 2h/r)⟩
   (:func:`cgkit.mapping.forcemap.mean_force_identity`).
2. ``cgkit fm --model nn`` with its defaults (pair spline prior, then the descriptor network on
   the residual; timed: the acceptance line is ≤ 30 min on 2 cores).
3. ``cgkit md`` (Langevin, 300 K, NVT at the atomistic density) with the pair spline and with
   spline + network; structure (:class:`properties.water_structure.WaterStructure`): RDF,
   first-shell triplet angles, tetrahedral q, and the virial pressure, each against the mapped
   atomistic trajectory.

    python case_studies/water/run.py [--work /tmp/cg-water] [--md-steps 5000] [--skip-atomistic]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
MAPPING = ROOT / "mappings" / "spce_water_1bead.yaml"
TEMPERATURE = 300.0
CGKIT = [sys.executable, "-m", "cgkit.cli"]
THREEBODY = "W-W-W:a=3.7:gamma=0.8"


def sh(cmd, log: Path, env=None):
    """Run a command (cgkit CLI or gmx), its output into ``log``; raise on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        r = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT,
                           env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}; see {log}")
    return time.perf_counter() - t0


def cg_frames(psf, traj, start=0):
    """(positions (n, 3) Å, box (3,) Å) of every frame of a CG trajectory (MDAnalysis)."""
    import MDAnalysis as mda
    u = mda.Universe(str(psf), str(traj))
    for ts in u.trajectory[start:]:
        yield u.atoms.positions.astype(float), ts.dimensions[:3].astype(float)


def pressure_bar(potential_file, frames, temperature=TEMPERATURE):
    """Virial pressure (bar) of a CG potential on frames (:mod:`cgkit.properties.pressure`);
    mean and standard error over frames."""
    from cgkit.io_potential import load_potential
    from cgkit.properties.pressure import pressure_summary, virial_pressures
    pot = load_potential(potential_file)
    frames = list(frames)
    species = np.zeros(len(frames[0][0]), int)
    return pressure_summary(virial_pressures(pot, frames, species, pot.type_names, temperature), "bar")


def gmx_pressure(edr: Path, work: Path):
    """Mean pressure (bar) of the atomistic run from its energy file (gmx energy)."""
    out = work / "pressure.xvg"
    r = subprocess.run(["gmx", "energy", "-f", str(edr), "-o", str(out)], input="Pressure\n\n",
                       capture_output=True, text=True)
    if r.returncode:
        return None
    vals = np.array([float(line.split()[1]) for line in out.read_text().splitlines()
                     if line and line[0] not in "#@"])
    nb = 10
    blocks = np.array_split(vals, nb)
    bm = np.array([b.mean() for b in blocks])
    return {"value": float(vals.mean()), "error": float(bm.std(ddof=1) / np.sqrt(nb)), "unit": "bar",
            "frames": int(len(vals))}


def constraint_check(atomistic: Path, results: dict, n_fit=40):
    """Basic vs constraint-unaware optimized force map on the SETTLE water: the mean-force
    identity (z-scores) and the mapped-force second moments."""
    from cgkit.mapping import Mapping
    from cgkit.mapping.forcemap import mean_force_identity, optimized_force_map, resolve_constraints
    from cgkit.trajectory import open_trajectory
    traj = open_trajectory(atomistic / "topol.tpr", atomistic / "traj.trr")
    m = Mapping.from_yaml(MAPPING, traj.topology)
    X, F, B = [], [], []
    for fr in traj:
        X.append(m.map_positions(fr.positions, fr.cell, fr.pbc))
        F.append(fr.forces)
        B.append(np.diag(np.asarray(fr.cell)))
    F = np.asarray(F)
    pairs, label = resolve_constraints(m, "auto")
    d_none = optimized_force_map(m, F[:n_fit], constraints="none")
    d_aware = optimized_force_map(m, F[:n_fit], constraints=pairs)
    out = {"constraints_from_topology": label, "fit_frames": n_fit, "test_frames": len(F) - n_fit,
           "weights_O_H1_H2": {"basic": m.D[0].toarray().ravel()[:3].tolist(),
                               "optimized_no_constraints": d_none[0].toarray().ravel()[:3].tolist(),
                               "optimized_constraint_aware": d_aware[0].toarray().ravel()[:3].tolist()}}
    xs, boxes = np.asarray(X)[n_fit:], np.asarray(B)[n_fit:]
    for lab, D in (("basic", m.D), ("optimized_no_constraints", d_none),
                   ("optimized_constraint_aware", d_aware)):
        fcg = np.array([D @ f for f in F[n_fit:]])
        idt = mean_force_identity(xs, fcg, boxes, TEMPERATURE)
        out[lab] = {"identity": idt, "second_moment_eV2_A2": float(np.mean(np.sum(fcg ** 2, -1)))}
        if lab != "basic":
            # paired with the basic map (exact: the molecule's total force): the bias of D is
            # ⟨Σ h ((D − D_basic)f)_IJ · r̂⟩, zero for an unbiased map; temperature 0 → rhs = 0
            dif = np.array([(D - m.D) @ f for f in F[n_fit:]])
            out[lab]["bias_vs_basic"] = mean_force_identity(xs, dif, boxes, 0.0)
    results["constraints"] = out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/cg-water", type=Path)
    ap.add_argument("--out", default=HERE / "results", type=Path)
    ap.add_argument("--md-steps", type=int, default=5000, help="production steps of the spline CG MD (2 fs)")
    ap.add_argument("--md-equilibration", type=int, default=1000)
    ap.add_argument("--nn-md-steps", type=int, default=2500,
                    help="production steps of the neural and three-body CG MD (2 fs; torch path, ~15-50x "
                         "slower per step than the compiled pair-table kernel)")
    ap.add_argument("--nn-md-equilibration", type=int, default=500)
    ap.add_argument("--skip-atomistic", action="store_true", help="reuse WORK/atomistic")
    ap.add_argument("--skip-fit", action="store_true", help="reuse WORK/fm_nn")
    ap.add_argument("--skip-md", action="store_true", help="reuse WORK/md_*")
    ap.add_argument("--models", default="spline,threebody,nn",
                    help="models analysed: spline, threebody, nn (the default `cgkit fm --model nn`), and "
                         "neural variants nn_<name> fitted beforehand into WORK/fm_nn_<name> (e.g. "
                         "nn_v1: the first neural model, for comparison)")
    ap.add_argument("--md-models", default=None,
                    help="models whose CG MD is (re)run (default: all of --models); the others reuse WORK/md_*")
    ap.add_argument("--skip-threebody-fit", action="store_true", help="reuse WORK/fm_threebody")
    args = ap.parse_args(argv)
    work, out = args.work, args.out
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / "results.json"
    results = json.loads(res_file.read_text()) if res_file.is_file() else {}
    aa = work / "atomistic"
    if not args.skip_atomistic:
        t = sh(["bash", HERE / "run_atomistic.sh", aa, "1"], work / "run_atomistic.log")
        results["atomistic_seconds"] = t
    # 1. map
    cg = work / "cg_map"
    if not (cg / "cg.trr").is_file():
        sh(CGKIT + ["map", "--mapping", MAPPING, "--topology", aa / "topol.tpr", "--trajectory",
                    aa / "traj.trr", "--out", cg, "--overwrite"], work / "map.log")
    if "constraints" not in results:
        constraint_check(aa, results)
    # 2. fit: cgkit fm --model nn with defaults (also gives the pair spline prior)
    fm = work / "fm_nn"
    if not args.skip_fit:
        t = sh(CGKIT + ["fm", "--cg-trajectory", cg / "cg.trr", "--cg-topology", cg / "cg.psf", "--model", "nn",
                        "--out", fm, "--overwrite"], work / "fm_nn.log")
    s = json.loads((fm / "summary.json").read_text())
    results["fit_seconds_fm_model_nn"] = s["timing"]["total_seconds"]   # the command's own wall time
    results["fit"] = {"spline_residual": s.get("residual_per_bead_type"), "neural": s.get("neural"),
                      "timing": s.get("timing")}
    nn_sum = json.loads((fm / "nn" / "summary.json").read_text())
    results["fit"]["nn_epochs"] = nn_sum["epochs"]
    results["fit"]["nn_timing_seconds"] = nn_sum["timing_seconds"]
    results["fit"]["nn_backfit"] = nn_sum.get("backfit")
    variants = [m for m in args.models.split(",") if m.startswith("nn_")]
    for name in variants:   # neural variants fitted beforehand (their fm command line is in the summary)
        fv = work / f"fm_{name}"
        sv = json.loads((fv / "summary.json").read_text())
        nv = json.loads((fv / "nn" / "summary.json").read_text())
        results.setdefault("fit_variants", {})[name] = {
            "neural": sv.get("neural"), "model": nv.get("model"), "backfit": nv.get("backfit"),
            "timing": sv.get("timing"), "nn_timing_seconds": nv.get("timing_seconds")}
    # 2b. pair + three-body spline (cgkit fm --threebody)
    fm3 = work / "fm_threebody"
    if "threebody" in args.models.split(","):
        if not args.skip_threebody_fit:
            # three-body cutoff a = 3.7 Å and range γ = 0.8 Å: Scherer & Andrienko's SPC/E values
            t = sh(CGKIT + ["fm", "--cg-trajectory", cg / "cg.trr", "--cg-topology", cg / "cg.psf",
                            "--threebody", THREEBODY, "--out", fm3, "--overwrite"], work / "fm_threebody.log")
            results["fit_seconds_threebody"] = t
        s3 = json.loads((fm3 / "summary.json").read_text())
        results["fit"]["threebody_residual"] = s3.get("residual_per_bead_type")
    # 3. CG MD + structure
    from cgkit.properties.water_structure import WaterStructure, compare_structures, plot_structures
    ref = WaterStructure(cg_frames(cg / "cg.psf", cg / "cg.trr"), label="atomistic (mapped)").run()
    structs = {"atomistic (mapped)": ref}
    results["structure"] = {"atomistic": ref.summary()}
    p_aa = gmx_pressure(aa / "ener.edr", work)
    log = (aa / "md.log").read_text() if (aa / "md.log").is_file() else ""
    perf = [ln.split() for ln in log.splitlines() if ln.startswith("Performance:")]
    if perf:
        results["atomistic_gromacs_ns_per_day_1_thread"] = float(perf[-1][1])
    results["pressure_bar"] = {"atomistic_gromacs": p_aa}
    pots = {"spline": fm / "cg_potential.pt", "nn": fm / "nn" / "cg_nn_potential.pt",
            "threebody": fm3 / "cg_potential.pt",
            **{name: work / f"fm_{name}" / "nn" / "cg_nn_potential.pt" for name in variants}}
    md_models = args.models.split(",") if args.md_models is None else args.md_models.split(",")
    for name in args.models.split(","):
        md = work / f"md_{name}"
        if not args.skip_md and name in md_models:
            t = sh(CGKIT + ["md", "--potential", pots[name], "--structure", cg / "cg.psf", "--frames",
                            cg / "cg.trr", "--frame", "0", "--timestep", "2", "--temperature", TEMPERATURE,
                            "--steps", args.md_steps if name == "spline" else args.nn_md_steps,
                            "--equilibration", args.md_equilibration if name == "spline" else args.nn_md_equilibration,
                            "--write-every", 100, "--trajectory", "traj.dcd", "--out", md, "--overwrite"],
                   work / f"md_{name}.log")
            results.setdefault("md_seconds", {})[name] = t
        msum = json.loads((md / "summary.json").read_text())
        results.setdefault("md", {})[name] = msum
        pdb = md / "traj.pdb" if (md / "traj.pdb").is_file() else cg / "cg.psf"
        st = WaterStructure(cg_frames(pdb, md / "traj.dcd"), label=name).run()
        structs[name] = st
        results["structure"][name] = st.summary()
        results["structure"][name]["vs_atomistic"] = compare_structures(ref, st)
        results["pressure_bar"][name] = pressure_bar(pots[name], list(cg_frames(pdb, md / "traj.dcd"))[::5])
    results["pressure_bar"]["spline_on_atomistic_frames"] = pressure_bar(
        pots["spline"], list(cg_frames(cg / "cg.psf", cg / "cg.trr"))[::10])
    plot_structures(structs, out)
    from cgkit.jsonutil import write_json
    write_json(res_file, results)
    print(json.dumps({k: v for k, v in results.items() if k in ("structure", "pressure_bar")}, indent=1)[:4000])


if __name__ == "__main__":
    main()
