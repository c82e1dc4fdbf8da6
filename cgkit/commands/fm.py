"""``cgkit fm``: force matching (spline MS-CG) of CG potentials from mapped atomistic forces.

Input is either an atomistic trajectory with forces plus a mapping (mapped on the fly), or a
CG trajectory written by ``cgkit map`` (TRR + PSF, or extxyz + PSF). Output folder: ``tables/``
(one text table per interaction), ``cg_potential.pt`` (a cgkit TabulatedPotential for
``cgkit md``, ASE and Python), ``summary.json`` (force residual per bead type against the RMS
mapped force, samples, sparse ranges, timing), ``fm.png`` and ``normal_equations.npz`` (add
several of those with ``--add`` to combine runs done on separate chunks or machines).

``--bonded boltzmann|ibi`` runs the hybrid scheme: bond and angle tables from Boltzmann
inversion of the mapped distributions (a first pass over the trajectory) are kept fixed and
only the rest is force-matched; ``ibi`` then refines the bonded tables by IBI with cgkit CG MD
(pairs kept). The residual in ``summary.json`` is that of the force-matching step.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

_EPILOG = """examples:
  cgkit fm --mapping mappings/hexane_3bead.yaml --topology topol.tpr --trajectory traj.trr --out fm/
  cgkit fm --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --pair-cutoff 12 --out fm/
  cgkit fm --cg-trajectory part1.trr --cg-topology cg.psf --stop 5000 --out p1   # chunk 1
  cgkit fm --cg-trajectory part2.trr --cg-topology cg.psf --grids-from p1 --add p1/normal_equations.npz --out all
  cgkit fm --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --bonded ibi --temperature 300 --out hybrid/

Grids: pairs [auto closest approach, --pair-cutoff] Å; bonds/angles from the observed range
(first --scan-frames frames); dihedrals [-180, 180) deg. Override with --grid, e.g.
--grid "angle A-B-A=60:180:4" --grid "pair A-B=3.5:12:0.1" (min:max:spacing, Å or deg).
Units: Å, eV, eV/Å; angles in degrees."""


def register(subparsers):
    p = subparsers.add_parser("fm", help="force-match CG potentials (spline MS-CG) from mapped forces",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (either a mapping + atomistic trajectory, or a CG trajectory)")
    src.add_argument("--mapping", help="mapping definition (cgkit YAML, VOTCA XML, Martini .map)")
    src.add_argument("--topology", help="atomistic topology (tpr, gro, pdb, psf, LAMMPS data)")
    src.add_argument("--trajectory", help="atomistic trajectory with forces (trr, LAMMPS dump, extxyz)")
    src.add_argument("--cg-trajectory", help="CG trajectory with mapped forces from `cgkit map` (trr or extxyz)")
    src.add_argument("--cg-topology", help="CG topology PSF written by `cgkit map` (bonds, angles, dihedrals)")
    src.add_argument("--exclude", type=int, default=2,
                     help="with --cg-topology: exclude non-bonded pairs up to this many bonds apart "
                          "(default 2: 1-2 and 1-3); with --mapping the definition's exclusions are used")
    src.add_argument("--start", type=int, default=None, help="first frame index")
    src.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    src.add_argument("--step", type=int, default=None, help="use every STEP-th frame")
    src.add_argument("--lammps-units", choices=("real", "metal"), default="real",
                     help="units style of a LAMMPS dump (default real)")
    p.add_argument("--bonded", choices=("fm", "boltzmann", "ibi"), default="fm",
                   help="bonds and angles: fm = force-matched with everything else (default); "
                        "boltzmann = Boltzmann inversion of the mapped distributions, kept fixed while "
                        "the rest is force-matched on the remaining force (VOTCA's hybrid scheme); "
                        "ibi = as boltzmann, then --ibi-iterations of IBI on bonds and angles with the "
                        "force-matched pairs kept (needs a periodic box)")
    hy = p.add_argument_group("hybrid schemes (--bonded boltzmann|ibi)")
    hy.add_argument("--temperature", type=float, default=300.0,
                    help="temperature of the reference trajectory, K (default 300)")
    hy.add_argument("--bonded-frames", type=int, default=2000,
                    help="at most this many frames (the first ones) are histogrammed (default 2000)")
    hy.add_argument("--ibi-iterations", type=int, default=4, help="IBI iterations (default 4)")
    hy.add_argument("--ibi-steps", type=int, default=5000, help="CG MD sampling steps per IBI iteration")
    hy.add_argument("--ibi-equilibration", type=int, default=1000, help="CG MD equilibration steps per iteration")
    hy.add_argument("--timestep", type=float, default=5.0, help="CG MD time step of IBI, fs (default 5)")
    p.add_argument("--model", choices=("spline", "nn"), default="spline",
                   help="spline MS-CG (default); nn = equivariant network on the bead graph trained on "
                        "the forces the spline fit (the prior) leaves unexplained")
    nn = p.add_argument_group("neural CG potential (--model nn)")
    nn.add_argument("--nn-frames", type=int, default=200, help="frames kept for network training (default 200)")
    nn.add_argument("--nn-rcut", type=float, default=6.0, help="network cutoff, Å (default 6)")
    nn.add_argument("--nn-channels", type=int, default=16, help="features per irrep (default 16)")
    nn.add_argument("--nn-lmax", type=int, default=1, help="highest angular momentum (default 1)")
    nn.add_argument("--nn-epochs", type=int, default=50, help="maximum epochs (early stopping on a 20%% split)")
    g = p.add_argument_group("grids")
    g.add_argument("--pair-cutoff", type=float, default=10.0, help="non-bonded cutoff, Å (default 10)")
    g.add_argument("--pair-spacing", type=float, default=0.1, help="pair spline knot spacing, Å (default 0.1)")
    g.add_argument("--bond-spacing", type=float, default=0.02, help="bond knot spacing, Å (default 0.02)")
    g.add_argument("--angle-spacing", type=float, default=4.0, help="angle knot spacing, deg (default 4)")
    g.add_argument("--dihedral-spacing", type=float, default=20.0, help="dihedral knot spacing, deg (default 20)")
    g.add_argument("--no-pairs", action="store_true", help="fit bonded interactions only")
    g.add_argument("--grid", action="append", default=[],
                   help='per-interaction grid "KIND T1-T2[-..]=min:max[:spacing]" (repeatable; '
                        '"=none" drops it)')
    g.add_argument("--scan-frames", type=int, default=20,
                   help="frames scanned to choose the grid ranges automatically (default 20)")
    g.add_argument("--grids-from", help="reuse the grids of a previous run's folder (for --add)")
    s = p.add_argument_group("solver")
    s.add_argument("--method", choices=("ridge", "lstsq"), default="ridge",
                   help="ridge: regularised (default); lstsq: no regularisation, errors on singular systems")
    s.add_argument("--ridge", type=float, default=1e-12, help="relative ridge weight (default 1e-12)")
    s.add_argument("--smooth", type=float, default=1e-8,
                   help="relative second-difference smoothness weight (default 1e-8)")
    s.add_argument("--min-samples", type=int, default=10,
                   help="grid intervals with fewer samples are sparse: warned and trimmed (default 10)")
    s.add_argument("--block-size", type=int, default=10, help="frames per jackknife block (default 10)")
    s.add_argument("--drop-empty", action="store_true",
                   help="drop interactions without samples (with a warning) instead of failing")
    s.add_argument("--add", nargs="*", default=[], help="normal_equations.npz files of other runs to add")
    p.add_argument("--export", default="",
                   help="comma-separated: lammps, gromacs — also write engine tables into OUT/lammps, OUT/gromacs")
    p.add_argument("--out", default="fm_out", help="output folder (default fm_out)")
    p.set_defaults(func=_run)


# ---------------------------------------------------------------------------- input
def _cg_source(args):
    """(type_names, species, masses, topology, frame iterator of (pos, forces, cell)) ."""
    import numpy as np
    from ..errors import InputError
    if args.mapping:
        if not args.topology:
            raise InputError("--mapping needs --topology (the atomistic topology)")
        from ..mapping import Mapping
        from ..trajectory import open_trajectory
        m = Mapping.from_yaml(args.mapping, args.topology)
        traj = open_trajectory(args.topology, args.trajectory, start=args.start, stop=args.stop,
                               step=args.step, lammps_units=args.lammps_units)
        names = [str(t) for t in m.bead_types]

        def frames():
            for fr in traj:
                if fr.forces is None:
                    raise InputError("the atomistic trajectory has no forces in frame "
                                     f"{fr.step}; write forces in the MD run (GROMACS nstfout, "
                                     "LAMMPS dump fx fy fz)")
                cg = m.map_frame(fr)
                yield cg.positions, cg.forces, cg.cell if np.any(cg.cell) else None
        masses = np.asarray(m.bead_masses, dtype=float)
        top = m.topology
    elif args.cg_trajectory:
        if not args.cg_topology:
            raise InputError("--cg-trajectory needs --cg-topology (the PSF written by `cgkit map`)")
        from ..trajectory import read_cg_atoms, read_cg_system
        type_names, species, masses, top = read_cg_system(args.cg_topology, exclude=args.exclude)
        names = [type_names[k] for k in species]
        sl = slice(args.start, args.stop, args.step)

        def frames():
            import itertools
            it = read_cg_atoms(args.cg_topology, args.cg_trajectory)
            for at in itertools.islice(it, sl.start, sl.stop, sl.step):
                f = None
                if at.calc is not None and "forces" in at.calc.results:
                    f = at.calc.results["forces"]
                elif "forces" in at.arrays:
                    f = at.arrays["forces"]
                if f is None:
                    raise InputError(f"{args.cg_trajectory} has no forces; map a trajectory "
                                     "that holds forces (GROMACS trr with nstfout > 0)")
                yield at.positions, f, at.cell.array if at.pbc.any() else None
    else:
        raise InputError("give --mapping/--topology/--trajectory or --cg-trajectory/--cg-topology")
    type_names = sorted(set(names))
    species = np.array([type_names.index(t) for t in names])
    return type_names, species, masses, top, frames()


def _reference_frames(frames, limit: int):
    """Positions (n, n_beads, 3) Å and boxes (n, 3, 3) or None of the first ``limit`` frames."""
    import numpy as np

    from ..errors import InputError
    pos, boxes = [], []
    for k, fr in enumerate(frames):
        if k >= limit:
            print(f"cgkit fm: --bonded uses the first {limit} frames (--bonded-frames)")
            break
        pos.append(np.asarray(fr[0], dtype=float))
        boxes.append(fr[2])
    if not pos:
        raise InputError("the trajectory holds no frames (check --start/--stop/--step)")
    return np.array(pos), (None if boxes[0] is None else np.array(boxes))


def _parse_grids(items):
    from ..errors import InputError
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f'--grid expects "KIND T1-T2=min:max[:spacing]", got "{item}"')
        label, spec = item.split("=", 1)
        label = " ".join(label.split())
        if spec.strip().lower() == "none":
            out[label] = None
            continue
        try:
            vals = [float(v) for v in spec.split(":")]
        except ValueError as exc:
            raise InputError(f'--grid "{item}": min:max[:spacing] must be numbers') from exc
        out[label] = vals[0] if label.startswith("dihedral") and len(vals) == 1 else tuple(vals)
    return out


def _run(args) -> int:
    import warnings

    import numpy as np

    from ..errors import InputError
    from ..forcematch import NormalEquations, SplineForceMatching, suggest_grids
    from ..forcematch.mscg import SparseSamplingWarning

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    type_names, species, masses, top, frames = _cg_source(args)
    fixed, ref = None, None
    if args.bonded != "fm":  # first pass: the bonded distributions, Boltzmann-inverted
        from ..forcematch import boltzmann_bonded_tables
        ref = _reference_frames(frames, args.bonded_frames)
        if args.bonded == "ibi" and ref[1] is None:
            raise InputError("--bonded ibi runs CG MD and needs a periodic box in the trajectory")
        fixed = boltzmann_bonded_tables(type_names, species, top, ref[0], ref[1], temperature=args.temperature)
        print(f"cgkit fm: Boltzmann-inverted and fixed: {', '.join(t.label for t in fixed)}")
        frames = _cg_source(args)[4]
    user = _parse_grids(args.grid)
    buf = []
    if args.grids_from:
        saved = json.loads((Path(args.grids_from) / "summary.json").read_text())
        grids = {k: tuple(v) for k, v in saved["grids"].items()}
    else:
        for _ in range(max(args.scan_frames, 1)):
            try:
                buf.append(next(frames))
            except StopIteration:
                break
        if not buf:
            raise InputError("the trajectory holds no frames (check --start/--stop/--step)")
        grids = suggest_grids(type_names, species, top, np.array([b[0] for b in buf]),
                              [b[2] for b in buf] if buf[0][2] is not None else None,
                              pair_cutoff=args.pair_cutoff)
    spacing = {"pair": args.pair_spacing, "bond": args.bond_spacing, "angle": args.angle_spacing,
               "dihedral": args.dihedral_spacing}
    full = {}
    for label, rng in grids.items():
        kind = label.split()[0]
        if kind == "pair" and args.no_pairs:
            continue
        full[label] = args.dihedral_spacing if kind == "dihedral" else (rng[0], rng[1], spacing[kind])
    full.update(user)
    fm = SplineForceMatching(type_names, species, top,
                             pair=None if args.no_pairs else (0.0, args.pair_cutoff, args.pair_spacing),
                             bond=None, angle=None, dihedral=None, grids=full,
                             block_size=args.block_size,
                             on_empty="drop" if args.drop_empty else "error", check=False, fixed=fixed)
    t0 = time.perf_counter()
    n = 0
    chunk = list(buf)
    kept = []
    for fr in frames:
        chunk.append(fr)
        if args.model == "nn" and len(kept) < args.nn_frames:
            kept.append(fr)
        if len(chunk) >= 50:
            fm.accumulate(np.array([c[0] for c in chunk]), np.array([c[1] for c in chunk]),
                          [c[2] for c in chunk] if chunk[0][2] is not None else None)
            n += len(chunk)
            chunk = []
    if chunk:
        fm.accumulate(np.array([c[0] for c in chunk]), np.array([c[1] for c in chunk]),
                      [c[2] for c in chunk] if chunk[0][2] is not None else None)
        n += len(chunk)
    t_acc = time.perf_counter() - t0
    fm._close_block()
    fm.normal_equations.save(out / "normal_equations.npz")
    for path in args.add:
        fm.add(NormalEquations.load(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SparseSamplingWarning)
        res = fm.solve(method=args.method, ridge=args.ridge, smooth=args.smooth,
                       min_samples=args.min_samples)
    msgs = [str(w.message) for w in caught if issubclass(w.category, SparseSamplingWarning)]
    for m in msgs:
        print(f"cgkit fm: warning: {m}")
    res.plot(out / "fm.png")
    summary = res.summary()
    final = res.potential
    if args.bonded == "ibi":
        from ..forcematch.ibi import IterativeBoltzmannInversion
        from ..forcematch.tabulated import write_table_files
        P, B = ref
        pair_cut = min(args.pair_cutoff, 0.5 * min(np.linalg.norm(B[-1], axis=1)))
        ibi = IterativeBoltzmannInversion(
            type_names, species, top, masses, P, B, P[-1], B[-1], temperature=args.temperature,
            pair_cutoff=pair_cut, kinds=("bond", "angle"), alpha=1.0, md_steps=args.ibi_steps,
            equilibration=args.ibi_equilibration, timestep=args.timestep,
            start_tables=[t for t in res.tables if t.kind != "bond" and t.kind != "angle"] + fixed,
            progress=True)
        for _ in range(args.ibi_iterations):
            rec = ibi.step()
            print(f"cgkit fm: IBI iteration {rec['iteration']}: JS "
                  + ", ".join(f"{k}: {v['js']:.3g}" for k, v in rec["scores"].items()))
        final = ibi.potential
        write_table_files(final.tables, out / "tables")
        summary["ibi"] = ibi.summary()
    else:
        res.write_tables(out / "tables")
    summary["bonded"] = {"method": args.bonded, "temperature_K": args.temperature if fixed else None,
                         "fixed_tables": [t.label for t in fixed or []],
                         "reference_frames": None if ref is None else int(len(ref[0]))}
    final.save(out / "cg_potential.pt", metadata={"masses": masses.tolist(),
                                                  "bead_types": [type_names[s] for s in species]})
    exports = {}
    for eng in filter(None, (e.strip().lower() for e in args.export.split(","))):
        if eng == "lammps":
            from ..export import write_lammps
            exports["lammps"] = {k: str(v) for k, v in write_lammps(final, out / "lammps").items()}
        elif eng == "gromacs":
            from ..export import GROMACS_NOTE, write_gromacs
            write_gromacs(final, out / "gromacs")
            exports["gromacs"] = {"folder": str(out / "gromacs"), "note": GROMACS_NOTE}
        else:
            raise InputError(f"--export: unknown engine '{eng}' (lammps, gromacs)")
    if args.model == "nn":
        from ..forcematch.neural import NeuralCGTraining
        kept = (list(buf) + kept)[:args.nn_frames]
        boxes = [k[2] for k in kept]
        nnt = NeuralCGTraining(final, np.array([k[0] for k in kept]), np.array([k[1] for k in kept]),
                               None if boxes[0] is None else np.array(boxes), species, masses, out / "nn",
                               r_cut=args.nn_rcut, model={"channels": args.nn_channels, "l_max": args.nn_lmax},
                               train={"max_epochs": args.nn_epochs}).run()
        summary["neural"] = {"force_residual_prior": nnt.results["prior"],
                             "force_residual_prior_plus_nn": nnt.results["prior_plus_nn"],
                             "potential": str(out / "nn" / "cg_nn_potential.pt"), "frames": len(kept)}
        for name, r in nnt.results["prior_plus_nn"].items():
            print(f"bead type {name}: spline + network RMS force residual {r['rms_residual_eV_per_A']:.4g} eV/Å")
    summary["grids"] = {lab: list(v) if isinstance(v, tuple) else v for lab, v in grids.items()}
    summary["warnings"] = msgs
    summary["exports"] = exports
    summary["timing"] = {"frames": n, "accumulate_seconds": t_acc,
                         "frames_per_second": n / t_acc if t_acc > 0 else None,
                         "total_seconds": time.perf_counter() - t_start}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for name, r in res.residual.items():
        print(f"bead type {name}: RMS force residual {r['rms_residual_eV_per_A']:.4g} eV/Å "
              f"(RMS mapped force {r['rms_force_eV_per_A']:.4g} eV/Å)")
    print(f"{n} frames, {n / max(t_acc, 1e-9):.1f} frames/s; wrote {out}/")
    return 0
