"""ENNP accuracy: cgkit beside NequIP and MACE, trained on the same QM data with the same recipe.

    python benchmarks/make_accuracy_data.py      # benchmarks/data/accuracy_thymine_*.xyz (GFN2-xTB)
    python benchmarks/accuracy.py                # 4 models x seeds 0 1, 30 epochs, 400 training frames
    python benchmarks/accuracy.py --epochs 15    # the shorter budget of docs/accuracy.md
    python benchmarks/accuracy.py --quick        # 2 epochs, 50 frames: a smoke test of every worker
    python benchmarks/accuracy.py --check-loop   # the NequIP/MACE loop reproduces cgkit's Trainer (~5 CPU s)

Data: thymine (C5H6N2O2, 15 atoms) at 500 K labelled by GFN2-xTB (benchmarks/make_accuracy_data.py):
500 training and 100 validation frames from one Langevin trajectory, 400 test frames from an
independent one; the runs use the first 400 training frames (``--n-train``, default 400) so that
the whole benchmark (4 models x 2 seeds x 30 epochs) takes ~20 CPU minutes (45 min wall on
2 cores shared with other jobs).

Models (matched pairs; r_cut 5 Å, float32, 8 Bessel functions with fixed frequencies — both
references default to fixed ones — and the same polynomial envelope exponent):

* ``nequip`` (nequip 0.19 ``NequIPGNNModel``): 2 layers, l_max 2, 32 features at every l, both
  parities, radial MLP 1x64, envelope p 6; beside ``cgkit_nequip``: the ENNP with
  ``channels 32, l_max 2, n_layers 2, full_parity, correlation 1, radial_hidden 64,
  radial_layers 1, readout_hidden 32, envelope_p 6``.
* ``mace`` (mace-torch ``ScaleShiftMACE``): 2 interactions, hidden 32x0e+32x1o, max_ell 2,
  correlation 2, radial MLP [64, 64, 64], readout MLP 16x0e, envelope p 5; beside
  ``cgkit_mace``: ``channels [32, 32, 0], l_max 2, n_layers 2, correlation 2, radial_hidden 64,
  radial_layers 3, readout_hidden 16, envelope_p 5`` (cgkit's l = 2 edge harmonics feed
  the l ≤ 1 features as MACE's max_ell 2 does).

Recipe, the same for all (cgkit's trainer through ``cgkit.train.Trainer``; NequIP and MACE
models through a loop in this file that reproduces it step for step): per-species energy
shifts from a least-squares fit of the training energies (E0s "average"), energy scale =
RMS force component of the training set, mean neighbour count from the training set; loss
w_E·mean((ΔE/n)²) + w_F·mean(ΔF²) with w_E = 1 (eV/atom)⁻², w_F = 100 (eV/Å)⁻²; AdamW
(lr 0.01, no weight decay), gradient-norm clipping 10, batch 5, the same batch order
(``randperm`` seeded by seed·100003 + epoch), one warm-up epoch then a cosine decay to 1e-5
at the last epoch, EMA of the weights (decay min(0.99, (1+t)/(10+t))); after every epoch the
EMA model is validated; the test set is evaluated once with the EMA weights of the epoch with
the lowest validation loss. Every model trains the same number of epochs (``--epochs``). That the
loop is cgkit's recipe is checked by ``--check-loop``: a small cgkit ENNP trained both ways
from the same weights gives the same per-epoch validation loss and force MAE (relative
difference 4e-8, float32).

Each code runs in its own subprocess (NequIP and MACE in their virtual environments under
``.bench-venvs/``, as benchmarks/ennp_speed.py: torch 2.13.0 + nequip 0.19.1 / mace-torch
0.3.16 with e3nn 0.4.4), one thread, one run at a time. Test metrics are computed by the
driver from the per-frame predictions every worker returns, so they are the same formula for
every code. Writes ``benchmarks/results/accuracy_thymine_<epochs>ep_<n_train>.{json,md}`` and
``..._curves.png`` (validation force MAE per epoch); the JSON is rewritten
after every run, and runs already in it are not repeated (``--fresh`` starts over).
Results and their discussion: docs/accuracy.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
VENVS = ROOT / ".bench-venvs"
PREFIX = "accuracy_thymine"
R_CUT = 5.0
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

#: the matched pairs: reference code -> (reference hyper-parameters, cgkit ENNP options)
ARCH = {
    "nequip": dict(num_layers=2, l_max=2, num_features=32, parity=True, radial_mlp_depth=1,
                   radial_mlp_width=64, num_bessels=8, polynomial_cutoff_p=6),
    "mace": dict(num_interactions=2, hidden_irreps="32x0e+32x1o", max_ell=2, correlation=2,
                 radial_MLP=[64, 64, 64], MLP_irreps="16x0e", num_bessel=8, num_polynomial_cutoff=5),
    "cgkit_nequip": dict(channels=32, l_max=2, n_layers=2, full_parity=True, correlation=1, n_radial=8,
                         trainable_radial=False, radial_hidden=64, radial_layers=1, readout_hidden=32,
                         envelope_p=6),
    "cgkit_mace": dict(channels=[32, 32, 0], l_max=2, n_layers=2, correlation=2, n_radial=8,
                       trainable_radial=False, radial_hidden=64, radial_layers=3, readout_hidden=16,
                       envelope_p=5),
}
PAIRS = (("cgkit_nequip", "nequip"), ("cgkit_mace", "mace"))
RECIPE = dict(lr=0.01, min_lr=1e-5, warmup_epochs=1, batch_size=5, energy_weight=1.0, forces_weight=100.0,
              ema_decay=0.99, clip=10.0)


# ---------------------------------------------------------------------------- shared helpers
def _read(path, n=None):
    """Frames of an extxyz file: (symbols per frame, positions (n,3) Å, energy eV, forces (n,3) eV/Å)."""
    from ase.io import read
    frames = read(str(path), ":")
    if n:
        frames = frames[:n]
    out = []
    for a in frames:
        out.append((a.get_chemical_symbols(), a.get_positions(), float(a.get_potential_energy()),
                    a.get_forces()))
    return frames, out


def _stats(train, species):
    """E0s by least squares (eV per species), RMS force component (eV/Å)."""
    import numpy as np
    counts = np.array([[s.count(x) for x in species] for s, _, _, _ in train], dtype=float)
    energies = np.array([e for _, _, e, _ in train])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    rms = float(np.sqrt(np.mean(np.concatenate([f.ravel() for *_, f in train]) ** 2)))
    return e0.tolist(), rms


def _lr(step: int, n_batches: int, epochs: int) -> float:
    """cgkit's cosine schedule with linear warm-up (Trainer._lr_at), per optimizer step."""
    lr0, lr_min = RECIPE["lr"], RECIPE["min_lr"]
    warm = RECIPE["warmup_epochs"] * n_batches
    factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    total = float(epochs) * n_batches
    p = min(1.0, max(0.0, (step - warm) / max(total - warm, 1.0)))
    return (lr_min + 0.5 * (lr0 - lr_min) * (1.0 + math.cos(math.pi * p))) * factor


def _loop(spec, model, predict, train, val, test):
    """The training loop of cgkit's Trainer for a foreign model.

    ``predict(model, idx_list, which, training)`` -> (energies (B,), forces (N,3)) as torch
    tensors for frames ``idx_list`` of set ``which`` ('train', 'val', 'test')."""
    import copy

    import numpy as np
    import torch
    torch.manual_seed(spec["seed"])
    epochs, bs, seed = spec["epochs"], RECIPE["batch_size"], spec["seed"]
    wE, wF = RECIPE["energy_weight"], RECIPE["forces_weight"]
    sets = {"train": train, "val": val, "test": test}
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=0.0)
    params = list(model.parameters())
    n_batches = math.ceil(len(train) / bs)

    def targets(which, idx):
        fr = [sets[which][i] for i in idx]
        e = torch.tensor([x[2] for x in fr], dtype=torch.float64)
        n = torch.tensor([len(x[0]) for x in fr], dtype=torch.float64)
        f = torch.tensor(np.concatenate([x[3] for x in fr]), dtype=torch.float64)
        return e, n, f

    def run_set(net, which):
        """(val loss, energy per atom errors, force errors) of ``net`` on a whole set."""
        de, df = [], []
        for k in range(0, len(sets[which]), bs):
            idx = list(range(k, min(k + bs, len(sets[which]))))
            e_pred, f_pred = predict(net, idx, which, False)
            e, n, f = targets(which, idx)
            de.append(((e_pred.detach().double() - e) / n).numpy())
            df.append((f_pred.detach().double() - f).numpy())
        de, df = np.concatenate(de), np.concatenate(df)
        return wE * float(np.mean(de ** 2)) + wF * float(np.mean(df ** 2)), de, df

    curve, best, best_state, step = [], math.inf, None, 0
    t0, c0 = time.time(), time.process_time()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        tl = []
        model.train()
        for k in range(0, len(train), bs):
            idx = order[k:k + bs].tolist()
            e, n, f = targets("train", idx)
            opt.zero_grad(set_to_none=False)
            e_pred, f_pred = predict(model, idx, "train", True)
            dtype = e_pred.dtype
            loss = (wE * (((e_pred - e.to(dtype)) / n.to(dtype)) ** 2).sum() / len(idx)
                    + wF * ((f_pred - f.to(dtype)) ** 2).sum() / f.numel())
            loss.backward()
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss {float(loss)} at step {step}")
            torch.nn.utils.clip_grad_norm_(params, RECIPE["clip"])
            for g in opt.param_groups:
                g["lr"] = _lr(step, n_batches, epochs)
            opt.step()
            d = min(RECIPE["ema_decay"], (1.0 + step + 1) / (10.0 + step + 1))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
                for be, b in zip(ema.buffers(), model.buffers()):
                    be.copy_(b)
            tl.append(float(loss.detach()))
            step += 1
        ema.eval()
        vloss, de, df = run_set(ema, "val")
        curve.append(dict(epoch=epoch, step=step, train_loss=float(np.mean(tl)), val_loss=vloss,
                          val_forces_mae=float(np.mean(np.abs(df))), val_energy_mae=float(np.mean(np.abs(de))),
                          time_s=time.time() - t0, cpu_s=time.process_time() - c0))
        print(f"[{spec['code']} seed {seed}] epoch {epoch + 1}/{epochs} val F MAE "
              f"{1e3 * curve[-1]['val_forces_mae']:.1f} meV/Å, {curve[-1]['time_s']:.0f} s", flush=True)
        if vloss < best:
            best, best_state = vloss, copy.deepcopy(ema.state_dict())
    ema.load_state_dict(best_state)
    ema.eval()
    e_all, f_all = [], []
    for k in range(0, len(test), bs):
        idx = list(range(k, min(k + bs, len(test))))
        e_pred, f_pred = predict(ema, idx, "test", False)
        e_all += e_pred.detach().double().tolist()
        f_all += f_pred.detach().double().reshape(-1).tolist()
    return dict(curve=curve, test_energy=e_all, test_forces=f_all,
                best_epoch=int(min(range(len(curve)), key=lambda i: curve[i]["val_loss"])),
                n_params=sum(p.numel() for p in model.parameters()),
                cpu_s=time.process_time() - c0, wall_s=time.time() - t0)


# ---------------------------------------------------------------------------- workers
def _worker_cgkit(spec: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from cgkit.train import Trainer, graphs_from_atoms
    from cgkit.data import batch_graphs
    frames_test, test = _read(spec["test"])
    species = spec["species"]
    n_train = spec.get("n_train")
    train_path = spec["train"]
    if n_train:  # a subset of the training file (quick runs)
        from ase.io import read, write
        sub = Path(spec["workdir"]) / "train_subset.xyz"
        write(str(sub), read(train_path, f":{n_train}"), format="extxyz")
        train_path = str(sub)
    cfg = {"output": str(Path(spec["workdir"]) / "run"), "seed": spec["seed"],
           "model": {"species": species, "r_cut": R_CUT, "dtype": "float32", **ARCH[spec["code"]]},
           "data": {"train": train_path, "val": spec["val"]},
           "loss": {"energy": RECIPE["energy_weight"], "forces": RECIPE["forces_weight"]},
           "e0s": "average", "optimizer": {"name": "adamw", "lr": RECIPE["lr"]},
           "scheduler": {"name": "cosine", "warmup_epochs": RECIPE["warmup_epochs"],
                         "min_lr": RECIPE["min_lr"]},
           "ema_decay": RECIPE["ema_decay"], "clip_grad_norm": RECIPE["clip"],
           "batch_size": RECIPE["batch_size"], "max_epochs": spec["epochs"],
           "early_stopping_patience": spec["epochs"] + 1, "checkpoint_every": 0, "threads": 1}
    c0, t0 = time.process_time(), time.time()
    tr = Trainer(cfg, overwrite=True, progress=None).run()
    cpu, wall = time.process_time() - c0, time.time() - t0
    model = tr.model
    model.eval()
    graphs = graphs_from_atoms(frames_test, model.type_names, model.cutoff, dtype=model.dtype)
    e_all, f_all = [], []
    for k in range(0, len(graphs), RECIPE["batch_size"]):
        out = model.compute(batch_graphs(graphs[k:k + RECIPE["batch_size"]]), forces=True)
        e_all += out["energy"].detach().double().tolist()
        f_all += out["forces"].detach().double().reshape(-1).tolist()
    curve = [dict(epoch=r["epoch"], step=r["step"], train_loss=r["train_loss"], val_loss=r["val_loss"],
                  val_forces_mae=r["val_forces_mae"], val_energy_mae=r["val_energy_mae"], time_s=r["time_s"])
             for r in tr.state["log"]]
    return dict(curve=curve, test_energy=e_all, test_forces=f_all, best_epoch=int(tr.state["best_epoch"]),
                n_params=sum(p.numel() for p in model.parameters()), cpu_s=cpu, wall_s=wall)


def _worker_nequip(spec: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from nequip.utils.global_state import set_global_state
    set_global_state()
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.model import NequIPGNNModel
    species = spec["species"]
    sets = {k: _read(spec[k], spec.get("n_train") if k == "train" else None) for k in ("train", "val", "test")}
    e0, rms = _stats(sets["train"][1], species)
    tm = ChemicalSpeciesToAtomTypeMapper(model_type_names=species,
                                         chemical_species_to_atom_type_map={s: s for s in species})
    nl = NeighborListTransform(r_max=R_CUT)
    datas = {}
    for k, (frames, _) in sets.items():
        datas[k] = []
        for a in frames:
            b = a.copy()
            b.calc = None
            datas[k].append(nl(tm(from_ase(b))))
    n_edges = sum(int(d[AtomicDataDict.EDGE_INDEX_KEY].shape[1]) for d in datas["train"])
    n_atoms = sum(len(a) for a in sets["train"][0])
    a = ARCH["nequip"]
    model = NequIPGNNModel(seed=spec["seed"], model_dtype="float32", type_names=species, r_max=R_CUT,
                           num_layers=a["num_layers"], l_max=a["l_max"], num_features=a["num_features"],
                           parity=a["parity"], radial_mlp_depth=a["radial_mlp_depth"],
                           radial_mlp_width=a["radial_mlp_width"], num_bessels=a["num_bessels"],
                           polynomial_cutoff_p=a["polynomial_cutoff_p"], avg_num_neighbors=n_edges / n_atoms,
                           per_type_energy_scales={s: rms for s in species},
                           per_type_energy_shifts=dict(zip(species, e0)))

    def predict(net, idx, which, training):
        batch = AtomicDataDict.batched_from_list(
            [{k: (v.clone() if torch.is_tensor(v) else v) for k, v in datas[which][i].items()} for i in idx])
        out = net(batch)
        return out[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(-1), out[AtomicDataDict.FORCE_KEY]
    res = _loop(spec, model, predict, sets["train"][1], sets["val"][1], sets["test"][1])
    res["e0s"], res["scale"] = e0, rms
    return res


def _worker_mace(spec: dict) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(spec["seed"])
    from ase.data import atomic_numbers
    from e3nn import o3
    from mace import data as mdata, modules, tools
    from mace.tools import torch_geometric
    species = spec["species"]
    sets = {k: _read(spec[k], spec.get("n_train") if k == "train" else None) for k in ("train", "val", "test")}
    e0, rms = _stats(sets["train"][1], species)
    zs = [atomic_numbers[s] for s in species]
    order = np.argsort(zs)  # MACE's AtomicNumberTable is sorted by Z
    z_table = tools.AtomicNumberTable([zs[i] for i in order])
    datas = {}
    for k, (frames, _) in sets.items():
        datas[k] = []
        for at in frames:
            b = at.copy()
            b.calc = None
            datas[k].append(mdata.AtomicData.from_config(mdata.config_from_atoms(b), z_table=z_table,
                                                         cutoff=R_CUT))
    n_edges = sum(int(d["edge_index"].shape[1]) for d in datas["train"])
    n_atoms = sum(len(at) for at in sets["train"][0])
    a = ARCH["mace"]
    model = modules.ScaleShiftMACE(
        r_max=R_CUT, num_bessel=a["num_bessel"], num_polynomial_cutoff=a["num_polynomial_cutoff"],
        max_ell=a["max_ell"],
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=a["num_interactions"], num_elements=len(species),
        hidden_irreps=o3.Irreps(a["hidden_irreps"]), MLP_irreps=o3.Irreps(a["MLP_irreps"]),
        gate=torch.nn.functional.silu, atomic_energies=np.array([e0[i] for i in order]),
        avg_num_neighbors=n_edges / n_atoms, atomic_numbers=list(z_table.zs),
        correlation=a["correlation"], radial_type="bessel", radial_MLP=list(a["radial_MLP"]),
        atomic_inter_scale=rms, atomic_inter_shift=0.0)

    def predict(net, idx, which, training):
        batch = torch_geometric.Batch.from_data_list([datas[which][i] for i in idx])
        out = net(batch.to_dict(), compute_force=True, training=training)
        return out["energy"].reshape(-1), out["forces"]
    return {**_loop(spec, model, predict, sets["train"][1], sets["val"][1], sets["test"][1]),
            "e0s": e0, "scale": rms}


def check_loop(workdir: str, epochs: int = 3, n_frames: int = 20) -> float:
    """Self-check of the recipe: a small cgkit ENNP trained by cgkit's Trainer and by this file's
    ``_loop`` (the loop NequIP and MACE models are trained with) from the same initial weights
    on the first ``n_frames`` training frames; returns the largest relative difference of the
    per-epoch validation loss and force MAE (float32 rounding: ~1e-9 measured)."""
    import torch
    from ase.io import read, write

    from cgkit.data import batch_graphs
    from cgkit.nn import ENNP
    from cgkit.train import Trainer, fit_statistics, graphs_from_atoms
    torch.set_num_threads(1)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    files = {}
    for k, n in (("train", n_frames), ("val", n_frames // 2), ("test", n_frames // 2)):
        files[k] = wd / f"check_{k}.xyz"
        write(str(files[k]), read(str(DATA / f"{PREFIX}_{k}.xyz"), f":{n}"), format="extxyz")
    sp = ["C", "H", "N", "O"]
    arch = dict(channels=8, l_max=1, n_layers=1, n_radial=4, radial_hidden=8, radial_layers=1,
                trainable_radial=False)
    cfg = {"output": str(wd / "check_run"), "seed": 0, "model": {"species": sp, "r_cut": R_CUT, **arch},
           "data": {"train": str(files["train"]), "val": str(files["val"])},
           "loss": {"energy": RECIPE["energy_weight"], "forces": RECIPE["forces_weight"]}, "e0s": "average",
           "optimizer": {"name": "adamw", "lr": RECIPE["lr"]},
           "scheduler": {"name": "cosine", "warmup_epochs": RECIPE["warmup_epochs"], "min_lr": RECIPE["min_lr"]},
           "ema_decay": RECIPE["ema_decay"], "clip_grad_norm": RECIPE["clip"], "batch_size": RECIPE["batch_size"],
           "max_epochs": epochs, "early_stopping_patience": epochs + 1, "checkpoint_every": 0}
    tr = Trainer(cfg, overwrite=True, progress=False).run()
    torch.manual_seed(0)
    model = ENNP(sp, R_CUT, init_seed=0, **arch)
    sets = {k: _read(f) for k, f in files.items()}
    graphs = {k: graphs_from_atoms(fr, model.type_names, model.cutoff, dtype=model.dtype)
              for k, (fr, _) in sets.items()}
    model.set_statistics(**fit_statistics(graphs["train"], len(sp)))

    def predict(net, idx, which, training):
        out = net.compute(batch_graphs([graphs[which][i] for i in idx]), forces=True, create_graph=training)
        return out["energy"].reshape(-1), out["forces"]
    res = _loop({"seed": 0, "epochs": epochs, "code": "check"}, model, predict, sets["train"][1],
                sets["val"][1], sets["test"][1])
    if len(tr.state["log"]) != len(res["curve"]):
        raise RuntimeError("Trainer and loop ran different numbers of epochs")
    return max(abs(a[k] / b[k] - 1.0) for a, b in zip(tr.state["log"], res["curve"])
               for k in ("val_loss", "val_forces_mae"))


WORKERS = {"cgkit_nequip": _worker_cgkit, "cgkit_mace": _worker_cgkit, "nequip": _worker_nequip,
           "mace": _worker_mace}


# ---------------------------------------------------------------------------- driver
def _python_for(code: str) -> tuple[str | None, str]:
    if code.startswith("cgkit"):
        return sys.executable, ""
    py = VENVS / code / "bin" / "python"
    if not py.exists():
        pkg = {"nequip": "nequip", "mace": "mace-torch"}[code]
        return None, (f"no virtual environment {VENVS / code}: create it with `python3 -m venv "
                      f"{VENVS / code} && {py.parent}/pip install torch==2.13.0 {pkg}` "
                      "(or run benchmarks/ennp_speed.py once)")
    return str(py), ""


def _run(code: str, spec: dict, log: Path) -> tuple[dict | None, str]:
    py, why = _python_for(code)
    if py is None:
        return None, why
    env = {**os.environ, **ENV}
    if code.startswith("cgkit"):
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as fh:
        r = subprocess.run([py, str(Path(__file__).resolve()), "--worker", code, json.dumps(spec)],
                           stdout=subprocess.PIPE, stderr=fh, text=True, env=env, cwd=str(ROOT))
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:]), ""
    tail = " | ".join(log.read_text().strip().splitlines()[-3:])
    return None, f"worker failed (exit {r.returncode}): {tail}"


def _metrics(res: dict, test) -> dict:
    """Test errors of one run from its per-frame predictions (the same formula for every code)."""
    import numpy as np
    e_ref = np.array([e for _, _, e, _ in test])
    n = np.array([len(s) for s, _, _, _ in test], dtype=float)
    f_ref = np.concatenate([f.ravel() for *_, f in test])
    de = (np.array(res["test_energy"]) - e_ref) / n
    df = np.array(res["test_forces"]) - f_ref
    if de.shape != e_ref.shape or df.shape != f_ref.shape or not (np.isfinite(de).all() and np.isfinite(df).all()):
        raise RuntimeError("a worker returned predictions of the wrong shape or non-finite values")
    dc = de - de.mean()
    return {"forces_mae_meV_per_A": 1e3 * float(np.mean(np.abs(df))),
            "forces_rmse_meV_per_A": 1e3 * float(np.sqrt(np.mean(df ** 2))),
            "energy_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(de))),
            "energy_rmse_meV_per_atom": 1e3 * float(np.sqrt(np.mean(de ** 2))),
            "energy_centered_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(dc))),
            "energy_mean_offset_meV_per_atom": 1e3 * float(de.mean()),
            "forces_ref_rms_meV_per_A": 1e3 * float(np.sqrt(np.mean(f_ref ** 2)))}


def _report(doc: dict, out_md: Path, out_png: Path) -> None:
    import numpy as np
    runs = doc["runs"]
    lines = [f"# ENNP accuracy on {doc['data']['molecule']} (GFN2-xTB)", "",
             f"Data: {doc['data']['n_train']} train / {doc['data']['n_val']} validation / "
             f"{doc['data']['n_test']} test frames; {doc['epochs']} epochs, batch {RECIPE['batch_size']}, "
             f"lr {RECIPE['lr']} (cosine, 1 warm-up epoch), loss 1:{RECIPE['forces_weight']:g} "
             "energy/atom : force, EMA 0.99, float32, 1 thread each. Generated by "
             f"`python benchmarks/accuracy.py {doc['argv']}`.", "",
             "Test errors (mean ± half-spread over seeds; per-seed values in the JSON):", "",
             "| model | seeds | params | force MAE meV/Å | force RMSE meV/Å | energy MAE meV/atom | "
             "energy MAE, offset removed | CPU min per run |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    summary = {}
    for code in ARCH:
        rs = [r for r in runs if r["code"] == code]
        if not rs:
            continue
        def ms(key):
            v = np.array([r["test"][key] for r in rs])
            return float(v.mean()), float((v.max() - v.min()) / 2)
        summary[code] = {k: ms(k)[0] for k in rs[0]["test"]}
        summary[code]["seeds"] = [r["seed"] for r in rs]
        fm, fr, em, ec = (ms("forces_mae_meV_per_A"), ms("forces_rmse_meV_per_A"),
                          ms("energy_mae_meV_per_atom"), ms("energy_centered_mae_meV_per_atom"))
        lines.append(f"| {code} | {','.join(str(r['seed']) for r in rs)} | {rs[0]['n_params']} | "
                     f"{fm[0]:.1f} ± {fm[1]:.1f} | {fr[0]:.1f} ± {fr[1]:.1f} | {em[0]:.2f} ± {em[1]:.2f} | "
                     f"{ec[0]:.2f} ± {ec[1]:.2f} | {np.mean([r['cpu_s'] for r in rs]) / 60:.1f} |")
    lines += ["", "Ratios of test force MAE (reference / cgkit; > 1: cgkit more accurate):", ""]
    for mine, ref in PAIRS:
        if mine in summary and ref in summary:
            r = summary[ref]["forces_mae_meV_per_A"] / summary[mine]["forces_mae_meV_per_A"]
            lines.append(f"- {ref} / {mine}: {r:.3f}")
            summary[f"ratio_{ref}_over_{mine}"] = r
    doc["summary"] = summary
    out_md.write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        colors = {"cgkit_nequip": "C0", "nequip": "C1", "cgkit_mace": "C2", "mace": "C3"}
        for r in runs:
            c = r["curve"]
            ax.plot([p["epoch"] + 1 for p in c], [1e3 * p["val_forces_mae"] for p in c],
                    color=colors[r["code"]], ls="-" if r["seed"] == 0 else "--",
                    label=f"{r['code']} seed {r['seed']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation force MAE (meV/Å)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title(f"{doc['data']['molecule']}, GFN2-xTB, {doc['data']['n_train']} training frames")
        fig.tight_layout()
        tmp = out_png.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=110)
        tmp.replace(out_png)
        plt.close(fig)
    except ImportError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30, help="epochs per run (the same for every code)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--codes", nargs="+", default=["cgkit_nequip", "nequip", "cgkit_mace", "mace"],
                    choices=list(ARCH))
    ap.add_argument("--n-train", type=int, default=400, help="use the first N training frames (0: all)")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 50 training frames, seed 0; "
                    "results to /tmp (a smoke test)")
    ap.add_argument("--fresh", action="store_true", help="ignore runs already in the result JSON")
    ap.add_argument("--workdir", default="/tmp/cgkit_accuracy", help="training outputs and worker logs")
    ap.add_argument("--out", default=str(RESULTS), help="folder of the result files")
    ap.add_argument("--check-loop", action="store_true",
                    help="only check that the loop used for NequIP/MACE reproduces cgkit's Trainer (~10 s)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](json.loads(args.spec))), flush=True)
        return
    if args.check_loop:
        d = check_loop(str(Path(args.workdir) / "check_loop"))
        print(f"largest relative difference Trainer vs loop (validation loss, force MAE per epoch): {d:.1e}")
        sys.exit(0 if d < 1e-5 else 1)
    argv = " ".join(sys.argv[1:])
    if args.quick:
        args.epochs, args.n_train, args.seeds = 2, 50, [0]
        args.out = str(Path(args.workdir) / "quick_results")
    paths = {k: DATA / f"{PREFIX}_{k}.xyz" for k in ("train", "val", "test")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        sys.exit(f"missing data {missing}: run `python benchmarks/make_accuracy_data.py` first")
    _, test = _read(paths["test"])
    from ase.io import read
    n_train = len(read(str(paths["train"]), ":"))
    n_train = min(n_train, args.n_train) if args.n_train else n_train
    n_val = len(read(str(paths["val"]), ":"))
    species = sorted({s for sy, *_ in test for s in sy})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{PREFIX}_{args.epochs}ep_{n_train}"  # one result set per budget and training-set size
    out_json, out_md, out_png = (out / f"{tag}.json", out / f"{tag}.md", out / f"{tag}_curves.png")
    doc = {"data": {"molecule": "thymine C5H6N2O2", "n_train": n_train, "n_val": n_val, "n_test": len(test),
                    "files": {k: str(p.relative_to(ROOT)) for k, p in paths.items()}},
           "epochs": args.epochs, "recipe": RECIPE, "arch": ARCH, "argv": argv, "runs": []}
    if out_json.exists() and not args.fresh:
        old = json.loads(out_json.read_text())
        if old.get("epochs") == args.epochs and old.get("data", {}).get("n_train") == n_train:
            doc["runs"] = old["runs"]
    for seed in args.seeds:
        for code in args.codes:
            if any(r["code"] == code and r["seed"] == seed for r in doc["runs"]):
                print(f"{code} seed {seed}: in {out_json} already", flush=True)
                continue
            wd = Path(args.workdir) / f"{code}_s{seed}"
            wd.mkdir(parents=True, exist_ok=True)
            spec = {"code": code, "seed": seed, "epochs": args.epochs, "species": species,
                    "n_train": args.n_train, "workdir": str(wd), **{k: str(p) for k, p in paths.items()}}
            t0 = time.time()
            print(f"{code} seed {seed}: training ({args.epochs} epochs, log {wd / 'worker.log'})", flush=True)
            res, why = _run(code, spec, wd / "worker.log")
            if res is None:
                print(f"{code} seed {seed}: FAILED — {why}", flush=True)
                continue
            test_m = _metrics(res, test)
            run = {"code": code, "seed": seed, "test": test_m, "curve": res["curve"], "best_epoch": res["best_epoch"],
                   "n_params": res["n_params"], "cpu_s": res["cpu_s"], "wall_s": res["wall_s"]}
            doc["runs"].append(run)
            print(f"{code} seed {seed}: test force MAE {test_m['forces_mae_meV_per_A']:.1f} meV/Å, RMSE "
                  f"{test_m['forces_rmse_meV_per_A']:.1f}; energy MAE {test_m['energy_mae_meV_per_atom']:.2f} "
                  f"meV/atom; {res['cpu_s'] / 60:.1f} CPU min ({(time.time() - t0) / 60:.1f} min wall)", flush=True)
            _report(doc, out_md, out_png)
            from cgkit.jsonutil import write_json
            write_json(out_json, doc)
    if doc["runs"]:
        _report(doc, out_md, out_png)
        from cgkit.jsonutil import write_json
        write_json(out_json, doc)
        print(out_md.read_text())


if __name__ == "__main__":
    main()
