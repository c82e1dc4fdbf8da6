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
                                      "(config + weights + metadata); load it with cgkit.load_potential.")
    init.add_argument("--preset", default="small", choices=["small", "medium"],
                      help="model size: small = 32x0e+32x1o+32x2e, 2 layers; medium = 64 channels, "
                           "3 layers, body order 3 products (default: small)")
    init.add_argument("--species", nargs="+", required=True, metavar="EL",
                      help="element symbols (or bead types) the model is built for, e.g. Si Cu")
    init.add_argument("--r-cut", type=float, default=5.0, help="cutoff radius, Å (default 5.0)")
    init.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                      help="floating-point precision (float64 for phonons/elastic constants)")
    init.add_argument("--no-parity", action="store_true",
                      help="SO(3) model (chiral: distinguishes mirror images) instead of O(3)")
    init.add_argument("--l-max", type=int, default=None, help="override the preset's l_max")
    init.add_argument("--channels", type=int, default=None, help="override the preset's channels per l")
    init.add_argument("--layers", type=int, default=None, help="override the preset's number of layers")
    init.add_argument("--correlation", type=int, default=None,
                      help="override the body-order products per layer (1 = NequIP-style)")
    init.add_argument("--seed", type=int, default=0, help="random seed of the initial weights")
    init.add_argument("--out", required=True, help="output model file (.pt)")
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

    over = {"dtype": args.dtype, "parity": not args.no_parity, "init_seed": args.seed}
    for key, val in (("l_max", args.l_max), ("channels", args.channels), ("n_layers", args.layers),
                     ("correlation", args.correlation)):
        if val is not None:
            over[key] = val
    torch.manual_seed(args.seed)
    model = ENNP.from_preset(args.preset, args.species, args.r_cut, **over)
    model.save(args.out, metadata={"preset": args.preset, "trained": False, "seed": args.seed})
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
