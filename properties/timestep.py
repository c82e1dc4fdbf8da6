"""The largest stable MD time step, from the highest vibrational frequency.

For velocity Verlet a harmonic mode of angular frequency ω is stable only if ω·dt < 2, so the
fastest mode of the system sets ``dt_max = 2 / ω_max``, where ω_max² = λ_max is the largest
eigenvalue of the mass-weighted Hessian ``D = M^-1/2 H M^-1/2`` of the simulated cell (its
Γ point; equivalently the highest phonon frequency at the q-points commensurate with it).

The *recommended* time step resolves the shortest period T_min = 2π/ω_max with
``points_per_period`` steps (default 20, the usual rule of thumb for good energy
conservation), i.e. ``dt = T_min / 20 = (π/20)·dt_max ≈ 0.157·dt_max``.

Coarse-grained systems: give the bead configuration (ASE Atoms of beads whose masses are the
mapped bead masses, or ``masses=``) and a CG potential; :func:`timestep_gain` reports how much
larger the CG time step can be than the atomistic one.

Units: λ eV/Å²/amu, ω rad/fs, ν THz, dt fs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from ase import units

from cgkit.errors import InputError, StructureError
from cgkit.results import Analysis

from .calculators import Results, resolve_model

__all__ = ["StableTimestep", "stability_from_hessian", "timestep_from_frequency", "timestep_gain"]

#: sqrt(eV/Å²/amu) → rad/fs
_OMEGA_TO_RAD_PER_FS = units.fs


def timestep_from_frequency(nu_max_thz: float, points_per_period: float = 20.0) -> dict:
    """Stability limits from the highest (ordinary) frequency ν_max in THz.

    Returns ``omega_max`` rad/fs, ``lambda_max`` eV/Å²/amu, ``dt_max`` fs (= 2/ω_max, velocity
    Verlet), ``dt_recommended`` fs (= period / points_per_period), ``period_min`` fs.
    """
    if not nu_max_thz > 0:
        raise InputError(f"the highest frequency must be positive, got {nu_max_thz} THz "
                         "(an unstable or empty system has no vibrational time step)")
    if not points_per_period > math.pi:  # dt_recommended must stay below dt_max
        raise InputError("points_per_period must be larger than π (the Verlet stability limit)")
    omega = 2.0 * math.pi * nu_max_thz * 1e-3                     # rad/fs
    lam = (omega / _OMEGA_TO_RAD_PER_FS) ** 2                       # eV/Å²/amu
    period = 2.0 * math.pi / omega
    return {"lambda_max": lam, "omega_max": omega, "nu_max": nu_max_thz,
            "period_min": period, "dt_max": 2.0 / omega,
            "dt_recommended": period / points_per_period, "points_per_period": points_per_period}


def stability_from_hessian(hessian, masses, points_per_period: float = 20.0) -> dict:
    """Stability limits from a (3n, 3n) Hessian (eV/Å², atom-major) and (n,) masses (amu).

    The largest eigenvalue of the mass-weighted Hessian is λ_max (eV/Å²/amu); see
    :func:`timestep_from_frequency` for the returned keys (plus ``lambda_min``, the lowest
    eigenvalue: negative values mean an unstable structure).
    """
    H = np.asarray(hessian, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64).reshape(-1)
    if H.shape != (3 * len(m), 3 * len(m)):
        raise InputError(f"Hessian of shape {H.shape} does not match {len(m)} masses")
    if np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise InputError("masses must be positive and finite (amu)")
    if not np.all(np.isfinite(H)):
        raise StructureError("the Hessian has non-finite entries: the potential returned NaN/inf "
                             "for this structure (overlapping atoms or a broken model?)")
    w = 1.0 / np.sqrt(np.repeat(m, 3))
    D = 0.5 * (H + H.T) * w[:, None] * w[None, :]
    n = D.shape[0]
    if n > 600:
        from scipy.sparse.linalg import eigsh
        lam_max = float(eigsh(D, k=1, which="LA", return_eigenvectors=False, tol=1e-12)[0])
        lam_min = float(eigsh(D, k=1, which="SA", return_eigenvectors=False, tol=1e-10)[0])
    else:
        ev = np.linalg.eigvalsh(D)
        lam_max, lam_min = float(ev[-1]), float(ev[0])
    if lam_max <= 0:
        raise StructureError("the mass-weighted Hessian has no positive eigenvalue: the "
                             "structure has no vibrations (check the potential and cutoff)")
    omega = math.sqrt(lam_max) * _OMEGA_TO_RAD_PER_FS
    out = timestep_from_frequency(omega / (2.0 * math.pi) * 1e3, points_per_period)
    out["lambda_max"] = lam_max
    out["lambda_min"] = lam_min
    return out


def _fd_hessian(atoms, calc, delta: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian from forces (6n force calls), eV/Å²."""
    from cgkit.progress import progress_bar
    a = atoms.copy()
    a.calc = calc
    x0 = a.get_positions()
    n = len(a)
    H = np.zeros((3 * n, 3 * n))
    for k in progress_bar(range(3 * n), desc="finite-difference Hessian", unit="dof"):
        i, c = divmod(k, 3)
        f = []
        for s in (1.0, -1.0):
            x = x0.copy()
            x[i, c] += s * delta
            a.set_positions(x)
            f.append(a.get_forces().reshape(-1))
        H[k] = -(f[0] - f[1]) / (2 * delta)
    return 0.5 * (H + H.T)


class StableTimestep(Analysis):
    """Largest stable velocity-Verlet time step of a structure (atomistic or CG).

    Parameters
    ----------
    atoms : ASE Atoms — the simulated cell (periodic or not); for CG systems the beads
    model : cgkit Potential (analytic Hessian), ASE calculator (central differences of forces,
        6n calls) or a ``--potential`` spec string
    supercell : (3,) repetitions applied before the analysis (the Γ point of a larger cell
        samples more q-points; the stability limit of *your* MD cell is that of its own Γ point)
    masses : (n,) amu overriding ``atoms.get_masses()`` (e.g. bead masses from a mapping)
    points_per_period : steps per shortest period for ``dt_recommended`` (default 20)
    method : ``"auto"`` (analytic for cgkit potentials), ``"analytic"`` or ``"finite_difference"``
    fd_delta : Å, displacement of the central differences

    After :meth:`run`, ``results`` holds ``lambda_max`` eV/Å²/amu, ``omega_max`` rad/fs,
    ``nu_max`` THz, ``dt_max`` fs, ``dt_recommended`` fs, ``period_min`` fs,
    ``lambda_min`` (negative: unstable structure), ``n_atoms``, ``method``.
    """

    def __init__(self, atoms, model, *, supercell=(1, 1, 1), masses=None,
                 points_per_period: float = 20.0, fd_delta: float = 1e-3, method: str = "auto"):
        if method not in ("auto", "analytic", "finite_difference"):
            raise InputError(f"method must be 'auto', 'analytic' or 'finite_difference', got '{method}'")
        self.method = method
        if atoms is None or len(atoms) == 0:
            raise InputError("give a structure with at least one atom")
        self.atoms = atoms.repeat(tuple(int(s) for s in supercell)) if tuple(supercell) != (1, 1, 1) else atoms.copy()
        if masses is not None:
            masses = np.asarray(masses, dtype=np.float64).reshape(-1)
            reps = len(self.atoms) // len(atoms)
            if len(masses) == len(atoms) and reps > 1:
                masses = np.tile(masses, reps)
            if len(masses) != len(self.atoms):
                raise InputError(f"got {len(masses)} masses for {len(atoms)} atoms")
            self.atoms.set_masses(masses)
        self.model = model
        self.points_per_period = float(points_per_period)
        self.fd_delta = float(fd_delta)
        self.results = Results()

    def run(self) -> "StableTimestep":
        potential, calc = resolve_model(self.model)
        if self.method == "analytic" and potential is None:
            raise InputError("the analytic Hessian needs a cgkit potential; use method='finite_difference'")
        if potential is not None and self.method != "finite_difference":
            H = potential.hessian(potential.graph(self.atoms, dtype=torch.float64)).numpy()
            method = "analytic Hessian (autograd)"
        else:
            H = _fd_hessian(self.atoms, calc, self.fd_delta)
            method = f"finite differences of forces (±{self.fd_delta} Å)"
        res = stability_from_hessian(H, self.atoms.get_masses(), self.points_per_period)
        res.update(n_atoms=len(self.atoms), method=method,
                   safety=f"dt_recommended = shortest period / {self.points_per_period:g} "
                          f"= {math.pi / self.points_per_period:.3f}·dt_max")
        self.results = Results(res)
        return self

    def summary(self) -> dict:
        """The results (dt_max, dt_recommended fs, ...) with their units."""
        if not self.results:
            raise InputError("call run() first")
        return {**dict(self.results), "units": {"lambda_max": "eV/Å²/amu", "lambda_min": "eV/Å²/amu",
                                                 "omega_max": "rad/fs", "nu_max": "THz",
                                                 "dt_max": "fs", "dt_recommended": "fs",
                                                 "period_min": "fs"}}


def timestep_gain(atomistic, coarse) -> dict:
    """How much larger the CG time step can be: ratios of ``dt_max`` (and of the recommended
    steps) of two :class:`StableTimestep` runs (or results dicts)."""
    a = atomistic.results if hasattr(atomistic, "results") else atomistic
    c = coarse.results if hasattr(coarse, "results") else coarse
    return {"dt_max_atomistic": a["dt_max"], "dt_max_cg": c["dt_max"],
            "gain": c["dt_max"] / a["dt_max"],
            "dt_recommended_atomistic": a["dt_recommended"], "dt_recommended_cg": c["dt_recommended"]}
