"""Neural CG potential: an equivariant network (cgkit ENNP, bead types as species) on top of a
physical prior, trained by force matching on mapped forces.

The prior (e.g. the spline MS-CG :class:`TabulatedPotential`, or Boltzmann-inverted tables)
carries the bonded terms and the short-range repulsion; the network learns the remaining
mean force ``F_mapped - F_prior``. Training uses :class:`cgkit.train.Trainer` unchanged —
mini-batches, validation split, early stopping, EMA, checkpoints and exact resume — on an
extxyz file of residual forces (energy labels are unknown in force matching: they are written
as 0 and the energy loss weight is 0). The result is ``SumPotential([prior, ennp])``, a
regular cgkit Potential (MD, ASE, save/load).

Units: Å, eV, eV/Å.
"""
from __future__ import annotations

from ..jsonutil import write_json
import math
from pathlib import Path

import numpy as np

from ..data import AtomicGraph
from ..errors import InputError
from ..potential import SumPotential
from .geometry import as_cell

__all__ = ["NeuralCGTraining", "force_residuals"]


def force_residuals(potential, positions, forces, boxes, type_names, species) -> dict:
    """RMS force error (eV/Å) of ``potential`` per bead type over the frames, and the RMS force."""
    type_names = tuple(type_names)
    species = np.asarray(species)
    err = np.zeros(len(type_names))
    ref = np.zeros(len(type_names))
    cnt = np.zeros(len(type_names))
    for k, (x, f) in enumerate(zip(positions, forces)):
        cell, pbc = as_cell(None if boxes is None else (boxes[k] if np.ndim(boxes) > 1 and len(boxes) == len(positions)
                                                        and np.shape(boxes)[1:] in ((3,), (3, 3)) else boxes))
        g = AtomicGraph.from_arrays(x, cell, pbc, max(potential.cutoff, 1e-3), species=species,
                                    type_names=type_names, dtype=potential.dtype)
        p = potential.compute(g)["forces"].detach().cpu().numpy()
        for t in range(len(type_names)):
            m = species == t
            err[t] += ((p[m] - f[m]) ** 2).sum()
            ref[t] += (f[m] ** 2).sum()
            cnt[t] += 3 * m.sum()
    return {type_names[t]: {"rms_residual_eV_per_A": float(math.sqrt(err[t] / cnt[t])),
                            "rms_force_eV_per_A": float(math.sqrt(ref[t] / cnt[t]))}
            for t in range(len(type_names)) if cnt[t]}


class NeuralCGTraining:
    """Train ENNP(bead graph) on mapped forces minus a prior's forces.

    prior : Potential (its ``type_names`` define the bead types)
    positions, forces : (n_frames, n_beads, 3) Å, eV/Å; boxes : per-frame or single box / None
    species : (n_beads,) indices into ``prior.type_names``; masses : (n_beads,) amu
    out : output folder; r_cut : Å; model : ENNP options (default a small invariant-ish model)
    train : overrides of the :class:`cgkit.train.Trainer` config (max_epochs, batch_size, ...)
    """

    def __init__(self, prior, positions, forces, boxes, species, masses, out, *, r_cut: float = 6.0,
                 model: dict | None = None, train: dict | None = None, seed: int = 0):
        if prior.type_names is None:
            raise InputError("the prior must know its bead types (type_names)")
        self.prior = prior
        self.type_names = tuple(prior.type_names)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.forces = np.asarray(forces, dtype=np.float64)
        if self.forces.shape != self.positions.shape:
            raise InputError(f"forces {self.forces.shape} do not match positions {self.positions.shape}")
        self.boxes = boxes
        self.species = np.asarray(species, dtype=np.int64)
        self.masses = np.broadcast_to(np.asarray(masses, dtype=float), (self.positions.shape[1],))
        self.out = Path(out)
        self.r_cut = float(r_cut)
        self.model = {"channels": 16, "l_max": 1, "n_layers": 2, "dtype": "float64", **(model or {})}
        self.train = dict(train or {})
        self.seed = seed
        self.results: dict = {}

    def _box(self, k):
        b = self.boxes
        if b is None:
            return None
        b = np.asarray(b, dtype=float)
        if b.ndim >= 2 and len(b) == len(self.positions) and b.shape[1:] in ((3,), (3, 3)):
            return b[k]
        return b

    def write_residual_dataset(self, path) -> Path:
        """extxyz of the frames with forces F_mapped - F_prior (energy 0, not fitted)."""
        import ase.io
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        frames = []
        for k, (x, f) in enumerate(zip(self.positions, self.forces)):
            cell, pbc = as_cell(self._box(k))
            g = AtomicGraph.from_arrays(x, cell, pbc, max(self.prior.cutoff, 1e-3), species=self.species,
                                        type_names=self.type_names, dtype=self.prior.dtype)
            fp = self.prior.compute(g)["forces"].detach().cpu().numpy()
            a = Atoms(numbers=np.zeros(len(x), int), positions=x, cell=cell, pbc=pbc, masses=self.masses)
            a.arrays["bead_types"] = np.array(self.type_names)[self.species]
            a.calc = SinglePointCalculator(a, energy=0.0, forces=f - fp)
            frames.append(a)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ase.io.write(path, frames, format="extxyz")
        return path

    def run(self) -> "NeuralCGTraining":
        from ..io_potential import load_potential
        from ..train import Trainer
        self.out.mkdir(parents=True, exist_ok=True)
        data = self.write_residual_dataset(self.out / "residual_forces.extxyz")
        cfg = {"output": str(self.out / "nn"), "seed": self.seed,
               "model": {"species": list(self.type_names), "r_cut": self.r_cut, **self.model},
               "data": {"train": str(data), "val_fraction": 0.2},
               "loss": {"energy": 0.0, "forces": 1.0, "stress": 0.0},
               "max_epochs": 50, "batch_size": 4, "early_stopping_patience": 10, "threads": 1}
        for k, v in self.train.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        Trainer(cfg).run()
        ennp = load_potential(Path(cfg["output"]) / "model.pt", dtype=self.prior.dtype)
        self.potential = SumPotential([self.prior, ennp])
        self.potential.save(self.out / "cg_nn_potential.pt", metadata={"masses": self.masses.tolist()})
        n = len(self.positions)
        idx = np.arange(n)
        # force residual of the prior alone and of prior + network on all frames
        boxes = [self._box(k) for k in idx]
        bx = None if boxes[0] is None else np.array([np.diag(b) if np.ndim(b) == 1 else b for b in boxes])
        self.results = {
            "prior": force_residuals(self.prior, self.positions, self.forces, bx, self.type_names, self.species),
            "prior_plus_nn": force_residuals(self.potential, self.positions, self.forces, bx, self.type_names,
                                             self.species),
            "training_folder": cfg["output"], "config": cfg}
        write_json(self.out / "summary.json", self.results)
        return self
