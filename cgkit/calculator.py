"""ASE calculator for any cgkit :class:`~cgkit.potential.Potential`.

Works with ASE MD, optimizers (including cell relaxation through ``FrechetCellFilter``),
phonopy and every ASE-based tool. Units are ASE's: eV, Å, eV/Å, eV/Å³.
"""
from __future__ import annotations

import weakref

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .data import AtomicGraph
from .errors import InputError
from .potential import Potential

__all__ = ["CgkitCalculator"]


class CgkitCalculator(Calculator):
    """ASE calculator wrapping a cgkit Potential.

    Parameters
    ----------
    potential : Potential
    dtype : torch dtype of the calculation (default: the potential's; float64 for phonons
        and elastic constants)

    ``implemented_properties``: energy, free_energy, energies, forces, stress. Stress is only
    computed for structures periodic in all three directions. :meth:`get_hessian` returns the
    analytic (3n, 3n) Hessian in eV/Å² of the structure the calculator is attached to
    (``atoms.calc = calc; calc.get_hessian()``) or of the ``atoms`` passed.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential: Potential, *, dtype: torch.dtype | None = None, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.dtype = dtype or potential.dtype
        if self.dtype != potential.dtype:
            import copy
            self.potential = copy.deepcopy(potential).to(self.dtype)  # never change the caller's
        self._attached = None  # weak reference to the Atoms this calculator is attached to

    def set_atoms(self, atoms) -> None:
        """Called by ASE on ``atoms.calc = calc``: remember (weakly) the structure, so that
        :meth:`get_hessian` works before any other calculation."""
        self._attached = weakref.ref(atoms) if atoms is not None else None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_attached"] = None  # weak references do not pickle
        return state

    def _graph(self, atoms) -> AtomicGraph:
        return self.potential.graph(atoms, dtype=self.dtype)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        graph = self._graph(self.atoms)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        out = self.potential.compute(graph, forces=True, stress=want_stress, atomic=True)
        energy = float(out["energy"][0])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["energies"].cpu().numpy().astype(np.float64)
        self.results["forces"] = out["forces"].cpu().numpy().astype(np.float64)
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"][0].cpu().numpy())

    def get_hessian(self, atoms=None, *, include_strain: bool = False) -> np.ndarray:
        """(3n, 3n) Hessian ∂²E/∂r∂r, eV/Å², atom-major (x0, y0, z0, x1, ...); with
        ``include_strain`` (3n+6, 3n+6) (see :meth:`cgkit.potential.Potential.hessian`).

        ``atoms``: the structure (default: the Atoms this calculator is attached to, in its
        current state; otherwise the last structure calculated)."""
        if atoms is None:
            attached = self._attached() if self._attached is not None else None
            atoms = attached if attached is not None and attached.calc is self else self.atoms
        if atoms is None:
            raise InputError("get_hessian needs a structure: attach the calculator first "
                             "(atoms.calc = calc) or pass it (calc.get_hessian(atoms))")
        H = self.potential.hessian(self._graph(atoms), include_strain=include_strain)
        return H.cpu().numpy()
