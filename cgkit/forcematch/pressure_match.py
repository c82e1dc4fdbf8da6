"""Exact mean-pressure constraint for spline force matching (MS-CG in the NPT sense).

Force matching fixes the mean forces but not the pressure (Das & Andersen, J. Chem. Phys. 132,
164106 (2010)). The pressure of the CG model on a frame of volume V is

    P = N k_B T / V + W / (3 V),   W = Σ_pairs r f(r) + Σ_bonds r f_b(r)

(angles and dihedrals are scale invariant and add nothing, Euler's theorem). With
f(x) = Σ_k c_k B_k(x), W is linear in the spline coefficients, so the mean over the fitted
frames is ⟨P⟩ = v·c + ⟨N k_B T / V⟩ with v = ⟨Σ x B(x) / (3 V)⟩, and ⟨P⟩ = P_target is one
linear equality imposed exactly by :func:`~cgkit.forcematch.solver.solve_system`.

Units: pressure in bar at the interface (eV/Å³ inside), temperature in K, volumes Å³.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["PressureTarget", "EV_PER_A3_IN_BAR", "KB_EV_PER_K"]

#: 1 eV/Å³ in bar
EV_PER_A3_IN_BAR = 1.602176634e6
#: Boltzmann constant, eV/K
KB_EV_PER_K = 8.617333262e-5


@dataclass(frozen=True)
class PressureTarget:
    """Target mean pressure of the CG model on the fitted frames.

    bar : target pressure, bar (e.g. the atomistic pressure at the state point)
    temperature_K : temperature of the reference trajectory, K (kinetic term N k_B T / V)
    """

    bar: float
    temperature_K: float | None = None

    def __post_init__(self):
        if not isinstance(self.bar, (int, float)) or not math.isfinite(self.bar):
            raise InputError(f"pressure target: the pressure must be a finite number of bar, got {self.bar!r}")
        if self.temperature_K is None:
            raise InputError("pressure target: give the temperature of the reference trajectory "
                             "(temperature_K=..., CLI --temperature K); the kinetic term N k_B T / V needs it")
        t = self.temperature_K
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise InputError(f"pressure target: the temperature must be a positive number of K, got {t!r}")

    @property
    def ev_per_A3(self) -> float:
        """The target pressure in eV/Å³."""
        return self.bar / EV_PER_A3_IN_BAR
