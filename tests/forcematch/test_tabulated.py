"""TabulatedPotential: energy/force consistency, replicas, save/load, ASE, table evaluation."""
import math

import numpy as np
import pytest
import torch

from cgkit.data import AtomicGraph, batch_graphs
from cgkit.errors import InputError
from cgkit.forcematch import Table, TabulatedPotential
from cgkit.forcematch.geometry import instance_gradients
from cgkit.io_potential import load_potential
from cgkit.topology import Topology


def _tables():
    r = np.linspace(2.0, 7.0, 201)
    U = 0.02 * (2.5 / r) ** 6 - 0.01 * np.exp(-(r - 4.0) ** 2)
    dU = -6 * 0.02 * (2.5 / r) ** 6 / r + 0.02 * (r - 4.0) * np.exp(-(r - 4.0) ** 2)
    U, dU = U - U[-1], dU
    rb = np.linspace(1.0, 2.0, 51)
    th = np.linspace(math.radians(60), math.pi, 91)
    ph = np.linspace(-math.pi, math.pi, 73)
    return [Table("pair", ("A", "A"), r[0], r[1] - r[0], U, dU),
            Table("pair", ("A", "B"), r[0], r[1] - r[0], 0.5 * U, 0.5 * dU),
            Table("bond", ("B", "A"), rb[0], rb[1] - rb[0], 3 * (rb - 1.5) ** 2, 6 * (rb - 1.5)),
            Table("angle", ("A", "B", "B"), th[0], th[1] - th[0], 0.5 * (th - 2.0) ** 2, th - 2.0),
            Table("dihedral", ("A", "B", "B", "A"), ph[0], ph[1] - ph[0], 0.02 * (1 + np.cos(3 * ph)),
                  -0.06 * np.sin(3 * ph))]


def _system(seed=0):
    rng = np.random.default_rng(seed)
    n_mol = 4
    bonds, angles, dih, pos = [], [], [], []
    for m in range(n_mol):
        o = 4 * m
        bonds += [(o, o + 1), (o + 1, o + 2), (o + 2, o + 3)]
        angles += [(o, o + 1, o + 2), (o + 1, o + 2, o + 3)]
        dih += [(o, o + 1, o + 2, o + 3)]
        x = [rng.uniform(0, 9, 3)]
        for _ in range(3):
            v = rng.normal(size=3)
            x.append(x[-1] + 1.5 * v / np.linalg.norm(v))
        pos += x
    top = Topology.from_bonds(4 * n_mol, bonds, exclude=2)
    top = Topology(n_particles=4 * n_mol, bonds=bonds, angles=angles, dihedrals=dih,
                   exclusions=top.exclusions)
    return np.array(pos), top, np.tile([0, 1, 1, 0], n_mol)


def test_forces_are_minus_the_finite_difference_gradient_of_the_energy():
    pos, top, species = _system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    cell = np.eye(3) * 9.0
    g = AtomicGraph.from_arrays(pos, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
    out = pot.compute(g)
    f = out["forces"].numpy()
    h = 1e-5
    for a in (0, 5, 10):
        for c in range(3):
            e = []
            for s in (1, -1):
                p = pos.copy()
                p[a, c] += s * h
                e.append(float(pot.compute(g.with_positions(p), forces=False)["energy"][0]))
            assert abs(-(e[0] - e[1]) / (2 * h) - f[a, c]) < 1e-6 * max(1.0, abs(f[a, c]))
    # all interaction kinds contribute
    assert abs(float(out["energy"][0])) > 0


def test_geometry_gradients_match_finite_differences_and_mdanalysis():
    from MDAnalysis.lib.distances import calc_angles, calc_dihedrals
    rng = np.random.default_rng(4)
    pos = torch.as_tensor(rng.normal(size=(8, 3)) * 2)
    for kind, idx, ref in [("angle", [[0, 1, 2], [3, 4, 5]], calc_angles),
                           ("dihedral", [[0, 1, 2, 3], [4, 5, 6, 7]], calc_dihedrals)]:
        idx = torch.as_tensor(idx)
        x, grad = instance_gradients(kind, pos, idx, torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool))
        p = pos.numpy()
        xr = ref(*[p[idx[:, k]] for k in range(idx.shape[1])])
        assert np.allclose(x.numpy(), xr, atol=1e-5)
        for m in range(2):
            for k in range(idx.shape[1]):
                for c in range(3):
                    pp, pm = pos.clone(), pos.clone()
                    pp[idx[m, k], c] += 1e-6
                    pm[idx[m, k], c] -= 1e-6
                    xp, _ = instance_gradients(kind, pp, idx[m:m + 1], torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool))
                    xm, _ = instance_gradients(kind, pm, idx[m:m + 1], torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool))
                    assert abs((xp - xm).item() / 2e-6 - grad[m, k, c].item()) < 1e-6


def test_replicas_in_a_batch_get_the_forces_of_single_copies():
    pos, top, species = _system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    cell = np.eye(3) * 9.0
    g1 = AtomicGraph.from_arrays(pos, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
    g2 = AtomicGraph.from_arrays(pos + 0.1, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
    gb = batch_graphs([g1, g2])
    fb = pot.compute(gb)["forces"].numpy()
    assert np.allclose(fb[:16], pot.compute(g1)["forces"].numpy(), atol=1e-12)
    assert np.allclose(fb[16:], pot.compute(g2)["forces"].numpy(), atol=1e-12)
    bad = AtomicGraph.from_arrays(pos[:15], cell, True, pot.cutoff, species=species[:15], type_names=("A", "B"))
    with pytest.raises(InputError, match="16 beads"):
        pot.compute(bad)


def test_closed_form_forces_equal_autograd_forces_in_periodic_and_batched_systems():
    """The MD path (energy + forces without autograd) against the autograd path of Potential,
    in a periodic box with pairs and bonds across the boundary, in a two-replica batch, and
    with nearly straight angles and nearly planar dihedrals."""
    from cgkit.potential import Potential
    pos, top, species = _system(seed=4)
    pot = TabulatedPotential(["A", "B"], top, _tables())
    cell = np.eye(3) * 9.0
    straight = pos.copy()
    straight[2] = straight[1] + 1.5 * (straight[1] - straight[0]) / np.linalg.norm(straight[1] - straight[0])
    straight[2] += 1e-3  # θ ≈ 179.9°: inside the clamp, where 1/sin θ is large
    for p in (pos, pos - 4.0, straight):  # shifted: molecules cross the box boundary
        g1 = AtomicGraph.from_arrays(p, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
        g2 = AtomicGraph.from_arrays(p + 0.3, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
        for g in (g1, batch_graphs([g1, g2])):
            fast, ref = pot.compute(g), Potential.compute(pot, g)
            assert torch.allclose(fast["energy"], ref["energy"], rtol=1e-13, atol=1e-13)
            scale = ref["forces"].abs().max()
            assert (fast["forces"] - ref["forces"]).abs().max() < 1e-11 * scale
    # the closed-form bonded gradients equal the autograd ones instance by instance
    from cgkit.forcematch.tabulated import bonded_x_and_gradients
    g = AtomicGraph.from_arrays(pos, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
    for kind in ("bond", "angle", "dihedral"):
        idx = torch.as_tensor(getattr(top, kind + "s"))
        x, grad = bonded_x_and_gradients(kind, g.positions, idx, g.cell[0], g.pbc[0], None)
        x_ref, grad_ref = instance_gradients(kind, g.positions, idx, g.cell[0], g.pbc[0])
        assert torch.allclose(x, x_ref, atol=1e-14)
        assert torch.allclose(grad, grad_ref, atol=1e-12), kind
        assert grad.sum(1).abs().max() < 1e-12  # translation invariance


def test_save_load_roundtrip_and_ase_calculator(tmp_path):
    from ase import Atoms
    from cgkit.calculator import CgkitCalculator
    pos, top, species = _system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    pot.save(tmp_path / "cg.pt")
    back = load_potential(tmp_path / "cg.pt")
    atoms = Atoms(numbers=np.zeros(16, int), positions=pos, cell=np.eye(3) * 9.0, pbc=True)
    atoms.arrays["bead_types"] = np.array(["A", "B"])[species]
    atoms.calc = CgkitCalculator(back)
    g = AtomicGraph.from_arrays(pos, np.eye(3) * 9.0, True, pot.cutoff, species=species, type_names=("A", "B"))
    assert np.allclose(atoms.get_forces(), pot.compute(g)["forces"].numpy(), atol=1e-12)


def test_table_evaluation_interpolates_and_extrapolates_as_documented():
    t = _tables()[0]
    U, f = t(t.x)
    assert np.allclose(U, t.U) and np.allclose(f, -t.dU)
    U2, f2 = t(np.array([1.0, 8.0]))
    assert U2[1] == 0.0 and f2[1] == 0.0  # pair: zero beyond the cutoff
    assert np.isclose(f2[0], -t.dU[0])  # constant force below the table
    d = _tables()[4]
    Ua, fa = d(np.array([0.3, 0.3 + 2 * math.pi]))
    assert np.isclose(Ua[0], Ua[1]) and np.isclose(fa[0], fa[1])
    with pytest.raises(InputError, match="NaN"):
        Table("bond", ("A", "A"), 1.0, 0.1, [0.0, np.nan], [0.0, 0.0])
    with pytest.raises(InputError, match="2π"):
        Table("dihedral", ("A", "A", "A", "A"), -3.0, 0.1, np.zeros(10), np.zeros(10))
