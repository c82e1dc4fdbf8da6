"""Hexane case study: from an all-atom GROMACS trajectory to a 3-bead CG model, end to end.

Steps (every number goes to ``results/results.json``; the README quotes them):

1. (``--regenerate-aa``, needs gmx + votca-tutorials) run ``make_aa_trajectory.py``: OPLS-AA
   hexane, 212 molecules, 80 ps with forces every 0.4 ps, mapped with mappings/hexane_3bead.yaml
   into ``data/hexane_cg.{psf,trr}``. Without the flag the committed data are used.
2. Spline MS-CG of everything (bond, angle, A-A/A-B/B-B pairs) → CG MD → validation.
3. Hybrid (:func:`cgkit.forcematch.hybrid_fit`): bond and angle by Boltzmann inversion of the
   mapped distributions, pairs force-matched on the mapped forces minus the bonded ones → CG MD
   → validation.
4. Hybrid + IBI of the bonded terms (pairs kept; the same recipe with refinement) → CG MD →
   validation.
5. Neural CG potential (ENNP on the bead graph) on top of the step-4 potential as prior:
   force residuals and CG MD validation.
6. Export of the step-4 tables to LAMMPS; LAMMPS (/usr/bin/lmp, 1 thread) CG MD with them;
   its structure compared with cgkit's CG MD.
7. Speed: cgkit and LAMMPS CG ns/day vs the atomistic GROMACS ns/day on the same core.

Everything runs on one thread (torch and the engines). ``--quick`` shortens every MD run.

    python case_studies/hexane/run.py [--quick] [--no-neural] [--regenerate-aa]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
sys.path.insert(0, str(ROOT))

TEMPERATURE = 300.0
DT_FS = 5.0
PAIR_CUTOFF = 12.0
#: histogram bins of the Boltzmann inversion and IBI (the IBI grid of the committed results;
#: the library default is 100)
IBI_BINS = 120
GRIDS = {"bond A-B": (1.8, 3.2, 0.02), "angle A-B-A": (60.0, 180.0, 4.0),
         "pair A-A": (3.0, PAIR_CUTOFF, 0.1), "pair A-B": (3.0, PAIR_CUTOFF, 0.1),
         "pair B-B": (3.0, PAIR_CUTOFF, 0.1)}


def load_cg(data: Path = DATA):
    """Mapped CG trajectory: positions (F, n, 3) Å, forces eV/Å, boxes (F, 3) Å, type names,
    species, masses (amu) and the CG Topology (bonds, angle; 1-2 and 1-3 pairs excluded, as in
    the mapping's ``exclusions: bonded`` and VOTCA's hexane setup)."""
    from cgkit.trajectory import read_cg_arrays
    return read_cg_arrays(data / "hexane_cg.psf", data / "hexane_cg.trr")


def cg_md(pot, P, B, masses, sp, tn, n_equil, n_prod, store_every=100, seed=0):
    """Langevin CG MD (BAOAB, 5 fs, 300 K) from the last mapped frame; returns the stored
    positions (frames, n, 3) and the production speed in steps/s."""
    from cgkit.md import MolecularDynamics
    md = MolecularDynamics(pot, positions=P[-1], cell=np.diag(B[-1]), masses=masses, species=sp,
                           type_names=tuple(tn), timestep=DT_FS, temperature=TEMPERATURE,
                           log_every=0, progress=False, seed=seed, n_threads=1)
    md.run(n_equil)
    md.store_every = store_every
    t = time.perf_counter()
    md.run(n_prod)
    return md.results.positions[:, 0], n_prod / (time.perf_counter() - t)


def validate(P, B, X, box, tn, sp, top, plot_dir=None, ref_is_md=False):
    from cgkit.forcematch import Interaction, StructuralValidation
    v = StructuralValidation(P, X, tn, sp, top, reference_boxes=B, test_boxes=box,
                             rdf_max=PAIR_CUTOFF, bins=100).run()
    if plot_dir is not None:
        v.plot(plot_dir)
    s = v.summary()
    out = {k: {"js": d["js_divergence"], "mean_reference": d["mean_reference"], "mean_cg": d["mean_test"]}
           for k, d in s["distributions"].items()}
    out.update({f"rdf {'-'.join(Interaction.parse(k).types)}": {"js": d["js_divergence_r2g"], "rms_g": d["rms_g"]}
                for k, d in s["rdf"].items()})
    return out


def fit_spline(P, F, B, tn, sp, top):
    """Spline MS-CG of every interaction (step 2)."""
    from cgkit.forcematch import SparseSamplingWarning, SplineForceMatching
    fm = SplineForceMatching(tn, sp, top, pair=None, bond=None, angle=None, dihedral=None,
                             grids=GRIDS, block_size=20)
    t = time.perf_counter()
    fm.accumulate(P, F, B, progress=False)
    acc = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        res = fm.solve()
    return fm, res, len(P) / acc


def residuals(pot, P, F, B, tn, sp):
    from cgkit.forcematch.neural import force_residuals
    return force_residuals(pot, P, F, B, tn, sp)


def run_lammps(pot, P, B, masses, sp, n_steps, workdir):
    """LAMMPS CG MD with the exported tables (1 thread); positions every 100 steps."""
    import MDAnalysis as mda

    from cgkit.export import write_lammps
    lmp = shutil.which("lmp")
    if lmp is None:
        return None
    d = Path(workdir)
    # damping 0.1 ps = cgkit's friction 0.01/fs (with 1 ps, velocity Verlet at 5 fs heats this
    # system to ~500 K; 2 fs stays at 300 K)
    write_lammps(pot, d, positions=P[-1], box=B[-1], masses=masses, species=sp, n_points=2000,
                 temperature=TEMPERATURE, timestep_fs=DT_FS, n_steps=n_steps, langevin_damping_fs=100.0)
    script = (d / "in.cg").read_text().replace("dump traj all custom 1000", "dump traj all custom 100")
    assert f"langevin {TEMPERATURE} {TEMPERATURE} 0.1 " in script
    (d / "in.cg").write_text(script)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([lmp, "-in", "in.cg", "-log", "log.lammps", "-screen", "none"], cwd=d,
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"LAMMPS failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    loop = [ln for ln in (d / "log.lammps").read_text().splitlines() if ln.startswith("Loop time of")]
    sps = n_steps / float(loop[-1].split()[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(d / "traj.lammpstrj"), format="LAMMPSDUMP", atom_style="id mol type x y z")
        X = np.array([u.atoms.positions.copy() for _ in u.trajectory])
        order = np.argsort(u.atoms.ids)
    return X[:, order], sps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder")
    ap.add_argument("--quick", action="store_true", help="short MD runs (a smoke test, not the README numbers)")
    ap.add_argument("--no-neural", action="store_true", help="skip the neural CG potential")
    ap.add_argument("--regenerate-aa", action="store_true", help="rerun GROMACS (≈25 min on one core)")
    ap.add_argument("--data", default=str(DATA), help="folder with hexane_cg.{psf,trr} and summary.json")
    ap.add_argument("--ibi-iterations", type=int, default=4)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if args.regenerate_aa:
        if shutil.which("gmx") is None:
            print("gmx not found: using the committed data", file=sys.stderr)
        else:
            subprocess.run([sys.executable, str(HERE / "make_aa_trajectory.py")], check=True)
    data = Path(args.data)
    aa = json.loads((data / "summary.json").read_text())
    n_eq, n_prod = (200, 1000) if args.quick else (600, 6000)

    from cgkit.forcematch import IBISettings, Interaction, hybrid_fit
    P, F, B, tn, sp, masses, top = load_cg(data)
    box = np.diag(B[-1])
    res = {"data": {"molecules": int(top.n_particles // 3), "beads": int(top.n_particles),
                    "frames": int(len(P)), "frame_spacing_ps": aa["output_every_steps"] * aa["dt_fs"] / 1000,
                    "box_A": float(B[-1][0])},
           "md": {"timestep_fs": DT_FS, "equilibration_steps": n_eq, "production_steps": n_prod,
                  "temperature_K": TEMPERATURE, "thermostat": "Langevin BAOAB, 10/ps"}}
    print(f"hexane: {res['data']}")

    # ---- 2. spline MS-CG of everything
    fm, fit, fps = fit_spline(P, F, B, tn, sp, top)
    fit.plot(out / "fm_tables.png")
    X, sps_fm = cg_md(fit.potential, P, B, masses, sp, tn, n_eq, n_prod)
    res["spline_fm"] = {"validation": validate(P, B, X, box, tn, sp, top, out / "spline_fm"),
                        "residual": fit.residual, "fm_frames_per_s": fps, "md_steps_per_s": sps_fm}
    print("spline FM:", json.dumps(res["spline_fm"]["validation"]))

    # ---- 3. hybrid: Boltzmann-inverted bonded + force-matched pairs (the library recipe,
    # cgkit.forcematch.hybrid_fit, without refinement)
    pair_grids = {k: v for k, v in GRIDS.items() if Interaction.parse(k).kind == "pair"}
    hybrid_kw = dict(temperature=TEMPERATURE, positions=P, forces=F, boxes=B, bins=IBI_BINS,
                     fm=dict(pair=None, dihedral=None, grids=pair_grids, block_size=20))
    hyb_fit = hybrid_fit(tn, sp, top, P, B, **hybrid_kw)
    hyb = hyb_fit.fit
    hyb.plot(out / "hybrid_tables.png")
    X, _ = cg_md(hyb.potential, P, B, masses, sp, tn, n_eq, n_prod, seed=1)
    res["hybrid"] = {"validation": validate(P, B, X, box, tn, sp, top, out / "hybrid"),
                     "residual": residuals(hyb.potential, P, F, B, tn, sp)}
    print("hybrid:", json.dumps(res["hybrid"]["validation"]))

    # ---- 4. hybrid + IBI of bond and angle (pairs stay force-matched): the same recipe with
    # refinement. Deliberately not the library's CG MD defaults: 2500 sampling steps (quick:
    # n_prod/2) and n_eq/2 equilibration per iteration, as the committed results were made.
    ibi = IBISettings(iterations=args.ibi_iterations, alpha=1.0, md_steps=n_prod // 2 if args.quick else 2500,
                      equilibration=n_eq // 2, sample_every=50, timestep=DT_FS, seed=10)
    ibi_fit = hybrid_fit(tn, sp, top, P, B, rest_tables=hyb.tables, temperature=TEMPERATURE, bins=IBI_BINS,
                         ibi=ibi, masses=masses, pair_cutoff=PAIR_CUTOFF)
    final = ibi_fit.potential
    X, sps_final = cg_md(final, P, B, masses, sp, tn, n_eq, n_prod, seed=2)
    X_final = X
    res["hybrid_ibi"] = {"iterations": args.ibi_iterations,
                         "history": [{"iteration": h["iteration"],
                                      "js": {k: v["js"] for k, v in h["scores"].items()}}
                                     for h in ibi_fit.history],
                         "validation": validate(P, B, X, box, tn, sp, top, out / "hybrid_ibi"),
                         "residual": residuals(final, P, F, B, tn, sp), "md_steps_per_s": sps_final}
    final.save(out / "cg_potential.pt", metadata={"masses": masses.tolist()})
    print("hybrid + IBI:", json.dumps(res["hybrid_ibi"]["validation"]))

    # ---- 5. neural CG potential on top of the final tables
    if not args.no_neural:
        from cgkit.forcematch.neural import NeuralCGTraining
        k = np.linspace(0, len(P) - 1, 20 if args.quick else 40).astype(int)
        with tempfile.TemporaryDirectory() as d:
            nn = NeuralCGTraining(final, P[k], F[k], B[k], sp, masses, Path(d) / "nn", r_cut=6.0,
                                  model={"channels": 8, "l_max": 1, "n_layers": 1},
                                  train={"max_epochs": 3 if args.quick else 8, "batch_size": 4,
                                         "early_stopping_patience": 4}).run()
            held = np.setdiff1d(np.arange(len(P)), k)[:: max(1, (len(P) - len(k)) // 20)]
            X, sps_nn = cg_md(nn.potential, P, B, masses, sp, tn, n_eq // 4, n_prod // 4, store_every=50, seed=3)
            # the prior alone with the same MD length, stride and seed: JS divergences carry a
            # finite-sample bias (~ bins / samples), so only equal-length runs compare fairly
            X_prior, _ = cg_md(final, P, B, masses, sp, tn, n_eq // 4, n_prod // 4, store_every=50, seed=3)
            res["neural"] = {"training_frames": int(len(k)),
                             "residual_prior_heldout": residuals(final, P[held], F[held], B[held], tn, sp),
                             "residual_prior_plus_nn_heldout": residuals(nn.potential, P[held], F[held], B[held],
                                                                         tn, sp),
                             "validation": validate(P, B, X, box, tn, sp, top, out / "neural"),
                             "prior_same_md_validation": validate(P, B, X_prior, box, tn, sp, top),
                             "md_steps": n_prod // 4, "md_steps_per_s": sps_nn}
        print("neural:", json.dumps(res["neural"]["validation"]))

    # ---- 6. LAMMPS with the exported tables
    with tempfile.TemporaryDirectory() as d:
        lm = run_lammps(final, P, B, masses, sp, n_eq + n_prod, d)
    if lm is not None:
        XL, sps_lmp = lm
        XL = XL[len(XL) - n_prod // 100:]
        Xc = X_final
        res["lammps"] = {"vs_mapped": validate(P, B, XL, box, tn, sp, top, out / "lammps"),
                         "vs_cgkit_md": validate(Xc, box, XL, box, tn, sp, top),
                         "md_steps_per_s": sps_lmp}
        print("LAMMPS:", json.dumps(res["lammps"]["vs_cgkit_md"]))
    # ---- 7. speed
    ns = {"cgkit_cg": sps_final * DT_FS * 86400e-6}
    if lm is not None:
        ns["lammps_cg"] = sps_lmp * DT_FS * 86400e-6
    gmx = (aa.get("timing") or {}).get("gromacs_ns_per_day")
    if gmx:
        ns["gromacs_aa"] = gmx
        ns["speedup_cgkit_vs_aa"] = ns["cgkit_cg"] / gmx
        if "lammps_cg" in ns:
            ns["speedup_lammps_vs_aa"] = ns["lammps_cg"] / gmx
    res["ns_per_day_one_core"] = ns
    res["runtime_s"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    print(json.dumps(ns, indent=1))
    print(f"done in {res['runtime_s']:.0f} s; results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
