"""Distil ENNPs from classical teachers within a wall-clock budget and report force errors.

    python benchmarks/distill.py [--system si|cu|ar|both] [--minutes 14] [--out distill_out]

* Si: Stillinger–Weber teacher (cgkit.potentials.StillingerWeber); 64-atom diamond cells —
  crystal MD at 300, 600, 900, 1200, 1500 K, liquid at 3000 K, rattled and strained cells.
* Cu: ASE's EMT teacher; 32-atom fcc cells — MD at 300…1500 K, a hot liquid-like run at
  2500 K, rattled and strained cells.
* Ar: cgkit's LennardJones teacher with argon parameters (σ = 3.405 Å, ε = 0.0104 eV =
  120.7 K·k_B, cutoff 8.5 Å = 2.5σ, its C² polynomial switch from r_on = 0.66·r_c = 5.61 Å
  — the same switch radius as ASE's ``LennardJones(smooth=True)``, but C² instead of C¹);
  fcc crystal (32 atoms, a = 5.29 Å) MD at 20, 40, 60, 80 K, rattled and ±2/4 % strained
  cells; liquid (108 atoms at 1.40 g/cm³, melted at 400 K first) MD at 90, 120, 150 K.

Configurations are sampled with :func:`cgkit.sampling.sample_configurations`, 10 % are held
out for validation, and an ENNP is trained with :class:`cgkit.train.Trainer` (float32, one
thread per system; both systems run in parallel with ``--system both``) for at most
``--minutes`` of wall-clock time. Printed: the learning curve (epoch, validation force MAE)
and the final validation energy/force/stress MAE; targets from issue 3: force MAE
< 15 meV/Å (Si), < 10 meV/Å (Cu) and, for Ar, force error < 1 % of the teacher's force
RMS — checked with the stricter RMSE/RMS ratio (MAE/RMS is printed too). Everything is written to ``--out/<system>/`` (default
under the system temp folder).

Model: 32x0e+32x1o+32x2e, 2 layers, two-body messages (correlation 1), r_cut 4.0 Å for Si
(SW's own cutoff is 3.77 Å) and 4.5 Å for Cu. Ar: LJ is a pair potential, so one
interaction layer with scalar features (l_max 0, correlation 1, 16 channels: E_i =
MLP(Σ_j R(r_ij)), an EAM-like form whose linear-readout limit is the pair sum; with one
layer and scalar inputs l_max 1 would compute the same l = 0 messages only) is enough; with
~76 neighbours per atom inside 8.5 Å (r_cut = the teacher's cutoff, so every teacher pair is
seen) angular features or a second layer multiply the cost (3.8x per training step for two layers)
for no physics; 16 Bessel functions and a 32-wide one-layer radial MLP resolve the steep
repulsive wall. Batches of 2 structures (measured: better error per CPU second than 4 or 1)
and a plateau schedule with patience 1 (halves the noise floor late in the budget).
Si/Cu: AdamW (AMSGrad) lr 0.01 with plateau decay,
EMA 0.99, batches of 4 structures, loss weights E 1 : F 10 : σ 1.
Measured (2-core machine shared with other jobs, 14 min, 1 thread each; 290 frames, 10 %
validation): Si 14.0 meV/Å force MAE (0.26 meV/atom energy, 0.33 GPa stress; 57 epochs),
Cu 5.8 meV/Å (0.11 meV/atom, 0.44 GPa; 25 epochs, run beside an Si run at r_cut 5 Å).
Ar (420 frames, load average ~10 on the 2 cores, so ~20 % of a core for 14 min; 30 epochs,
best at epoch 28):
force MAE 0.335 meV/Å, RMSE 0.769 meV/Å, teacher force RMS 54.7 meV/Å → MAE/RMS 0.61 %
(target < 1 % met), RMSE/RMS 1.40 % (stricter ratio not met in this budget: the RMSE is
dominated by close contacts, r < 3.3 Å, in the 150 K liquid); energy MAE 0.013 meV/atom.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MEV = {"si": 15.0, "cu": 10.0}
#: Ar target: validation force RMSE / teacher force RMS (issue 3: < 1 %)
TARGET_RATIO = {"ar": 0.01}
AR_SIGMA, AR_EPSILON, AR_CUTOFF = 3.405, 0.0104, 8.5  # Å, eV, Å (2.5σ)


def argon_teacher():
    """cgkit's Lennard-Jones for argon (σ 3.405 Å, ε 0.0104 eV, C² switch 5.61 → 8.5 Å)."""
    from cgkit.potentials import LennardJones
    return LennardJones(sigma=AR_SIGMA, epsilon=AR_EPSILON, cutoff=AR_CUTOFF)


def _argon_frames(seed: int = 0):
    """Crystal (32-atom fcc, 20–80 K, rattled, strained) and liquid (108 atoms, 1.40 g/cm³,
    90–150 K) argon labelled by :func:`argon_teacher`."""
    from ase.build import bulk
    from ase.units import _amu

    from cgkit.sampling import sample_configurations
    teacher = argon_teacher()
    crystal = bulk("Ar", "fcc", 5.29, cubic=True) * (2, 2, 2)  # 32 atoms; a(80 K) ≈ 5.31 Å expt.
    common = dict(md_steps_between=20, timestep_fs=5.0, seed=seed, progress=False)
    frames = sample_configurations([crystal], teacher, temperatures=(20, 40, 60, 80),
                                   frames_per_temperature=40, equilibration_steps=200,
                                   rattle=0.1, n_rattled=40,
                                   strains=(-0.04, -0.02, 0.02, 0.04) * 10, **common)
    liquid = bulk("Ar", "fcc", 5.29, cubic=True) * (3, 3, 3)  # 108 atoms
    mass_g = len(liquid) * 39.948 * _amu * 1e3
    volume_A3 = mass_g / 1.40 * 1e24
    liquid.set_cell(liquid.cell.array * (volume_A3 / liquid.get_volume()) ** (1 / 3), scale_atoms=True)
    # melt the expanded crystal (a supercritical fluid at 400 K), then sample the liquid
    melt = sample_configurations([liquid], teacher, temperatures=(400.0,), frames_per_temperature=1,
                                 equilibration_steps=600, **{**common, "seed": seed + 1})[0]
    melt.calc = None
    # the liquid's close contacts (repulsive wall) are the hardest part: 60 frames per T
    frames += sample_configurations([melt], teacher, temperatures=(90, 120, 150), frames_per_temperature=60,
                                    equilibration_steps=400, **{**common, "seed": seed + 2})
    return frames



def _frames(system: str, seed: int = 0):
    from ase.build import bulk

    from cgkit.sampling import sample_configurations
    if system == "ar":
        return _argon_frames(seed)
    if system == "si":
        from cgkit.potentials import StillingerWeber
        teacher = StillingerWeber()
        cell = bulk("Si", "diamond", 5.43, cubic=True) * (2, 2, 2)  # 64 atoms
        liquid_T = 3000.0
    else:
        from ase.calculators.emt import EMT
        teacher = EMT()
        cell = bulk("Cu", "fcc", 3.61, cubic=True) * (2, 2, 2)  # 32 atoms
        liquid_T = 2500.0
    common = dict(md_steps_between=10, timestep_fs=1.0, seed=seed, progress=False)
    frames = sample_configurations([cell], teacher, temperatures=(300, 600, 900, 1200, 1500),
                                   frames_per_temperature=40, equilibration_steps=100,
                                   rattle=0.1, n_rattled=30,
                                   strains=(-0.04, -0.02, 0.02, 0.04) * 5, **common)
    frames += sample_configurations([cell], teacher, temperatures=(liquid_T,), frames_per_temperature=40,
                                    equilibration_steps=400, **{**common, "seed": seed + 1})
    return frames


def _config(system: str, out: Path, minutes: float, threads: int) -> dict:
    if system == "ar":
        model = {"species": ["Ar"], "r_cut": AR_CUTOFF, "channels": 16, "l_max": 0, "n_layers": 1,
                 "n_radial": 16, "radial_hidden": 32, "radial_layers": 1, "readout_hidden": 32,
                 "correlation": 1, "dtype": "float32"}
        return {"output": str(out), "seed": 0, "model": model,
                "data": {"train": str(out / "teacher.xyz"), "val_fraction": 0.1},
                "loss": {"energy": 1.0, "forces": 10.0, "stress": 1.0},
                "optimizer": {"name": "adamw", "lr": 0.01, "amsgrad": True},
                "scheduler": {"factor": 0.6, "patience": 1, "min_lr": 1e-4},
                "ema_decay": 0.99, "clip_grad_norm": 10.0, "batch_size": 2, "max_epochs": 1000,
                "max_time_minutes": minutes, "early_stopping_patience": 30, "checkpoint_every": 1000,
                "threads": threads}
    model = {"species": ["Si"] if system == "si" else ["Cu"], "r_cut": 4.0 if system == "si" else 4.5,  # SW: 3.77 Å
             "channels": 32, "l_max": 2, "n_layers": 2, "n_radial": 8, "radial_hidden": 64,
             "radial_layers": 2, "readout_hidden": 32, "correlation": 1, "dtype": "float32"}
    return {"output": str(out), "seed": 0, "model": model,
            "data": {"train": str(out / "teacher.xyz"), "val_fraction": 0.1},
            "loss": {"energy": 1.0, "forces": 10.0, "stress": 1.0},
            "optimizer": {"name": "adamw", "lr": 0.01, "amsgrad": True},
            "scheduler": {"factor": 0.6, "patience": 3, "min_lr": 1e-5},
            "ema_decay": 0.99, "clip_grad_norm": 10.0, "batch_size": 4, "max_epochs": 1000,
            "max_time_minutes": minutes, "early_stopping_patience": 30, "checkpoint_every": 1000,
            "threads": threads}


def run_one(system: str, out: Path, minutes: float, threads: int) -> dict:
    import torch

    from cgkit.sampling import write_extxyz
    from cgkit.train import Trainer
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames = _frames(system)
    write_extxyz(frames, out / "teacher.xyz")
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = Trainer(_config(system, out, minutes, threads)).run()
    t_train = time.perf_counter() - t0
    v = tr.results["validation"]
    res = {"system": system, "n_frames": len(frames), "sampling_s": round(t_sample, 1),
           "training_s": round(t_train, 1), "epochs": tr.results["epochs"], "validation": v,
           "force_mae_meV_per_A": 1e3 * v["forces_mae_eV_per_A"],
           "force_rmse_meV_per_A": 1e3 * v["forces_rmse_eV_per_A"],
           "teacher_force_rms_meV_per_A": 1e3 * v["forces_ref_rms_eV_per_A"],
           "force_rmse_over_rms": v["forces_rmse_eV_per_A"] / v["forces_ref_rms_eV_per_A"],
           "force_mae_over_rms": v["forces_mae_eV_per_A"] / v["forces_ref_rms_eV_per_A"],
           "learning_curve": _curve_rows(out)}
    if system in TARGET_RATIO:
        res["target_rmse_over_rms"] = TARGET_RATIO[system]
    else:
        res["target_meV_per_A"] = TARGET_MEV[system]
    (out / "distill.json").write_text(json.dumps(res, indent=1))
    return res


def _curve_rows(out: Path) -> list:
    """(epoch, time s, validation force MAE and RMSE in meV/Å) per epoch from the training log."""
    log = out / "log.csv"
    if not log.exists():
        return []
    return [{"epoch": int(r["epoch"]), "time_s": round(float(r["time_s"]), 1),
             "val_force_mae_meV_per_A": round(1e3 * float(r["val_forces_mae"]), 4),
             "val_force_rmse_meV_per_A": round(1e3 * float(r["val_forces_rmse"]), 4)}
            for r in csv.DictReader(open(log)) if r.get("val_forces_mae")]


def _print_curve(out: Path) -> None:
    log = out / "log.csv"
    if not log.exists():
        return
    rows = list(csv.DictReader(open(log)))
    keys = [k for k in (rows[0].keys() if rows else []) if "force" in k.lower() and "val" in k.lower()]
    print(f"learning curve ({log}):")
    step = max(1, len(rows) // 15)
    for r in rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else []):
        print("  " + "  ".join(f"{k}={r[k]}" for k in (["epoch"] if "epoch" in r else []) + keys))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=("si", "cu", "ar", "both"), default="both",
                    help="si, cu, ar, or both = si and cu in parallel")
    ap.add_argument("--minutes", type=float, default=14.0, help="training wall-clock budget per system")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "cgkit_distill"),
                    help="output folder (default: <tmp>/cgkit_distill)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per system")
    args = ap.parse_args()
    out = Path(args.out)
    if args.system == "both":  # the two systems in parallel, one process each
        procs = [subprocess.Popen([sys.executable, __file__, "--system", s, "--minutes", str(args.minutes),
                                   "--out", str(out), "--threads", str(args.threads)]) for s in ("si", "cu")]
        codes = [p.wait() for p in procs]
        if any(codes):
            sys.exit(max(codes))
        return
    res = run_one(args.system, out / args.system, args.minutes, args.threads)
    _print_curve(out / args.system)
    if args.system in TARGET_RATIO:
        target = res["target_rmse_over_rms"]
        ok_mae, ok_rmse = res["force_mae_over_rms"] < target, res["force_rmse_over_rms"] < target
        print(f"{args.system}: {res['n_frames']} teacher frames ({res['sampling_s']} s), trained "
              f"{res['training_s']} s ({res['epochs']} epochs); validation force MAE "
              f"{res['force_mae_meV_per_A']:.3f} meV/Å, RMSE {res['force_rmse_meV_per_A']:.3f} meV/Å, "
              f"teacher force RMS {res['teacher_force_rms_meV_per_A']:.2f} meV/Å; target < "
              f"{100 * target:.0f} % of the RMS: MAE/RMS {100 * res['force_mae_over_rms']:.3f} % "
              f"({'met' if ok_mae else 'NOT met'}), stricter RMSE/RMS {100 * res['force_rmse_over_rms']:.3f} % "
              f"({'met' if ok_rmse else 'NOT met'}); "
              f"energy MAE {1e3 * res['validation'].get('energy_mae_eV_per_atom', float('nan')):.4f} meV/atom")
        return
    ok = res["force_mae_meV_per_A"] < res["target_meV_per_A"]
    print(f"{args.system}: {res['n_frames']} teacher frames ({res['sampling_s']} s), trained "
          f"{res['training_s']} s; validation force MAE {res['force_mae_meV_per_A']:.1f} meV/Å "
          f"(target < {res['target_meV_per_A']:.0f}: {'met' if ok else 'NOT met'}); "
          f"energy MAE {1e3 * res['validation'].get('energy_mae_eV_per_atom', float('nan')):.2f} meV/atom")


if __name__ == "__main__":
    main()
