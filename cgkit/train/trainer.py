"""Training of cgkit potentials (ENNP) on energies, forces, stresses (and vectors/tensors).

``Trainer(config).run()`` — config is a dict (``cgkit train CONFIG.yaml`` reads it from YAML)::

    output: run_dir                 # folder for model.pt, checkpoint.pt, log.csv, summary.json, PNG
    seed: 0
    model: {preset: small, species: [Cu], r_cut: 4.5, dtype: float64}   # + any ENNP option
    # or  model: {file: init.pt}    (a saved ENNP, e.g. from `cgkit model init`)
    data:
      train: [{path: teacher.xyz, weight: 1.0}, {path: dft.xyz, weight: 10.0}]   # or one path
      val: null                     # a file, or null → random split of train
      val_fraction: 0.1
      vector_key: null              # atoms.info key of per-structure vectors (e.g. dipole, e·Å)
      tensor_key: null              # atoms.info key of per-structure symmetric traceless 3×3
                                    # tensors (e.g. traceless quadrupole, e·Å²); needs
                                    # model.tensor_head: true (vectors: model.vector_head: true)
    loss: {energy: 1.0, forces: 10.0, stress: 0.0, vectors: 0.0, tensors: 0.0}
    optimizer: {name: adamw, lr: 0.01, weight_decay: 0.0, amsgrad: false}
    scheduler: {factor: 0.5, patience: 10, min_lr: 1.0e-6}    # ReduceLROnPlateau on val loss
    ema_decay: 0.99                 # 0 disables the exponential moving average of weights
    clip_grad_norm: 10.0            # null disables clipping
    batch_size: 4                   # global batch (structures) per optimizer step
    max_epochs: 100
    max_steps: null
    max_time_minutes: null          # wall-clock budget (stopping early breaks bitwise resume)
    early_stopping_patience: 30     # epochs without validation improvement
    checkpoint_every: 100           # steps; a checkpoint is also written after every epoch
    threads: null                   # torch intra-op threads

Loss (per optimizer step over the global batch B, structure weights w_g)::

    L = w_E · Σ_g w_g (ΔE_g/n_g)² / |B|  +  w_F · Σ_i w_g(i) |ΔF_i|² / (3 n_B)
      + w_S · Σ_g w_g |Δσ_g|² / (9 |B|)  +  w_V · Σ_g w_g |Δv_g|² / (3 |B|)
      + w_T · Σ_g w_g ‖ΔT_g‖²_F / (9 |B|)

with v_g = Σ_{i∈g} v_i and T_g = Σ_{i∈g} T_i the sums of the per-atom equivariant heads (l = 1
vectors, l = 2 symmetric traceless tensors, :meth:`cgkit.nn.ENNP.equivariant_outputs`).

Exact resume: training restarts from ``checkpoint.pt`` in the output folder; the batch order
of every epoch is a function of (seed, epoch), so a run killed and resumed ends with the same
weights as an uninterrupted one. Multi-process (``torchrun``): every rank evaluates its share
of the global batch, gradients are summed over ranks with ``torch.distributed`` (gloo on CPU,
nccl on GPU), so the loss curve equals the single-process one for the same global batch.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..data import batch_graphs
from ..errors import InputError, TrainingError
from ..potential import scatter_sum
from ..progress import progress_bar
from .dataset import fit_statistics, graphs_from_atoms, load_structures, split_indices

__all__ = ["Trainer", "DEFAULT_CONFIG", "evaluate"]

DEFAULT_CONFIG = {
    "output": "train_out",
    "seed": 0,
    "model": {"preset": "small"},
    "data": {"train": None, "val": None, "val_fraction": 0.1, "vector_key": None, "tensor_key": None},
    "loss": {"energy": 1.0, "forces": 10.0, "stress": 0.0, "vectors": 0.0, "tensors": 0.0},
    "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "amsgrad": False},
    "scheduler": {"factor": 0.5, "patience": 10, "min_lr": 1e-6},
    "ema_decay": 0.99,
    "clip_grad_norm": 10.0,
    "batch_size": 4,
    "max_epochs": 100,
    "max_steps": None,
    "max_time_minutes": None,
    "early_stopping_patience": 30,
    "checkpoint_every": 100,
    "threads": None,
}

_TOP_KEYS = set(DEFAULT_CONFIG)


def merge_config(user: dict) -> dict:
    """DEFAULT_CONFIG updated by ``user`` (one level deep for dict sections); unknown keys raise."""
    if not isinstance(user, dict):
        raise InputError("the training config must be a mapping (YAML dict)")
    unknown = sorted(set(user) - _TOP_KEYS)
    if unknown:
        raise InputError(f"unknown training config keys {unknown}; allowed: {sorted(_TOP_KEYS)}")
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    for key, val in user.items():
        if isinstance(cfg[key], dict) and key != "model":
            if not isinstance(val, dict):
                raise InputError(f"config section '{key}' must be a mapping")
            bad = sorted(set(val) - set(cfg[key]))
            if bad:
                raise InputError(f"unknown keys {bad} in config section '{key}'; allowed: {sorted(cfg[key])}")
            cfg[key].update(val)
        else:
            cfg[key] = val
    return cfg


def _dist():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def init_distributed_from_env() -> bool:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def _loss_terms(model, batch, weights: dict, *, create_graph: bool):
    """Weighted squared-error sums of every loss term and the prediction dict."""
    want_f = weights["forces"] > 0 or not create_graph
    want_s = (weights["stress"] > 0 or not create_graph) and "stress" in batch.targets
    out = model.compute(batch, forces=want_f, stress=want_s, create_graph=create_graph)
    t = batch.targets
    n = batch.atoms_per_graph().to(out["energy"].dtype)
    w = t["weight"]
    sums = {"energy": (w * ((out["energy"] - t["energy"]) / n) ** 2).sum()}
    if want_f and "forces" in t:
        sums["forces"] = (w[batch.batch][:, None] * (out["forces"] - t["forces"]) ** 2).sum()
    if want_s:
        sums["stress"] = (w[:, None, None] * (out["stress"] - t["stress"]) ** 2).sum()
    heads = [k for k in _HEADS if weights.get(k, 0) > 0 and k in t]
    if heads:
        pred = structure_heads(model, batch, heads)
        for k in heads:
            err2 = ((pred[k] - t[k]) ** 2).reshape(len(w), -1).sum(1)
            sums[k] = (w * err2).sum()
    return sums, out


#: per-structure equivariant targets (sums of the per-atom heads ``<name>_head``) and their
#: Cartesian components per structure (the loss averages over those)
_HEADS = {"vectors": 3, "tensors": 9}


def structure_heads(model, batch, keys) -> dict:
    """Per-structure sums of the per-atom equivariant heads: ``vectors`` (G, 3) and/or
    ``tensors`` (G, 3, 3) (symmetric traceless), from one forward pass."""
    out = model.equivariant_outputs(batch)
    res = {}
    for k in keys:
        if k not in out:
            raise InputError(f"the model has no {k[:-1]} head; create it with model."
                             f"{k[:-1]}_head: true to train on or evaluate {k}")
        res[k] = scatter_sum(out[k], batch.batch, batch.n_graphs)
    return res


def _counts(graphs) -> dict:
    G = len(graphs)
    n = sum(g.n_atoms for g in graphs)
    return {"energy": G, "forces": 3 * n, "stress": 9 * G, **{k: c * G for k, c in _HEADS.items()}}


def evaluate(model, graphs, batch_size: int = 8) -> dict:
    """Validation metrics: MAE/RMSE of energy per atom (eV/atom), forces (eV/Å) and stress
    (eV/Å³) over ``graphs`` (unweighted), plus force RMS of the references; for structures
    with ``vectors``/``tensors`` targets and a model with the matching head, their MAE/RMSE
    over Cartesian components (units of the data) and the RMS of the references
    (``vectors_ref_rms``, ``tensors_ref_rms``: the error of predicting zero)."""
    acc = {k: [0.0, 0.0, 0] for k in ("energy", "forces", "stress", *_HEADS)}
    ref2 = {k: 0.0 for k in _HEADS}
    has_head = getattr(model, "equivariant_outputs", None) is not None
    ref_f2 = 0.0
    for s in range(0, len(graphs), batch_size):
        batch = batch_graphs(graphs[s:s + batch_size])
        t = batch.targets
        out = model.compute(batch, forces="forces" in t,
                            stress="stress" in t and bool(batch.pbc.all()))
        errs = {"energy": (out["energy"] - t["energy"]) / batch.atoms_per_graph()}
        if "forces" in t:
            errs["forces"] = out["forces"] - t["forces"]
            ref_f2 += float((t["forces"] ** 2).sum())
        if "stress" in out:
            errs["stress"] = out["stress"] - t["stress"]
        heads = [k for k in _HEADS if k in t and has_head
                 and getattr(model, f"{k[:-1]}_head", None) is not None]
        if heads:
            with torch.no_grad():
                pred = structure_heads(model, batch, heads)
            for k in heads:
                errs[k] = pred[k] - t[k]
                ref2[k] += float((t[k].double() ** 2).sum())
        for k, e in errs.items():
            e = e.detach().double()
            acc[k][0] += float(e.abs().sum())
            acc[k][1] += float((e ** 2).sum())
            acc[k][2] += e.numel()
    res = {}
    for k, (a, s2, c) in acc.items():
        if c:
            res[f"{k}_mae"] = a / c
            res[f"{k}_rmse"] = math.sqrt(s2 / c)
    if acc["forces"][2]:
        res["forces_ref_rms"] = math.sqrt(ref_f2 / acc["forces"][2])
    for k in _HEADS:
        if acc[k][2]:
            res[f"{k}_ref_rms"] = math.sqrt(ref2[k] / acc[k][2])
    return res


class Trainer:
    """Fit a potential to reference data (see module docstring for the config)."""

    def __init__(self, config: dict):
        self.config = merge_config(config)
        self.out = Path(self.config["output"])
        self.results: dict = {}

    # ------------------------------------------------------------------ setup
    def _build_model(self):
        from ..io_potential import load_potential
        from ..nn import ENNP, PRESETS
        mc = dict(self.config["model"])
        if "file" in mc:
            model = load_potential(mc["file"])
            fresh = not getattr(model, "metadata", {}).get("trained", False)
            return model, fresh
        preset = mc.pop("preset", None)
        species = mc.pop("species", None)
        r_cut = mc.pop("r_cut", 5.0)
        if not species:
            raise InputError("model.species is required (element symbols, e.g. [Si])")
        base = dict(PRESETS[preset]) if preset else {}
        if preset and preset not in PRESETS:
            raise InputError(f"unknown model preset '{preset}'; choose from {sorted(PRESETS)}")
        mc.setdefault("init_seed", int(self.config["seed"]))
        return ENNP(species, r_cut, **{**base, **mc}), True

    def _load_data(self, model):
        dc = self.config["data"]
        train = dc["train"]
        if train is None:
            raise InputError("data.train is required: an extxyz file or a list of {path, weight}")
        sources = train if isinstance(train, list) else [train]
        graphs = []
        for src in sources:
            src = {"path": src} if isinstance(src, (str, Path)) else dict(src)
            frames = load_structures(src["path"])
            graphs += graphs_from_atoms(frames, model.type_names, model.cutoff, dtype=model.dtype,
                                        weight=float(src.get("weight", 1.0)),
                                        vector_key=dc.get("vector_key"), tensor_key=dc.get("tensor_key"),
                                        source=str(src["path"]))
        if dc.get("val"):
            val = graphs_from_atoms(load_structures(dc["val"]), model.type_names, model.cutoff,
                                    dtype=model.dtype, vector_key=dc.get("vector_key"),
                                    tensor_key=dc.get("tensor_key"), source=str(dc["val"]))
            tr = graphs
        else:
            ti, vi = split_indices(len(graphs), float(dc["val_fraction"]), int(self.config["seed"]))
            tr, val = [graphs[i] for i in ti], [graphs[i] for i in vi]
        w = self.config["loss"]
        for name in ("forces", "stress", *_HEADS):
            if float(w.get(name, 0)) > 0:
                missing = sum(name not in g.targets for g in tr)
                if missing:
                    hint = (f" (and data.{name[:-1]}_key, the atoms.info key holding them)"
                            if name in _HEADS else "")
                    raise TrainingError(f"loss weight '{name}' > 0 but {missing} training structures have no "
                                        f"{name}; set loss.{name}: 0 or add the labels{hint}")
                if name in _HEADS and getattr(model, f"{name[:-1]}_head", None) is None:
                    raise InputError(f"loss weight '{name}' > 0 but the model has no {name[:-1]} head; "
                                     f"set model.{name[:-1]}_head: true")
        return tr, val

    def _optimizer(self, model):
        oc = self.config["optimizer"]
        name = str(oc["name"]).lower()
        if name not in ("adam", "adamw", "amsgrad"):
            raise InputError(f"optimizer.name must be adam, adamw or amsgrad, got {oc['name']!r}")
        cls = torch.optim.AdamW if name in ("adamw", "amsgrad") else torch.optim.Adam
        return cls(model.parameters(), lr=float(oc["lr"]), weight_decay=float(oc["weight_decay"]),
                   amsgrad=bool(oc["amsgrad"]) or name == "amsgrad")

    # ------------------------------------------------------------------ run
    def run(self) -> "Trainer":
        cfg = self.config
        dist, rank, world = _dist()
        if cfg["threads"]:
            torch.set_num_threads(int(cfg["threads"]))
        seed = int(cfg["seed"])
        torch.manual_seed(seed)
        model, fresh = self._build_model()
        train, val = self._load_data(model)
        self._n_train = len(train)
        if fresh:
            stats = fit_statistics(train, len(model.type_names))
            model.set_statistics(**stats)
        else:
            stats = {}
        ema = copy.deepcopy(model) if float(cfg["ema_decay"]) > 0 else None
        opt = self._optimizer(model)
        sc = cfg["scheduler"]
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=float(sc["factor"]),
                                                           patience=int(sc["patience"]),
                                                           min_lr=float(sc["min_lr"]))
        weights = {k: float(v) for k, v in cfg["loss"].items()}
        bs = int(cfg["batch_size"])
        if bs < 1:
            raise InputError(f"batch_size must be >= 1, got {bs}")
        n_batches = math.ceil(len(train) / bs)
        max_steps = cfg["max_steps"]
        max_epochs = int(cfg["max_epochs"])
        ckpt_every = int(cfg["checkpoint_every"])
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.out / "checkpoint.pt"

        st = {"epoch": 0, "batch": 0, "step": 0, "train_sum": 0.0, "train_n": 0, "best_val": math.inf,
              "best_epoch": -1, "bad_epochs": 0, "log": [], "elapsed": 0.0, "done": False}
        best_state = None
        if ckpt_path.is_file():
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            if ck.get("config") != _comparable(cfg):
                raise TrainingError(f"{ckpt_path} was written with a different config; use a new "
                                    "output folder or delete the checkpoint to start over")
            model.load_state_dict(ck["model"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            st = ck["state"]
            best_state = ck["best"]
            torch.set_rng_state(ck["rng"])
        t_start = time.time() - st["elapsed"]

        def save_ckpt():
            if rank != 0:
                return
            st["elapsed"] = time.time() - t_start
            payload = {"config": _comparable(cfg), "model": model.state_dict(),
                       "ema": ema.state_dict() if ema is not None else None,
                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": st,
                       "best": best_state, "rng": torch.get_rng_state()}
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save(payload, tmp)
            tmp.replace(ckpt_path)

        total = max_steps if max_steps else max_epochs * n_batches
        bar = progress_bar(total=total, initial=st["step"], desc="training", unit="step",
                           disable=None if rank == 0 else True)
        params = [p for p in model.parameters()]
        decay = float(cfg["ema_decay"])
        clip = cfg["clip_grad_norm"]
        budget = cfg["max_time_minutes"]
        stop_reason = None
        while not st["done"] and st["epoch"] < max_epochs:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 100003 + st["epoch"]))
            batches = [order[k:k + bs].tolist() for k in range(0, len(train), bs)]
            while st["batch"] < len(batches):
                idx = batches[st["batch"]]
                glob = [train[i] for i in idx]
                counts = _counts(glob)
                local = glob[rank::world]
                opt.zero_grad(set_to_none=False)
                loss_local = torch.zeros((), dtype=model.dtype)
                if local:
                    sums, _ = _loss_terms(model, batch_graphs(local), weights, create_graph=True)
                    for k, s in sums.items():
                        loss_local = loss_local + weights[k] * s / counts[k]
                    loss_local.backward()
                loss_val = loss_local.detach().clone()
                if dist is not None:
                    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                      for p in params])
                    dist.all_reduce(flat)
                    dist.all_reduce(loss_val)
                    o = 0
                    for p in params:
                        p.grad = flat[o:o + p.numel()].view_as(p).clone()
                        o += p.numel()
                if not torch.isfinite(loss_val):
                    raise TrainingError(f"the loss became {float(loss_val)} at step {st['step']}; lower "
                                        "optimizer.lr or check the data for bad labels")
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, float(clip))
                opt.step()
                if ema is not None:
                    with torch.no_grad():
                        for pe, p in zip(ema.parameters(), model.parameters()):
                            pe.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
                        for be, b in zip(ema.buffers(), model.buffers()):
                            be.copy_(b)
                st["train_sum"] += float(loss_val)
                st["train_n"] += 1
                st["batch"] += 1
                st["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss_val):.4g}")
                if max_steps and st["step"] >= int(max_steps):
                    stop_reason = "max_steps"
                    break
                if budget and (time.time() - t_start) > 60.0 * float(budget):
                    stop_reason = "max_time_minutes"
                    break
                if ckpt_every and st["step"] % ckpt_every == 0:
                    save_ckpt()
            # ---- end of epoch (or stop): validate on the EMA weights
            net = ema if ema is not None else model
            vloss, metrics = self._validate(net, val, weights, rank, world, dist)
            if not val:  # no validation set: schedule and stop on the training loss
                vloss = st["train_sum"] / max(st["train_n"], 1)
            sched.step(vloss)
            row = {"epoch": st["epoch"], "step": st["step"], "lr": opt.param_groups[0]["lr"],
                   "train_loss": st["train_sum"] / max(st["train_n"], 1), "val_loss": vloss,
                   **{f"val_{k}": v for k, v in metrics.items()}, "time_s": time.time() - t_start}
            st["log"].append(row)
            if vloss < st["best_val"]:
                st["best_val"], st["best_epoch"], st["bad_epochs"] = vloss, st["epoch"], 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                st["bad_epochs"] += 1
            st["epoch"] += 1
            st["batch"], st["train_sum"], st["train_n"] = 0, 0.0, 0
            if stop_reason is None and st["bad_epochs"] >= int(cfg["early_stopping_patience"]):
                stop_reason = "early_stopping"
            if stop_reason is not None or st["epoch"] >= max_epochs:
                st["done"] = True
                stop_reason = stop_reason or "max_epochs"
            save_ckpt()
        bar.close()
        st["stop_reason"] = stop_reason or st.get("stop_reason", "max_epochs")
        final = copy.deepcopy(ema if ema is not None else model)
        if best_state is not None:
            final.load_state_dict(best_state)
        self.model = final
        self.state = st
        if rank == 0:
            self._finish(final, val, stats, st, t_start)
        return self

    def _validate(self, net, val, weights, rank, world, dist):
        if not val:
            return math.nan, {}
        bs = int(self.config["batch_size"])
        counts = _counts(val)
        total = torch.zeros((), dtype=torch.float64)
        mine = val[rank::world]
        for s in range(0, len(mine), bs):
            sums, _ = _loss_terms(net, batch_graphs(mine[s:s + bs]), weights, create_graph=False)
            for k, v in sums.items():
                if weights.get(k, 0) > 0:
                    total += weights[k] * float(v.detach()) / counts[k]
        if dist is not None:
            dist.all_reduce(total)
        metrics = evaluate(net, val, bs) if rank == 0 or dist is None else {}
        return float(total), metrics

    def _finish(self, model, val, stats, st, t_start):
        from .. import __version__
        model.save(self.out / "model.pt", metadata={"trained": True, "cgkit_version": __version__,
                                                    "best_epoch": st["best_epoch"],
                                                    "training_config": _comparable(self.config)})
        rows = st["log"]
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r))
            with open(self.out / "log.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)
            self._plot(rows)
        metrics = evaluate(model, val, int(self.config["batch_size"])) if val else {}
        from ..units import EV_PER_A3_TO_GPA
        summary = {
            "n_train": self._n_train, "n_val": len(val), "epochs": st["epoch"], "steps": st["step"],
            "best_epoch": st["best_epoch"], "stop_reason": st.get("stop_reason"),
            "wall_time_s": time.time() - t_start,
            "validation": {
                "energy_mae_eV_per_atom": metrics.get("energy_mae"),
                "energy_rmse_eV_per_atom": metrics.get("energy_rmse"),
                "forces_mae_eV_per_A": metrics.get("forces_mae"),
                "forces_rmse_eV_per_A": metrics.get("forces_rmse"),
                "forces_ref_rms_eV_per_A": metrics.get("forces_ref_rms"),
                "stress_mae_GPa": metrics["stress_mae"] * EV_PER_A3_TO_GPA if "stress_mae" in metrics else None,
                "stress_rmse_GPa": metrics["stress_rmse"] * EV_PER_A3_TO_GPA if "stress_rmse" in metrics else None,
                # per-structure equivariant targets, in the units of the data (e.g. e·Å, e·Å²)
                **{f"{k}_{m}": metrics.get(f"{k}_{m}") for k in _HEADS for m in ("mae", "rmse", "ref_rms")
                   if f"{k}_{m}" in metrics},
            },
            "statistics": stats,
            "files": {"model": "model.pt", "log": "log.csv", "curve": "learning_curve.png"},
        }
        self.results = summary
        with open(self.out / "summary.json", "w") as fh:
            json.dump(summary, fh, indent=2)

    def _plot(self, rows):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        ep = [r["epoch"] for r in rows]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        axes[0].semilogy(ep, [r["train_loss"] for r in rows], label="train")
        axes[0].semilogy(ep, [r["val_loss"] for r in rows], label="validation")
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        axes[0].legend()
        if "val_forces_mae" in rows[0]:
            axes[1].semilogy(ep, [1000 * r["val_forces_mae"] for r in rows], label="force MAE (meV/Å)")
        axes[1].semilogy(ep, [1000 * r.get("val_energy_mae", np.nan) for r in rows], label="energy MAE (meV/atom)")
        axes[1].set_xlabel("epoch")
        axes[1].legend()
        fig.tight_layout()
        fig.savefig(self.out / "learning_curve.png", dpi=110)
        plt.close(fig)


def _comparable(cfg: dict) -> dict:
    """The parts of the config that must match for a resume (budget/threads may change)."""
    c = copy.deepcopy(cfg)
    for k in ("max_time_minutes", "threads", "output"):
        c.pop(k, None)
    return json.loads(json.dumps(c, default=str))
