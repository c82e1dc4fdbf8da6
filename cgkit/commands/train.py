"""``cgkit train CONFIG.yaml``: fit an ENNP to energies/forces/stresses (see cgkit.train)."""
from __future__ import annotations

import argparse

#: shown by ``cgkit train --help``; ``examples/train_config.yaml`` is a runnable copy
CONFIG_HELP = """\
Train an E(3)-equivariant NN potential (ENNP) on energies, forces (and stresses, vectors,
tensors, charges, dipoles) of extxyz structures. Paths in the config (data, model file,
output) are relative to the config file; --out is relative to the working directory.

Minimal complete config (train.yaml):

  output: cu_run                          # output folder
  model: {preset: small, species: [Cu], r_cut: 4.5}
  data: {train: cu.xyz}                   # extxyz with energy and forces per frame
  max_epochs: 50

  $ cgkit train train.yaml
  $ cgkit evaluate cu_run/model.pt test.xyz --out cu_eval     # errors on a test set

Full reference (every key, default and unit; loss, E0s, schedules, stage two, test set):
docs/training.md. Examples: examples/train_config.yaml (crystal, teacher labels),
examples/molecule_qm/ (molecule, QM labels). Every key with its default (eV, Å):

  seed: 0
  model: {preset: small, species: [..], r_cut: 5.0, dtype: float32}
         # presets small/medium; any option of `cgkit model init --help` in snake_case, or
         # model: {file: init.pt} (a saved model, e.g. from `cgkit model init`)
  data: {train: FILE or [{path: FILE, weight: 1.0}, ...], val: null (= random split),
         val_fraction: 0.1, test: null (file), test_fraction: 0.0, vector_key: null,
         tensor_key: null}
  loss: {energy: 1.0, forces: 10.0, stress: 0.0, vectors: 0.0, tensors: 0.0}  # weights >= 0
  charges_weight: 0.0       # per-atom charges (e); needs a model with atomic_charges
  dipole_weight: 0.0        # dipoles sum q_i r_i (e·Å)
  e0s: average              # least-squares per-species energies, or {Cu: -3.5, ...} (eV)
  refit_shifts: auto        # refit the shifts to the training energies at the end (auto: unless e0s given)
  optimizer: {name: adamw, lr: 0.01, weight_decay: 0.0, amsgrad: false}
  scheduler: {name: plateau, factor: 0.5, patience: 10, min_lr: 1.0e-6, warmup_epochs: 0,
              cosine_epochs: null, gamma: 0.99}      # plateau | cosine | exponential
  stage_two: null           # {start_epoch, energy_weight, forces_weight, stress_weight, lr}
  ema_decay: 0.99           # weight average, decay min(ema_decay, (1+t)/(10+t)) at step t; 0 = off
  clip_grad_norm: 10.0      # null = no clipping
  batch_size: 4             # structures per optimizer step
  max_epochs: 1000          # budget fields (may change on --resume): max_epochs, max_steps,
  max_steps: null           #   max_time_minutes, early_stopping_patience, checkpoint_every,
  max_time_minutes: null    #   threads
  early_stopping_patience: 50   # epochs without validation improvement
  checkpoint_every: 100     # steps (0: only after every epoch)
  threads: null             # torch threads

Output folder: model.pt (best validation epoch, EMA weights), checkpoint.pt, log.csv and
learning_curve.png (updated every epoch), summary.json (validation and test MAE/RMSE:
energy eV/atom, forces eV/Å, stress GPa). A non-empty output folder is refused: pass
--resume to continue the run in it (e.g. killed, or with a larger max_epochs /
--max-epochs to extend a finished run; only the budget fields may differ from its config)
or --overwrite to start over.
Progress: one line per epoch with ETA on stdout; a bar on a terminal, otherwise a line
with ETA every 30 s (CGKIT_PROGRESS_INTERVAL) on stderr.
Multi-process: torchrun --nproc_per_node=N -m cgkit.cli train CONFIG.yaml
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train an equivariant NN potential from extxyz data (YAML config)",
        description=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML training config (see above)")
    p.add_argument("--out", "--output", dest="output", default=None,
                   help="output folder (overrides the config's 'output'; default: the config's "
                        "'output', else train_out next to the config)")
    p.add_argument("--resume", action="store_true",
                   help="continue the training in the output folder from its checkpoint.pt "
                        "(budget fields may be raised to extend a finished run)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the files of an earlier training run in the output folder and start "
                        "over (other files are kept)")
    p.add_argument("--max-epochs", type=int, default=None, help="override max_epochs")
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K models with seeds seed..seed+K-1 into OUTPUT/member_k and write "
                        "OUTPUT/ensemble.pt (mean and std of energy/forces)")
    p.set_defaults(func=_run)


def _read_config(args) -> dict:
    from pathlib import Path

    import yaml

    from ..errors import InputError

    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"training config '{path}' does not exist")
    with open(path) as fh:
        try:
            cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"'{path}' is not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise InputError(f"'{path}' must hold a mapping of config keys (see cgkit train --help)")
    base = path.parent
    if args.output:  # relative to the working directory
        cfg["output"] = args.output
    elif isinstance(cfg.get("output"), str) and not Path(cfg["output"]).is_absolute():
        cfg["output"] = str(base / cfg["output"])  # relative to the config file, like data paths
    for key in ("max_epochs", "max_steps", "seed"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    # relative data/model paths are relative to the config file

    def _abs(p):
        if not isinstance(p, (str, Path)):
            raise InputError(f"data and model paths in '{path}' must be file names, got {p!r}")
        return str(p) if Path(p).is_absolute() else str(base / p)

    def _source(t):
        if isinstance(t, dict) and "path" in t:
            return {**t, "path": _abs(t["path"])}
        return _abs(t) if isinstance(t, str) else t

    data = cfg.get("data", {})
    if isinstance(data, dict):
        if isinstance(data.get("train"), (str, list)):
            tr = data["train"] if isinstance(data["train"], list) else [data["train"]]
            data["train"] = [_source(t) for t in tr]
        for key in ("val", "test"):
            if data.get(key):
                data[key] = _abs(data[key])
    if isinstance(cfg.get("model"), dict) and "file" in cfg["model"]:
        cfg["model"]["file"] = _abs(cfg["model"]["file"])
    if "output" not in cfg:
        cfg["output"] = str(base / "train_out")
    return cfg


def _run(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..jsonutil import write_json
    from ..train.trainer import Trainer, init_distributed_from_env

    cfg = _read_config(args)
    if args.ensemble < 1:
        raise InputError(f"--ensemble must be >= 1, got {args.ensemble}")
    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite exclude each other: --resume continues the run in "
                         "the output folder, --overwrite deletes it")
    distributed = init_distributed_from_env()
    try:
        if args.ensemble == 1:
            tr = Trainer(cfg, resume=bool(args.resume), overwrite=args.overwrite)
            tr.run()
            if tr.results:
                _report(tr)
            return 0
        from ..ensemble import EnsemblePotential
        out = Path(cfg["output"])
        mine = {"ensemble.pt", "summary.json", ".cgkit-files.json"}
        if out.is_dir() and not (args.resume or args.overwrite):
            if any(out.iterdir()):
                raise InputError(f"output folder {out} is not empty; pass --resume to continue the "
                                 "ensemble training there, --overwrite to start over, or choose a new folder")
        elif out.is_dir() and args.resume:
            other = sorted(p.name for p in out.iterdir() if p.name not in mine
                           and not (p.is_dir() and p.name.startswith("member_")))
            if other:
                raise InputError(f"output folder {out} holds files of no ensemble training ({other[:5]}); "
                                 "choose another folder")
        trainers = [Trainer(dict(cfg, output=str(out / f"member_{k}"), seed=int(cfg.get("seed", 0)) + k),
                            resume=None if args.resume else False, overwrite=args.overwrite)
                    for k in range(args.ensemble)]
        members, summaries = [], []
        for tr in trainers:
            tr.run()
            members.append(tr.model)
            summaries.append(tr.results.get("validation"))
            if tr.results:
                _report(tr)
        if trainers[0].results:  # rank 0
            EnsemblePotential(members).save(out / "ensemble.pt",
                                            metadata={"trained": True, "members": args.ensemble})
            write_json(out / "summary.json", {"members": summaries})
            print(f"wrote {out / 'ensemble.pt'} ({args.ensemble} members) and {out / 'summary.json'}")
        return 0
    finally:
        if distributed:
            import torch.distributed as dist
            dist.destroy_process_group()


def _report(tr) -> None:
    import json
    r = tr.results
    out = tr.out
    print(json.dumps(r["validation"], indent=2))
    test = r.get("test")
    if test:
        f = test["forces"]
        print(f"test set ({test['n_structures']} structures): energy MAE "
              f"{1000 * test['energy']['mae_eV_per_atom']:.4g} meV/atom (mean offset removed "
              f"{1000 * test['energy']['centered_mae_eV_per_atom']:.4g})"
              + (f", force MAE {1000 * f['mae_eV_per_A']:.4g} meV/Å" if f else "") + " (summary.json 'test')")
    mae = r["validation"].get("forces_mae_eV_per_A")
    mae_s = f", validation force MAE {mae:.4g} eV/Å" if mae is not None else ""
    print(f"wrote {out / 'model.pt'} (best of {r['epochs']} epochs: epoch {r['best_epoch']} in "
          f"log.csv{mae_s}); "
          f"{out / 'summary.json'}, {out / 'log.csv'}, {out / 'learning_curve.png'}; "
          f"{out / 'checkpoint.pt'} (continue with --resume)", flush=True)
