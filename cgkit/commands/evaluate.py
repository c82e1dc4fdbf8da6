"""``cgkit evaluate MODEL DATA``: errors of a potential on labelled structures (see
:mod:`cgkit.train.evaluate`)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Evaluate a cgkit potential on labelled extxyz structures (e.g. a held-out test set):
energy per atom and total, also with the mean offset removed (eV/atom, eV); force MAE/RMSE
overall and per species (eV/Å); stress (GPa, periodic structures with a stress label);
per-structure vectors/tensors (--vector-key/--tensor-key, needs the model's head); charges (e)
and dipoles (e·Å) when the data have them and the model predicts atomic charges.
Writes summary.json, energies.csv and parity plots (parity_<quantity>.png) into --out.

  $ cgkit evaluate run/model.pt test.xyz --out run/eval

The numbers are those of `summary.json` 'test' of a training run with data.test.
"""


def register(subparsers) -> None:
    from ..options import add_output_options
    p = subparsers.add_parser("evaluate", help="errors of a potential on labelled structures (test set)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="cgkit model file (e.g. run/model.pt) or built-in spec (cgkit:sw)")
    p.add_argument("data", help="extxyz (any ASE-readable file) with an energy per frame and "
                                "forces/stress/charges/dipole where available")
    add_output_options(p, default="evaluate_out")
    p.add_argument("--batch-size", type=int, default=8, help="structures per model call")
    p.add_argument("--dtype", choices=["model", "float32", "float64"], default="model",
                   help="precision of the evaluation ('model': the model's own)")
    p.add_argument("--vector-key", default=None,
                   help="atoms.info key of per-structure vectors (e.g. dipole, e·Å) for the l=1 head")
    p.add_argument("--tensor-key", default=None,
                   help="atoms.info key of per-structure symmetric traceless tensors for the l=2 head")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import json

    import torch

    from ..errors import InputError
    from ..io_potential import load_potential
    from ..outputs import OutputFolder
    from ..train.dataset import load_structures
    from ..train.evaluate import Evaluation

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    dtype = None if args.dtype == "model" else getattr(torch, args.dtype)
    model = load_potential(args.model, dtype=dtype)
    frames = load_structures(args.data)
    ev = Evaluation(model, frames, batch_size=args.batch_size, vector_key=args.vector_key,
                    tensor_key=args.tensor_key, source=str(args.data), model_name=str(args.model))
    ev.run()  # before the output folder: a refused evaluation leaves nothing behind
    with OutputFolder(args.out, overwrite=args.overwrite, command="evaluate") as out:
        ev.write_energies(out / "energies.csv")
        figures = [p.name for p in ev.plot(out)]
        ev.results["files"] = {"energies": "energies.csv", "figures": figures}
        ev.to_json(out / "summary.json")
    r = ev.results
    lines = [f"{r['n_structures']} structures, {r['n_atoms']} atoms ({r['dtype']})",
             f"energy MAE {1000 * r['energy']['mae_eV_per_atom']:.4g} meV/atom "
             f"(RMSE {1000 * r['energy']['rmse_eV_per_atom']:.4g}); mean offset "
             f"{1000 * r['energy']['mean_offset_eV_per_atom']:.4g} meV/atom, with it removed MAE "
             f"{1000 * r['energy']['centered_mae_eV_per_atom']:.4g} meV/atom"]
    if r["forces"]:
        f = r["forces"]
        per = ", ".join(f"{k} {1000 * v['mae_eV_per_A']:.4g}" for k, v in f["per_species"].items())
        lines.append(f"force MAE {1000 * f['mae_eV_per_A']:.4g} meV/Å (RMSE "
                     f"{1000 * f['rmse_eV_per_A']:.4g}; per species: {per})")
    if r["stress"]:
        lines.append(f"stress MAE {r['stress']['mae_GPa']:.4g} GPa (RMSE {r['stress']['rmse_GPa']:.4g})")
    for key in ("vectors", "tensors", "charges", "dipole"):
        if r[key]:
            lines.append(f"{key}: " + json.dumps({k: v for k, v in r[key].items()}))
    print("\n".join(lines))
    print(f"wrote {args.out}/summary.json, energies.csv, {', '.join(figures)}")
    return 0
