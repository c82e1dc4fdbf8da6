"""Uncertainty-aware exploration MD with trust levels.

A committee (:class:`cgkit.ensemble.EnsemblePotential`) drives Langevin MD (ASE) from a start
structure at a temperature (K), optionally under a homogeneous strain of the cell. Every
``sample_every`` steps the largest calibrated per-atom force uncertainty σ_F (eV/Å) is compared
with the trust levels (DP-GEN's convention):

* σ_F < ``lo``: the committee is trusted there; the frame is not a candidate;
* ``lo`` ≤ σ_F < ``hi``: a candidate for labelling;
* σ_F ≥ ``hi``: the trajectory has left the region where the model is meaningful (it may be
  unphysical); the run stops there and that frame is discarded.

The σ trace of every inspected step is returned, so MD runs can be monitored and plotted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

__all__ = ["TrustLevels", "ExplorationResult", "explore", "apply_strain", "in_plane_strain",
           "periodic_projector"]


@dataclass(frozen=True)
class TrustLevels:
    """Force-uncertainty trust levels ``lo`` < ``hi`` (eV/Å, calibrated per-atom σ_F)."""

    lo: float
    hi: float

    def __post_init__(self):
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or not (0 <= self.lo < self.hi):
            raise InputError(f"trust levels need 0 <= lo < hi (eV/Å), got lo={self.lo}, hi={self.hi}")

    def classify(self, sigma: float) -> str:
        """'accurate', 'candidate' or 'failed' for a largest per-atom σ_F (eV/Å)."""
        if sigma < self.lo:
            return "accurate"
        return "candidate" if sigma < self.hi else "failed"


@dataclass
class ExplorationResult:
    """Candidates (ASE Atoms without a calculator, ``info['sigma_max']`` and ``info['sigma_rms']``
    (the largest and the RMS calibrated per-atom σ_F of the frame) in eV/Å), every
    inspected frame below hi in ``frames`` when asked for (``keep_all=True``: the pool a random
    selection draws from), the σ trace
    ``steps``/``sigma_max`` of the inspected steps, the counts per class and why it ended
    (``'completed'`` or ``'uncertainty above hi at step N'``, then ``failed`` holds that frame)."""

    candidates: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    failed: object = None
    steps: list = field(default_factory=list)
    sigma_max: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"accurate": 0, "candidate": 0, "failed": 0})
    stopped: str = "completed"


def periodic_projector(atoms) -> np.ndarray:
    """3×3 orthogonal projector onto the span of the periodic cell vectors of ``atoms``
    (identity when fully periodic, zero when not periodic at all)."""
    v = np.asarray(atoms.cell.array, dtype=np.float64)[np.asarray(atoms.pbc, dtype=bool)]
    if len(v) == 0:
        return np.zeros((3, 3))
    q, _ = np.linalg.qr(v.T)  # orthonormal basis (3, n_periodic) of the periodic directions
    return q @ q.T


def in_plane_strain(atoms, eps: float) -> np.ndarray:
    """A uniform strain ``eps`` along the periodic directions of ``atoms`` only (3×3): the
    isotropic ``eps·I`` for a bulk cell, ``eps`` in the surface plane of a slab (nothing along
    its normal), ``eps`` along the axis of a wire. Refused for a structure with no periodic
    direction (a molecule or cluster has no cell to strain)."""
    if not np.asarray(atoms.pbc).any():
        raise InputError("a strain needs at least one periodic direction; a non-periodic structure "
                         "(molecule, cluster) cannot be strained: use strain 0 for it")
    return float(eps) * periodic_projector(atoms)


def apply_strain(atoms, strain):
    """A copy of ``atoms`` under the homogeneous ``strain`` (3×3 or 6 Voigt engineering
    components): cell and positions mapped by F = I + ε. The strain may act only along periodic
    directions (ε = P ε P with P the projector onto them): a slab is strained in its surface
    plane, and its vacuum gap is kept; a strain with components along a non-periodic direction,
    or any strain of a non-periodic structure, is refused."""
    a = atoms.copy()
    e = np.asarray(strain, dtype=np.float64)
    if e.shape == (6,):
        e = np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]])
    if e.shape != (3, 3) or not np.all(np.isfinite(e)):
        raise InputError(f"strain must be 3x3 or 6 finite Voigt components, got shape {e.shape}")
    if not a.pbc.any():
        raise InputError("a strain needs at least one periodic direction; a non-periodic structure "
                         "(molecule, cluster) cannot be strained")
    if not a.pbc.all():
        P = periodic_projector(a)
        if np.max(np.abs(e - P @ e @ P)) > 1e-12:
            raise InputError(f"strain has components along the non-periodic direction(s) of a structure "
                             f"with pbc={a.pbc.tolist()}; strain only its periodic directions "
                             "(e.g. in_plane_strain(atoms, eps) for a slab)")
    F = np.eye(3) + e
    a.set_cell(a.cell.array @ F.T, scale_atoms=False)
    a.positions = a.positions @ F.T
    return a


def explore(committee, atoms, *, temperature_K: float, n_steps: int, timestep_fs: float = 2.0,
            trust: TrustLevels, sample_every: int = 10, friction_per_fs: float = 0.02,
            strain=None, seed: int = 0, keep_all: bool = False) -> ExplorationResult:
    """Langevin MD of ``atoms`` with ``committee`` (see the module docstring).

    ``strain``: a 3×3 (or 6-Voigt engineering) strain applied to the cell and the atoms before
    the run (:func:`apply_strain`: periodic directions only, so a slab is strained in-plane); ``seed`` fixes the initial velocities and the Langevin noise."""
    from ase import units
    from ase.md.langevin import Langevin
    from ..ensemble import EnsembleCalculator, EnsemblePotential
    from ..sampling import thermalize

    if not isinstance(committee, EnsemblePotential):
        raise InputError("exploration needs a committee (an EnsemblePotential) to estimate its uncertainty")
    if n_steps < 1 or sample_every < 1 or timestep_fs <= 0 or temperature_K < 0:
        raise InputError(f"exploration needs n_steps >= 1, sample_every >= 1, timestep_fs > 0 and "
                         f"temperature_K >= 0 (got {n_steps}, {sample_every}, {timestep_fs}, {temperature_K})")
    a = atoms.copy()
    if strain is not None:
        a = apply_strain(a, strain)
    calc = EnsembleCalculator(committee)
    a.calc = calc
    thermalize(a, temperature_K, np.random.default_rng(seed))
    md = Langevin(a, timestep_fs * units.fs, temperature_K=temperature_K,
                  friction=friction_per_fs / units.fs, fixcm=False, rng=np.random.default_rng(seed + 1))
    res = ExplorationResult()
    done = 0
    while done < n_steps:
        k = min(sample_every, n_steps - done)
        md.run(k)
        done += k
        a.get_forces()  # results of the current positions
        sig_atoms = np.asarray(calc.results["forces_std"], dtype=np.float64)
        sigma = float(np.max(sig_atoms))
        sigma_rms = float(np.sqrt(np.mean(sig_atoms ** 2)))
        res.steps.append(done)
        res.sigma_max.append(sigma)
        cls = trust.classify(sigma)
        res.counts[cls] += 1
        if cls == "failed":
            res.stopped = f"uncertainty above hi at step {done}"
            res.failed = a.copy()
            res.failed.calc = None
            res.failed.info.update(sigma_max=sigma, sigma_rms=sigma_rms, temperature_K=float(temperature_K),
                                   md_step=done)
            break
        if cls == "candidate" or keep_all:
            c = a.copy()
            c.calc = None
            c.info.update(sigma_max=sigma, sigma_rms=sigma_rms, temperature_K=float(temperature_K),
                          md_step=done)
            if keep_all:
                res.frames.append(c)
            if cls == "candidate":
                res.candidates.append(c)
    return res
