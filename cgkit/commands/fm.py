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
(pairs kept). Both run :func:`cgkit.forcematch.hybrid_fit`, the library's one hybrid recipe, with
its defaults (the same as ``cgkit ibi``'s). The residual in ``summary.json`` is that of the
force-matching step.

The output folder is written whole or not at all: a non-empty ``--out`` is refused unless
``--overwrite`` (which replaces the files of the earlier cgkit run, e.g. no stale pair tables
after ``--no-pairs``); a failed or killed run leaves no partial ``normal_equations.npz``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..options import (CG_MD_DEFAULTS, add_cg_md_options, add_grid_option, add_output_options,
                       add_seed_option)

_EPILOG = """examples:
  cgkit fm --mapping mappings/hexane_3bead.yaml --topology topol.tpr --trajectory traj.trr --out fm/
  cgkit fm --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --pair-cutoff 12 --out fm/
  cgkit fm --cg-trajectory part1.trr --cg-topology cg.psf --stop 5000 --out p1   # chunk 1
  cgkit fm --cg-trajectory part2.trr --cg-topology cg.psf --grids-from p1 --add p1/normal_equations.npz --out all
  cgkit fm --cg-trajectory cg/cg.trr --cg-topology cg/cg.psf --bonded ibi --temperature 300 --out hybrid/
  cgkit fm --mapping hexane.xml --topology topol.tpr --trajectory traj.trr --votca-settings fmatch.xml --out fm/

Grids: pairs [auto closest approach, --pair-cutoff] Å; bonds/angles from the observed range
(first --scan-frames frames); dihedrals [-180, 180) deg. Override with --grid, e.g.
--grid "angle A-B-A=60:180:4" --grid "pair A-B=3.5:12:0.1" (min:max:spacing, Å or deg).
Units: Å, eV, eV/Å; angles in degrees."""


class _StoreGiven(argparse.Action):
    """Store the value and note that the user gave it (``<dest>_given``): an option whose default
    suits some uses but must be stated for others (``--temperature`` with ``--pressure-target``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_given", True)


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
                          "(2: 1-2 and 1-3); with --mapping the definition's exclusions are used")
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
    hy = p.add_argument_group("hybrid schemes (--bonded boltzmann|ibi; the IBI options are those of `cgkit ibi`)")
    hy.add_argument("--temperature", type=float, default=300.0, action=_StoreGiven,
                    help="temperature of the reference trajectory, K (default 300 for the hybrid schemes; "
                         "required with --pressure-target, whose kinetic term N k_B T / V needs it)")
    hy.add_argument("--bonded-frames", type=int, default=2000,
                    help="at most this many frames (the first ones) are histogrammed")
    hy.add_argument("--bins", type=int, default=CG_MD_DEFAULTS["bins"],
                    help="histogram bins of the Boltzmann inversion and of IBI")
    hy.add_argument("--ibi-iterations", type=int, default=4, help="IBI iterations (--bonded ibi)")
    hy.add_argument("--alpha", type=float, default=CG_MD_DEFAULTS["alpha"], help="IBI update damping α in (0, 1]")
    add_cg_md_options(hy, aliases={"--ibi-steps": "md_steps", "--ibi-equilibration": "equilibration"})
    add_seed_option(hy)
    p.add_argument("--model", choices=("spline", "nn"), default="spline",
                   help="spline MS-CG (default); nn = a many-body network on the bead graph trained on "
                        "the forces the spline fit (the prior) leaves unexplained")
    nn = p.add_argument_group("neural CG potential (--model nn)")
    nn.add_argument("--nn-kind", choices=("descriptor", "ennp"), default="descriptor",
                    help="descriptor = invariant many-body bead model (radial densities and first-shell "
                         "angular invariants, MLP; minutes), ennp = equivariant network (slow on "
                         "thousands of beads)")
    nn.add_argument("--nn-frames", type=int, default=200,
                    help="frames kept for network training (the descriptor model trains on 60 of them, "
                         "evenly spaced)")
    nn.add_argument("--nn-rcut", type=float, default=None,
                    help="network cutoff, Å (default 5 for descriptor, 6 for ennp)")
    nn.add_argument("--nn-channels", type=int, default=16, help="ennp: features per irrep (default 16)")
    nn.add_argument("--nn-lmax", type=int, default=None,
                    help="highest angular momentum (default 6 for descriptor, 1 for ennp)")
    nn.add_argument("--nn-prior", choices=("joint", "fixed"), default=None,
                    help="joint = fit the spline prior and the descriptor network together (backfitting: "
                         "the spline refitted by least squares on the forces the network leaves, the "
                         "network continued on the forces the spline leaves, --nn-backfit-rounds times); "
                         "fixed = train the network on the pair-only spline fit, kept as it is "
                         "(default: joint with --nn-kind descriptor, --bonded fm and no --add; else fixed)")
    nn.add_argument("--nn-backfit-rounds", type=int, default=2,
                    help="rounds of the joint fit (--nn-prior joint)")
    nn.add_argument("--nn-epochs", type=int, default=None,
                    help="maximum epochs, early stopping on a 20%% split (default 30 for descriptor, 50 "
                         "for ennp)")
    g = p.add_argument_group("grids")
    g.add_argument("--pair-cutoff", type=float, default=10.0, help="non-bonded cutoff, Å (default 10)")
    g.add_argument("--pair-spacing", type=float, default=0.1, help="pair spline knot spacing, Å (default 0.1)")
    g.add_argument("--bond-spacing", type=float, default=0.02, help="bond knot spacing, Å (default 0.02)")
    g.add_argument("--angle-spacing", type=float, default=4.0, help="angle knot spacing, deg (default 4)")
    g.add_argument("--dihedral-spacing", type=float, default=20.0, help="dihedral knot spacing, deg (default 20)")
    g.add_argument("--dihedral-damping", choices=("none", "sin3"), default="none",
                   help="sin3: fit every dihedral as U(phi)*sin^3(theta1)*sin^3(theta2) (restricted bending, "
                        "Bulacu et al. 2013: forces stay bounded when a bead triplet becomes collinear); "
                        "cgkit MD only (LAMMPS/GROMACS export is refused)")
    g.add_argument("--no-pairs", action="store_true", help="fit bonded interactions only")
    add_grid_option(g)
    g.add_argument("--scan-frames", type=int, default=20,
                   help="frames scanned to choose the grid ranges automatically (default 20)")
    g.add_argument("--grids-from", help="reuse the grids of a previous run's folder (for --add)")
    g.add_argument("--threebody", action="append", default=[], metavar="SPEC",
                   help='three-body term "C-N1-N2:a=Å:gamma=Å[:basis=spline|cos2][:spacing=Δcosθ]" '
                        "(E = Σ f(cos θ) exp(γ/(r_ij-a)) exp(γ/(r_ik-a)), f fitted; repeatable)")
    g.add_argument("--votca-settings",
                   help="VOTCA fmatch.xml / settings.xml: fit exactly its interactions on its grids (nm, rad "
                        "converted to Å, deg) with its frames_per_block as --block-size")
    g.add_argument("--votca-mapping",
                   help="VOTCA mapping XML (the --cg file of csg_fmatch) naming the bonded interactions of "
                        "--votca-settings (default: --mapping when it is a VOTCA XML)")
    g.add_argument("--votca-conventions", action="store_true",
                   help="with --votca-settings: solve as csg_fmatch does (natural splines, mean of block "
                        "solutions with VOTCA's block errors, samples outside a grid extrapolated, no "
                        "regularisation, untrimmed tables)")
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
    s.add_argument("--pressure-target", type=float, default=None, metavar="BAR",
                   help="constrain the mean virial pressure N kT/V + W/(3V) of the fitted model on the frames "
                        "to BAR exactly (Das & Andersen 2010; docs/pressure_matching.md); uses --temperature "
                        "(K) for the kinetic term; spline pairs/bonds/angles/dihedrals only, periodic frames")
    p.add_argument("--export", default="",
                   help="comma-separated: lammps, gromacs — also write engine tables into OUT/lammps, OUT/gromacs")
    el = p.add_argument_group("charged beads (docs/charged_cg.md)")
    el.add_argument("--coulomb", choices=("none", "auto", "ewald", "pme", "direct"), default="none",
                    help="Coulomb between the bead charges of the mapping / PSF as a fixed term: subtracted from "
                         "the mapped forces before the fit and part of cg_potential.pt (tables + Coulomb); "
                         "auto = Ewald/PME for periodic boxes, direct sum for open systems; pairs excluded "
                         "from the tables (the CG topology's exclusions) get no Coulomb either")
    el.add_argument("--coulomb-accuracy", type=float, default=1e-6,
                    help="relative accuracy of the Ewald/PME forces (LAMMPS kspace sense; also written as the "
                         "pppm accuracy of --export lammps)")
    el.add_argument("--coulomb-background", action="store_true",
                    help="allow a non-neutral periodic CG system (uniform neutralising background); without it "
                         "a net bead charge is refused")
    add_output_options(p, "fm_out")
    p.set_defaults(func=_run)


# ---------------------------------------------------------------------------- input
def _cg_source(args):
    """(type_names, species, masses, topology, frame iterator of (pos, forces, cell, index), file name);
    ``index``: the frame's 0-based index in the trajectory file."""
    import itertools

    import numpy as np
    from ..errors import InputError
    first, stride = (args.start or 0), (args.step or 1)
    if args.mapping:
        if not args.topology:
            raise InputError("--mapping needs --topology (the atomistic topology)")
        if not args.trajectory:
            raise InputError("--mapping needs --trajectory (the atomistic trajectory with forces)")
        from ..mapping import Mapping
        from ..trajectory import open_trajectory
        m = Mapping.from_yaml(args.mapping, args.topology)
        args.bead_charges = np.asarray(m.bead_charges, dtype=float)
        traj = open_trajectory(args.topology, args.trajectory, start=args.start, stop=args.stop,
                               step=args.step, lammps_units=args.lammps_units)
        names = [str(t) for t in m.bead_types]
        source = Path(args.trajectory).name

        def frames():
            for k, fr in enumerate(traj):
                index = first + k * stride
                if fr.forces is None:
                    raise InputError(f"frame {index} of {source} has no forces; write forces in the MD run "
                                     "(GROMACS nstfout, LAMMPS dump fx fy fz)")
                cg = m.map_frame(fr)
                yield cg.positions, cg.forces, cg.cell if np.any(cg.cell) else None, index
        masses = np.asarray(m.bead_masses, dtype=float)
        top = m.topology
    elif args.cg_trajectory:
        if not args.cg_topology:
            raise InputError("--cg-trajectory needs --cg-topology (the PSF written by `cgkit map`)")
        from ..trajectory import read_cg_atoms, read_cg_system
        type_names, species, masses, top = read_cg_system(args.cg_topology, exclude=args.exclude)
        args.bead_charges = _psf_charges(args.cg_topology)
        names = [type_names[k] for k in species]
        source = Path(args.cg_trajectory).name

        def frames():
            it = read_cg_atoms(args.cg_topology, args.cg_trajectory)
            for k, at in enumerate(itertools.islice(it, args.start, args.stop, args.step)):
                index = first + k * stride
                f = None
                if at.calc is not None and "forces" in at.calc.results:
                    f = at.calc.results["forces"]
                elif "forces" in at.arrays:
                    f = at.arrays["forces"]
                if f is None:
                    raise InputError(f"{args.cg_trajectory} has no forces (frame {index}); map a trajectory "
                                     "that holds forces (GROMACS trr with nstfout > 0)")
                yield at.positions, f, at.cell.array if at.pbc.any() else None, index
    else:
        raise InputError("give --mapping/--topology/--trajectory or --cg-trajectory/--cg-topology")
    type_names = sorted(set(names))
    species = np.array([type_names.index(t) for t in names])
    return type_names, species, masses, top, frames(), source


def _psf_charges(psf):
    """(n,) e: the bead charges of a CG PSF (None when it has none), rounded to the 6 decimals
    of the PSF format (MDAnalysis reads them as float32)."""
    import warnings

    import numpy as np
    import MDAnalysis as mda
    from ..errors import InputError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = np.asarray(mda.Universe(str(psf)).atoms.charges, dtype=float)
    except Exception as exc:  # MDAnalysis raises many types; NoDataError: no charges
        if type(exc).__name__ == "NoDataError":
            return None
        raise InputError(f"cannot read the bead charges of {psf}: {exc}") from None
    return np.round(q, 6)


def _coulomb_term(args, top, type_names):
    """The fixed bead Coulomb term of ``--coulomb`` (None for none), checked before any frame
    is read: charges present, neutral (or --coulomb-background)."""
    import numpy as np
    from ..errors import InputError
    q = getattr(args, "bead_charges", None)
    src = args.mapping or args.cg_topology
    if args.coulomb == "none":
        if q is not None and np.any(q != 0):
            print(f"cgkit fm: warning: the beads of {src} carry charges (net {q.sum():.4g} e, largest |q| "
                  f"{np.abs(q).max():.4g} e) but --coulomb is none: the pair tables absorb what they can of the "
                  "Coulomb forces and miss their long range; use --coulomb auto")
        return None
    if q is None or not np.any(q != 0):
        raise InputError(f"--coulomb {args.coulomb}: every bead charge of {src} is zero (the topology has no "
                         "charges, or the mapping sets none); give charges (a topology with partial charges, "
                         "or charge:/atom_charges: in the mapping YAML) or drop --coulomb")
    if args.model == "nn":
        raise InputError("--coulomb works with --model spline (the neural CG prior holds tables only)")
    if args.bonded == "ibi":
        raise InputError("--coulomb with --bonded ibi is not supported (IBI's CG MD runs tables only); use "
                         "--bonded boltzmann or fm")
    from ..forcematch.coulomb import BeadCoulombPotential
    coul = BeadCoulombPotential.from_topology(q, top, method=args.coulomb, accuracy=args.coulomb_accuracy,
                                              background=args.coulomb_background, type_names=type_names)
    if args.coulomb != "direct":
        coul.check_neutral()
    return coul


def _parse_threebody(spec: str):
    """``"C-N1-N2:a=4.5:gamma=1.2[:basis=cos2][:spacing=0.1]"`` → ThreeBody."""
    from ..errors import InputError
    from ..forcematch.threebody import ThreeBody
    head, *rest = spec.split(":")
    types = head.strip().split("-")
    kw = {}
    for item in rest:
        k, sep, v = item.partition("=")
        k = k.strip()
        if not sep or k not in ("a", "gamma", "basis", "spacing"):
            raise InputError(f'--threebody "{spec}": expected KEY=VALUE with KEY a, gamma, basis or spacing, got "{item}"')
        if k == "basis":
            kw[k] = v.strip()
        else:
            try:
                kw[k] = float(v)
            except ValueError:
                raise InputError(f'--threebody "{spec}": {k} must be a number, got "{v}"') from None
    if "a" not in kw or "gamma" not in kw:
        raise InputError(f'--threebody "{spec}": give a=<cutoff Å> and gamma=<Å>, e.g. "W-W-W:a=4.5:gamma=1.2"')
    return ThreeBody(types, **kw)


def _reference_frames(frames, limit: int, source: str):
    """Positions (n, n_beads, 3) Å and boxes (n, 3, 3) or None of the first ``limit`` frames."""
    import numpy as np

    from ..errors import InputError
    pos, boxes = [], []
    for k, fr in enumerate(frames):
        if k >= limit:
            print(f"cgkit fm: --bonded uses the first {limit} frames (--bonded-frames)")
            break
        p = np.asarray(fr[0], dtype=float)
        if not np.all(np.isfinite(p)):
            beads = np.nonzero(~np.all(np.isfinite(p), axis=1))[0]
            raise InputError(f"frame {fr[3]} of {source}: the positions of beads {beads[:10].tolist()} are "
                             "NaN/inf; drop or repair that frame")
        pos.append(p)
        boxes.append(fr[2])
    if not pos:
        raise InputError("the trajectory holds no frames (check --start/--stop/--step)")
    return np.array(pos), (None if boxes[0] is None else np.array(boxes))


def _check_options(args):
    """Cheap checks before any work."""
    from ..errors import InputError
    from ..forcematch import NormalEquations
    from ..options import parse_grids
    engines = [e.strip().lower() for e in args.export.split(",") if e.strip()]
    bad = [e for e in engines if e not in ("lammps", "gromacs")]
    if bad:
        raise InputError(f"--export: unknown engine(s) {bad} (lammps, gromacs)")
    if args.bonded == "ibi":
        if not (0 < args.alpha <= 1):
            raise InputError(f"--alpha must be in (0, 1], got {args.alpha}")
        if args.md_steps < 1 or args.equilibration < 0 or not (args.timestep > 0) or not (args.friction > 0):
            raise InputError("need --md-steps ≥ 1, --equilibration ≥ 0, --timestep > 0 fs, --friction > 0 /ps")
    if args.bins < 4:
        raise InputError(f"--bins must be ≥ 4, got {args.bins}")
    if args.pressure_target is not None:
        from ..forcematch.pressure_match import PressureTarget
        if not getattr(args, "temperature_given", False):
            raise InputError("--pressure-target needs --temperature K, the temperature of the reference "
                             "trajectory: the target's kinetic term N k_B T / V depends on it (no default is "
                             "assumed)")
        args.pressure = PressureTarget(bar=args.pressure_target, temperature_K=args.temperature)
        why = [w for w, bad in (("--model spline", args.model != "spline"), ("--bonded fm", args.bonded != "fm"),
                                ("no --threebody", bool(args.threebody)), ("--coulomb none", args.coulomb != "none"),
                                ("no --add", bool(args.add))) if bad]
        if why:
            raise InputError(f"--pressure-target needs {', '.join(why)}: the virial of fixed, three-body, "
                             "neural or added terms is not in the pressure constraint")
    if getattr(args, "nn_prior", None) == "joint" and args.model == "nn":
        why = [w for w, bad in (("--nn-kind descriptor", args.nn_kind != "descriptor"),
                                ("--bonded fm", args.bonded != "fm"), ("no --add", bool(args.add)),
                                ("--nn-backfit-rounds ≥ 1", args.nn_backfit_rounds < 1)) if bad]
        if why:
            raise InputError(f"--nn-prior joint needs {', '.join(why)} (the joint fit refits the spline "
                             "prior by least squares on the frames of this run); use --nn-prior fixed")
    grids_from = None
    if args.grids_from:
        from ..jsonutil import loads_strict
        f = Path(args.grids_from) / "summary.json"
        try:
            grids_from = {k: tuple(v) if isinstance(v, list) else v
                          for k, v in loads_strict(f.read_text())["grids"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"--grids-from: {f} is not the summary.json of a `cgkit fm` run ({exc})") from exc
    added = [NormalEquations.load(path) for path in args.add]
    return engines, parse_grids(args.grid), grids_from, added


def _run(args) -> int:
    import numpy as np

    from ..errors import InputError
    from ..forcematch import IBISettings, SparseSamplingWarning, SplineForceMatching, hybrid_fit, suggest_grids
    from ..forcematch.interaction import Interaction
    from ..forcematch.tabulated import write_table_files
    from ..jsonutil import write_json
    from ..outputs import OutputFolder

    engines, user, grids_from, added = _check_options(args)
    if args.threebody:
        for spec in args.threebody:
            _parse_threebody(spec)  # refuse a malformed spec before reading any frame
        if args.bonded != "fm":
            raise InputError("--threebody works with --bonded fm only (the hybrid recipe's final potential "
                             "holds tables only)")
    t_start = time.perf_counter()
    type_names, species, masses, top, frames, source = _cg_source(args)
    coul = _coulomb_term(args, top, type_names)
    damping = None if args.dihedral_damping == "none" else args.dihedral_damping
    if damping and len(top.dihedrals) and engines:
        raise InputError(f"--dihedral-damping {damping} with --export {','.join(engines)}: "
                         f"{'LAMMPS' if 'lammps' in engines else 'GROMACS'} has no tabulated dihedral with the "
                         "sin^3 bending damping; drop --export (the damped model runs in cgkit MD) or fit "
                         "without --dihedral-damping")
    ref = None
    if args.bonded != "fm":  # first pass: the bonded distributions of the reference frames
        ref = _reference_frames(frames, args.bonded_frames, source)
        if args.bonded == "ibi" and ref[1] is None:
            raise InputError("--bonded ibi runs CG MD and needs a periodic box in the trajectory")
        frames = _cg_source(args)[4]
    buf = []
    if grids_from is not None:
        grids = grids_from
    else:
        for _ in range(max(args.scan_frames, 1)):
            try:
                buf.append(next(frames))
            except StopIteration:
                break
        if not buf:
            raise InputError("the trajectory holds no frames (check --start/--stop/--step)")
        pos0 = np.array([b[0] for b in buf], dtype=float)
        if not np.all(np.isfinite(pos0)):
            f = int(np.nonzero(~np.all(np.isfinite(pos0), axis=(1, 2)))[0][0])
            beads = np.nonzero(~np.all(np.isfinite(pos0[f]), axis=1))[0]
            raise InputError(f"frame {buf[f][3]} of {source}: the positions of beads {beads[:10].tolist()} are "
                             "NaN/inf; drop or repair that frame")
        grids = suggest_grids(type_names, species, top, pos0,
                              [b[2] for b in buf] if buf[0][2] is not None else None,
                              pair_cutoff=args.pair_cutoff)
    votca = None
    if args.votca_settings:
        from ..forcematch.votca import read_votca_settings, votca_options
        vmap = args.votca_mapping or (args.mapping if args.mapping and str(args.mapping).lower().endswith(".xml")
                                      else None)
        votca = read_votca_settings(args.votca_settings, interactions=list(grids), mapping=vmap)
        absent = sorted(set(votca.grids) - set(grids))
        if absent:
            raise InputError(f"--votca-settings: {args.votca_settings} defines {absent}, which this CG system "
                             f"does not have (it has {sorted(grids)}); check the bead types / mapping")
        grids = dict(votca.grids)
    spacing = {"pair": args.pair_spacing, "bond": args.bond_spacing, "angle": args.angle_spacing,
               "dihedral": args.dihedral_spacing}
    full = {}
    for label, rng in grids.items():
        kind = Interaction.parse(label).kind
        if kind == "pair" and args.no_pairs:
            continue
        if votca is not None:
            full[label] = rng
        else:
            full[label] = args.dihedral_spacing if kind == "dihedral" else (rng[0], rng[1], spacing[kind])
    full.update(user)
    fm_kw = dict(pair=None if args.no_pairs else (0.0, args.pair_cutoff, args.pair_spacing), dihedral=None,
                 grids=full, block_size=args.block_size, on_empty="drop" if args.drop_empty else "error",
                 check=False)
    if damping:
        fm_kw["dihedral_damping"] = damping
    if coul is not None:
        fm_kw["fixed_terms"] = [coul]
    solve_kw = dict(method=args.method, ridge=args.ridge, smooth=args.smooth, min_samples=args.min_samples)
    if args.pressure_target is not None:
        solve_kw["pressure"] = args.pressure
    if args.threebody:
        fm_kw["threebody"] = [_parse_threebody(spec) for spec in args.threebody]
    if votca is not None and votca.threebody:
        if args.bonded != "fm":
            raise InputError(f"{args.votca_settings} has three-body entries; they are fitted with --bonded fm only "
                             "(the hybrid recipe's final potential holds tables only)")
        from ..forcematch.threebody import ThreeBody
        fm_kw.setdefault("threebody", []).extend(ThreeBody(t["types"], t["a"], t["gamma"]) for t in votca.threebody)
        print(f"cgkit fm: three-body terms of {args.votca_settings}: "
              + ", ".join(f"{'-'.join(t['types'])} (a {t['a']:.4g} Å, gamma {t['gamma']:.4g} Å)" for t in votca.threebody)
              + "; f is fitted as a spline in cos θ (VOTCA: in θ)")
    if votca is not None:
        fm_kw["pair"] = None  # exactly the pairs the VOTCA file lists
        if votca.frames_per_block:
            fm_kw["block_size"] = votca.frames_per_block
        if args.votca_conventions:
            vfm, vsolve = votca_options(votca)
            fm_kw["outside"] = vfm["outside"]
            solve_kw.update(vsolve)
    elif args.votca_conventions:
        raise InputError("--votca-conventions needs --votca-settings")
    kept, count = [], [0]

    kept_first = []

    def chunks(size=50):
        """Frames in chunks of ``size`` (the scanned ones first); keeps the first --nn-frames."""
        import itertools
        it = itertools.chain(buf, frames)
        while True:
            chunk = list(itertools.islice(it, size))
            if not chunk:
                return
            count[0] += len(chunk)
            if not kept_first:
                kept_first.append(chunk[0])  # a start configuration for the charged LAMMPS export
            if args.model == "nn":
                kept.extend(chunk[:max(args.nn_frames - len(kept), 0)])
            yield (np.array([c[0] for c in chunk], dtype=float), np.array([c[1] for c in chunk], dtype=float),
                   [c[2] for c in chunk] if chunk[0][2] is not None else None, [c[3] for c in chunk])

    with OutputFolder(args.out, overwrite=args.overwrite, command="fm") as out:
        t0 = time.perf_counter()
        hyb = None
        if args.bonded == "fm":
            fm = SplineForceMatching(type_names, species, top, bond=None, angle=None, **fm_kw)
            for p, f, b, idx in chunks():
                fm.accumulate(p, f, b, frame_indices=idx, source=source)
            t_acc = time.perf_counter() - t0
            fm.normal_equations.save(out / "normal_equations.npz")
            for ne in added:
                fm.add(ne)
            import warnings
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SparseSamplingWarning)
                res = fm.solve(**solve_kw)
            msgs = [str(w.message) for w in caught if issubclass(w.category, SparseSamplingWarning)]
            final = res.potential
        else:
            ibi = None
            if args.bonded == "ibi":
                ibi = IBISettings(iterations=args.ibi_iterations, alpha=args.alpha, md_steps=args.md_steps,
                                  equilibration=args.equilibration, timestep=args.timestep,
                                  friction=args.friction / 1000.0, seed=args.seed)
            hyb = hybrid_fit(type_names, species, top, ref[0], ref[1], temperature=args.temperature,
                             chunks=chunks(), source=source, fm=fm_kw, solve=solve_kw, normal_equations=added,
                             bins=args.bins, ibi=ibi, masses=masses, pair_cutoff=args.pair_cutoff, progress=True)
            t_acc = time.perf_counter() - t0
            print(f"cgkit fm: Boltzmann-inverted and fixed: {', '.join(t.label for t in hyb.bonded_tables)}")
            hyb.normal_equations.save(out / "normal_equations.npz")
            res, msgs, final = hyb.fit, hyb.warnings, hyb.potential
        n = count[0]
        for m in msgs:
            print(f"cgkit fm: warning: {m}")
        res.plot(out)
        summary = res.summary()
        if hyb is not None and hyb.ibi is not None:
            write_table_files(final.tables, out / "tables")
            summary["ibi"] = hyb.ibi.summary()
        else:
            res.write_tables(out / "tables")
        summary["bonded"] = {"method": args.bonded, "temperature_K": args.temperature if hyb else None,
                             "bins": args.bins if hyb else None,
                             "fixed_tables": [t.label for t in hyb.bonded_tables] if hyb else [],
                             "reference_frames": None if ref is None else int(len(ref[0]))}
        final.save(out / "cg_potential.pt", metadata={"masses": masses.tolist(),
                                                      "bead_types": [type_names[s] for s in species]})
        exports = {}
        for eng in engines:
            if eng == "lammps":
                from ..export import write_lammps
                lmp_kw = {}  # without a periodic first frame write_lammps warns that Coulomb is not written
                if coul is not None and kept_first and kept_first[0][2] is not None:
                    # a charged model needs pair_style/kspace lines: data file + input script of the first frame
                    # (4000 table points: with 2000 LAMMPS's table interpolation alone differed from cgkit by
                    # 7.6e-5 of the largest force in the charged-ion test, with 4000 by 5.4e-6)
                    lmp_kw = dict(positions=kept_first[0][0], box=kept_first[0][2], masses=masses, species=species,
                                  n_points=4000)
                exports["lammps"] = {k: str(Path(args.out) / Path(v).relative_to(out))
                                     for k, v in write_lammps(final, out / "lammps", **lmp_kw).items()
                                     if isinstance(v, Path)}
            else:
                from ..export import GROMACS_NOTE, write_gromacs
                write_gromacs(final, out / "gromacs", species=species)
                exports["gromacs"] = {"folder": str(Path(args.out) / "gromacs"), "note": GROMACS_NOTE}
        if args.model == "nn":
            from ..forcematch.neural import NeuralCGTraining
            boxes = [k[2] for k in kept]
            desc = args.nn_kind == "descriptor"
            nn_model = ({"l_max": 6 if args.nn_lmax is None else args.nn_lmax} if desc else
                        {"channels": args.nn_channels, "l_max": 1 if args.nn_lmax is None else args.nn_lmax})
            refit = None
            joint = (args.nn_prior == "joint" or (args.nn_prior is None and desc and args.bonded == "fm"
                                                   and not added and args.nn_backfit_rounds > 0))
            if joint:
                from ..forcematch.neural import spline_refit
                refit = spline_refit(type_names, species, top, dict(bond=None, angle=None, **fm_kw), solve_kw)
            nnt = NeuralCGTraining(final, np.array([k[0] for k in kept]), np.array([k[1] for k in kept]),
                                   None if boxes[0] is None else np.array(boxes), species, masses, out / "nn",
                                   r_cut=args.nn_rcut or (5.0 if desc else 6.0), model=nn_model,
                                   train={"max_epochs": args.nn_epochs or (30 if desc else 50)},
                                   kind=args.nn_kind, seed=getattr(args, "seed", None) or 0,
                                   refit=refit, backfit_rounds=args.nn_backfit_rounds).run()
            summary["neural"] = {"force_residual_prior": nnt.results["prior"],
                                 "force_residual_prior_plus_nn": nnt.results["prior_plus_nn"],
                                 "potential": str(Path(args.out) / "nn" / "cg_nn_potential.pt"),
                                 "frames": len(kept), "kind": args.nn_kind,
                                 "residual_variance_explained": nnt.results.get("residual_variance_explained"),
                                 "prior_fit": "joint" if refit is not None else "fixed",
                                 "backfit": nnt.results.get("backfit")}
            for name, r in nnt.results["prior_plus_nn"].items():
                print(f"bead type {name}: spline + network RMS force residual {r['rms_residual_eV_per_A']:.4g} eV/Å")
        summary["grids"] = {lab: list(v) if isinstance(v, tuple) else v for lab, v in grids.items()}
        summary["coulomb"] = coul.describe() if coul is not None else None
        summary["warnings"] = msgs
        summary["exports"] = exports
        summary["timing"] = {"frames": n, "accumulate_seconds": t_acc,
                             "frames_per_second": n / t_acc if t_acc > 0 else None,
                             "total_seconds": time.perf_counter() - t_start}
        write_json(out / "summary.json", summary)
    for name, r in res.residual.items():
        print(f"bead type {name}: RMS force residual {r['rms_residual_eV_per_A']:.4g} eV/Å "
              f"(RMS mapped force {r['rms_force_eV_per_A']:.4g} eV/Å)")
    print(f"{n} frames, {n / max(t_acc, 1e-9):.1f} frames/s; wrote {args.out}/")
    return 0
