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
Velocities are stored in ASE's unit (Å per ASE time unit Å·sqrt(amu/eV); 1 fs = ``ase.units.fs``
of them) so that they can be handed to ASE ``Atoms.set_velocities`` unchanged;
:attr:`MolecularDynamics.velocities_A_per_fs` gives Å/fs and the ``velocities`` argument takes Å/fs.

Trajectories are written by file suffix: ``.xyz``/``.extxyz`` (ASE, extended XYZ with bead
types and energies), ``.dcd``/``.xtc``/``.trr`` (MDAnalysis writers; a ``.pdb`` with bead
names is written next to them so that ``MDAnalysis.Universe(pdb, traj)`` reads them back).

Right or refused:

* **Start structure.** Particles closer than ``min_distance`` (default 0.5 Å; only for
  potentials with an interaction range) are refused with their indices and distance, and
  non-finite start forces name the particles that carry them.
* **Time step.** :meth:`MolecularDynamics.check_timestep` (on by default in ``cgkit md``,
  ``check_timestep=True`` in Python) computes the stability limit ``dt_max = 2/ω_max`` of the
  start structure (the full mass-weighted Hessian through
  :class:`cgkit.properties.timestep.StableTimestep` up to ``exact_max_particles`` particles,
  above that the largest eigenvalue by Lanczos iterations on autograd Hessian-vector products)
  and refuses a larger step unless explicitly allowed; above the recommended step (1/20 of
  the shortest period) it warns.
* **Divergence.** Non-finite energies or forces (checked every step) or a particle jumping
  more than 3 Å + skin between neighbor-list builds stop the run with a
  :class:`~cgkit.errors.StructureError` naming the MD step, the particle and its closest
  neighbors. In Python a trajectory file is closed and readable up to its last frame after
  such an error; ``cgkit md`` writes into a staging folder, so a failed run leaves no output.
* **Temperature.** ``results.summary()["temperature"]`` compares the achieved mean kinetic
  temperature of a Langevin run with the thermostat's target (see
  :meth:`MDResults.temperature_check`).
"""
from __future__ import annotations

from .errors import CgkitWarning
from .structures import close_pairs

import copy
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .data import AtomicGraph, batch_graphs
from .errors import InputError, StructureError
from .jsonutil import dumps, write_text_atomic
from .potential import Potential
from .results import Analysis, Results
from .units import FS_ASE, KB_EV

__all__ = ["MolecularDynamics", "MDResults", "TrajectoryWriter", "TimestepWarning", "kinetic_temperature"]


class TimestepWarning(CgkitWarning):
    """The MD time step is above the recommended one (or above ``dt_max`` by explicit override)."""


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


class MolecularDynamics(Analysis):
    """MD of one system (optionally several replicas) with a cgkit Potential.

    Follows the results protocol (:class:`cgkit.results.Analysis`): :meth:`run` integrates
    and returns ``self``; ``results`` is an :class:`MDResults`; :meth:`summary`,
    :meth:`to_json` and :meth:`plot` digest it.

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
    velocities : (n, 3) or (R, n, 3) Å/fs initial velocities (default: the atoms' velocities if
        set, else Maxwell–Boltzmann at ``temperature``)
    trajectory : output path (suffix selects the format); with several replicas one file per
        replica, ``name_r<k>.suffix``
    write_every, log_every, store_every : steps between trajectory frames, energy/temperature
        log entries and frames kept in memory (``results.positions``; 0 = none)
    progress : show progress (a bar on a terminal, a line with ETA every 30 s otherwise)
    n_threads : torch threads during :meth:`run` (default: 1 below 20000 particles, where
        thread start-up costs more than it saves; restored afterwards)
    min_distance : Å; particles closer than this in the start structure are refused as
        overlapping (only for potentials with an interaction range, ``cutoff > 0``; 0 turns
        the check off, e.g. for soft DPD-like potentials)
    check_timestep : run :meth:`check_timestep` now (refuses ``timestep > dt_max``, warns
        above the recommended step); ``allow_unstable_timestep`` turns the refusal into a warning
    kernel : ``"auto"`` (default), ``"compiled"`` or ``"torch"``. For a
        :class:`~cgkit.forcematch.tabulated.TabulatedPotential`, ``"auto"`` evaluates the pair
        tables with the compiled kernel of :mod:`cgkit.forcematch.pair_kernel` on a half
        Verlet list (built by a compiled cell list, kept while no particle moved more than
        ``skin/2``; bonded tables in closed form in torch), in float64 whatever ``dtype``;
        the forces equal the torch path's to rounding. ``"compiled"`` refuses to run without
        it, ``"torch"`` always uses :meth:`Potential.compute` (every other potential does).
        With the compiled kernel ``graph.edge_index`` keeps the start structure's edges.
    fused : run the whole step loop in C (:class:`cgkit.forcematch.pair_kernel.FusedMD`: BAOAB
        or velocity Verlet, Langevin noise, list check and rebuild, pair forces; K steps per
        call up to the next log/write/store step). ``None`` (default): whenever it applies —
        compiled kernel, a TabulatedPotential with pair tables and at most bond tables (no angle
        or dihedral instances; pair exclusions allowed),
        float64, a fully periodic cell at least 3 list cutoffs thick, no ``observer``;
        ``False``: the per-step Python loop; ``True``: refuse (InputError) if it does not apply.
        NVE trajectories equal the per-step loop's to rounding. The Langevin noise of the fused
        loop is counter-based (SplitMix64 + polar method keyed by ``seed``, MD step, particle row
        and component; see :class:`~cgkit.forcematch.pair_kernel.FusedMD`): reproducible for a
        seed however a run is split, the same distribution as the per-step loop's torch
        generator but not the same numbers.
    pair_precision : precision of the fused loop's pair forces: ``"double"`` (default; float64,
        equal to autograd to rounding) or ``"mixed"`` (float32 pair loop — relative coordinates,
        table, per-particle sums — with positions, velocities, integration and force totals in
        float64, as GROMACS's mixed precision but with double integration; about 2× faster on
        one-bead water, forces to ~5e-6 relative, NVE drift and g(r) equal to double's within
        noise, see docs/cg_md.md). Only the fused loop has it; the per-step loop and the torch
        path ignore it. ``results.pair_precision`` / ``summary()["pair_precision"]`` say which
        precision the last run's pair forces used.
    """

    def __init__(self, potential: Potential, atoms=None, *, positions=None, cell=None, pbc=True,
                 masses=None, species=None, type_names=None, timestep: float = 1.0,
                 integrator: str = "langevin", temperature: float = 300.0, friction: float = 0.01,
                 n_replicas: int = 1, skin: float = 1.0, seed: int = 0, velocities=None,
                 trajectory=None, write_every: int = 100, log_every: int = 10,
                 store_every: int = 0, progress: bool = True, dtype: torch.dtype | None = None,
                 remove_com_momentum: bool = True, n_threads: int | None = None,
                 min_distance: float = 0.5, check_timestep: bool = False,
                 allow_unstable_timestep: bool = False, kernel: str = "auto", fused: bool | None = None,
                 pair_precision: str = "double"):
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
        if not (min_distance >= 0 and math.isfinite(min_distance)):
            raise InputError(f"min_distance must be ≥ 0 Å, got {min_distance}")
        if kernel not in ("auto", "compiled", "torch"):
            raise InputError(f"kernel must be 'auto', 'compiled' or 'torch', got '{kernel}'")
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
                velocities = atoms.get_velocities() * FS_ASE  # ASE units (Å per ASE time unit) → Å/fs
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
            self.velocities = torch.as_tensor(v.reshape(-1, 3) / FS_ASE, dtype=self.dtype)  # Å/fs → ASE units
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
        self._prev_positions = self._ref_positions
        self._ref_step = 0
        self.min_distance = float(min_distance)
        self._particle = "bead" if np.all(self.atomic_numbers == 0) else "atom"
        self.results = MDResults()
        self._kernel = self._make_kernel(kernel)
        self.kernel = "compiled" if self._kernel is not None else "torch"
        if fused not in (None, True, False):
            raise InputError(f"fused must be None, True or False, got {fused!r}")
        self._seed = int(seed)
        self._fused_mode = fused
        from .forcematch.pair_kernel import PAIR_PRECISIONS
        if pair_precision not in PAIR_PRECISIONS:
            raise InputError(f"pair_precision must be one of {PAIR_PRECISIONS}, got {pair_precision!r}")
        self.pair_precision = pair_precision
        self.loop = None            # "fused" or "python": the step loop of the last run
        self._fused = None          # FusedMD state, created at the first fused run
        self._fused_key = None
        self._fused_step = None     # MD step at which the C state was last in sync
        why = self._fused_unsupported()
        if fused is True and why:
            raise InputError(f"fused=True: the fused C loop does not apply here: {why}; use fused=None")
        self.timestep_limits: dict | None = None
        self._check_start_structure()
        if check_timestep:
            self.check_timestep(allow_unstable=allow_unstable_timestep)

    def _make_kernel(self, kernel: str):
        """The compiled pair kernel for tabulated potentials (None: the torch path)."""
        if kernel == "torch":
            return None
        from .forcematch.tabulated import TabulatedPotential
        if not isinstance(self.potential, TabulatedPotential):
            if kernel == "compiled":
                raise InputError("kernel='compiled' is only for tabulated potentials "
                                 f"(TabulatedPotential), not {type(self.potential).__name__}")
            return None
        from .forcematch import pair_kernel
        if not pair_kernel.available():
            if kernel == "compiled":
                raise InputError(f"the compiled pair kernel is unavailable "
                                 f"({pair_kernel.unavailable_reason()}); install a C compiler (cc) "
                                 "or use kernel='torch'")
            pair_kernel.warn_unavailable()
            return None
        if self.graph.positions.device.type != "cpu":
            return None
        species = np.tile(np.asarray(self.species, dtype=np.int64), self.n_replicas)
        return pair_kernel.PairKernel(self.potential, species, self.n_replicas)

    def _fused_unsupported(self, observer=None) -> str | None:
        """Why the fused C loop cannot run this system (None: it can)."""
        if self._fused_mode is False:
            return "fused=False"
        if self._kernel is None:
            return "no compiled pair kernel (not a TabulatedPotential, kernel='torch', or no C compiler)"
        if not self._kernel.has_pairs:
            return "the potential has no pair table"
        inst = getattr(self.potential, "_instances", None) or {}
        kinds = sorted(k for k, (idx, _) in inst.items() if len(idx))
        if any(k != "bond" for k in kinds):
            return (f"the potential has {'/'.join(k for k in kinds if k != 'bond')} tables with instances "
                    "(only pair and bond tables run in the fused loop; the others are evaluated in torch)")
        if self.dtype != torch.float64:
            return f"dtype {self.dtype} (the fused loop integrates in float64)"
        from .forcematch.pair_kernel import FusedMD
        if not FusedMD.available_for(self._cell64(), self.pbc, self.nl_cutoff):
            return ("the cell is not fully periodic or thinner than 3 list cutoffs "
                    f"({self.nl_cutoff:g} Å) along some lattice-plane spacing")
        if observer is not None:
            return "an observer is called after every step"
        return None

    # ------------------------------------------------------------------ state
    @property
    def positions(self) -> np.ndarray:
        """(R, n, 3) Å current positions of every replica."""
        return self.graph.positions.detach().cpu().numpy().reshape(self.n_replicas, self.n_particles, 3)

    @property
    def velocities_A_per_fs(self) -> np.ndarray:
        """(R, n, 3) Å/fs."""
        return (self.velocities.cpu().numpy() * FS_ASE).reshape(self.n_replicas, self.n_particles, 3)

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

    # ------------------------------------------------------------------ checks
    def _where(self, flat_index: int) -> tuple[int, int]:
        """(replica, particle index in the structure) of a row of the batched graph."""
        return divmod(int(flat_index), self.n_particles)

    def _neighbors_text(self, positions: np.ndarray, particles, cutoff: float | None = None) -> str:
        """``"; closest pairs: atoms 3 and 7 at 0.41 Å, ..."`` for the pairs that involve
        ``particles`` at ``positions`` (n, 3) Å of one replica."""
        cutoff = cutoff or max(float(self.potential.cutoff), 3.0)
        if not np.all(np.isfinite(positions)):
            return ""
        pairs = close_pairs(positions, self.cell, self.pbc, cutoff, only=particles, limit=3)
        if not pairs:
            return f"; no other {self._particle} within {cutoff:.3g} Å"
        return "; closest pairs: " + ", ".join(f"{self._particle}s {i} and {j} at {d:.3g} Å" for d, i, j in pairs)

    def _check_start_structure(self) -> None:
        """Refuse overlapping particles (closer than ``min_distance``) in the start structure."""
        if self.min_distance <= 0 or float(self.potential.cutoff) <= 0:
            return
        # every replica starts from the same positions: replica 0 stands for all
        pairs = close_pairs(self.positions[0], self.cell, self.pbc, self.min_distance, limit=5)
        if pairs:
            listing = ", ".join(f"{self._particle}s {i} and {j} at {d:.3g} Å" for d, i, j in pairs)
            raise StructureError(
                f"overlapping {self._particle}s in the start structure: {listing} "
                f"(closer than min_distance = {self.min_distance:g} Å; indices are 0-based in "
                "the structure); fix or relax the structure (remove duplicated particles), or "
                "lower min_distance (--min-distance) if the potential is meant for such contacts")

    def _check_finite(self, step: int) -> None:
        """Non-finite energy or forces → StructureError naming the step and particles."""
        # one reduction each: a NaN/inf anywhere makes the sum non-finite (a finite overflow
        # only sends us to the exact check below)
        if math.isfinite(float(self._forces.sum())) and math.isfinite(float(self._energy.sum())):
            return
        if bool(torch.isfinite(self._forces).all()) and bool(torch.isfinite(self._energy).all()):
            return
        f_ok = torch.isfinite(self._forces).all(dim=1)
        bad = torch.nonzero(~f_ok).reshape(-1).tolist()
        if not bad:  # the energy only: name the replica
            bad_rep = torch.nonzero(~torch.isfinite(self._energy)).reshape(-1).tolist()
            who = (f"the energy of replica {bad_rep[0]}" if self.n_replicas > 1 else "the energy") + " is"
            rep = bad_rep[0]
            particles = []
        else:
            rep = self._where(bad[0])[0]
            particles = [self._where(b)[1] for b in bad if self._where(b)[0] == rep]
            shown = ", ".join(map(str, particles[:8])) + (" ..." if len(particles) > 8 else "")
            who = (f"the forces on {self._particle}s {shown}"
                   + (f" of replica {rep}" if self.n_replicas > 1 else "") + " are")
        prev = self._prev_positions.detach().cpu().numpy().reshape(self.n_replicas, self.n_particles, 3)[rep]
        near = self._neighbors_text(prev, particles) if particles else ""
        if step == 0:
            raise StructureError(
                f"the potential gives non-finite values for the start structure (MD step 0): {who} "
                f"NaN/inf{near}; check the structure for overlapping {self._particle}s and "
                "the potential's range")
        self._diverged(step, f"{who} NaN/inf{near}")

    def _diverged(self, step: int, what: str) -> None:
        lim = self.timestep_limits or {}
        if lim.get("dt_max_fs"):
            advice = (f"the timestep {self.timestep:g} fs is {self.timestep / lim['dt_max_fs']:.2g}× the "
                      f"stability limit dt_max = {lim['dt_max_fs']:.3g} fs of the start structure; "
                      "if the start structure is sound, lower the timestep")
        else:
            advice = ("lower the timestep (check_timestep() / cgkit md compute the stable one), "
                      "relax the start structure or check the potential")
        raise StructureError(f"the simulation diverged at MD step {step} (t = {step * self.timestep:g} fs): "
                             f"{what}; {advice}")

    def stability_limits(self, *, exact_max_particles: int = 128) -> dict:
        """Stability limits of the current structure of replica 0 (velocity Verlet and BAOAB
        need ω_max·dt < 2): ``dt_max_fs`` = 2/ω_max, ``dt_recommended_fs`` = shortest period /
        20, ``nu_max_THz``, ``lambda_max`` (eV/Å²/amu, largest eigenvalue of the mass-weighted
        Hessian), ``method``, ``status`` ("ok", or "skipped" with ``reason`` when the structure
        has no vibrations, e.g. free particles).

        Up to ``exact_max_particles`` particles the full Hessian is diagonalised by
        :class:`cgkit.properties.timestep.StableTimestep`; larger systems use Lanczos iterations
        (scipy ``eigsh``) on Hessian-vector products by double backpropagation (a few dozen
        force-like evaluations instead of 3n). Both run on a float64 copy of the potential
        (the caller's potential is not cast)."""
        n = self.n_particles
        pot = copy.deepcopy(self.potential).to(torch.float64)
        masses = self.masses[:n].to(torch.float64).cpu().numpy()
        if n <= exact_max_particles:
            from cgkit.properties.timestep import StableTimestep
            method = "full mass-weighted Hessian of the start structure (StableTimestep, autograd)"
            try:
                st = StableTimestep(self.atoms(0), pot, masses=masses).run()
            except StructureError as exc:  # no positive eigenvalue: nothing vibrates
                return {"status": "skipped", "reason": str(exc), "method": method, "n_particles": n}
            res = st.results
            lam = float(res["lambda_max"]) if "lambda_max" in res else (2.0 / float(res["dt_max"]) / FS_ASE) ** 2
        else:
            method = ("largest eigenvalue of the mass-weighted Hessian of the start structure by "
                      "Lanczos iterations on autograd Hessian-vector products")
            lam = self._lambda_max_lanczos(pot, masses)
        if not lam > 0:
            return {"status": "skipped", "reason": "the mass-weighted Hessian has no positive "
                    "eigenvalue (no vibrations)", "method": method, "n_particles": n}
        omega = math.sqrt(lam) * FS_ASE                                   # rad/fs
        return {"status": "ok", "lambda_max": lam, "nu_max_THz": omega / (2 * math.pi) * 1e3,
                "period_min_fs": 2 * math.pi / omega, "dt_max_fs": 2.0 / omega,
                "dt_recommended_fs": 2 * math.pi / omega / 20.0, "method": method, "n_particles": n}

    def _lambda_max_lanczos(self, pot: Potential, masses: np.ndarray) -> float:
        from scipy.sparse.linalg import LinearOperator, eigsh
        n = self.n_particles
        g = AtomicGraph.from_arrays(self.positions[0], self.cell, self.pbc, max(float(pot.cutoff), 1e-3),
                                    species=self.species, type_names=self.type_names,
                                    atomic_numbers=self.atomic_numbers, masses=masses, dtype=torch.float64)
        x = g.positions.detach().clone().requires_grad_(True)
        energy = pot.atomic_energies(g, x, g.cell.to(torch.float64)).sum()
        (grad,) = torch.autograd.grad(energy, x, create_graph=True, allow_unused=True)
        if grad is None or not grad.requires_grad:
            return 0.0
        w = np.repeat(1.0 / np.sqrt(masses), 3)

        def matvec(v):
            u = torch.as_tensor(np.asarray(v).reshape(-1) * w, dtype=torch.float64).reshape(n, 3)
            (hv,) = torch.autograd.grad(grad, x, grad_outputs=u, retain_graph=True, allow_unused=True)
            hv = torch.zeros_like(u) if hv is None else hv
            return hv.detach().numpy().reshape(-1) * w

        op = LinearOperator((3 * n, 3 * n), matvec=matvec, dtype=np.float64)
        v0 = np.random.default_rng(0).normal(size=3 * n)
        return float(eigsh(op, k=1, which="LA", tol=1e-6, v0=v0, return_eigenvectors=False,
                           ncv=min(3 * n, 40), maxiter=3000)[0])

    def check_timestep(self, *, allow_unstable: bool = False, exact_max_particles: int = 128,
                       warn: bool = True) -> dict:
        """Compare the timestep with :meth:`stability_limits` of the current structure.

        Above ``dt_max`` the run is refused (:class:`~cgkit.errors.InputError`) unless
        ``allow_unstable``; above the recommended step a :class:`TimestepWarning` is issued
        (``warn=False``: only returned in ``"warning"``). The record (``timestep_fs``,
        ``dt_max_fs``, ``dt_recommended_fs``, ``nu_max_THz``, ``status``, ``allow_unstable``,
        ``warning``) is also kept in ``results.timestep_check`` for :meth:`summary`."""
        lim = self.stability_limits(exact_max_particles=exact_max_particles)
        dt = self.timestep
        rec = {"timestep_fs": dt, **lim, "allow_unstable": bool(allow_unstable), "warning": None}
        if lim["status"] == "ok":
            self.timestep_limits = lim
            dt_max, dt_rec = lim["dt_max_fs"], lim["dt_recommended_fs"]
            what = (f"the fastest vibration of the start structure is {lim['nu_max_THz']:.3g} THz "
                    f"(period {lim['period_min_fs']:.3g} fs): dt_max = 2/ω_max = {dt_max:.3g} fs, "
                    f"recommended {dt_rec:.3g} fs (1/20 of the period)")
            if dt > dt_max:
                if not allow_unstable:
                    raise InputError(
                        f"timestep {dt:g} fs is above the stability limit of this system: {what}; "
                        f"velocity Verlet and Langevin (BAOAB) are unstable above dt_max. Use a "
                        f"timestep ≤ {dt_rec:.3g} fs, or override explicitly "
                        "(--allow-unstable-timestep; allow_unstable=True in Python)")
                rec["status"] = "above_dt_max_allowed_by_override"
                rec["warning"] = (f"timestep {dt:g} fs is above the stability limit ({what}); "
                                  "running anyway because the override was given")
            elif dt > dt_rec:
                rec["status"] = "above_recommended"
                rec["warning"] = (f"timestep {dt:g} fs is {dt / dt_rec:.2g}× the recommended step "
                                  f"({what}); expect poor energy conservation and, with a thermostat, "
                                  "a kinetic temperature away from the target")
        self.results.timestep_check = rec
        if warn and rec["warning"]:
            warnings.warn(rec["warning"], TimestepWarning, stacklevel=2)
        return rec

    # ------------------------------------------------------------------ results protocol
    def summary(self) -> dict:
        """JSON-ready digest (see :meth:`MDResults.summary`)."""
        return self.results.summary()

    def to_json(self, path=None) -> str:
        """Strict JSON of the summary and the energy/temperature log (see :meth:`MDResults.to_json`)."""
        return self.results.to_json(path)

    def plot(self, directory) -> list[Path]:
        """Energies and temperature vs time → ``directory/md.png``; returns the paths."""
        return self.results.plot(directory)

    # ------------------------------------------------------------------ neighbors and forces
    def _maybe_rebuild(self, force: bool = False, step: int = 0) -> None:
        pos = self.graph.positions
        if self._kernel is not None and self._kernel.has_pairs and self._kernel.pairs is None:
            force = True  # the compiled kernel's list is built at the first evaluation
        if not force:
            moved = (pos - self._ref_positions).norm(dim=1)
            disp = float(moved.max())
            if self.skin > 0 and disp <= 0.5 * self.skin:
                return
            if disp > 3.0 + self.skin:  # Å-sized jumps between neighbor-list builds: blown up
                rep, k = self._where(int(torch.argmax(moved)))
                prev = self._prev_positions.detach().cpu().numpy().reshape(
                    self.n_replicas, self.n_particles, 3)[rep]
                where = f" of replica {rep}" if self.n_replicas > 1 else ""
                self._diverged(step, f"{self._particle} {k}{where} moved {disp:.3g} Å since the "
                               f"neighbor list was built at step {self._ref_step} (force "
                               f"{float(self._forces[rep * self.n_particles + k].norm()):.3g} eV/Å)"
                               f"{self._neighbors_text(prev, [k])}")
        if not torch.isfinite(pos).all():
            bad = torch.nonzero(~torch.isfinite(pos).all(dim=1)).reshape(-1).tolist()
            rep = self._where(bad[0])[0]
            ks = [self._where(b)[1] for b in bad if self._where(b)[0] == rep]
            where = f" of replica {rep}" if self.n_replicas > 1 else ""
            prev = self._prev_positions.detach().cpu().numpy().reshape(
                self.n_replicas, self.n_particles, 3)[rep]
            self._diverged(step, f"the positions of {self._particle}s "
                           f"{', '.join(map(str, ks[:8]))}{' ...' if len(ks) > 8 else ''}{where} "
                           f"became NaN/inf{self._neighbors_text(prev, ks[:8])}")
        if self.pbc.any():
            cell = self.graph.cell[0].to(pos.dtype)
            frac = torch.linalg.solve(cell.T, pos.T).T
            pbc = torch.as_tensor(self.pbc)
            frac = torch.where(pbc, frac - torch.floor(frac), frac)
            pos = frac @ cell
        if self._kernel is not None:
            self.graph = self.graph.with_positions(pos.detach(), rebuild=False)
            self._kernel.build(pos.detach().to(torch.float64).numpy(), self._cell64(), self.pbc,
                               self.nl_cutoff)
        else:
            self.graph = self.graph.with_positions(pos.detach(), rebuild=True)
        self._ref_positions = self.graph.positions.clone()
        self._ref_step = step
        self.n_rebuilds += 1

    def _compute(self, step: int) -> None:
        """Forces and energies at the current positions (``step``: the MD step they belong to)."""
        self._maybe_rebuild(step=step)
        if self._kernel is not None:
            self._compute_kernel(step)
        else:
            out = self.potential.compute(self.graph, forces=True)
            self._forces = out["forces"].to(self.dtype)
            self._energy = out["energy"].to(torch.float64)
        self._check_finite(step)

    def _cell64(self) -> np.ndarray:
        c = self.__dict__.get("_cell64_cache")
        if c is None:
            c = np.ascontiguousarray(self.graph.cell[0].detach().to(torch.float64).cpu().numpy())
            self._cell64_cache = c
        return c

    def _compute_kernel(self, step: int) -> None:
        """Forces and energies of a tabulated potential: pairs by the compiled kernel, bonded
        tables in closed form (torch), all in float64."""
        from .forcematch.pair_kernel import bonded_energy_forces
        pos = self.graph.positions.detach()
        p64 = np.ascontiguousarray(pos.to(torch.float64).numpy())
        F = np.zeros((len(p64), 3))
        E = np.zeros(self.n_replicas)
        bad = self._kernel.compute(p64, self._cell64(), F, E)
        if bad > 0:
            i, j = self._kernel.coincident_pair(p64, self._cell64())
            rep, a = self._where(i)
            b = self._where(j)[1]
            where = f" of replica {rep}" if self.n_replicas > 1 else ""
            text = f"{self._particle}s {a} and {b}{where} are at the same position (zero distance)"
            if step == 0:
                raise StructureError(f"the start structure has {text}; remove duplicated particles")
            self._diverged(step, text)
        forces = torch.from_numpy(F)
        energy = torch.from_numpy(E)
        bonded = bonded_energy_forces(self.potential, self.graph)
        if bonded is not None:
            energy = energy + bonded[0]
            forces = forces + bonded[1]
        self._forces = forces.to(self.dtype)
        self._energy = energy

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

    def _record(self, log: bool, write: bool, store: bool) -> np.ndarray:
        """Log/write/store the current state; returns the (R,) kinetic temperatures (K)."""
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
        return T

    def run(self, n_steps: int, observer=None) -> "MolecularDynamics":
        """Integrate ``n_steps`` steps (continuing from the current state); returns self.

        ``observer``: called as ``observer(self)`` after every step (``self.step`` is the step
        just completed); a true return value ends the run there and is recorded as
        ``results.stopped_at_step`` (e.g. :class:`cgkit.learn.monitor.UncertaintyMonitor`)."""
        n_steps = int(n_steps)
        if n_steps < 0:
            raise InputError("n_steps must be ≥ 0")
        from .threads import torch_threads
        with torch_threads(self.n_threads or (1 if self.graph.n_atoms < 20000 else None)):
            try:
                return self._run(n_steps, observer)
            finally:
                if self._writers:
                    for w in self._writers:
                        w.close()
                    self._writers = None

    def _run(self, n_steps: int, observer=None) -> "MolecularDynamics":
        from .progress import progress_bar
        self._open_writers()
        if self._forces is None:
            self._maybe_rebuild(force=True, step=self.step)
            self._compute(self.step)
            if self.step == 0:
                self._record(self.log_every > 0, self.write_every > 0, self.store_every > 0)
        dt = self.timestep * FS_ASE  # ASE time unit
        inv_m = (1.0 / self.masses[:, None]).to(self.dtype)
        kick = 0.5 * dt * inv_m  # (n, 1): half kick per unit force
        if self.integrator == "langevin":
            c1 = math.exp(-self.friction * self.timestep)
            c2 = math.sqrt(1.0 - c1 * c1)
            noise_scale = c2 * torch.sqrt(KB_EV * self.temperature * inv_m)
        t0 = time.perf_counter()
        why = self._fused_unsupported(observer)
        if self._fused_mode is True and why:
            raise InputError(f"fused=True: the fused C loop does not apply here: {why}")
        if why is None:
            bar = progress_bar(total=n_steps, desc=f"MD ({self.integrator}, fused)", unit="step",
                               disable=None if self.progress else True)
            try:
                done = self._run_fused(n_steps, dt, kick, bar)
            finally:
                bar.close()
            self.loop = "fused"
            return self._finish_run(t0, done)
        self.loop = "python"
        self._fused_step = None  # the C state (if any) is out of sync from here on
        steps = progress_bar(range(n_steps), desc=f"MD ({self.integrator})", unit="step",
                             disable=None if self.progress else True)
        pos = self.graph.positions
        done = 0
        for _ in steps:
            self._prev_positions = pos
            v = self.velocities + kick * self._forces
            if self.integrator == "verlet":
                pos = pos + dt * v
            else:
                pos = pos + 0.5 * dt * v
                # O step: exact Ornstein-Uhlenbeck update
                noise = torch.randn(v.shape, generator=self.gen, dtype=torch.float64).to(self.dtype)
                v = c1 * v + noise_scale * noise
                pos = pos + 0.5 * dt * v
            self.graph = self.graph.with_positions(pos, rebuild=False)
            self._compute(self.step + 1)  # checks for NaN/inf and jumps: a blown-up run stops here
            pos = self.graph.positions
            self.velocities = v + kick * self._forces
            self.step += 1
            self._record_if_due(steps)
            done += 1
            if observer is not None and observer(self):
                self.results.stopped_at_step = self.step
                break
        return self._finish_run(t0, done)

    def _record_if_due(self, bar) -> None:
        """Log / write / store the current step where its interval falls on it (the
        temperature goes to the progress bar on log steps)."""
        log = self.log_every > 0 and self.step % self.log_every == 0
        write = self.write_every > 0 and self.step % self.write_every == 0
        store = self.store_every > 0 and self.step % self.store_every == 0
        if log or write or store:
            T = self._record(log, write, store)
            if log:
                bar.set_postfix_str(f"T={float(T.mean()):.1f} K", refresh=False)

    def _run_fused(self, n_steps: int, dt: float, kick: torch.Tensor, bar) -> int:
        """The step loop in C (:class:`~cgkit.forcematch.pair_kernel.FusedMD`), K steps per
        call up to the next log/write/store step; returns the steps done."""
        from .forcematch.pair_kernel import FusedMD
        langevin = self.integrator == "langevin"
        c1 = math.exp(-self.friction * self.timestep) if langevin else 1.0
        key = (self.timestep, self.temperature, self.friction, self.integrator, self.skin, self.pair_precision)
        if self._fused is None or self._fused_key != key:
            inv_m = (1.0 / self.masses.to(torch.float64)).numpy()
            sigma = (math.sqrt(1.0 - c1 * c1) * np.sqrt(KB_EV * self.temperature * inv_m) if langevin
                     else np.zeros_like(inv_m))
            bonds = None
            n0 = self.potential.topology.n_particles
            inst = self.potential._bonded_instances(self.graph, n0) if self.potential._instances else {}
            if "bond" in inst and len(inst["bond"][0]):
                idx, tid = inst["bond"]
                bonds = (idx.numpy(), tid.numpy(), [p.numpy() for p in self.potential._packed_as(
                    "bond", torch.float64, "cpu")])
            self._fused = FusedMD(self._kernel, self._cell64(), self.nl_cutoff, self.skin,
                                  kick.to(torch.float64).reshape(-1).numpy(), sigma, self._seed,
                                  precision=self.pair_precision, bonds=bonds,
                                  exclusions=np.asarray(self.potential.topology.exclusions))
            self._fused_key, self._fused_step = key, None
        fm = self._fused
        rebuild = self._fused_step != self.step   # not in sync with the C state: rebuild the list
        fm.load(self.graph.positions.detach().numpy(), self.velocities.numpy(), self._forces.numpy())
        r0 = fm.n_rebuilds
        done = 0
        while done < n_steps:
            K = n_steps - done
            for every in (self.log_every, self.write_every, self.store_every):
                if every > 0:
                    K = min(K, every - self.step % every)
            status, k = fm.steps(K, self.step, langevin, dt, c1, rebuild)
            rebuild = False
            if status != FusedMD.OK:
                self.n_rebuilds += fm.n_rebuilds - r0
                self._fused_step = None
                self._fused_trouble(fm, status, self.step + k + 1)
            self.step += K
            done += K
            self.graph = self.graph.with_positions(torch.from_numpy(fm.store(0)), rebuild=False)
            self.velocities = torch.from_numpy(fm.store(1))
            self._forces = torch.from_numpy(fm.store(2))
            self._energy = torch.from_numpy(fm.E.copy())
            if not bool(torch.isfinite(self._energy).all()):
                self._fused_step = None
                self._check_finite(self.step)
            self._fused_step = self.step
            self._record_if_due(bar)
            bar.update(K)
        self.n_rebuilds += fm.n_rebuilds - r0
        if done:  # the list-build reference (for a later per-step run's displacement check)
            self._ref_positions = torch.from_numpy(fm.store(4))
            self._ref_step = fm.build_step
        return done

    def _fused_trouble(self, fm, status: int, step: int) -> None:
        """Raise the per-step loop's error for a fused-loop status (state of ``step``)."""
        from .forcematch.pair_kernel import FusedMD
        if status == FusedMD.NOMEM:
            raise MemoryError("MD: out of memory in the fused loop (neighbour list)")
        self.graph = self.graph.with_positions(torch.from_numpy(fm.store(0)), rebuild=False)
        self._prev_positions = torch.from_numpy(fm.store(3))
        self._forces = torch.from_numpy(fm.store(2))
        self._energy = torch.zeros(self.n_replicas, dtype=torch.float64)
        if status in (FusedMD.JUMP, FusedMD.NANPOS):
            self._ref_positions = torch.from_numpy(fm.store(4))
            self._ref_step = fm.build_step
            self._maybe_rebuild(step=step)   # raises the per-step loop's StructureError
        elif status == FusedMD.NANFORCE:
            self._check_finite(step)          # raises
        elif status == FusedMD.ZERO:
            i, j = (int(v) for v in fm.info[:2])
            rep, a = self._where(i)
            where = f" of replica {rep}" if self.n_replicas > 1 else ""
            self._diverged(step, f"{self._particle}s {a} and {self._where(j)[1]}{where} are at the same "
                           "position (zero distance)")
        raise RuntimeError(f"fused MD loop: unexpected status {status} at MD step {step}")  # a bug

    def _finish_run(self, t0: float, done: int) -> "MolecularDynamics":
        elapsed = time.perf_counter() - t0
        r = self.results
        r.n_steps = self.step
        r.elapsed_s += elapsed
        r.steps_per_second = done / elapsed if elapsed > 0 else float("nan")
        r.ns_per_day = r.steps_per_second * self.timestep * 86400 * 1e-6
        r.n_rebuilds = self.n_rebuilds
        r.timestep_fs = self.timestep
        r.n_replicas = self.n_replicas
        r.integrator = self.integrator
        r.kernel = self.kernel
        r.md_loop = self.loop
        # the precision of the pair forces that ran: only the fused loop has a mixed mode
        r.pair_precision = (self.pair_precision if self.loop == "fused" else
                            "double" if self.kernel == "compiled" else str(self.dtype).replace("torch.", ""))
        r.n_particles = self.n_particles
        r.n_dof = self._ndof()
        r.target_temperature_K = self.temperature if self.integrator == "langevin" else None
        return self


class MDResults(Results):
    """MD results (a :class:`cgkit.results.Results`: a dict with attribute access).

    Logged series (numpy arrays, built on access): ``time`` (n_log,) fs;
    ``potential_energy``, ``kinetic_energy``, ``total_energy``, ``temperature`` (n_log, R) in
    eV / K; ``positions`` (n_store, R, n, 3) Å and ``frame_time`` (n_store,) fs of the frames
    kept in memory. Scalars: ``n_steps``, ``elapsed_s``, ``steps_per_second``, ``ns_per_day``
    (simulated ns per day of wall time, all replicas together), ``n_rebuilds`` (neighbor-list
    builds), ``timestep_fs``, ``n_replicas``, ``integrator``, ``target_temperature_K``
    (Langevin; None for NVE), ``n_dof`` (degrees of freedom per replica), ``timestep_check``
    (see :meth:`MolecularDynamics.check_timestep`) and ``sample_from_step``: the first MD step
    of the window averaged by :meth:`temperature_check` (None: the second half of the logged
    samples).
    """

    _ARRAYS = ("time", "potential_energy", "kinetic_energy", "temperature", "positions", "frame_time")

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_data", {k: [] for k in self._ARRAYS})
        self.update(n_steps=0, elapsed_s=0.0, steps_per_second=float("nan"), ns_per_day=float("nan"),
                    n_rebuilds=0, timestep_fs=float("nan"), n_replicas=1, integrator="",
                    n_particles=None, n_dof=None, target_temperature_K=None, sample_from_step=None,
                    timestep_check=None)

    def __missing__(self, key):
        if key in MDResults._ARRAYS:
            return np.asarray(self._data[key], dtype=np.float64)
        raise KeyError(key)

    def _append(self, key, value) -> None:
        self._data[key].append(value)

    def clear_frames(self) -> None:
        """Forget the frames kept in memory (``positions``, ``frame_time``), e.g. after equilibration."""
        self._data["positions"].clear()
        self._data["frame_time"].clear()

    @property
    def total_energy(self) -> np.ndarray:
        return self.potential_energy + self.kinetic_energy

    # ------------------------------------------------------------------ temperature
    def _window(self):
        """(rows of the averaged log window, description)."""
        T = self.temperature
        n = len(T)
        if self.sample_from_step is not None and np.isfinite(self.timestep_fs):
            steps = np.rint(self.time / self.timestep_fs).astype(np.int64)
            rows = np.nonzero(steps >= int(self.sample_from_step))[0]
            rule = f"logged samples from MD step {int(self.sample_from_step)} on (after equilibration)"
        else:
            rows = np.arange(n // 2, n)
            rule = "second half of the logged samples (the first half is treated as equilibration)"
        return rows, rule

    def temperature_check(self) -> dict | None:
        """Achieved mean kinetic temperature against the thermostat's target (None before any log).

        Window: see ``sample_from_step``. ``canonical_fluctuation_K`` = sqrt(2/n_dof)·T is
        the canonical standard deviation of one replica's instantaneous kinetic temperature;
        ``standard_error_K`` is that of the window mean, from block averages of the samples
        (10 blocks per replica; never below the canonical value for uncorrelated samples, and
        one sample per replica when the window has fewer than 4). The mean is ``consistent``
        when |mean − target| ≤ ``tolerance_K`` = max(3 × standard error, 5 % of the target);
        otherwise ``warning`` says so. NVE runs (no target) report the mean only.
        """
        T = self.temperature
        if T.ndim != 2 or not len(T):
            return None
        rows, rule = self._window()
        if not len(rows):
            return None
        w = T[rows]                                   # (n_w, R)
        steps = np.rint(self.time[rows] / self.timestep_fs) if np.isfinite(self.timestep_fs) else None
        mean = float(w.mean())
        n_w, R = w.shape
        if n_w >= 4:
            nb = min(10, n_w // 2)
            blocks = np.concatenate([b.mean(0) for b in np.array_split(w, nb, axis=0)])  # (nb·R,)
            sem = float(blocks.std(ddof=1) / math.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")
        else:
            sem = float("nan")
        out = {"mean_K": mean, "window": {"rule": rule, "n_samples": int(n_w), "n_replicas": int(R),
                                          "from_step": int(steps[0]) if steps is not None else None,
                                          "to_step": int(steps[-1]) if steps is not None else None}}
        target = self.target_temperature_K
        if target is None or not target > 0 or not self.n_dof:
            out.update(target_K=target, standard_error_K=sem if np.isfinite(sem) else None,
                       consistent=None, warning=None,
                       note="no thermostat (NVE): the mean is reported, not checked" if target is None
                       else "target 0 K: not checked")
            return out
        sigma = math.sqrt(2.0 / self.n_dof) * target          # one replica, one sample
        floor = sigma / math.sqrt(n_w * R)                       # uncorrelated samples
        sem = max(sem, floor) if np.isfinite(sem) else sigma / math.sqrt(R)
        tol = max(3.0 * sem, 0.05 * target)
        dev = mean - target
        ok = abs(dev) <= tol
        out.update(target_K=float(target), deviation_K=dev, relative_deviation=dev / target,
                   standard_error_K=sem, canonical_fluctuation_K=sigma, tolerance_K=tol, consistent=ok,
                   warning=None if ok else (
                       f"the achieved mean temperature {mean:.1f} K differs from the thermostat's "
                       f"{target:g} K by {dev:+.1f} K ({100 * dev / target:+.1f} %; tolerance "
                       f"{tol:.1f} K = max(3 standard errors, 5 %), over the {rule}): the timestep "
                       "is probably too large for this potential, or the run too short to equilibrate"))
        return out

    # ------------------------------------------------------------------ protocol
    def summary(self) -> dict:
        etot = self.total_energy
        tcheck = self.temperature_check()
        warnings_ = [w for w in ((self.timestep_check or {}).get("warning"),
                                 (tcheck or {}).get("warning")) if w]
        return {"n_steps": self.n_steps, "timestep_fs": self.timestep_fs, "n_replicas": self.n_replicas,
                "n_particles": self.n_particles,
                "steps_per_second": self.steps_per_second, "ns_per_day": self.ns_per_day,
                "n_neighbor_rebuilds": self.n_rebuilds, "elapsed_s": self.elapsed_s,
                "mean_temperature_K": tcheck["mean_K"] if tcheck else None,
                "integrator": self.integrator,
                "force_kernel": self.get("kernel"),
                "md_loop": self.get("md_loop"),
                "pair_precision": self.get("pair_precision"),
                "temperature": tcheck,
                "timestep_check": self.timestep_check,
                # max |E_tot(t) - E_tot(0)|: a conservation check for NVE only (Langevin exchanges heat)
                "total_energy_drift_eV": float(np.abs(etot - etot[0]).max())
                if (len(etot) and self.integrator == "verlet") else None,
                "warnings": warnings_}

    def to_json(self, path=None, keys=None) -> str:
        """Strict JSON (no NaN) of the summary and the energy/temperature log; written
        atomically to ``path`` if given."""
        d = {"summary": self.summary(), "units": {"time": "fs", "energy": "eV", "temperature": "K"},
             "time": self.time.tolist(), "potential_energy": self.potential_energy.tolist(),
             "kinetic_energy": self.kinetic_energy.tolist(), "temperature": self.temperature.tolist()}
        if keys is not None:
            d = {k: v for k, v in d.items() if k in keys}
        text = dumps(d, indent=1)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def plot(self, directory) -> list[Path]:
        """Energies and temperature vs time (one line per replica) → ``directory/md.png``
        (a path ending in an image suffix is used as the file name); returns the paths."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        target = Path(directory)
        path = target if target.suffix.lower() in (".png", ".pdf", ".svg") else target / "md.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
        t = self.time / 1000.0
        ax[0].plot(t, self.potential_energy, lw=0.8, label="potential")
        ax[0].plot(t, self.total_energy, lw=0.8, ls="--", label="total")
        ax[0].set_ylabel("energy (eV)")
        ax[1].plot(t, self.temperature, lw=0.8)
        if self.target_temperature_K is not None:
            ax[1].axhline(self.target_temperature_K, color="k", lw=0.8, ls=":", label="target")
            ax[1].legend(loc="best", fontsize=8)
        ax[1].set_ylabel("temperature (K)")
        ax[1].set_xlabel("time (ps)")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [path]


#: backwards-compatible name of :class:`MDResults`
_Results = MDResults
