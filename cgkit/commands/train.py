"""``cgkit train CONFIG.yaml``: fit an ENNP to energies/forces/stresses (see cgkit.train)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train an equivariant NN potential from extxyz data (YAML config)",
        description="Train an ENNP. The YAML config is documented in cgkit.train.trainer "
                    "(model, data, loss weights, optimizer, scheduler, EMA, clipping, early "
                    "stopping, checkpoints). Writes OUTPUT/model.pt, checkpoint.pt, log.csv, "
                    "learning_curve.png and summary.json (validation MAE/RMSE: energy eV/atom, "
                    "forces eV/Å, stress GPa). Re-running the same command resumes from the "
                    "checkpoint. Multi-process: torchrun --nproc_per_node=N -m cgkit.cli train CONFIG.yaml")
    p.add_argument("config", help="YAML training config")
    p.add_argument("--output", default=None, help="output folder (overrides the config's 'output')")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K models with seeds seed..seed+K-1 into OUTPUT/member_k and write "
                        "OUTPUT/ensemble.pt (mean and std of energy/forces)")
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import json
    from pathlib import Path

    import yaml

    from ..errors import InputError
    from ..train.trainer import Trainer, init_distributed_from_env

    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"training config '{path}' does not exist")
    with open(path) as fh:
        try:
            cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"'{path}' is not valid YAML: {exc}") from exc
    if args.output:
        cfg["output"] = args.output
    if args.max_steps is not None:
        cfg["max_steps"] = args.max_steps
    # relative data/model paths are relative to the config file
    base = path.parent
    data = cfg.get("data", {})
    def _abs(p):
        return str(p) if Path(p).is_absolute() else str(base / p)
    if isinstance(data.get("train"), (str, list)):
        tr = data["train"] if isinstance(data["train"], list) else [data["train"]]
        data["train"] = [(_abs(t) if isinstance(t, str) else {**t, "path": _abs(t["path"])}) for t in tr]
    if data.get("val"):
        data["val"] = _abs(data["val"])
    if isinstance(cfg.get("model"), dict) and "file" in cfg["model"]:
        cfg["model"]["file"] = _abs(cfg["model"]["file"])
    if "output" not in cfg:
        cfg["output"] = str(base / "train_out")
    distributed = init_distributed_from_env()
    try:
        if args.ensemble < 1:
            raise InputError(f"--ensemble must be >= 1, got {args.ensemble}")
        if args.ensemble == 1:
            tr = Trainer(cfg).run()
            if tr.results:
                print(json.dumps(tr.results["validation"], indent=2))
            return 0
        from ..ensemble import EnsemblePotential
        out = Path(cfg["output"])
        members, summaries = [], []
        for k in range(args.ensemble):
            c = dict(cfg, output=str(out / f"member_{k}"), seed=int(cfg.get("seed", 0)) + k)
            tr = Trainer(c).run()
            members.append(tr.model)
            summaries.append(tr.results.get("validation"))
        EnsemblePotential(members).save(out / "ensemble.pt", metadata={"trained": True, "members": args.ensemble})
        with open(out / "summary.json", "w") as fh:
            json.dump({"members": summaries}, fh, indent=2)
        print(f"wrote {out / 'ensemble.pt'} ({args.ensemble} members)")
        return 0
    finally:
        if distributed:
            import torch.distributed as dist
            dist.destroy_process_group()
