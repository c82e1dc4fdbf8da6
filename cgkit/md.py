"""Molecular dynamics for any cgkit :class:`~cgkit.potential.Potential` (CG beads or atoms).

Integrators (torch, float32 or float64 as the potential):

* ``"verlet"`` — velocity Verlet (NVE);
* ``"langevin"`` — Langevin dynamics with the BAOAB splitting of Leimkuhler & Matthews
  (B: half kick, A: half drift, O: exact Ornstein–Uhlenbeck velocity update, A, B), which
  samples configurations of harmonic systems exactly and has small configurational bias
  in general.

Several independent replicas run in one batched graph (``n_replicas``). The neighbor list is
built with ``cutoff + skin`` and rebuilt when some particle has moved more than ``skin/2``
since the last build (``skin=0`` rebuilds every step); positions are wrapped into the cell at
every rebuild.

Units: positions Å, time fs, masses amu, energies eV, temperature K, friction 1/fs.
Velocities are stored in ASE's unit (Å / (Å·sqrt(amu/eV))) so that they can be handed to
ASE ``Atoms.set_velocities`` unchanged; :attr:`MolecularDynamics.velocities_A_per_fs` gives Å/fs.

Trajectories are written by file suffix: ``.xyz``/``.extxyz`` (ASE, extended XYZ with bead
types and energies), ``.dcd``/``.xtc``/``.trr`` (MDAnalysis writers; a ``.pdb`` with bead
names is written next to them so that ``MDAnalysis.Universe(pdb, traj)`` reads them back).
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .data import AtomicGraph, batch_graphs
from .errors import InputError, StructureError
from .potential import Potential
from .units import FS_ASE, KB_EV

__all__ = ["MolecularDynamics", "TrajectoryWriter", "kinetic_temperature"]

_MDA_FORMATS = {".dcd", ".xtc", ".trr"}
_ASE_FORMATS = {".xyz", ".extxyz"}


def kinetic_temperature(velocities: np.ndarray, masses: np.ndarray, n_constraints: int = 0) -> float:
    """Instantaneous temperature (K) of velocities (n, 3) in ASE units and masses (n,) amu."""
    ke = 0.5 * float(np.sum(masses[:, None] * velocities ** 2))
    ndof = max(3 * len(masses) - n_constraints, 1)
    return 2.0 * ke / (ndof * KB_EV)


class TrajectoryWriter:
    """Append frames (positions Å, cell Å) to a trajectory file chosen by suffix.

    ``type_names`` (n,) bead/atom names written into the file (extxyz) or a companion PDB
    (DCD/XTC/TRR); ``atomic_numbers`` (n,) (0 for beads).
    """

    def __init__(self, path, type_names, atomic_numbers=None, masses=None, pbc=True):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in _MDA_FORMATS | _ASE_FORMATS:
            raise InputError(f"trajectory '{path}': unknown format; use one of "
                             f"{sorted(_MDA_FORMATS | _ASE_FORMATS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.names = [str(t) for t in type_names]
        self.n = len(self.names)
        self.numbers = np.zeros(self.n, dtype=int) if atomic_numbers is None else np.asarray(atomic_numbers)
        self.masses = np.ones(self.n) if masses is None else np.asarray(masses, dtype=float)
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        self._writer = None
        self._universe = None
        if self.path.exists():
            self.path.unlink()

    def _mda_universe(self):
        import MDAnalysis as mda
        u = mda.Universe.empty(self.n, trajectory=True)
        u.add_TopologyAttr("names", self.names)
        u.add_TopologyAttr("types", self.names)
        u.add_TopologyAttr("masses", self.masses)
        u.add_TopologyAttr("resnames", ["CG"])
        return u

    def write(self, positions, cell, info: dict | None = None) -> None:
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        if self.suffix in _ASE_FORMATS:
            from ase import Atoms
            import ase.io
            atoms = Atoms(numbers=self.numbers, positions=positions, cell=cell, pbc=self.pbc,
                          masses=self.masses)
            atoms.arrays["bead_types"] = np.array(self.names)
            atoms.info.update(info or {})
            ase.io.write(self.path, atoms, format="extxyz", append=True)
            return
        import MDAnalysis as mda
        from ase.geometry import cell_to_cellpar
        if self._writer is None:
            self._universe = self._mda_universe()
            self._universe.atoms.positions = positions
            if self.pbc.all():
                self._universe.dimensions = cell_to_cellpar(cell)
            with warnings.catch_warnings():  # PDB writer complains about absent chain IDs etc.
                warnings.simplefilter("ignore")
                self._universe.atoms.write(str(self.path.with_suffix(".pdb")))
            self._writer = mda.Writer(str(self.path), n_atoms=self.n)
        self._universe.atoms.positions = positions
        self._universe.dimensions = cell_to_cellpar(cell) if self.pbc.all() else None
        self._writer.write(self._universe.atoms)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MolecularDynamics:
    """MD of one system (optionally several replicas) with a cgkit Potential.

    Parameters
    ----------
    potential : Potential
    atoms : ASE ``Atoms`` (positions, cell, pbc, masses, ``bead_types`` array or symbols);
        or give ``positions`` (n, 3) Å, ``cell`` (3, 3) Å, ``pbc``, ``masses`` (n,) amu,
        ``species`` (n,) indices into ``type_names``.
    timestep : fs
    integrator : ``"langevin"`` (BAOAB) or ``"verlet"`` (NVE)
    temperature : K, thermostat target and initial Maxwell–Boltzmann velocities
        (unless ``velocities`` or the atoms' velocities are given)
    friction : 1/fs, Langevin friction γ (default 0.01 fs⁻¹ = 10 ps⁻¹)
    n_replicas : independent copies integrated together (different random velocities/noise)
    skin : Å, neighbor-list skin (0: rebuild every step)
    seed : random seed (velocities and noise)
    trajectory : output path (suffix selects the format); with several replicas one file per
        replica, ``name_r<k>.suffix``
    write_every, log_every, store_every : steps between trajectory frames, energy/temperature
        log entries and frames kept in memory (``results.positions``; 0 = none)
    progress : show a progress bar (only on a terminal)
    n_threads : torch threads during :meth:`run` (default: 1 below 20000 particles, where
        thread start-up costs more than it saves; restored afterwards)
    """

    def __init__(self, potential: Potential, atoms=None, *, positions=None, cell=None, pbc=True,
                 masses=None, species=None, type_names=None, timestep: float = 1.0,
                 integrator: str = "langevin", temperature: float = 300.0, friction: float = 0.01,
                 n_replicas: int = 1, skin: float = 1.0, seed: int = 0, velocities=None,
                 trajectory=None, write_every: int = 100, log_every: int = 10,
                 store_every: int = 0, progress: bool = True, dtype: torch.dtype | None = None,
                 remove_com_momentum: bool = True, n_threads: int | None = None):
        if integrator not in ("langevin", "verlet"):
            raise InputError(f"integrator must be 'langevin' or 'verlet', got '{integrator}'")
        if not (timestep > 0 and math.isfinite(timestep)):
            raise InputError(f"timestep must be a positive number of fs, got {timestep}")
        if temperature < 0:
            raise InputError(f"temperature must be ≥ 0 K, got {temperature}")
        if integrator == "langevin" and friction <= 0:
            raise InputError(f"Langevin friction must be > 0 fs⁻¹, got {friction}")
        if n_replicas < 1:
            raise InputError("n_replicas must be ≥ 1")
        if skin < 0:
            raise InputError("skin must be ≥ 0 Å")
        self.potential = potential
        self.dtype = dtype or potential.dtype
        if atoms is not None:
            names = atoms.arrays.get("bead_types")
            names = [str(s) for s in (names if names is not None else atoms.get_chemical_symbols())]
            tn = tuple(potential.type_names) if potential.type_names else tuple(sorted(set(names)))
            lookup = {t: k for k, t in enumerate(tn)}
            missing = sorted(set(names) - set(lookup))
            if missing:
                raise InputError(f"types {missing} are not known to the potential (it knows {list(tn)})")
            positions, cell, pbc = atoms.get_positions(), atoms.cell.array, atoms.pbc
            masses = atoms.get_masses() if masses is None else masses
            species = np.array([lookup[s] for s in names])
            type_names = tn
            self.atomic_numbers = atoms.get_atomic_numbers()
            if velocities is None and np.any(atoms.get_velocities() != 0):
                velocities = atoms.get_velocities() / FS_ASE  # ASE units → Å/fs
        else:
            if positions is None:
                raise InputError("give an ASE Atoms or positions (n, 3) Å")
            self.atomic_numbers = None
        positions = np.asarray(positions, dtype=np.float64)
        n = len(positions)
        if masses is None:
            raise InputError("masses (amu, one per particle) are needed for dynamics")
        masses = np.broadcast_to(np.asarray(masses, dtype=np.float64), (n,)).copy()
        if np.any(~np.isfinite(masses)) or np.any(masses <= 0):
            raise InputError("masses must be positive and finite (amu)")
        if species is None:
            species = np.zeros(n, dtype=np.int64)
        if type_names is None:
            type_names = tuple(potential.type_names) if potential.type_names else ("X",)
        if self.atomic_numbers is None:
            self.atomic_numbers = np.zeros(n, dtype=np.int64)
        cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        self.skin = float(skin)
        self.nl_cutoff = max(float(potential.cutoff), 1e-3) + self.skin
        g = AtomicGraph.from_arrays(positions, cell, self.pbc, self.nl_cutoff, species=species,
                                    type_names=type_names, atomic_numbers=self.atomic_numbers,
                                    masses=masses, dtype=self.dtype)
        self.n_particles, self.n_replicas = n, int(n_replicas)
        self.graph = batch_graphs([g] * self.n_replicas) if n_replicas > 1 else g
        self.type_names = tuple(type_names)
        self.species = np.asarray(species)
        self.masses = self.graph.masses.clone()
        self.timestep = float(timestep)
        self.integrator = integrator
        self.temperature = float(temperature)
        self.friction = float(friction)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.remove_com = remove_com_momentum
        if velocities is not None:
            v = np.asarray(velocities, dtype=np.float64)
            v = np.broadcast_to(v.reshape(-1, n, 3) if v.ndim == 3 else v[None], (self.n_replicas, n, 3))
            self.velocities = torch.as_tensor(v.reshape(-1, 3) * FS_ASE, dtype=self.dtype)
        else:
            self.velocities = self._maxwell_boltzmann(self.temperature)
        self.trajectory = trajectory
        self.write_every, self.log_every, self.store_every = int(write_every), int(log_every), int(store_every)
        self.progress = progress
        self.n_threads = n_threads
        self.step = 0
        self.n_rebuilds = 0
        self._writers = None
        self._forces = None
        self._energy = None
        self._ref_positions = self.graph.positions.clone()
        self.results = _Results()

    # ------------------------------------------------------------------ state
    @property
    def positions(self) -> np.ndarray:
        """(R, n, 3) Å current positions of every replica."""
        return self.graph.positions.detach().cpu().numpy().reshape(self.n_replicas, self.n_particles, 3)

    @property
    def velocities_A_per_fs(self) -> np.ndarray:
        """(R, n, 3) Å/fs."""
        return (self.velocities.cpu().numpy() / FS_ASE).reshape(self.n_replicas, self.n_particles, 3)

    @property
    def cell(self) -> np.ndarray:
        return self.graph.cell[0].detach().cpu().numpy()

    def atoms(self, replica: int = 0):
        """The current state of ``replica`` as ASE ``Atoms`` (velocities in ASE units)."""
        from ase import Atoms
        a = Atoms(numbers=self.atomic_numbers, positions=self.positions[replica], cell=self.cell,
                  pbc=self.pbc, masses=self.masses[:self.n_particles].cpu().numpy())
        if np.all(self.atomic_numbers == 0):
            a.arrays["bead_types"] = np.array([self.type_names[s] for s in self.species])
        a.set_velocities(self.velocities.cpu().numpy().reshape(self.n_replicas, -1, 3)[replica])
        return a

    def _ndof(self) -> int:
        return 3 * self.n_particles - (3 if (self.remove_com and self.integrator == "verlet") else 0)

    def _maxwell_boltzmann(self, T: float) -> torch.Tensor:
        m = self.masses[:, None].to(self.dtype)
        v = torch.randn(self.graph.n_atoms, 3, generator=self.gen, dtype=torch.float64).to(self.dtype)
        v = v * torch.sqrt(KB_EV * T / m)
        v = self._zero_com(v)
        if T > 0 and self.n_particles > 1:  # rescale every replica to exactly T
            ke = self._kinetic(v)
            scale = torch.sqrt(0.5 * self._ndof() * KB_EV * T / ke.clamp_min(1e-300))
            v = v * scale[self.graph.batch][:, None]
        return v

    def _zero_com(self, v: torch.Tensor) -> torch.Tensor:
        if not self.remove_com or self.n_particles < 2:
            return v
        m = self.masses[:, None].to(v.dtype)
        R = self.n_replicas
        p = (m * v).reshape(R, self.n_particles, 3).sum(1)
        mt = m.reshape(R, self.n_particles, 1).sum(1)
        return v - (p / mt)[self.graph.batch]

    def _kinetic(self, v: torch.Tensor) -> torch.Tensor:
        """(R,) kinetic energies, eV."""
        ke = 0.5 * self.masses[:, None].to(v.dtype) * v * v
        return ke.reshape(self.n_replicas, -1).sum(1)

    # ------------------------------------------------------------------ neighbors and forces
    def _maybe_rebuild(self, force: bool = False) -> None:
        pos = self.graph.positions
        if not force:
            disp = float((pos - self._ref_positions).norm(dim=1).max())
            if self.skin > 0 and disp <= 0.5 * self.skin:
                return
            if disp > 3.0 + self.skin:  # a jump of Å within one step: blown up
                raise StructureError(
                    f"a particle moved {disp:.3g} Å within one step at step {self.step}: the "
                    "simulation diverged; use a smaller timestep, relax the start structure or "
                    "check the potential")
        if not torch.isfinite(pos).all():
            raise StructureError(f"positions became NaN/inf at step {self.step}: the simulation "
                                 "diverged; use a smaller timestep or check the potential")
        if self.pbc.any():
            cell = self.graph.cell[0].to(pos.dtype)
            frac = torch.linalg.solve(cell.T, pos.T).T
            pbc = torch.as_tensor(self.pbc)
            frac = torch.where(pbc, frac - torch.floor(frac), frac)
            pos = frac @ cell
        self.graph = self.graph.with_positions(pos.detach(), rebuild=True)
        self._ref_positions = self.graph.positions.clone()
        self.n_rebuilds += 1

    def _compute(self) -> None:
        self._maybe_rebuild()
        out = self.potential.compute(self.graph, forces=True)
        self._forces = out["forces"].to(self.dtype)
        self._energy = out["energy"].to(torch.float64)

    # ------------------------------------------------------------------ run
    def _open_writers(self) -> None:
        if self.trajectory is None or self._writers is not None:
            return
        path = Path(self.trajectory)
        paths = [path] if self.n_replicas == 1 else [
            path.with_name(f"{path.stem}_r{k}{path.suffix}") for k in range(self.n_replicas)]
        self._writers = [TrajectoryWriter(p, [self.type_names[s] for s in self.species],
                                          self.atomic_numbers,
                                          self.masses[:self.n_particles].cpu().numpy(), self.pbc)
                         for p in paths]

    def _record(self, log: bool, write: bool, store: bool) -> None:
        ke = self._kinetic(self.velocities).to(torch.float64).cpu().numpy()
        epot = self._energy.cpu().numpy()
        T = 2.0 * ke / (self._ndof() * KB_EV)
        r = self.results
        if log:
            r._append("time", self.step * self.timestep)
            r._append("potential_energy", epot.tolist())
            r._append("kinetic_energy", ke.tolist())
            r._append("temperature", T.tolist())
        if write and self._writers:
            pos = self.positions
            for k, w in enumerate(self._writers):
                w.write(pos[k], self.cell, {"step": self.step, "time_fs": self.step * self.timestep,
                                            "energy": float(epot[k]), "temperature_K": float(T[k])})
        if store:
            r._append("positions", self.positions.copy())
            r._append("frame_time", self.step * self.timestep)

    def run(self, n_steps: int) -> "MolecularDynamics":
        """Integrate ``n_steps`` steps (continuing from the current state); returns self."""
        n_steps = int(n_steps)
        if n_steps < 0:
            raise InputError("n_steps must be ≥ 0")
        from .threads import torch_threads
        with torch_threads(self.n_threads or (1 if self.graph.n_atoms < 20000 else None)):
            return self._run(n_steps)

    def _run(self, n_steps: int) -> "MolecularDynamics":
        from .progress import progress_bar
        self._open_writers()
        if self._forces is None:
            self._maybe_rebuild(force=True)
            self._compute()
            if self.step == 0:
                self._record(self.log_every > 0, self.write_every > 0, self.store_every > 0)
        dt = self.timestep * FS_ASE  # ASE time unit
        inv_m = (1.0 / self.masses[:, None]).to(self.dtype)
        if self.integrator == "langevin":
            c1 = math.exp(-self.friction * self.timestep)
            c2 = math.sqrt(1.0 - c1 * c1)
            sigma_v = torch.sqrt(KB_EV * self.temperature * inv_m)
        t0 = time.perf_counter()
        steps = progress_bar(range(n_steps), desc=f"MD ({self.integrator})", unit="step",
                             disable=None if self.progress else True)
        pos = self.graph.positions
        for _ in steps:
            v = self.velocities + 0.5 * dt * self._forces * inv_m
            if self.integrator == "verlet":
                pos = pos + dt * v
            else:
                pos = pos + 0.5 * dt * v
                noise = torch.randn(v.shape, generator=self.gen, dtype=torch.float64).to(self.dtype)
                v = c1 * v + c2 * sigma_v * noise
                pos = pos + 0.5 * dt * v
            self.graph = self.graph.with_positions(pos, rebuild=False)
            self._compute()
            pos = self.graph.positions
            self.velocities = v + 0.5 * dt * self._forces * inv_m
            self.step += 1
            log = self.log_every > 0 and self.step % self.log_every == 0
            write = self.write_every > 0 and self.step % self.write_every == 0
            store = self.store_every > 0 and self.step % self.store_every == 0
            if log or write or store:
                if not torch.isfinite(self._energy).all():
                    raise StructureError(f"the energy became NaN/inf at step {self.step}: the "
                                         "simulation diverged; use a smaller timestep")
                self._record(log, write, store)
        elapsed = time.perf_counter() - t0
        r = self.results
        r.n_steps = self.step
        r.elapsed_s += elapsed
        r.steps_per_second = n_steps / elapsed if elapsed > 0 else float("nan")
        r.ns_per_day = r.steps_per_second * self.timestep * 86400 * 1e-6
        r.n_rebuilds = self.n_rebuilds
        r.timestep_fs = self.timestep
        r.n_replicas = self.n_replicas
        r.integrator = self.integrator
        if self._writers:
            for w in self._writers:
                w.close()
            self._writers = None
        return self


class _Results:
    """MD results: ``time`` (n_log,) fs; ``potential_energy``, ``kinetic_energy``,
    ``total_energy``, ``temperature`` (n_log, R) in eV / K; ``positions`` (n_store, R, n, 3) Å;
    ``steps_per_second``, ``ns_per_day`` (simulated ns per day of wall time, all replicas
    together), ``n_rebuilds`` (neighbor-list builds)."""

    _ARRAYS = ("time", "potential_energy", "kinetic_energy", "temperature", "positions", "frame_time")

    def __init__(self):
        self._data = {k: [] for k in self._ARRAYS}
        self.n_steps = 0
        self.elapsed_s = 0.0
        self.steps_per_second = float("nan")
        self.ns_per_day = float("nan")
        self.n_rebuilds = 0
        self.timestep_fs = float("nan")
        self.n_replicas = 1
        self.integrator = ""

    def _append(self, key, value) -> None:
        self._data[key].append(value)

    def __getattr__(self, name):
        if name in _Results._ARRAYS:
            return np.asarray(self.__dict__["_data"][name], dtype=np.float64)
        raise AttributeError(name)

    @property
    def total_energy(self) -> np.ndarray:
        return self.potential_energy + self.kinetic_energy

    def summary(self) -> dict:
        T = self.temperature
        etot = self.total_energy
        return {"n_steps": self.n_steps, "timestep_fs": self.timestep_fs, "n_replicas": self.n_replicas,
                "steps_per_second": self.steps_per_second, "ns_per_day": self.ns_per_day,
                "n_neighbor_rebuilds": self.n_rebuilds, "elapsed_s": self.elapsed_s,
                "mean_temperature_K": float(T[len(T) // 2:].mean()) if len(T) else None,
                "integrator": self.integrator,
                # max |E_tot(t) - E_tot(0)|: a conservation check for NVE only (Langevin exchanges heat)
                "total_energy_drift_eV": float(np.abs(etot - etot[0]).max())
                if (len(etot) and self.integrator == "verlet") else None}

    def to_json(self, path=None) -> str:
        d = {"summary": self.summary(), "units": {"time": "fs", "energy": "eV", "temperature": "K"},
             "time": self.time.tolist(), "potential_energy": self.potential_energy.tolist(),
             "kinetic_energy": self.kinetic_energy.tolist(), "temperature": self.temperature.tolist()}
        text = json.dumps(d, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def plot(self, path=None):
        """Energies and temperature vs time (one line per replica); saved to ``path`` if given."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
        t = self.time / 1000.0
        ax[0].plot(t, self.potential_energy, lw=0.8, label="potential")
        ax[0].plot(t, self.total_energy, lw=0.8, ls="--", label="total")
        ax[0].set_ylabel("energy (eV)")
        ax[1].plot(t, self.temperature, lw=0.8)
        ax[1].set_ylabel("temperature (K)")
        ax[1].set_xlabel("time (ps)")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig
