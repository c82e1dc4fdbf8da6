"""Dipole (and charge) training of LongRangeENNP through ``cgkit train``'s loss.

Independent reference: SPC/Fw water (``cgkit:spcfw``, fixed charges q_O = −0.82 e,
q_H = +0.41 e) — its molecular dipoles μ = Σ q_i r_i are known analytically from the
positions, so a model trained on them must recover the charges. Wiring: dipoles in e·Å,
independent of the origin for neutral structures (shifted by Q·a for a net charge Q), labels in
another unit, of the wrong shape or for periodic cells refused with cgkit errors.
"""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from cgkit.errors import InputError, NotSupportedError
from cgkit.io_potential import load_potential
from cgkit.jsonutil import loads_strict
from cgkit.nn import LongRangeENNP
from cgkit.train import Trainer
from cgkit.train.dataset import graphs_from_atoms

Q_SPCFW = {"O": -0.82, "H": 0.41}

TINY = dict(channels=4, l_max=1, n_layers=1, n_radial=4, radial_hidden=8, radial_layers=1,
            readout_hidden=4, charge_hidden=8, dtype="float64")


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def spcfw_waters(n, seed=0):
    """``n`` rattled, rotated water molecules far from the origin (up to 20 Å), labelled by
    SPC/Fw (energy eV, forces eV/Å) with their analytic dipoles Σ q_i r_i (e·Å)."""
    teacher = load_potential("cgkit:spcfw", dtype=torch.float64)
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = molecule("H2O")
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        a.positions = a.positions @ _rotation(rng).T + rng.uniform(-20, 20, 3)
        out = teacher.compute(teacher.graph(a))
        q = np.array([Q_SPCFW[s] for s in a.get_chemical_symbols()])
        a.calc = SinglePointCalculator(a, energy=float(out["energy"][0]),
                                       forces=out["forces"].detach().numpy(), dipole=q @ a.positions)
        frames.append(a)
    return frames


def _cfg(tmp_path, name, data, **over):
    cfg = {"output": str(tmp_path / name), "seed": 0,
           "model": {"species": ["H", "O"], "r_cut": 2.0, "init_seed": 1,
                     "long_range": {"charge_scheme": "bond", "charge_hidden": 8},
                     **{k: v for k, v in TINY.items() if k != "charge_hidden"}},
           "data": {"train": str(data), "val_fraction": 0.25},
           "loss": {"energy": 1.0, "forces": 1.0}, "optimizer": {"lr": 0.02}, "ema_decay": 0.0,
           "batch_size": 4, "max_epochs": 40, "early_stopping_patience": 100, "threads": 1}
    cfg.update(over)
    return cfg


def test_dipole_training_recovers_spcfw_dipoles_and_charges(tmp_path):
    """Trained mainly on the analytic SPC/Fw dipoles (``dipole_weight`` 100, E and F 0.01),
    the validation dipole RMSE falls below 10 % of the dipoles' RMS and below a tenth of the
    error of a model trained on E and F alone (latent charges), and the learned charges of
    unseen molecules approach q_O = −0.82, q_H = +0.41 e."""
    frames = spcfw_waters(16)
    write(tmp_path / "w.xyz", frames)
    mu_rms = float(np.sqrt(np.mean([a.calc.results["dipole"] ** 2 for a in frames])))
    Trainer(_cfg(tmp_path, "d", tmp_path / "w.xyz", dipole_weight=100.0, max_epochs=25,
                 loss={"energy": 0.01, "forces": 0.01}), progress=False).run()
    Trainer(_cfg(tmp_path, "ef", tmp_path / "w.xyz", max_epochs=4), progress=False).run()
    s = loads_strict((tmp_path / "d" / "summary.json").read_text())
    s0 = loads_strict((tmp_path / "ef" / "summary.json").read_text())
    d_after = s["validation"]["dipole_rmse_eA"]
    d_ef = s0["validation"]["dipole_rmse_eA"]
    print(f"dipole RMSE: E+F(+D) {d_after:.4f}, E+F only {d_ef:.4f}, dipole RMS {mu_rms:.4f} e·Å")
    assert d_after < 0.1 * mu_rms  # relative RMSE < 10 %: R² > 0.99
    assert d_after < 0.1 * d_ef
    # recovered charges, on molecules not seen in training
    model = load_potential(tmp_path / "d" / "model.pt")
    assert isinstance(model, LongRangeENNP)
    test = spcfw_waters(6, seed=99)
    q = np.concatenate([model.atomic_charges(model.graph(a)).detach().numpy() for a in test])
    ref = np.concatenate([[Q_SPCFW[s] for s in a.get_chemical_symbols()] for a in test])
    print("learned charges − SPC/Fw:", np.round(q - ref, 3))
    assert np.abs(q - ref).max() < 0.05, np.c_[q, ref]


def test_dipoles_are_origin_independent_for_neutral_and_shift_by_q_a_for_charged():
    m = LongRangeENNP(["H", "O"], 2.0, init_seed=3, charge_scheme="neutralize", **TINY)
    with torch.no_grad():
        for p in m.charge_out.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=p.dtype))
    a = molecule("H2O")
    a.rattle(0.05, seed=2)
    shift = np.array([13.0, -7.5, 4.25])
    b = a.copy()
    b.positions += shift
    mu_a, mu_b = (m.dipoles(m.graph(x)).detach().numpy()[0] for x in (a, b))
    assert np.abs(mu_a).max() > 1e-3  # not trivially zero
    assert np.allclose(mu_a, mu_b, atol=1e-12, rtol=0)
    # equals Σ q_i r_i computed here from the charges (e·Å)
    q = m.atomic_charges(m.graph(a)).detach().numpy()
    assert np.allclose(mu_a, q @ a.positions, atol=1e-14, rtol=0)
    # a cation (total charge from initial_charges): μ(b) − μ(a) = Q·shift
    for x in (a, b):
        x.set_initial_charges([1.0, 0.0, 0.0])
    mu_a, mu_b = (m.dipoles(m.graph(x)).detach().numpy()[0] for x in (a, b))
    assert np.allclose(mu_b - mu_a, 1.0 * shift, atol=1e-11, rtol=0)
    # periodic cell: Σ q_i r_i depends on wrapping — refused
    c = a.copy()
    c.set_initial_charges([0.0, 0.0, 0.0])
    c.cell, c.pbc = [8.0, 8.0, 8.0], True
    with pytest.raises(NotSupportedError, match="open structures"):
        m.dipoles(m.graph(c))


def _water_with_dipole(mu, **info):
    a = molecule("H2O")
    a.info.update(info)
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((3, 3)), dipole=mu)
    return a


def test_bad_dipole_labels_are_refused(tmp_path):
    q = np.array([Q_SPCFW[s] for s in molecule("H2O").get_chemical_symbols()])
    mu = q @ molecule("H2O").positions
    g, = graphs_from_atoms([_water_with_dipole(mu, dipole_unit="e*A")], ["H", "O"], 2.0)
    assert torch.allclose(g.targets["dipole"], torch.as_tensor(mu).reshape(1, 3))
    with pytest.raises(InputError, match=r"frame 0 of the data: the dipole is labelled in 'Debye'.*multiply by 0\.20819"):
        graphs_from_atoms([_water_with_dipole(4.803204 * mu, dipole_unit="Debye")], ["H", "O"], 2.0)
    # wrong shape: 2 numbers, or one vector per atom
    with pytest.raises(InputError, match="dipole must be 3 numbers"):
        graphs_from_atoms([_water_with_dipole(mu[:2])], ["H", "O"], 2.0)
    with pytest.raises(InputError, match="dipole must be 3 numbers"):
        graphs_from_atoms([_water_with_dipole(np.zeros((3, 3)))], ["H", "O"], 2.0)
    # an ion pair Na+ Cl− (|q| 0.9 e at 2.4 Å): its dipole in Debye (10.4) needs |q| > 2 e
    pair = Atoms("NaCl", positions=[[0, 0, 0], [2.4, 0, 0]])
    mu_pair = np.array([-0.9 * 2.4, 0, 0])
    pair.calc = SinglePointCalculator(pair, energy=0.0, dipole=mu_pair)
    graphs_from_atoms([pair], ["Cl", "Na"], 3.0)  # e·Å: accepted
    pair.calc = SinglePointCalculator(pair, energy=0.0, dipole=4.803204 * mu_pair)
    with pytest.raises(InputError, match="exceeds what atomic charges within ±2 e can give.*Debye"):
        graphs_from_atoms([pair], ["Cl", "Na"], 3.0)
    # a periodic cell: μ = Σ q_i r_i changes when an atom is wrapped; refused with dipole_weight > 0
    frames = spcfw_waters(4)
    for a in frames:
        a.cell = [30.0, 30.0, 30.0]
        a.pbc = True
        a.wrap()
    write(tmp_path / "pbc.xyz", frames)
    with pytest.raises(InputError, match="4 structures with a dipole label are periodic"):
        Trainer(_cfg(tmp_path, "p", tmp_path / "pbc.xyz", dipole_weight=1.0, max_epochs=1),
                progress=False).run()
    assert not (tmp_path / "p").exists()


def test_compute_returns_the_charges_of_the_same_forward_pass():
    """``compute(..., charges=True)`` (what the trainer's charge/dipole loss uses) runs the local
    model once and gives the charges of ``atomic_charges`` and the energy/forces of a plain
    ``compute``; parameter gradients of a charge+force loss equal the two-pass version."""
    from cgkit.data import batch_graphs
    m = LongRangeENNP(["H", "O"], 2.0, init_seed=3, charge_scheme="bond", **TINY)
    batch = batch_graphs([m.graph(a) for a in spcfw_waters(3, seed=0)])
    calls = []
    orig = m.local.features
    m.local.features = lambda *a, **k: calls.append(1) or orig(*a, **k)
    one = m.compute(batch, create_graph=True, charges=True)
    assert len(calls) == 1
    q2 = m.atomic_charges(batch, batch.positions, batch.cell)
    two = m.compute(batch, create_graph=True)
    assert torch.allclose(one["charges"], q2, atol=1e-14, rtol=0)
    assert torch.abs(q2).max() > 1e-3
    for k in ("energy", "forces"):
        assert torch.allclose(one[k], two[k], atol=1e-13, rtol=0)
    params = [p for p in m.parameters() if p.requires_grad]

    def grads(out, q):
        loss = (out["forces"] ** 2).sum() + ((q - 0.1) ** 2).sum()
        return torch.autograd.grad(loss, params, allow_unused=True)
    for a, b in zip(grads(one, one["charges"]), grads(two, q2)):
        if a is None or b is None:
            assert a is None and b is None
        else:
            assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)
    del m.local.features
    with pytest.raises(NotSupportedError, match="no atomic charges"):
        m.local.compute(batch, charges=True)  # the local ENNP alone has no charges


def test_charge_labels_that_do_not_sum_to_the_total_charge_are_refused(tmp_path):
    """The model keeps Σ q = Q per structure; a charge label summing to another value (here a
    neutral water labelled +0.3 e in all) is refused before training, naming the structure."""
    from cgkit.errors import TrainingError
    frames = spcfw_waters(4)
    for a in frames:
        q = np.array([Q_SPCFW[s] for s in a.get_chemical_symbols()])
        a.calc.results["charges"] = q
        del a.calc.results["dipole"]
    frames[2].calc.results["charges"] = frames[2].calc.results["charges"] + 0.1
    write(tmp_path / "q.xyz", frames)
    with pytest.raises(TrainingError, match=r"(training|validation) structure \d: its reference charges sum to 0.3 e, but its "
                                            r"total charge is 0 e"):
        Trainer(_cfg(tmp_path, "q", tmp_path / "q.xyz", charges_weight=1.0, max_epochs=1),
                progress=False).run()
    assert not (tmp_path / "q").exists()
    # labelled as the cation it would be: accepted (and trained for one epoch)
    frames[2].set_initial_charges([0.3, 0.0, 0.0])
    write(tmp_path / "q1.xyz", frames)
    Trainer(_cfg(tmp_path, "q1", tmp_path / "q1.xyz", charges_weight=1.0, max_epochs=1),
            progress=False).run()
