"""cgkit — multiscale simulation of matter.

Units inside cgkit: eV, Å, fs, amu, e; stress eV/Å³ (GPa at user interfaces); THz.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import CgkitError  # noqa: E402
from .data import AtomicGraph, batch_graphs  # noqa: E402
from .potential import Potential, SumPotential  # noqa: E402

__all__ = ["__version__", "CgkitError", "AtomicGraph", "batch_graphs", "Potential", "SumPotential",
           "CgkitCalculator", "load_potential"]


def __getattr__(name):
    if name == "CgkitCalculator":
        from .calculator import CgkitCalculator
        return CgkitCalculator
    if name == "load_potential":
        from .io_potential import load_potential
        return load_potential
    raise AttributeError(name)
