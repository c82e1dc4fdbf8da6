"""Virial pressure (cgkit.properties.pressure) against the thermodynamic route: the configurational
part equals −dE/dV under isotropic scaling of a triclinic cell (finite differences), and the
kinetic part is N k_B T / V."""
import numpy as np
import pytest

from cgkit.data import AtomicGraph
from cgkit.io_potential import load_potential
from cgkit.properties.pressure import GPA_TO_BAR, pressure_summary, virial_pressures
from cgkit.units import EV_PER_A3_TO_GPA, KB_EV


def test_virial_pressure_equals_minus_dE_dV_plus_ideal_gas_term():
    pot = load_potential("cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.0")
    rng = np.random.default_rng(0)
    cell = np.array([[16.0, 0.0, 0.0], [2.0, 15.0, 0.0], [1.0, -1.5, 17.0]])
    frac = (np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 4
    x = frac @ cell + 0.2 * rng.normal(size=(64, 3))
    species, names = np.zeros(64, int), pot.type_names or ("X",)

    def energy(s):
        g = AtomicGraph.from_arrays(x * s, cell * s, True, pot.cutoff, species=species, type_names=names)
        return float(pot.compute(g, forces=False)["energy"][0])

    V = abs(np.linalg.det(cell))
    h = 1e-5
    dE_dV = (energy(1 + h) - energy(1 - h)) / (2 * h) / (3 * V)  # dV = 3 V ds at s = 1
    T = 250.0
    expected = (64 * KB_EV * T / V - dE_dV) * EV_PER_A3_TO_GPA
    shifted = x + 3 * cell[0] - 2 * cell[2]  # unwrapped positions give the same pressure
    p = virial_pressures(pot, [(x, cell), (shifted, cell)], species, names, T)
    assert p[0] == pytest.approx(expected, rel=1e-6)
    assert p[1] == pytest.approx(p[0], rel=1e-10)
    s = pressure_summary(p, "bar")
    assert s["value"] == pytest.approx(p.mean() * GPA_TO_BAR) and s["frames"] == 2 and s["unit"] == "bar"
