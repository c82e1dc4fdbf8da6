"""Error metrics of a potential on labelled structures (``cgkit evaluate``, training test sets).

:func:`predict` runs a cgkit potential over AtomicGraphs with targets (from
:func:`cgkit.train.dataset.graphs_from_atoms`) and returns reference and predicted arrays;
:func:`error_metrics` turns them into the numbers of ``summary.json``; :class:`Evaluation`
does both for ASE frames and draws parity plots.

Metrics (all unweighted, over every structure/atom/component that has the label):

* energy: per atom (ΔE_g/n_g, eV/atom) and total (ΔE_g, eV) MAE/RMSE; the mean per-atom
  offset ⟨ΔE_g/n_g⟩ and the same metrics with the mean offset removed (``centered_*``:
  ΔE_g/n_g − ⟨ΔE/n⟩ per atom, ΔE_g − ⟨ΔE⟩ total) — what is left when only the constant
  offset (e.g. wrong isolated-atom energies) is forgiven;
* forces (eV/Å): MAE/RMSE over Cartesian components, the largest component error, the RMS
  of the reference forces (the error of predicting zero), and per species;
* stress (GPa, periodic structures with a stress label): MAE/RMSE over the 9 components;
* vectors / tensors (units of the data): MAE/RMSE over components of the per-structure sums of
  the model's l = 1 / l = 2 heads (needs ``vector_key``/``tensor_key`` and the head);
* charges (e) and dipole (e·Å, μ = Σ q_i r_i; open structures only — a periodic frame's
  dipole label is ignored): when the labels are present and the model has
  ``atomic_charges(graph, positions, cell)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..data import batch_graphs
from ..errors import InputError
from ..potential import scatter_sum
from ..results import Analysis, Results

__all__ = ["Evaluation", "predict", "error_metrics", "EVALUATION_FILES"]

#: files ``cgkit evaluate`` writes (parity plots only for the quantities present)
EVALUATION_FILES = ("summary.json", "energies.csv", "parity_energy.png", "parity_forces.png",
                    "parity_stress.png", "parity_vectors.png", "parity_tensors.png",
                    "parity_charges.png", "parity_dipole.png")


def _groups(graphs) -> list[list[int]]:
    """Indices of ``graphs`` grouped by (target keys, fully periodic) in order of first
    appearance, so that a batch never drops a label that only some structures have."""
    groups: dict = {}
    for k, g in enumerate(graphs):
        key = (tuple(sorted(g.targets)), bool(g.pbc.all()))
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def predict(model, graphs, *, batch_size: int = 8) -> dict:
    """Reference and predicted values of every label the structures carry.

    Returns numpy float64 arrays: ``energy_ref``/``energy_pred`` (G,) eV, ``n_atoms`` (G,);
    ``forces_ref``/``forces_pred`` (n_f, 3) eV/Å with ``forces_species`` (n_f,) (indices into
    ``model.type_names``); ``stress_ref``/``stress_pred`` (G_s, 3, 3) eV/Å³; and where present
    ``vectors_*`` (G_v, 3), ``tensors_*`` (G_t, 3, 3), ``charges_*`` (n_q,) e,
    ``dipole_*`` (G_d, 3) e·Å. Structures keep their input order within every quantity."""
    if not graphs:
        raise InputError("no structures to evaluate")
    batch_size = max(int(batch_size), 1)
    has_q = callable(getattr(model, "atomic_charges", None))
    has_eq = callable(getattr(model, "equivariant_outputs", None))
    per = {}  # index -> dict of arrays
    for idx in _groups(graphs):
        for s in range(0, len(idx), batch_size):
            part = idx[s:s + batch_size]
            batch = batch_graphs([graphs[k] for k in part])
            t = batch.targets
            want_s = "stress" in t and bool(batch.pbc.all())
            out = model.compute(batch, forces="forces" in t, stress=want_s)
            res = {"energy": (t["energy"], out["energy"])}
            if "forces" in t:
                res["forces"] = (t["forces"], out["forces"])
            if want_s:
                res["stress"] = (t["stress"], out["stress"])
            heads = [k for k in ("vectors", "tensors") if k in t and has_eq
                     and getattr(model, f"{k[:-1]}_head", None) is not None]
            if heads:
                with torch.no_grad():
                    eq = model.equivariant_outputs(batch)
                for k in heads:
                    res[k] = (t[k], scatter_sum(eq[k], batch.batch, batch.n_graphs))
            if has_q and ("charges" in t or "dipole" in t):
                with torch.no_grad():
                    q = model.atomic_charges(batch, batch.positions, batch.cell)
                if "charges" in t:
                    res["charges"] = (t["charges"], q)
                if "dipole" in t:
                    mu = scatter_sum(q[:, None] * batch.positions, batch.batch, batch.n_graphs)
                    res["dipole"] = (t["dipole"], mu)
            n = batch.atoms_per_graph()
            start = torch.cumsum(n, 0) - n
            for j, k in enumerate(part):
                a, b = int(start[j]), int(start[j] + n[j])
                d = {"n_atoms": int(n[j]), "species": batch.species[a:b]}
                for key, (ref, pred) in res.items():
                    if key == "dipole" and bool(batch.pbc[j].any()):
                        continue  # μ = Σ q_i r_i: open structures only (wrapping changes it)
                    sl = slice(a, b) if key in ("forces", "charges") else slice(j, j + 1)
                    d[key] = (ref[sl].detach().double().cpu().numpy(),
                              pred[sl].detach().double().cpu().numpy())
                per[k] = d
    order = [per[k] for k in range(len(graphs))]
    arr = {"n_atoms": np.array([d["n_atoms"] for d in order], dtype=np.int64),
           "energy_ref": np.concatenate([d["energy"][0] for d in order]),
           "energy_pred": np.concatenate([d["energy"][1] for d in order])}
    for key in ("forces", "stress", "vectors", "tensors", "charges", "dipole"):
        have = [d for d in order if key in d]
        if have:
            arr[f"{key}_ref"] = np.concatenate([d[key][0] for d in have])
            arr[f"{key}_pred"] = np.concatenate([d[key][1] for d in have])
            if key == "forces":
                arr["forces_species"] = np.concatenate([d["species"].numpy() for d in have])
            arr[f"{key}_n_structures"] = len(have)
    return arr


def _mae_rmse(err: np.ndarray) -> tuple[float, float]:
    err = np.asarray(err, dtype=np.float64).ravel()
    return float(np.mean(np.abs(err))), float(math.sqrt(np.mean(err ** 2)))


def error_metrics(arr: dict, type_names) -> dict:
    """The metrics of the module docstring from :func:`predict` output (JSON-ready; a
    quantity without labels is None)."""
    from ..units import EV_PER_A3_TO_GPA
    n = arr["n_atoms"].astype(np.float64)
    de = arr["energy_pred"] - arr["energy_ref"]
    de_atom = de / n
    offset = float(np.mean(de_atom))
    mae_a, rmse_a = _mae_rmse(de_atom)
    mae_t, rmse_t = _mae_rmse(de)
    cmae_a, crmse_a = _mae_rmse(de_atom - offset)
    cmae_t, crmse_t = _mae_rmse(de - np.mean(de))
    res = {"n_structures": int(len(n)), "n_atoms": int(n.sum()),
           "energy": {"mae_eV_per_atom": mae_a, "rmse_eV_per_atom": rmse_a,
                      "mae_eV": mae_t, "rmse_eV": rmse_t,
                      "mean_offset_eV_per_atom": offset,
                      "centered_mae_eV_per_atom": cmae_a, "centered_rmse_eV_per_atom": crmse_a,
                      "centered_mae_eV": cmae_t, "centered_rmse_eV": crmse_t,
                      "ref_std_eV_per_atom": float(np.std(arr["energy_ref"] / n))}}
    if "forces_ref" in arr:
        err = arr["forces_pred"] - arr["forces_ref"]
        mae, rmse = _mae_rmse(err)
        per = {}
        for s, name in enumerate(type_names):
            sel = arr["forces_species"] == s
            if sel.any():
                m, r = _mae_rmse(err[sel])
                per[str(name)] = {"mae_eV_per_A": m, "rmse_eV_per_A": r, "n_atoms": int(sel.sum())}
        res["forces"] = {"mae_eV_per_A": mae, "rmse_eV_per_A": rmse,
                         "max_abs_error_eV_per_A": float(np.abs(err).max()),
                         "ref_rms_eV_per_A": float(math.sqrt(np.mean(arr["forces_ref"] ** 2))),
                         "n_atoms": int(len(err)), "per_species": per}
    else:
        res["forces"] = None
    if "stress_ref" in arr:
        mae, rmse = _mae_rmse((arr["stress_pred"] - arr["stress_ref"]) * EV_PER_A3_TO_GPA)
        res["stress"] = {"mae_GPa": mae, "rmse_GPa": rmse, "n_structures": arr["stress_n_structures"]}
    else:
        res["stress"] = None
    for key, unit in (("vectors", "data"), ("tensors", "data"), ("charges", "e"), ("dipole", "e_A")):
        if f"{key}_ref" in arr:
            mae, rmse = _mae_rmse(arr[f"{key}_pred"] - arr[f"{key}_ref"])
            ref_rms = float(math.sqrt(np.mean(arr[f"{key}_ref"] ** 2)))
            suffix = "" if unit == "data" else f"_{unit}"
            res[key] = {f"mae{suffix}": mae, f"rmse{suffix}": rmse, f"ref_rms{suffix}": ref_rms,
                        "n_structures": arr[f"{key}_n_structures"]}
        else:
            res[key] = None
    return res


class Evaluation(Analysis):
    """Errors of a cgkit potential on labelled structures (see the module docstring).

    Parameters
    ----------
    model : a cgkit Potential (e.g. ``cgkit.load_potential("run/model.pt")``)
    frames : ASE Atoms with labels (energy required; forces, stress, charges, dipole and the
        ``vector_key``/``tensor_key`` info entries used where present)
    batch_size : structures per model call
    vector_key, tensor_key : ``atoms.info`` keys of per-structure vectors / symmetric traceless
        tensors (as in the training config's ``data`` section)
    source : name of the data (for messages and ``summary.json``)

    ``run()`` returns ``self``; ``.results`` (``summary()``, ``to_json(path)``) holds the
    metrics of :func:`error_metrics` plus ``model``/``data``; ``.arrays`` the
    :func:`predict` output; ``plot(dir)`` draws parity plots.
    """

    def __init__(self, model, frames, *, batch_size: int = 8, vector_key: str | None = None,
                 tensor_key: str | None = None, source: str = "", model_name: str = ""):
        from ..potential import Potential
        if not isinstance(model, Potential):
            raise InputError(f"evaluation needs a cgkit potential, got {type(model).__name__}")
        if int(batch_size) < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.model = model
        self.frames = list(frames)
        self.batch_size = int(batch_size)
        self.vector_key, self.tensor_key = vector_key, tensor_key
        self.source, self.model_name = source, model_name
        self.results = Results()
        self.arrays: dict = {}

    def run(self) -> "Evaluation":
        from .dataset import graphs_from_atoms
        m = self.model
        if not self.frames:
            raise InputError(f"no structures to evaluate in {self.source or 'the data'}")
        # potentials without type names (built-ins that take any element) get the elements of
        # the data, sorted, so that per-species errors have names
        self.type_names = tuple(m.type_names) if m.type_names else tuple(
            sorted({s for a in self.frames for s in a.get_chemical_symbols()}))
        graphs = graphs_from_atoms(self.frames, self.type_names, m.cutoff, dtype=m.dtype,
                                   vector_key=self.vector_key, tensor_key=self.tensor_key,
                                   source=self.source)
        for opt, key in ((self.vector_key, "vectors"), (self.tensor_key, "tensors")):
            if opt and not any(key in g.targets for g in graphs):
                raise InputError(f"no frame of {self.source or 'the data'} has info['{opt}'] "
                                 f"(--{key[:-1]}-key); give the key the frames store or drop the option")
        for key in ("vectors", "tensors"):
            if any(key in g.targets for g in graphs) and getattr(m, f"{key[:-1]}_head", None) is None:
                raise InputError(f"the data hold {key} ({'vector' if key == 'vectors' else 'tensor'}_key) "
                                 f"but the model has no {key[:-1]} head; drop the key or evaluate a "
                                 f"model made with {key[:-1]}_head: true")
        self.arrays = predict(m, graphs, batch_size=self.batch_size)
        metrics = error_metrics(self.arrays, self.type_names)
        self.results = Results({"model": self.model_name, "data": self.source,
                                "dtype": str(m.dtype).replace("torch.", ""), **metrics})
        return self

    def write_energies(self, path) -> Path:
        """``energies.csv``: frame, n_atoms, reference and predicted energy (eV)."""
        from ..jsonutil import write_text_atomic
        a = self.arrays
        lines = ["frame,n_atoms,energy_ref_eV,energy_pred_eV,error_eV_per_atom"]
        for k, (n, r, p) in enumerate(zip(a["n_atoms"], a["energy_ref"], a["energy_pred"])):
            lines.append(f"{k},{n},{r:.10g},{p:.10g},{(p - r) / n:.6g}")
        write_text_atomic(Path(path), "\n".join(lines) + "\n")
        return Path(path)

    def plot(self, directory) -> list[Path]:
        """Parity plots (prediction vs reference) of every quantity present, one PNG each."""
        if not self.arrays:
            return []
        return parity_plots(self.arrays, self.type_names, directory)


def parity_plots(arr: dict, type_names, directory) -> list[Path]:
    from ..plotting import pyplot, savefig
    from ..units import EV_PER_A3_TO_GPA
    plt = pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = arr["n_atoms"]
    panels = [("energy", arr["energy_ref"] / n, arr["energy_pred"] / n, "energy (eV/atom)", None)]
    if "forces_ref" in arr:
        panels.append(("forces", arr["forces_ref"], arr["forces_pred"], "force component (eV/Å)",
                       arr["forces_species"]))
    if "stress_ref" in arr:
        panels.append(("stress", arr["stress_ref"] * EV_PER_A3_TO_GPA,
                       arr["stress_pred"] * EV_PER_A3_TO_GPA, "stress component (GPa)", None))
    for key, label in (("vectors", "vector component"), ("tensors", "tensor component"),
                       ("charges", "charge (e)"), ("dipole", "dipole component (e·Å)")):
        if f"{key}_ref" in arr:
            panels.append((key, arr[f"{key}_ref"], arr[f"{key}_pred"], label, None))
    paths = []
    for key, ref, pred, label, species in panels:
        ref, pred = np.asarray(ref).reshape(len(ref), -1), np.asarray(pred).reshape(len(pred), -1)
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        if species is not None:
            for s, name in enumerate(type_names):
                sel = species == s
                if sel.any():
                    ax.scatter(ref[sel].ravel(), pred[sel].ravel(), s=4, alpha=0.6, label=str(name))
            if len(type_names) > 1:
                ax.legend(markerscale=3)
        else:
            ax.scatter(ref.ravel(), pred.ravel(), s=6, alpha=0.7)
        lo = float(min(ref.min(), pred.min()))
        hi = float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae, rmse = _mae_rmse(pred - ref)
        unit = label[label.find("(") + 1:-1] if label.endswith(")") else "(units of the data)"
        ax.set_title(f"MAE {mae:.3g}, RMSE {rmse:.3g} {unit}", fontsize=9)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        paths.append(savefig(fig, directory / f"parity_{key}.png"))
    return paths
