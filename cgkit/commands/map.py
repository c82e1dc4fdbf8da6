"""``cgkit map``: apply a coarse-graining map to an atomistic trajectory; ``cgkit map check``
validates a definition against a topology; ``cgkit map convert`` turns VOTCA XML / Martini
``.map`` files into cgkit YAML."""
from __future__ import annotations

import json
from pathlib import Path

_EPILOG = """examples:
  cgkit map --mapping mappings/hexane_3bead.yaml --topology topol.tpr --trajectory traj.trr --out cg/
  cgkit map check mappings/hexane_3bead.yaml --topology conf.gro
  cgkit map convert hexane.xml hexane.yaml

Units: positions Å, forces eV/Å inside cgkit; the TRR output uses GROMACS units (nm, kJ/mol/nm),
which MDAnalysis converts back to Å and kJ/(mol·Å) when reading."""


def register(subparsers):
    p = subparsers.add_parser("map", help="map atomistic trajectories (positions, forces) to CG beads",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--mapping", help="mapping definition: cgkit YAML, VOTCA XML or Martini .map")
    p.add_argument("--topology", help="atomistic topology/structure (tpr, gro, pdb, psf, LAMMPS "
                                      "data, extxyz)")
    p.add_argument("--trajectory", help="atomistic trajectory with forces (trr, LAMMPS dump, "
                                        "extxyz); default: the topology's coordinates")
    p.add_argument("--start", type=int, default=None, help="first frame index (default 0)")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    p.add_argument("--step", type=int, default=None, help="use every STEP-th frame")
    p.add_argument("--out", default="cg_out", help="output folder (default cg_out)")
    p.add_argument("--format", choices=("trr", "extxyz"), default="trr",
                   help="CG trajectory format (default trr)")
    p.add_argument("--force-map", choices=("basic", "weights", "optimized"), default=None,
                   help="override the definition's force_map; 'optimized' first estimates the "
                        "map from --optimize-frames frames")
    p.add_argument("--optimize-frames", type=int, default=None,
                   help="frames used to estimate the optimized force map (default all)")
    p.add_argument("--lammps-units", choices=("real", "metal"), default="real",
                   help="units style of a LAMMPS dump (real: kcal/mol/Å, metal: eV/Å)")
    p.add_argument("--unmapped", choices=("error", "warn", "ignore"), default=None,
                   help="what to do with atoms in no bead (default: the definition's option)")
    p.add_argument("--noise", action="store_true",
                   help="also estimate the mapped-force noise (basic vs optimized force map)")
    p.set_defaults(func=_run)
    sub = p.add_subparsers(dest="map_action", metavar="ACTION")
    c = sub.add_parser("check", help="validate a mapping against a topology; list unmapped and "
                                     "doubly-mapped atoms")
    c.add_argument("definition", help="mapping definition (YAML, VOTCA XML, Martini .map)")
    c.add_argument("--topology", required=True, help="atomistic topology/structure file")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=_check)
    v = sub.add_parser("convert", help="write a VOTCA XML / Martini .map definition as cgkit YAML")
    v.add_argument("source", help="VOTCA mapping XML or Martini/backward .map file")
    v.add_argument("output", help="output YAML file")
    v.set_defaults(func=_convert)


def _check(args) -> int:
    from ..mapping import Mapping, load_definition
    defn = load_definition(args.definition)
    m = Mapping.compile(defn, args.topology, unmapped="ignore")
    rep = m.check()
    d = rep.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(f"{args.definition}: {rep.n_atoms} atoms -> {rep.n_beads} beads {rep.beads_per_type}")
        print(f"  force map: {m.force_map}, max |M·Dᵀ - I| = {rep.consistency_error:.2e}")
        print(f"  unmapped atoms: {len(rep.unmapped)}"
              + (f" (first: {', '.join(map(str, rep.unmapped[:10]))})" if len(rep.unmapped) else ""))
        print(f"  atoms in several beads: {len(rep.shared)}"
              + (f" (first: {', '.join(map(str, rep.shared[:10]))})" if len(rep.shared) else ""))
        if rep.unmatched_residues:
            names = sorted({n for _, n in rep.unmatched_residues})
            print(f"  residues matched by no template: {len(rep.unmatched_residues)} ({', '.join(names[:10])})")
    bad = (len(rep.unmapped) and defn.unmapped_atoms == "error") or \
        (len(rep.shared) and not defn.shared_atoms)
    return 1 if bad else 0


def _convert(args) -> int:
    from ..errors import InputError
    from ..mapping import dump_yaml, load_definition
    src = Path(args.source)
    if src.suffix.lower() not in (".xml", ".map"):
        raise InputError("convert reads VOTCA .xml or Martini .map files")
    defn = load_definition(src)
    out = dump_yaml(defn, args.output, header=f"converted by cgkit map convert from {src.name}")
    print(f"wrote {out}")
    return 0


def _run(args) -> int:
    from ..errors import InputError
    if not args.mapping or not args.topology:
        raise InputError("give --mapping and --topology (see cgkit map --help)")
    import dataclasses

    import numpy as np

    from ..mapping import Mapping, load_definition
    from ..mapping.forcemap import MappedForceNoise
    from ..progress import progress_bar
    from ..trajectory import CGTrajectoryWriter, open_trajectory

    defn = load_definition(args.mapping)
    if args.force_map:
        defn = dataclasses.replace(defn, force_map=args.force_map)
    kw = dict(start=args.start, stop=args.stop, step=args.step, lammps_units=args.lammps_units)
    traj = open_trajectory(args.topology, args.trajectory, **kw)
    mapping = Mapping.compile(defn, traj.topology, unmapped=args.unmapped)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    basic = mapping
    optimized = None
    if defn.force_map == "optimized" or args.noise:
        frames = (fr for k, fr in enumerate(traj) if args.optimize_frames is None or k < args.optimize_frames)
        optimized = mapping.optimize_force_map(frames)
        if defn.force_map == "optimized":
            mapping = optimized
    ext = "trr" if args.format == "trr" else "extxyz"
    traj_name, top_name = f"cg.{ext}", "cg.psf"
    n = 0
    sum_f2 = np.zeros(len(mapping.type_names))
    with CGTrajectoryWriter(out / traj_name, mapping, psf_path=out / top_name) as w:
        for cg in progress_bar(mapping.iter_map(traj), desc="mapping", unit="frame",
                               total=getattr(traj, "n_frames", None)):
            w.write(cg)
            if cg.forces is not None:
                sum_f2 += np.bincount(mapping.species, weights=(cg.forces ** 2).sum(1),
                                      minlength=len(mapping.type_names))
            n += 1
    if n == 0:
        raise InputError("no frames selected; check --start/--stop/--step")
    bpt = mapping.beads_per_type()
    summary = {
        "topology": top_name, "trajectory": traj_name, "format": args.format,
        "mapping": str(args.mapping), "atomistic_topology": str(args.topology),
        "atomistic_trajectory": str(args.trajectory) if args.trajectory else None,
        "frames": n, "n_atoms": mapping.n_atoms, "n_beads": mapping.n_beads,
        "beads_per_type": bpt, "force_map": mapping.force_map,
        "force_consistency_error": mapping.consistency_error(),
        "units": {"positions": "Å (file: nm for trr)", "forces": "eV/Å (file: kJ/mol/nm for trr)",
                  "masses": "amu"},
        "mapped_force_second_moment": {t: float(sum_f2[k] / (bpt[t] * n))
                                       for k, t in enumerate(mapping.type_names)},
        "mapped_force_second_moment_units": "(eV/Å)^2",
    }
    if optimized is not None:
        frames = (fr for k, fr in enumerate(traj) if args.optimize_frames is None or k < args.optimize_frames)
        rep = MappedForceNoise({"basic": basic, "optimized": optimized}, frames,
                               reference="optimized").run()
        rep.to_json(out / "force_noise.json")
        summary["force_noise"] = {"excess_noise_vs_optimized": rep.results["excess_noise"],
                                  "second_moment": rep.results["second_moment"],
                                  "units": "(eV/Å)^2", "frames": rep.results["frames"],
                                  "note": "noise(D) >= excess_noise(D); see cgkit.mapping.forcemap"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {n} frames of {mapping.n_beads} beads to {out / traj_name} ({out / top_name}, "
          f"{out / 'summary.json'})")
    return 0
