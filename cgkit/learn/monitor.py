"""Uncertainty-aware cgkit MD: the committee's σ_F checked every few steps against trust levels.

:class:`UncertaintyMonitor` is an observer for :meth:`cgkit.md.MolecularDynamics.run`
(``md.run(n, observer=monitor)``): every ``every`` steps it evaluates the committee spread of
every replica (calibrated per-atom σ_F, eV/Å, largest over atoms) and classifies the frame by
the trust levels — below ``lo`` nothing happens; between ``lo`` and ``hi`` the frame is kept as
a candidate for labelling (``candidates``; ``cgkit md --dump-uncertain FILE`` writes them as
extxyz); at or above ``hi`` the run stops (``stop_above_hi``) because the trajectory has left the
region where the model means anything. The σ trace is in :meth:`summary`.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .exploration import TrustLevels

__all__ = ["UncertaintyMonitor"]


class UncertaintyMonitor:
    """Observer of cgkit MD with a committee potential (see the module docstring)."""

    def __init__(self, trust: TrustLevels, *, every: int = 10, stop_above_hi: bool = True):
        if int(every) < 1:
            raise InputError(f"the uncertainty check interval must be >= 1 step, got {every}")
        self.trust, self.every, self.stop_above_hi = trust, int(every), bool(stop_above_hi)
        self.steps: list[int] = []
        self.sigma_max: list[list[float]] = []
        self.counts = {"accurate": 0, "candidate": 0, "failed": 0}
        self.candidates: list = []
        self.stopped: str | None = None

    def check(self, md) -> None:
        pot = md.potential
        if not hasattr(pot, "compute_with_uncertainty"):
            raise InputError("uncertainty monitoring needs a committee potential (an ensemble file from "
                             "`cgkit train --ensemble K` or `cgkit learn`)")

    def __call__(self, md) -> bool:
        """Called by MD after step ``md.step``; returns True to stop the run."""
        if md.step % self.every:
            return False
        sig = []
        stop = False
        for r in range(md.n_replicas):
            atoms = md.atoms(r)
            out = md.potential.compute_with_uncertainty(md.potential.graph(atoms))
            s = float(out["forces_std"].max())
            sig.append(s)
            cls = self.trust.classify(s)
            self.counts[cls] += 1
            if cls == "candidate":
                a = atoms.copy()
                a.info.update(sigma_max=s, md_step=int(md.step), replica=r)
                self.candidates.append(a)
            elif cls == "failed" and self.stop_above_hi:
                stop = True
                self.stopped = (f"uncertainty {s:.3g} eV/Å above trust hi {self.trust.hi} at MD step "
                                f"{md.step} (replica {r})")
        self.steps.append(int(md.step))
        self.sigma_max.append(sig)
        return stop

    def summary(self) -> dict:
        s = np.asarray(self.sigma_max) if self.sigma_max else np.zeros((0, 0))
        return {"trust_lo_eV_per_A": self.trust.lo, "trust_hi_eV_per_A": self.trust.hi, "every": self.every,
                "counts": dict(self.counts), "n_candidates": len(self.candidates), "stopped": self.stopped,
                "steps": self.steps, "sigma_max_eV_per_A": s.tolist(),
                "sigma_max_overall_eV_per_A": float(s.max()) if s.size else None}
