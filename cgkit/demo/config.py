"""Sizes and per-stage time budgets of ``cgkit demo``.

Every size is a plain dict of parameters; ``--steps`` multiplies the MD step counts (teacher
MD, atomistic ENNP MD, CG MD) and the training budgets are wall-clock limits (minutes), so the
default run stays within its total budget on a loaded 2-core machine.

Units: temperatures K, time steps fs, lengths Å, budgets s.
"""
from __future__ import annotations

import copy

from ..errors import InputError

__all__ = ["SIZES", "STAGES", "make_config", "TARGETS"]

#: stage names in run order
STAGES = ("teacher", "atomistic", "forcematch", "cg", "silicon", "report")

#: acceptance targets of the issue (used by the report's pass/fail marks)
TARGETS = {
    "js_bond": 0.02,            # Jensen–Shannon divergence (nats), CG vs mapped atomistic
    "js_angle": 0.02,
    "rg_rel": 0.05,             # relative R_g difference
    "speedup": 10.0,            # simulated time per wall second, CG / ENNP atomistic
    "phonon_thz": 0.3,          # max |Δν| along the band path, THz
    "elastic_gpa": 5.0,         # max |ΔC_ij|, GPa
}

_DEFAULT = {
    "pe": {"n_chains": 8, "n_carbons": 24, "density": 0.75, "temperature": 450.0},
    "teacher_pe": {"timestep": 1.0, "equilibration": 1500, "temperatures": [450.0, 650.0],
                   "frames_per_temperature": 40, "every": 50, "rattled_fraction": 0.3, "rattle": 0.05,
                   "rattled_weight": 0.3},
    "ennp_pe": {"r_cut": 4.0, "channels": 16, "l_max": 1, "n_layers": 2, "n_radial": 8,
                "radial_hidden": 32, "readout_hidden": 16, "lr": 0.01, "batch_size": 1,
                "max_epochs": 100, "minutes": 3.5},
    "teacher_si": {"supercell": 2, "temperatures": [300.0, 900.0, 1400.0], "liquid_temperature": 3000.0,
                   "frames_per_temperature": 12, "every": 10, "equilibration": 100,
                   "n_rattled": 12, "rattle": 0.04,
                   "strains": [-0.02, -0.01, -0.005, 0.005, 0.01, 0.02], "n_small": 48,
                   "small_strain": 0.015},
    "ennp_si": {"r_cut": 4.0, "channels": 16, "l_max": 2, "n_layers": 2, "n_radial": 8,
                "radial_hidden": 32, "readout_hidden": 16, "lr": 0.01, "batch_size": 2,
                "stress_weight": 1.0e5, "max_epochs": 200, "minutes": 3.5},
    "atomistic": {"timestep": 1.0, "n_steps": 3000, "store_every": 10, "friction": 0.01},
    "forcematch": {"pair": [2.5, 8.0, 0.25], "bond": [3.0, 7.0, 0.1], "angle": [40.0, 180.0, 5.0],
                   "dihedral": 30.0, "force_map": "optimized", "bonded": "boltzmann",
                   "ibi_iterations": 6, "ibi_steps": 3000, "pairs_from": "mscg", "ibi_equilibration": 400, "ibi_alpha": 0.7,
                   "neural_cg": False, "neural_minutes": 1.0, "neural_epochs": 20, "neural_r_cut": 6.0},
    "cg": {"timestep": 5.0, "n_steps": 20000, "store_every": 20, "friction": 0.01,
           "n_replicas": 1},
    "silicon": {"supercell": 3, "band_npoints": 31, "mesh": 12},
    # wall-clock budgets (s) per stage; MD loops and training stop when theirs runs out
    "budget_s": {"teacher": 600, "atomistic": 120, "forcematch": 100, "cg": 90, "silicon": 60,
                 "report": 30},
}

_SMALL = copy.deepcopy(_DEFAULT)
_SMALL["pe"].update(n_chains=2, n_carbons=12)
_SMALL["teacher_pe"].update(equilibration=50, frames_per_temperature=5, every=10, temperatures=[450.0])
_SMALL["ennp_pe"].update(channels=4, n_layers=1, radial_hidden=8, readout_hidden=4, max_epochs=1,
                         minutes=0.2, r_cut=4.0)
_SMALL["teacher_si"].update(supercell=1, temperatures=[600.0], frames_per_temperature=4,
                            every=5, equilibration=20, n_rattled=2, strains=[-0.01, 0.01], n_small=2)
_SMALL["ennp_si"].update(channels=4, l_max=1, n_layers=1, radial_hidden=8, readout_hidden=4,
                         max_epochs=1, minutes=0.2)
_SMALL["atomistic"].update(n_steps=40, store_every=5)
_SMALL["forcematch"].update(pair=[2.5, 6.0, 0.5], bond=[2.0, 8.0, 0.25], angle=[0.0, 180.0, 15.0],
                            dihedral=None)
_SMALL["forcematch"].update(ibi_iterations=1, ibi_steps=100, ibi_equilibration=20, neural_cg=True,
                            neural_epochs=1, neural_minutes=0.2, neural_r_cut=5.0)
_SMALL["cg"].update(n_steps=200, store_every=10)
_SMALL["silicon"].update(supercell=2, band_npoints=3, mesh=2)
_SMALL["budget_s"] = {k: 60 for k in _DEFAULT["budget_s"]}

_LARGE = copy.deepcopy(_DEFAULT)
_LARGE["pe"].update(n_chains=16, n_carbons=48)
_LARGE["teacher_pe"].update(frames_per_temperature=80, equilibration=3000)
_LARGE["ennp_pe"].update(channels=32, minutes=15.0, max_epochs=200)
_LARGE["ennp_si"].update(channels=32, minutes=10.0, max_epochs=200)
_LARGE["teacher_si"].update(frames_per_temperature=30)
_LARGE["atomistic"].update(n_steps=20000)
_LARGE["cg"].update(n_steps=100000, n_replicas=4)
_LARGE["forcematch"].update(neural_cg=True, neural_minutes=10.0, neural_epochs=100)
_LARGE["budget_s"] = {k: 6 * v for k, v in _DEFAULT["budget_s"].items()}

SIZES = {"small": _SMALL, "default": _DEFAULT, "large": _LARGE}


def make_config(size: str = "default", steps: float = 1.0, seed: int = 0, time_scale: float = 1.0) -> dict:
    """The parameter dict of ``size`` with MD step counts scaled by ``steps`` and every wall-clock
    budget (stage budgets, training minutes) scaled by ``time_scale`` (for slower or busy machines)."""
    if size not in SIZES:
        raise InputError(f"unknown demo size '{size}'; choose one of {sorted(SIZES)}")
    if not (steps > 0):
        raise InputError(f"--steps must be a positive scale factor, got {steps}")
    if not (time_scale > 0):
        raise InputError(f"--time-scale must be a positive factor, got {time_scale}")
    cfg = copy.deepcopy(SIZES[size])
    cfg["size"], cfg["steps"], cfg["seed"] = size, float(steps), int(seed)
    cfg["time_scale"] = float(time_scale)
    cfg["budget_s"] = {k: v * time_scale for k, v in cfg["budget_s"].items()}
    for sec in ("ennp_pe", "ennp_si"):
        cfg[sec]["minutes"] *= time_scale
    for sec, keys in (("teacher_pe", ("equilibration", "frames_per_temperature")),
                      ("atomistic", ("n_steps",)), ("cg", ("n_steps",))):
        for k in keys:
            cfg[sec][k] = max(1, int(round(cfg[sec][k] * steps)))
    if steps != 1.0:  # longer runs get proportionally longer budgets for the MD stages
        for st in ("atomistic", "cg"):
            cfg["budget_s"][st] = cfg["budget_s"][st] * max(steps, 1.0)
    return cfg
