"""Stage b — atomistic Langevin MD of the polyethylene melt driven by the distilled ENNP.

Starts from the equilibrated TraPPE-UA state of stage a (450 K), runs BAOAB Langevin MD with
:class:`cgkit.md.MolecularDynamics` (one thread, as the CG run of stage d), stores frames with
the ENNP forces (needed by force matching) in ``atomistic/trajectory.npz``:
positions (F, n, 3) Å, forces (F, n, 3) eV/Å, cell (3, 3) Å, time (F,) fs. Also reports the
teacher's force error on a few of the ENNP-MD frames (does the model stay accurate on its own
trajectory?) and the speed in simulated fs per wall second.
"""
from __future__ import annotations

import time

import numpy as np

from .common import plt, run_md_steps, savefig

__all__ = ["run"]


def run(ctx) -> dict:
    import torch
    from ase.io import read

    from ..data import AtomicGraph
    from ..io_potential import load_potential
    from ..md import MolecularDynamics
    from ..potentials.polyethylene import chain_topology
    from ..potentials.trappe import TraPPEUA

    ctx.read_result("teacher", needed_by="atomistic")
    td = ctx.out / "teacher"
    model = load_potential(ctx.need("teacher", td / "pe_ennp" / "model.pt", "atomistic"))
    start = read(str(ctx.need("teacher", td / "pe_start.extxyz", "atomistic")))
    p = ctx.cfg["atomistic"]
    T = ctx.cfg["pe"]["temperature"]
    clock = ctx.clock("atomistic")
    md = MolecularDynamics(model, start, timestep=p["timestep"], temperature=T, friction=p["friction"],
                           seed=ctx.seed + 101, store_every=p["store_every"], log_every=p["store_every"],
                           progress=ctx.progress, n_threads=1)
    n_done = run_md_steps(md, p["n_steps"], max(p["store_every"], 100), clock, "ENNP MD of the melt")
    r = md.results
    pos = r.positions[:, 0]  # (F, n, 3)
    cell = md.cell
    # ENNP forces of the stored frames (the MD integrator's forces, recomputed for storage)
    forces = np.empty_like(pos)
    g0 = AtomicGraph.from_atoms(start, model.cutoff, type_names=model.type_names, dtype=model.dtype)
    t_f = time.perf_counter()
    from ..data import batch_graphs
    n = len(start)
    for s in range(0, len(pos), 8):  # batches of frames: one model call each
        gs = [g0.with_positions(torch.as_tensor(x, dtype=model.dtype), rebuild=True) for x in pos[s:s + 8]]
        forces[s:s + len(gs)] = model.compute(batch_graphs(gs))["forces"].double().numpy().reshape(-1, n, 3)
    t_f = time.perf_counter() - t_f
    # teacher check on a few ENNP-MD frames
    topo = chain_topology(start)
    teacher = TraPPEUA.from_atoms(start, topo)
    idx = np.unique(np.linspace(0, len(pos) - 1, min(5, len(pos))).astype(int))
    err, ref = [], []
    for k in idx:
        a = start.copy()
        a.positions = pos[k]
        g = teacher.graph(a)
        f_t = teacher.compute(g)["forces"].numpy()
        err.append(np.abs(forces[k] - f_t).ravel())
        ref.append(f_t.ravel())
    err, ref = np.concatenate(err), np.concatenate(ref)
    # did the ENNP keep the chains intact? C–C bond lengths over all stored frames (min image)
    L = cell
    dvec = pos[:, topo.bonds[:, 1]] - pos[:, topo.bonds[:, 0]]
    frac = dvec @ np.linalg.inv(L)
    blen = np.linalg.norm((frac - np.round(frac)) @ L, axis=-1)
    d = ctx.dir("atomistic")
    np.savez_compressed(d / "trajectory.npz", positions=pos, forces=forces, cell=cell,
                        time=r.frame_time, masses=start.get_masses(),
                        chain_id=start.arrays["chain_id"], bead_types=np.asarray(start.arrays["bead_types"], dtype=str))
    # thermodynamics plot
    fig, ax = plt().subplots(1, 2, figsize=(9, 3.4))
    t_ps = r.time / 1000.0
    ax[0].plot(t_ps, r.temperature[:, 0], lw=0.8)
    ax[0].axhline(T, color="k", ls="--", lw=0.8, label=f"target {T:.0f} K")
    ax[0].set_xlabel("time (ps)")
    ax[0].set_ylabel("kinetic temperature (K)")
    ax[0].legend()
    ax[1].plot(t_ps, r.potential_energy[:, 0] / len(start), lw=0.8)
    ax[1].set_xlabel("time (ps)")
    ax[1].set_ylabel("ENNP potential energy (eV/site)")
    fig.suptitle("ENNP atomistic MD of the united-atom PE melt")
    savefig(fig, d / "md_thermo.png")
    fs_per_s = n_done * p["timestep"] / r.elapsed_s
    return {"n_steps": n_done, "n_steps_requested": p["n_steps"], "timestep_fs": p["timestep"],
            "simulated_ps": n_done * p["timestep"] / 1000.0, "n_frames": len(pos),
            "md_wall_s": r.elapsed_s, "fs_per_wall_s": fs_per_s, "ns_per_day": r.ns_per_day,
            "threads": 1, "force_recompute_wall_s": t_f,
            "mean_temperature_K": float(r.temperature[len(r.temperature) // 2:, 0].mean()),
            "teacher_force_mae_on_md_frames": float(err.mean()),
            "bond_length_min_max_A": [float(blen.min()), float(blen.max())],
            "teacher_force_rms_on_md_frames": float(np.sqrt(np.mean(ref ** 2))),
            "figures": [ctx.rel(d / "md_thermo.png")]}
