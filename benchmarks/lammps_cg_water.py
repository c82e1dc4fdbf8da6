"""The water case study's neural CG model in LAMMPS (pair_style cgkit + prior tables) vs cgkit MD.

Model: the one-bead SPC/E neural CG model of case_studies/water (tabulated pair prior +
BeadDescriptorNet), `cg_nn_potential.pt` as `cgkit fm --model nn` writes it; structure: a CG
frame of the same system (extxyz with bead_types, e.g. the final.extxyz of its CG MD). Both come
from `python case_studies/water/run.py` (give its work folder's files). Exported with
`cgkit model export --lammps` (network → TorchScript, prior → LAMMPS tables); checked:
LAMMPS forces against cgkit's on the frame (the prior differs only by LAMMPS's table
interpolation); timed: NVE steps/s of LAMMPS on 1 and 2 MPI ranks, cgkit MD on the same frame,
one thread per process, in one run. Needs `make lammps-plugin`.

    python benchmarks/lammps_cg_water.py --model WORK/fm_nn/nn/cg_nn_potential.pt \\
        --structure WORK/md_nn/final.extxyz [--steps 50]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--structure", required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--timestep", type=float, default=2.0, help="fs")
    args = ap.parse_args()

    import numpy as np
    from ase.io import read

    from cgkit.commands.lammps import run_lammps
    from cgkit.export.lammps import write_lammps
    from cgkit.io_potential import load_potential
    from cgkit.md import MolecularDynamics
    from cgkit.nn.export import split_prior

    pot = load_potential(args.model, dtype=None)
    atoms = read(args.structure)
    net, prior = split_prior(pot)
    wd = Path(tempfile.mkdtemp(prefix="cgkit_lmp_water_"))
    from cgkit.cli import main as cgkit_main
    if cgkit_main(["model", "export", str(args.model), str(wd / "model.pt"), "--lammps"]):
        sys.exit("cgkit model export --lammps failed")
    info = {"receptive_field": net.cutoff, "dtype": str(net.dtype).replace("torch.", "")}
    names = [str(s) for s in atoms.arrays["bead_types"]]
    species = np.array([list(pot.type_names).index(s) for s in names])
    w = write_lammps(prior, wd / "data", positions=atoms.positions, box=atoms.cell.array,
                     masses=atoms.get_masses(), species=species, run_forces_only=True)
    Q = w["rotation"]
    hybrid = (wd / "model_prior" / "in.cgkit_hybrid").read_text()
    hybrid = hybrid.replace("pair.table", str(wd / "model_prior" / "pair.table")).replace(
        "model.pt", str(wd / "model.pt"))
    head = f"units metal\natom_style molecular\nboundary p p p\nread_data {w['data']}\n{hybrid}\nneighbor 1.0 bin\n"
    sp = wd / "sp.in"
    sp.write_text(head + "compute f all property/atom fx fy fz\n"
                  f"dump d all custom 1 {wd / 'f.dump'} id fx fy fz\ndump_modify d sort id format float %.17g\n"
                  "run 0\n")
    r = run_lammps(sp, cwd=wd)
    if r.returncode:
        sys.exit(f"LAMMPS failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    rows = [ln.split() for ln in (wd / "f.dump").read_text().splitlines()[9:]]
    F_lmp = np.array([[float(x) for x in row[1:4]] for row in rows]) @ Q.T
    F = pot.compute(pot.graph(atoms))["forces"].detach().numpy()
    F_net = net.compute(net.graph(atoms))["forces"].detach().numpy()
    err = float(np.abs(F_lmp - F).max() / np.abs(F).max())
    print(f"{len(atoms)} beads; export: receptive field {info['receptive_field']} Å, dtype {info['dtype']}")
    print(f"LAMMPS vs cgkit forces: max |dF| / max |F| = {err:.2e} (network part alone max |F| "
          f"{np.abs(F_net).max():.3f} eV/Å; the prior differs by LAMMPS's table interpolation)")

    def lammps_rate(ranks):
        md = wd / f"md{ranks}.in"
        md.write_text(head + f"velocity all create 300 4 mom yes\ntimestep {args.timestep / 1000}\nfix 1 all nve\n"
                      "thermo 1000\nrun 5\nvariable t0 equal time\n"
                      f"run {args.steps}\n")
        t0 = time.perf_counter()
        r = run_lammps(md, cwd=wd, ranks=ranks)
        wall = time.perf_counter() - t0
        if r.returncode:
            sys.exit(f"LAMMPS failed: {r.stdout[-2000:]}")
        m = re.findall(r"Loop time of ([0-9.eE+-]+) on", r.stdout)
        return args.steps / float(m[-1]), wall

    rows = []
    for ranks in (1, 2):
        sps, _ = lammps_rate(ranks)
        rows.append((f"LAMMPS, {ranks} rank{'s' if ranks > 1 else ''}", sps))
    md = MolecularDynamics(pot, atoms, timestep=args.timestep, integrator="verlet", temperature=300.0,
                           progress=False, log_every=0, write_every=0)
    md.run(5)
    t0 = time.perf_counter()
    md.run(args.steps)
    rows.append(("cgkit MD", args.steps / (time.perf_counter() - t0)))
    ref = rows[-1][1]
    print(f"{'engine':<20} {'steps/s':>9} {'ns/day':>8} {'molecule-ns/day':>16} {'vs cgkit MD':>11}")
    for name, sps in rows:
        nsd = sps * args.timestep * 86400e-6
        print(f"{name:<20} {sps:9.2f} {nsd:8.3f} {nsd * len(atoms):16.1f} {sps / ref:10.2f}x")


if __name__ == "__main__":
    main()
