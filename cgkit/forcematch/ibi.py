"""Iterative Boltzmann inversion (IBI) driven by CG MD in cgkit or in LAMMPS.

Targets are the distributions of the mapped reference trajectory: g(r) per bead-type pair
(non-excluded pairs), bond-length, angle and dihedral distributions per type. The start
potential is the Boltzmann inverse of the targets (:func:`cgkit.forcematch.boltzmann.boltzmann_table`,
the one inversion of cgkit, with its Jacobians and edge rule), and each iteration runs CG MD
with the current tables and updates

    U_{k+1}(x) = U_k(x) + α kT ln[P_k(x) / P_target(x)]

wherever both distributions are resolved (elsewhere U is continued linearly by the same edge
rule: bonds and angles rise outwards by ≥ kT per bin). Optional pressure correction (Reith et
al.): ΔU(r) = A (1 - r/r_c) with A = -sign(ΔP) · min(|ΔP| · scale, 0.1 kT) added to every pair
potential.

Defaults (:data:`IBI_DEFAULTS`; the same for ``cgkit ibi``, ``cgkit fm --bonded ibi`` and
:func:`cgkit.forcematch.hybrid_fit`): α = 1.0 — the undamped update of Reith, Pütz &
Müller-Plathe (J. Comput. Chem. 24, 1624 (2003)) and VOTCA's default scale; pass a smaller α
(0.2-0.5) for pair potentials of dense liquids that oscillate. 5000 sampling and 1000
equilibration steps of 5 fs per iteration, Langevin friction 0.01/fs (10/ps), 100 bins.

Sampling engine (``engine``, ``--engine``; shared by IBI, relative entropy and IMC): ``"cgkit"``
runs :class:`cgkit.md.MolecularDynamics` (BAOAB Langevin; tabulated pairs through the compiled
kernel), ``"lammps"`` runs the ``lmp`` binary on the tables exported by
:func:`cgkit.export.lammps.write_lammps` (``pair/bond/angle/dihedral_style table``,
``fix langevin`` with damping 1/friction + ``fix nve``, the same timestep, equilibration and
sampling interval), as VOTCA's iterative workflows drive GROMACS or LAMMPS. Both sample the
same canonical ensemble, so the updates agree within their noise (tests/forcematch/test_imc.py).

Units: Å, rad inside (deg in summaries), eV, K, fs, pressure GPa.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..results import Analysis, Results
from ..topology import Topology
from ..units import KB_EV
from .boltzmann import (DENSITY_FLOOR, ForceMatchError, bonded_histogram, boltzmann_table, confining_slope, fill_linear,
                        table_from_values)
from .geometry import type_key, type_label
from .tabulated import Table, TabulatedPotential
from .validate import bonded_samples, rdf

__all__ = ["IterativeBoltzmannInversion", "boltzmann_table", "IBI_DEFAULTS", "ENGINES", "lammps_sample"]

#: CG MD engines the iterative methods can sample with
ENGINES = ("cgkit", "lammps")

#: one set of IBI settings for every caller (α, CG MD per iteration, histogram bins)
IBI_DEFAULTS = {"alpha": 1.0, "md_steps": 5000, "equilibration": 1000, "sample_every": 50,
                "timestep": 5.0, "friction": 0.01, "bins": 100}

_EPS = DENSITY_FLOOR


class IterativeBoltzmannInversion(Analysis):
    """IBI of pair (and optionally bonded) tables with cgkit CG MD.

    Parameters
    ----------
    type_names, species, topology, masses (amu per bead) : the CG system
    reference_positions : (n_frames, n_beads, 3) Å mapped reference; reference_boxes: box(es)
    start_positions : (n_beads, 3) Å start of every CG MD run; box : (3,) or (3, 3) Å
    temperature : K; pair_cutoff : Å; bins : histogram bins per distribution
    kinds : which interactions to iterate ("pair", "bond", "angle", "dihedral"); the others keep
        their Boltzmann-inverted start potential
    alpha : update damping (0 < α ≤ 1); md_steps, equilibration, sample_every, timestep (fs),
    friction (1/fs) : the CG MD of each iteration (defaults :data:`IBI_DEFAULTS`)
    pressure : target pressure in GPa (None: no pressure correction); pressure_scale: eV per GPa
    start_tables : tables (list of :class:`Table` or a :class:`TabulatedPotential`) replacing the
        Boltzmann-inverted start of their interaction types, e.g. force-matched pair tables with
        ``kinds=("bond", "angle")``: hybrid FM + IBI, where only the bonded terms are iterated
    progress : print "IBI iteration k/N" lines from :meth:`run` (and MD progress)
    engine : ``"cgkit"`` (default) or ``"lammps"`` (the ``lmp`` binary on the exported tables;
        refused up front when ``lmp`` is absent or the exclusions cannot be written for LAMMPS)
    """

    def __init__(self, type_names, species, topology: Topology, masses, reference_positions,
                 reference_boxes, start_positions, box, *, temperature: float = 300.0,
                 pair_cutoff: float = 10.0, bins: int = IBI_DEFAULTS["bins"], kinds=("pair",),
                 alpha: float = IBI_DEFAULTS["alpha"], md_steps: int = IBI_DEFAULTS["md_steps"],
                 equilibration: int = IBI_DEFAULTS["equilibration"],
                 sample_every: int = IBI_DEFAULTS["sample_every"], timestep: float = IBI_DEFAULTS["timestep"],
                 friction: float = IBI_DEFAULTS["friction"], pressure: float | None = None,
                 pressure_scale: float = 0.01, seed: int = 0, progress: bool = False,
                 start_tables=None, engine: str = "cgkit"):
        if not (0 < alpha <= 1):
            raise InputError("alpha must be in (0, 1]")
        check_engine(engine, topology)
        self.engine = engine
        self.type_names = tuple(type_names)
        self.species = np.asarray(species, dtype=np.int64)
        self.names = np.asarray(self.type_names)[self.species]
        self.topology = topology
        self.masses = np.broadcast_to(np.asarray(masses, dtype=float), (topology.n_particles,))
        self.kT = KB_EV * temperature
        self.temperature = temperature
        self.pair_cutoff = pair_cutoff
        self.bins = int(bins)
        self.kinds = tuple(kinds)
        self.alpha = alpha
        self.md_kw = dict(timestep=timestep, friction=friction, temperature=temperature)
        self.md_steps, self.equilibration, self.sample_every = md_steps, equilibration, sample_every
        self.pressure, self.pressure_scale = pressure, pressure_scale
        self.seed = seed
        self.progress = progress
        self.start = np.asarray(start_positions, dtype=float)
        b = np.asarray(box, dtype=float)
        self.cell = np.diag(b) if b.shape == (3,) else b.reshape(3, 3)
        # bond histogram ranges: fixed by the reference (the CG runs are histogrammed on them)
        self._ranges: dict = {}
        self.targets, counts = self._histograms(reference_positions, reference_boxes, reference=True)
        if isinstance(start_tables, TabulatedPotential):
            start_tables = start_tables.tables
        given = {}
        for t in start_tables or []:
            t = t if isinstance(t, Table) else Table.from_dict(t)
            if t.kind in kinds and getattr(t, "damping", None) is not None:
                raise InputError(f"{t.label}: a {t.damping}-damped dihedral cannot be iterated (the update "
                                 "would replace it by an undamped table); keep it fixed by leaving "
                                 "'dihedral' out of the iterated kinds")
            given[(t.kind, t.types)] = t
        # Boltzmann-inverted start only where no table is given (a sparse target that is not
        # inverted cannot fail here)
        self.tables = dict(given)
        for k, (x, dens) in self.targets.items():
            if k in given:
                continue
            try:
                self.tables[k] = boltzmann_table(k[0], k[1], x, dens, self.kT, counts=counts.get(k))
            except (InputError, ForceMatchError):  # too few samples, or none at all
                if k[0] in self.kinds:
                    raise
                warnings.warn(f"{type_label(*k)}: too few samples to Boltzmann-invert and not iterated "
                              "(not in kinds): the CG model has no such interaction", stacklevel=2)
        self.history: list[dict] = []
        self.potential = self._potential()
        self.results = Results(history=self.history)

    # ------------------------------------------------------------------ distributions
    def _histograms(self, positions, boxes, *, reference: bool = False):
        """({(kind, types): (x grid (internal units), density)}, {key: counts (bonded)}) on the
        fixed grids; ``reference`` sets the bond ranges."""
        out, counts = {}, {}
        g, edges, _ = rdf(positions, boxes, self.names, self.topology, self.pair_cutoff, self.bins)
        x = 0.5 * (edges[1:] + edges[:-1])
        for key, val in g.items():
            out[("pair", type_key("pair", key))] = (x, val)
        for kind in ("bond", "angle", "dihedral"):
            for key, s in bonded_samples(kind, positions, boxes, self.names, self.topology).items():
                rng = None if reference else self._ranges.get((kind, key))
                xc, dens, cnt, e = bonded_histogram(kind, s, self.bins, value_range=rng)
                if reference and kind == "bond":
                    self._ranges[(kind, key)] = (float(e[0]), float(e[-1]))
                out[(kind, key)] = (xc, dens)
                counts[(kind, key)] = cnt
        return out, counts

    def _distributions(self, positions, boxes) -> dict:
        """{(kind, types): (x grid (internal units), density)} on the reference's grids."""
        return self._histograms(positions, boxes)[0]

    def _potential(self) -> TabulatedPotential:
        return TabulatedPotential(self.type_names, self.topology, list(self.tables.values()))

    # ------------------------------------------------------------------ iterations
    def _sample(self, it: int) -> np.ndarray:
        """(n_frames, n_beads, 3) Å: CG MD with the current potential (``engine``), frames every
        ``sample_every`` steps after ``equilibration`` steps."""
        if self.engine == "lammps":
            return lammps_sample(self.potential, self.start, self.cell, self.masses, self.species,
                                 temperature=self.temperature, timestep=self.md_kw["timestep"],
                                 friction=self.md_kw["friction"], equilibration=self.equilibration,
                                 md_steps=self.md_steps, sample_every=self.sample_every, seed=self.seed + it)
        from ..md import MolecularDynamics
        md = MolecularDynamics(self.potential, positions=self.start, cell=self.cell, pbc=True,
                               masses=self.masses, species=self.species, type_names=self.type_names,
                               seed=self.seed + it, log_every=0, progress=self.progress, **self.md_kw)
        md.run(self.equilibration)
        md.store_every = self.sample_every
        md.run(self.md_steps)
        return md.results.positions[:, 0]

    def _simulate(self, it: int):
        pos = self._sample(it)
        pressure = None
        if self.pressure is not None:
            from cgkit.properties.pressure import virial_pressures
            frames = [(p, self.cell) for p in pos[:: max(1, len(pos) // 10)]]
            pressure = float(virial_pressures(self.potential, frames, self.species, self.type_names,
                                              self.kT / KB_EV).mean())
        return pos, pressure

    def _scores(self, dists) -> dict:
        from cgkit.stats import Distribution, js_divergence
        sc = {}
        for key, (x, target) in self.targets.items():
            cur = dists.get(key)
            if cur is None:
                continue
            w = x ** 2 if key[0] == "pair" else np.ones_like(x)
            dx = x[1] - x[0]
            edges = np.append(x - 0.5 * dx, x[-1] + 0.5 * dx)
            sc[type_label(*key)] = {
                "js": js_divergence(Distribution.from_counts(edges, target * w + 1e-300),
                                    Distribution.from_counts(edges, cur[1] * w + 1e-300)),
                "rms": float(np.sqrt(np.mean((target - cur[1]) ** 2)))}
        return sc

    def step(self) -> dict:
        """One IBI iteration: simulate, compare, update; returns the iteration record."""
        it = len(self.history)
        pos, pressure = self._simulate(it)
        dists = self._distributions(pos, self.cell)
        rec = {"iteration": it, "scores": self._scores(dists), "pressure_GPa": pressure}
        for key, (x, target) in self.targets.items():
            if key[0] not in self.kinds or key not in dists:
                continue
            cur = dists[key][1]
            t = self.tables[key]
            U = t(x)[0]
            ok = (cur > _EPS * cur.max()) & (target > _EPS * target.max())
            if ok.sum() < 3:
                warnings.warn(f"IBI iteration {it}: {type_label(*key)} has fewer than 3 bins resolved in both "
                              "the target and the CG run; its table is kept unchanged (sample longer)",
                              stacklevel=2)
                continue
            dU = np.zeros_like(U)
            dU[ok] = self.alpha * self.kT * np.log(cur[ok] / target[ok])
            self._apply_update(key, x, U, dU, ok, pressure)
        self.potential = self._potential()
        self.history.append(rec)
        return rec

    def _apply_update(self, key, x, U, dU, ok, pressure) -> None:
        """Table of ``key`` ← U + dU on the bins ``ok`` (x: bin centres), continued linearly
        elsewhere (the edge rule of the Boltzmann inversion), plus the pressure correction of
        pair tables; shared by IBI and IMC."""
        U_new = np.where(ok, U + dU, np.nan)
        U_new = fill_linear(x, U_new, ok, repulsive_left=key[0] == "pair", label=type_label(*key),
                            confining_slope=confining_slope(key[0], x, self.kT))
        if key[0] == "pair" and self.pressure is not None and pressure is not None:
            dp = pressure - self.pressure
            A = -math.copysign(min(abs(dp) * self.pressure_scale, 0.1 * self.kT), dp)
            U_new = U_new + A * (1 - x / x[-1])
        self.tables[key] = table_from_values(key[0], key[1], x, U_new)

    def run(self, n_iterations: int, callback=None) -> "IterativeBoltzmannInversion":
        """``n_iterations`` steps. With ``progress`` a line "IBI iteration k/N: JS ..." is printed
        (``_method`` names the method of a subclass, e.g. IMC)
        after each (also when not on a terminal); ``callback(record)`` is called after each step
        and stops the run when it returns False."""
        n = int(n_iterations)
        for k in range(n):
            rec = self.step()
            if self.progress:
                print(f"{self._method} iteration {k + 1}/{n}: " + format_scores(rec),
                      file=sys.stderr, flush=True)
            if callback is not None and callback(rec) is False:
                break
        return self

    def summary(self) -> dict:
        from ..jsonutil import jsonable
        return jsonable({"temperature_K": self.temperature, "alpha": self.alpha, "kinds": list(self.kinds),
                         "engine": self.engine,
                         "bins": self.bins, "md_steps": self.md_steps, "equilibration": self.equilibration,
                         "timestep_fs": self.md_kw["timestep"], "friction_per_fs": self.md_kw["friction"],
                         "iterations": self.history,
                         "note": "js: Jensen-Shannon divergence (bits) of r²g(r) / bonded distributions; "
                                 "scores of iteration k are for the potential before its update"})

    _method = "IBI"  # name in plots and progress lines (IMC: "IMC")

    def plot(self, directory) -> list:
        """``ibi_history.png`` (``imc_history.png`` for IMC): JS divergence per interaction and
        iteration."""
        from pathlib import Path
        if not self.history:
            return []
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for lab in self.history[0]["scores"]:
            ax.semilogy([r["iteration"] for r in self.history],
                        [max(r["scores"][lab]["js"], 1e-8) for r in self.history], marker="o", label=lab)
        ax.set_xlabel(f"{self._method} iteration (before its update)")
        ax.set_ylabel("JS divergence (bit)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = d / f"{self._method.lower()}_history.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return [path]


def format_scores(rec: dict) -> str:
    """One-line digest of an iteration record: JS per interaction and pressure."""
    js = ", ".join(f"{k}: {v['js']:.3g}" for k, v in rec["scores"].items())
    p = rec.get("pressure_GPa")
    return f"JS {js}" + (f"; P = {p:.4f} GPa" if p is not None else "")


def check_engine(engine: str, topology: Topology | None = None) -> None:
    """Refuse an unknown engine, ``"lammps"`` without ``lmp`` on PATH, or a topology whose
    exclusions LAMMPS cannot express (before any work)."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, got '{engine}'")
    if engine == "lammps":
        if shutil.which("lmp") is None:
            raise InputError("engine 'lammps' needs the LAMMPS binary `lmp` on PATH (Debian: apt-get install "
                             "lammps); or sample with --engine cgkit")
        if topology is not None:
            from ..export.lammps import lammps_special_bonds
            lammps_special_bonds(topology)  # raises NotSupportedError for inexpressible exclusions


def read_lammpstrj(path, n: int) -> np.ndarray:
    """(n_frames, n, 3) positions (sorted by atom id) of a LAMMPS ``custom`` dump with columns
    ``id x y z``."""
    lines = Path(path).read_text().splitlines()
    frames, k = [], 0
    while k < len(lines):
        if lines[k].startswith("ITEM: ATOMS"):
            rows = np.array([ln.split() for ln in lines[k + 1:k + 1 + n]], dtype=float)
            if len(rows) != n:
                break
            order = np.argsort(rows[:, 0])
            frames.append(rows[order, 1:4])
            k += n + 1
        else:
            k += 1
    return np.array(frames).reshape(-1, n, 3)


def lammps_sample(potential: TabulatedPotential, start, cell, masses, species, *, temperature: float,
                  timestep: float, friction: float, equilibration: int, md_steps: int, sample_every: int,
                  seed: int = 0, lmp: str | None = None) -> np.ndarray:
    """CG MD in LAMMPS with the tables of ``potential`` (exported by
    :func:`cgkit.export.lammps.write_lammps`): ``fix langevin`` (T K, damping 1/``friction`` fs)
    + ``fix nve``, ``timestep`` fs, ``equilibration`` steps, then ``md_steps`` steps with a frame
    every ``sample_every``. start (n, 3) Å, cell (3, 3) Å, masses (n,) amu, species (n,).
    Returns (n_frames, n, 3) Å in cgkit's frame (LAMMPS's rotation of a triclinic cell undone)."""
    from ..export.lammps import write_lammps
    from .boltzmann import ForceMatchError
    lmp = lmp or shutil.which("lmp")
    if lmp is None:
        raise InputError("LAMMPS (`lmp`) is not on PATH")
    n = len(start)
    with tempfile.TemporaryDirectory(prefix="cgkit-lmp-") as d:
        w = write_lammps(potential, d, positions=start, box=cell, masses=masses, species=species,
                         temperature=temperature, timestep_fs=timestep, n_steps=md_steps)
        script = (Path(d) / "in.cg").read_text().splitlines()
        head = script[:next(k for k, ln in enumerate(script) if ln.startswith("velocity"))]
        seed_l = 1 + (int(seed) * 7919) % 900000
        head += [f"velocity all create {temperature} {seed_l} mom yes rot yes dist gaussian",
                 f"timestep {timestep / 1000.0}",
                 f"fix md all langevin {temperature} {temperature} {1.0 / friction / 1000.0} {seed_l + 1}",
                 "fix nve all nve", "thermo 0", f"run {int(equilibration)}",
                 f"dump traj all custom {int(sample_every)} traj.lammpstrj id x y z",
                 "dump_modify traj sort id format float %.10g", "dump_modify traj first no",
                 f"run {int(md_steps)}"]
        (Path(d) / "in.cg").write_text("\n".join(head) + "\n")
        r = subprocess.run([lmp, "-in", "in.cg", "-log", "log.lammps", "-screen", "none"], cwd=d,
                           capture_output=True, text=True)
        log = (Path(d) / "log.lammps").read_text() if (Path(d) / "log.lammps").exists() else ""
        if r.returncode != 0:
            err = [ln for ln in log.splitlines() if "ERROR" in ln] or [r.stderr.strip()[-400:]]
            raise ForceMatchError(f"LAMMPS sampling failed: {err[-1]}")
        pos = read_lammpstrj(Path(d) / "traj.lammpstrj", n)
    if not len(pos):
        raise ForceMatchError("LAMMPS sampling wrote no frames (md_steps < sample_every?)")
    Q = w["rotation"]
    return pos @ Q.T
