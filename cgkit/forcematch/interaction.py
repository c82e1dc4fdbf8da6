"""Interactions of a CG model as small immutable value objects.

:class:`Interaction` — what interacts: ``kind`` ("pair", "bond", "angle", "dihedral") and the
bead ``types`` in canonical order; its ``label`` ("pair A-B", "angle A-B-A") is the string used
in file names, ``--grid`` options and summaries, parsed back with :meth:`Interaction.parse`.
:class:`Grid` — a spline grid in internal units (Å or rad). :class:`Term` — one interaction
with its spline basis and its columns in the force-matching design matrix.

Units: distances Å, angles in degrees at the user interface and radians inside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .geometry import ARITY, KINDS, type_key, type_label
from .spline import BSplineBasis

__all__ = ["Interaction", "Grid", "Term", "ANGULAR", "to_internal", "to_user", "unit"]

ANGULAR = ("angle", "dihedral")


def to_internal(kind: str, v: float) -> float:
    """User units (Å, deg) → internal units (Å, rad)."""
    return math.radians(v) if kind in ANGULAR else float(v)


def to_user(kind: str, v):
    """Internal units (Å, rad) → user units (Å, deg); scalars or arrays."""
    return np.degrees(v) if kind in ANGULAR else v


def unit(kind: str) -> str:
    return "deg" if kind in ANGULAR else "Å"


@dataclass(frozen=True)
class Interaction:
    """One interaction type: ``kind`` and bead ``types`` (canonical order, e.g. pair (A, B) =
    (B, A)). Hashable; ``str()`` gives the label used on disk."""
    kind: str
    types: tuple

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"interaction kind must be one of {KINDS}, got '{self.kind}'")
        types = tuple(str(t) for t in self.types)
        if len(types) != ARITY[self.kind]:
            raise InputError(f"a {self.kind} needs {ARITY[self.kind]} bead types, got {list(types)}")
        object.__setattr__(self, "types", type_key(self.kind, types))

    @property
    def label(self) -> str:
        return type_label(self.kind, self.types)

    def __str__(self) -> str:
        return self.label

    @property
    def unit(self) -> str:
        return unit(self.kind)

    @classmethod
    def parse(cls, label) -> "Interaction":
        """``"pair A-B"`` (any spacing) → Interaction("pair", ("A", "B")); an Interaction is
        returned as it is."""
        if isinstance(label, Interaction):
            return label
        parts = str(label).split()
        if len(parts) != 2 or parts[0] not in KINDS:
            raise InputError(f'"{label}" is not an interaction label; write "KIND T1-T2[-T3[-T4]]" with '
                             f"KIND one of {', '.join(KINDS)} (e.g. \"pair A-B\", \"angle A-B-A\")")
        return cls(parts[0], tuple(parts[1].split("-")))


@dataclass(frozen=True)
class Grid:
    """Spline grid in internal units (Å or rad): [lo, hi] with knot ``spacing``; dihedral
    grids are periodic over [-π, π)."""
    lo: float
    hi: float
    spacing: float
    periodic: bool = False

    @classmethod
    def from_user(cls, kind: str, spec, default=None, label: str = "") -> "Grid":
        """From user units: (min, max[, spacing]) Å/deg, or a spacing (deg) for dihedrals."""
        if kind == "dihedral":
            spacing = spec if np.isscalar(spec) else spec[-1]
            return cls(-math.pi, math.pi, math.radians(float(spacing)), True)
        lo, hi = float(spec[0]), float(spec[1])
        spacing = float(spec[2]) if len(spec) > 2 else float(default[2] if default else (hi - lo) / 50)
        if kind == "angle" and not (0.0 <= lo < hi <= 180.0):
            raise InputError(f"{label}: the angle grid must lie within [0, 180] deg, got [{lo}, {hi}]")
        if kind in ("pair", "bond") and not (0.0 <= lo < hi):
            raise InputError(f"{label}: need 0 ≤ min < max Å, got [{lo}, {hi}]")
        return cls(to_internal(kind, lo), to_internal(kind, hi), to_internal(kind, spacing))

    def basis(self) -> BSplineBasis:
        return BSplineBasis(self.lo, self.hi, self.spacing, periodic=self.periodic)


@dataclass(frozen=True)
class Term:
    """An interaction with its cubic B-spline basis; ``offset``: its first column in the
    design matrix (``columns``).

    ``damping`` (dihedrals only): None, or "sin3" for a sin³θ₁·sin³θ₂-damped dihedral
    (Bulacu et al. 2013; see :mod:`.tabulated`). The spline of an undamped term expands the
    generalised force f = -dU/dx; that of a damped dihedral expands the energy U(φ) = Σ a_k B_k(φ)
    (periodic cubic B-splines: periodic U, constant included — the constant of U exerts forces
    through ∂s/∂r), and its design row of basis k on bead b is
    -(B_k'(φ) s ∂φ/∂r_b + B_k(φ) ∂s/∂r_b), s = sin³θ₁ sin³θ₂.
    """
    interaction: Interaction
    basis: BSplineBasis
    offset: int = 0
    damping: str | None = None

    @property
    def kind(self) -> str:
        return self.interaction.kind

    @property
    def types(self) -> tuple:
        return self.interaction.types

    @property
    def label(self) -> str:
        return self.interaction.label

    @property
    def size(self) -> int:
        return self.basis.size

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    def at(self, offset: int) -> "Term":
        """The same term at another column offset."""
        return Term(self.interaction, self.basis, offset, self.damping)

    def range_str(self, lo: float, hi: float) -> str:
        return f"[{float(to_user(self.kind, lo)):.3g}, {float(to_user(self.kind, hi)):.3g}] {unit(self.kind)}"

    def signature(self) -> list:
        b = self.basis
        sig = [self.kind, list(self.types), b.x_min, b.x_max, b.n_intervals, b.periodic]
        return sig + [self.damping] if self.damping is not None else sig


def layout(terms) -> list:
    """Terms placed one after another in the design matrix (offsets from 0)."""
    out, off = [], 0
    for t in terms:
        out.append(t.at(off))
        off += t.size
    return out


def damped_dihedral_table(it: Term, coef, jk_coef, points_per_interval: int):
    """Table (``damping=it.damping``) of a damped dihedral term from its energy coefficients
    ``coef`` (U = Σ a_k B_k, eV), and the jackknife error of f = -dU/dφ (eV/rad) on the table
    grid from ``jk_coef`` (n_jk, size) or None. U is kept as fitted (its constant matters)."""
    from .tabulated import Table
    b = it.basis
    x = np.linspace(b.x_min, b.x_max, b.n_intervals * points_per_interval + 1)
    U = b.value(coef, x)
    dU = _basis_derivative(b, coef, x)
    U[-1], dU[-1] = U[0], dU[0]
    ferr = None
    if jk_coef is not None and len(jk_coef) >= 2:
        fk = np.array([_basis_derivative(b, ck, x) for ck in jk_coef])
        nb = len(jk_coef)
        ferr = np.sqrt((nb - 1) / nb * ((fk - fk.mean(0)) ** 2).sum(0))
    return Table(it.kind, it.types, x[0], x[1] - x[0], U, dU, damping=it.damping), ferr


def _basis_derivative(b: BSplineBasis, coef, x) -> np.ndarray:
    import torch
    idx, der = b.evaluate(torch.as_tensor(np.asarray(x, dtype=np.float64)), derivative=True)
    return (np.asarray(coef, dtype=np.float64)[idx.numpy()] * der.numpy()).sum(-1)
