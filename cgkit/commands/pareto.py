"""``cgkit pareto CONFIG.yaml --held-out FILE``: the loss-weight Pareto front of a training config.

Trains the config once per combination of energy and force loss weights (short runs: the
config's budget or --max-epochs), evaluates every model on the same labelled held-out
structures (energy MAE per atom in eV/atom, force MAE in eV/Å) and reports the runs no other
run beats on both errors. The config's own weights are always one of the runs: the summary says
whether they are on the front, and which runs dominate them if not. Writes summary.json,
pareto.png and one training folder per run (w_NN/).
"""
from __future__ import annotations

import argparse

_EPILOG = """example:
  cgkit pareto examples/train_config.yaml --held-out test.extxyz \\
      --energy-weights 0.1,1,10 --forces-weights 1,10,100 --max-epochs 20 --out pareto/
"""


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(subparsers):
    from ..options import add_output_options
    p = subparsers.add_parser("pareto", help="loss-weight Pareto front of a training config",
                              description=__doc__, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="`cgkit train` config (YAML)")
    p.add_argument("--held-out", required=True, help="labelled structures (extxyz) every run is evaluated on")
    p.add_argument("--energy-weights", type=_weights, default=[0.1, 1.0, 10.0],
                   help="energy loss weights to try (comma-separated; default 0.1,1,10)")
    p.add_argument("--forces-weights", type=_weights, default=[1.0, 10.0, 100.0],
                   help="force loss weights to try (comma-separated; default 1,10,100)")
    p.add_argument("--max-epochs", type=int, default=None, help="epochs per run (default: the config's)")
    add_output_options(p, "pareto_out")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    import yaml
    from ase.io import read

    from ..errors import InputError
    from ..learn.pareto import LossWeightFront
    from ..outputs import OutputFolder

    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"no config file '{path}'")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise InputError(f"{path} must hold a mapping of training config keys")
    data = cfg.get("data") or {}
    base = path.parent

    def _abs(p):
        return str(p) if Path(p).is_absolute() else str(base / p)
    if isinstance(data.get("train"), str):
        data["train"] = _abs(data["train"])
    elif isinstance(data.get("train"), list):
        data["train"] = [dict(t, path=_abs(t["path"])) if isinstance(t, dict) else _abs(t) for t in data["train"]]
    if data.get("val"):
        data["val"] = _abs(data["val"])
    if isinstance(cfg.get("model"), dict) and "file" in cfg["model"]:
        cfg["model"]["file"] = _abs(cfg["model"]["file"])
    held = Path(args.held_out)
    if not held.is_file():
        raise InputError(f"--held-out: no file '{held}'")
    try:
        structures = read(str(held), ":")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise InputError(f"--held-out: cannot read '{held}': {exc}") from None
    if args.max_epochs is not None and args.max_epochs < 1:
        raise InputError(f"--max-epochs must be >= 1, got {args.max_epochs}")
    with OutputFolder(args.out, overwrite=args.overwrite, command="pareto") as out:
        front = LossWeightFront(cfg, structures, out, energy_weights=args.energy_weights,
                                forces_weights=args.forces_weights, max_epochs=args.max_epochs).run()
        front.to_json(out / "summary.json")
        front.plot(out)
    ref = front.results.reference
    where = "on the front" if ref["on_front"] else f"dominated by runs {ref['dominated_by']}"
    print(f"{len(front.results.front)} of {len(front.results.runs)} runs on the front; the config's weights "
          f"(energy {ref['energy_weight']:g}, forces {ref['forces_weight']:g}) are {where}; "
          f"wrote {Path(args.out) / 'summary.json'}, {Path(args.out) / 'pareto.png'}")
    return 0
