"""CG MD of one-bead SPC/E water with a pair table: cgkit against LAMMPS and all-atom GROMACS.

The system of issue 14: the 2180 SPC/E molecules of VOTCA's ``spce/atomistic`` tutorial
(Debian ``votca-tutorials``), one bead per molecule at its centre of mass, a pair table
(cutoff 9 Å), 2 fs, Langevin 300 K. Measured in one run, each on one core:

* **GROMACS all-atom** SPC/E (the same 2180 molecules, 6540 atoms, the tutorial's ``grompp.mdp``
  with ``-nt 1``): the reference the CG model replaces;
* **cgkit** ``MolecularDynamics`` (BAOAB Langevin, skin 1 Å) with the compiled kernel and the
  fused C step loop, its pair forces in double and in mixed precision (``pair_precision``), at
  2 fs and at the larger CG steps of ``--dt-large`` (default 4 and 5 fs);
  the per-step Python loop with the same compiled kernel (the state before the fused loop) and
  the torch path, shorter;
* **LAMMPS** (``lmp``) with the same table exported by :func:`cgkit.export.lammps.write_lammps`
  (``pair_style table spline``, ``fix langevin`` + ``fix nve``, skin 1 Å), at the same steps.

Printed per engine: time step, steps/s, simulated ns/day and molecule·ns/day per core from the
CPU time the engine used (the machine is shared; CPU time is what a core spent, wall time is
also shown) and the ratio to GROMACS all-atom at its 2 fs.

``--validate-precision`` checks the mixed-precision pair loop against the double one (NVE
drift and fluctuation from the same state, g(r) JS divergence beside the seed-to-seed noise);
``--methanol DIR`` times the per-step and fused loops on the methanol case study's 1- and 2-bead
models (bond tables and exclusions). ``--validate-dt`` checks the larger steps instead: cgkit's stability limit of an equilibrated
structure, the NVE energy drift at 2 fs and at each step, and the g(r) JS divergence of
Langevin runs against 2 fs beside the seed-to-seed noise at 2 fs.

The pair table: ``--potential`` (a cgkit TabulatedPotential file, e.g. ``cg_potential.pt`` of
``cgkit fm`` on the mapped SPC/E trajectory) or, by default, a water-like Lennard-Jones table
(σ 3.166 Å, ε 0.0067 eV, shifted to zero force at 9 Å, 0.01 Å grid). Speed does not depend
on the table's values, only on its cutoff and the density.

    python benchmarks/cg_md.py [--steps 3000] [--gmx-steps 1000] [--dt-large 4 5] [--potential FILE]
    python benchmarks/cg_md.py --validate-dt [--dt-large 4 5]
    python benchmarks/cg_md.py --validate-precision [--potential FILE]
    python benchmarks/cg_md.py --methanol /tmp/cg-methanol
"""
from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SPCE = Path("/usr/share/votca/csg-tutorials/spce/atomistic")
TIMESTEP_FS = 2.0
TEMPERATURE = 300.0
SKIN = 1.0


def read_spce_beads():
    """(positions (2180, 3) Å of the molecular centres of mass, cell (3, 3) Å) from conf.gro."""
    lines = (SPCE / "conf.gro").read_text().splitlines()
    n = int(lines[1])
    xyz = np.array([[float(ln[20:28]), float(ln[28:36]), float(ln[36:44])] for ln in lines[2:2 + n]]) * 10.0
    box = np.array([float(v) for v in lines[2 + n].split()[:3]]) * 10.0
    names = [ln[10:15].strip() for ln in lines[2:2 + n]]
    if names[:3] != ["OW", "HW1", "HW2"] or n % 3:
        raise SystemExit(f"{SPCE}/conf.gro: expected OW HW1 HW2 triplets")
    m = np.array([15.9994, 1.008, 1.008])
    mol = xyz.reshape(-1, 3, 3)
    # unwrap the hydrogens onto their oxygen, then the mass-weighted centre
    d = mol - mol[:, :1]
    mol = mol[:, :1] + d - box * np.round(d / box)
    com = (mol * m[None, :, None]).sum(1) / m.sum()
    return com % box, np.diag(box)


def water_like_table():
    from cgkit.forcematch.tabulated import Table
    rc, s, e = 9.0, 3.166, 0.0067
    r = np.arange(2.0, rc + 1e-9, 0.01)
    lj = lambda x: 4 * e * ((s / x) ** 12 - (s / x) ** 6)                       # noqa: E731
    dlj = lambda x: 4 * e * (-12 * s ** 12 / x ** 13 + 6 * s ** 6 / x ** 7)    # noqa: E731
    U = lj(r) - lj(rc) - dlj(rc) * (r - rc)
    return Table("pair", ("W", "W"), r[0], 0.01, U, dlj(r) - dlj(rc))


def load_pair_potential(path, n):
    from cgkit.forcematch.tabulated import TabulatedPotential
    from cgkit.topology import Topology
    if path is None:
        return TabulatedPotential(["W"], Topology(n_particles=n), [water_like_table()]), "water-like LJ table, 9 Å"
    from cgkit.io_potential import load_potential
    pot = load_potential(path)
    if not isinstance(pot, TabulatedPotential) or len(pot.type_names) != 1:
        raise SystemExit(f"{path}: need a one-bead-type TabulatedPotential")
    pair = [t for t in pot.tables if t.kind == "pair"][0]
    return TabulatedPotential(list(pot.type_names), Topology(n_particles=n), [pair]), f"{path} (cutoff {pair.x_max:g} Å)"


def run_child(cmd, cwd):
    """subprocess.run, returning also the CPU time (user + system, s) the child used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_md(pot, pos, cell, kernel="auto", *, timestep=TIMESTEP_FS, fused=None, skin=SKIN, integrator="langevin",
            seed=0, log_every=0, velocities=None, pair_precision="double"):
    from ase import Atoms
    from cgkit.md import MolecularDynamics
    a = Atoms(numbers=np.zeros(len(pos), int), positions=pos, cell=cell, pbc=True, masses=np.full(len(pos), 18.0154))
    a.arrays["bead_types"] = np.array([pot.type_names[0]] * len(pos))
    return MolecularDynamics(pot, a, timestep=timestep, temperature=TEMPERATURE, friction=0.01, skin=skin,
                             log_every=log_every, write_every=0, progress=False, kernel=kernel, fused=fused,
                             integrator=integrator, seed=seed, velocities=velocities, pair_precision=pair_precision)


def run_cgkit(pot, pos, cell, steps, kernel, *, timestep=TIMESTEP_FS, fused=None, skin=SKIN, pair_precision="double"):
    """(wall s, CPU s, md) of ``steps`` Langevin steps after a 100-step warm-up."""
    md = make_md(pot, pos, cell, kernel, timestep=timestep, fused=fused, skin=skin, pair_precision=pair_precision)
    md.run(100)  # warm-up (kernel build, first list)
    w, c = time.perf_counter(), time.process_time()
    md.run(steps)
    return time.perf_counter() - w, time.process_time() - c, md


def run_lammps(pot, pos, cell, timestep, steps):
    """(loop wall s, process CPU s, steps) of LAMMPS with the exported table."""
    lmp = shutil.which("lmp")
    if lmp is None:
        return None, "lmp not found"
    from cgkit.export.lammps import write_lammps
    with tempfile.TemporaryDirectory() as d:
        write_lammps(pot, d, positions=pos, box=cell, masses=np.full(len(pos), 18.0154),
                     species=np.zeros(len(pos), int), temperature=TEMPERATURE, timestep_fs=timestep,
                     n_steps=steps)
        inp = Path(d) / "in.cg"
        text = inp.read_text().replace("neighbor 2.0 bin", f"neighbor {SKIN:g} bin")
        text = re.sub(r"^dump traj .*$", "", text, flags=re.M)
        inp.write_text(text)
        r, cpu = run_child([lmp, "-in", "in.cg", "-log", "log.lammps", "-screen", "none"], d)
        log = (Path(d) / "log.lammps").read_text() if (Path(d) / "log.lammps").exists() else ""
    m = re.search(r"Loop time of ([0-9.eE+-]+) on 1 procs for (\d+) steps", log)
    if r.returncode != 0 or not m:
        return None, f"lmp failed: {r.stderr.strip()[-300:]}"
    return (float(m.group(1)), cpu, int(m.group(2))), None


def run_gromacs(steps):
    """(loop wall s, process CPU s, steps) of GROMACS all-atom SPC/E on one thread."""
    gmx = shutil.which("gmx")
    if gmx is None or not SPCE.is_dir():
        return None, "gmx or /usr/share/votca/csg-tutorials/spce absent"
    with tempfile.TemporaryDirectory() as d:
        for f in ("conf.gro", "topol.top", "grompp.mdp"):
            shutil.copy(SPCE / f, d)
        mdp = Path(d) / "grompp.mdp"
        text = mdp.read_text()
        for key, val in (("nsteps", steps), ("nstxout", 0), ("nstfout", 0), ("nstvout", 0)):
            text = re.sub(rf"^{key}\s*=.*$", f"{key} = {val}", text, flags=re.M)
        mdp.write_text(text)
        r = subprocess.run([gmx, "grompp", "-f", "grompp.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "run.tpr",
                            "-maxwarn", "5"], cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"grompp failed: {r.stderr.strip()[-300:]}"
        r, cpu = run_child([gmx, "mdrun", "-nt", "1", "-s", "run.tpr", "-deffnm", "run"], d)
        log = (Path(d) / "run.log").read_text() if (Path(d) / "run.log").exists() else ""
    m = re.search(r"^\s*Time:\s+([0-9.]+)\s+([0-9.]+)", log, flags=re.M)
    if r.returncode != 0 or not m:
        return None, f"mdrun failed: {r.stderr.strip()[-300:]}"
    return (float(m.group(2)), cpu, steps), None   # (wall of the MD loop, CPU time, steps)


def loop_only(run, steps, *a):
    """(wall, CPU time, steps) of the MD loop alone: the CPU time of a run of ``steps`` minus that
    of a 10-step run (start-up, input reading, table set-up cancel)."""
    res, why = run(*a, steps)
    if res is None:
        return None, why
    short, why = run(*a, 10)
    if short is None:
        return None, why
    return (res[0], res[1] - short[1], steps - 10), None


def pair_histogram(md, frames, r_max, width=0.05):
    """Pair-distance counts (0..r_max, ``width`` bins) over ``frames`` positions of ``md``'s cell."""
    from cgkit.forcematch.pair_kernel import half_neighbor_list
    edges = np.arange(0.0, r_max + 1e-9, width)
    h = np.zeros(len(edges) - 1)
    for x in frames:
        i, j, S, _ = half_neighbor_list(x, md.cell, True, r_max)
        d = np.linalg.norm(x[j] - x[i] + S.astype(float) @ md.cell, axis=1)
        h += np.histogram(d, edges)[0]
    return h


def js_bits(a, b):
    """Jensen-Shannon divergence (bits) of two histograms."""
    a, b = a / a.sum(), b / b.sum()
    m = 0.5 * (a + b)
    kl = lambda x: float((x[x > 0] * np.log2(x[x > 0] / m[x > 0])).sum())   # noqa: E731
    return 0.5 * kl(a) + 0.5 * kl(b)


def validate_timestep(pot, pos, cell, dt_large, ps=40.0):
    """Is ``dt_large`` fs as good as 2 fs for this CG model? Prints the stability limit of an
    equilibrated structure (MolecularDynamics.stability_limits), the NVE energy drift at 2 fs and
    at ``dt_large`` and the r²-weighted g(r) (pair-distance histogram) JS divergence of Langevin
    runs at ``dt_large`` against 2 fs, beside that of two 2-fs runs with different seeds (the noise)."""
    from cgkit.units import KB_EV
    kT = KB_EV * TEMPERATURE
    n = len(pos)
    eq = make_md(pot, pos, cell, timestep=2.0, seed=11)
    eq.run(5000)                                   # 10 ps at 2 fs
    lim = eq.stability_limits()
    print(f"stability of the equilibrated CG structure ({lim['method']}): ν_max {lim['nu_max_THz']:.3g} THz, "
          f"dt_max = 2/ω_max = {lim['dt_max_fs']:.3g} fs, recommended (1/20 period) {lim['dt_recommended_fs']:.3g} fs")
    x0, v0 = eq.positions[0], eq.velocities_A_per_fs[0]
    print(f"NVE from it, {ps:g} ps each (total energy per bead; drift = slope of a linear fit):")
    drift = {}
    for dt in (2.0, dt_large):
        steps = int(round(ps * 1000 / dt))
        md = make_md(pot, x0, cell, timestep=dt, integrator="verlet", velocities=v0,
                     log_every=max(1, steps // 400))
        md.run(steps)
        t_ns, e = md.results.time * 1e-6, md.results.total_energy[:, 0] / n
        slope = np.polyfit(t_ns, e, 1)[0]
        drift[dt] = slope
        print(f"  dt {dt:g} fs: drift {slope:+.3e} eV/ns per bead = {slope / kT:+.4f} kT/ns per bead; "
              f"RMS fluctuation {np.std(e - np.polyval(np.polyfit(t_ns, e, 1), t_ns)):.2e} eV per bead; "
              f"mean T {md.results.temperature.mean():.1f} K")
    print(f"Langevin {TEMPERATURE:g} K, {ps:g} ps each after 4 ps, frames every 0.2 ps: g(r) JS divergence")
    hist, temps = {}, {}
    for label, dt, seed in (("2 fs a", 2.0, 1), ("2 fs b", 2.0, 2), (f"{dt_large:g} fs", dt_large, 1)):
        md, hist[label], n_frames = langevin_sample(pot, x0, cell, v0, dt, seed, ps)
        temps[label] = md.results.temperature_check()["mean_K"]
    noise = js_bits(hist["2 fs a"], hist["2 fs b"])
    big = js_bits(hist["2 fs a"], hist[f"{dt_large:g} fs"])
    print(f"  JS(2 fs, 2 fs other seed) = {noise:.2e} bits (the noise); JS(2 fs, {dt_large:g} fs) = {big:.2e} bits; "
          f"mean kinetic T: " + ", ".join(f"{k} {v:.1f} K" for k, v in temps.items()))
    return {"dt_max_fs": lim["dt_max_fs"], "dt_recommended_fs": lim["dt_recommended_fs"], "drift_eV_per_ns": drift,
            "js_noise": noise, "js_dt": big}


def langevin_sample(pot, x0, cell, v0, dt, seed, ps, **md_kw):
    """Langevin run from (x0, v0): 4 ps, then ``ps`` ps with a frame every 0.2 ps; returns the
    MD object, the pair histogram of the frames and the number of frames."""
    md = make_md(pot, x0, cell, timestep=dt, seed=seed, velocities=v0, log_every=max(1, int(round(100 / dt))),
                 **md_kw)
    md.run(int(round(4000 / dt)))
    md.results.sample_from_step = md.step
    every = int(round(200 / dt))
    frames = []
    for _ in range(int(round(ps * 1000 / 200))):
        md.run(every)
        frames.append(md.positions[0])
    return md, pair_histogram(md, frames, float(pot.cutoff)), len(frames)


def validate_precision(pot, pos, cell, ps=40.0, dt=TIMESTEP_FS):
    """Is the mixed-precision pair loop as good as the double one? From a structure equilibrated
    10 ps: the NVE energy drift and fluctuation over ``ps`` at ``dt`` with each precision (same
    start), and the r²-weighted g(r) JS divergence of Langevin runs (mixed vs double, same seed)
    beside that of two double runs with different seeds (the noise); mean kinetic temperatures."""
    from cgkit.units import KB_EV
    kT = KB_EV * TEMPERATURE
    n = len(pos)
    eq = make_md(pot, pos, cell, timestep=2.0, seed=11)
    eq.run(5000)
    x0, v0 = eq.positions[0], eq.velocities_A_per_fs[0]
    print(f"NVE at {dt:g} fs from a structure equilibrated 10 ps, {ps:g} ps each (total energy per bead; "
          "drift = slope of a linear fit):")
    out = {}
    for prec in ("double", "mixed"):
        steps = int(round(ps * 1000 / dt))
        md = make_md(pot, x0, cell, timestep=dt, integrator="verlet", velocities=v0,
                     log_every=max(1, steps // 400), pair_precision=prec)
        md.run(steps)
        assert md.summary()["pair_precision"] == prec
        t_ns, e = md.results.time * 1e-6, md.results.total_energy[:, 0] / n
        fit = np.polyfit(t_ns, e, 1)
        rms = float(np.std(e - np.polyval(fit, t_ns)))
        out[f"drift_{prec}_kT_per_ns"] = fit[0] / kT
        out[f"rms_{prec}_eV"] = rms
        print(f"  {prec:6s}: drift {fit[0]:+.3e} eV/ns per bead = {fit[0] / kT:+.2e} kT/ns per bead; "
              f"RMS fluctuation {rms:.2e} eV per bead; mean T {md.results.temperature.mean():.1f} K")
    print(f"Langevin {TEMPERATURE:g} K at {dt:g} fs, {ps:g} ps each after 4 ps, frames every 0.2 ps: g(r) JS divergence")
    hist, temps, epot = {}, {}, {}
    for label, prec, seed in (("double a", "double", 1), ("double b", "double", 2), ("mixed a", "mixed", 1),
                              ("mixed b", "mixed", 2)):
        md, hist[label], n_frames = langevin_sample(pot, x0, cell, v0, dt, seed, ps, pair_precision=prec)
        temps[label] = md.results.temperature_check()["mean_K"]
        epot[label] = float(np.mean(md.results.potential_energy[-n_frames * 2:, 0])) / n
    out["js_noise_double"] = js_bits(hist["double a"], hist["double b"])
    out["js_noise_mixed"] = js_bits(hist["mixed a"], hist["mixed b"])
    out["js_mixed_double"] = js_bits(hist["double a"], hist["mixed a"])
    out["js_mixed_double_b"] = js_bits(hist["double b"], hist["mixed b"])
    print(f"  JS(double, double other seed) = {out['js_noise_double']:.2e} bits, JS(mixed, mixed other seed) = "
          f"{out['js_noise_mixed']:.2e} bits (the noise); JS(double, mixed) = {out['js_mixed_double']:.2e} and "
          f"{out['js_mixed_double_b']:.2e} bits (seeds 1 and 2)")
    print("  mean kinetic T: " + ", ".join(f"{k} {v:.1f} K" for k, v in temps.items())
          + "; mean potential energy per bead: " + ", ".join(f"{k} {v:.5f} eV" for k, v in epot.items()))
    return out


def methanol_loops(folder, steps=2000, slow_steps=300):
    """CPU steps/s of the per-step loop, the fused double and the fused mixed loop on the methanol
    case study's 1- and 2-bead pair-table models (``folder`` holds ``fm_pair{1,2}/cg_potential.pt``
    and ``cg{1,2}/cg.psf`` + ``cg.trr`` of case_studies/methanol): 2-bead methanol has a bond
    table and excluded bonded pairs, which the fused loop evaluates in C too."""
    from cgkit.io_potential import load_potential
    from cgkit.md import MolecularDynamics
    from cgkit.trajectory import read_cg_atoms
    folder = Path(folder)
    for tag in ("1", "2"):
        pot = load_potential(folder / f"fm_pair{tag}" / "cg_potential.pt")
        atoms = next(iter(read_cg_atoms(str(folder / f"cg{tag}" / "cg.psf"), str(folder / f"cg{tag}" / "cg.trr"))))
        meta = getattr(pot, "metadata", {}) or {}
        masses = (np.asarray(meta["masses"], float) if meta.get("masses") is not None
                  and len(meta["masses"]) == len(atoms) else None)
        for label, kw, n in (("per-step loop", dict(fused=False), slow_steps), ("fused loop, double", {}, steps),
                             ("fused loop, mixed", dict(pair_precision="mixed"), steps)):
            md = MolecularDynamics(pot, atoms, masses=masses, timestep=TIMESTEP_FS, temperature=TEMPERATURE,
                                   friction=0.01, skin=SKIN, log_every=0, write_every=0, progress=False, seed=1, **kw)
            md.run(50)
            c = time.process_time()
            md.run(n)
            c = time.process_time() - c
            print(f"methanol {tag}-bead ({md.n_particles} beads, {len(pot.topology.bonds)} bonds, "
                  f"{len(pot.topology.exclusions)} exclusions): {label:20s} ({md.loop}, {md.results.pair_precision}) "
                  f"{n / c:8.1f} CPU steps/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="cgkit / LAMMPS MD steps")
    ap.add_argument("--slow-steps", type=int, default=300, help="steps of the per-step loop (before)")
    ap.add_argument("--torch-steps", type=int, default=100, help="steps of the torch path (slow; 0: skip)")
    ap.add_argument("--gmx-steps", type=int, default=1000, help="GROMACS all-atom steps")
    ap.add_argument("--dt-large", type=float, nargs="*", default=[4.0, 5.0],
                    help="also run cgkit and LAMMPS at these CG time steps (fs; none: only 2 fs)")
    ap.add_argument("--validate-dt", action="store_true",
                    help="check --dt-large against 2 fs (stability limit, NVE drift, g(r)) and exit")
    ap.add_argument("--validate-precision", action="store_true",
                    help="check the mixed-precision pair loop against the double one (NVE drift, g(r)) and exit")
    ap.add_argument("--methanol", metavar="DIR",
                    help="instead: per-step vs fused (double, mixed) loop on the methanol case study's outputs in DIR")
    ap.add_argument("--potential", help="cgkit TabulatedPotential file (one bead type); default: water-like table")
    args = ap.parse_args()
    if args.methanol:
        methanol_loops(args.methanol)
        return
    pos, cell = read_spce_beads()
    n = len(pos)
    pot, what = load_pair_potential(args.potential, n)
    if args.validate_precision:
        print(f"one-bead SPC/E water: {n} beads, {what}")
        validate_precision(pot, pos, cell)
        return
    if args.validate_dt:
        print(f"one-bead SPC/E water: {n} beads, {what}")
        for dt in args.dt_large:
            validate_timestep(pot, pos, cell, dt)
        return
    rows = []   # (label, steps, wall s, cpu s, dt fs)
    res, why = loop_only(run_gromacs, args.gmx_steps)
    if res:
        rows.append(("GROMACS all-atom SPC/E (6540 atoms, -nt 1)", res[2], res[0], res[1], TIMESTEP_FS))
    else:
        print(f"GROMACS skipped: {why}")
    dts = [TIMESTEP_FS] + [dt for dt in args.dt_large if dt > 0 and dt != TIMESTEP_FS]
    rebuilds = {}
    for dt in dts:
        for prec in ("double", "mixed"):
            w, c, md = run_cgkit(pot, pos, cell, args.steps, "auto", timestep=dt, pair_precision=prec)
            rows.append((f"cgkit md, {md.kernel} kernel, {md.loop} loop, {md.results.pair_precision}", args.steps,
                         w, c, dt))
            rebuilds[dt] = md.n_rebuilds
    if args.slow_steps:
        w, c, md = run_cgkit(pot, pos, cell, args.slow_steps, "auto", fused=False)
        rows.append((f"cgkit md, {md.kernel} kernel, per-step loop (before)", args.slow_steps, w, c, TIMESTEP_FS))
    if args.torch_steps:
        w, c, _ = run_cgkit(pot, pos, cell, args.torch_steps, "torch")
        rows.append(("cgkit md, torch path", args.torch_steps, w, c, TIMESTEP_FS))
    for dt in dts:
        res, why = loop_only(run_lammps, args.steps, pot, pos, cell, dt)
        if res:
            rows.append(("LAMMPS pair_style table (1 rank)", res[2], res[0], res[1], dt))
        else:
            print(f"LAMMPS skipped: {why}")
    ref = rows[0] if rows[0][0].startswith("GROMACS") else None
    print(f"one-bead SPC/E water: {n} beads, box {cell[0, 0]:.2f} Å, {what}; Langevin {TEMPERATURE:g} K, "
          f"skin {SKIN:g} Å; cgkit neighbour-list builds: "
          + ", ".join(f"{rebuilds[dt]} in {args.steps + 100} steps at {dt:g} fs" for dt in dts))
    print(f"{'engine':56s} {'dt fs':>6s} {'steps/s':>9s} {'ns/day':>8s} {'mol·ns/day/core':>16s} "
          f"{'× GROMACS':>10s} {'(wall: ×)':>10s}")
    for label, steps, wall, cpu, dt in rows:
        sim_ns = steps * dt * 1e-6
        per_core = sim_ns / cpu * 86400.0 * n
        ref_core = ref[1] * ref[4] * 1e-6 / ref[3] * 86400.0 * n if ref else float("nan")
        ratio_wall = (steps * dt / wall) / (ref[1] * ref[4] / ref[2]) if ref else float("nan")
        print(f"{label:56s} {dt:6g} {steps / cpu:9.1f} {sim_ns / cpu * 86400.0:8.1f} {per_core:16.3g} "
              f"{per_core / ref_core:10.2f} {ratio_wall:10.2f}")
    print("steps/s, ns/day and molecule·ns/day per core from the CPU time (user + system) each engine used "
          "(GROMACS and LAMMPS: of the child process, minus that of a 10-step run, so that start-up "
          "does not count); '(wall: ×)' is the ratio of wall-clock rates, which on a shared machine "
          "also measures the load. GROMACS runs its tutorial's 2 fs (SETTLE-rigid water); a CG step "
          f"above 2 fs is checked by --validate-dt.")


if __name__ == "__main__":
    main()
