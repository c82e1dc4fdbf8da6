"""Choosing the energy model of a property calculation, and the results container.

A property calculation (phonons, elastic constants, stable time step) accepts either

* a cgkit :class:`~cgkit.potential.Potential` (or a :class:`~cgkit.calculator.CgkitCalculator`
  wrapping one): exact second derivatives by autograd, computed in float64; or
* any ASE calculator: finite differences of forces / stresses.

:func:`load_model` turns a command-line ``--potential`` spec into one of these:

=========================================================== =====================================
``model.pt`` (a saved cgkit model file)                      cgkit Potential
``cgkit:sw``, ``cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5`` built-in cgkit Potential
``ase:EMT``, ``ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True``
                                                             ASE calculator by class name
``ase:some.module.Class:key=value``                          any importable ASE calculator class
=========================================================== =====================================
"""
from __future__ import annotations

import importlib
import torch

from cgkit.errors import InputError
from cgkit.results import Results  # noqa: F401  (re-exported; one results protocol)

__all__ = ["load_model", "load_calculator", "resolve_model", "Results", "ASE_CALCULATORS"]

#: ASE calculators addressable as ``ase:<Name>`` (case-insensitive)
ASE_CALCULATORS = {
    "emt": ("ase.calculators.emt", "EMT"),
    "lennardjones": ("ase.calculators.lj", "LennardJones"),
    "lj": ("ase.calculators.lj", "LennardJones"),
    "morse": ("ase.calculators.morse", "MorsePotential"),
    "morsepotential": ("ase.calculators.morse", "MorsePotential"),
    "tersoff": ("ase.calculators.tersoff", "Tersoff"),
    "eam": ("ase.calculators.eam", "EAM"),
}


def _ase_calculator(spec: str):
    parts = spec.split(":", 2)
    name = parts[1] if len(parts) > 1 else ""
    if not name:
        raise InputError(f"'{spec}': give an ASE calculator name, e.g. ase:EMT or "
                         "ase:LennardJones:sigma=3.4,epsilon=0.0104")
    from cgkit.io_potential import parse_kwargs
    kwargs = parse_kwargs(parts[2]) if len(parts) > 2 else {}
    if name.lower() in ASE_CALCULATORS:
        module, cls = ASE_CALCULATORS[name.lower()]
    elif "." in name:
        module, cls = name.rsplit(".", 1)
    else:
        raise InputError(f"unknown ASE calculator '{name}'; choose from "
                         f"{sorted(set(v[1] for v in ASE_CALCULATORS.values()))} "
                         "or give a full class path, e.g. ase:ase.calculators.emt.EMT")
    try:
        klass = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot import ASE calculator {module}.{cls}: {exc}") from exc
    try:
        return klass(**kwargs)
    except TypeError as exc:
        raise InputError(f"bad keyword arguments for {cls}: {exc}") from exc


def load_model(spec):
    """A cgkit Potential (float64) for ``cgkit:...`` specs and model files, an ASE calculator
    for ``ase:...`` specs. Objects that already are potentials or calculators pass through."""
    if not isinstance(spec, (str, bytes)) and not hasattr(spec, "__fspath__"):
        return spec
    spec = str(spec)
    if spec.startswith("ase:"):
        return _ase_calculator(spec)
    from cgkit.io_potential import load_potential
    return load_potential(spec, dtype=torch.float64)


def load_calculator(spec):
    """An ASE calculator for any ``--potential`` spec (cgkit potentials are wrapped in a
    float64 :class:`~cgkit.calculator.CgkitCalculator`)."""
    model = load_model(spec)
    potential, calc = resolve_model(model)
    return calc


def resolve_model(model, dtype: torch.dtype = torch.float64):
    """``(potential or None, ase_calculator)`` for a Potential, a CgkitCalculator, an ASE
    calculator or a spec string. The potential is cast to ``dtype`` (float64 by default:
    second derivatives need it)."""
    from cgkit.calculator import CgkitCalculator
    from cgkit.potential import Potential
    model = load_model(model)
    if isinstance(model, CgkitCalculator):
        model = model.potential
    if isinstance(model, Potential):
        pot = model.to(dtype)
        return pot, CgkitCalculator(pot, dtype=dtype)
    if hasattr(model, "get_forces") or hasattr(model, "calculate"):
        return None, model
    raise InputError(f"expected a cgkit Potential, an ASE calculator or a spec string, got "
                     f"{type(model).__name__}")
