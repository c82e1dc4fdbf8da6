"""Choosing the energy model of a property calculation.

A property calculation (phonons, elastic constants, stable time step) accepts either

* a cgkit :class:`~cgkit.potential.Potential` (or a :class:`~cgkit.calculator.CgkitCalculator`
  wrapping one): exact second derivatives by autograd, computed in float64; or
* any ASE calculator: finite differences of forces / stresses.

``--potential`` specs (``model.pt``, ``cgkit:sw``, ``ase:EMT``, ...) are resolved in one place,
:mod:`cgkit.io_potential`; :func:`load_model`, :func:`load_calculator` and
:data:`ASE_CALCULATORS` are re-exported here for compatibility.
"""
from __future__ import annotations

import copy

import torch

from cgkit.errors import InputError
from cgkit.io_potential import ASE_CALCULATORS, load_calculator, load_model
from cgkit.results import Results  # noqa: F401  (re-exported; one results protocol)

__all__ = ["load_model", "load_calculator", "resolve_model", "Results", "ASE_CALCULATORS"]


def resolve_model(model, dtype: torch.dtype = torch.float64):
    """``(potential or None, ase_calculator)`` for a Potential, a CgkitCalculator, an ASE
    calculator or a spec string.

    The potential is used in ``dtype`` (float64 by default: second derivatives need it). A
    caller's potential of another dtype is copied before the cast: the object passed in is
    never changed (its dtype, parameters and buffers stay as they were)."""
    from cgkit.calculator import CgkitCalculator
    from cgkit.potential import Potential
    model = load_model(model, dtype=dtype)
    if isinstance(model, CgkitCalculator):
        model = model.potential
    if isinstance(model, Potential):
        pot = model if _has_dtype(model, dtype) else copy.deepcopy(model).to(dtype)
        return pot, CgkitCalculator(pot, dtype=dtype)
    if hasattr(model, "get_forces") or hasattr(model, "calculate"):
        return None, model
    raise InputError(f"expected a cgkit Potential, an ASE calculator or a spec string, got "
                     f"{type(model).__name__}")


def _has_dtype(module: torch.nn.Module, dtype: torch.dtype) -> bool:
    """True when every floating-point parameter and buffer already is ``dtype``."""
    tensors = list(module.parameters()) + list(module.buffers())
    return all(t.dtype == dtype for t in tensors if t.is_floating_point())
