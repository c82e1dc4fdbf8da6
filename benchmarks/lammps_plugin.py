"""Throughput of a cgkit ENNP in LAMMPS (pair_style cgkit plugin) vs cgkit MD vs ASE.

Same model (the SW-distilled Si ENNP of the silicon case study, float32; or a fresh 'small'
ENNP when that file is absent), same diamond-Si system, velocity Verlet at dt = 1 fs, one
thread per process (OMP_NUM_THREADS=1). Prints ns/day and atom-steps/s, the ratio to cgkit's
own MD measured in the same run, and LAMMPS on 1 vs 2 MPI ranks: strong scaling (same system)
and weak scaling (twice the atoms on 2 ranks). Needs `make lammps-plugin`.

    python benchmarks/lammps_plugin.py [--repeat 5] [--steps 20]

To go further than 2 ranks: `cgkit lammps in.file --np N` (or mpiexec -n N lmp ... on a cluster
with the plugin built against that LAMMPS); the ghost shell of every rank is the model's
receptive field + skin, so ranks pay off once each domain is several receptive fields wide.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _lammps_rate(wd, data, model, steps, ranks, replicate="1 1 1"):
    """(steps/s, atoms) of LAMMPS NVE after a 5-step warm-up (the faster of two runs: the
    machine may be shared)."""
    from cgkit.commands.lammps import run_lammps
    text = f"""
units metal
atom_style atomic
plugin load ${{cgkit_plugin}}
read_data {data}
replicate {replicate}
pair_style cgkit
pair_coeff * * {model} Si
velocity all create 300 5 loop geom
fix 1 all nve
timestep 0.001
thermo 1000
run 5
run {steps}
run {steps}
"""
    inp = Path(wd) / "in.bench"
    inp.write_text(text)
    proc = run_lammps(inp.name, ranks=ranks, cwd=wd, timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms", proc.stdout)
    rate = max(int(n) / float(t) for t, n, _ in loops[-2:])
    return rate, int(loops[-1][2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="cubic diamond cells per direction (8 atoms each)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    import torch
    from ase import units
    from ase.build import bulk
    from ase.md.verlet import VelocityVerlet

    from cgkit.calculator import CgkitCalculator
    from cgkit.io_potential import load_potential
    from cgkit.md import MolecularDynamics
    from cgkit.nn import ENNP
    from cgkit.nn.export import export_lammps
    from tests.lammps_plugin._lmp import write_data

    torch.set_num_threads(1)
    path = ROOT / "case_studies" / "silicon" / "results" / "ennp_sw" / "model.pt"
    model = load_potential(path) if path.exists() else ENNP.from_preset("small", ["Si"], 3.8)
    label = path.name if path.exists() else "fresh small ENNP"
    atoms = bulk("Si", "diamond", 5.431, cubic=True) * ((args.repeat,) * 3)
    atoms.rattle(0.02, seed=1)
    n, steps = len(atoms), args.steps
    rows = []
    with tempfile.TemporaryDirectory() as wd:
        export_lammps(model, Path(wd) / "si.pt")
        write_data(Path(wd) / "si.data", atoms, ["Si"])
        md = MolecularDynamics(model, atoms, timestep=1.0, integrator="verlet", temperature=300, log_every=0,
                               progress=False)
        md.run(3)
        ref = 0.0
        for _ in range(2):  # the faster of two runs (the machine may be shared)
            t = time.perf_counter()
            md.run(steps)
            ref = max(ref, steps / (time.perf_counter() - t))
        rows.append(("cgkit MD (velocity Verlet)", n, 1, ref))
        a = atoms.copy()
        a.calc = CgkitCalculator(model)
        dyn = VelocityVerlet(a, timestep=1.0 * units.fs)
        dyn.run(2)
        ase_rate = 0.0
        for _ in range(2):
            t = time.perf_counter()
            dyn.run(max(steps // 2, 1))
            ase_rate = max(ase_rate, max(steps // 2, 1) / (time.perf_counter() - t))
        rows.append(("ASE VelocityVerlet + CgkitCalculator", n, 1, ase_rate))
        r1, _ = _lammps_rate(wd, "si.data", "si.pt", steps, 1)
        rows.append(("LAMMPS pair_style cgkit, 1 rank", n, 1, r1))
        r2, _ = _lammps_rate(wd, "si.data", "si.pt", steps, 2)
        rows.append(("LAMMPS, 2 ranks (strong scaling)", n, 2, r2))
        r2w, n2 = _lammps_rate(wd, "si.data", "si.pt", steps, 2, replicate="2 1 1")
        rows.append(("LAMMPS, 2 ranks, 2x atoms (weak scaling)", n2, 2, r2w))
    print(f"{label}: {model.dtype}, cutoff {model.cutoff} Å; Si diamond; dt 1 fs; 1 thread per process; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'engine':44s} {'atoms':>6s} {'ranks':>5s} {'steps/s':>9s} {'ns/day':>8s} {'atom-steps/s':>13s} {'vs cgkit MD':>11s}")
    for name, na, nr, rate in rows:
        print(f"{name:44s} {na:6d} {nr:5d} {rate:9.3f} {rate * 86400 * 1e-6:8.4f} {rate * na:13.0f} "
              f"{rate * na / (ref * n):10.2f}x")
    print(f"strong-scaling efficiency 1→2 ranks: {r2 / (2 * r1):.2f}; weak-scaling efficiency: {r2w / r1:.2f}")


if __name__ == "__main__":
    main()
