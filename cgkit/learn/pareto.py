"""Loss-weight Pareto front: which energy/force/stress weights to train with.

:class:`LossWeightFront` trains the same config once per combination of loss weights (short runs:
the config's budget, or ``max_epochs``), evaluates every model on the same held-out structures —
energy MAE per atom (eV/atom) and force MAE (eV/Å), computed here, independently of the loss
that was minimised — and reports the non-dominated set (no other run is at least as good on both
errors and better on one). The config's own weights (the default ``energy: 1, forces: 10`` when it
gives none) are always among the runs, so the report says whether they are on the front or which
run dominates them.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..results import Analysis, Results

__all__ = ["LossWeightFront", "non_dominated", "held_out_errors"]


def non_dominated(points) -> list[int]:
    """Indices of the rows of ``points`` (n, m), lower is better in every column, that no other
    row dominates (≤ in all columns and < in one). Duplicates are all kept."""
    P = np.asarray(points, dtype=np.float64)
    keep = []
    for i in range(len(P)):
        dom = np.all(P <= P[i], axis=1) & np.any(P < P[i], axis=1)
        if not dom.any():
            keep.append(i)
    return keep


def held_out_errors(model, structures) -> dict:
    """Energy MAE per atom (eV/atom) and force MAE/RMSE (eV/Å) of ``model`` on labelled
    ``structures``."""
    from ..data import _targets_from_atoms
    e_err, f_err = [], []
    for k, a in enumerate(structures):
        t = _targets_from_atoms(a)
        if "energy" not in t or "forces" not in t:
            raise InputError(f"held-out structure {k} has no reference energy and forces")
        out = model.compute(model.graph(a))
        e_err.append((float(out["energy"][0]) - float(t["energy"][0])) / len(a))
        f_err.append(out["forces"].detach().double().numpy() - t["forces"].numpy())
    f = np.concatenate(f_err)
    return {"energy_mae_eV_per_atom": float(np.mean(np.abs(e_err))),
            "forces_mae_eV_per_A": float(np.mean(np.abs(f))),
            "forces_rmse_eV_per_A": float(np.sqrt(np.mean(f**2)))}


class LossWeightFront(Analysis):
    """``LossWeightFront(config, held_out, out, energy_weights=[...], forces_weights=[...]).run()``.

    ``config``: a ``cgkit train`` config (dict; ``output`` is replaced by ``out/w_NN``);
    ``held_out``: labelled ASE structures every run is evaluated on. Results: ``runs`` (weights,
    errors, ``on_front``), ``front`` (indices), ``reference`` (the config's own weights' run and
    whether it is on the front, else the runs dominating it)."""

    def __init__(self, config: dict, held_out: Sequence, out, *, energy_weights=(0.1, 1.0, 10.0),
                 forces_weights=(1.0, 10.0, 100.0), stress_weights=(None,), max_epochs: int | None = None):
        self.config = copy.deepcopy(config)
        self.held_out = list(held_out)
        if not self.held_out:
            raise InputError("the loss-weight front needs labelled held-out structures")
        self.out = Path(out)
        for name, ws in (("energy", energy_weights), ("forces", forces_weights)):
            if not ws or any(w is None or not np.isfinite(w) or w < 0 for w in ws):
                raise InputError(f"{name} weights must be numbers >= 0, got {list(ws)}")
        loss = dict(self.config.get("loss") or {})
        ref = (float(loss.get("energy", 1.0)), float(loss.get("forces", 10.0)), loss.get("stress"))
        combos = [(float(e), float(f), s) for e, f, s in itertools.product(energy_weights, forces_weights, stress_weights)]
        if ref not in combos:
            combos.append(ref)
        self.combos, self.reference = combos, combos.index(ref)
        self.max_epochs = max_epochs
        self.results = Results()

    def run(self) -> "LossWeightFront":
        from ..train.trainer import Trainer
        runs = []
        for k, (we, wf, ws) in enumerate(self.combos):
            cfg = copy.deepcopy(self.config)
            loss = dict(cfg.get("loss") or {})
            loss.update(energy=we, forces=wf)
            if ws is not None:
                loss["stress"] = float(ws)
            cfg["loss"] = loss
            cfg["output"] = str(self.out / f"w_{k:02d}")
            if self.max_epochs is not None:
                cfg["max_epochs"] = int(self.max_epochs)
            print(f"[pareto] run {k + 1}/{len(self.combos)}: energy {we:g}, forces {wf:g}"
                  + (f", stress {ws:g}" if ws is not None else ""), flush=True)
            tr = Trainer(cfg, resume=None, progress=False).run()
            errs = held_out_errors(tr.model, self.held_out)
            runs.append({"energy_weight": we, "forces_weight": wf, "stress_weight": ws,
                         "output": f"w_{k:02d}", **errs})
        pts = [(r["energy_mae_eV_per_atom"], r["forces_mae_eV_per_A"]) for r in runs]
        front = non_dominated(pts)
        for k, r in enumerate(runs):
            r["on_front"] = k in front
        ref = runs[self.reference]
        P = np.asarray(pts)
        dominating = [int(i) for i in np.nonzero(np.all(P <= P[self.reference], axis=1)
                                                   & np.any(P < P[self.reference], axis=1))[0]]
        self.results.update(runs=runs, front=front, reference={"index": self.reference, **ref,
                                                               "dominated_by": dominating})
        return self

    def summary(self) -> dict:
        return dict(self.results)

    def plot(self, directory) -> list[Path]:
        from ..plotting import pyplot, savefig
        plt = pyplot()
        r = self.results
        x = np.array([q["forces_mae_eV_per_A"] for q in r.runs])
        y = np.array([q["energy_mae_eV_per_atom"] for q in r.runs]) * 1000
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.scatter(x, y, c="0.6", label="runs")
        f = sorted(r.front, key=lambda i: x[i])
        ax.plot(x[f], y[f], "o-", color="C3", label="Pareto front")
        i = r.reference["index"]
        ax.scatter([x[i]], [y[i]], marker="*", s=180, color="C0", zorder=5, label="config's weights")
        for k, q in enumerate(r.runs):
            ax.annotate(f"{q['energy_weight']:g}:{q['forces_weight']:g}", (x[k], y[k]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("held-out force MAE (eV/Å)"); ax.set_ylabel("held-out energy MAE (meV/atom)")
        ax.legend(fontsize=8)
        return [savefig(fig, Path(directory) / "pareto.png")]
