"""``cgkit map``: apply a coarse-graining map to an atomistic trajectory; ``cgkit map check``
validates a definition against a topology; ``cgkit map convert`` turns VOTCA XML / Martini
``.map`` files into cgkit YAML."""
from __future__ import annotations

import sys
from pathlib import Path

_EPILOG = """examples:
  cgkit map --mapping mappings/hexane_3bead.yaml --topology topol.tpr --trajectory traj.trr --out cg/
  cgkit map check --mapping mappings/hexane_3bead.yaml --topology conf.gro
  cgkit map convert hexane.xml hexane.yaml

Output (one folder, written whole or not at all): cg.trr (or cg.extxyz), cg.psf, summary.json
(and force_noise.json with --noise). A non-empty --out is refused unless --overwrite, which
replaces the files of the earlier cgkit run there (e.g. a stale cg.trr after --format extxyz).

Input checks: NaN/inf positions, forces or box in a frame, or a topology whose atom count
differs from the trajectory's, stop the run with an error naming the file, the 0-based frame and
the atoms. A trajectory that ends in an incomplete frame (a killed run) is mapped up to its last
complete frame, with a WARNING naming that frame (recorded in summary.json). A trajectory
without forces gives a positions-only CG trajectory: summary.json has "forces": null and a
warning (force matching needs forces: GROMACS nstfout > 0, LAMMPS dump fx fy fz).

Units: positions Å, forces eV/Å inside cgkit; the TRR output uses GROMACS units (nm, kJ/mol/nm),
which MDAnalysis converts back to Å and kJ/(mol·Å) when reading."""


def register(subparsers):
    from ..options import add_output_options
    p = subparsers.add_parser("map", help="map atomistic trajectories (positions, forces) to CG beads",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--mapping", help="mapping definition: cgkit YAML, VOTCA XML or Martini .map")
    p.add_argument("--topology", help="atomistic topology/structure (tpr, gro, pdb, psf, LAMMPS "
                                      "data, extxyz)")
    p.add_argument("--trajectory", help="atomistic trajectory, with forces for force matching (trr, "
                                        "LAMMPS dump, extxyz; without forces the CG trajectory holds "
                                        "positions only); default: the topology's coordinates")
    p.add_argument("--start", type=int, default=None, help="first frame index (0-based; default 0)")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame index (default: the end)")
    p.add_argument("--step", type=int, default=None, help="use every STEP-th frame (default 1)")
    add_output_options(p, default="cg_out")
    p.add_argument("--format", choices=("trr", "extxyz"), default="trr",
                   help="CG trajectory format (default trr)")
    p.add_argument("--force-map", choices=("basic", "weights", "optimized"), default=None,
                   help="override the definition's force_map; 'optimized' first estimates the "
                        "map from --optimize-frames frames (default: the definition's force_map)")
    p.add_argument("--constraints", choices=("auto", "topology", "hbonds", "all-bonds", "none"),
                   default=None,
                   help="constraints the optimized force map respects (equal weights on atoms joined "
                        "by constraints, whose forces the trajectory lacks): auto = those the "
                        "topology records (GROMACS tpr constraints and settles; none for other "
                        "formats), topology = as auto but an error if unrecorded, hbonds / all-bonds "
                        "= the topology's bonds to H / all bonds, none = ignore constraints (biased "
                        "for constrained runs) (default: the definition's force_map constraints, "
                        "else auto)")
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
                                     "doubly-mapped atoms",
                       description="Validate a mapping definition against a topology: beads per "
                                   "type, force-map consistency, unmapped and doubly-mapped atoms, "
                                   "residues no template matches. Exit 1 with an error line when "
                                   "the definition would be refused by `cgkit map`.")
    c.add_argument("definition", nargs="?", default=None,
                   help="mapping definition (YAML, VOTCA XML, Martini .map); same as --mapping")
    c.add_argument("--mapping", dest="mapping_opt", default=None, metavar="MAPPING",
                   help="mapping definition (YAML, VOTCA XML, Martini .map), as in `cgkit map`")
    c.add_argument("--topology", required=True, help="atomistic topology/structure file")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=_check)
    v = sub.add_parser("convert", help="write a VOTCA XML / Martini .map definition as cgkit YAML")
    v.add_argument("source", help="VOTCA mapping XML or Martini/backward .map file")
    v.add_argument("output", help="output YAML file")
    v.set_defaults(func=_convert)


def _warn(text: str) -> None:
    print(f"cgkit map: warning: {text}", file=sys.stderr, flush=True)


def _check(args) -> int:
    from ..errors import InputError, MappingError
    from ..jsonutil import dumps
    from ..mapping import Mapping, load_definition
    if args.definition and args.mapping_opt and args.definition != args.mapping_opt:
        raise InputError(f"two mapping definitions given ({args.definition} and --mapping "
                         f"{args.mapping_opt}); give one")
    path = args.mapping_opt or args.definition
    if not path:
        raise InputError("give the mapping definition: cgkit map check --mapping FILE --topology FILE")
    defn = load_definition(path)
    m = Mapping.compile(defn, args.topology, unmapped="ignore")
    rep = m.check()
    if args.json:
        print(dumps(rep.to_dict()))
    else:
        print(f"{path}: {rep.n_atoms} atoms -> {rep.n_beads} beads {rep.beads_per_type}")
        print(f"  force map: {m.force_map}, max |M·Dᵀ - I| = {rep.consistency_error:.2e}")
        print(f"  unmapped atoms: {len(rep.unmapped)}"
              + (f" (first: {', '.join(map(str, rep.unmapped[:10]))})" if len(rep.unmapped) else ""))
        print(f"  atoms in several beads: {len(rep.shared)}"
              + (f" (first: {', '.join(map(str, rep.shared[:10]))})" if len(rep.shared) else ""))
        if rep.unmatched_residues:
            names = sorted({n for _, n in rep.unmatched_residues})
            print(f"  residues matched by no template: {len(rep.unmatched_residues)} ({', '.join(names[:10])})")
    sys.stdout.flush()
    problems = []
    if len(rep.unmapped) and defn.unmapped_atoms == "error":
        first = ", ".join(map(str, rep.unmapped[:10])) + (", ..." if len(rep.unmapped) > 10 else "")
        problems.append(f"{len(rep.unmapped)} of {rep.n_atoms} atoms of {args.topology} are in no bead "
                        f"(0-based atoms {first}): add them to beads, or set 'unmapped_atoms: warn' "
                        "(or ignore) in the definition if leaving them out is intended")
    if len(rep.shared) and not defn.shared_atoms:
        first = ", ".join(map(str, rep.shared[:10])) + (", ..." if len(rep.shared) > 10 else "")
        problems.append(f"{len(rep.shared)} atoms are in more than one bead (0-based atoms {first}): "
                        "give each atom one bead, or set 'shared_atoms: true' in the definition")
    if problems:
        raise MappingError("; ".join(problems), file=str(path))
    if len(rep.unmapped):
        _warn(f"{len(rep.unmapped)} atoms are in no bead (allowed by unmapped_atoms: "
              f"{defn.unmapped_atoms})")
    return 0


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


def _open(args, notes: list):
    """The atomistic trajectory; truncation warnings are printed and kept in ``notes``."""
    from ..trajectory import open_trajectory, recording_truncation
    kw = dict(start=args.start, stop=args.stop, step=args.step, lammps_units=args.lammps_units)
    with recording_truncation(notes):
        traj = open_trajectory(args.topology, args.trajectory, **kw)
    return traj


def _run(args) -> int:
    from ..errors import InputError
    if not args.mapping or not args.topology:
        raise InputError("give --mapping and --topology (see cgkit map --help)")
    import dataclasses

    import numpy as np

    from ..jsonutil import write_json
    from ..mapping import Mapping, load_definition
    from ..mapping.forcemap import MappedForceNoise
    from ..outputs import OutputFolder
    from ..progress import progress_bar
    from ..trajectory import CGTrajectoryWriter

    defn = load_definition(args.mapping)
    if args.force_map:
        defn = dataclasses.replace(defn, force_map=args.force_map)
    notes: list[str] = []
    traj = _open(args, notes)
    if traj.n_frames == 0:
        raise InputError(f"no frames selected from {traj.source} ({traj.n_frames} frames after "
                         "--start/--stop/--step); check them against the trajectory length")
    mapping = Mapping.compile(defn, traj.topology, unmapped=args.unmapped)
    if defn.force_map == "optimized" or args.noise:
        first = next(iter(traj))
        if first.forces is None:
            what = "the optimized force map" if defn.force_map == "optimized" else "--noise"
            raise InputError(f"{what} needs forces, but frame {first.index} of {traj.source} has none "
                             "(GROMACS: nstfout > 0; LAMMPS dump: fx fy fz); map positions only "
                             "with --force-map basic and without --noise")
    basic = mapping
    optimized = None

    class Limited:
        """The first --optimize-frames frames, with a length for progress ETAs."""

        def __len__(self):
            return traj.n_frames if args.optimize_frames is None else min(traj.n_frames, args.optimize_frames)

        def __iter__(self):
            for k, fr in enumerate(traj):
                if k >= len(self):
                    break
                yield fr
    limited = Limited
    ext = "trr" if args.format == "trr" else "extxyz"
    traj_name, top_name = f"cg.{ext}", "cg.psf"
    with OutputFolder(args.out, overwrite=args.overwrite, command="map") as out:
        if defn.force_map == "optimized" or args.noise:
            from ..mapping.forcemap import resolve_constraints
            cons = args.constraints or defn.force_map_options.get("constraints", "auto")
            pairs, cons_label = resolve_constraints(mapping, cons)
            if cons == "auto" and pairs is None:
                _warn("the topology does not record constraints (only a GROMACS tpr does): the "
                      "optimized force map assumes none; if the atomistic run constrained bonds, "
                      "give --constraints hbonds or all-bonds (or the tpr as --topology)")
            optimized = mapping.optimize_force_map(limited(), progress=True,
                                                   constraints="none" if pairs is None else pairs)
            if defn.force_map == "optimized":
                mapping = optimized
        n = n_forces = 0
        sum_f2 = np.zeros(len(mapping.type_names))
        with CGTrajectoryWriter(out / traj_name, mapping, psf_path=out / top_name) as w:
            for cg in progress_bar(mapping.iter_map(traj), desc="mapping", unit="frame",
                                   total=traj.n_frames):
                w.write(cg)
                if cg.forces is not None:
                    sum_f2 += np.bincount(mapping.species, weights=(cg.forces ** 2).sum(1),
                                          minlength=len(mapping.type_names))
                    n_forces += 1
                n += 1
        bpt = mapping.beads_per_type()
        if n_forces == 0:
            msg = (f"{traj.source} holds no forces: {traj_name} has bead positions only "
                   "(\"forces\": null in summary.json); force matching needs forces (GROMACS "
                   "nstfout > 0, LAMMPS dump fx fy fz, extxyz forces)")
            notes.append(msg)
            _warn(msg)
        elif n_forces < n:
            msg = (f"only {n_forces} of {n} frames of {traj.source} hold forces; the mapped-force "
                   "second moment averages those frames")
            notes.append(msg)
            _warn(msg)
        second = None if n_forces == 0 else {t: float(sum_f2[k] / (bpt[t] * n_forces))
                                             for k, t in enumerate(mapping.type_names)}
        summary = {
            "topology": top_name, "trajectory": traj_name, "format": args.format,
            "mapping": str(args.mapping), "atomistic_topology": str(args.topology),
            "atomistic_trajectory": str(args.trajectory) if args.trajectory else None,
            "frames": n, "n_atoms": mapping.n_atoms, "n_beads": mapping.n_beads,
            "beads_per_type": bpt, "force_map": mapping.force_map,
            "force_consistency_error": mapping.consistency_error(),
            "forces": None if n_forces == 0 else {"frames_with_forces": n_forces, "units": "eV/Å (file: "
                                                  "kJ/mol/nm for trr)"},
            "units": {"positions": "Å (file: nm for trr)", "forces": "eV/Å (file: kJ/mol/nm for trr)",
                      "masses": "amu"},
            "mapped_force_second_moment": second,
            "mapped_force_second_moment_units": "(eV/Å)^2",
            "warnings": notes,
        }
        if optimized is not None:
            summary["force_map_constraints"] = cons_label
            rep = MappedForceNoise({"basic": basic, "optimized": optimized}, limited(),
                                   reference="optimized", progress=True).run()
            rep.to_json(out / "force_noise.json")
            r = rep.results
            summary["force_noise"] = {"excess_noise_vs_optimized": r["excess_noise"],
                                      "second_moment": r["second_moment"],
                                      "units": "(eV/Å)^2", "frames": r["frames"],
                                      "note": "noise(D) >= excess_noise(D); see cgkit.mapping.forcemap"}
        write_json(out / "summary.json", summary)
    outp = Path(args.out)
    print(f"wrote {n} frames of {mapping.n_beads} beads to {outp / traj_name} ({outp / top_name}, "
          f"{outp / 'summary.json'})")
    return 0
