"""Polyethylene case study: the demo's united-atom chain at a larger scale.

A chain-length series of TraPPE-UA polyethylene melts at 450 K: atomistic reference runs in
LAMMPS (C24, C48, C96), one 4:1 CG model (mappings/polyethylene_ua_4to1.yaml) fitted on the
two shorter chains, and CG MD (cgkit) of C24 … C384. Every number goes to
``results/results.json``; the README quotes them.

Steps

1. Melts from :func:`cgkit.potentials.polyethylene.build_pe_melt` (self-avoiding chains grown
   with Boltzmann-weighted TraPPE torsions at 450 K), written with ``write_lammps_data``.
2. LAMMPS (``/usr/bin/lmp``, one thread) with the same TraPPE-UA functions and cut-offs as
   :class:`cgkit.potentials.trappe.TraPPEUA` (``lj/mdf 8.5 10``, harmonic bonds/angles, OPLS
   torsions, no 1-2/1-3/1-4 LJ; the input style of tests/potentials/test_trappe.py, where the
   two agree to 1e-8): minimisation, NPT at 450 K and 1 atm (density), then NVT at the mean
   NPT volume with positions and forces written every ``dump_ps``. NPT with 1 fs steps; NVT
   with rRESPA (bonded terms every 1 fs, pairs every 2 fs).
3. Mapping with cgkit.mapping (positions by the mass-weighted M, forces by the basic force map).
4. CG model by the library's hybrid recipe (:func:`cgkit.forcematch.hybrid_fit`, as the demo,
   ``cgkit fm --bonded ibi`` and the hexane case study): bond and angle tables by Boltzmann
   inversion (from C48), pair and dihedral splines force-matched on C24 + C48 together (normal
   equations added) with those fixed (VOTCA's hybrid scheme), then IBI of the bond and angle
   tables against the mapped C48 melt (pairs and dihedrals kept).
5. CG MD (cgkit Langevin, 5 fs) of C24, C48, C96 (from the last mapped atomistic frame) and
   C192, C384 (new melts built at the C96 density and mapped), analysed with
   :class:`cgkit.properties.polymer.PolymerAnalysis`.
6. R_g, R_ee vs N, Flory exponent ν, characteristic ratio C_N and its N → ∞ extrapolation,
   persistence length, density, bond/angle JS (CG vs mapped), and speed: CG cgkit MD vs LAMMPS
   and vs cgkit's torch TraPPE-UA MD of the same C48 melt, simulated time per wall second on
   one core.
7. README.md is rendered from results.json by make_readme.py (default output folder only).

    python case_studies/polyethylene/run.py [--out DIR] [--quick] [--workdir DIR [--reuse-lammps]]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

TEMPERATURE = 450.0       # K
PRESSURE_BAR = 1.01325    # 1 atm
DENSITY_START = 0.75      # g/cm³ of the built melts (LAMMPS NPT then finds the model's own)
#: force-matching grids (the demo's for the same 4:1 map): pair r_min, r_max, spacing (Å);
#: dihedral spline spacing (degrees)
FM_GRIDS = {"pair": [2.5, 8.0, 0.25], "dihedral": 30.0}
CG_DT = 5.0               # fs
CG_FRICTION = 0.005       # 1/fs (5/ps)
C_C_BOND = 1.54           # Å, TraPPE r0: the bond length of the characteristic ratio

#: atomistic systems: n_carbons -> n_chains (≈ 1000 united-atom sites each)
ATOMISTIC = {24: 40, 48: 20, 96: 12}
#: CG-only systems: n_carbons -> n_chains
CG_ONLY = {192: 6, 384: 4}
#: chains used to fit the CG model
FIT_LENGTHS = (24, 48)

#: the melt whose mapped trajectory is the IBI target of the bonded terms
IBI_LENGTH = 48

FULL = {"cg_only": CG_ONLY, "npt_ps": 12.0, "nvt_ps": 50.0, "dump_ps": 0.5, "cg_equil_ps": 5.0,
        "cg_prod_ps": {24: 40.0, 48: 40.0, 96: 40.0, 192: 40.0, 384: 40.0},
        "cg_store_ps": 0.5, "torch_md_steps": 40,
        "ibi_iterations": 4, "ibi_equil_ps": 1.0, "ibi_ps": 15.0, "ibi_alpha": 1.0, "ibi_bins": 80}
QUICK = {"cg_only": {192: 4}, "npt_ps": 4.0, "nvt_ps": 10.0, "dump_ps": 0.5, "cg_equil_ps": 2.0,
         "cg_prod_ps": {24: 20.0, 48: 20.0, 96: 20.0, 192: 20.0, 384: 20.0},
         "cg_store_ps": 1.0, "torch_md_steps": 10,
         "ibi_iterations": 2, "ibi_equil_ps": 0.5, "ibi_ps": 4.0, "ibi_alpha": 1.0, "ibi_bins": 60}


def say(msg: str) -> None:
    print(f"[polyethylene] {msg}", flush=True)


# ----------------------------------------------------------------------------- LAMMPS
def lj_tail_pressure_coefficient(n_carbons: int, r_on: float = 8.5, r_cut: float = 10.0) -> float:
    """K (bar per (g/cm³)²) of the long-range LJ correction ΔP(ρ) = K ρ² of a PE melt of
    n-alkane chains C_N (2 CH3 + N−2 CH2): the pressure that cgkit's switched TraPPE-UA LJ
    (``lj/mdf r_on r_cut``) misses with respect to the full, untruncated LJ of TraPPE-UA,

        ΔP = −(2π/3) Σ_ab n_a n_b ∫_{r_on}^∞ r³ d/dr[u_ab(r)(1 − S(r))] dr,   g_ab(r) = 1 there,

    the standard tail-correction assumption (Allen & Tildesley), extended from r_cut down to
    r_on because the switch S removes part of the LJ between r_on and r_cut. Negative (the
    missing attraction)."""
    from cgkit.potentials.polyethylene import AMU_PER_A3_TO_G_CM3
    from cgkit.potentials.trappe import TRAPPE_LJ, TRAPPE_MASSES
    from cgkit.units import KB_EV
    m_chain = 2 * TRAPPE_MASSES["CH3"] + (n_carbons - 2) * TRAPPE_MASSES["CH2"]   # amu
    per_chain = {"CH3": 2.0, "CH2": float(n_carbons - 2)}
    r = np.linspace(r_on, r_cut, 20001)
    x = (r - r_on) / (r_cut - r_on)
    S = 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x)
    total = 0.0                                         # Σ_ab c_a c_b ∫ r³ du/dr dr (eV Å³)
    for a, ca in per_chain.items():
        for b, cb in per_chain.items():
            eps = np.sqrt(TRAPPE_LJ[a][0] * TRAPPE_LJ[b][0]) * KB_EV
            sig = 0.5 * (TRAPPE_LJ[a][1] + TRAPPE_LJ[b][1])
            u = 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)
            inner = np.trapezoid(r ** 3 * np.gradient(u * (1.0 - S), r), r)
            outer = 4 * eps * (-12 * sig ** 12 / (9 * r_cut ** 9) + 6 * sig ** 6 / (3 * r_cut ** 3))
            total += ca * cb * (inner + outer)
    chains_per_A3 = 1.0 / (AMU_PER_A3_TO_G_CM3 * m_chain)   # chains per Å³ at 1 g/cm³
    return float(-(2 * np.pi / 3) * chains_per_A3 ** 2 * total * EV_PER_A3_TO_BAR)


EV_PER_A3_TO_BAR = 1.602176634e6


def lammps_input(data: str, *, seed: int, npt_steps: int, nvt_steps: int, dump_every: int,
                 tail_k_bar: float, n_types: int = 2, n_updates: int = 3) -> str:
    """LAMMPS input (metal units: eV, Å, ps, bar) for TraPPE-UA PE as cgkit's TraPPEUA defines it.

    NPT (Nosé–Hoover, 0.1 ps / 1 ps, 1 fs steps; rRESPA made the barostat drift) at the
    tail-corrected pressure: LAMMPS 29Sep2021 ignores ``pair_modify tail yes`` for ``lj/mdf``
    (checked: the pressure does not change), so the barostat targets the model pressure
    P_ext − ΔP(ρ), ΔP = ``tail_k_bar`` ρ² (:func:`lj_tail_pressure_coefficient`), with the
    target updated from the current density ``n_updates`` times during the first half
    (equilibration); the second half averages box length, density and model pressure. Then the
    box is scaled to the mean length and NVT (Nosé–Hoover, 0.1 ps) with rRESPA (pairs every
    2 fs, bonded terms every 1 fs) writes unwrapped positions and forces every ``dump_every``
    outer steps (``traj.dump``). Forces are those of the switched LJ throughout."""
    from cgkit.potentials.trappe import ANGLE_K, ANGLE_T0, BOND_K, BOND_R0, TORSION_C, TRAPPE_LJ
    from cgkit.units import KB_EV
    types = ["CH3", "CH2"][:n_types]
    lines = ["units metal", "atom_style molecular", "boundary p p p", f"read_data {data}",
             "pair_style lj/mdf 8.5 10.0"]
    for a, ta in enumerate(types, 1):
        for b, tb in enumerate(types, 1):
            if b >= a:
                eps = np.sqrt(TRAPPE_LJ[ta][0] * TRAPPE_LJ[tb][0]) * KB_EV
                lines.append(f"pair_coeff {a} {b} {eps:.12e} {0.5 * (TRAPPE_LJ[ta][1] + TRAPPE_LJ[tb][1]):.6f}")
    c = TORSION_C[("CH2", "CH2")]
    half = npt_steps // 2
    seg = half // n_updates
    npt = f"fix md all npt temp {TEMPERATURE} {TEMPERATURE} 0.1 iso {{p}} {{p}} 1.0"
    lines += ["special_bonds lj 0.0 0.0 0.0", "bond_style harmonic",
              f"bond_coeff * {0.5 * BOND_K * KB_EV:.12e} {BOND_R0}", "angle_style harmonic",
              f"angle_coeff * {0.5 * ANGLE_K * KB_EV:.12e} {ANGLE_T0['CH2']}", "dihedral_style opls",
              f"dihedral_coeff * {2 * c[1] * KB_EV:.12e} {2 * c[2] * KB_EV:.12e} {2 * c[3] * KB_EV:.12e} 0.0",
              "neighbor 2.0 bin", "neigh_modify delay 0 every 1 check yes",
              "minimize 1.0e-6 1.0e-4 2000 20000", "reset_timestep 0", "timestep 0.001",
              f"velocity all create {TEMPERATURE} {seed} dist gaussian mom yes rot yes",
              f"variable ptail equal {tail_k_bar:.8e}*density^2",
              f"variable ptarget equal {PRESSURE_BAR}-v_ptail",
              "variable L equal lx", "variable rho equal density",
              "thermo 500", "thermo_style custom step temp press density pe v_ptarget"]
    for k in range(n_updates):
        n = seg if k < n_updates - 1 else half - seg * (n_updates - 1)
        lines += [npt.format(p="$(v_ptarget:%.4f)"), f"run {n}", "unfix md"]
    lines += [npt.format(p="$(v_ptarget:%.4f)"),
              f"fix avg all ave/time 10 {max(1, (npt_steps - half) // 10)} {npt_steps - half} v_L v_rho "
              "c_thermo_press",
              f"run {npt_steps - half}",
              'print "CGKIT_NPT L $(f_avg[1]:%.10f) rho $(f_avg[2]:%.10f) P $(f_avg[3]:%.6f) '
              'target $(v_ptarget:%.6f)"',
              "variable s equal f_avg[1]/lx", "variable sc equal ${s}",
              "unfix avg", "unfix md",
              "change_box all x scale ${sc} y scale ${sc} z scale ${sc} remap",
              "run_style respa 2 2 bond 1 angle 1 dihedral 1 pair 2", "timestep 0.002",
              f"fix md all nvt temp {TEMPERATURE} {TEMPERATURE} 0.1",
              f"dump traj all custom {dump_every} traj.dump id xu yu zu fx fy fz",
              "dump_modify traj sort id format float %.8g",
              "thermo_style custom step temp press density pe",
              f"run {nvt_steps}"]
    return "\n".join(lines) + "\n"


def read_dump(path):
    """Frames of a LAMMPS custom dump ``id xu yu zu fx fy fz`` (metal units; sorted by id):
    positions (F, n, 3) Å (unwrapped, box corner at the origin), forces (F, n, 3) eV/Å, box
    lengths (F, 3) Å — through :func:`cgkit.trajectory.read_lammps_dump`."""
    from cgkit.trajectory import read_lammps_dump
    dump = read_lammps_dump(path, units="metal", coordinates="unwrapped")
    if dump.forces is None:
        raise RuntimeError(f"{path} holds no forces (dump fx fy fz)")
    return dump.positions, dump.forces, dump.box_lengths


def run_lammps(atoms, topo, workdir: Path, p: dict, seed: int, n_carbons: int, reuse: bool = False) -> dict:
    """NPT (tail-corrected pressure) + NVT TraPPE-UA MD of one melt in LAMMPS; returns frames,
    density, pressures and speed. ``reuse``: a finished run in ``workdir`` with the same input is
    read instead of rerun."""
    from cgkit.potentials.polyethylene import write_lammps_data
    lmp = shutil.which("lmp")
    workdir.mkdir(parents=True, exist_ok=True)
    npt = int(round(p["npt_ps"] * 1000))         # 1 fs steps
    nvt = int(round(p["nvt_ps"] * 500))          # 2 fs outer steps
    every = int(round(p["dump_ps"] * 500))
    k_tail = lj_tail_pressure_coefficient(n_carbons)
    text = lammps_input("melt.data", seed=seed, npt_steps=npt, nvt_steps=nvt, dump_every=every, tail_k_bar=k_tail)
    log_path = workdir / "log.lammps"
    done = (reuse and (workdir / "in.melt").exists() and (workdir / "in.melt").read_text() == text
            and log_path.exists() and "Total wall time" in log_path.read_text())
    wall = None
    if not done:
        write_lammps_data(workdir / "melt.data", atoms, topo)
        (workdir / "in.melt").write_text(text)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        t0 = time.perf_counter()
        r = subprocess.run([lmp, "-in", "in.melt", "-log", "log.lammps", "-screen", "none"], cwd=workdir,
                           capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode:
            log = log_path.read_text() if log_path.exists() else ""
            raise RuntimeError(f"LAMMPS failed in {workdir}: {log[-3000:]} {r.stderr[-2000:]}")
    log = log_path.read_text()
    if wall is None:   # reused: the wall time LAMMPS logged
        h, mi, se = (int(v) for v in log.split("Total wall time:")[1].split()[0].split(":"))
        wall = 3600.0 * h + 60.0 * mi + se
    f = next(ln for ln in log.splitlines() if ln.startswith("CGKIT_NPT")).split()
    L, rho, p_model, p_target = float(f[2]), float(f[4]), float(f[6]), float(f[8])
    loops = [ln for ln in log.splitlines() if ln.startswith("Loop time of")]
    prod_s = float(loops[-1].split()[3])
    pos, frc, box = read_dump(workdir / "traj.dump")
    temps = []  # thermo temperature of the NVT run
    in_nvt = False
    for ln in log.splitlines():
        if ln.startswith("change_box"):
            in_nvt = True
        parts = ln.split()
        if in_nvt and len(parts) == 5 and parts[0].isdigit():
            temps.append(float(parts[1]))
    dp_tail = k_tail * rho ** 2
    return {"positions": pos, "forces": frc, "box": box, "npt_box_A": L, "npt_density_g_cm3": rho,
            "npt_model_pressure_bar": p_model, "npt_last_target_bar": p_target,
            "tail_pressure_bar": dp_tail, "tail_k_bar_per_g2_cm6": k_tail,
            "npt_corrected_pressure_bar": p_model + dp_tail,
            "nvt_steps": nvt, "nvt_wall_s": prod_s, "fs_per_wall_s": nvt * 2.0 / prod_s,
            "wall_s": wall, "reused": done, "mean_temperature_K": float(np.mean(temps[len(temps) // 5:])) if temps else None}


# ----------------------------------------------------------------------------- mapping
def mapping_for(atoms, topo, workdir: Path):
    """The compiled 4:1 mapping of a melt (PSF/PDB written by write_psf_pdb)."""
    import MDAnalysis as mda

    from cgkit.mapping import Mapping, shipped_mapping
    from cgkit.potentials.polyethylene import write_psf_pdb
    psf, pdb = write_psf_pdb(workdir / "melt", atoms, topo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(psf), str(pdb))
    return Mapping.from_yaml(shipped_mapping("polyethylene_ua_4to1"), u)


def map_frames(m, pos, frc, box):
    cg_pos = np.stack([m.map_positions(x, np.diag(b)) for x, b in zip(pos, box)])
    cg_frc = None if frc is None else np.stack([m.map_forces(f) for f in frc])
    return cg_pos, cg_frc


# ----------------------------------------------------------------------------- CG model
def fit_cg_model(systems: dict, p: dict, seed: int, out: Path) -> tuple:
    """The library's hybrid recipe (:func:`cgkit.forcematch.hybrid_fit`): bond and angle tables
    Boltzmann-inverted from the mapped IBI_LENGTH (C48) melt and kept fixed, pairs + dihedrals
    force-matched on all FIT_LENGTHS together (normal equations added), then IBI of the bond and
    angle tables against the same melt (pairs and dihedrals kept; Langevin 5 ps⁻¹,
    CG_DT, from the last mapped frame). The IBI settings are the case study's own (``ibi_*`` in
    FULL/QUICK: bins, ps per iteration, CG_FRICTION — this melt's CG MD everywhere else uses
    5/ps, not the library's 10/ps; α = 1.0 is the library default). Returns the potential, the
    fit record and the IBI record (per-iteration JS divergences, bits; iteration k scores the
    tables before its update, so iteration 0 is the hybrid model)."""
    from cgkit.forcematch import IBISettings, Interaction, hybrid_fit
    fmc = FM_GRIDS
    ref = systems[IBI_LENGTH]
    m = ref["mapping"]
    others = [n for n in FIT_LENGTHS if n != IBI_LENGTH]
    more = [(systems[n]["mapping"].species, systems[n]["mapping"].topology, systems[n]["cg_pos"],
             systems[n]["cg_frc"], systems[n]["box"]) for n in others]
    ibi = IBISettings(iterations=int(p["ibi_iterations"]), alpha=float(p["ibi_alpha"]),
                      md_steps=int(round(p["ibi_ps"] * 1000 / CG_DT)),
                      equilibration=int(round(p["ibi_equil_ps"] * 1000 / CG_DT)), sample_every=20,
                      timestep=CG_DT, friction=CG_FRICTION, seed=seed + 10)

    def report(rec):
        js = {k: v["js"] for k, v in rec["scores"].items() if Interaction.parse(k).kind in ("bond", "angle")}
        say(f"IBI iteration {rec['iteration']}: " + ", ".join(f"{k} {v:.4f}" for k, v in js.items()))

    fit = hybrid_fit(m.type_names, m.species, m.topology, ref["cg_pos"], ref["box"], temperature=TEMPERATURE,
                     positions=ref["cg_pos"], forces=ref["cg_frc"], boxes=ref["box"], more_systems=more,
                     fm=dict(pair=tuple(fmc["pair"]), dihedral=fmc["dihedral"],
                             block_size=max(2, len(ref["cg_pos"]) // 10)),
                     solve=dict(smooth=1e-6), bins=int(p["ibi_bins"]), ibi=ibi, masses=m.bead_masses,
                     pair_cutoff=float(fmc["pair"][1]), callback=report)
    res = fit.fit
    res.plot(out / "fm_tables.png")
    n_frames = sum(len(systems[n]["cg_pos"]) for n in FIT_LENGTHS)
    info = {"fit_lengths": list(FIT_LENGTHS), "fm_frames": n_frames,
            "pair_grid_A": list(fmc["pair"]), "dihedral_spacing_deg": fmc["dihedral"],
            "interactions": [t.label for t in res.tables], "residual": res.residual,
            "sparse_sampling_notes": sorted(fit.warnings)[:6]}
    history = [{"iteration": rec["iteration"],
                "js": {k: v["js"] for k, v in rec["scores"].items() if Interaction.parse(k).kind in ("bond", "angle")}}
               for rec in fit.history]
    ibi_info = {"reference": f"C{IBI_LENGTH}", "iterations": int(p["ibi_iterations"]),
                "alpha": float(p["ibi_alpha"]), "bins": int(p["ibi_bins"]),
                "md_ps_per_iteration": p["ibi_equil_ps"] + p["ibi_ps"], "history": history,
                "note": "js: Jensen-Shannon divergence (bits) per interaction type on the IBI grid; iteration k "
                        "scores the tables before its update (iteration 0 = hybrid Boltzmann-inverted bonded "
                        "tables); the refined model is the one after the last update"}
    info["fm_wall_s"] = fit.timing["boltzmann_and_force_matching"]
    ibi_info["wall_s"] = fit.timing["ibi"]
    return fit.potential, info, ibi_info


def cg_md(pot, m, start, box, n_equil, n_prod, store_every, seed):
    """Langevin CG MD (BAOAB, 5 fs, 450 K); returns stored positions and fs per wall second."""
    from cgkit.forcematch import TabulatedPotential
    from cgkit.md import MolecularDynamics
    pot = TabulatedPotential(pot.type_names, m.topology, pot.tables)   # the tables on this system's topology
    md = MolecularDynamics(pot, positions=start, cell=np.diag(box), masses=m.bead_masses, species=m.species,
                           type_names=m.type_names, timestep=CG_DT, temperature=TEMPERATURE,
                           friction=CG_FRICTION, log_every=max(store_every, 100), progress=False, seed=seed,
                           n_threads=1)
    md.run(n_equil)
    md.store_every = store_every
    t = time.perf_counter()
    md.run(n_prod)
    wall = time.perf_counter() - t
    r = md.results
    T = np.asarray(r.temperature).reshape(-1)
    return r.positions[:, 0], n_prod * CG_DT / wall, float(T[len(T) // 2:].mean()), wall


# ----------------------------------------------------------------------------- analysis
def analyse(positions, box, masses, topo, n_blocks=4):
    """PolymerAnalysis summary of a trajectory (positions (F, n, 3) Å, cubic box lengths)."""
    from cgkit.trajectory import universe_from_frames as bead_universe
    from cgkit.properties.polymer import PolymerAnalysis
    cell = np.diag(box)
    u = bead_universe(positions, cell, masses, topo.bonds, topo.molecule)
    pa = PolymerAnalysis(u.atoms, n_blocks=n_blocks, error_method="chains", msd=None, rdf=False, bins=60)
    pa.run()
    s = pa.summary()
    (g,) = s["groups"].values()
    return g


def ree_autocorrelation(positions, box, topo) -> float:
    """⟨R_ee(0)·R_ee(t_end)⟩/⟨R_ee²⟩ between the first and last stored frame (1 = frozen)."""
    from cgkit.topology import UnwrapPlan
    mol = np.asarray(topo.molecule)
    starts = np.nonzero(np.r_[True, mol[1:] != mol[:-1]])[0]
    ends = np.r_[starts[1:], len(mol)] - 1
    plan = UnwrapPlan(topo.n_particles, topo.bonds)
    x0 = plan.apply(positions[0], np.diag(box))
    x1 = plan.apply(positions[-1], np.diag(box))
    r0, r1 = x0[ends] - x0[starts], x1[ends] - x1[starts]
    return float((r0 * r1).sum(-1).mean() / (0.5 * ((r0 * r0).sum(-1) + (r1 * r1).sum(-1))).mean())


def js_bonded(ref_pos, cg_pos, box_ref, box_cg, topo):
    """JS divergence (bits) of bond-length and bond-angle distributions, CG vs mapped, on 40
    bins over the mapped range (CG samples outside it go to the end bins and are counted);
    also returns the Distribution pairs for plotting."""
    from cgkit.forcematch.validate import bonded_samples
    names = ["B"] * topo.n_particles    # one type: all bonds (angles) compared together

    def pooled(kind, pos, box):
        (x,) = bonded_samples(kind, pos, np.diag(box), names, topo).values()
        return x
    b_r, a_r = pooled("bond", ref_pos, box_ref), pooled("angle", ref_pos, box_ref)
    b_c, a_c = pooled("bond", cg_pos, box_cg), pooled("angle", cg_pos, box_cg)
    from cgkit.stats import js_of_samples  # reference range; CG outliers counted in the end bins
    jb, pb, qb = js_of_samples(b_r, b_c, 40, "Å")
    ja, pa, qa = js_of_samples(a_r, a_c, 40, "deg")
    return {"bond": jb, "angle": ja, "bond_mean_A": {"mapped": float(b_r.mean()), "cg": float(b_c.mean())},
            "angle_mean_deg": {"mapped": float(a_r.mean()), "cg": float(a_c.mean())},
            "bond_max_A": {"mapped": float(b_r.max()), "cg": float(b_c.max())},
            "cg_bonds_outside_mapped_range": int(((b_c < b_r.min()) | (b_c > b_r.max())).sum()),
            "cg_bond_samples": int(b_c.size)}, (pb, qb, pa, qa)


def power_fit(N, y, dy):
    """Weighted fit log y = log A + ν log N; returns ν, its standard error, A."""
    N, y, dy = (np.asarray(v, dtype=float) for v in (N, y, dy))
    w = y / np.maximum(dy, 1e-6 * y)          # 1/σ of log y
    X = np.stack([np.ones_like(N), np.log(N)], axis=1)
    W = np.diag(w ** 2)
    cov = np.linalg.inv(X.T @ W @ X)
    coef = cov @ X.T @ W @ np.log(y)
    resid = np.log(y) - X @ coef
    dof = max(len(N) - 2, 1)
    chi2 = float((w ** 2 * resid ** 2).sum() / dof)
    err = float(np.sqrt(cov[1, 1] * max(chi2, 1.0)))   # inflate by the fit quality
    return float(coef[1]), err, float(np.exp(coef[0])), chi2


def cn_extrapolation(N, C, dC):
    """C_N = C_∞ (1 − a/N) fitted (weighted, linear in 1/N: C_N = c0 + c1/N, so C_∞ = c0 and
    a = −c1/c0); returns C_∞, its error and a."""
    N, C, dC = (np.asarray(v, dtype=float) for v in (N, C, dC))
    X = np.stack([np.ones_like(N), 1.0 / N], axis=1)
    W = np.diag(1.0 / np.maximum(dC, 1e-3) ** 2)
    cov = np.linalg.inv(X.T @ W @ X)
    coef = cov @ X.T @ W @ C
    dof = max(len(N) - 2, 1)
    chi2 = float(((C - X @ coef) ** 2 * np.diag(W)).sum() / dof)
    return float(coef[0]), float(np.sqrt(cov[0, 0] * max(chi2, 1.0))), float(-coef[1] / coef[0])


def q(g, key):
    return {"value": g[key]["value"], "error": g[key]["error"]}


# ----------------------------------------------------------------------------- plots
def _plt():
    from cgkit.plotting import pyplot
    return pyplot()


def plot_sizes(res, path):
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key, mk, lab in (("atomistic", "o", "atomistic (LAMMPS TraPPE-UA, mapped beads)"),
                         ("cg", "s", "CG (cgkit MD)")):
        rows = res["sizes"][key]
        N = np.array([r["n_carbons"] for r in rows])
        for k, (qty, col) in enumerate((("rg", "C0"), ("ree", "C1"))):
            y = np.array([r[qty]["value"] for r in rows])
            e = np.array([r[qty]["error"] for r in rows])
            ax[0].errorbar(N, y, yerr=e, fmt=mk, color=col, mfc="none" if key == "cg" else col,
                           label=f"{'R_g' if qty == 'rg' else 'R_ee (rms)'} {lab}", capsize=3)
    f = res["flory"]["cg_fit"]
    NN = np.geomspace(min(f["range"]) * 0.8, max(f["range"]) * 1.2, 50)
    ax[0].plot(NN, f["prefactor_A"] * NN ** f["nu"], "k-", lw=1,
               label=f"fit R_g ∝ N^ν, N = {f['range'][0]}–{f['range'][1]}: ν = {f['nu']:.3f} ± {f['nu_error']:.3f}")
    ax[0].plot(NN, f["prefactor_A"] * NN[0] ** (f["nu"] - 0.5) * NN ** 0.5, "k:", lw=1, label="slope 1/2 (ideal chain)")
    ax[0].set_xscale("log")
    ax[0].set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ax[0].xaxis.set_minor_formatter(NullFormatter())   # minor labels overlapped on the log axis
    ax[0].xaxis.set_major_formatter(ScalarFormatter())
    ax[0].set_xticks([24, 48, 96, 192, 384])
    ax[0].set_xlabel("chain length N (carbons)")
    ax[0].set_ylabel("size (Å)")
    ax[0].legend(fontsize=7)
    for key, mk, lab in (("atomistic", "o", "atomistic (united atoms)"), ("cg", "s", "CG (bead ends, N−4 bonds)")):
        rows = res["sizes"][key]
        N = np.array([r["n_carbons"] for r in rows])
        ax[1].errorbar(N, [r["C_N"]["value"] for r in rows], yerr=[r["C_N"]["error"] for r in rows], fmt=mk,
                       mfc="none" if key == "cg" else None, capsize=3, label=lab)
    ex = res["characteristic_ratio"]["extrapolation"]
    NN = np.linspace(20, 420, 100)
    ax[1].plot(NN, ex["C_inf"] * (1 - ex["a"] / NN), "k-", lw=1,
               label=f"C_N = C_∞(1 − a/N), C_∞ = {ex['C_inf']:.2f} ± {ex['C_inf_error']:.2f}")
    ax[1].axhspan(6.7, 8.0, color="0.85", label="literature PE melt C_∞ 6.7–8 (413–450 K)")
    ax[1].set_xlabel("chain length N (carbons)")
    ax[1].set_ylabel("C_N = ⟨R_ee²⟩/(n l²)")
    ax[1].legend(fontsize=7)
    from cgkit.plotting import savefig
    savefig(fig, path)


def plot_distributions(dists, path):
    plt = _plt()
    ns = sorted(dists)
    fig, ax = plt.subplots(2, len(ns), figsize=(4 * len(ns), 6.4), squeeze=False)
    for j, n in enumerate(ns):
        (pb, qb, pa, qa), js = dists[n]
        for i, (p_, q_, lab, unit, key) in enumerate(((pb, qb, "CG bond length (Å)", "Å", "bond"),
                                                       (pa, qa, "CG bond angle (deg)", "deg", "angle"))):
            ax[i, j].stairs(p_.density, p_.edges, label="mapped atomistic")
            ax[i, j].stairs(q_.density, q_.edges, label="CG MD")
            ax[i, j].set_xlabel(lab)
            ax[i, j].set_ylabel(f"probability density (1/{unit})")
            ax[i, j].set_title(f"C{n}: JS = {js[key]:.4f} bit", fontsize=9)
            ax[i, j].legend(fontsize=7)
    from cgkit.plotting import savefig
    savefig(fig, path)


def plot_speed(speed, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labs = ["atomistic\ncgkit torch", "atomistic\nLAMMPS", "CG\ncgkit"]
    vals = [speed["atomistic_cgkit_fs_per_s"], speed["atomistic_lammps_fs_per_s"], speed["cg_cgkit_fs_per_s"]]
    ax.bar(labs, vals, color=["C0", "C2", "C1"])
    ax.set_yscale("log")
    ax.set_ylabel("simulated fs per wall second (1 core)")
    ax.set_title(f"C48 melt: CG {speed['speedup_vs_cgkit_torch']:.0f}× cgkit torch, "
                 f"{speed['speedup_vs_lammps']:.1f}× LAMMPS", fontsize=9)
    from cgkit.plotting import savefig
    savefig(fig, path)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder (results.json, PNG, CSV)")
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test, not the README numbers)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep the LAMMPS runs here (default: a temporary folder)")
    ap.add_argument("--reuse-lammps", action="store_true",
                    help="with --workdir: read finished LAMMPS runs with the same input instead of rerunning")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from cgkit.jsonutil import jsonable
    from cgkit.potentials.polyethylene import AMU_PER_A3_TO_G_CM3, build_pe_melt
    if shutil.which("lmp") is None:
        print("LAMMPS (lmp) is needed for the atomistic reference: apt-get install lammps", file=sys.stderr)
        return 2
    p = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir) if args.workdir else Path(tmp.name)
    res = {"settings": {"temperature_K": TEMPERATURE, "pressure_bar": PRESSURE_BAR, "quick": args.quick,
                        "atomistic_chains": ATOMISTIC, **p},
           "timing_s": {}}

    # ---- 1-3: atomistic melts in LAMMPS, mapped
    systems = {}
    for k, (n, nch) in enumerate(ATOMISTIC.items()):
        t0 = time.perf_counter()
        atoms, topo = build_pe_melt(nch, n, DENSITY_START, seed=args.seed + k, relax=False,
                                    temperature_K=TEMPERATURE)
        d = work / f"C{n}"
        lm = run_lammps(atoms, topo, d, p, seed=args.seed + 100 + k, n_carbons=n,
                        reuse=args.reuse_lammps and args.workdir is not None)
        m = mapping_for(atoms, topo, d)
        cg_pos, cg_frc = map_frames(m, lm["positions"], lm["forces"], lm["box"])
        systems[n] = dict(atoms=atoms, topo=topo, mapping=m, cg_pos=cg_pos, cg_frc=cg_frc, box=lm["box"],
                          lammps=lm)
        say(f"C{n} × {nch}: LAMMPS {lm['wall_s']:.0f} s, ρ(NPT) = {lm['npt_density_g_cm3']:.4f} g/cm³ "
            f"(P model {lm['npt_model_pressure_bar']:.0f} bar + tail {lm['tail_pressure_bar']:.0f} bar), "
            f"{len(cg_pos)} frames, {lm['fs_per_wall_s']:.0f} fs/s")
        # LAMMPS wall time as measured (or logged, when reused) + building and mapping
        res["timing_s"][f"atomistic C{n}"] = time.perf_counter() - t0 + (lm["wall_s"] if lm["reused"] else 0.0)

    # ---- 4: CG model (one call of the library's hybrid recipe, IBI refinement included)
    pot, fit, ibi_info = fit_cg_model(systems, p, args.seed, out)
    res["cg_model"] = fit
    res["ibi"] = ibi_info
    res["timing_s"]["cg_fit"] = fit["fm_wall_s"]
    res["timing_s"]["ibi"] = ibi_info["wall_s"]
    say(f"CG model: {fit['interactions']} in {res['timing_s']['cg_fit']:.0f} s")
    pot.save(out / "cg_potential.pt", metadata={"mapping": "polyethylene_ua_4to1", "temperature_K": TEMPERATURE})

    # ---- 5: CG MD for every length
    cg_runs = {}
    rho_c96 = systems[max(ATOMISTIC)]["lammps"]["npt_density_g_cm3"]
    store = int(round(p["cg_store_ps"] * 1000 / CG_DT))
    cg_only = p["cg_only"]
    for n in sorted(list(ATOMISTIC) + list(cg_only)):
        t0 = time.perf_counter()
        if n in systems:
            s = systems[n]
            m, start, box = s["mapping"], s["cg_pos"][-1], s["box"][-1]
        else:
            atoms, topo = build_pe_melt(cg_only[n], n, rho_c96, seed=args.seed + 50 + n, relax=False,
                                        temperature_K=TEMPERATURE)
            d = work / f"C{n}"
            d.mkdir(parents=True, exist_ok=True)
            m = mapping_for(atoms, topo, d)
            box = atoms.cell.lengths()
            start = m.map_positions(atoms.positions, atoms.cell.array)
        n_eq = int(round(p["cg_equil_ps"] * 1000 / CG_DT))
        n_pr = int(round(p["cg_prod_ps"][n] * 1000 / CG_DT))
        X, fs_s, T_cg, wall = cg_md(pot, m, start, box, n_eq, n_pr, store, seed=args.seed + 7 * n)
        cg_runs[n] = dict(positions=X, box=box, mapping=m, fs_per_wall_s=fs_s, temperature=T_cg, wall=wall,
                          n_steps=n_eq + n_pr)
        say(f"CG C{n}: {n_pr} steps in {wall:.0f} s ({fs_s:.0f} fs/s), T = {T_cg:.1f} K")
        res["timing_s"][f"cg_md C{n}"] = time.perf_counter() - t0

    # ---- 6: analysis
    sizes = {"atomistic": [], "cg": []}
    bonded, dists = {}, {}
    for n, s in sorted(systems.items()):
        m = s["mapping"]
        g = analyse(s["cg_pos"], s["box"][-1], m.bead_masses, m.topology)
        g_ua = analyse(s["lammps"]["positions"], s["box"][-1], s["atoms"].get_masses(), s["topo"])
        rho = s["lammps"]["npt_density_g_cm3"]
        sizes["atomistic"].append({"n_carbons": n, "n_chains": ATOMISTIC[n], "rg": q(g, "rg"), "ree": _rms(g),
                                   "rg_united_atoms": q(g_ua, "rg"), "ree_united_atoms": _rms(g_ua),
                                   "C_N": q(g_ua, "C_n"), "lp_acf_united_atoms_A": q(g_ua, "lp_acf"),
                                   "lp_wlc_A": q(g, "lp_wlc"), "lp_acf_beads_A": q(g, "lp_acf"),
                                   "trans_fraction": q(g_ua, "trans_fraction"),
                                   "density_npt_g_cm3": rho,
                                   "ree_autocorrelation_over_run": ree_autocorrelation(s["lammps"]["positions"],
                                                                                       s["box"][-1], s["topo"]),
                                   "mean_temperature_K": s["lammps"]["mean_temperature_K"]})
    for n, c in sorted(cg_runs.items()):
        m = c["mapping"]
        g = analyse(c["positions"], c["box"], m.bead_masses, m.topology)
        nb_ua = n - 4   # united-atom bonds between the centres of the two end beads
        C_N = g["ree2"]["value"] / (nb_ua * C_C_BOND ** 2)
        dC = g["ree2"]["error"] / (nb_ua * C_C_BOND ** 2)
        rho = float(m.bead_masses.sum() / np.prod(c["box"]) * AMU_PER_A3_TO_G_CM3)
        row = {"n_carbons": n, "n_chains": int(m.topology.molecule.max() + 1), "rg": q(g, "rg"), "ree": _rms(g),
               "C_N": {"value": C_N, "error": dC}, "lp_wlc_A": q(g, "lp_wlc"), "lp_acf_beads_A": q(g, "lp_acf"),
               "nu_internal": q(g, "nu"), "density_g_cm3": rho, "mean_temperature_K": c["temperature"],
               "simulated_ps": c["n_steps"] * CG_DT / 1000, "md_wall_s": c["wall"],
               "ree_autocorrelation_over_run": ree_autocorrelation(c["positions"], c["box"], m.topology)}
        sizes["cg"].append(row)
        if n in systems:
            s = systems[n]
            js, d_ = js_bonded(s["cg_pos"], c["positions"], s["box"][-1], c["box"], m.topology)
            bonded[f"C{n}"] = js
            dists[n] = (d_, js)
            a = next(r for r in sizes["atomistic"] if r["n_carbons"] == n)
            row["rg_rel_diff_vs_atomistic"] = (row["rg"]["value"] - a["rg"]["value"]) / a["rg"]["value"]
            row["ree_rel_diff_vs_atomistic"] = (row["ree"]["value"] - a["ree"]["value"]) / a["ree"]["value"]
            row["lp_wlc_rel_diff_vs_atomistic"] = (row["lp_wlc_A"]["value"] - a["lp_wlc_A"]["value"]) / a["lp_wlc_A"]["value"]
    res["sizes"] = sizes
    res["bonded_js"] = bonded

    # Flory exponent: R_g ∝ N^ν
    cg = sizes["cg"]
    Ncg = np.array([r["n_carbons"] for r in cg])
    sel = Ncg >= 48
    nu, dnu, A, chi2 = power_fit(Ncg[sel], [r["rg"]["value"] for r in np.array(cg)[sel]],
                                 [r["rg"]["error"] for r in np.array(cg)[sel]])
    nu_all, dnu_all, _, _ = power_fit(Ncg, [r["rg"]["value"] for r in cg], [r["rg"]["error"] for r in cg])
    aa = sizes["atomistic"]
    nu_aa, dnu_aa, _, _ = power_fit([r["n_carbons"] for r in aa], [r["rg"]["value"] for r in aa],
                                    [r["rg"]["error"] for r in aa])
    res["flory"] = {"theory_melt": 0.5,
                    "cg_fit": {"nu": nu, "nu_error": dnu, "prefactor_A": A, "reduced_chi2": chi2,
                               "range": [int(Ncg[sel].min()), int(Ncg[sel].max())]},
                    "cg_fit_all": {"nu": nu_all, "nu_error": dnu_all, "range": [int(Ncg.min()), int(Ncg.max())]},
                    "atomistic_fit": {"nu": nu_aa, "nu_error": dnu_aa,
                                      "range": [min(ATOMISTIC), max(ATOMISTIC)]},
                    "cg_internal_longest": cg[-1]["nu_internal"]}
    # characteristic ratio: extrapolate C_N of the CG series
    C_inf, dC_inf, a_ = cn_extrapolation(Ncg, [r["C_N"]["value"] for r in cg], [r["C_N"]["error"] for r in cg])
    res["characteristic_ratio"] = {
        "extrapolation": {"C_inf": C_inf, "C_inf_error": dC_inf, "a": a_, "form": "C_N = C_inf (1 - a/N)",
                          "lengths": [int(v) for v in Ncg]},
        "literature_C_inf_range": [6.7, 8.0],
        "literature_note": "PE melt at 413-450 K: C_inf ≈ 7.4 (Rubinstein & Colby 2003, Table 2.1, "
                           "from Fetters et al. 1994); 6.7 from the RIS model (Flory 1969)"}
    # persistence length from C_inf (Kuhn length b_K = C_inf l / cos(θ/2), l_p = b_K / 2)
    theta = np.radians(180.0 - 114.0)
    res["persistence_length"] = {
        "from_C_inf_A": C_inf * C_C_BOND / np.cos(theta / 2) / 2,
        "literature_from_C_inf_7.4_A": 7.4 * C_C_BOND / np.cos(theta / 2) / 2,
        "cg_wlc_longest_A": cg[-1]["lp_wlc_A"], "atomistic_ua_acf_A": {f"C{r['n_carbons']}": r["lp_acf_united_atoms_A"]
                                                                         for r in aa}}
    res["density"] = {"atomistic_npt_g_cm3": {f"C{r['n_carbons']}": r["density_npt_g_cm3"] for r in aa},
                      "npt_pressures_bar": {f"C{n}": {"model_switched_lj": s["lammps"]["npt_model_pressure_bar"],
                                                      "tail_correction": s["lammps"]["tail_pressure_bar"],
                                                      "corrected": s["lammps"]["npt_corrected_pressure_bar"],
                                                      "target_corrected": PRESSURE_BAR}
                                            for n, s in sorted(systems.items())},
                      "tail_correction_note": "LAMMPS 29Sep2021 ignores pair_modify tail for lj/mdf (checked); the "
                                              "NPT barostat targets P_ext - dP_tail(rho), dP_tail = K rho^2 of the LJ "
                                              "missing beyond the 8.5 A switch start (g = 1), updated from the "
                                              "current density 3 times; forces are the switched LJ",
                      "experiment_g_cm3": 0.766,
                      "experiment_note": "linear PE melt: 0.785 g/cm³ at 413 K (Fetters et al. 1994), "
                                         "≈ 0.766 at 450 K with a thermal expansion of ≈ 7e-4 /K",
                      "cg_g_cm3": {f"C{r['n_carbons']}": r["density_g_cm3"] for r in cg},
                      "cg_note": "CG MD is NVT at the atomistic NPT density (C96's for C192/C384)"}

    # ---- speed (C48 melt, one core)
    t0 = time.perf_counter()
    from cgkit.md import MolecularDynamics
    from cgkit.potentials.trappe import TraPPEUA
    s = systems[48]
    a = s["atoms"].copy()
    a.positions = s["lammps"]["positions"][-1]
    a.set_cell(np.diag(s["box"][-1]), scale_atoms=False)
    a.wrap()
    md = MolecularDynamics(TraPPEUA.from_atoms(a, s["topo"]), a, timestep=1.0, temperature=TEMPERATURE,
                           log_every=0, progress=False, n_threads=1, seed=args.seed + 3)
    md.run(3)
    tt = time.perf_counter()
    md.run(int(p["torch_md_steps"]))
    torch_fs = p["torch_md_steps"] * 1.0 / (time.perf_counter() - tt)
    cg_fs = cg_runs[48]["fs_per_wall_s"]
    lmp_fs = s["lammps"]["fs_per_wall_s"]
    res["speed"] = {"system": f"C48 × {ATOMISTIC[48]} melt ({len(a)} united atoms, {s['mapping'].n_beads} beads)",
                    "atomistic_cgkit_fs_per_s": torch_fs, "atomistic_cgkit_timestep_fs": 1.0,
                    "atomistic_lammps_fs_per_s": lmp_fs,
                    "atomistic_lammps_timestep": "rRESPA 1 fs bonded / 2 fs pairs",
                    "cg_cgkit_fs_per_s": cg_fs, "cg_timestep_fs": CG_DT,
                    "speedup_vs_cgkit_torch": cg_fs / torch_fs, "speedup_vs_lammps": cg_fs / lmp_fs,
                    "threads": 1}
    res["timing_s"]["speed"] = time.perf_counter() - t0

    # ---- figures and files
    plot_sizes(res, out / "rg_vs_n.png")
    plot_distributions(dists, out / "distributions.png")
    plot_speed(res["speed"], out / "speed.png")
    with open(out / "sizes.csv", "w") as fh:
        fh.write("model,n_carbons,n_chains,rg_A,rg_err_A,ree_rms_A,ree_err_A,C_N,C_N_err\n")
        for key in ("atomistic", "cg"):
            for r in sizes[key]:
                fh.write(f"{key},{r['n_carbons']},{r['n_chains']},{r['rg']['value']:.4f},{r['rg']['error']:.4f},"
                         f"{r['ree']['value']:.4f},{r['ree']['error']:.4f},{r['C_N']['value']:.4f},"
                         f"{r['C_N']['error']:.4f}\n")
    res["runtime_s"] = time.perf_counter() - t_start
    res["lammps_reused"] = bool(any(s["lammps"]["reused"] for s in systems.values()))
    (out / "results.json").write_text(json.dumps(jsonable(res), indent=1))
    say(f"ν (CG, N {res['flory']['cg_fit']['range']}) = {nu:.3f} ± {dnu:.3f}; C_∞ = {C_inf:.2f} ± {dC_inf:.2f}; "
        f"speed-up {res['speed']['speedup_vs_cgkit_torch']:.0f}× (torch) / {res['speed']['speedup_vs_lammps']:.1f}× (LAMMPS)")
    say(f"done in {res['runtime_s']:.0f} s; results in {out / 'results.json'}")
    if out.resolve() == (HERE / "results").resolve():
        import importlib.util
        spec = importlib.util.spec_from_file_location("polyethylene_make_readme", HERE / "make_readme.py")
        mk = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mk)
        mk.main([])
        say(f"README rendered from {out / 'results.json'}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def _rms(g):
    """Root-mean-square end-to-end distance ⟨R_ee²⟩^½ with its propagated error (Å)."""
    v, e = g["ree2"]["value"], g["ree2"]["error"]
    return {"value": float(np.sqrt(v)), "error": float(e / (2 * np.sqrt(v)))}


if __name__ == "__main__":
    sys.exit(main())
