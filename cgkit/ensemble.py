"""Ensembles of potentials: mean energy/forces and their spread (uncertainty).

``EnsemblePotential(members)`` is a Potential whose energy is the mean of its members'
(so forces, stress and Hessians are the means too); :meth:`EnsemblePotential.compute_with_uncertainty`
adds the standard deviation over members of the energy (eV) and of the forces per atom
(eV/Å, the root of the summed per-component variances), used to pick configurations to
label (active learning). :class:`EnsembleCalculator` exposes them in ASE as
``results['energy_std']`` and ``results['forces_std']``.

An ensemble may carry a :class:`cgkit.uncertainty.Calibration` (``ensemble.calibration``, fitted
on held-out data by :class:`cgkit.uncertainty.CalibrationAnalysis` and saved with the ensemble);
then the reported spreads are calibrated and the raw ones are kept as ``energy_std_raw`` /
``forces_std_raw``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .calculator import CgkitCalculator
from .errors import InputError
from .potential import Potential, build, describe

__all__ = ["EnsemblePotential", "EnsembleCalculator"]


class EnsemblePotential(Potential):
    """Mean of K potentials built for the same species and cutoff."""

    def __init__(self, members: Sequence[Potential], calibration=None):
        super().__init__()
        from .uncertainty import Calibration
        members = list(members)
        if len(members) < 2:
            raise InputError("an ensemble needs at least 2 members")
        names = {tuple(m.type_names) if m.type_names else None for m in members}
        if len(names) != 1:
            raise InputError(f"ensemble members are built for different species: {sorted(map(str, names))}")
        self.members = torch.nn.ModuleList(members)
        self.type_names = members[0].type_names
        self.cutoff = max(m.cutoff for m in members)
        if calibration is not None and not isinstance(calibration, Calibration):
            calibration = Calibration.from_dict(calibration)
        self.calibration = calibration or Calibration()

    def atomic_energies(self, graph, positions, cell):
        return torch.stack([m.atomic_energies(graph, positions, cell) for m in self.members]).mean(0)

    def compute_with_uncertainty(self, graph, *, stress: bool = False, calibrated: bool = True) -> dict:
        """Mean ``energy`` (G,), ``forces`` (n, 3), optional ``stress``; ``energy_std`` (G,) eV,
        ``forces_std`` (n,) eV/Å (calibrated when the ensemble has a calibration and
        ``calibrated``; the raw committee spreads are ``energy_std_raw``/``forces_std_raw``)
        and the ``member_energies`` (K, G). The spreads are invariant under rotations,
        reflections, translations and permutations (variance of a scalar, trace of a covariance)."""
        outs = [m.compute(graph, stress=stress) for m in self.members]
        E = torch.stack([o["energy"] for o in outs]).detach()
        F = torch.stack([o["forces"] for o in outs]).detach()
        e_std = E.std(0, unbiased=False)
        f_std = F.var(0, unbiased=False).sum(-1).sqrt()
        res = {"energy": E.mean(0), "forces": F.mean(0), "energy_std": e_std, "forces_std": f_std,
               "energy_std_raw": e_std, "forces_std_raw": f_std, "member_energies": E}
        if calibrated and not self.calibration.is_identity:
            cal = self.calibration
            res["energy_std"] = torch.as_tensor(cal.energy_std(e_std.cpu().numpy()), dtype=E.dtype)
            res["forces_std"] = torch.as_tensor(cal.forces_std(f_std.cpu().numpy()), dtype=F.dtype)
        if stress:
            res["stress"] = torch.stack([o["stress"] for o in outs]).mean(0)
        return res

    def get_config(self) -> dict:
        config = {"members": [describe(m) for m in self.members]}
        if not self.calibration.is_identity:
            config["calibration"] = self.calibration.to_dict()
        return config

    @classmethod
    def from_config(cls, config: dict) -> "EnsemblePotential":
        return cls([build(d) for d in config["members"]], calibration=config.get("calibration"))


class EnsembleCalculator(CgkitCalculator):
    """ASE calculator of an :class:`EnsemblePotential` with ``energy_std`` / ``forces_std`` results."""

    implemented_properties = CgkitCalculator.implemented_properties + ["energy_std", "forces_std"]

    def __init__(self, ensemble: EnsemblePotential, **kwargs):
        if not isinstance(ensemble, EnsemblePotential):
            raise InputError("EnsembleCalculator needs an EnsemblePotential")
        super().__init__(ensemble, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import Calculator, all_changes
        from ase.stress import full_3x3_to_voigt_6_stress
        Calculator.calculate(self, atoms, properties, system_changes or all_changes)
        graph = self._graph(self.atoms)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        out = self.potential.compute_with_uncertainty(graph, stress=want_stress)
        e = float(out["energy"][0])
        self.results.update(energy=e, free_energy=e, forces=out["forces"].numpy().astype(np.float64),
                            energy_std=float(out["energy_std"][0]),
                            forces_std=out["forces_std"].numpy().astype(np.float64))
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"][0].numpy())
