"""Virial pressure of a potential on stored frames (CG or atomistic).

P = N k_B T / V − tr(σ)/3 per frame, with σ cgkit's stress (eV/Å³, tensile positive, the
potential's virial only) and the kinetic term of N point particles at the given temperature
(the ensemble value, as for frames without velocities). Used by IBI/relative-entropy pressure
corrections and by the case studies' pressure tables — the one home of this formula.

Units: positions and cells Å, temperature K, pressures GPa (×10⁴ for bar).
"""
from __future__ import annotations

import numpy as np

from cgkit.units import EV_PER_A3_TO_GPA, KB_EV

__all__ = ["virial_pressures", "pressure_summary", "GPA_TO_BAR"]

GPA_TO_BAR = 1.0e4


def virial_pressures(potential, frames, species, type_names, temperature: float) -> np.ndarray:
    """Pressure (GPa) of every frame: ``frames`` iterable of (positions (n, 3) Å, cell (3, 3) Å
    or box lengths (3,) Å), fully periodic; ``species`` (n,) indices into ``type_names``;
    ``temperature`` K (kinetic term N k_B T / V)."""
    from cgkit.data import AtomicGraph
    out = []
    for x, cell in frames:
        x = np.asarray(x, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        cell = np.diag(cell) if cell.ndim == 1 else cell
        frac = x @ np.linalg.inv(cell)
        x = x - np.floor(frac) @ cell  # wrapped into the cell (no change for a periodic system)
        kw = {"dtype": potential.dtype} if getattr(potential, "dtype", None) is not None else {}
        g = AtomicGraph.from_arrays(x, cell, True, potential.cutoff, species=np.asarray(species),
                                    type_names=tuple(type_names), **kw)
        st = potential.compute(g, forces=False, stress=True)["stress"][0].detach().double().numpy()
        V = abs(float(np.linalg.det(cell)))
        out.append((len(x) * KB_EV * temperature / V - np.trace(st) / 3.0) * EV_PER_A3_TO_GPA)
    return np.asarray(out, dtype=np.float64)


def pressure_summary(pressures_gpa, unit: str = "bar") -> dict:
    """{value, error (standard error of the mean over frames), unit, frames} of per-frame
    pressures in GPa, reported in ``unit`` ("bar" or "GPa")."""
    p = np.asarray(pressures_gpa, dtype=np.float64) * (GPA_TO_BAR if unit == "bar" else 1.0)
    err = float(p.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else None
    return {"value": float(p.mean()), "error": err, "unit": unit, "frames": int(len(p))}
