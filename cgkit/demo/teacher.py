"""Stage a — teachers → ENNPs.

* Polyethylene: a united-atom melt (``build_pe_melt``) sampled by Langevin MD with the TraPPE-UA
  teacher (:class:`cgkit.potentials.trappe.TraPPEUA`, run by :mod:`cgkit.md`) at a few
  temperatures; every stored frame is labelled with the teacher's energy and forces.
* Silicon: diamond crystal at several temperatures, a liquid (far above SW's melting point),
  rattled and strained cells, labelled by Stillinger–Weber with energies, forces and stresses
  (:func:`cgkit.sampling.sample_configurations`).

Each set trains a small ENNP with :class:`cgkit.train.Trainer` for a fixed number of epochs
(the stage's wall-clock limit is only a safety stop that fails the stage).
Reported: validation force MAE against the teacher, beside the RMS of the teacher's forces
(the MAE of a model that predicts zero force is ≈ 0.8 × that RMS).
"""
from __future__ import annotations

import time

import numpy as np

from ..jsonutil import write_json
from .common import StageClock, check_training, run_md_steps

__all__ = ["run"]


def _train(ctx, clock: StageClock, name: str, data_path, species, p: dict, *,
           stress_weight: float = 0.0) -> dict:
    from ..train import Trainer
    out = ctx.dir("teacher") / f"{name}_ennp"
    model = {k: p[k] for k in ("channels", "l_max", "n_layers", "n_radial", "radial_hidden",
                               "readout_hidden")}
    cfg = {"output": str(out), "seed": ctx.seed,
           "model": {"species": list(species), "r_cut": p["r_cut"], "dtype": "float32",
                     "correlation": 1, **model},
           "data": {"train": data_path if isinstance(data_path, list) else str(data_path),
                    "val_fraction": 0.15},
           "loss": {"energy": 1.0, "forces": 10.0, "stress": float(stress_weight)},
           "optimizer": {"lr": p["lr"]}, "batch_size": p["batch_size"],
           "scheduler": {"factor": 0.5, "patience": 2, "min_lr": 1e-4},
           "max_epochs": p["max_epochs"], "max_time_minutes": clock.remaining_minutes(),
           "early_stopping_patience": 1000, "checkpoint_every": 0, "threads": 2}
    tr = Trainer(cfg).run()
    s = tr.results
    check_training(s, clock, f"the {name.upper()} ENNP")
    v = s["validation"]
    return {"model": ctx.rel(out / "model.pt"), "n_train": s["n_train"], "n_val": s["n_val"],
            "epochs": s["epochs"], "steps": s["steps"], "train_wall_s": s["wall_time_s"],
            "stop_reason": s["stop_reason"], "force_mae": v["forces_mae_eV_per_A"],
            "force_rmse": v["forces_rmse_eV_per_A"], "force_ref_rms": v["forces_ref_rms_eV_per_A"],
            "energy_mae_per_atom": v["energy_mae_eV_per_atom"], "stress_mae_GPa": v["stress_mae_GPa"],
            "n_parameters": int(sum(q.numel() for q in tr.model.parameters())),
            "learning_curve": ctx.rel(out / "learning_curve.png") if (out / "learning_curve.png").exists() else None}


def _polyethylene(ctx, clock: StageClock) -> dict:
    from ase.io import write

    from ..md import MolecularDynamics
    from ..potentials.polyethylene import build_pe_melt, write_psf_pdb
    from ..potentials.trappe import TraPPEUA
    from ..sampling import label

    c, tp = ctx.cfg["pe"], ctx.cfg["teacher_pe"]
    d = ctx.dir("teacher")
    atoms, topo = build_pe_melt(c["n_chains"], c["n_carbons"], c["density"], seed=ctx.seed,
                                temperature_K=c["temperature"])
    write_psf_pdb(d / "pe", atoms, topo)
    teacher = TraPPEUA.from_atoms(atoms, topo)
    frames, state = [], atoms
    md_steps = 0
    t_md = time.perf_counter()
    for k, T in enumerate(tp["temperatures"]):
        md = MolecularDynamics(teacher, state, timestep=tp["timestep"], temperature=T, friction=0.02,
                               seed=ctx.seed + 11 * k, store_every=tp["every"], log_every=0,
                               progress=ctx.progress)
        # equilibrate (storing nothing useful yet), then sample
        md.store_every = 0
        md_steps += run_md_steps(md, tp["equilibration"] if k == 0 else tp["equilibration"] // 3,
                                 500, clock, f"TraPPE-UA equilibration at {T:.0f} K")
        md.store_every = tp["every"]
        md_steps += run_md_steps(md, tp["every"] * tp["frames_per_temperature"], 500, clock,
                                 f"TraPPE-UA sampling at {T:.0f} K")
        for pos in md.results.positions[:, 0]:
            a = atoms.copy()
            a.positions = pos
            frames.append(a)
        state = atoms.copy()
        state.positions = md.positions[0]
        state.set_velocities(md.atoms(0).get_velocities())
        if k == 0:  # the 450 K state starts the ENNP MD of stage b
            start = state.copy()
    t_md = time.perf_counter() - t_md
    labelled = label(frames, teacher, stress=False)
    for a in labelled:  # keep the per-site arrays (label() copies them)
        a.info["source"] = "TraPPE-UA MD"
    # rattled copies: close contacts and stretched bonds that thermal MD rarely visits, so that
    # the ENNP learns the repulsive walls (a separate, down-weighted data source)
    rng = np.random.default_rng(ctx.seed + 5)
    n_r = int(round(tp.get("rattled_fraction", 0.3) * len(frames)))
    rattled = []
    for k in rng.choice(len(frames), size=min(n_r, len(frames)), replace=False):
        a = frames[int(k)].copy()
        a.positions += rng.normal(scale=tp.get("rattle", 0.06), size=a.positions.shape)
        rattled.append(a)
    rattled = label(rattled, teacher, stress=False) if rattled else []
    for a in rattled:
        a.info["source"] = "TraPPE-UA rattled"
    data = d / "pe_teacher.extxyz"
    write(str(data), labelled, format="extxyz")
    sources = [{"path": str(data), "weight": 1.0}]
    if rattled:
        write(str(d / "pe_teacher_rattled.extxyz"), rattled, format="extxyz")
        sources.append({"path": str(d / "pe_teacher_rattled.extxyz"), "weight": tp.get("rattled_weight", 0.3)})
    write(str(d / "pe_start.extxyz"), start, format="extxyz")
    f = np.concatenate([a.get_forces().ravel() for a in labelled])
    res = {"n_sites": len(atoms), "n_chains": c["n_chains"], "n_carbons": c["n_carbons"],
           "box_A": float(atoms.cell.lengths()[0]), "teacher_md_steps": md_steps,
           "teacher_md_wall_s": t_md, "n_frames": len(labelled), "n_rattled": len(rattled), "teacher_force_rms": float(np.sqrt(np.mean(f ** 2))),
           "temperatures_K": tp["temperatures"]}
    p = ctx.cfg["ennp_pe"]
    clock.check("TraPPE-UA labelling")
    res["ennp"] = _train(ctx, clock, "pe", sources, ("CH3", "CH2"), p)
    return res


def _silicon(ctx, clock: StageClock) -> dict:
    from ase.build import bulk
    from ase.io import write

    from ..potentials.stillinger_weber import StillingerWeber
    from ..sampling import sample_configurations

    ts = ctx.cfg["teacher_si"]
    d = ctx.dir("teacher")
    sw = StillingerWeber()
    cubic = bulk("Si", "diamond", 5.431, cubic=True)
    n = int(ts["supercell"])
    big = cubic * (n, n, n)
    t0 = time.perf_counter()
    frames = sample_configurations([big], sw, temperatures=ts["temperatures"],
                                   frames_per_temperature=ts["frames_per_temperature"],
                                   md_steps_between=ts["every"], equilibration_steps=ts["equilibration"],
                                   timestep_fs=1.0, rattle=ts["rattle"], n_rattled=ts["n_rattled"],
                                   strains=ts["strains"], seed=ctx.seed, progress=ctx.progress)
    kinds = (["crystal MD"] * (len(ts["temperatures"]) * ts["frames_per_temperature"])
             + ["rattled"] * ts["n_rattled"] + ["strained"] * len(ts["strains"]))
    liquid = sample_configurations([big], sw, temperatures=[ts["liquid_temperature"]],
                                   frames_per_temperature=max(2, ts["frames_per_temperature"] // 2),
                                   md_steps_between=ts["every"], equilibration_steps=2 * ts["equilibration"],
                                   timestep_fs=1.0, seed=ctx.seed + 1, progress=ctx.progress)
    kinds += ["liquid"] * len(liquid)
    # small cubic cells, strained and rattled: cheap stress labels for the elastic constants
    rng = np.random.default_rng(ctx.seed + 2)
    small = []
    for k in range(int(ts["n_small"])):
        a = cubic.copy()
        eps = rng.uniform(-1.0, 1.0, size=6) * float(ts.get("small_strain", 0.015))
        E = np.array([[eps[0], eps[5] / 2, eps[4] / 2], [eps[5] / 2, eps[1], eps[3] / 2],
                      [eps[4] / 2, eps[3] / 2, eps[2]]])
        a.set_cell(a.cell.array @ (np.eye(3) + E), scale_atoms=True)
        a.positions += rng.normal(scale=0.01, size=a.positions.shape)
        small.append(a)
    from ..sampling import label
    small = label(small, sw)
    kinds += ["strained 8-atom"] * len(small)
    frames = frames + liquid + small
    for a, kind in zip(frames, kinds):
        a.info["kind"] = kind
    data = d / "si_teacher.extxyz"
    write(str(data), frames, format="extxyz")
    f = np.concatenate([a.get_forces().ravel() for a in frames])
    res = {"n_frames": len(frames), "frame_kinds": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
           "sampling_wall_s": time.perf_counter() - t0,
           "teacher_force_rms": float(np.sqrt(np.mean(f ** 2)))}
    p = ctx.cfg["ennp_si"]
    clock.check("Stillinger–Weber sampling")
    res["ennp"] = _train(ctx, clock, "si", data, ("Si",), p, stress_weight=p["stress_weight"])
    return res


def run(ctx) -> dict:
    clock = ctx.clock("teacher")
    pe = _polyethylene(ctx, clock)
    si = _silicon(ctx, clock)
    figs = [x for x in (pe["ennp"].get("learning_curve"), si["ennp"].get("learning_curve")) if x]
    write_json(ctx.dir("teacher") / "models.json", {"pe": pe["ennp"]["model"], "si": si["ennp"]["model"]})
    return {"pe": pe, "si": si, "figures": figs}
