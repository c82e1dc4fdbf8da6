"""``cgkit md``: molecular dynamics with a cgkit potential (a fitted CG potential from
``cgkit fm``, a trained model, or a built-in ``cgkit:<name>``), velocity Verlet (NVE) or
Langevin (BAOAB). Writes ``summary.json`` (steps/s, simulated ns/day, energy drift, mean
temperature), ``md.json`` (energy/temperature log), ``md.png``, the trajectory and
``final.extxyz``. With ``--reference`` the CG run is validated against a mapped reference
trajectory (bond/angle/dihedral distributions, RDFs, JS divergences, overlay PNGs).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

_EPILOG = """examples:
  cgkit md --potential fm/cg_potential.pt --structure cg/cg.psf --frames cg/cg.trr --steps 200000 \\
           --timestep 5 --temperature 300 --out md/ --reference cg/cg.trr
  cgkit md --potential cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5 --structure argon.extxyz --integrator verlet

Units: timestep fs, temperature K, friction 1/ps, positions Å, energies eV."""


def register(subparsers):
    p = subparsers.add_parser("md", help="run (CG or atomistic) MD with a cgkit potential",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--potential", required=True, help="saved cgkit potential (.pt) or cgkit:<builtin>")
    p.add_argument("--structure", required=True,
                   help="start structure: extxyz (bead types in a 'bead_types' column) or the CG PSF "
                        "from `cgkit map` together with --frames")
    p.add_argument("--frames", help="trajectory whose last frame (or --frame) starts the run (with a PSF)")
    p.add_argument("--frame", type=int, default=-1, help="frame index of --frames to start from (default last)")
    p.add_argument("--steps", type=int, default=10000, help="MD steps (default 10000)")
    p.add_argument("--timestep", type=float, default=5.0, help="fs (default 5)")
    p.add_argument("--integrator", choices=("langevin", "verlet"), default="langevin",
                   help="langevin (BAOAB, NVT; default) or verlet (NVE)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--friction", type=float, default=10.0, help="Langevin friction, 1/ps (default 10)")
    p.add_argument("--replicas", type=int, default=1, help="independent replicas run in one batch")
    p.add_argument("--skin", type=float, default=1.0, help="neighbor-list skin, Å (0: rebuild every step)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="precision (default: the potential's)")
    p.add_argument("--trajectory", default="traj.dcd",
                   help="trajectory file name in OUT (.dcd, .xtc, .trr, .extxyz; default traj.dcd)")
    p.add_argument("--write-every", type=int, default=100, help="steps between trajectory frames")
    p.add_argument("--log-every", type=int, default=100, help="steps between energy/temperature log entries")
    p.add_argument("--reference", help="mapped reference CG trajectory (same PSF/bead order) for validation")
    p.add_argument("--equilibration", type=int, default=0,
                   help="steps run before sampling for --reference validation (default 0)")
    p.add_argument("--out", default="md_out", help="output folder (default md_out)")
    p.set_defaults(func=_run)


def _read_structure(args):
    import ase.io
    import numpy as np
    from ..errors import InputError
    s = Path(args.structure)
    if not s.is_file():
        raise InputError(f"no structure file '{s}'")
    if s.suffix.lower() == ".psf":
        if not args.frames:
            raise InputError("a PSF start structure needs --frames (a trajectory with coordinates)")
        from ..trajectory import read_cg_atoms
        frames = list(read_cg_atoms(str(s), args.frames))
        if not frames:
            raise InputError(f"{args.frames} holds no frames")
        return frames[args.frame]
    atoms = ase.io.read(str(s), index=args.frame if args.frames is None else -1)
    if "bead_types" not in atoms.arrays and np.all(atoms.numbers == 0):
        raise InputError(f"{s}: CG beads need a 'bead_types' column (extxyz written by cgkit)")
    return atoms


def _run(args) -> int:
    import numpy as np
    import torch

    from ..io_potential import load_potential
    from ..md import MolecularDynamics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    pot = load_potential(args.potential, dtype=dtype)
    atoms = _read_structure(args)
    meta = getattr(pot, "metadata", {}) or {}
    masses = None
    if meta.get("masses") is not None and len(meta["masses"]) == len(atoms):
        masses = np.asarray(meta["masses"], dtype=float)
    md = MolecularDynamics(pot, atoms, masses=masses, timestep=args.timestep, integrator=args.integrator,
                           temperature=args.temperature, friction=args.friction / 1000.0,
                           n_replicas=args.replicas, skin=args.skin, seed=args.seed,
                           trajectory=None, log_every=args.log_every, dtype=dtype)
    if args.equilibration:
        md.run(args.equilibration)
    md.trajectory = out / args.trajectory
    md.write_every = args.write_every
    store = args.write_every if args.reference else 0
    md.store_every = store
    md.results._data["positions"].clear()
    md.run(args.steps)
    res = md.results
    summary = {"md": res.summary(), "potential": str(args.potential), "n_particles": md.n_particles,
               "integrator": args.integrator, "temperature_K": args.temperature,
               "units": {"time": "fs", "energy": "eV", "temperature": "K"}}
    res.to_json(out / "md.json")
    res.plot(out / "md.png")
    md.atoms(0).write(out / "final.extxyz")
    if args.reference:
        from ..forcematch.validate import StructuralValidation
        from ..trajectory import read_cg_atoms
        ref = list(read_cg_atoms(args.structure, args.reference)) if Path(args.structure).suffix == ".psf" \
            else __import__("ase.io").io.read(args.reference, ":")
        ref_pos = np.array([a.positions for a in ref])
        ref_box = np.array([a.cell.array for a in ref]) if ref[0].pbc.any() else None
        test_pos = res.positions.reshape(-1, md.n_particles, 3)
        test_box = md.cell if md.pbc.any() else None
        from ..topology import Topology
        top = getattr(pot, "topology", None) or Topology(n_particles=md.n_particles)
        v = StructuralValidation(ref_pos, test_pos, md.type_names, md.species, top,
                                 reference_boxes=ref_box, test_boxes=test_box,
                                 rdf_max=min(12.0, 0.5 * float(np.min(np.linalg.norm(md.cell, axis=1)))
                                             if md.pbc.any() else 12.0)).run()
        v.plot(out)
        summary["validation"] = v.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    s = res.summary()
    print(f"{s['n_steps']} steps, {s['steps_per_second']:.1f} steps/s, {s['ns_per_day']:.2f} ns/day, "
          f"<T> = {s['mean_temperature_K']:.1f} K; wrote {out}/")
    return 0
