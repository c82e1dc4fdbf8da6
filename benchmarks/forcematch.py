"""Force-matching and CG-MD throughput on the hexane data, with references from the same run.

Reports
* spline MS-CG accumulation in frames/s on the mapped hexane trajectory
  (``case_studies/hexane/data/hexane_cg.{psf,trr}``: 212 molecules, 636 beads, 201 frames), relative to
  the time of the cell-list neighbor search of the same frames;
* CG MD steps/s and simulated ns/day with the fitted tables (cgkit, and LAMMPS with the
  exported tables when ``lmp`` exists), and the atomistic reference: GROMACS on VOTCA's
  all-atom hexane inputs (20 000 atoms) when ``gmx`` and Debian's ``votca-tutorials`` exist;
  the CG-vs-atomistic speed-up in molecule·ns/day per core (the systems differ in size).

    python benchmarks/forcematch.py [--frames 21] [--md-steps 200] [--threads 2]
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "case_studies" / "hexane" / "data"
VOTCA = Path("/usr/share/votca/csg-tutorials/hexane/atomistic")


def load_hexane(n_frames):
    from cgkit.trajectory import read_cg_arrays
    return read_cg_arrays(DATA / "hexane_cg.psf", DATA / "hexane_cg.trr", stop=n_frames)


def gromacs_ns_per_day(nsteps: int, threads: int):
    gmx = shutil.which("gmx")
    if gmx is None or not VOTCA.is_dir():
        return None, "gmx or /usr/share/votca/csg-tutorials absent"
    with tempfile.TemporaryDirectory() as d:
        for f in ("conf.gro", "topol.top", "grompp.mdp"):
            shutil.copy(VOTCA / f, d)
        mdp = (Path(d) / "grompp.mdp").read_text()
        mdp = re.sub(r"(?im)^\s*nsteps\s*=.*$", f"nsteps = {nsteps}", mdp)
        for key in ("nstxout", "nstvout", "nstfout", "nstxout-compressed", "nstxtcout"):
            mdp = re.sub(rf"(?im)^\s*{key}\s*=.*$", f"{key} = 0", mdp)
        (Path(d) / "grompp.mdp").write_text(mdp)
        dt = float(re.search(r"(?im)^\s*dt\s*=\s*([0-9.eE+-]+)", mdp).group(1)) * 1000.0
        r = subprocess.run([gmx, "grompp", "-f", "grompp.mdp", "-c", "conf.gro", "-p", "topol.top",
                            "-o", "b.tpr", "-maxwarn", "5"], cwd=d, capture_output=True, text=True)
        if r.returncode:
            return None, "grompp failed"
        r = subprocess.run([gmx, "mdrun", "-s", "b.tpr", "-deffnm", "b", "-nt", str(threads), "-notunepme"],
                           cwd=d, capture_output=True, text=True)
        log = (Path(d) / "b.log").read_text() if (Path(d) / "b.log").exists() else ""
        m = re.search(r"Performance:\s+([0-9.]+)", log)
        if not m:
            return None, "mdrun failed"
        return float(m.group(1)), f"GROMACS all-atom, 20000 atoms, dt {dt:g} fs, {threads} threads"


def lammps_ns_per_day(pot, pos, box, masses, species, steps, dt_fs):
    lmp = shutil.which("lmp")
    if lmp is None:
        return None
    from cgkit.export import write_lammps
    with tempfile.TemporaryDirectory() as d:
        write_lammps(pot, d, positions=pos, box=box, masses=masses, species=species, n_points=2000,
                     temperature=300.0, timestep_fs=dt_fs, n_steps=steps)
        script = (Path(d) / "in.cg").read_text().replace("dump traj all custom 1000 traj.lammpstrj id mol type x y z\n", "")
        (Path(d) / "in.cg").write_text(script)
        r = subprocess.run([lmp, "-in", "in.cg", "-log", "log", "-screen", "none"], cwd=d,
                           capture_output=True, text=True)
        if r.returncode:
            return None
        for line in (Path(d) / "log").read_text().splitlines():
            if line.startswith("Loop time of"):
                sps = steps / float(line.split()[3])
                return sps * dt_fs * 86400e-6
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--md-steps", type=int, default=200)
    ap.add_argument("--gmx-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="cores for the GROMACS reference")
    args = ap.parse_args()
    if not (DATA / "hexane_cg.trr").exists():
        raise SystemExit(f"missing {DATA}/hexane_cg.trr: run case_studies/hexane/make_aa_trajectory.py")
    from cgkit.forcematch import SparseSamplingWarning, SplineForceMatching, suggest_grids
    from cgkit.md import MolecularDynamics
    from cgkit.neighbors import neighbor_list

    P, F, B, tn, sp, masses, top = load_hexane(args.frames)
    grids = suggest_grids(tn, sp, top, P[:5], B[:5], pair_cutoff=12.0)
    spacing = {"pair": 0.1, "bond": 0.02, "angle": 4.0}
    fm = SplineForceMatching(tn, sp, top, pair=None, bond=None, angle=None, dihedral=None,
                             grids={k: (v[0], v[1], spacing[k.split()[0]]) for k, v in grids.items()})
    t = time.perf_counter()
    for p, b in zip(P, B):
        neighbor_list(p, np.diag(b), True, 12.0)
    t_nl = (time.perf_counter() - t) / len(P)
    t = time.perf_counter()
    fm.accumulate(P, F, B, progress=False)
    t_acc = (time.perf_counter() - t) / len(P)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseSamplingWarning)
        res = fm.solve()
    t_solve = time.perf_counter() - t
    print(f"hexane CG: {len(sp)} beads, {len(P)} frames, {fm.n_coef} spline coefficients, pair cutoff 12 Å")
    print(f"  spline FM accumulate: {1 / t_acc:8.2f} frames/s  ({t_acc / t_nl:.1f}x the neighbor search "
          f"of a frame, {t_nl * 1e3:.1f} ms); solve + tables + jackknife: {t_solve:.2f} s")
    for name, r in res.residual.items():
        print(f"  bead {name}: RMS residual {r['rms_residual_eV_per_A']:.3f} of RMS force "
              f"{r['rms_force_eV_per_A']:.3f} eV/Å")
    dt = 5.0
    md = MolecularDynamics(res.potential, positions=P[0], cell=np.diag(B[0]), masses=masses, species=sp,
                           type_names=tuple(tn), timestep=dt, temperature=300, log_every=0, progress=False)
    md.run(5)
    t = time.perf_counter()
    md.run(args.md_steps)
    sps = args.md_steps / (time.perf_counter() - t)
    ns_cg = sps * dt * 86400e-6
    print(f"  CG MD (cgkit, 1 thread, dt {dt} fs): {sps:.1f} steps/s = {ns_cg:.2f} ns/day")
    ns_lmp = lammps_ns_per_day(res.potential, P[0], B[0], masses, sp, args.md_steps, dt)
    if ns_lmp:
        print(f"  CG MD (LAMMPS tables, 1 rank, dt {dt} fs): {ns_lmp:.2f} ns/day "
              f"({ns_lmp / ns_cg:.1f}x cgkit)")
    ns_aa, what = gromacs_ns_per_day(args.gmx_steps, args.threads)
    if ns_aa:
        # the two systems differ in size (GROMACS: VOTCA's 1000-molecule box; CG: the 212-molecule
        # case-study box) and in cores: compare molecule·ns/day per core (MD cost ∝ N at fixed density)
        n_mol_aa, n_mol_cg = 1000, len(sp) // 3
        per_aa = ns_aa * n_mol_aa / args.threads
        print(f"  atomistic reference ({what}): {ns_aa:.2f} ns/day = {per_aa:.0f} molecule·ns/day/core")
        sp_cg = ns_cg * n_mol_cg / per_aa
        msg = f"  speed-up (molecule·ns/day per core): cgkit CG / atomistic = {sp_cg:.1f}x"
        if ns_lmp:
            msg += f"; LAMMPS CG / atomistic = {ns_lmp * n_mol_cg / per_aa:.1f}x"
        print(msg)
    else:
        print(f"  atomistic reference skipped: {what}")


if __name__ == "__main__":
    main()
