"""CG/atomistic MD throughput of cgkit.md, with references measured in the same run.

Prints steps/s of cgkit velocity Verlet on a Lennard-Jones argon crystal/liquid, with the
neighbor list rebuilt only when needed (skin) and at every step, ASE's VelocityVerlet driving
the same potential through CgkitCalculator, several replicas in one batch, and (when the
``lmp`` binary exists) LAMMPS with the equivalent ``pair_style lj/mdf``.

    python benchmarks/md.py [--repeat 5] [--steps 300]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="fcc cells per direction (4 atoms each)")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    from ase import units
    from ase.build import bulk
    from ase.md.verlet import VelocityVerlet

    from cgkit.calculator import CgkitCalculator
    from cgkit.md import MolecularDynamics
    from cgkit.potentials.lennard_jones import LennardJones

    atoms = bulk("Ar", "fcc", a=5.4, cubic=True).repeat([args.repeat] * 3)
    atoms.rattle(0.05, seed=1)
    lj = LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.5)
    n, steps = len(atoms), args.steps
    rows = []

    def bench(label, **kw):
        md = MolecularDynamics(lj, atoms, timestep=5.0, integrator="verlet", temperature=80, log_every=0,
                               progress=False, **kw)
        md.run(10)
        t = time.perf_counter()
        md.run(steps)
        dt = time.perf_counter() - t
        rows.append((label, steps * md.n_replicas / dt, md.n_rebuilds))
        return rows[-1][1]

    ref = bench("cgkit Verlet, skin 1.0 Å")
    bench("cgkit Verlet, rebuild every step", skin=0.0)
    bench("cgkit Verlet, 4 replicas (per replica-step)", n_replicas=4)
    a = atoms.copy()
    a.calc = CgkitCalculator(lj)
    a.set_velocities(MolecularDynamics(lj, atoms, temperature=80, progress=False).velocities_A_per_fs[0] / units.fs)
    dyn = VelocityVerlet(a, timestep=5.0 * units.fs)
    dyn.run(5)
    t = time.perf_counter()
    dyn.run(steps // 3)
    rows.append(("ASE VelocityVerlet + CgkitCalculator", (steps // 3) / (time.perf_counter() - t), None))
    lmp = shutil.which("lmp")
    if lmp:
        with tempfile.TemporaryDirectory() as d:
            import ase.io
            ase.io.write(Path(d) / "ar.data", atoms, format="lammps-data", atom_style="atomic")
            (Path(d) / "in.ar").write_text(
                "units metal\natom_style atomic\nread_data ar.data\nmass 1 39.948\n"
                f"pair_style lj/mdf {0.66 * 8.5} 8.5\npair_coeff 1 1 0.0104 3.4\n"
                "neighbor 1.0 bin\nvelocity all create 80 1\nfix 1 all nve\ntimestep 0.005\n"
                f"thermo 1000\nrun {steps}\n")
            r = subprocess.run([lmp, "-in", "in.ar", "-log", "log", "-screen", "none"], cwd=d,
                               capture_output=True, text=True)
            log = (Path(d) / "log").read_text() if r.returncode == 0 else ""
            for line in log.splitlines():
                if line.startswith("Loop time of"):
                    rows.append(("LAMMPS lj/mdf (1 MPI rank)", steps / float(line.split()[3]), None))
    print(f"Lennard-Jones argon, {n} atoms, cutoff 8.5 Å, timestep 5 fs, {steps} steps")
    print(f"{'engine':48s} {'steps/s':>10s} {'ratio':>7s} {'NL builds':>9s}")
    for label, sps, nb in rows:
        print(f"{label:48s} {sps:10.1f} {sps / ref:7.2f} {'' if nb is None else nb:>9}")


if __name__ == "__main__":
    main()
