"""Stage d — CG MD with the force-matched tables and comparison with the mapped atomistic run.

CG Langevin MD (BAOAB, :class:`cgkit.md.MolecularDynamics`, one thread like the ENNP run of stage
b) starts from the first mapped frame. Compared with the mapped atomistic (ENNP) trajectory:

* bond-length and bond-angle distributions — Jensen–Shannon divergence (bits, common bins);
* R_g, R_ee, persistence length (bond autocorrelation), RDF — :class:`cgkit.properties.polymer.
  PolymerAnalysis` on both trajectories, :class:`cgkit.properties.compare.Comparison`;
* mass density (both runs are NVT in the same box, so equal by construction: reported as such);
* speed-up: simulated time per wall second of CG MD over ENNP atomistic MD on the same cores.
"""
from __future__ import annotations

import numpy as np

from ..trajectory import universe_from_frames as bead_universe
from ..units import AMU_PER_A3_TO_G_PER_CM3
from .common import plt, run_md_steps, savefig

__all__ = ["run", "bead_universe", "bonded_samples"]


def bonded_samples(positions, cell, bonds, angles):
    """Bond lengths (Å) and bond angles (deg) of every frame (minimum image), pooled over all
    bond and angle types: :func:`cgkit.forcematch.validate.bonded_samples` of each kind."""
    from ..forcematch.validate import bonded_samples as samples_of_kind
    from ..topology import Topology
    x = np.asarray(positions, dtype=np.float64)
    topo = Topology(x.shape[1], bonds=np.asarray(bonds), angles=np.asarray(angles))
    names = ["B"] * x.shape[1]  # one type: the demo compares all bonds (angles) together
    b = samples_of_kind("bond", x, cell, names, topo)
    a = samples_of_kind("angle", x, cell, names, topo)
    return (np.concatenate(list(b.values())) if b else np.empty(0),
            np.concatenate(list(a.values())) if a else np.empty(0))


def run(ctx) -> dict:
    from ase import Atoms

    from cgkit.properties.compare import Comparison, polymer_comparables
    from cgkit.properties.polymer import PolymerAnalysis

    from ..io_potential import load_potential
    from ..md import MolecularDynamics
    from ..stats import js_of_samples

    fmres = ctx.read_result("forcematch", needed_by="cg")
    cg_label = ("CG (hybrid: FM pairs + BI/IBI bonded)" if fmres.get("bonded_tables") == "boltzmann"
                else "CG (spline MS-CG)")
    at = ctx.read_result("atomistic", needed_by="cg")
    fd = ctx.out / "forcematch"
    pot = load_potential(ctx.need("forcematch", fd / "cg_potential.pt", "cg"))
    mp = np.load(ctx.need("forcematch", fd / "mapped.npz", "cg"))
    cell, masses, types = mp["cell"], mp["masses"], [str(t) for t in mp["bead_types"]]
    bonds, angles, molecule = mp["bonds"], mp["angles"], mp["molecule"]
    ref_pos = mp["positions"]
    p = ctx.cfg["cg"]
    T = ctx.cfg["pe"]["temperature"]
    start = Atoms(numbers=np.zeros(len(types), int), positions=ref_pos[0], cell=cell, pbc=True,
                  masses=masses)
    start.arrays["bead_types"] = np.array(types)
    clock = ctx.clock("cg")
    md = MolecularDynamics(pot, start, timestep=p["timestep"], temperature=T, friction=p["friction"],
                           seed=ctx.seed + 202, store_every=p["store_every"], log_every=p["store_every"],
                           n_replicas=p["n_replicas"], progress=ctx.progress, n_threads=1)
    n_done = run_md_steps(md, p["n_steps"], max(1000, p["store_every"]), clock, "CG MD")
    r = md.results
    n_skip = max(1, len(r.positions) // 10)  # drop the first 10 % (relaxation from the start)
    cg_pos = r.positions[n_skip:].reshape(-1, len(types), 3)
    cg_fs_per_s = n_done * p["timestep"] * p["n_replicas"] / r.elapsed_s
    speedup = cg_fs_per_s / at["fs_per_wall_s"]

    d = ctx.dir("cg")
    # bonded distributions on common bins
    b_ref, a_ref = bonded_samples(ref_pos, cell, bonds, angles)
    b_cg, a_cg = bonded_samples(cg_pos, cell, bonds, angles)
    lo_b, hi_b = min(b_ref.min(), b_cg.min()), max(b_ref.max(), b_cg.max())
    lo_a, hi_a = min(a_ref.min(), a_cg.min()), max(a_ref.max(), a_cg.max())
    js_b, pb, qb = js_of_samples(b_ref, b_cg, 30, "Å", value_range=(lo_b, hi_b))
    js_a, pa, qa = js_of_samples(a_ref, a_cg, 30, "deg", value_range=(lo_a, hi_a))
    fig, ax = plt().subplots(1, 2, figsize=(9, 3.5))
    for axis, (pp, qq, js, lab) in zip(ax, ((pb, qb, js_b, "bond length (Å)"), (pa, qa, js_a, "bond angle (deg)"))):
        axis.stairs(pp.density, pp.edges, label="mapped atomistic (ENNP)")
        axis.stairs(qq.density, qq.edges, label=cg_label)
        axis.set_xlabel(lab)
        axis.set_ylabel(f"probability density (1/{lab.split('(')[1][:-1]})")
        axis.set_title(f"JS divergence = {js:.4f} bit", fontsize=9)
        axis.legend(fontsize=8)
    savefig(fig, d / "bonded_distributions.png")

    # polymer analysis on both sides
    def analyse(pos):
        u = bead_universe(pos, cell, masses, bonds, molecule)
        pa_ = PolymerAnalysis(u.atoms, n_blocks=4, bins=40, msd=None, rdf=True, rdf_bins=40,
                              error_method="time" if len(pos) >= 8 else "chains")
        pa_.run()
        return pa_.summary()
    s_ref, s_cg = analyse(ref_pos), analyse(cg_pos)
    cmp = Comparison(polymer_comparables(s_ref, True), polymer_comparables(s_cg, True),
                     labels=("mapped atomistic (ENNP)", cg_label)).run()
    cmp.to_json(d / "comparison.json")
    sc = cmp.results["scalars"]

    def scal(k):
        v = sc.get(k, {})
        return {"reference": v.get("reference"), "reference_error": v.get("reference_error"),
                "cg": v.get("candidate"), "cg_error": v.get("candidate_error"), "unit": v.get("unit")}
    rg, lp, lp_wlc = scal("rg"), scal("lp_acf"), scal("lp_wlc")
    r2 = scal("ree2")  # root-mean-square end-to-end distance from <R_ee²>

    def sqrt_q(v, e):
        if v is None or v <= 0:
            return None, None
        return float(np.sqrt(v)), (None if e is None else float(e) / (2 * np.sqrt(v)))
    ree = {"unit": "Å"}
    ree["reference"], ree["reference_error"] = sqrt_q(r2["reference"], r2["reference_error"])
    ree["cg"], ree["cg_error"] = sqrt_q(r2["cg"], r2["cg_error"])
    rg_rel = abs(rg["cg"] - rg["reference"]) / rg["reference"] if rg["reference"] else float("nan")
    # RDF plot
    rdf_ref, rdf_cg = s_ref.get("rdf"), s_cg.get("rdf")
    figs = [ctx.rel(d / "bonded_distributions.png")]
    rdf_rms = None
    if rdf_ref and rdf_cg:
        fig, ax = plt().subplots(figsize=(5.5, 3.6))
        for s, lab in ((rdf_ref, "mapped atomistic (ENNP)"), (rdf_cg, cg_label)):
            ax.plot(s["r"], s["g_inter"], label=lab)
        ax.set_xlabel("bead–bead distance r (Å)")
        ax.set_ylabel("intermolecular g(r) (dimensionless)")
        ax.legend(fontsize=8)
        ax.set_title("bead RDF (different chains)", fontsize=9)
        savefig(fig, d / "rdf.png")
        figs.append(ctx.rel(d / "rdf.png"))
        rdf_rms = cmp.results["curves"].get("rdf_g_inter", {}).get("rms_difference")
    # R_g time series
    fig, ax = plt().subplots(figsize=(5.5, 3.4))
    u_r = bead_universe(ref_pos, cell, masses, bonds, molecule)
    u_c = bead_universe(cg_pos, cell, masses, bonds, molecule)

    def rg_series(u):
        out = []
        frags = u.atoms.fragments
        for _ in u.trajectory:
            out.append(np.mean([f.radius_of_gyration() for f in frags]))
        return np.array(out)
    t_ref = mp["time"] / 1000.0
    t_cg = r.frame_time[n_skip:] / 1000.0
    ax.plot(t_ref, rg_series(u_r), label="mapped atomistic (ENNP)", lw=1)
    rc = rg_series(u_c)
    ax.plot(np.repeat(t_cg, p["n_replicas"])[:len(rc)], rc, label=cg_label, lw=1, alpha=0.8)
    ax.set_xlabel("simulated time (ps)")
    ax.set_ylabel("mean chain R_g (Å)")
    ax.legend(fontsize=8)
    savefig(fig, d / "rg_time.png")
    figs.append(ctx.rel(d / "rg_time.png"))
    vol = abs(np.linalg.det(cell))
    density = float(masses.sum() / vol * AMU_PER_A3_TO_G_PER_CM3)
    # speed figure
    fig, ax = plt().subplots(figsize=(5, 3.2))
    ax.bar(["ENNP atomistic", "CG tables"], [at["fs_per_wall_s"], cg_fs_per_s], color=["C0", "C1"])
    ax.set_yscale("log")
    ax.set_ylabel("simulated fs per wall second")
    ax.set_title(f"speed-up {speedup:.0f}× (1 thread each)", fontsize=9)
    savefig(fig, d / "speed.png")
    figs.append(ctx.rel(d / "speed.png"))
    return {"n_steps": n_done, "n_steps_requested": p["n_steps"], "timestep_fs": p["timestep"],
            "n_replicas": p["n_replicas"], "simulated_ps": n_done * p["timestep"] / 1000.0,
            "md_wall_s": r.elapsed_s, "fs_per_wall_s": cg_fs_per_s,
            "atomistic_fs_per_wall_s": at["fs_per_wall_s"], "speedup": speedup,
            "mean_temperature_K": float(r.temperature[len(r.temperature) // 2:].mean()),
            "n_frames_reference": int(len(ref_pos)), "n_frames_cg": int(len(cg_pos)),
            "js_bond": js_b, "js_angle": js_a,
            "bond_mean_A": {"reference": float(b_ref.mean()), "cg": float(b_cg.mean())},
            "angle_mean_deg": {"reference": float(a_ref.mean()), "cg": float(a_cg.mean())},
            "rg": rg, "rg_rel_diff": rg_rel, "ree": ree, "persistence_length": lp,
            "persistence_length_wlc": lp_wlc,
            "rdf_inter_rms_difference": rdf_rms,
            "density_g_cm3": {"reference": density, "cg": density,
                              "note": "both runs are NVT in the mapped box: equal by construction"},
            "figures": figs}
