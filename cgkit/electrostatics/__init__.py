"""Long-range electrostatics (Ewald, particle-mesh Ewald, direct sum, slab, damped shifted force).

Units: charges in e, lengths in Å, energies in eV (k_e = 14.399645 eV·Å/e²). Periodic sums
use tin-foil (conducting) boundary conditions; a net charge needs ``background=True``
(uniform neutralising background). See :class:`Electrostatics` and docs/electrostatics.md.

    >>> from cgkit.electrostatics import Electrostatics, Exclusions, K_E
    >>> es = Electrostatics(method="auto", accuracy=1e-6)
    >>> e_i = es.atomic_energies(positions, charges, cell, pbc)   # (n,) eV, differentiable
"""
from .core import METHODS, Electrostatics, Exclusions, K_E

__all__ = ["Electrostatics", "Exclusions", "K_E", "METHODS"]
