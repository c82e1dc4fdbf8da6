"""The committee's uncertainty flags extrapolation: a committee trained on copper crystal only is
more uncertain on the liquid and on a surface it never saw than on new crystal frames."""
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from cgkit.ensemble import EnsemblePotential
from cgkit.train.trainer import Trainer
from cgkit.uncertainty import committee_predictions

TEST = Path(__file__).resolve().parents[2] / "case_studies" / "active_learning" / "cu_test.extxyz"


def crystal_frames(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 1, 1))
        a.positions += rng.normal(scale=0.06, size=a.positions.shape)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def test_committee_sigma_is_larger_on_liquid_and_surface_than_on_crystal(tmp_path):
    write(str(tmp_path / "crystal.extxyz"), crystal_frames(8, 0))
    members = []
    for k in range(3):
        cfg = {"output": str(tmp_path / f"m{k}"), "seed": k,
               "model": {"preset": "small", "species": ["Cu"], "r_cut": 3.6, "channels": 4, "l_max": 1,
                         "n_layers": 1},
               "data": {"train": str(tmp_path / "crystal.extxyz")}, "batch_size": 2, "max_steps": 60,
               "max_epochs": 1000, "early_stopping_patience": 1000}
        members.append(Trainer(cfg, progress=False).run().model)
    committee = EnsemblePotential(members)
    frames = read(str(TEST), ":")
    by = lambda reg: [a for a in frames if a.info["regime"] == reg]
    crystal = by("crystal")[:3]  # fcc bulk at 300 K (make_test_set.py order)
    slab = by("surface")         # (111) slab at 300/900 K: surfaces never seen in training
    liquid = by("liquid")        # 1800 K liquid

    def mean_sigma(structs):
        return float(np.mean(committee_predictions(committee, structs)["forces_std"]))
    s_cr, s_slab, s_liq = mean_sigma(crystal), mean_sigma(slab), mean_sigma(liquid)
    assert s_liq > 2.0 * s_cr, (s_cr, s_slab, s_liq)
    assert s_slab > 2.0 * s_cr, (s_cr, s_slab, s_liq)
