"""``cgkit md``: molecular dynamics with a cgkit potential (a fitted CG potential from
``cgkit fm``, a trained model, or a built-in ``cgkit:<name>``), velocity Verlet (NVE) or
Langevin (BAOAB).

Before the run the time step is compared with the stability limit of the start structure,
dt_max = 2/ω_max from the largest eigenvalue of its mass-weighted Hessian (the full Hessian up
to 128 particles, Lanczos iterations on Hessian-vector products above): above dt_max the run
is refused (``--allow-unstable-timestep`` overrides, recorded in summary.json), above the
recommended step (1/20 of the shortest vibrational period) a warning is printed. Particles
closer than ``--min-distance`` in the start structure are refused with their indices. A run
that blows up (NaN/inf energies or forces, particles jumping Å between neighbor-list builds)
stops with an error naming the MD step and the particles; like every failed run it leaves no
output (everything is written into a staging folder that only replaces ``--out`` on success).

Tabulated potentials (``cgkit fm/ibi/relent/imc`` output) run on a compiled pair kernel with a
half Verlet list (``--kernel``; docs/cg_md.md); ``summary.json`` names the kernel used.

Writes ``summary.json`` (steps/s, simulated ns/day, energy drift, the time-step check, the
achieved mean temperature against the target with its statistical tolerance, warnings),
``md.json`` (energy/temperature log), ``md.png``, the trajectory and ``final.extxyz``. With
``--reference`` the CG run is validated against a mapped reference trajectory
(bond/angle/dihedral distributions, RDFs, JS divergences, overlay PNGs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_EPILOG = """examples:
  cgkit md --potential fm/cg_potential.pt --structure cg/cg.psf --frames cg/cg.trr --steps 200000 \\
           --timestep 5 --temperature 300 --out md/ --reference cg/cg.trr
  cgkit md --potential cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5 --structure argon.extxyz --integrator verlet
  cgkit md --potential cgkit:sw --structure si.extxyz --timestep 1 --temperature 300 --steps 5000

Units: timestep fs, temperature K, friction 1/ps, positions and distances Å, energies eV;
--steps, --equilibration, --write-every and --log-every count MD steps.
ASE calculators (ase:EMT, ...) are not accepted: md integrates cgkit potentials in torch; run
ASE's own MD (ase.md) with them, or distil them into a cgkit model with `cgkit train`."""

_POTENTIAL_HELP = ("cgkit potential: a model file saved by cgkit (cgkit fm's cg_potential.pt, "
                   "cgkit train), or a built-in cgkit:sw, cgkit:lj:sigma=3.4,epsilon=0.0104,"
                   "cutoff=8.5, cgkit:trappe_ua (ASE calculators are not accepted here)")

_TRAJ_SUFFIXES = (".dcd", ".xtc", ".trr", ".xyz", ".extxyz")


def register(subparsers):
    from ..options import add_output_options, add_potential_option, add_seed_option
    p = subparsers.add_parser("md", help="run (CG or atomistic) MD with a cgkit potential",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_potential_option(p, help=_POTENTIAL_HELP)
    p.add_argument("--structure", required=True,
                   help="start structure: extxyz (bead types in a 'bead_types' column) or the CG PSF "
                        "from `cgkit map` together with --frames")
    p.add_argument("--frames", help="trajectory whose last frame (or --frame) starts the run (with a PSF)")
    p.add_argument("--frame", type=int, default=-1,
                   help="0-based frame index of --frames (or of --structure) to start from; "
                        "negative counts from the end (default: -1, the last frame)")
    p.add_argument("--steps", type=int, default=10000, help="MD steps of the production run")
    p.add_argument("--timestep", type=float, default=5.0,
                   help="time step, fs; checked against the stable step of the start structure")
    p.add_argument("--allow-unstable-timestep", action="store_true",
                   help="run even when --timestep exceeds the stability limit dt_max of the start "
                        "structure (recorded in summary.json; the result is probably wrong)")
    p.add_argument("--min-distance", type=float, default=0.5,
                   help="Å; particles closer than this in the start structure are refused as "
                        "overlapping (0: no check, e.g. for soft DPD-like potentials)")
    p.add_argument("--integrator", choices=("langevin", "verlet"), default="langevin",
                   help="langevin (BAOAB, NVT) or verlet (NVE)")
    p.add_argument("--temperature", type=float, default=300.0,
                   help="K: thermostat target and initial Maxwell-Boltzmann velocities")
    p.add_argument("--friction", type=float, default=10.0, help="Langevin friction, 1/ps")
    p.add_argument("--replicas", type=int, default=1,
                   help="independent replicas (different velocities and noise) integrated together "
                        "in one batch; trajectories are written as NAME_r<k>.<suffix>")
    p.add_argument("--skin", type=float, default=1.0,
                   help="neighbor-list skin, Å; the list is rebuilt when a particle moved more "
                        "than skin/2 (0: rebuild every step)")
    add_seed_option(p)
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="precision (default: the potential's)")
    p.add_argument("--kernel", choices=("auto", "compiled", "torch"), default="auto",
                   help="force evaluation of tabulated potentials: the compiled pair kernel (auto: when a C "
                        "compiler is available; compiled: refuse without it) or the torch path")
    p.add_argument("--pair-precision", choices=("double", "mixed"), default="mixed",
                   help="pair forces of the fused C loop (pair and bond tables, exclusions): mixed = float32 "
                        "pair loop with float64 positions, velocities and integration (GROMACS' mixed "
                        "precision; ~2.2x faster, forces within ~5e-6 relative, NVE drift and g(r) equal to "
                        "double within noise: docs/cg_md.md); double = float64 throughout (equal to autograd); "
                        "summary.json records the one that ran as md.pair_precision")
    p.add_argument("--trajectory", default="traj.dcd",
                   help="trajectory file name in OUT; the suffix selects the format: "
                        ".dcd, .xtc, .trr (with a .pdb beside it) or .extxyz")
    p.add_argument("--write-every", type=int, default=100,
                   help="MD steps between trajectory frames (0: no trajectory)")
    p.add_argument("--log-every", type=int, default=100,
                   help="MD steps between energy/temperature log entries (md.json, md.png, the "
                        "mean temperature)")
    p.add_argument("--uncertainty", nargs=2, type=float, metavar=("LO", "HI"), default=None,
                   help="trust levels (eV/Å) on the committee's calibrated per-atom force σ (largest over "
                        "atoms), for an ensemble potential: frames between LO and HI are candidates for "
                        "labelling (written to uncertain.extxyz), the run stops at the first frame at or "
                        "above HI (the trajectory left the region where the model means anything)")
    p.add_argument("--uncertainty-every", type=int, default=10,
                   help="MD steps between uncertainty checks (with --uncertainty)")
    p.add_argument("--reference", help="mapped reference CG trajectory (same PSF/bead order) for validation")
    p.add_argument("--equilibration", type=int, default=0,
                   help="MD steps run before the production run; not written, not stored for "
                        "--reference, not averaged for the mean temperature (default: 0)")
    add_output_options(p, default="md_out")
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
        if not -len(frames) <= args.frame < len(frames):
            raise InputError(f"--frame {args.frame}: {args.frames} holds {len(frames)} frames "
                             f"(0 to {len(frames) - 1})")
        return frames[args.frame]
    try:
        atoms = ase.io.read(str(s), index=args.frame if args.frames is None else -1)
    except (IndexError, StopIteration) as exc:  # ASE's readers raise either past the last frame
        raise InputError(f"--frame {args.frame}: {s} has no frame {args.frame} (0-based; negative "
                         "counts from the end)") from exc
    if "bead_types" not in atoms.arrays and np.all(atoms.numbers == 0):
        raise InputError(f"{s}: CG beads need a 'bead_types' column (extxyz written by cgkit)")
    return atoms


def _check_options(args) -> None:
    """Cheap checks of the options, before any work."""
    import math
    from ..errors import InputError
    spec = str(args.potential)
    if spec.startswith("ase:"):
        raise InputError(f"--potential {spec} is an ASE calculator; cgkit md integrates cgkit "
                         "potentials only (forces, Hessian and batched replicas in torch): give a "
                         "model file saved by cgkit (cgkit fm/train) or a built-in such as cgkit:sw "
                         "or cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5; for an ASE calculator use "
                         "ASE's own MD (ase.md.langevin.Langevin) or distil it with `cgkit train`")
    for name in ("steps", "equilibration", "write_every", "log_every"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 0, got {getattr(args, name)}")
    if args.replicas < 1:
        raise InputError(f"--replicas must be ≥ 1, got {args.replicas}")
    if not (args.timestep > 0 and math.isfinite(args.timestep)):
        raise InputError(f"--timestep must be a positive number of fs, got {args.timestep}")
    if not (args.temperature >= 0 and math.isfinite(args.temperature)):
        raise InputError(f"--temperature must be ≥ 0 K, got {args.temperature}")
    if args.integrator == "langevin" and not (args.friction > 0 and math.isfinite(args.friction)):
        raise InputError(f"--friction must be > 0 (1/ps) for Langevin dynamics, got {args.friction}")
    if not (args.skin >= 0 and math.isfinite(args.skin)):
        raise InputError(f"--skin must be ≥ 0 Å, got {args.skin}")
    if not (args.min_distance >= 0 and math.isfinite(args.min_distance)):
        raise InputError(f"--min-distance must be ≥ 0 Å, got {args.min_distance}")
    traj = Path(args.trajectory)
    if traj.name != args.trajectory or traj.suffix.lower() not in _TRAJ_SUFFIXES:
        raise InputError(f"--trajectory {args.trajectory}: give a file name (no folder) ending in one "
                         f"of {', '.join(_TRAJ_SUFFIXES)}")
    if args.reference and not Path(args.reference).is_file():
        raise InputError(f"no reference trajectory '{args.reference}'")
    if args.reference and (args.write_every == 0 or args.steps < args.write_every):
        raise InputError("--reference validates the frames written every --write-every steps: give "
                         "--write-every > 0 and --steps ≥ --write-every")


def _warn(text: str) -> None:
    print(f"cgkit md: warning: {text}", file=sys.stderr, flush=True)


def _run(args) -> int:
    import numpy as np
    import torch

    from ..io_potential import load_potential
    from ..jsonutil import write_json
    from ..md import MolecularDynamics
    from ..outputs import OutputFolder

    def ase_write(path, frames):
        import ase.io
        ase.io.write(str(path), frames, format="extxyz")

    _check_options(args)
    if args.uncertainty is not None:
        from ..learn.exploration import TrustLevels
        TrustLevels(*args.uncertainty)  # refuse bad levels before any work
        if args.uncertainty_every < 1:
            from ..errors import InputError
            raise InputError(f"--uncertainty-every must be >= 1 step, got {args.uncertainty_every}")
    # the output folder is checked (non-empty, writable) first; everything below is written into a
    # staging folder that replaces --out only when the whole run succeeded (a refused or blown-up
    # run leaves nothing behind and an earlier good run untouched)
    with OutputFolder(args.out, overwrite=args.overwrite, command="md") as out:
        dtype = getattr(torch, args.dtype) if args.dtype else None
        pot = load_potential(args.potential, dtype=dtype)
        atoms = _read_structure(args)
        meta = getattr(pot, "metadata", {}) or {}
        masses = None
        if meta.get("masses") is not None and len(meta["masses"]) == len(atoms):
            masses = np.asarray(meta["masses"], dtype=float)
        # refuses overlapping particles (--min-distance) before any step
        md = MolecularDynamics(pot, atoms, masses=masses, timestep=args.timestep, integrator=args.integrator,
                               temperature=args.temperature, friction=args.friction / 1000.0,
                               n_replicas=args.replicas, skin=args.skin, seed=args.seed,
                               trajectory=None, log_every=args.log_every, dtype=dtype,
                               min_distance=args.min_distance, kernel=args.kernel,
                               pair_precision=args.pair_precision)
        # dt against dt_max of the start structure: refused above it (unless overridden), warned above
        # the recommended step
        check = md.check_timestep(allow_unstable=args.allow_unstable_timestep, warn=False)
        if check["status"] == "skipped":
            _warn(f"time step not checked: {check['reason']}")
        elif check["warning"]:
            _warn(check["warning"])

        if args.equilibration:
            md.run(args.equilibration)
            md.results.sample_from_step = md.step  # the mean temperature is taken after it
        md.trajectory = out / args.trajectory if args.write_every > 0 else None
        md.write_every = args.write_every
        md.store_every = args.write_every if args.reference else 0
        md.results.clear_frames()
        monitor = None
        if args.uncertainty:
            from ..learn.exploration import TrustLevels
            from ..learn.monitor import UncertaintyMonitor
            monitor = UncertaintyMonitor(TrustLevels(*args.uncertainty), every=args.uncertainty_every)
            monitor.check(md)
        md.run(args.steps, observer=monitor)
        res = md.results
        s = res.summary()
        summary = {"md": s, "potential": str(args.potential), "n_particles": md.n_particles,
                   "integrator": args.integrator, "temperature_K": args.temperature,
                   "equilibration_steps": args.equilibration,
                   "timestep_check": s["timestep_check"], "temperature": s["temperature"],
                   "warnings": s["warnings"],
                   "units": {"time": "fs", "energy": "eV", "temperature": "K", "distance": "Å"}}
        res.to_json(out / "md.json")
        res.plot(out)
        md.atoms(0).write(out / "final.extxyz")
        if args.reference:
            summary["validation"] = _validate(args, md, pot, res, out)
        if monitor is not None:
            summary["uncertainty"] = monitor.summary()
            if monitor.candidates:
                ase_write(out / "uncertain.extxyz", monitor.candidates)
        write_json(out / "summary.json", summary)
    tc = s["temperature"]
    if tc and tc.get("warning"):
        _warn(tc["warning"])
    mean_t = f"<T> = {s['mean_temperature_K']:.1f} K" if s["mean_temperature_K"] is not None else "no log"
    if tc and "tolerance_K" in tc:
        mean_t += f" (target {tc['target_K']:g} K, ±{tc['tolerance_K']:.1f} K)"
    sps = s["steps_per_second"]
    speed = f"{sps:.1f} steps/s, {s['ns_per_day']:.2f} ns/day" if sps == sps else "no timing"
    speed += f" ({s.get('md_loop')} loop, {s.get('pair_precision')} pair forces)"
    if monitor is not None:
        u = monitor.summary()
        print(f"uncertainty: {u['counts']['candidate']} candidate frames (σ_F in [{args.uncertainty[0]:g}, "
              f"{args.uncertainty[1]:g}) eV/Å)" + (f"; stopped: {u['stopped']}" if u["stopped"] else ""))
    print(f"{s['n_steps']} steps, {speed}, {mean_t}; wrote {args.out}/summary.json, md.json, md.png"
          f"{', ' + args.trajectory if args.write_every > 0 else ''}, final.extxyz"
          f"{', uncertain.extxyz' if monitor is not None and monitor.candidates else ''}")
    return 0


def _validate(args, md, pot, res, out) -> dict:
    import ase.io
    import numpy as np

    from ..forcematch.validate import StructuralValidation
    from ..topology import Topology
    from ..trajectory import read_cg_atoms
    ref = list(read_cg_atoms(args.structure, args.reference)) if Path(args.structure).suffix.lower() == ".psf" \
        else ase.io.read(args.reference, ":")
    ref_pos = np.array([a.positions for a in ref])
    ref_box = np.array([a.cell.array for a in ref]) if ref[0].pbc.any() else None
    test_pos = res.positions.reshape(-1, md.n_particles, 3)
    test_box = md.cell if md.pbc.any() else None
    # a sum (tables + Coulomb, prior + network) validates with its terms' CG topology
    tops = [getattr(t, "topology", None) for t in (getattr(pot, "terms", None) or [pot])]
    top = next((t for t in tops if t is not None), None) or Topology(n_particles=md.n_particles)
    v = StructuralValidation(ref_pos, test_pos, md.type_names, md.species, top,
                             reference_boxes=ref_box, test_boxes=test_box,
                             rdf_max=min(12.0, 0.5 * float(np.min(np.linalg.norm(md.cell, axis=1)))
                                         if md.pbc.any() else 12.0)).run()
    v.plot(out)
    return v.summary()
