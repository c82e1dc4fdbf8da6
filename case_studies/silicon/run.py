"""Silicon case study: an ENNP distilled from Stillinger–Weber, refined with a few DFT labels.

Steps (every number goes to ``results/results.json``; the README quotes them):

1. Teacher data: Stillinger–Weber (SW, :class:`cgkit.potentials.StillingerWeber`) labels of
   64-atom diamond cells — Langevin MD at 300–1500 K, rattled and strained cells — and of
   strained 8-atom cells (stress), sampled with :func:`cgkit.sampling.sample_configurations`.
   Held out: crystal MD frames (other seeds) and a liquid (SW MD at 3000 K, never trained on).
2. (a) SW-distilled ENNP: trained on the SW data alone.
3. Ensemble uncertainty: three ENNPs with other seeds and shorter training on the same SW data
   (:class:`cgkit.ensemble.EnsemblePotential`); per-atom force spread on held-out crystal
   frames versus the liquid.
4. Sparse high-fidelity labels: periodic DFT (PySCF, LDA/GTH/SZV, 2×2×2 k-points; settings in
   ``dft.py``) of eight strained, rattled 8-atom cells, five for training and three held out,
   committed in ``data/`` (``--regenerate-dft`` recomputes them, with a finite-difference
   check of the DFT forces and stress and a DFT E(V) scan). DFT and SW energies have different
   zeros: the DFT energies are shifted by the mean per-atom difference E_DFT − E_SW over the
   five training cells (one constant per atom, i.e. a per-species reference for pure Si).
   (b) DFT-refined ENNP: (a) fine-tuned on the SW data plus the five aligned DFT labels. Three
   variants (``FULL['refine']['variants']``): the DFT file once with a large per-structure
   weight; repeated ten times (oversampled) with a small weight; the same without the stress
   loss. The last is the one called "DFT-refined ENNP" in the tables and figures.
5. Force errors against the held-out DFT labels and against SW; phonon band structure + DOS
   (phonopy, analytic Hessians), elastic constants (relaxed- and clamped-ion, analytic), the
   largest stable MD time step and the E(V) curve of SW, (a) and (b), beside published SW
   values.

Everything runs on one thread. ``--quick`` shrinks the data and the training budgets (a smoke
test; its numbers are not the README's).

    python case_studies/silicon/run.py [--quick] [--regenerate-dft] [--out DIR]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

A0 = 5.43095  # Å, SW's equilibrium lattice constant
#: published SW silicon values at a = 5.43095 Å (GPa, fs, THz) — the teacher's own properties
PUBLISHED_SW = {"C11": 151.42, "C12": 76.42, "C44_relaxed": 56.45, "C44_clamped": 109.76,
                "dt_max_fs": 17.85, "gamma_optical_THz": 17.83}
TARGETS = {"phonon_max_abs_diff_THz": 0.3, "elastic_abs_diff_GPa": 5.0}
LIQUID_T = 3000.0

# ---------------------------------------------------------------------------- settings
FULL = {
    "sw": {"temperatures": [300.0, 600.0, 900.0, 1200.0, 1500.0], "frames_per_temperature": 16,
           "every": 10, "equilibration": 200, "n_rattled": 16, "rattle": 0.03,
           "strains": [-0.02, -0.01, 0.01, 0.02] * 2, "n_small": 48, "small_strain": 0.015,
           "test_frames_per_temperature": 4, "val_frames_per_temperature": 2, "liquid_frames": 12,
           "liquid_equilibration": 1500},
    "model": {"r_cut": 3.8, "channels": 16, "l_max": 2, "n_layers": 2, "n_radial": 8,
              "radial_hidden": 32, "readout_hidden": 16, "correlation": 1},
    # epochs are the limit (reproducible); the minutes are only a safety cap on a loaded machine
    "distill": {"minutes": 25.0, "max_epochs": 40, "lr": 0.01, "batch_size": 2},
    # fine-tuning variants: the DFT file appears `repeat` times per epoch with per-structure
    # `weight`, and the stress loss weight of the fine-tuning is `stress`; `main` is the variant
    # called "DFT-refined ENNP" in the tables and figures
    "refine": {"minutes": 8.0, "max_epochs": 15, "lr": 0.005, "batch_size": 2,
               "variants": [{"repeat": 1, "weight": 300.0, "stress": 1.0e4},
                            {"repeat": 10, "weight": 3.0, "stress": 1.0e4},
                            {"repeat": 10, "weight": 3.0, "stress": 0.0}], "main": 2},
    "ensemble": {"members": 3, "minutes": 6.0, "max_epochs": 12, "lr": 0.01, "batch_size": 2},
    "loss": {"energy": 1.0, "forces": 10.0, "stress": 1.0e4},
    "phonons": {"supercell": 3, "band_npoints": 31, "mesh": 12},
}
QUICK = copy.deepcopy(FULL)
QUICK["sw"].update(temperatures=[300.0, 900.0, 1500.0], frames_per_temperature=6, n_rattled=6,
                   strains=[-0.02, 0.02], n_small=12, test_frames_per_temperature=3,
                   val_frames_per_temperature=1, liquid_frames=6,
                   liquid_equilibration=800, equilibration=100)
QUICK["distill"].update(minutes=5.0, max_epochs=15)
QUICK["refine"].update(minutes=2.0, max_epochs=4, variants=[{"repeat": 10, "weight": 3.0, "stress": 0.0}], main=0)
QUICK["ensemble"].update(minutes=2.0, max_epochs=6)


# ---------------------------------------------------------------------------- teacher data
def _small_cells(n: int, strain: float, seed: int):
    """n 8-atom cubic cells with random homogeneous strains (each Voigt component uniform in
    ±strain) and 0.01 Å displacements: cheap stress labels for the elastic constants."""
    from ase.build import bulk
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Si", "diamond", A0, cubic=True)
        e = rng.uniform(-strain, strain, size=6)
        E = np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]])
        a.set_cell(a.cell.array @ (np.eye(3) + E), scale_atoms=True)
        a.positions += rng.normal(scale=0.01, size=a.positions.shape)
        out.append(a)
    return out


def _tag(frames, kind):
    for a in frames:
        a.info["kind"] = kind
    return frames


def sample_sw(p: dict, seed: int = 0) -> dict:
    """SW-labelled frames: 'train' (crystal MD, rattled, strained 64-atom cells and strained
    8-atom cells), 'val' (crystal MD, other seed: early-stopping/model selection of the SW
    trainings), 'test_crystal' (MD at the same temperatures, a third seed) and 'liquid'
    (64 atoms at 3000 K). Liquid configurations are not used for training."""
    from ase.build import bulk

    from cgkit.potentials import StillingerWeber
    from cgkit.sampling import label, sample_configurations
    sw = StillingerWeber()
    c64 = bulk("Si", "diamond", A0, cubic=True) * (2, 2, 2)
    common = dict(md_steps_between=p["every"], timestep_fs=1.0)
    md = sample_configurations([c64], sw, temperatures=p["temperatures"],
                               frames_per_temperature=p["frames_per_temperature"],
                               equilibration_steps=p["equilibration"], seed=seed, **common)
    n_md = len(p["temperatures"]) * p["frames_per_temperature"]
    extra = sample_configurations([c64], sw, temperatures=(), rattle=p["rattle"], n_rattled=p["n_rattled"],
                                  strains=p["strains"], seed=seed + 1, progress=False)
    small = label(_small_cells(p["n_small"], p["small_strain"], seed + 2), sw)
    train = (_tag(md[:n_md], "crystal MD") + _tag(extra[:p["n_rattled"]], "rattled 64")
             + _tag(extra[p["n_rattled"]:], "strained 64") + _tag(small, "strained 8"))
    test = _tag(sample_configurations([c64], sw, temperatures=p["temperatures"],
                                      frames_per_temperature=p["test_frames_per_temperature"],
                                      equilibration_steps=p["equilibration"], seed=seed + 100, **common),
                "crystal MD (test)")
    val = _tag(sample_configurations([c64], sw, temperatures=p["temperatures"],
                                     frames_per_temperature=p["val_frames_per_temperature"],
                                     equilibration_steps=p["equilibration"], seed=seed + 300, **common),
               "crystal MD (validation)")
    liquid = _tag(sample_configurations([c64], sw, temperatures=[LIQUID_T],
                                        frames_per_temperature=p["liquid_frames"],
                                        equilibration_steps=p["liquid_equilibration"], seed=seed + 200,
                                        md_steps_between=50, timestep_fs=1.0), "liquid 3000 K")
    return {"train": train, "val": val, "test_crystal": test, "liquid": liquid}


def site_displacement(frames, ref) -> float:
    """Mean distance (Å) of the atoms from their ideal lattice sites (minimum image): ≈ 0.1 Å
    in a hot crystal, ≳ 1 Å once the structure has melted."""
    from ase.geometry import find_mic
    d = [find_mic(a.positions - ref.positions, ref.cell)[1].mean() for a in frames]
    return float(np.mean(d))


# ---------------------------------------------------------------------------- DFT labels
def dft_labels(args) -> dict:
    import dft
    data = Path(args.data)
    if args.regenerate_dft or not (data / "dft_labels.extxyz").exists():
        dft.require_pyscf()
        print("computing the PySCF labels (≈ 30 min on a busy 2-core machine) ...", flush=True)
        dft.generate(data)
    train, test, summary = dft.load(data)
    return {"train": train, "test": test, "summary": summary}


def align_dft(dft_train, dft_test, sw) -> dict:
    """Shift of the DFT energy zero: δ = mean over the training cells of (E_DFT − E_SW)/n
    (eV/atom); returns δ, the spread of the per-cell differences and aligned copies."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from cgkit.sampling import label
    diffs = []
    for a, s in zip(dft_train, label(dft_train, sw)):
        diffs.append((a.get_potential_energy() - s.get_potential_energy()) / len(a))
    delta = float(np.mean(diffs))

    def shifted(frames):
        out = []
        for a in frames:
            b = a.copy()
            b.calc = SinglePointCalculator(b, energy=a.get_potential_energy() - delta * len(a),
                                           forces=a.get_forces(), stress=a.get_stress())
            out.append(b)
        return out
    return {"delta_eV_per_atom": delta, "per_cell_spread_eV_per_atom": float(np.std(diffs)),
            "train": shifted(dft_train), "test": shifted(dft_test)}


# ---------------------------------------------------------------------------- training
def train(out: Path, sources, p: dict, cfg: dict, *, seed: int, init=None, val=None) -> dict:
    """Train an ENNP (float32, one thread) with :class:`cgkit.train.Trainer`; ``sources``
    is a list of {path, weight}; ``init`` a model file to fine-tune. The checkpoint is deleted
    afterwards (the results folder keeps model.pt, log.csv, summary.json, learning curve).
    ``p`` may carry its own ``loss`` weights (else ``cfg['loss']``)."""
    from cgkit.train import Trainer
    if out.exists():
        shutil.rmtree(out)
    model = {"file": str(init)} if init else {"species": ["Si"], "dtype": "float32", **cfg["model"]}
    data = {"train": [{"path": str(s["path"]), "weight": float(s["weight"])} for s in sources]}
    data.update({"val": str(val), "val_fraction": 0.0} if val else {"val_fraction": 0.0})
    tc = {"output": str(out), "seed": seed, "model": model, "data": data, "loss": p.get("loss", cfg["loss"]),
          "optimizer": {"name": "adamw", "lr": p["lr"], "amsgrad": True},
          "scheduler": {"factor": 0.5, "patience": 3, "min_lr": 1e-5}, "ema_decay": 0.99,
          "batch_size": p["batch_size"], "max_epochs": p["max_epochs"], "max_time_minutes": p["minutes"],
          "early_stopping_patience": 1000, "checkpoint_every": 0, "threads": 1}
    tr = Trainer(tc).run()
    (out / "checkpoint.pt").unlink(missing_ok=True)
    s = tr.results
    if s["stop_reason"] == "max_time_minutes":  # a safety cap, never a budget: fail loudly
        raise SystemExit(f"training in {out} reached its {p['minutes']} min safety cap after {s['epochs']} "
                         f"of {p['max_epochs']} epochs; its numbers would depend on the machine's load. "
                         "Rerun on a quieter machine (or raise the 'minutes' cap in FULL)")
    return {"model": tr.model, "path": out / "model.pt", "epochs": s["epochs"], "steps": s["steps"],
            "wall_s": s["wall_time_s"], "stop_reason": s["stop_reason"], "n_train": s["n_train"],
            "n_parameters": int(sum(q.numel() for q in tr.model.parameters()))}


def errors(model, frames) -> dict:
    """Energy (eV/atom), force (eV/Å) and stress (GPa) MAE/RMSE of ``model`` on labelled
    frames (:func:`cgkit.train.trainer.evaluate`, float64)."""
    import torch

    from cgkit.train.dataset import graphs_from_atoms
    from cgkit.train.trainer import evaluate
    from cgkit.units import EV_PER_A3_TO_GPA
    m = copy.deepcopy(model).to(torch.float64)
    g = graphs_from_atoms(frames, m.type_names, m.cutoff, dtype=torch.float64)
    r = evaluate(m, g)
    out = {"energy_mae_eV_per_atom": r["energy_mae"], "forces_mae_eV_per_A": r["forces_mae"],
           "forces_rmse_eV_per_A": r["forces_rmse"], "forces_ref_rms_eV_per_A": r["forces_ref_rms"]}
    if "stress_mae" in r:
        out["stress_mae_GPa"] = r["stress_mae"] * EV_PER_A3_TO_GPA
    return out


def predicted_forces(model, frames) -> np.ndarray:
    import torch

    from cgkit.calculator import CgkitCalculator
    calc = CgkitCalculator(model, dtype=torch.float64)
    out = []
    for a in frames:
        b = a.copy()
        b.calc = calc
        out.append(b.get_forces())
    return np.concatenate(out)


# ---------------------------------------------------------------------------- properties
def crystal_properties(model, p: dict) -> tuple[dict, object]:
    """Phonons (supercell p['supercell']³ of the 8-atom cubic cell: 3 gives 16.3 Å, wider than
    twice the 7.6 Å reach of the two-layer ENNP, so no force constant is folded), elastic constants (8-atom cubic cell,
    analytic, relaxed/clamped, symmetrised), dt_max (8-atom cubic cell) and the E(V) curve
    (Birch–Murnaghan a0 Å, bulk modulus GPa) of ``model`` at SW's lattice constant."""
    import torch
    from ase.build import bulk
    from ase.eos import EquationOfState
    from ase.units import GPa

    from cgkit.calculator import CgkitCalculator
    from cgkit.units import EV_PER_A3_TO_GPA
    from cgkit.properties.elastic import ElasticConstants
    from cgkit.properties.phonons import Phonons
    from cgkit.properties.timestep import StableTimestep
    m = copy.deepcopy(model).to(torch.float64)
    cubic = bulk("Si", "diamond", A0, cubic=True)
    n = int(p["supercell"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = Phonons(cubic, m, supercell=(n, n, n), mesh=(p["mesh"],) * 3, band_npoints=p["band_npoints"],
                     progress=False).run()
        el = ElasticConstants(cubic, m, method="analytic").run()
    ts = StableTimestep(cubic, m).run().results
    r, c = el.results.symmetry["named_relaxed"], el.results.symmetry["named_clamped"]
    a = cubic.copy()
    a.calc = CgkitCalculator(m, dtype=torch.float64)
    pressure = -float(np.trace(a.get_stress(voigt=False))) / 3 * EV_PER_A3_TO_GPA
    lat = np.linspace(A0 - 0.08, A0 + 0.08, 9)
    E, V = [], []
    for x in lat:
        b = bulk("Si", "diamond", x, cubic=True)
        b.calc = CgkitCalculator(m, dtype=torch.float64)
        E.append(b.get_potential_energy())
        V.append(b.get_volume())
    v0, _, B = EquationOfState(V, E, eos="birchmurnaghan").fit()
    res = {"C11": r["C11"], "C12": r["C12"], "C44_relaxed": r["C44"],
           "C11_clamped": c["C11"], "C12_clamped": c["C12"], "C44_clamped": c["C44"],
           "bulk_modulus_from_C_GPa": (r["C11"] + 2 * r["C12"]) / 3,
           "dt_max_fs": ts.dt_max, "nu_max_THz": ts.nu_max,
           "gamma_optical_THz": float(max(ph.results["gamma"]["frequencies"])),
           "max_band_frequency_THz": ph.results["max_frequency_band"],
           "pressure_at_a0_GPa": pressure, "eos_a0_A": float(v0 ** (1 / 3)), "eos_bulk_modulus_GPa": float(B / GPa),
           "imaginary_modes": ph.results["imaginary"]["count_on_band_path"]}
    return res, ph


def band_diff(ph, ph_ref) -> dict:
    f = np.concatenate([np.asarray(x) for x in ph.results["band"]["frequencies"]])
    f0 = np.concatenate([np.asarray(x) for x in ph_ref.results["band"]["frequencies"]])
    d = np.abs(f - f0)
    return {"max_abs_diff_THz": float(d.max()), "mean_abs_diff_THz": float(d.mean())}


# ---------------------------------------------------------------------------- ensemble
def ensemble_spread(members, frames) -> np.ndarray:
    """Per-atom force standard deviation over members (eV/Å, root of the summed component
    variances; :meth:`EnsemblePotential.compute_with_uncertainty`) and |F_mean − F_ref|."""
    import torch

    from cgkit.ensemble import EnsemblePotential
    ens = EnsemblePotential([copy.deepcopy(m).to(torch.float64) for m in members])
    std, err = [], []
    for a in frames:
        out = ens.compute_with_uncertainty(ens.graph(a, dtype=torch.float64))
        std.append(out["forces_std"].detach().numpy())
        err.append(np.linalg.norm(out["forces"].detach().numpy() - a.get_forces(), axis=1))
    return np.concatenate(std), np.concatenate(err)


# ---------------------------------------------------------------------------- figures
def _plt():
    from cgkit.plotting import pyplot
    return pyplot()


def plot_phonons(phs: dict, path: Path, title: str) -> None:
    from matplotlib.lines import Line2D
    plt = _plt()
    styles = {"SW": dict(color="k", lw=1.3), "SW-distilled ENNP": dict(color="C3", lw=1.0, ls="--"),
              "DFT-refined ENNP": dict(color="C0", lw=1.0, ls=":")}
    fig, (ax, axd) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    b = phs["SW"].results["band"]
    for name, ph in phs.items():
        r = ph.results
        for x, f in zip(r["band"]["distances"], r["band"]["frequencies"]):
            ax.plot(x, f, **styles[name])
        axd.plot(r["dos"]["dos"], r["dos"]["frequencies"], **styles[name])
    for x in b["label_positions"]:
        ax.axvline(x, color="0.7", lw=0.6)
    ax.set_xticks(b["label_positions"])
    ax.set_xticklabels(b["labels"])
    ax.set_xlim(b["label_positions"][0], b["label_positions"][-1])
    ax.set_ylabel("frequency (THz)")
    ax.set_xlabel("wave vector along the fcc path")
    ax.set_title(title, fontsize=10)
    ax.legend([Line2D([], [], **s) for s in styles.values()], list(styles), loc="lower right", fontsize=8)
    axd.set_xlabel("DOS (states/THz per cell)")
    axd.set_xlim(left=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_elastic(props: dict, path: Path) -> None:
    plt = _plt()
    keys = ["C11", "C12", "C44_relaxed", "C44_clamped"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(keys))
    series = [("published SW", PUBLISHED_SW, "0.75"), ("SW (cgkit)", props["SW"], "0.35"),
              ("SW-distilled ENNP", props["SW-distilled ENNP"], "C3"),
              ("DFT-refined ENNP", props["DFT-refined ENNP"], "C0")]
    w = 0.2
    for k, (name, d, col) in enumerate(series):
        ax.bar(x + (k - 1.5) * w, [d[q] for q in keys], w, label=name, color=col)
    ax.set_xticks(x)
    ax.set_xticklabels(["C11", "C12", "C44 relaxed", "C44 clamped"])
    ax.set_ylabel("elastic constant (GPa)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_dft_parity(f_ref, preds: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    lim = 1.1 * np.abs(f_ref).max()
    ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8)
    for (name, f), (col, mk) in zip(preds.items(), (("k", "x"), ("C3", "o"), ("C0", "s"))):
        rmse = np.sqrt(np.mean((f - f_ref) ** 2))
        ax.scatter(f_ref.ravel(), f.ravel(), s=10, color=col, marker=mk, alpha=0.7,
                   label=f"{name}: RMSE {rmse:.3f} eV/Å", facecolors="none" if mk != "x" else None)
    ax.set_xlabel("DFT force component (eV/Å), held-out cells")
    ax.set_ylabel("model force component (eV/Å)")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_uncertainty(std_c, std_l, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    hi = np.quantile(np.concatenate([std_c, std_l]), 0.995)
    bins = np.linspace(0, hi, 50)
    ax.hist(std_c, bins=bins, density=True, alpha=0.6, color="C0",
            label=f"crystal MD 300–1500 K (mean {std_c.mean() * 1e3:.0f} meV/Å)")
    ax.hist(std_l, bins=bins, density=True, alpha=0.6, color="C3",
            label=f"liquid 3000 K, not trained on (mean {std_l.mean() * 1e3:.0f} meV/Å)")
    ax.set_xlabel("per-atom force std over 3 ensemble members (eV/Å)")
    ax.set_ylabel("probability density (Å/eV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder")
    ap.add_argument("--quick", action="store_true", help="small data and short training (a smoke test)")
    ap.add_argument("--regenerate-dft", action="store_true",
                    help="recompute the PySCF labels in --data (needs `pip install pyscf`; ≈ 30 min on a busy 2-core machine)")
    ap.add_argument("--data", default=str(DATA), help="folder with dft_labels.extxyz and dft_summary.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch
    from ase.build import bulk
    from ase.io import write

    from cgkit.jsonutil import jsonable
    from cgkit.potentials import StillingerWeber
    torch.set_num_threads(1)
    cfg = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    timings = {}
    sw = StillingerWeber()
    res = {"mode": "quick" if args.quick else "full", "settings": cfg, "published_sw": PUBLISHED_SW,
           "targets": TARGETS, "lattice_constant_A": A0}

    # ---- 1. teacher data
    t = time.perf_counter()
    data = sample_sw(cfg["sw"], args.seed)
    timings["sw_sampling_s"] = time.perf_counter() - t
    write(str(work / "sw_train.extxyz"), data["train"], format="extxyz")
    write(str(work / "sw_val.extxyz"), data["val"], format="extxyz")
    kinds = [a.info["kind"] for a in data["train"]]
    ref64 = bulk("Si", "diamond", A0, cubic=True) * (2, 2, 2)
    res["sw_data"] = {"train_frames": len(data["train"]), "kinds": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
                      "train_atoms": int(sum(len(a) for a in data["train"])),
                      "val_frames": len(data["val"]), "test_crystal_frames": len(data["test_crystal"]), "liquid_frames": len(data["liquid"]),
                      "liquid_temperature_K": LIQUID_T,
                      "mean_site_displacement_A": {"test_crystal": site_displacement(data["test_crystal"], ref64),
                                                   "liquid": site_displacement(data["liquid"], ref64)}}
    print("SW data:", json.dumps(res["sw_data"]), flush=True)

    # ---- 2. (a) the SW-distilled ENNP
    sw_src = [{"path": work / "sw_train.extxyz", "weight": 1.0}]
    t = time.perf_counter()
    a = train(out / "ennp_sw", sw_src, cfg["distill"], cfg, seed=args.seed, val=work / "sw_val.extxyz")
    timings["train_distilled_s"] = time.perf_counter() - t
    print(f"distilled ENNP: {a['epochs']} epochs, {a['wall_s']:.0f} s ({a['stop_reason']})", flush=True)
    # ---- 3. ensemble uncertainty (same SW data, other seeds, shorter training)
    t = time.perf_counter()
    pe = cfg["ensemble"]
    members = [train(out / f"ensemble_{k}", sw_src, pe, cfg, seed=args.seed + 11 + k, val=work / "sw_val.extxyz")
               for k in range(pe["members"])]
    std_c, err_c = ensemble_spread([m["model"] for m in members], data["test_crystal"])
    std_l, err_l = ensemble_spread([m["model"] for m in members], data["liquid"])
    plot_uncertainty(std_c, std_l, out / "ensemble_uncertainty.png")
    res["ensemble"] = {"members": len(members), "member_training": [{k: v for k, v in m.items() if k not in ("model", "path")}
                                                                   for m in members],
                       "crystal": {"mean_force_std_eV_per_A": float(std_c.mean()),
                                   "median_force_std_eV_per_A": float(np.median(std_c)),
                                   "mean_force_error_eV_per_A": float(err_c.mean()), "n_atoms": int(len(std_c))},
                       "liquid": {"mean_force_std_eV_per_A": float(std_l.mean()),
                                  "median_force_std_eV_per_A": float(np.median(std_l)),
                                  "mean_force_error_eV_per_A": float(err_l.mean()), "n_atoms": int(len(std_l))}}
    res["ensemble"]["std_ratio_liquid_over_crystal"] = (res["ensemble"]["liquid"]["mean_force_std_eV_per_A"]
                                                        / res["ensemble"]["crystal"]["mean_force_std_eV_per_A"])
    res["ensemble"]["error_ratio_liquid_over_crystal"] = (res["ensemble"]["liquid"]["mean_force_error_eV_per_A"]
                                                          / res["ensemble"]["crystal"]["mean_force_error_eV_per_A"])
    timings["ensemble_s"] = time.perf_counter() - t
    print("ensemble:", json.dumps({k: res["ensemble"][k] for k in ("crystal", "liquid")}), flush=True)

    # ---- 4. DFT labels, energy alignment and (b) the DFT-refined ENNP
    t = time.perf_counter()
    dl = dft_labels(args)
    timings["dft_s"] = time.perf_counter() - t
    al = align_dft(dl["train"], dl["test"], sw)
    write(str(work / "dft_train_aligned.extxyz"), al["train"], format="extxyz")
    s = dl["summary"]
    res["dft"] = {"settings": s["settings"], "pyscf_version": s["pyscf_version"], "mesh": s["mesh"],
                  "n_train": len(dl["train"]), "n_test": len(dl["test"]),
                  "mean_time_per_label_s": s["mean_time_per_label_s"], "labels_wall_s": s["labels_wall_s"],
                  "total_wall_s": s["total_wall_s"], "finite_difference_check": s["finite_difference_check"],
                  "eos": s["eos"], "alignment_delta_eV_per_atom": al["delta_eV_per_atom"],
                  "alignment_spread_eV_per_atom": al["per_cell_spread_eV_per_atom"]}
    print("DFT:", json.dumps({k: res["dft"][k] for k in ("n_train", "n_test", "alignment_delta_eV_per_atom",
                                                         "alignment_spread_eV_per_atom")}), flush=True)

    p = cfg["refine"]
    t = time.perf_counter()
    dft_path = work / "dft_train_aligned.extxyz"
    sweep, variants = [], []
    for k, v in enumerate(p["variants"]):
        src = sw_src + [{"path": dft_path, "weight": v["weight"]}] * int(v["repeat"])
        name = f"ennp_refined_x{int(v['repeat'])}_w{v['weight']:g}_s{v['stress']:g}"
        r = train(out / name, src, {**p, "loss": {**cfg["loss"], "stress": v["stress"]}}, cfg,
                  seed=args.seed, init=a["path"])
        variants.append(r)
        sweep.append({"repeat": int(v["repeat"]), "weight": v["weight"], "stress_loss_weight": v["stress"],
                      "folder": name, "main": k == p["main"],
                      "dft_share_of_force_loss": (len(al["train"]) * 8 * v["repeat"] * v["weight"])
                      / (len(al["train"]) * 8 * v["repeat"] * v["weight"] + res["sw_data"]["train_atoms"]),
                      **{key: val for key, val in r.items() if key not in ("model", "path")}})
    b = variants[p["main"]]
    timings["train_refined_s"] = time.perf_counter() - t
    models = {"SW": sw, "SW-distilled ENNP": a["model"], "DFT-refined ENNP": b["model"]}
    res["training"] = {name: {k: v for k, v in r.items() if k not in ("model", "path")}
                       for name, r in (("SW-distilled ENNP", a), ("DFT-refined ENNP", b))}
    res["training"]["DFT-refined ENNP"].update(init="SW-distilled ENNP", **p["variants"][p["main"]])

    # ---- 5. errors vs SW and vs DFT
    err = {}
    for name, m in models.items():
        err[name] = {"vs_SW_crystal_test": errors(m, data["test_crystal"]), "vs_SW_liquid": errors(m, data["liquid"]),
                     "vs_DFT_test": errors(m, al["test"]), "vs_DFT_train": errors(m, al["train"])}
    res["errors"] = err
    f_dft = np.concatenate([x.get_forces() for x in al["test"]])
    preds = {n: predicted_forces(m, al["test"]) for n, m in models.items()}
    plot_dft_parity(f_dft, preds, out / "dft_force_parity.png")
    print("force RMSE vs held-out DFT:", {n: round(e["vs_DFT_test"]["forces_rmse_eV_per_A"], 4)
                                         for n, e in err.items()}, flush=True)

    # ---- 6. crystal properties
    t = time.perf_counter()
    props, phs = {}, {}
    for name, m in models.items():
        props[name], phs[name] = crystal_properties(m, cfg["phonons"])
    for name in ("SW-distilled ENNP", "DFT-refined ENNP"):
        props[name]["phonons_vs_SW"] = band_diff(phs[name], phs["SW"])
        props[name]["elastic_vs_SW_GPa"] = {k: props[name][k] - props["SW"][k]
                                           for k in ("C11", "C12", "C44_relaxed", "C11_clamped",
                                                     "C12_clamped", "C44_clamped")}
        props[name]["elastic_max_abs_diff_vs_SW_GPa"] = max(abs(v) for v in props[name]["elastic_vs_SW_GPa"].values())
        props[name]["dt_max_rel_diff_vs_SW"] = props[name]["dt_max_fs"] / props["SW"]["dt_max_fs"] - 1
    props["DFT-refined ENNP"]["phonons_vs_distilled"] = band_diff(phs["DFT-refined ENNP"], phs["SW-distilled ENNP"])
    res["properties"] = props
    # the refinement sweep: every variant against DFT, SW and in its elastic constants
    for sv, r in zip(sweep, variants):
        pr, ph = crystal_properties(r["model"], cfg["phonons"])
        sv.update({"forces_rmse_vs_DFT_test": errors(r["model"], al["test"])["forces_rmse_eV_per_A"],
                   "forces_rmse_vs_DFT_train": errors(r["model"], al["train"])["forces_rmse_eV_per_A"],
                   "forces_rmse_vs_SW_crystal_test": errors(r["model"], data["test_crystal"])["forces_rmse_eV_per_A"],
                   "phonon_max_abs_diff_vs_SW_THz": band_diff(ph, phs["SW"])["max_abs_diff_THz"],
                   **{k: pr[k] for k in ("C11", "C12", "C44_relaxed", "eos_a0_A", "eos_bulk_modulus_GPa",
                                         "pressure_at_a0_GPa", "gamma_optical_THz")}})
    res["refinement_sweep"] = sweep
    dmax = props["SW-distilled ENNP"]["phonons_vs_SW"]["max_abs_diff_THz"]
    plot_phonons(phs, out / "phonons.png", f"Si phonons at a = {A0} Å: distilled ENNP max |Δν| vs SW = {dmax:.3f} THz")
    plot_elastic(props, out / "elastic.png")
    timings["properties_s"] = time.perf_counter() - t
    d = props["SW-distilled ENNP"]
    res["targets_met"] = {"phonons": d["phonons_vs_SW"]["max_abs_diff_THz"] <= TARGETS["phonon_max_abs_diff_THz"],
                          "elastic": d["elastic_max_abs_diff_vs_SW_GPa"] <= TARGETS["elastic_abs_diff_GPa"]}
    print("properties:", json.dumps({n: {k: round(v, 3) for k, v in pr.items() if isinstance(v, float)}
                                     for n, pr in props.items()}), flush=True)

    shutil.rmtree(work)
    timings["total_s"] = time.perf_counter() - t_start
    res["timings"] = timings
    res["runtime_s"] = timings["total_s"]
    (out / "results.json").write_text(json.dumps(jsonable(res), indent=1))
    print(f"done in {timings['total_s']:.0f} s; results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
