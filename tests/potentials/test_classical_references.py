"""cgkit's torch LJ and SW against independent implementations (ASE, matscipy)."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ

from cgkit.calculator import CgkitCalculator
from cgkit.errors import InputError, UnknownSpeciesError
from cgkit.potentials import LennardJones, StillingerWeber
from tests.conftest import argon_liquid, triclinic_si


def evaluate(atoms, calc):
    a = atoms.copy()
    a.calc = calc
    return (a.get_potential_energy(), a.get_forces(), a.get_stress(), a.get_potential_energies())


@pytest.mark.parametrize("smooth", [True, False])
def test_lennard_jones_matches_ase(smooth, rng):
    atoms = argon_liquid(rng, n=40)
    kw = dict(sigma=3.405, epsilon=0.0103, rc=8.0, ro=6.5)
    ours = LennardJones(sigma=3.405, epsilon=0.0103, cutoff=8.0, r_on=6.5,
                        mode="ase_smooth" if smooth else "shift")
    e1, f1, s1, ea1 = evaluate(atoms, CgkitCalculator(ours))
    e2, f2, s2, ea2 = evaluate(atoms, AseLJ(smooth=smooth, **kw))
    assert abs(e1 - e2) < 1e-10
    assert np.abs(f1 - f2).max() < 1e-10
    assert np.abs(s1 - s2).max() < 1e-12
    assert np.abs(ea1 - ea2).max() < 1e-10


def test_switched_lennard_jones_is_twice_continuously_differentiable_at_both_ends():
    """The default quintic switch: energy, force and curvature continuous at r_on and r_c."""
    import torch
    pot = LennardJones(sigma=3.4, epsilon=0.01, cutoff=8.0, r_on=6.5)
    sig, eps = torch.tensor(3.4), torch.tensor(0.01)
    for r0 in (6.5, 8.0):
        vals = []
        for r in (r0 - 1e-6, r0 + 1e-6):
            x = torch.tensor(r, requires_grad=True)
            e = pot.pair_energy(x, sig, eps)
            (d1,) = torch.autograd.grad(e, x, create_graph=True)
            (d2,) = torch.autograd.grad(d1, x)
            vals.append((float(e), float(d1), float(d2)))
        assert np.allclose(vals[0], vals[1], atol=1e-7)


def test_stillinger_weber_matches_matscipy(rng):
    ms = pytest.importorskip("matscipy.calculators.manybody",
                             reason="matscipy (test extra) provides the independent SW reference")
    from matscipy.calculators.manybody.explicit_forms import StillingerWeber as MsSW
    from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
        Stillinger_Weber_PRB_31_5262_Si,
    )
    ref = ms.Manybody(**MsSW(Stillinger_Weber_PRB_31_5262_Si))
    for repeat, rattle in (((2, 2, 2), 0.1), ((1, 1, 1), 0.25), ((1, 2, 3), 0.05)):
        atoms = triclinic_si(rng, repeat=repeat, rattle=rattle)
        e1, f1, s1, _ = evaluate(atoms, CgkitCalculator(StillingerWeber()))
        e2, f2, s2, _ = evaluate(atoms, ref)
        assert abs(e1 - e2) < 1e-10
        assert np.abs(f1 - f2).max() < 1e-9
        assert np.abs(s1 - s2).max() < 1e-10


def test_stillinger_weber_diamond_lattice_constant_and_cohesive_energy():
    from scipy.optimize import minimize_scalar
    pot = StillingerWeber()

    def energy(a):
        atoms = bulk("Si", "diamond", a=a, cubic=True)
        return float(pot.energy(pot.graph(atoms))[0]) / len(atoms)

    res = minimize_scalar(energy, bracket=(5.3, 5.43, 5.6), tol=1e-10)
    assert abs(res.x - 5.43095) < 1e-4
    assert abs(res.fun - (-4.3366)) < 1e-4  # ε·(−2) per atom: 2.1683 eV × 2


def test_stillinger_weber_rejects_other_elements():
    with pytest.raises(UnknownSpeciesError, match="not known|only"):
        pot = StillingerWeber()
        pot.compute(pot.graph(bulk("Cu", "fcc", a=3.6)))


def test_lennard_jones_rejects_bad_parameters():
    with pytest.raises(InputError):
        LennardJones(sigma=-1.0)
    with pytest.raises(InputError):
        LennardJones(sigma=1.0, cutoff=2.0, r_on=3.0)
    with pytest.raises(InputError, match="mode"):
        LennardJones(mode="cubic")


def test_two_species_lennard_jones_uses_lorentz_berthelot(rng):
    atoms = argon_liquid(rng, n=8)
    atoms.symbols[::2] = "Kr"
    pot = LennardJones(sigma=[3.405, 3.6], epsilon=[0.0103, 0.014], cutoff=9.0, type_names=["Ar", "Kr"])
    g = pot.graph(atoms)
    e = float(pot.energy(g)[0])
    # independent double loop over minimum-image-free explicit images
    from ase.neighborlist import neighbor_list
    i, j, d = neighbor_list("ijd", atoms, 9.0)
    sig = {"Ar": 3.405, "Kr": 3.6}
    eps = {"Ar": 0.0103, "Kr": 0.014}
    sym = atoms.get_chemical_symbols()
    total = 0.0
    for a, b, r in zip(i, j, d):
        s = 0.5 * (sig[sym[a]] + sig[sym[b]])
        ep = np.sqrt(eps[sym[a]] * eps[sym[b]])
        x = np.clip((r - pot.r_on) / (9.0 - pot.r_on), 0, 1)
        total += 0.5 * 4 * ep * ((s / r) ** 12 - (s / r) ** 6) * (1 - 10 * x**3 + 15 * x**4 - 6 * x**5)
    assert abs(e - total) < 1e-12
