"""``cgkit model init|info|export``: ENNP model files.

* ``init`` writes an untrained ENNP model file (config + weights + metadata);
* ``info`` prints a file's config and metadata;
* ``export --format torchscript MODEL OUT`` writes a TorchScript file for deployment that
  needs only ``torch`` (no cgkit, no e3nn) to run — see :func:`cgkit.nn.export.export_torchscript`.

The export itself lives in :mod:`cgkit.nn.export`.
"""
from __future__ import annotations

#: export formats of ``cgkit model export`` (implemented in :mod:`cgkit.nn.export`)
EXPORT_FORMATS = ("torchscript",)


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
                                      "(others as small).")
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
                                     "attributes of the module and in the file's cgkit_metadata.json.")
    exp.add_argument("model", help="cgkit ENNP model file (.pt), e.g. from cgkit train or cgkit model init")
    exp.add_argument("out", help="output file (.pt)")
    exp.add_argument("--format", default="torchscript", choices=list(EXPORT_FORMATS),
                     help="export format (default: torchscript)")
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
    torch.manual_seed(args.seed)
    model = ENNP.from_preset(args.preset, args.species, args.r_cut, **over)
    model.save(Path(out), metadata={"preset": args.preset, "trained": False, "seed": args.seed})
    n_par = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.preset} ENNP for {args.species}, r_cut {args.r_cut} Å, "
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
    from ..io_potential import load_potential
    from ..nn.export import export_torchscript

    pot = load_potential(args.model)
    report = export_torchscript(pot, args.out)
    print(f"wrote {args.out}: TorchScript {report['dtype']} model for {report['type_names']}, "
          f"cutoff {report['cutoff']} Å; checked against the eager model on a "
          f"{report['check_atoms']}-atom structure: max |ΔE|/|E| = {report['energy_rel_error']:.1e}, "
          f"max |ΔF| = {report['forces_max_error']:.1e} eV/Å")
    return 0
