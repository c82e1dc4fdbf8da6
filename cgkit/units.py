"""Units and conversion factors.

Inside cgkit: energy eV, length Å, time fs, mass amu (g/mol), charge e, stress eV/Å³
(GPa at user interfaces), frequency THz. Convert only at input/output edges.
"""
from __future__ import annotations

from ase import units as _u

#: eV/Å³ → GPa
EV_PER_A3_TO_GPA = 1.0 / _u.GPa
#: GPa → eV/Å³
GPA_TO_EV_PER_A3 = _u.GPa
#: kJ/mol → eV
KJ_PER_MOL_TO_EV = _u.kJ / _u.mol
#: kcal/mol → eV
KCAL_PER_MOL_TO_EV = _u.kcal / _u.mol
#: Boltzmann constant, eV/K
KB_EV = _u.kB
#: 1 fs in ASE's internal time unit (Å·sqrt(amu/eV))
FS_ASE = _u.fs
#: nm → Å
NM_TO_A = 10.0
#: GROMACS force unit kJ/(mol·nm) → eV/Å
KJ_PER_MOL_NM_TO_EV_PER_A = KJ_PER_MOL_TO_EV / NM_TO_A
#: Angular frequency sqrt(eV/Å²/amu) → THz (ordinary frequency, ν = ω/2π)
SQRT_EV_A2_AMU_TO_THZ = _u.fs * 1e3 / (2.0 * 3.141592653589793)  # ω [1/ASE time] → ν [THz]; ≈ 15.6333
#: mass density amu/Å³ → g/cm³ (1 amu = 1.66053906660e-24 g, CODATA 2018; 1 Å³ = 1e-24 cm³)
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660
#: Kelvin → eV
K_TO_EV = _u.kB
