"""Ewald and particle-mesh Ewald of cgkit.electrostatics against LAMMPS, one thread.

Rattled rock-salt ion crystals (±1 e, a = 5.64 Å, Gaussian displacements 0.1 Å) from 216 to
~10⁵ ions. Timed per method and size: one energy + forces call (cgkit: ``Electrostatics.
energy`` + autograd, neighbour list rebuilt every call; LAMMPS: ``pair_style coul/long`` +
``kspace_style ewald|pppm`` at the same relative accuracy and real-space cutoff, neighbour list
rebuilt every step, ``Loop time`` × ``% CPU use`` of a short ``run`` / steps). Times are CPU
seconds of the one thread each engine runs on (robust on a shared machine), printed per call and
as the ratio cgkit/LAMMPS; the energies of both are compared. Then: the PME scaling exponent
(least-squares slope of log t vs log N for N ≥ 1000, and of t/(N log N)), and the Ewald/PME
crossover (the N where the two cgkit timings cross, log-log interpolated). LAMMPS ewald is
timed up to 5000 ions only (it scales as N^1.5 and takes minutes beyond).

    OMP_NUM_THREADS=1 python benchmarks/electrostatics.py [--accuracy 1e-5] [--max-n 100000]
        [--max-ewald 11000] [--reps 3]
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cgkit.electrostatics import Electrostatics

A_NACL = 5.64
LMP = shutil.which("lmp") or shutil.which("lmp_serial")


def crystal(k: int, seed: int = 0):
    from ase.build import bulk
    at = bulk("NaCl", "rocksalt", a=A_NACL, cubic=True).repeat(k)
    rng = np.random.default_rng(seed)
    pos = at.positions + rng.normal(0.0, 0.1, at.positions.shape)
    q = np.where(np.array(at.get_chemical_symbols()) == "Na", 1.0, -1.0)
    return pos, q, at.cell.array


def time_cgkit(es, pos, q, cell, reps: int):
    best, E = math.inf, None
    qt, ct = torch.tensor(q), torch.tensor(cell)
    for _ in range(reps):
        x = torch.tensor(pos, requires_grad=True)
        t0 = time.process_time()
        e = es.energy(x, qt, ct, [True] * 3)
        torch.autograd.grad(e, x)
        best = min(best, time.process_time() - t0)
        E = float(e.detach())
    return best, E


def time_lammps(pos, q, cell, kspace: str, accuracy: float, r_cut: float, steps: int):
    n = len(pos)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        L = float(cell[0, 0])
        lines = ["bench", "", f"{n} atoms", "1 atom types", "", f"0 {L!r} xlo xhi",
                 f"0 {L!r} ylo yhi", f"0 {L!r} zlo zhi", "", "Masses", "", "1 22.99", "",
                 "Atoms # charge", ""]
        lines += [f"{i + 1} 1 {q[i]:.1f} {p[0]!r} {p[1]!r} {p[2]!r}" for i, p in enumerate(pos.tolist())]
        (tmp / "data").write_text("\n".join(lines) + "\n")
        (tmp / "in.lmp").write_text(f"""units metal
atom_style charge
read_data data
pair_style coul/long {r_cut}
pair_coeff * *
kspace_style {kspace} {accuracy}
neighbor 0.0 bin
neigh_modify every 1 delay 0 check no
timestep 0.0
fix 1 all nve
thermo_style custom step pe
thermo_modify format float %.12g norm no
thermo 1
run 0
run {steps}
""")
        res = subprocess.run([LMP, "-in", "in.lmp", "-log", "log", "-screen", "none"], cwd=tmp,
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        log = (tmp / "log").read_text()
    if res.returncode != 0:
        raise RuntimeError(log[-1500:])
    loop = [float(m) for m in re.findall(r"Loop time of ([0-9.eE+-]+) on", log)][-1]
    cpu_pct = [float(m) for m in re.findall(r"([0-9.]+)% CPU use", log)][-1]
    loop *= cpu_pct / 100.0   # CPU time of the loop (the machine may be shared)
    lines = log.splitlines()
    k = [i for i, s in enumerate(lines) if s.split()[:2] == ["Step", "PotEng"]][0]
    E = float(lines[k + 1].split()[1])
    return loop / steps, E


def loglog_crossing(ns, ta, tb):
    """N where t_a(N) = t_b(N), log-log interpolation between measured sizes (None if none)."""
    d = np.log(np.asarray(ta)) - np.log(np.asarray(tb))
    for i in range(len(d) - 1):
        if d[i] == 0:
            return ns[i]
        if d[i] * d[i + 1] < 0:
            f = d[i] / (d[i] - d[i + 1])
            return float(np.exp(np.log(ns[i]) + f * (np.log(ns[i + 1]) - np.log(ns[i]))))
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accuracy", type=float, default=1e-5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 5, 8, 11, 16, 23],
                    help="rock-salt repeats k (8 k³ ions)")
    ap.add_argument("--max-n", type=int, default=100_000)
    ap.add_argument("--max-ewald", type=int, default=11_000, help="largest N timed with Ewald")
    ap.add_argument("--reps", type=int, default=3, help="best of (fewer for N ≥ 5000)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"accuracy {args.accuracy:g}; one thread; CPU seconds per energy+forces call; "
          f"LAMMPS: {LMP or 'not found'}")
    print(f"{'N':>7} {'method':>6} {'cgkit s':>9} {'LAMMPS s':>9} {'ratio':>7} {'r_cut':>6} "
          f"{'alpha':>6} {'k/mesh':>14} {'|dE|/N eV':>10}")
    for k in args.sizes:
        pos, q, cell = crystal(k)
        n = len(q)
        if n > args.max_n:
            continue
        for method, kspace in (("ewald", "ewald"), ("pme", "pppm")):
            if method == "ewald" and n > args.max_ewald:
                continue
            es = Electrostatics(method=method, accuracy=args.accuracy)
            par = es.parameters_for(cell, [True] * 3, n)
            reps = args.reps if n < 5000 else (2 if n < 50000 and method == "pme" else 1)
            t, E = time_cgkit(es, pos, q, cell, reps)
            tl = El = None
            if LMP is not None and not (method == "ewald" and n > 5000):
                steps = max(1, min(20, int(2.0 / max(t, 1e-3))))
                tl, El = time_lammps(pos, q, cell, kspace, args.accuracy, par["r_cut"], steps)
            grid = str(par.get("mesh", par.get("n_kvectors")))
            lmp_s = tl if tl is not None else float("nan")
            ratio = t / tl if tl else float("nan")   # LAMMPS below its timer resolution: nan
            print(f"{n:>7} {method:>6} {t:>9.4f} {lmp_s:>9.4f} "
                  f"{ratio:>7.2f} {par['r_cut']:>6.2f} {par['alpha']:>6.3f} "
                  f"{grid:>14} {abs(E - El) / n if El is not None else float('nan'):>10.2e}", flush=True)
            rows.append((n, method, t, tl))
    ns_p = np.array([r[0] for r in rows if r[1] == "pme"], float)
    tp = np.array([r[2] for r in rows if r[1] == "pme"])
    big = ns_p >= 1000
    if big.sum() >= 2:
        slope = np.polyfit(np.log(ns_p[big]), np.log(tp[big]), 1)[0]
        per = tp[big] / (ns_p[big] * np.log(ns_p[big]))
        print(f"PME scaling (N ≥ 1000): t ∝ N^{slope:.2f}; t/(N ln N) from {per.min():.3g} to "
              f"{per.max():.3g} s (spread ×{per.max() / per.min():.2f}); N log N alone over this "
              f"range would give N^{np.polyfit(np.log(ns_p[big]), np.log(ns_p[big] * np.log(ns_p[big])), 1)[0]:.2f}")
        mid = big & (ns_p <= 40000)
        if mid.sum() >= 2 and mid.sum() < big.sum():
            print(f"PME scaling (1000 ≤ N ≤ 40000): t ∝ N^{np.polyfit(np.log(ns_p[mid]), np.log(tp[mid]), 1)[0]:.2f}")
    ns_e = [r[0] for r in rows if r[1] == "ewald"]
    te = [r[2] for r in rows if r[1] == "ewald"]
    common = [i for i, nn in enumerate(ns_p) if nn in ns_e]
    if len(ns_e) >= 2:
        se = np.polyfit(np.log(ns_e[1:]), np.log(te[1:]), 1)[0] if len(ns_e) > 2 else float("nan")
        print(f"Ewald scaling: t ∝ N^{se:.2f}")
        x = loglog_crossing([ns_p[i] for i in common], te[:len(common)], [tp[i] for i in common])
        print("Ewald/PME crossover: " + (f"N ≈ {x:.0f}" if x else
              ("PME faster at every measured N" if all(tp[i] < te[j] for j, i in enumerate(common))
               else "Ewald faster at every measured N")))


if __name__ == "__main__":
    main()
