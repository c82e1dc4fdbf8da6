"""Slow: LongRangeENNP trained with ``cgkit train`` on GFN2-xTB (tblite) energies, forces,
molecular dipoles (and, weakly weighted, xTB's Mulliken charges) reproduces xTB's dipoles of
unseen molecules and its charges correlate with xTB's; the same model trained on energies and
forces alone does not reproduce the dipoles. (Dipoles alone fix 3 numbers per molecule, not
the N − 1 charge differences: their charge correlation with xTB varied from 0.43 to 0.69 between
seeds in the benchmark.)

Reference: GFN2-xTB through ``tblite`` (skipped with the reason when it is not installed).
The full comparison with a local ENNP (forces beyond the cutoff, several seeds) is
``benchmarks/longrange_accuracy.py --part molecules``.
"""
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from cgkit.io_potential import load_potential
from cgkit.jsonutil import loads_strict
from cgkit.train import Trainer

tblite_ase = pytest.importorskip("tblite.ase", reason="needs tblite (GFN2-xTB): pip install tblite")

MOLS = ["H2O", "NH3", "HCN", "H2CO", "CH3CN", "CH3OH"]


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def xtb_monomers(n_each, seed):
    """Rattled, rotated, translated monomers labelled by GFN2-xTB: energy (eV), forces (eV/Å),
    Mulliken charges (e, kept in ``arrays['xtb_charges']``), total dipole (e·Å)."""
    calc = tblite_ase.TBLite(method="GFN2-xTB", verbosity=0)
    rng = np.random.default_rng(seed)
    out = []
    for name in MOLS:
        for _ in range(n_each):
            a = molecule(name)
            a.rattle(0.05, seed=int(rng.integers(1 << 30)))
            a.positions = a.positions @ _rotation(rng).T + rng.uniform(-10, 10, 3)
            a.calc = calc
            e, f = a.get_potential_energy(), a.get_forces()
            q, mu = a.get_charges(), a.get_dipole_moment()
            a.calc = SinglePointCalculator(a, energy=e, forces=f, dipole=mu, charges=q)
            a.arrays["xtb_charges"] = q
            out.append(a)
    return out


@pytest.mark.slow
def test_dipole_training_reproduces_xtb_dipoles(tmp_path):
    train = xtb_monomers(8, seed=0)
    test = xtb_monomers(3, seed=1)
    write(tmp_path / "train.xyz", train)
    base = {"seed": 0, "data": {"train": str(tmp_path / "train.xyz"), "val_fraction": 0.1},
            "model": {"species": ["C", "H", "N", "O"], "r_cut": 4.0, "channels": 8, "l_max": 1,
                      "n_layers": 2, "dtype": "float64", "init_seed": 0,
                      "long_range": {"charge_scheme": "bond", "charge_hidden": 16}},
            "loss": {"energy": 1.0, "forces": 10.0}, "optimizer": {"lr": 0.01}, "ema_decay": 0.0,
            "batch_size": 2, "max_epochs": 80, "early_stopping_patience": 200, "threads": 1}
    Trainer({**base, "output": str(tmp_path / "d"), "dipole_weight": 20.0, "charges_weight": 2.0},
            progress=False).run()
    Trainer({**base, "output": str(tmp_path / "ef"), "max_epochs": 20}, progress=False).run()
    res = {}
    for name in ("d", "ef"):
        m = load_potential(tmp_path / name / "model.pt")
        mu, mu_ref, q, q_ref = [], [], [], []
        for a in test:
            g = m.graph(a)
            qa = m.atomic_charges(g).detach().numpy()
            q.append(qa)
            q_ref.append(a.arrays["xtb_charges"])
            mu.append(m.dipoles(g).detach().numpy()[0])
            mu_ref.append(a.calc.results["dipole"])
        mu, mu_ref = np.array(mu), np.array(mu_ref)
        rel = float(np.sqrt(np.sum((mu - mu_ref) ** 2) / np.sum(mu_ref ** 2)))
        r = float(np.corrcoef(np.concatenate(q), np.concatenate(q_ref))[0, 1])
        res[name] = (rel, r)
    s = loads_strict((tmp_path / "d" / "summary.json").read_text())
    print(f"unseen molecules, relative dipole RMSE / charge Pearson vs xTB: E+F+dipole {res['d']}, "
          f"E+F only {res['ef']}; validation dipole RMSE {s['validation']['dipole_rmse_eA']:.4f} e·Å")
    # 43 monomers, 80 epochs: relative RMSE 0.30 measured (the benchmark, 200 structures: 0.17)
    assert res["d"][0] < 0.4  # R² > 0.84 over components
    assert res["d"][0] < 0.4 * res["ef"][0]  # E+F only: ~1 (no dipole at all)
    assert res["d"][1] > 0.8  # correlates with xTB (Mulliken) charges
