"""Iterative Boltzmann inversion (IBI) driven by cgkit CG MD.

Targets are the distributions of the mapped reference trajectory: g(r) per bead-type pair
(non-excluded pairs), bond-length, angle and dihedral distributions per type. The start
potential is the Boltzmann inverse of the targets with their Jacobians removed,

    U₀(r) = -kT ln g(r);  U₀(b) = -kT ln[P(b)/b²];  U₀(θ) = -kT ln[P(θ)/sin θ];  U₀(φ) = -kT ln P(φ),

and each iteration runs CG MD with the current tables and updates

    U_{k+1}(x) = U_k(x) + α kT ln[P_k(x) / P_target(x)]

wherever both distributions are resolved (elsewhere U is continued linearly). Optional
pressure correction (Reith et al.): ΔU(r) = A (1 - r/r_c) with
A = -sign(ΔP) · min(|ΔP| · scale, 0.1 kT) added to every pair potential.

Units: Å, rad inside (deg in summaries), eV, K, fs, pressure GPa.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..topology import Topology
from ..units import EV_PER_A3_TO_GPA, KB_EV
from .geometry import type_key, type_label
from .tabulated import Table, TabulatedPotential
from .validate import bonded_samples, rdf

__all__ = ["IterativeBoltzmannInversion", "boltzmann_table"]

_EPS = 1e-4


def _fill_linear(x, U, valid, repulsive_left: bool, label: str = "a distribution", *,
                 confining_slope: float | None = None):
    """Continue U linearly from the resolved region (valid) to the whole grid.

    ``repulsive_left`` (pairs): at least 1 eV/Å of repulsion below the closest approach.
    ``confining_slope`` (bonds, angles; eV per x unit): U rises outwards on both sides with at
    least this slope, so that an end slope pointing the wrong way (possible after an update)
    cannot let a bond or angle escape into the unsampled region."""
    idx = np.nonzero(valid)[0]
    if len(idx) < 3:
        raise InputError(f"{label}: fewer than 3 resolved histogram bins; sample more frames or use "
                         "fewer bins")
    U = U.copy()
    a, b = idx[0], idx[-1]
    sl = (U[idx[2]] - U[idx[0]]) / (x[idx[2]] - x[idx[0]])
    if repulsive_left:
        sl = min(sl, -1.0)
    sr = (U[idx[-1]] - U[idx[-3]]) / (x[idx[-1]] - x[idx[-3]])
    if confining_slope is not None:
        sl, sr = min(sl, -confining_slope), max(sr, confining_slope)
    U[:a] = U[a] + sl * (x[:a] - x[a])
    U[b + 1:] = U[b] + sr * (x[b + 1:] - x[b])
    inner = np.arange(a, b + 1)
    bad = inner[~valid[inner]]
    if len(bad):
        good = inner[valid[inner]]
        U[bad] = np.interp(x[bad], x[good], U[good])
    return U


def _confining_slope(kind, x, kT):
    """Bonds and angles: U rises by at least kT per histogram bin outside the resolved range
    (eV/Å or eV/rad); None for pairs and dihedrals."""
    if kind not in ("bond", "angle"):
        return None
    return kT / (x[1] - x[0])


def _smooth(U, n=1):
    for _ in range(n):
        U = np.concatenate([[U[0]], (U[:-2] + 2 * U[1:-1] + U[2:]) / 4, [U[-1]]])
    return U


def boltzmann_table(kind, types, x, density, kT, *, r_cut=None) -> Table:
    """Table of -kT ln(density / Jacobian) on the uniform grid x (bin centres; internal units)."""
    if kind == "pair":
        p = density
    elif kind == "bond":
        p = density / np.maximum(x, 1e-6) ** 2
    elif kind == "angle":
        p = density / np.maximum(np.sin(x), 1e-6)
    else:
        p = density
    valid = p > _EPS * p.max()
    U = np.full_like(x, np.nan)
    U[valid] = -kT * np.log(p[valid] / p.max())
    U = _fill_linear(x, U, valid, repulsive_left=kind == "pair", label=type_label(kind, types),
                     confining_slope=_confining_slope(kind, x, kT))
    return _table(kind, types, x, U)


def _table(kind, types, x, U) -> Table:
    U = _smooth(U)
    if kind == "pair":
        U = U - U[-1]
    elif kind != "dihedral":
        U = U - U.min()
    if kind == "dihedral":
        # periodic: x spans [-π, π) bin centres → close the period
        xs = np.append(x, x[0] + 2 * math.pi)
        Us = np.append(U, U[0])
        dU = np.gradient(np.concatenate([[Us[-2]], Us, [Us[1]]]), xs[1] - xs[0])[1:-1]
        return Table(kind, types, xs[0], xs[1] - xs[0], Us, dU)
    dU = np.gradient(U, x[1] - x[0])
    return Table(kind, types, x[0], x[1] - x[0], U, dU)


class IterativeBoltzmannInversion:
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
    friction (1/fs) : the CG MD of each iteration
    pressure : target pressure in GPa (None: no pressure correction); pressure_scale: eV per GPa
    start_tables : tables (list of :class:`Table` or a :class:`TabulatedPotential`) replacing the
        Boltzmann-inverted start of their interaction types, e.g. force-matched pair tables with
        ``kinds=("bond", "angle")``: hybrid FM + IBI, where only the bonded terms are iterated
    """

    def __init__(self, type_names, species, topology: Topology, masses, reference_positions,
                 reference_boxes, start_positions, box, *, temperature: float = 300.0,
                 pair_cutoff: float = 10.0, bins: int = 120, kinds=("pair",), alpha: float = 0.5,
                 md_steps: int = 5000, equilibration: int = 1000, sample_every: int = 50,
                 timestep: float = 5.0, friction: float = 0.01, pressure: float | None = None,
                 pressure_scale: float = 0.01, seed: int = 0, progress: bool = False,
                 start_tables=None):
        if not (0 < alpha <= 1):
            raise InputError("alpha must be in (0, 1]")
        self.type_names = tuple(type_names)
        self.species = np.asarray(species, dtype=np.int64)
        self.names = np.asarray(self.type_names)[self.species]
        self.topology = topology
        self.masses = np.broadcast_to(np.asarray(masses, dtype=float), (topology.n_particles,))
        self.kT = KB_EV * temperature
        self.temperature = temperature
        self.pair_cutoff = pair_cutoff
        self.bins = bins
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
        self.targets = self._distributions(reference_positions, reference_boxes)
        if isinstance(start_tables, TabulatedPotential):
            start_tables = start_tables.tables
        given = {}
        for t in start_tables or []:
            t = t if isinstance(t, Table) else Table.from_dict(t)
            given[(t.kind, t.types)] = t
        # Boltzmann-inverted start only where no table is given (a sparse target that is not
        # inverted cannot fail here)
        self.tables = dict(given)
        for k, (x, dens) in self.targets.items():
            if k in given:
                continue
            try:
                self.tables[k] = boltzmann_table(k[0], k[1], x, dens, self.kT)
            except InputError:
                if k[0] in self.kinds:
                    raise
                warnings.warn(f"{type_label(*k)}: too few samples to Boltzmann-invert and not iterated "
                              "(not in kinds): the CG model has no such interaction", stacklevel=2)
        self.history: list[dict] = []
        self.potential = self._potential()

    # ------------------------------------------------------------------ distributions
    def _distributions(self, positions, boxes) -> dict:
        """{(kind, types): (x grid (internal units), density)} on fixed grids."""
        out = {}
        g, edges, _ = rdf(positions, boxes, self.names, self.topology, self.pair_cutoff, self.bins)
        x = 0.5 * (edges[1:] + edges[:-1])
        for key, val in g.items():
            out[("pair", type_key("pair", key))] = (x, val)
        for kind in ("bond", "angle", "dihedral"):
            for key, s in bonded_samples(kind, positions, boxes, self.names, self.topology).items():
                if kind == "bond":
                    lo, hi = self._ranges.get((kind, key)) if hasattr(self, "_ranges") and (kind, key) in self._ranges \
                        else (max(0.0, s.min() - 0.5 * np.ptp(s)), s.max() + 0.5 * np.ptp(s))
                    edges = np.linspace(lo, hi, self.bins + 1)
                    h, _ = np.histogram(s, bins=edges, density=True)
                elif kind == "angle":
                    edges = np.linspace(0.0, math.pi, self.bins + 1)
                    h, _ = np.histogram(np.radians(s), bins=edges, density=True)
                else:
                    edges = np.linspace(-math.pi, math.pi, self.bins + 1)
                    h, _ = np.histogram(np.radians(s), bins=edges, density=True)
                out[(kind, key)] = (0.5 * (edges[1:] + edges[:-1]), h)
        if not hasattr(self, "_ranges"):
            self._ranges = {k: (v[0][0] - 0.5 * (v[0][1] - v[0][0]), v[0][-1] + 0.5 * (v[0][1] - v[0][0]))
                            for k, v in out.items() if k[0] == "bond"}
        return out

    def _potential(self) -> TabulatedPotential:
        return TabulatedPotential(self.type_names, self.topology, list(self.tables.values()))

    # ------------------------------------------------------------------ iterations
    def _simulate(self, it: int):
        from ..md import MolecularDynamics
        md = MolecularDynamics(self.potential, positions=self.start, cell=self.cell, pbc=True,
                               masses=self.masses, species=self.species, type_names=self.type_names,
                               seed=self.seed + it, log_every=0, progress=self.progress, **self.md_kw)
        md.run(self.equilibration)
        md.store_every = self.sample_every
        md.run(self.md_steps)
        pos = md.results.positions[:, 0]
        pressure = None
        if self.pressure is not None:
            from ..data import AtomicGraph
            ps = []
            V = abs(np.linalg.det(self.cell))
            for p in pos[:: max(1, len(pos) // 10)]:
                g = AtomicGraph.from_arrays(p, self.cell, True, self.potential.cutoff,
                                            species=self.species, type_names=self.type_names)
                st = self.potential.compute(g, stress=True)["stress"][0].numpy()
                ps.append(-np.trace(st) / 3 + len(p) * self.kT / V)
            pressure = float(np.mean(ps)) * EV_PER_A3_TO_GPA
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
            U_new = np.where(ok, U + dU, np.nan)
            U_new = _fill_linear(x, U_new, ok, repulsive_left=key[0] == "pair", label=type_label(*key),
                                 confining_slope=_confining_slope(key[0], x, self.kT))
            if key[0] == "pair" and self.pressure is not None and pressure is not None:
                dp = pressure - self.pressure
                A = -math.copysign(min(abs(dp) * self.pressure_scale, 0.1 * self.kT), dp)
                U_new = U_new + A * (1 - x / x[-1])
            self.tables[key] = _table(key[0], key[1], x, U_new)
        self.potential = self._potential()
        self.history.append(rec)
        return rec

    def run(self, n_iterations: int) -> "IterativeBoltzmannInversion":
        for _ in range(int(n_iterations)):
            self.step()
        return self

    def summary(self) -> dict:
        return {"temperature_K": self.temperature, "alpha": self.alpha, "kinds": list(self.kinds),
                "iterations": self.history,
                "note": "js: Jensen-Shannon divergence (bits) of r²g(r) / bonded distributions; "
                        "scores of iteration k are for the potential before its update"}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.summary(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text
