"""``cgkit model init|info|export``: ENNP model files.

* ``init`` writes an untrained ENNP model file (config + weights + metadata);
* ``info`` prints a file's config and metadata;
* ``export --format torchscript MODEL OUT`` writes a TorchScript file for deployment that
  needs only ``torch`` (no cgkit, no e3nn) to run — see :func:`cgkit.nn.export.export_torchscript`;
* ``export MODEL OUT.pt --lammps`` (= ``--format lammps``) writes the file LAMMPS's
  ``pair_style cgkit`` plugin loads (:func:`cgkit.nn.export.export_lammps`, docs/lammps.md); the
  tabulated prior of a neural CG model goes to LAMMPS tables in ``OUT_prior/``.

The export itself lives in :mod:`cgkit.nn.export`.
"""
from __future__ import annotations

import argparse

#: every ENNP option with its flag and default (``cgkit model init --help``; a test checks
#: that it names every keyword of :class:`cgkit.nn.ENNP`)
INIT_EPILOG = """\
Every model option (config key of a `cgkit train` 'model' section = flag here; default,
small / medium preset where they differ; docs/training.md has the same list):
  species            = --species           element symbols or bead types (required)
  r_cut              = --r-cut             cutoff radius, Å (5.0)
  dtype              = --dtype             float32 | float64 (float32)
  channels           = --channels          multiplicity of every irrep; in a config also
                                           one value per l, e.g. [64, 64, 0] (32 / 64)
  l_max              = --l-max             highest angular momentum (2)
  n_layers           = --layers            interaction blocks (2 / 3)
  correlation        = --correlation       body-order products per layer, 1 = NequIP (1 / 2)
  n_radial           = --n-radial          Bessel radial basis functions (8)
  trainable_radial   = --fixed-radial      learnable Bessel frequencies (true; flag: false)
  radial_hidden      = --radial-hidden     width of the radial MLPs (64)
  radial_layers      = --radial-layers     depth of the radial MLPs (2)
  readout_hidden     = --readout-hidden    width of the scalar readout MLP (16 / 32)
  envelope_p         = --envelope-p        polynomial cutoff envelope exponent, >= 2 (6)
  parity             = --no-parity         O(3) model (true; flag: SO(3), chiral)
  full_parity        = --full-parity       both parities at every l, NequIP-like (false)
  vector_head        = --vector-head       l = 1 per-atom output (false)
  tensor_head        = --tensor-head       l = 2 per-atom output (false)
  init_seed          = --seed              seed of the initial weights (0; cgkit train: seed)
  avg_num_neighbors  (config only)         message normalisation (10.0; cgkit train refits
                                           it from the training data)
Long-range model (a LongRangeENNP: this ENNP + learned charges + Ewald/PME Coulomb;
config: model.long_range: {...}):
  --long-range                             add the charge head and the Coulomb energy
  charge_scheme      = --charge-scheme     neutralize | qeq_local | bond (neutralize)
  baseline_charges   = --baseline-charges  fixed per-species charges, e.g. Na=1 Cl=-1 (none)
  learn_charges      = --fixed-charges     learn the charges (true; flag: only the baseline)
  total_charge       = --total-charge      total charge per structure, e (0)
  electrostatics     = --es-method, --es-accuracy   Coulomb method and accuracy (auto, 1e-6)
Example: cgkit model init --species C H O --r-cut 5 --channels 64 --l-max 2 --out init.pt
"""

#: export formats of ``cgkit model export`` (implemented in :mod:`cgkit.nn.export`)
EXPORT_FORMATS = ("torchscript", "lammps")


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="create and inspect equivariant NN potential (ENNP) files",
                              description="Create and inspect ENNP model files.")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    init = sub.add_parser("init", help="write an untrained model (starting point for training, tests, benchmarks)",
                          description="Write an untrained E(3)-equivariant model to one file "
                                      "(config + weights + metadata); load it with cgkit.load_potential. "
                                      "Every option below is also a key of the 'model' section of a "
                                      "`cgkit train` config (in snake_case, e.g. radial_hidden: 64). "
                                      "Presets: small = channels 32, l_max 2, n_layers 2, correlation 1, "
                                      "n_radial 8, radial_hidden 64, radial_layers 2, readout_hidden 16; "
                                      "medium = channels 64, n_layers 3, correlation 2, readout_hidden 32 "
                                      "(others as small).",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog=INIT_EPILOG)
    init.add_argument("--preset", default="small", choices=["small", "medium"],
                      help="model size: small = 32x0e+32x1o+32x2e, 2 layers; medium = 64 channels, "
                           "3 layers, body order 3 products")
    init.add_argument("--species", nargs="+", required=True, metavar="EL",
                      help="element symbols (or bead types) the model is built for, e.g. Si Cu")
    init.add_argument("--r-cut", type=float, default=5.0, help="cutoff radius, Å")
    init.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                      help="floating-point precision (float64 for phonons/elastic constants)")
    init.add_argument("--no-parity", action="store_true",
                      help="SO(3) model (chiral: distinguishes mirror images) instead of O(3) "
                           "(config: parity: false)")
    init.add_argument("--full-parity", action="store_true",
                      help="O(3) features of both parities at every l (NequIP-like) instead of (-1)^l")
    init.add_argument("--l-max", type=int, default=None,
                      help="highest angular momentum of features and spherical harmonics (preset: 2)")
    init.add_argument("--channels", type=int, default=None, help="channels per l (preset: 32 / 64)")
    init.add_argument("--layers", type=int, default=None,
                      help="number of interaction layers (config: n_layers; preset: 2 / 3)")
    init.add_argument("--correlation", type=int, default=None,
                      help="body-order products per layer, 1 = NequIP-style (preset: 1 / 2)")
    init.add_argument("--n-radial", type=int, default=None, help="Bessel radial basis functions (preset: 8)")
    init.add_argument("--fixed-radial", action="store_true",
                      help="fixed Bessel frequencies (config: trainable_radial: false)")
    init.add_argument("--radial-hidden", type=int, default=None, help="width of the radial MLPs (preset: 64)")
    init.add_argument("--radial-layers", type=int, default=None, help="depth of the radial MLPs (preset: 2)")
    init.add_argument("--readout-hidden", type=int, default=None,
                      help="width of the scalar readout MLP (preset: 16 / 32)")
    init.add_argument("--envelope-p", type=int, default=None,
                      help="exponent of the polynomial cutoff envelope, >= 2 (default 6)")
    init.add_argument("--vector-head", action="store_true",
                      help="add an l = 1 per-atom output (e.g. dipoles; config: vector_head: true)")
    init.add_argument("--tensor-head", action="store_true",
                      help="add an l = 2 per-atom output (symmetric traceless tensors; config: tensor_head: true)")
    init.add_argument("--long-range", action="store_true",
                      help="a LongRangeENNP: learned charges (exact total charge) + Ewald/PME Coulomb energy")
    init.add_argument("--charge-scheme", choices=("neutralize", "qeq_local", "bond"), default=None,
                      help="how the total charge is kept (with --long-range; default neutralize)")
    init.add_argument("--baseline-charges", nargs="+", metavar="EL=Q", default=None,
                      help="fixed per-species charges, e (with --long-range), e.g. Na=1 Cl=-1")
    init.add_argument("--fixed-charges", action="store_true",
                      help="use only the baseline charges, learn none (with --long-range)")
    init.add_argument("--total-charge", type=float, default=None,
                      help="total charge per structure, e (with --long-range; default 0)")
    init.add_argument("--es-method", choices=("auto", "ewald", "pme", "direct", "slab", "dsf"), default=None,
                      help="Coulomb method (with --long-range; default auto)")
    init.add_argument("--es-accuracy", type=float, default=None,
                      help="relative accuracy of the Coulomb sum (with --long-range; default 1e-6)")
    init.add_argument("--seed", type=int, default=0, help="random seed of the initial weights (default: 0)")
    init.add_argument("--out", required=True, help="output model file (.pt)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    init.set_defaults(func=_init)

    info = sub.add_parser("info", help="print the config and metadata of a model file")
    info.add_argument("path", help="model file")
    info.set_defaults(func=_info)

    exp = sub.add_parser("export", help="write a deployable TorchScript file of a model",
                         description="Export an ENNP model file for deployment. The TorchScript file "
                                     "runs with torch alone (torch.jit.load): "
                                     "forward(positions (n,3) Å, cell (3,3) Å, species (n,) int64, "
                                     "edge_index (2,E) int64, cell_shifts (E,3), compute_stress) → "
                                     "(energy eV, forces (n,3) eV/Å, stress (3,3) eV/Å³ or zeros). "
                                     "Edges: all ordered pairs (i, j) with |r_j − r_i + shifts·cell| < "
                                     "cutoff (both directions); cutoff, species names and dtype are "
                                     "attributes of the module and in the file's cgkit_metadata.json. "
                                     "With --lammps: the file for LAMMPS's pair_style cgkit plugin "
                                     "(ENNPs, ensembles as their mean, neural CG models whose "
                                     "tabulated prior is written as LAMMPS tables to OUT_prior/ for "
                                     "pair_style hybrid/overlay); see docs/lammps.md. "
                                     "Example: cgkit model export model.pt si_lammps.pt --lammps")
    exp.add_argument("model", help="cgkit ENNP model file (.pt), e.g. from cgkit train or cgkit model init")
    exp.add_argument("out", help="output file (.pt)")
    exp.add_argument("--format", default="torchscript", choices=list(EXPORT_FORMATS),
                     help="export format (default: torchscript)")
    exp.add_argument("--lammps", action="store_true",
                     help="write the file of LAMMPS's pair_style cgkit plugin (same as --format lammps)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output file (and OUT_prior/)")
    exp.set_defaults(func=_export)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _init(args) -> int:
    import torch

    from ..nn import ENNP

    from pathlib import Path

    from ..errors import InputError
    from ..outputs import check_writable_file

    out = check_writable_file(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it or choose another file")
    over = {"dtype": args.dtype, "parity": not args.no_parity, "init_seed": args.seed,
            "full_parity": args.full_parity, "trainable_radial": not args.fixed_radial,
            "vector_head": args.vector_head, "tensor_head": args.tensor_head}
    for key, val in (("l_max", args.l_max), ("channels", args.channels), ("n_layers", args.layers),
                     ("correlation", args.correlation), ("n_radial", args.n_radial),
                     ("radial_hidden", args.radial_hidden), ("radial_layers", args.radial_layers),
                     ("readout_hidden", args.readout_hidden), ("envelope_p", args.envelope_p)):
        if val is not None:
            if val < (2 if key == "envelope_p" else 0 if key == "l_max" else 1):
                raise InputError(f"--{key.replace('_', '-')} must be >= "
                                 f"{2 if key == 'envelope_p' else 0 if key == 'l_max' else 1}, got {val}")
            over[key] = val
    lr_flags = {"--charge-scheme": args.charge_scheme, "--baseline-charges": args.baseline_charges,
                "--fixed-charges": args.fixed_charges or None, "--total-charge": args.total_charge,
                "--es-method": args.es_method, "--es-accuracy": args.es_accuracy}
    given = [k for k, v in lr_flags.items() if v is not None]
    if given and not args.long_range:
        raise InputError(f"{', '.join(given)} only apply to a long-range model: add --long-range")
    torch.manual_seed(args.seed)
    if args.long_range:
        from ..nn.longrange import LongRangeENNP, parse_species_charges
        if args.fixed_charges and not args.baseline_charges:
            raise InputError("--fixed-charges needs --baseline-charges (the charges to keep)")
        es = {"method": args.es_method or "auto", "accuracy": 1e-6 if args.es_accuracy is None else args.es_accuracy}
        model = LongRangeENNP.from_preset(
            args.preset, args.species, args.r_cut, **over, charge_scheme=args.charge_scheme or "neutralize",
            baseline_charges=parse_species_charges(args.baseline_charges) or None,
            learn_charges=not args.fixed_charges, total_charge=args.total_charge or 0.0, electrostatics=es)
    else:
        model = ENNP.from_preset(args.preset, args.species, args.r_cut, **over)
    model.save(Path(out), metadata={"preset": args.preset, "trained": False, "seed": args.seed})
    n_par = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.preset} {'long-range ' if args.long_range else ''}ENNP for {args.species}, "
          f"r_cut {args.r_cut} Å, "
          f"{model.irreps_hidden}, {n_par} parameters, {args.dtype}")
    return 0


def _info(args) -> int:
    import json

    from ..io_potential import load_potential

    pot = load_potential(args.path)
    cfg = pot.get_config() if hasattr(pot, "get_config") else {}
    print(json.dumps({"class": type(pot).__name__, "config": cfg,
                      "metadata": getattr(pot, "metadata", {})}, indent=2, default=str))
    return 0


def _export(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..io_potential import load_potential
    from ..outputs import check_writable_file

    out = check_writable_file(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it or choose another file")
    pot = load_potential(args.model)
    if args.lammps or args.format == "lammps":
        return _export_lammps(pot, Path(out), args)
    from ..nn.export import export_torchscript

    report = export_torchscript(pot, args.out)
    print(f"wrote {args.out}: TorchScript {report['dtype']} model for {report['type_names']}, "
          f"cutoff {report['cutoff']} Å; checked against the eager model on a "
          f"{report['check_atoms']}-atom structure: max |ΔE|/|E| = {report['energy_rel_error']:.1e}, "
          f"max |ΔF| = {report['forces_max_error']:.1e} eV/Å")
    return 0


def _export_lammps(pot, out, args) -> int:
    import shutil

    from ..errors import InputError, NotSupportedError
    from ..nn.export import export_lammps, receptive_field, split_prior

    net, prior = split_prior(pot)
    if net is None:
        raise NotSupportedError(f"{args.model} is a tabulated potential only: export it with "
                                "cgkit.export.write_lammps (pair_style table), not --lammps")
    receptive_field(net)  # refuses an unsupported model before writing anything
    prior_dir = out.with_name(out.stem + "_prior")
    if prior is not None and prior_dir.exists() and not args.overwrite:
        raise InputError(f"{prior_dir} exists; pass --overwrite to replace it")
    report = export_lammps(net, out)
    names = " ".join(report["type_names"])
    print(f"wrote {out}: LAMMPS pair_style cgkit model ({report['dtype']}) for {report['type_names']}, "
          f"cutoff {report['cutoff']} Å, receptive field {report['receptive_field']} Å; checked on a "
          f"{report['check_atoms']}-atom triclinic cell with {report['check_ghosts']} explicit images: "
          f"relative error energy {report['energy_rel_error']:.1e}, forces {report['forces_rel_error']:.1e}, "
          f"virial {report['virial_rel_error']:.1e}")
    if prior is None:
        print(f"LAMMPS: newton on; plugin load cgkitplugin.so; pair_style cgkit; pair_coeff * * {out.name} {names}")
        return 0
    from ..export.lammps import write_lammps

    if tuple(prior.type_names) != tuple(report["type_names"]):
        raise NotSupportedError(f"the prior's bead types {list(prior.type_names)} differ from the "
                                f"network's {report['type_names']}")
    if prior_dir.exists():
        shutil.rmtree(prior_dir)
    written = write_lammps(prior, prior_dir)
    snippet = prior_dir / "in.cgkit_hybrid"
    text = _hybrid_snippet(written, out.name, report["type_names"])
    top = getattr(prior, "topology", None)
    if top is not None:
        from ..export.lammps import lammps_special_bonds
        text += lammps_special_bonds(top).rstrip("\n") + "\n"
    snippet.write_text(text)
    print(f"wrote the tabulated prior as LAMMPS tables to {prior_dir}/ and the force-field lines "
          f"(pair_style hybrid/overlay table + cgkit, bonded table styles) to {snippet}")
    return 0


def _hybrid_snippet(written: dict, model_name: str, type_names) -> str:
    """LAMMPS force-field lines combining the prior's tables (paths as written) and the plugin."""
    from pathlib import Path

    lines = ["# cgkit neural CG model in LAMMPS: tabulated prior + network (pair_style cgkit)",
             "# paths relative to the folder LAMMPS runs in; newton on is required",
             "plugin load ${cgkit_plugin}"]
    tid = {t: k + 1 for k, t in enumerate(type_names)}
    if "pair" in written:
        text = Path(written["pair"]).read_text().splitlines()
        coeffs, n_max = [], 10
        for k, ln in enumerate(text):
            if ln.startswith("PAIR_") and k + 1 < len(text) and text[k + 1].startswith("N "):
                parts = text[k + 1].split()
                n_max = max(n_max, int(parts[1]))
                rest = ln[len("PAIR_"):]
                if rest == "NONE":
                    continue
                a, b = (tid[t] for t in _split_pair_key(rest, type_names))
                coeffs.append(f"pair_coeff {min(a, b)} {max(a, b)} table {written['pair'].name} {ln} {parts[-1]}")
        have = {tuple(int(v) for v in c.split()[1:3]) for c in coeffs}
        missing = [(a, b) for a in range(1, len(type_names) + 1) for b in range(a, len(type_names) + 1)
                   if (a, b) not in have]
        coeffs += [f"pair_coeff {a} {b} table {written['pair'].name} PAIR_NONE" for a, b in missing]
        lines.append(f"pair_style hybrid/overlay table spline {n_max} cgkit")
        lines += coeffs
        lines.append(f"pair_coeff * * cgkit {model_name} {' '.join(type_names)}")
    else:
        lines += ["pair_style cgkit", f"pair_coeff * * {model_name} {' '.join(type_names)}"]
    for kind in ("bond", "angle", "dihedral"):
        if kind not in written:
            continue
        text = Path(written[kind]).read_text().splitlines()
        keys = [(ln, text[k + 1].split()[1]) for k, ln in enumerate(text)
                if k + 1 < len(text) and text[k + 1].startswith("N ") and not ln.startswith("#")]
        if keys:
            lines.append(f"{kind}_style table spline {max(int(n) for _, n in keys)}")
            lines += [f"{kind}_coeff {k + 1} {written[kind].name} {key}" for k, (key, _) in enumerate(keys)]
    return "\n".join(lines) + "\n"


def _split_pair_key(rest: str, type_names):
    """('A', 'B') of a table key body 'A_B' (type names may contain underscores)."""
    for a in type_names:
        if rest.startswith(a + "_") and rest[len(a) + 1:] in type_names:
            return a, rest[len(a) + 1:]
    raise ValueError(f"cannot split the table key {rest!r} into two of {list(type_names)}")
