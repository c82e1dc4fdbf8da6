"""Training of cgkit potentials (ENNP) on energies, forces, stresses (and vectors/tensors).

``Trainer(config).run()`` — config is a dict (``cgkit train CONFIG.yaml`` reads it from YAML).
A minimal complete config (everything else has the defaults below)::

    output: run_dir
    model: {preset: small, species: [Cu], r_cut: 4.5}
    data: {train: cu.xyz}
    max_epochs: 50

Every key with its default and unit: ``docs/training.md`` (a test checks it against
:data:`DEFAULT_CONFIG`); ``cgkit train --help`` shows a compact list. Beyond the basics:
``e0s`` (``average`` = least-squares per-species energies, or ``{El: eV}``), ``scheduler.name``
(``plateau`` | ``cosine`` | ``exponential``, with ``warmup_epochs``), ``stage_two`` (MACE's
SWA stage: new loss weights and lr from ``start_epoch``), ``data.test``/``data.test_fraction``
(metrics of :mod:`cgkit.train.evaluate` in ``summary.json`` ``test``), ``charges_weight``/
``dipole_weight`` (models with ``atomic_charges(graph, positions, cell)``).

Loss (per optimizer step over the global batch B, structure weights w_g)::

    L = w_E · Σ_g w_g (ΔE_g/n_g)² / |B|  +  w_F · Σ_i w_g(i) |ΔF_i|² / (3 n_B)
      + w_S · Σ_g w_g |Δσ_g|² / (9 |B|)  +  w_V · Σ_g w_g |Δv_g|² / (3 |B|)
      + w_T · Σ_g w_g ‖ΔT_g‖²_F / (9 |B|)
      + w_q · Σ_i w_g(i) Δq_i² / n_B  +  w_μ · Σ_g w_g |Δμ_g|² / (3 |B|),   μ_g = Σ_{i∈g} q_i r_i

with v_g = Σ_{i∈g} v_i and T_g = Σ_{i∈g} T_i the sums of the per-atom equivariant heads (l = 1
vectors, l = 2 symmetric traceless tensors, :meth:`cgkit.nn.ENNP.equivariant_outputs`).

EMA: after optimizer step t (t = 1, 2, ...) the averaged weights are updated with the decay
``min(ema_decay, (1 + t) / (10 + t))`` (the warm-up of torch_ema's ``use_num_updates``, which
NequIP and MACE use): early on the average follows the training weights, so a short run does
not keep a fraction ``ema_decay^t`` of the random initial weights. Validation, early stopping
and the saved model use the averaged weights.

Output folder (``output``): each epoch appends to ``log.csv`` (and redraws
``learning_curve.png`` after every epoch of >= 5 s, else at most every 30 s) and writes
``checkpoint.pt``; at the end ``model.pt``
(the best validation epoch), ``learning_curve.png`` and ``summary.json`` are written, each
atomically (a failed or killed run never leaves a half-written file). ``cgkit train`` refuses
a non-empty folder unless ``--resume`` (it holds a checkpoint of the same config) or
``--overwrite`` is given; see :class:`Trainer` for the library's ``resume``/``overwrite``.

Resume: training restarts from ``checkpoint.pt`` in the output folder (``resume=True``;
``cgkit train --resume``). The config must be the same except for the budget fields
(``max_epochs``, ``max_steps``, ``max_time_minutes``, ``early_stopping_patience``,
``checkpoint_every``, ``threads``): raising ``max_epochs`` extends a finished run. The batch
order of every epoch is a function of (seed, epoch), so a run killed and resumed ends with the
same weights as an uninterrupted one. Multi-process (``torchrun``): every rank evaluates its
share of the global batch, gradients are summed over ranks with ``torch.distributed`` (gloo on
CPU, nccl on GPU), so the loss curve equals the single-process one for the same global batch.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..data import batch_graphs
from ..errors import InputError, TrainingError
from ..jsonutil import write_json, write_text_atomic
from ..outputs import MANIFEST
from ..potential import scatter_sum
from ..progress import format_duration, progress_bar
from ..results import Analysis, Results
from .dataset import fit_statistics, graphs_from_atoms, load_structures, split_three

__all__ = ["Trainer", "DEFAULT_CONFIG", "BUDGET_KEYS", "TRAINING_FILES", "evaluate", "merge_config",
           "validate_config", "ema_decay_at"]

DEFAULT_CONFIG = {
    "output": "train_out",
    "seed": 0,
    "model": {"preset": "small"},
    "data": {"train": None, "val": None, "val_fraction": 0.1, "test": None, "test_fraction": 0.0,
             "vector_key": None, "tensor_key": None},
    "loss": {"energy": 1.0, "forces": 10.0, "stress": 0.0, "vectors": 0.0, "tensors": 0.0},
    "charges_weight": 0.0,
    "dipole_weight": 0.0,
    "e0s": "average",
    "refit_shifts": "auto",
    "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "amsgrad": False},
    "scheduler": {"name": "plateau", "factor": 0.5, "patience": 10, "min_lr": 1e-6,
                  "warmup_epochs": 0, "cosine_epochs": None, "gamma": 0.99},
    "stage_two": None,
    "ema_decay": 0.99,
    "clip_grad_norm": 10.0,
    "batch_size": 4,
    "max_epochs": 1000,
    "max_steps": None,
    "max_time_minutes": None,
    "early_stopping_patience": 50,
    "checkpoint_every": 100,
    "threads": None,
}

#: options of ``model.long_range`` (a :class:`cgkit.nn.LongRangeENNP`: local ENNP + learned charges + Coulomb)
LONG_RANGE_KEYS = ("charge_hidden", "charge_scheme", "baseline_charges", "learn_charges", "total_charge",
                   "electrostatics")

#: config fields that may differ between a run and its resumption (budgets, not the model)
BUDGET_KEYS = ("max_epochs", "max_steps", "max_time_minutes", "early_stopping_patience",
               "checkpoint_every", "threads")

#: files a training run writes into its output folder (``overwrite`` removes exactly these)
TRAINING_FILES = ("model.pt", "checkpoint.pt", "log.csv", "learning_curve.png", "summary.json", MANIFEST)
_TEMP_FILES = ("model.pt.tmp", "checkpoint.tmp")

#: learning_curve.png is redrawn after every epoch that took at least PLOT_EVERY_EPOCH_S
#: seconds, else at most every PLOT_INTERVAL_S seconds (always at the end)
PLOT_INTERVAL_S = 30.0
PLOT_EVERY_EPOCH_S = 5.0

#: learning-rate schedules (``scheduler.name``)
SCHEDULERS = ("plateau", "cosine", "exponential")

#: keys of the optional ``stage_two`` section (MACE's SWA stage: new loss weights and lr)
STAGE_TWO_KEYS = ("start_epoch", "energy_weight", "forces_weight", "stress_weight", "lr")

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


def _number(value, field: str, *, integer: bool = False, minimum=None, above=None, below=None,
            none_ok: bool = False, what: str = ""):
    """``value`` as a finite float (or int) within bounds, else an InputError naming ``field``."""
    if value is None and none_ok:
        return None
    hint = f" ({what})" if what else ""
    if value is None or isinstance(value, bool):
        raise InputError(f"config field {field} must be a number{hint}, got {value!r}")
    try:
        x = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string: accept it
    except (TypeError, ValueError):
        raise InputError(f"config field {field} must be a number{hint}, got {value!r}") from None
    if not math.isfinite(x):
        raise InputError(f"config field {field} must be finite{hint}, got {value!r}")
    if integer:
        if x != round(x):
            raise InputError(f"config field {field} must be a whole number{hint}, got {value!r}")
        x = int(round(x))
    if minimum is not None and x < minimum:
        raise InputError(f"config field {field} must be >= {minimum}{hint}, got {value!r}")
    if above is not None and x <= above:
        raise InputError(f"config field {field} must be > {above}{hint}, got {value!r}")
    if below is not None and x >= below:
        raise InputError(f"config field {field} must be < {below}{hint}, got {value!r}")
    return x


def validate_config(cfg: dict) -> dict:
    """A copy of a merged config with every number checked (InputError naming the field) and
    converted to int/float: loss weights >= 0 (not all 0), lr > 0, batch_size/max_epochs >= 1, ..."""
    c = copy.deepcopy(cfg)
    c["seed"] = _number(c["seed"], "seed", integer=True, minimum=0)
    for k, v in c["loss"].items():
        c["loss"][k] = _number(v, f"loss.{k}", minimum=0, what="a loss weight; 0 switches the term off")
    for k in ("charges_weight", "dipole_weight"):
        c[k] = _number(c[k], k, minimum=0, what="a loss weight; 0 switches the term off")
    if not any(v > 0 for v in c["loss"].values()) and not (c["charges_weight"] or c["dipole_weight"]):
        raise InputError("every loss weight is 0: nothing to fit; set loss.energy and/or loss.forces > 0")
    e0s = c["e0s"]
    if isinstance(e0s, dict):
        if not e0s:
            raise InputError("e0s is an empty mapping; give one energy (eV) per species, e.g. "
                             "{H: -13.6, O: -432.1}, or e0s: average")
        c["e0s"] = {str(k): _number(v, f"e0s.{k}", what="the isolated-atom energy, eV") for k, v in e0s.items()}
    elif e0s != "average":
        raise InputError(f"e0s must be 'average' (least-squares fit to the training energies) or a "
                         f"mapping species -> energy in eV (e.g. {{Cu: -3.5}}), got {e0s!r}")
    if c["refit_shifts"] not in ("auto", True, False):
        raise InputError(f"refit_shifts must be auto, true or false, got {c['refit_shifts']!r}")
    o = c["optimizer"]
    o["lr"] = _number(o["lr"], "optimizer.lr", above=0, what="the learning rate")
    o["weight_decay"] = _number(o["weight_decay"], "optimizer.weight_decay", minimum=0)
    s = c["scheduler"]
    if s["name"] not in SCHEDULERS:
        raise InputError(f"scheduler.name must be one of {', '.join(SCHEDULERS)}, got {s['name']!r}")
    s["factor"] = _number(s["factor"], "scheduler.factor", above=0, below=1,
                          what="the learning rate is multiplied by it on a plateau")
    s["patience"] = _number(s["patience"], "scheduler.patience", integer=True, minimum=0)
    s["min_lr"] = _number(s["min_lr"], "scheduler.min_lr", minimum=0)
    s["warmup_epochs"] = _number(s["warmup_epochs"], "scheduler.warmup_epochs", minimum=0,
                                 what="epochs of linear warm-up of the learning rate")
    s["cosine_epochs"] = _number(s["cosine_epochs"], "scheduler.cosine_epochs", above=0, none_ok=True,
                                 what="length of the cosine decay in epochs; null = max_epochs")
    if s["cosine_epochs"] is not None and s["cosine_epochs"] <= s["warmup_epochs"]:
        raise InputError(f"scheduler.cosine_epochs ({s['cosine_epochs']}) must exceed "
                         f"scheduler.warmup_epochs ({s['warmup_epochs']})")
    s["gamma"] = _number(s["gamma"], "scheduler.gamma", above=0, what="exponential decay per epoch, <= 1")
    if s["gamma"] > 1:
        raise InputError(f"config field scheduler.gamma must be <= 1 (decay per epoch), got {s['gamma']}")
    if s["min_lr"] >= o["lr"] and s["name"] != "plateau":
        raise InputError(f"scheduler.min_lr ({s['min_lr']}) must be below optimizer.lr ({o['lr']})")
    two = c["stage_two"]
    if two is not None:
        if not isinstance(two, dict):
            raise InputError("stage_two must be a mapping {start_epoch, energy_weight, forces_weight, "
                             "stress_weight, lr} or null")
        bad = sorted(set(two) - set(STAGE_TWO_KEYS))
        if bad:
            raise InputError(f"unknown keys {bad} in stage_two; allowed: {list(STAGE_TWO_KEYS)}")
        if "start_epoch" not in two:
            raise InputError("stage_two needs start_epoch (the first epoch, counted from 0, that uses "
                             "the stage-two loss weights and lr)")
        two = {k: two.get(k) for k in STAGE_TWO_KEYS}
        two["start_epoch"] = _number(two["start_epoch"], "stage_two.start_epoch", integer=True, minimum=1)
        for k in ("energy_weight", "forces_weight", "stress_weight"):
            two[k] = _number(two[k], f"stage_two.{k}", minimum=0, none_ok=True,
                             what="null keeps the stage-one weight")
        two["lr"] = _number(two["lr"], "stage_two.lr", above=0, none_ok=True,
                            what="constant learning rate of stage two; null keeps the schedule")
        c["stage_two"] = two
    c["ema_decay"] = _number(c["ema_decay"], "ema_decay", minimum=0, below=1,
                             what="0 disables the weight average")
    c["clip_grad_norm"] = _number(c["clip_grad_norm"], "clip_grad_norm", above=0, none_ok=True,
                                  what="null disables clipping")
    c["batch_size"] = _number(c["batch_size"], "batch_size", integer=True, minimum=1)
    c["max_epochs"] = _number(c["max_epochs"], "max_epochs", integer=True, minimum=1)
    c["max_steps"] = _number(c["max_steps"], "max_steps", integer=True, minimum=1, none_ok=True)
    c["max_time_minutes"] = _number(c["max_time_minutes"], "max_time_minutes", above=0, none_ok=True)
    c["early_stopping_patience"] = _number(c["early_stopping_patience"], "early_stopping_patience",
                                           integer=True, minimum=1, what="epochs")
    c["checkpoint_every"] = _number(c["checkpoint_every"] or 0, "checkpoint_every", integer=True, minimum=0,
                                    what="steps; 0 = only after every epoch")
    c["threads"] = _number(c["threads"], "threads", integer=True, minimum=1, none_ok=True)
    d = c["data"]
    d["val_fraction"] = _number(d["val_fraction"], "data.val_fraction", minimum=0, below=1)
    d["test_fraction"] = _number(d["test_fraction"], "data.test_fraction", minimum=0, below=1)
    if d["test"] and d["test_fraction"]:
        raise InputError("give either data.test (a file) or data.test_fraction (a random split), not both")
    train = d["train"]
    if isinstance(train, list):
        for k, src in enumerate(train):
            if isinstance(src, dict):
                if "path" not in src:
                    raise InputError(f"data.train[{k}] needs a 'path' (an extxyz file)")
                bad = sorted(set(src) - {"path", "weight"})
                if bad:
                    raise InputError(f"unknown keys {bad} in data.train[{k}]; allowed: ['path', 'weight']")
                if "weight" in src:
                    src["weight"] = _number(src["weight"], f"data.train[{k}].weight", minimum=0,
                                            what="multiplies the loss of this source's structures")
    if not isinstance(c["model"], dict):
        raise InputError("config section 'model' must be a mapping, e.g. {preset: small, species: [Cu], "
                         "r_cut: 4.5} or {file: init.pt}")
    return c


def ema_decay_at(decay: float, t: int) -> float:
    """Decay of the weight average at update ``t`` (1, 2, ...): ``min(decay, (1 + t)/(10 + t))``
    (torch_ema's ``use_num_updates`` warm-up, as in NequIP and MACE)."""
    return min(float(decay), (1.0 + t) / (10.0 + t))
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
    t = batch.targets
    qkeys = [k for k in ("charges", "dipole") if weights.get(k, 0) > 0 and k in t]
    # charges from the same forward pass as the energy (one evaluation of the model)
    out = model.compute(batch, forces=want_f, stress=want_s, create_graph=create_graph,
                        **({"charges": True} if qkeys else {}))
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
    if qkeys:
        q = out["charges"]
        if "charges" in qkeys:
            sums["charges"] = (w[batch.batch] * (q - t["charges"]) ** 2).sum()
        if "dipole" in qkeys:
            _refuse_periodic_dipoles([batch])
            mu = scatter_sum(q[:, None] * batch.positions, batch.batch, batch.n_graphs)
            sums["dipole"] = (w[:, None] * (mu - t["dipole"]) ** 2).sum()
    return sums, out


#: largest |Σ q_ref − Q| (e) accepted between a structure's reference charges and its total charge
CHARGE_SUM_TOL = 1e-3


def _check_charge_sums(model, graphs, which: str) -> None:
    """Refuse reference charges whose sum is not the total charge the model imposes on that
    structure (``initial_charges`` summed, else ``model.long_range.total_charge``): the charge
    loss could then never reach zero, and the fit would trade it against the dipoles."""
    total = getattr(model, "_total_charge", None)
    if not callable(total):
        return
    for k, g in enumerate(graphs):
        q = g.targets.get("charges")
        if q is None:
            continue
        Q = float(total(g, torch.float64)[0])
        s = float(q.double().sum())
        if abs(s - Q) > CHARGE_SUM_TOL:
            raise TrainingError(f"{which} structure {k}: its reference charges sum to {s:.4g} e, but "
                                f"its total charge is {Q:.4g} e (initial_charges summed, else "
                                "model.long_range.total_charge); the model keeps Σq = Q exactly, so "
                                "set initial_charges (or total_charge) to the structure's charge, or "
                                f"fix the charge labels (tolerance {CHARGE_SUM_TOL:g} e)")


def _refuse_periodic_dipoles(graphs) -> None:
    """The dipole loss μ_g = Σ q_i r_i (positions as stored) is defined for open structures
    (molecules, clusters: pbc all False) only; in a periodic cell it changes by q_i·L when an
    atom is wrapped (the polarization is defined only modulo a quantum), so dipole labels of
    periodic structures are refused when dipole_weight > 0."""
    n = sum(int(g.pbc.any(dim=1).sum()) for g in graphs if "dipole" in g.targets)
    if n:
        raise InputError(f"dipole_weight > 0 but {n} structures with a dipole label are periodic; "
                         "μ = Σ q_i r_i is defined for open structures (molecules, clusters with pbc "
                         "False) only: remove the dipole labels of periodic frames, set pbc to False "
                         "for isolated molecules, or set dipole_weight: 0")


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
    return {"energy": G, "forces": 3 * n, "stress": 9 * G, **{k: c * G for k, c in _HEADS.items()},
            "charges": n, "dipole": 3 * G}


def evaluate(model, graphs, batch_size: int = 8) -> dict:
    """Validation metrics: MAE/RMSE of energy per atom (eV/atom), forces (eV/Å) and stress
    (eV/Å³) over ``graphs`` (unweighted), plus force RMS of the references; for structures
    with ``vectors``/``tensors`` targets and a model with the matching head, their MAE/RMSE
    over Cartesian components (units of the data) and the RMS of the references
    (``vectors_ref_rms``, ``tensors_ref_rms``: the error of predicting zero)."""
    acc = {k: [0.0, 0.0, 0] for k in ("energy", "forces", "stress", *_HEADS, "charges", "dipole")}
    ref2 = {k: 0.0 for k in _HEADS}
    has_head = getattr(model, "equivariant_outputs", None) is not None
    has_q = callable(getattr(model, "atomic_charges", None))
    ref_f2 = 0.0
    for s in range(0, len(graphs), batch_size):
        batch = batch_graphs(graphs[s:s + batch_size])
        t = batch.targets
        want_q = has_q and ("charges" in t or "dipole" in t)
        out = model.compute(batch, forces="forces" in t,
                            stress="stress" in t and bool(batch.pbc.all()),
                            **({"charges": True} if want_q else {}))
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
        if want_q:
            q = out["charges"]
            if "charges" in t:
                errs["charges"] = q - t["charges"]
            if "dipole" in t:  # open structures only (see _refuse_periodic_dipoles)
                errs["dipole"] = (scatter_sum(q[:, None] * batch.positions, batch.batch,
                                              batch.n_graphs) - t["dipole"])[~batch.pbc.any(dim=1)]
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


class Trainer(Analysis):
    """Fit a potential to reference data (see the module docstring for the config).

    Parameters
    ----------
    config : the training config (dict; unknown keys and invalid values raise InputError)
    resume : ``None`` (library default): continue from ``checkpoint.pt`` in the output folder if
        there is one (same config up to :data:`BUDGET_KEYS`, same data files); refuse outputs of
        an earlier run without a checkpoint; keep other files. ``True``: require a checkpoint.
        ``False`` (``cgkit train`` without ``--resume``): refuse any non-empty output folder.
    overwrite : delete the files of an earlier training run in the output folder
        (:data:`TRAINING_FILES`; other files are kept) and start afresh.
    progress : ``None`` (auto): a tqdm bar on a terminal, periodic lines with an ETA otherwise,
        plus one line per epoch on stdout; ``False``: silent.

    ``run()`` returns ``self``; ``.results`` (also ``summary()``, ``to_json(path)``) holds what
    ``summary.json`` holds; ``.model`` is the trained (best, EMA) model; ``plot(dir)`` draws the
    learning curve.
    """

    def __init__(self, config: dict, *, resume: bool | None = None, overwrite: bool = False,
                 progress: bool | None = None):
        self.config = validate_config(merge_config(config))
        self.out = Path(self.config["output"])
        if resume and overwrite:
            raise InputError("resume and overwrite exclude each other: resume continues the run in "
                             f"{self.out}, overwrite deletes it")
        self.resume = resume
        self.overwrite = bool(overwrite)
        self.progress = progress
        self.results = Results()
        self.model = None
        self.state: dict | None = None
        self._bar = None
        self._verbose = False

    # ------------------------------------------------------------------ output folder
    def _open_output(self, rank: int):
        """Check the output folder before any work; returns the checkpoint to resume or None."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise InputError(f"training output {out} exists and is not a folder; choose another output")
        probe = out
        while not probe.exists() and probe.parent != probe:  # nearest existing ancestor
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            raise InputError(f"cannot write the training output {out}: {probe} is not writable; "
                             "choose another output folder")
        entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        ckpt = out / "checkpoint.pt"
        if self.overwrite:
            return None  # the earlier run's files are removed once the data have loaded
        if not entries:
            if self.resume is True:
                raise InputError(f"nothing to resume: {out} holds no checkpoint.pt; run without "
                                 "--resume to start a new training")
            return None
        if not ckpt.is_file():
            if self.resume is True:
                raise InputError(f"nothing to resume: {out} holds no checkpoint.pt; run without "
                                 "--resume to start a new training")
            stale = [n for n in entries if n in TRAINING_FILES]
            if self.resume is None and not stale:
                return None  # library use: the caller's own files (e.g. its data) are kept
            raise InputError(f"output folder {out} is not empty ({', '.join((stale or entries)[:4])}) "
                             "and holds no training checkpoint (checkpoint.pt) to resume; choose a new "
                             "output folder or pass --overwrite to replace the files of an earlier "
                             "training run there")
        ck = _load_checkpoint(ckpt)
        st = ck["state"]
        if self.resume is False:
            state = "finished" if st.get("done") else "unfinished"
            raise InputError(f"output folder {out} holds an {state} training run (checkpoint.pt at "
                             f"epoch {st['epoch']}, step {st['step']}); pass --resume to continue it "
                             "(with a larger max_epochs to extend a finished run), --overwrite to "
                             "start over, or choose a new output folder")
        diff = _config_difference(_with_new_defaults(ck.get("config") or {}), _comparable(self.config))
        if diff:
            raise TrainingError(f"{ckpt} was written with a different config ({diff}); only the budget "
                                f"fields {', '.join(BUDGET_KEYS)} may change when resuming; restore "
                                "the config, use a new output folder, or pass --overwrite to start over")
        old_sums = ck.get("data_sha256") or {}
        for path, digest in _data_fingerprint(self.config).items():
            if path in old_sums and old_sums[path] != digest:
                raise TrainingError(f"the training data file {path} changed since {ckpt} was written; "
                                    "resuming would mix two data sets: pass --overwrite to start over "
                                    "or use a new output folder")
        return ck

    def _say(self, msg: str) -> None:
        if not self._verbose:
            return
        bar = self._bar
        if bar is not None and hasattr(bar, "write") and not hasattr(bar, "line"):
            bar.write(msg)  # tqdm: print above the bar
        else:
            try:
                print(msg, flush=True)
            except (BrokenPipeError, ValueError):
                pass

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
        long_range = mc.pop("long_range", False)
        if not species:
            raise InputError("model.species is required (element symbols, e.g. [Si])")
        if preset and preset not in PRESETS:
            raise InputError(f"unknown model preset '{preset}'; choose from {sorted(PRESETS)}")
        base = dict(PRESETS[preset]) if preset else {}
        mc.setdefault("init_seed", int(self.config["seed"]))
        import inspect
        allowed = [n for n, p in inspect.signature(ENNP._build).parameters.items()
                   if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(mc) - set(allowed))
        if unknown:
            raise InputError(f"unknown option(s) {unknown} in the config's 'model' section; allowed: "
                             f"preset, species, r_cut, file, long_range, {', '.join(allowed)} (see "
                             "`cgkit model init --help`)")
        if long_range:
            from ..nn.longrange import LongRangeENNP
            if long_range is True:
                lr = {}
            elif isinstance(long_range, dict):
                lr = dict(long_range)
            else:
                raise InputError(f"model.long_range must be true or a mapping of long-range options, got "
                                 f"{long_range!r}")
            bad = sorted(set(lr) - set(LONG_RANGE_KEYS))
            if bad:
                raise InputError(f"unknown option(s) {bad} in model.long_range; allowed: {', '.join(LONG_RANGE_KEYS)}")
            return LongRangeENNP(species, r_cut, **{**base, **mc}, **lr), True
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
        def _file(path):
            return graphs_from_atoms(load_structures(path), model.type_names, model.cutoff,
                                     dtype=model.dtype, vector_key=dc.get("vector_key"),
                                     tensor_key=dc.get("tensor_key"), source=str(path))

        val = _file(dc["val"]) if dc.get("val") else None
        test = _file(dc["test"]) if dc.get("test") else []
        test_fraction = 0.0 if dc.get("test") else float(dc["test_fraction"])
        val_fraction = 0.0 if val is not None else float(dc["val_fraction"])
        if val is None or test_fraction:
            ti, vi, si = split_three(len(graphs), val_fraction, test_fraction, int(self.config["seed"]))
            tr = [graphs[i] for i in ti]
            if val is None:
                val = [graphs[i] for i in vi]
            if test_fraction:
                test = [graphs[i] for i in si]
        else:
            tr = graphs
        self._test = test
        w = dict(self.config["loss"], charges=self.config["charges_weight"],
                 dipole=self.config["dipole_weight"])
        for name in ("forces", "stress", *_HEADS, "charges", "dipole"):
            if float(w.get(name, 0)) > 0:
                missing = sum(name not in g.targets for g in tr)
                field = f"{name}_weight" if name in ("charges", "dipole") else f"loss.{name}"
                if missing:
                    hint = (f" (and data.{name[:-1]}_key, the atoms.info key holding them)"
                            if name in _HEADS else " (extxyz per-atom array 'charges', e)" if name == "charges"
                            else " (extxyz info 'dipole', 3 numbers, e·Å)" if name == "dipole" else "")
                    raise TrainingError(f"{field} > 0 but {missing} training structures have no "
                                        f"{name}; set {field}: 0 or add the labels{hint}")
                if name in _HEADS and getattr(model, f"{name[:-1]}_head", None) is None:
                    raise InputError(f"loss weight '{name}' > 0 but the model has no {name[:-1]} head; "
                                     f"set model.{name[:-1]}_head: true")
                if name == "dipole":
                    _refuse_periodic_dipoles(tr + list(val or []))
                if name == "charges":
                    _check_charge_sums(model, tr, "training")
                    _check_charge_sums(model, list(val or []), "validation")
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
        ck = self._open_output(rank)
        seed = int(cfg["seed"])
        torch.manual_seed(seed)
        model, fresh = self._build_model()
        e0s = self._check_model(model)
        train, val = self._load_data(model)
        self._n_train = len(train)
        if self.overwrite and rank == 0:  # inputs are fine: now replace the earlier run
            for name in TRAINING_FILES + _TEMP_FILES:
                (self.out / name).unlink(missing_ok=True)
        if fresh and hasattr(model, "set_statistics"):
            stats = fit_statistics(train, len(model.type_names), e0s=e0s)
            model.set_statistics(**stats)
            stats["e0s"] = "average" if e0s is None else "given"
        else:
            stats = {"e0s": "kept from the model file"}
            if e0s is not None:  # explicit E0s also replace the shifts of a trained model
                model.set_statistics(shift=e0s)
                stats = {"shift": list(map(float, e0s)), "e0s": "given"}
        decay = float(cfg["ema_decay"])
        ema = copy.deepcopy(model) if decay > 0 else None
        opt = self._optimizer(model)
        sc = cfg["scheduler"]
        sched = None
        if sc["name"] == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=float(sc["factor"]),
                                                               patience=int(sc["patience"]),
                                                               min_lr=float(sc["min_lr"]))
        self._sched = sched
        base_weights = {k: float(v) for k, v in cfg["loss"].items()}
        base_weights.update(charges=float(cfg["charges_weight"]), dipole=float(cfg["dipole_weight"]))
        two = cfg["stage_two"]
        bs = int(cfg["batch_size"])
        n_batches = math.ceil(len(train) / bs)
        max_steps = cfg["max_steps"]
        max_epochs = int(cfg["max_epochs"])
        ckpt_every = int(cfg["checkpoint_every"])
        ckpt_path = self.out / "checkpoint.pt"

        st = {"epoch": 0, "batch": 0, "step": 0, "train_sum": 0.0, "train_n": 0, "best_val": math.inf,
              "best_epoch": -1, "bad_epochs": 0, "log": [], "elapsed": 0.0, "done": False,
              "stage_two_from": None, "cosine_epochs": sc["cosine_epochs"] or max_epochs}
        best_state = None
        resumed = None
        if ck is not None:
            model.load_state_dict(ck["model"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
            opt.load_state_dict(ck["optimizer"])
            if sched is not None:
                sched.load_state_dict(ck["scheduler"])
            st = ck["state"]
            st.setdefault("stage_two_from", None)
            st.setdefault("cosine_epochs", sc["cosine_epochs"] or max_epochs)
            best_state = ck["best"]
            torch.set_rng_state(ck["rng"])
            resumed = (st["epoch"], st["step"], bool(st.get("done")))
            if st.get("done") and _stop_reason(st, cfg, st["elapsed"]) is None:
                st["done"] = False  # a larger budget extends a finished run
                st.pop("stop_reason", None)
        t_start = time.time() - st["elapsed"]
        data_sums = _data_fingerprint(cfg) if rank == 0 else {}
        self._verbose = rank == 0 and self.progress is not False and os.environ.get("CGKIT_PROGRESS") != "0"
        if resumed is not None:
            if st["done"]:
                self._say(f"training in {self.out} is already complete ({st.get('stop_reason')} at "
                          f"epoch {st['epoch']}); raise max_epochs (or max_steps, "
                          "early_stopping_patience) to extend it; rewriting its outputs")
            else:
                self._say(f"resuming the training in {self.out} from {ckpt_path.name}: epoch "
                          f"{st['epoch']}, step {st['step']}" + (" (extending a finished run)" if resumed[2] else ""))

        def save_ckpt():
            if rank != 0:
                return
            st["elapsed"] = time.time() - t_start
            payload = {"config": _comparable(cfg), "model": model.state_dict(),
                       "ema": ema.state_dict() if ema is not None else None,
                       "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict() if sched is not None else None, "state": st,
                       "best": best_state, "rng": torch.get_rng_state(), "data_sha256": data_sums}
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save(payload, tmp)
            tmp.replace(ckpt_path)

        total = max_steps if max_steps else max_epochs * n_batches
        bar = self._bar = progress_bar(total=total, initial=st["step"], desc="training", unit="step",
                                       disable=None if self._verbose else True)
        params = [p for p in model.parameters()]
        # only the parameters' gradients: the engine then skips every gradient that leads to the
        # positions alone (in the ENNP the convolution's couplings Y·CG and the spherical
        # harmonics; cgkit.nn.conv._needed), 9 % of a molecule training step
        trainable = [p for p in params if p.requires_grad]
        clip = cfg["clip_grad_norm"]
        budget = cfg["max_time_minutes"]
        stop_reason = None
        last_plot = time.time()
        epoch_t0, epoch_start = time.time(), st["epoch"]
        try:
            while not st["done"] and st["epoch"] < max_epochs:
                if two is not None and st["stage_two_from"] is None and st["epoch"] >= two["start_epoch"]:
                    self._start_stage_two(st)
                stage2 = st["stage_two_from"] is not None and st["epoch"] >= st["stage_two_from"]
                weights = self._weights(base_weights, two if stage2 else None)
                epoch_started = time.time()
                order = torch.randperm(len(train),
                                       generator=torch.Generator().manual_seed(seed * 100003 + st["epoch"]))
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
                        loss_local.backward(inputs=trainable or None)
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
                    lr_now = self._lr_at(st, n_batches, stage2)
                    if lr_now is not None:
                        for group in opt.param_groups:
                            group["lr"] = lr_now
                    opt.step()
                    if ema is not None:
                        d = ema_decay_at(decay, st["step"] + 1)
                        with torch.no_grad():
                            for pe, p in zip(ema.parameters(), model.parameters()):
                                pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
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
                lr_used = opt.param_groups[0]["lr"]
                if (sched is not None and st["step"] >= sc["warmup_epochs"] * n_batches
                        and not (stage2 and two["lr"] is not None)):
                    sched.step(vloss)
                row = {"epoch": st["epoch"], "step": st["step"], "lr": lr_used, "stage": 2 if stage2 else 1,
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
                    if two is not None and st["stage_two_from"] is None:
                        self._start_stage_two(st)  # as MACE: no improvement → go on with stage two
                    else:
                        stop_reason = "early_stopping"
                if stop_reason is not None or st["epoch"] >= max_epochs:
                    st["done"] = True
                    stop_reason = stop_reason or "max_epochs"
                save_ckpt()
                if rank == 0:
                    self._write_log(st["log"])
                    if (time.time() - epoch_started >= PLOT_EVERY_EPOCH_S
                            or time.time() - last_plot > PLOT_INTERVAL_S):
                        self.plot(self.out, rows=st["log"])
                        last_plot = time.time()
                per_epoch = (time.time() - epoch_t0) / max(st["epoch"] - epoch_start, 1)
                self._say(_epoch_line(row, max_epochs, time.time() - t_start,
                                      None if st["done"] else per_epoch * (max_epochs - st["epoch"])))
        finally:
            bar.close()
            self._bar = None
        st["stop_reason"] = stop_reason or st.get("stop_reason", "max_epochs")
        final = copy.deepcopy(ema if ema is not None else model)
        if best_state is not None:
            final.load_state_dict(best_state)
        refit = self._refit_shifts(final, train, e0s)
        if refit is not None:
            stats = {**stats, "shift_refit": refit}
        self.model = final
        self.state = st
        if rank == 0:
            self._finish(final, val, stats, st, t_start, resumed)
        return self

    def _refit_shifts(self, model, train, e0s):
        """Refit the per-species energy shifts E0_s of the final model by weighted least squares
        to the energies it leaves on the training set (``refit_shifts``; ``auto``: unless the E0s
        were given as isolated-atom energies). The shifts enter the energy linearly and not the
        forces, so this is the exact minimum of the energy loss over them with the network fixed:
        it removes a constant per-species offset the network has not yet learned away (forces,
        stress and charges unchanged). Returns the report dict or None (not done)."""
        mode = self.config["refit_shifts"]
        if mode is False or (mode == "auto" and e0s is not None) or not train:
            return None
        owner = model.local if hasattr(getattr(model, "local", None), "energy_shift") else model
        shift = getattr(owner, "energy_shift", None)
        if not isinstance(shift, torch.Tensor) or not model.type_names:
            return None
        S = len(model.type_names)
        rows, rhs = [], []
        bs = int(self.config["batch_size"])
        with torch.no_grad():
            for k in range(0, len(train), bs):
                batch = batch_graphs(train[k:k + bs])
                n = batch.atoms_per_graph().double()
                w = batch.targets["weight"].double().sqrt()
                counts = scatter_sum(torch.nn.functional.one_hot(batch.species, S).double(), batch.batch,
                                     batch.n_graphs)
                res = batch.targets["energy"].double() - model.energy(batch).double()
                rows.append(counts / n[:, None] * w[:, None])
                rhs.append(res / n * w)
        A, b = torch.cat(rows).numpy(), torch.cat(rhs).numpy()
        delta = np.linalg.lstsq(A, b, rcond=None)[0]
        before = float(np.sqrt(np.mean(b ** 2)))
        after = float(np.sqrt(np.mean((b - A @ delta) ** 2)))
        with torch.no_grad():
            shift += torch.as_tensor(delta, dtype=shift.dtype)
        return {"delta_eV": {str(t): float(d) for t, d in zip(model.type_names, delta)},
                "train_energy_rmse_eV_per_atom_before": before, "train_energy_rmse_eV_per_atom_after": after}

    # ------------------------------------------------------------------ schedules and stages
    def _check_model(self, model):
        """Refuse loss terms the model cannot predict; the E0s (n_species,) eV or None."""
        cfg = self.config
        for key in ("charges_weight", "dipole_weight"):
            if cfg[key] > 0 and not callable(getattr(model, "atomic_charges", None)):
                raise InputError(f"{key} > 0 but the model ({type(model).__name__}) predicts no atomic "
                                 "charges (it has no atomic_charges method); use a model with learned "
                                 f"charges or set {key}: 0")
        e0s = cfg["e0s"]
        if not isinstance(e0s, dict):
            return None
        names = [str(t) for t in (model.type_names or ())]
        missing = [n for n in names if n not in e0s]
        extra = sorted(set(e0s) - set(names))
        if missing or extra:
            raise InputError(f"e0s must give one energy (eV) for every species of the model {names}: "
                             + (f"missing {missing}" if missing else "")
                             + ("; " if missing and extra else "")
                             + (f"not in the model {extra}" if extra else ""))
        if not hasattr(model, "set_statistics"):
            raise InputError(f"the model ({type(model).__name__}) has no per-species energy shifts to "
                             "hold e0s; remove e0s from the config")
        return [e0s[n] for n in names]

    @staticmethod
    def _weights(base: dict, two: dict | None) -> dict:
        """Loss weights of the current stage (stage two replaces the given ones)."""
        if two is None:
            return dict(base)
        w = dict(base)
        for k in ("energy", "forces", "stress"):
            if two.get(f"{k}_weight") is not None:
                w[k] = float(two[f"{k}_weight"])
        return w

    def _start_stage_two(self, st: dict) -> None:
        """Stage two begins at epoch ``st['epoch']``: validation losses of the two stages differ
        (other weights), so the best model and early stopping start afresh."""
        st["stage_two_from"] = st["epoch"]
        st["best_val"], st["bad_epochs"] = math.inf, 0
        sched = getattr(self, "_sched", None)
        if sched is not None:  # the plateau detector compares losses of the new stage only
            sched.best, sched.num_bad_epochs = sched.mode_worse, 0
        self._say(f"stage two from epoch {st['epoch'] + 1}: loss weights "
                  f"{self._weights(dict(self.config['loss']), self.config['stage_two'])}"
                  + (f", lr {self.config['stage_two']['lr']}" if self.config["stage_two"]["lr"] else ""))

    def _lr_at(self, st: dict, n_batches: int, stage2: bool):
        """Learning rate of optimizer step ``st['step']`` (None: leave it to ReduceLROnPlateau).

        Linear warm-up over ``warmup_epochs``; ``cosine``: from optimizer.lr down to min_lr at
        ``cosine_epochs`` (default max_epochs of the first run), min_lr after; ``exponential``:
        optimizer.lr · gamma^epoch, not below min_lr; stage two with ``lr``: that lr."""
        cfg = self.config
        sc = cfg["scheduler"]
        two = cfg["stage_two"]
        if stage2 and two["lr"] is not None:
            return float(two["lr"])
        lr0, lr_min = float(cfg["optimizer"]["lr"]), float(sc["min_lr"])
        step = st["step"]
        warm = float(sc["warmup_epochs"]) * n_batches
        factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        name = sc["name"]
        if name == "plateau":
            return lr0 * factor if step < warm else None
        if name == "exponential":
            return max(lr_min, lr0 * float(sc["gamma"]) ** (step // n_batches)) * factor
        total = float(st["cosine_epochs"]) * n_batches
        p = min(1.0, max(0.0, (step - warm) / max(total - warm, 1.0)))
        return (lr_min + 0.5 * (lr0 - lr_min) * (1.0 + math.cos(math.pi * p))) * factor

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

    def _write_log(self, rows) -> None:
        """``log.csv`` (one row per epoch so far), written atomically."""
        if not rows:
            return
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(self.out / "log.csv", buf.getvalue())

    def _finish(self, model, val, stats, st, t_start, resumed):
        from .. import __version__
        from ..units import EV_PER_A3_TO_GPA
        self.out.mkdir(parents=True, exist_ok=True)
        model.save(self.out / "model.pt", metadata={"trained": True, "cgkit_version": __version__,
                                                    "best_epoch": st["best_epoch"],
                                                    "training_config": _comparable(self.config)})
        rows = st["log"]
        self._write_log(rows)
        curve = self.plot(self.out, rows=rows)
        metrics = evaluate(model, val, int(self.config["batch_size"])) if val else {}
        test = None
        if self._test:  # once, with the final (best, EMA) model; the metrics of `cgkit evaluate`
            from .evaluate import error_metrics, predict
            test = error_metrics(predict(model, self._test, batch_size=int(self.config["batch_size"])),
                                 model.type_names)
        shifts = getattr(model, "energy_shift", None)
        summary = {
            "n_train": self._n_train, "n_val": len(val), "n_test": len(self._test),
            "epochs": st["epoch"], "steps": st["step"],
            "best_epoch": st["best_epoch"], "stop_reason": st.get("stop_reason"),
            "scheduler": self.config["scheduler"]["name"],
            "stage_two_from_epoch": st.get("stage_two_from"),
            "e0s_eV": ({str(n): float(v) for n, v in zip(model.type_names, shifts.tolist())}
                       if shifts is not None and model.type_names else None),
            "wall_time_s": time.time() - t_start,
            "resumed_from": None if resumed is None else {"epoch": resumed[0], "step": resumed[1]},
            "ema_decay": float(self.config["ema_decay"]),
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
                # atomic charges (e) and dipoles Σ q_i r_i (e·Å) of models with atomic_charges
                **{f"{k}_{m}_{u}": metrics[f"{k}_{m}"] for k, u in (("charges", "e"), ("dipole", "eA"))
                   for m in ("mae", "rmse") if f"{k}_{m}" in metrics},
            },
            "test": test,
            "statistics": stats,
            "files": {"model": "model.pt", "log": "log.csv", "checkpoint": "checkpoint.pt",
                      "curve": curve[0].name if curve else None},
        }
        self.results = Results(summary)
        self.to_json(self.out / "summary.json")
        written = sorted(n for n in TRAINING_FILES if n != MANIFEST and (self.out / n).is_file())
        write_json(self.out / MANIFEST, {"command": "train", "files": written})

    def summary(self) -> dict:
        """What ``summary.json`` holds (empty before :meth:`run`)."""
        return dict(self.results)

    def plot(self, directory, rows=None) -> list[Path]:
        """Draw ``learning_curve.png`` (losses; validation force/energy MAE) into ``directory``
        from the epoch log; returns ``[path]`` (``[]`` before any epoch)."""
        rows = rows if rows is not None else (self.state or {}).get("log", [])
        if not rows:
            return []
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ep = [r["epoch"] for r in rows]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        axes[0].semilogy(ep, [r["train_loss"] for r in rows], label="train")
        if any(math.isfinite(r["val_loss"]) for r in rows):
            axes[0].semilogy(ep, [r["val_loss"] for r in rows], label="validation")
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        axes[0].legend()
        if "val_forces_mae" in rows[0]:
            axes[1].semilogy(ep, [1000 * r["val_forces_mae"] for r in rows], label="force MAE (meV/Å)")
        if "val_energy_mae" in rows[0]:
            axes[1].semilogy(ep, [1000 * r.get("val_energy_mae", np.nan) for r in rows],
                             label="energy MAE (meV/atom)")
            axes[1].legend()
        axes[1].set_xlabel("epoch")
        two = [r["epoch"] for r in rows if r.get("stage") == 2]
        if two:  # stage two (other loss weights: the loss curve jumps there)
            for ax in axes:
                ax.axvline(two[0] - 0.5, color="grey", ls=":", lw=1)
            axes[0].text(two[0] - 0.5, 0.98, " stage two", transform=axes[0].get_xaxis_transform(),
                         va="top", fontsize=8, color="grey")
        fig.tight_layout()
        path = directory / "learning_curve.png"
        tmp = directory / ".learning_curve.png.tmp"
        try:
            fig.savefig(tmp, dpi=110, format="png")
            os.replace(tmp, path)
        finally:
            plt.close(fig)
            tmp.unlink(missing_ok=True)
        return [path]


def _epoch_line(row: dict, max_epochs: int, elapsed: float, eta: float | None) -> str:
    stage = ", stage 2" if row.get("stage") == 2 else ""
    parts = [f"epoch {row['epoch'] + 1}/{max_epochs} (step {row['step']}{stage})",
             f"train loss {row['train_loss']:.4g}"]
    if math.isfinite(row["val_loss"]):
        parts.append(f"val loss {row['val_loss']:.4g}")
    if "val_forces_mae" in row:
        parts.append(f"val force MAE {row['val_forces_mae']:.4g} eV/Å")
    if "val_energy_mae" in row:
        parts.append(f"val energy MAE {1000 * row['val_energy_mae']:.4g} meV/atom")
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"elapsed {format_duration(elapsed)}")
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    return ", ".join(parts)


def _stop_reason(st: dict, cfg: dict, elapsed: float) -> str | None:
    """Which budget (under ``cfg``) stops a run in state ``st``, or None to go on."""
    if st["epoch"] >= int(cfg["max_epochs"]):
        return "max_epochs"
    if cfg["max_steps"] and st["step"] >= int(cfg["max_steps"]):
        return "max_steps"
    if st["bad_epochs"] >= int(cfg["early_stopping_patience"]):
        return "early_stopping"
    if cfg["max_time_minutes"] and elapsed > 60.0 * float(cfg["max_time_minutes"]):
        return "max_time_minutes"
    return None


def _data_fingerprint(cfg: dict) -> dict:
    """SHA-256 of every data file of the config (train sources and val), keyed by path."""
    import hashlib
    d = cfg["data"]
    train = d["train"] if isinstance(d["train"], list) else [d["train"]]
    paths = [str(t["path"] if isinstance(t, dict) else t) for t in train if t is not None]
    for key in ("val", "test"):
        if d.get(key):
            paths.append(str(d[key]))
    sums = {}
    for p in paths:
        try:
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            sums[p] = h.hexdigest()
        except OSError:
            continue  # a missing file is reported by the data loader
    return sums


def _load_checkpoint(path: Path) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error: not a checkpoint of ours
        raise InputError(f"{path} is not a readable cgkit training checkpoint ({type(exc).__name__}); "
                         "pass --overwrite to start over") from None
    if not isinstance(ck, dict) or not {"state", "model", "config"} <= set(ck):
        raise InputError(f"{path} is not a cgkit training checkpoint; pass --overwrite to start over")
    return ck


def _comparable(cfg: dict) -> dict:
    """The parts of the config that must match for a resume (all but output and budgets)."""
    c = copy.deepcopy(cfg)
    for k in ("output", *BUDGET_KEYS):
        c.pop(k, None)
    return json.loads(json.dumps(c, default=str))


def _with_new_defaults(old: dict) -> dict:
    """A checkpoint's config with the keys added since it was written (e0s, scheduler.name,
    stage_two, data.test, ...) set to their defaults — the behaviour the old run had."""
    out = copy.deepcopy(old)
    for key, val in _comparable(DEFAULT_CONFIG).items():
        if key not in out:
            out[key] = val
        elif isinstance(val, dict) and isinstance(out[key], dict) and key != "model":
            for k, v in val.items():
                out[key].setdefault(k, v)
    return out


def _config_difference(old: dict, new: dict, prefix: str = "") -> str:
    """Human-readable list of the fields that differ ("optimizer.lr: 0.01 in the checkpoint,
    0.02 now"), ignoring :data:`BUDGET_KEYS` and ``output``; empty if none."""
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        if not prefix and key in ("output", *BUDGET_KEYS):
            continue
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            sub = _config_difference(a, b, f"{prefix}{key}.")
            if sub:
                diffs.append(sub)
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} in the checkpoint, {b!r} now")
    return "; ".join(diffs)
