"""Linear multiscale coarse-graining (MS-CG) force matching with cubic B-spline tables.

Model: the CG force on bead I is a sum over interaction instances (non-bonded pairs per type
pair, bonds, angles, proper dihedrals per type), each exerting ``f_t(x) ∂x/∂r_I`` where x is
the instance's internal coordinate and ``f_t = -dU_t/dx`` its generalised force, expanded in
cubic B-splines ``f_t(x) = Σ_k c_tk B_k(x)``. The forces are linear in the coefficients c,
``F_model = G(R) c``; minimising Σ_frames |F_mapped - G c|² leads to the normal equations
``(Σ GᵀG) c = Σ GᵀF``, accumulated frame by frame (memory independent of the number of frames;
accumulators from separate runs add, see :class:`NormalEquations`).

Solving: ``(A + λ_r s I + λ_s s DᵀD) c = b`` with a tiny ridge (λ_r) and a second-difference
smoothness penalty (λ_s) per interaction, both relative to the interaction's mean diagonal s.
The smoothness term fixes coefficients of poorly sampled grid regions by linear extrapolation
from the sampled ones instead of leaving a singular matrix; such regions are reported by a
warning that names the interaction and the range, and the output tables are trimmed to the
sampled range (the potential continues linearly outside). ``method="lstsq"`` solves without
any regularisation and raises :class:`ForceMatchError` naming the undetermined interactions
if the normal matrix is singular.

Hybrid force matching (``fixed=``): interactions given as fixed tables — typically bonds and
angles from Boltzmann inversion, :func:`boltzmann_bonded_tables` — are not fitted; their forces
are subtracted from the mapped forces frame by frame and only the remaining interactions are
force-matched (VOTCA's "hybrid" scheme, Rühle & Junghans, Macromol. Theory Simul. 20, 472
(2011)). Use it when the bonded coordinates are coupled through hidden atomistic degrees of
freedom (hexane: the C-C-C-C torsions set both the A-B bond and the A-B-A angle): a separable
bonded basis then cannot represent the many-body mean force, and its least-squares projection
need not reproduce the bonded distributions, whereas the Boltzmann inverse of each marginal does
for an isolated molecule whose only intramolecular terms are these (1-2/1-3 pairs excluded).

Error bars: jackknife over blocks of consecutive frames (``block_size``); each block is left
out in turn and the spread of the refitted forces gives the standard error.

Units: positions Å, forces eV/Å, energies eV; angles and dihedrals in degrees at the user
interface (grids, tables written to disk) and radians inside.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CgkitError, InputError
from ..neighbors import neighbor_list
from ..threads import torch_threads
from ..topology import Topology
from .geometry import ARITY, as_cell, instance_gradients, type_key, type_label
from .spline import BSplineBasis
from .tabulated import Table, TabulatedPotential, write_table_files

__all__ = ["ForceMatchError", "SparseSamplingWarning", "Interaction", "NormalEquations",
           "SplineForceMatching", "ForceMatchResult", "suggest_grids", "boltzmann_bonded_tables"]

ANGULAR = ("angle", "dihedral")


class ForceMatchError(CgkitError):
    """Force matching cannot give a meaningful answer (no samples, singular system, ...)."""


class SparseSamplingWarning(UserWarning):
    """Part of an interaction's grid has too few samples to determine the force there."""


def _to_internal(kind: str, v: float) -> float:
    return math.radians(v) if kind in ANGULAR else float(v)


def _to_user(kind: str, v):
    return np.degrees(v) if kind in ANGULAR else v


def _unit(kind: str) -> str:
    return "deg" if kind in ANGULAR else "Å"


@dataclass
class Interaction:
    """One interaction type with its spline basis; ``offset``: first column in the design matrix."""
    kind: str
    types: tuple
    basis: BSplineBasis
    offset: int = 0

    @property
    def label(self) -> str:
        return type_label(self.kind, self.types)

    @property
    def size(self) -> int:
        return self.basis.size

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    def range_str(self, lo: float, hi: float) -> str:
        u = _unit(self.kind)
        return f"[{float(_to_user(self.kind, lo)):.3g}, {float(_to_user(self.kind, hi)):.3g}] {u}"

    def signature(self) -> list:
        b = self.basis
        return [self.kind, list(self.types), b.x_min, b.x_max, b.n_intervals, b.periodic]


def suggest_grids(type_names, species, topology: Topology, positions, boxes=None, *,
                  pair_cutoff: float = 10.0, margin: float = 0.5) -> dict:
    """Grid ranges (user units: Å, deg) per interaction from a sample of frames.

    Pairs: [closest approach observed - 0.3 Å (rounded down to 0.1 Å), ``pair_cutoff``]; bonds:
    observed range widened by ``margin`` of its width; angles: observed range widened and
    clipped to [0, 180] deg; dihedrals: [-180, 180] deg. Returns {label: (min, max)}.
    """
    fm = SplineForceMatching(type_names, species, topology, pair=(0.0, pair_cutoff, 0.5),
                             bond=(0.01, 50.0, 1.0), angle=(0.0, 180.0, 10.0), dihedral=30.0,
                             on_empty="drop", check=False)
    lo = {it.label: np.inf for it in fm.interactions}
    hi = {it.label: -np.inf for it in fm.interactions}
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, fm.n_beads, 3)
    bx = _boxes(boxes, len(pos))
    for f in range(len(pos)):
        for inter, x in fm._frame_samples(pos[f], bx[f]):
            if len(x):
                lo[inter.label] = min(lo[inter.label], float(x.min()))
                hi[inter.label] = max(hi[inter.label], float(x.max()))
    out = {}
    for it in fm.interactions:
        a, b = lo[it.label], hi[it.label]
        if not np.isfinite(a):
            continue
        if it.kind == "pair":
            out[it.label] = (max(0.0, math.floor(10 * (a - 0.3)) / 10.0), pair_cutoff)
        elif it.kind == "dihedral":
            out[it.label] = (-180.0, 180.0)
        else:
            a, b = _to_user(it.kind, a), _to_user(it.kind, b)
            w = max(b - a, 1e-3)
            a, b = a - margin * w, b + margin * w
            if it.kind == "angle":
                a, b = max(a, 0.0), min(b, 180.0)
            else:
                a = max(a, 0.0)
            out[it.label] = (float(a), float(b))
    return out




def _boxes(boxes, n_frames):
    if boxes is None:
        return [None] * n_frames
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1 or (b.ndim == 2 and b.shape == (3, 3)):
        return [b] * n_frames
    if len(b) != n_frames:
        raise InputError(f"got {len(b)} boxes for {n_frames} frames; give one box per frame or one for all")
    return list(b)


class NormalEquations:
    """Accumulated MS-CG normal equations, additive over frames, chunks and runs.

    Per bead type t: ``A[t] = Σ G_tᵀG_t`` (n_coef, n_coef), ``b[t] = Σ G_tᵀF_t``,
    ``ff[t] = Σ |F_t|²`` (eV²/Å²), ``n_rows[t]`` force components; per block of frames
    ``A_blocks``/``b_blocks`` for jackknife error bars; per interaction ``counts`` of samples in
    every grid interval and ``outside`` (below, above) the grid.
    """

    def __init__(self, signature: list, n_types: int, n_coef: int, interval_sizes: list[int]):
        self.signature = signature
        self.A = np.zeros((n_types, n_coef, n_coef))
        self.b = np.zeros((n_types, n_coef))
        self.ff = np.zeros(n_types)
        self.n_rows = np.zeros(n_types, dtype=np.int64)
        self.n_frames = 0
        self.A_blocks: list[np.ndarray] = []
        self.b_blocks: list[np.ndarray] = []
        self.block_frames: list[int] = []
        self.counts = [np.zeros(n, dtype=np.int64) for n in interval_sizes]
        self.outside = np.zeros((len(interval_sizes), 2), dtype=np.int64)

    def __add__(self, other: "NormalEquations") -> "NormalEquations":
        if json.dumps(self.signature) != json.dumps(other.signature):
            raise InputError("cannot add normal equations built with different interactions or grids")
        out = NormalEquations(self.signature, self.A.shape[0], self.A.shape[1], [len(c) for c in self.counts])
        out.A, out.b, out.ff = self.A + other.A, self.b + other.b, self.ff + other.ff
        out.n_rows = self.n_rows + other.n_rows
        out.n_frames = self.n_frames + other.n_frames
        out.A_blocks = self.A_blocks + other.A_blocks
        out.b_blocks = self.b_blocks + other.b_blocks
        out.block_frames = self.block_frames + other.block_frames
        out.counts = [a + b for a, b in zip(self.counts, other.counts)]
        out.outside = self.outside + other.outside
        return out

    def save(self, path) -> None:
        """Write to a ``.npz`` file (combine runs with :meth:`load` and ``+``)."""
        np.savez_compressed(path, signature=json.dumps(self.signature), A=self.A, b=self.b, ff=self.ff,
                            n_rows=self.n_rows, n_frames=self.n_frames,
                            A_blocks=np.array(self.A_blocks).reshape(-1, *self.A.shape[1:]),
                            b_blocks=np.array(self.b_blocks).reshape(-1, self.A.shape[1]),
                            block_frames=np.array(self.block_frames, dtype=np.int64),
                            counts=np.concatenate(self.counts), count_sizes=[len(c) for c in self.counts],
                            outside=self.outside)

    @classmethod
    def load(cls, path) -> "NormalEquations":
        try:
            d = np.load(path, allow_pickle=False)
            sizes = d["count_sizes"].tolist()
            ne = cls(json.loads(str(d["signature"])), d["A"].shape[0], d["A"].shape[1], sizes)
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"'{path}' is not a cgkit normal-equations file: {exc}") from exc
        ne.A, ne.b, ne.ff, ne.n_rows = d["A"], d["b"], d["ff"], d["n_rows"]
        ne.n_frames = int(d["n_frames"])
        ne.A_blocks, ne.b_blocks = list(d["A_blocks"]), list(d["b_blocks"])
        ne.block_frames = d["block_frames"].tolist()
        ne.counts = np.split(d["counts"], np.cumsum(sizes)[:-1])
        ne.outside = d["outside"]
        return ne


class SplineForceMatching:
    """Spline MS-CG force matching of one CG system.

    Parameters
    ----------
    type_names : bead type names
    species : (n_beads,) bead types, as indices into ``type_names`` or as names
    topology : :class:`Topology` of the CG system (bonds, angles, dihedrals, exclusions)
    pair : (r_min, r_cut, spacing) Å for every non-bonded type pair, or None for no pairs
    bond : (min, max, spacing) Å, or None
    angle : (min, max, spacing) deg, or None
    dihedral : spacing in deg (the periodic grid always spans [-180, 180)), or None
    grids : per-interaction overrides {"pair A-B": (min, max[, spacing]), "angle A-B-A": ...,
        "dihedral A-B-B-A": spacing} (user units); a value of None drops that interaction
    block_size : frames per block for the jackknife error bars
    on_empty : "error" (default) or "drop" — what to do with an interaction that has no
        samples within its grid
    fixed : tables (:class:`Table` list or a :class:`TabulatedPotential`) kept as they are:
        their forces are subtracted from the mapped forces before fitting, their interaction
        types are not fitted, and they are part of the resulting potential (hybrid scheme).
        The reported residual is that of the whole model (fixed + fitted) against the mapped
        forces; its ``rms_force_eV_per_A`` is then the RMS of the forces the fixed tables leave.
    """

    def __init__(self, type_names, species, topology: Topology, *, pair=(0.0, 10.0, 0.1),
                 bond=(0.5, 5.0, 0.05), angle=(0.0, 180.0, 5.0), dihedral=20.0,
                 grids: dict | None = None, block_size: int = 10, on_empty: str = "error",
                 check: bool = True, fixed=None):
        self.type_names = tuple(str(t) for t in type_names)
        lookup = {t: k for k, t in enumerate(self.type_names)}
        sp = np.asarray(species)
        if sp.dtype.kind in "US" or sp.dtype == object:
            unknown = sorted(set(map(str, sp)) - set(lookup))
            if unknown:
                raise InputError(f"bead types {unknown} are not in type_names {list(self.type_names)}")
            sp = np.array([lookup[str(s)] for s in sp], dtype=np.int64)
        self.species = sp.astype(np.int64)
        self.topology = topology
        self.n_beads = len(self.species)
        if topology.n_particles != self.n_beads:
            raise InputError(f"the topology describes {topology.n_particles} beads but the bead types "
                             f"list {self.n_beads}; the mapping and the CG topology do not match")
        if on_empty not in ("error", "drop"):
            raise InputError("on_empty must be 'error' or 'drop'")
        self.on_empty = on_empty
        self.block_size = max(int(block_size), 1)
        if isinstance(fixed, TabulatedPotential):
            fixed = fixed.tables
        fixed = [t if isinstance(t, Table) else Table.from_dict(t) for t in (fixed or [])]
        self.fixed_tables = fixed
        fixed_keys = {(t.kind, t.types) for t in fixed}
        self._fixed_potential = TabulatedPotential(self.type_names, topology, fixed) if fixed else None
        grids = {str(k): v for k, v in (grids or {}).items()}
        names = np.asarray(self.type_names)[self.species]
        present = sorted(set(names.tolist()))
        inter: list[Interaction] = []

        def add(kind, types, default):
            label = type_label(kind, types)
            spec = grids.pop(label, default) if label in grids else default
            if spec is None or (kind, type_key(kind, types)) in fixed_keys:
                return
            if kind == "dihedral":
                spacing = spec if np.isscalar(spec) else spec[-1]
                basis = BSplineBasis(-math.pi, math.pi, math.radians(float(spacing)), periodic=True)
            else:
                lo, hi = float(spec[0]), float(spec[1])
                spacing = float(spec[2]) if len(spec) > 2 else float(default[2] if default else (hi - lo) / 50)
                if kind == "angle" and not (0.0 <= lo < hi <= 180.0):
                    raise InputError(f"{label}: the angle grid must lie within [0, 180] deg, got [{lo}, {hi}]")
                if kind in ("pair", "bond") and not (0.0 <= lo < hi):
                    raise InputError(f"{label}: need 0 ≤ min < max Å, got [{lo}, {hi}]")
                basis = BSplineBasis(_to_internal(kind, lo), _to_internal(kind, hi),
                                     _to_internal(kind, spacing))
            inter.append(Interaction(kind, types, basis))

        for a in range(len(present)):
            for b in range(a, len(present)):
                add("pair", (present[a], present[b]), pair)
        self._bonded = {}
        for kind, default in (("bond", bond), ("angle", angle), ("dihedral", dihedral)):
            idx = getattr(topology, kind + "s")
            keys = [type_key(kind, tuple(names[r])) for r in idx]
            for key in sorted(set(keys)):
                add(kind, key, default)
            self._bonded[kind] = (idx, keys)
        if grids and check:
            raise InputError(f"grids given for interactions not in the system: {sorted(grids)}; "
                             f"the system has {[i.label for i in inter]}")
        off = 0
        for it in inter:
            it.offset = off
            off += it.size
        if not inter:
            raise InputError("no interactions to fit: give pair/bond/angle/dihedral grids "
                             "(every interaction is fixed or has no grid)")
        self.interactions = inter
        self.n_coef = off
        self._by_key = {(it.kind, it.types): k for k, it in enumerate(inter)}
        nt = len(self.type_names)
        self._pair_id = -np.ones((nt, nt), dtype=np.int64)
        for k, it in enumerate(inter):
            if it.kind == "pair":
                a, b = lookup[it.types[0]], lookup[it.types[1]]
                self._pair_id[a, b] = self._pair_id[b, a] = k
        self.pair_cutoff = max([it.basis.x_max for it in inter if it.kind == "pair"], default=0.0)
        # bonded instances grouped by interaction
        self._bonded_groups = {}
        for kind in ("bond", "angle", "dihedral"):
            idx, keys = self._bonded[kind]
            groups = []
            for k, it in enumerate(inter):
                if it.kind != kind:
                    continue
                rows = [r for r, key in enumerate(keys) if key == it.types]
                groups.append((k, torch.as_tensor(idx[rows].reshape(-1, ARITY[kind]))))
            self._bonded_groups[kind] = groups
        self.normal_equations = self._empty()
        self._block_A = None
        self._block_b = None
        self._block_n = 0
        self.results: ForceMatchResult | None = None

    # ------------------------------------------------------------------ accumulation
    def _empty(self) -> NormalEquations:
        return NormalEquations([it.signature() for it in self.interactions], len(self.type_names),
                               self.n_coef, [it.basis.n_intervals for it in self.interactions])

    def _pairs(self, pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray):
        """Half list of non-excluded pairs within the pair cutoff: i, j, shifts."""
        if self.pair_cutoff <= 0:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros((0, 3), dtype=np.int64)
        ei, S = neighbor_list(pos, cell, pbc, self.pair_cutoff)
        i, j = ei
        keep = i < j
        i, j, S = i[keep], j[keep], S[keep]
        if len(self.topology.exclusions):
            ex = self.topology.exclusion_mask(torch.as_tensor(i), torch.as_tensor(j)).numpy()
            i, j, S = i[~ex], j[~ex], S[~ex]
        return i, j, S

    def _instances(self, pos_np: np.ndarray, box):
        """Yield (interaction index, bead indices (m, k), x (m,), grad (m, k, 3)) of a frame."""
        cell_np, pbc_np = as_cell(box)
        pos = torch.as_tensor(pos_np, dtype=torch.float64)
        cell = torch.as_tensor(cell_np, dtype=torch.float64)
        pbc = torch.as_tensor(pbc_np)
        if any(it.kind == "pair" for it in self.interactions):
            i, j, S = self._pairs(pos_np, cell_np, pbc_np)
            pid = self._pair_id[self.species[i], self.species[j]]
            d = pos[j] - pos[i] + torch.as_tensor(S, dtype=torch.float64) @ cell
            r = torch.linalg.norm(d, dim=1)
            u = d / r[:, None]
            ij = np.stack([i, j], 1)
            for k in np.unique(pid[pid >= 0]):
                m = torch.as_tensor(pid == k)
                grad = torch.stack([-u[m], u[m]], dim=1)
                yield int(k), torch.as_tensor(ij[m.numpy()]), r[m], grad
        for kind in ("bond", "angle", "dihedral"):
            for k, idx in self._bonded_groups[kind]:
                if len(idx) == 0:
                    continue
                x, grad = instance_gradients(kind, pos, idx, cell, pbc)
                yield k, idx, x, grad

    def _frame_samples(self, pos_np, box):
        for k, _, x, _ in self._instances(pos_np, box):
            yield self.interactions[k], x.numpy()

    def _design(self, pos_np: np.ndarray, box, counts, outside) -> torch.Tensor:
        """The (3n, n_coef) design matrix G of one frame: F_model = G c."""
        n = self.n_beads
        G = torch.zeros(3 * n * self.n_coef, dtype=torch.float64)
        for k, beads, x, grad in self._instances(pos_np, box):
            it = self.interactions[k]
            b = it.basis
            if not b.periodic:
                below = x < b.x_min
                above = x >= b.x_max
                outside[k, 0] += int(below.sum())
                outside[k, 1] += int(above.sum())
                inside = ~(below | above)
                x, beads, grad = x[inside], beads[inside], grad[inside]
            if len(x) == 0:
                continue
            idx, vals = b.evaluate(x)
            iv = torch.clamp(((x - b.x_min) / b.h).floor().long(), 0, b.n_intervals - 1) if not b.periodic \
                else idx[:, 0]
            counts[k] += np.bincount(iv.numpy(), minlength=b.n_intervals)
            # rows: 3*bead + α → (m, ar, 3); columns: offset + idx → (m, 4)
            rows = (3 * beads[:, :, None] + torch.arange(3)[None, None, :])  # (m, ar, 3)
            cols = it.offset + idx  # (m, 4)
            flat = rows[:, :, :, None] * self.n_coef + cols[:, None, None, :]
            val = grad[:, :, :, None] * vals[:, None, None, :]
            G.index_add_(0, flat.reshape(-1), val.reshape(-1))
        return G.reshape(3 * n, self.n_coef)

    def accumulate(self, positions, forces, boxes=None, *, progress: bool = True) -> "SplineForceMatching":
        """Add frames to the normal equations.

        positions : (n_frames, n_beads, 3) or (n_beads, 3) Å
        forces : same shape, eV/Å (mapped atomistic forces)
        boxes : None (no periodicity), one box for all frames or one per frame — (3,) lengths,
            (6,) [a, b, c, α, β, γ] or (3, 3) lattice vectors (Å, deg)
        """
        if forces is None:
            raise InputError("the trajectory has no forces; force matching needs the mapped "
                             "atomistic forces of every frame (write forces in the MD run, e.g. "
                             "GROMACS nstfout / LAMMPS dump fx fy fz)")
        pos = np.asarray(positions, dtype=np.float64)
        frc = np.asarray(forces, dtype=np.float64)
        if pos.ndim == 2:
            pos, frc = pos[None], frc.reshape((1,) + frc.shape)
        if pos.ndim != 3 or pos.shape[1:] != (self.n_beads, 3):
            raise InputError(f"positions must be (n_frames, {self.n_beads}, 3) for this CG system, "
                             f"got {pos.shape}; the trajectory does not match the CG topology/mapping")
        if frc.shape != pos.shape:
            raise InputError(f"forces {frc.shape} do not match positions {pos.shape}")
        if not np.all(np.isfinite(frc)):
            raise InputError("the forces contain NaN/inf (frames without forces?); force matching "
                             "needs finite mapped forces in every frame")
        if not np.any(frc):
            raise InputError("all forces are zero: the trajectory holds no forces (write forces "
                             "in the atomistic MD run)")
        with torch_threads(1):
            return self._accumulate(pos, frc, _boxes(boxes, len(pos)), progress)

    def _accumulate(self, pos, frc, bx, progress):
        ne = self.normal_equations
        types = [np.repeat(self.species == t, 3) for t in range(len(self.type_names))]
        from ..progress import progress_bar
        frames = progress_bar(range(len(pos)), desc="force matching", unit="frame",
                              disable=None if progress else True)
        for f in frames:
            G = self._design(pos[f], bx[f], ne.counts, ne.outside).numpy()
            F = frc[f].reshape(-1)
            if self._fixed_potential is not None:
                F = F - self.fixed_forces(pos[f], bx[f]).reshape(-1)
            if self._block_A is None:
                self._block_A = np.zeros((self.n_coef, self.n_coef))
                self._block_b = np.zeros(self.n_coef)
            for t, rows in enumerate(types):
                if not rows.any():
                    continue
                Gt, Ft = G[rows], F[rows]
                At = Gt.T @ Gt
                bt = Gt.T @ Ft
                ne.A[t] += At
                ne.b[t] += bt
                ne.ff[t] += float(Ft @ Ft)
                ne.n_rows[t] += len(Ft)
                self._block_A += At
                self._block_b += bt
            ne.n_frames += 1
            self._block_n += 1
            if self._block_n >= self.block_size:
                self._close_block()
        return self

    def fixed_forces(self, positions, box=None) -> np.ndarray:
        """Forces (n_beads, 3) eV/Å of the fixed tables on one frame (zeros without any)."""
        pos = np.asarray(positions, dtype=np.float64)
        if self._fixed_potential is None:
            return np.zeros_like(pos)
        from ..data import AtomicGraph
        cell, pbc = as_cell(box)
        pot = self._fixed_potential
        g = AtomicGraph.from_arrays(pos, cell, pbc, max(pot.cutoff, 1e-3), species=self.species,
                                    type_names=self.type_names)
        return pot.compute(g)["forces"].detach().numpy()

    def _close_block(self) -> None:
        if self._block_n:
            ne = self.normal_equations
            ne.A_blocks.append(self._block_A)
            ne.b_blocks.append(self._block_b)
            ne.block_frames.append(self._block_n)
        self._block_A, self._block_b, self._block_n = None, None, 0

    def add(self, other: NormalEquations) -> "SplineForceMatching":
        """Add normal equations accumulated elsewhere (another chunk, process or machine)."""
        self._close_block()
        self.normal_equations = self.normal_equations + other
        return self

    # ------------------------------------------------------------------ solving
    def _sampled_ranges(self, min_samples: int):
        """Per interaction: (lo, hi) of the well-sampled range and the sparse ranges."""
        out = []
        for it, c in zip(self.interactions, self.normal_equations.counts):
            good = np.nonzero(c >= min_samples)[0]
            b = it.basis
            if len(good) == 0:
                out.append((None, None, []))
                continue
            lo, hi = b.x_min + good[0] * b.h, b.x_min + (good[-1] + 1) * b.h
            sparse = []
            bad = c < min_samples
            k = 0
            while k < len(c):
                if bad[k]:
                    s = k
                    while k < len(c) and bad[k]:
                        k += 1
                    sparse.append((b.x_min + s * b.h, b.x_min + k * b.h, int(c[s:k].sum())))
                else:
                    k += 1
            out.append((lo, hi, sparse))
        return out

    def _regulariser(self, A: np.ndarray, ridge: float, smooth: float) -> np.ndarray:
        R = np.zeros_like(A)
        for it in self.interactions:
            cols = it.columns
            d = np.diag(A)[cols]
            s = float(d[d > 0].mean()) if np.any(d > 0) else 1.0
            D = it.basis.second_difference()
            R[cols, cols] += ridge * s * np.eye(it.size) + smooth * s * (D.T @ D)
        return R

    def _check_singular(self, A: np.ndarray) -> None:
        d = np.diag(A)
        zero = d <= 1e-14 * max(d.max(), 1e-300)
        if zero.any():
            parts = []
            for it in self.interactions:
                z = np.nonzero(zero[it.columns])[0]
                if len(z):
                    lo = it.basis.support(int(z[0]))[0]
                    hi = it.basis.support(int(z[-1]))[1]
                    parts.append(f"{it.label} for x in {it.range_str(lo, hi)}")
            raise ForceMatchError("singular normal matrix: no samples determine " + "; ".join(parts)
                                  + ". Use the regularised solver (method='ridge'), shrink those "
                                  "grids to the sampled range, or add frames")
        sc = 1.0 / np.sqrt(d)
        w, V = np.linalg.eigh(A * sc[:, None] * sc[None, :])
        if w[0] < 1e-13 * w[-1]:
            v = np.abs(V[:, 0])
            share = {it.label: float((v[it.columns] ** 2).sum()) for it in self.interactions}
            worst = sorted(share, key=share.get, reverse=True)[:3]
            raise ForceMatchError(
                f"singular normal matrix (condition number {w[-1] / max(w[0], 1e-300):.2g}): the data "
                f"cannot separate the forces of {worst} (e.g. two interactions always acting "
                "together); regularise (method='ridge'), merge those interaction types or add frames")

    def _solve_system(self, A, b, ridge, smooth, method):
        if method == "lstsq":
            self._check_singular(A)
            return np.linalg.solve(A, b)
        M = A + self._regulariser(A, ridge, smooth)
        try:
            c = np.linalg.solve(M, b)
        except np.linalg.LinAlgError as exc:
            self._check_singular(M)
            raise ForceMatchError(f"the regularised normal matrix is singular ({exc}); "
                                  "increase ridge/smooth") from exc
        if not np.all(np.isfinite(c)):
            raise ForceMatchError("the solution contains NaN/inf; increase the regularisation "
                                  "(ridge/smooth) or check the input forces")
        return c

    def solve(self, *, method: str = "ridge", ridge: float = 1e-12, smooth: float = 1e-8,
              min_samples: int = 10, trim: bool = True, table_points: int = 20) -> "ForceMatchResult":
        """Solve the normal equations; returns (and stores in ``.results``) a ForceMatchResult.

        method : "ridge" (regularised, default) or "lstsq" (no regularisation; raises
            ForceMatchError naming the interactions the data cannot determine)
        ridge, smooth : relative weights of the ridge and second-difference penalties
        min_samples : grid intervals with fewer samples are "sparse" (warned, trimmed)
        trim : restrict the output tables to the well-sampled range
        table_points : table points per spline interval
        """
        if method not in ("ridge", "lstsq"):
            raise InputError("method must be 'ridge' or 'lstsq'")
        self._close_block()
        ne = self.normal_equations
        if ne.n_frames == 0:
            raise ForceMatchError("no frames accumulated; call accumulate() with CG positions and forces")
        ranges = self._sampled_ranges(min_samples)
        keep = []
        for it, (lo, hi, sparse), cnt in zip(self.interactions, ranges, ne.counts):
            if lo is None and cnt.sum() == 0:
                msg = (f"{it.label}: no samples in its grid range "
                       f"{it.range_str(it.basis.x_min, it.basis.x_max)}")
                if self.on_empty == "error":
                    raise ForceMatchError(msg + "; widen the grid, add frames, or drop the interaction "
                                          "(on_empty='drop' / --drop-empty)")
                warnings.warn(msg + "; the interaction is dropped", SparseSamplingWarning, stacklevel=2)
                continue
            keep.append(it)
        A_all = ne.A.sum(0)
        b_all = ne.b.sum(0)
        cols = np.concatenate([np.arange(it.offset, it.offset + it.size) for it in keep])
        sub = np.ix_(cols, cols)
        # solve on the kept columns; dropped interactions have c = 0
        saved = self.interactions
        remap = []
        off = 0
        for it in keep:
            remap.append(Interaction(it.kind, it.types, it.basis, off))
            off += it.size
        self.interactions = remap
        try:
            t0 = time.perf_counter()
            c = self._solve_system(A_all[sub], b_all[cols], ridge, smooth, method)
            solve_s = time.perf_counter() - t0
            jk = []
            nb = len(ne.A_blocks)
            if nb >= 2:
                for k in range(nb):
                    Ak = A_all - ne.A_blocks[k]
                    bk = b_all - ne.b_blocks[k]
                    try:
                        jk.append(self._solve_system(Ak[sub], bk[cols], ridge, smooth,
                                                     "ridge" if method == "ridge" else "lstsq"))
                    except ForceMatchError:
                        pass
        finally:
            self.interactions = saved
        # residuals per bead type
        full_c = np.zeros(self.n_coef)
        full_c[cols] = c
        residual = {}
        for t, name in enumerate(self.type_names):
            if ne.n_rows[t] == 0:
                continue
            r2 = ne.ff[t] - 2 * full_c @ ne.b[t] + full_c @ ne.A[t] @ full_c
            residual[name] = {"rms_residual_eV_per_A": float(math.sqrt(max(r2, 0.0) / ne.n_rows[t])),
                              "rms_force_eV_per_A": float(math.sqrt(ne.ff[t] / ne.n_rows[t])),
                              "n_force_components": int(ne.n_rows[t])}
        tables, info = [], []
        for it_new, it in zip(remap, keep):
            k = self.interactions.index(it)
            lo, hi, sparse = ranges[k]
            cnt = ne.counts[k]
            coef = c[it_new.columns]
            jk_coef = np.array([cj[it_new.columns] for cj in jk]) if jk else None
            b = it.basis
            sparse_report = sparse
            if lo is None:  # samples exist but all intervals are below min_samples
                lo, hi = b.x_min, b.x_max
            if sparse_report and not b.periodic:
                rng = "; ".join(f"{it.range_str(a, z)} ({n} samples)" for a, z, n in sparse_report)
                warnings.warn(f"{it.label}: fewer than {min_samples} samples per interval for x in {rng}; "
                              "the force there is set by the smoothness regulariser (linear "
                              "extrapolation)" + (f"; the table keeps the fit on {it.range_str(lo, hi)} and continues "
                                                  "with confining quadratic walls" if trim else ""),
                              SparseSamplingWarning, stacklevel=2)
            elif sparse_report:
                rng = "; ".join(f"{it.range_str(a, z)} ({n} samples)" for a, z, n in sparse_report)
                warnings.warn(f"{it.label}: fewer than {min_samples} samples per interval for x in {rng}; "
                              "the force there is set by the smoothness regulariser",
                              SparseSamplingWarning, stacklevel=2)
            if ne.outside[k].any():
                warnings.warn(f"{it.label}: {int(ne.outside[k, 0])} samples below and "
                              f"{int(ne.outside[k, 1])} above the grid "
                              f"{it.range_str(b.x_min, b.x_max)} were left out of the fit; widen the grid",
                              SparseSamplingWarning, stacklevel=2)
            if b.periodic:
                x_lo, x_hi = b.x_min, b.x_max
            elif it.kind == "pair":
                x_lo, x_hi = (lo if trim else b.x_min), b.x_max
            else:
                x_lo, x_hi = (lo, hi) if trim else (b.x_min, b.x_max)
            table, ferr = _make_table(it, coef, jk_coef, x_lo, x_hi, table_points)
            if trim and not b.periodic:
                table, ferr = _add_walls(table, ferr, lower=x_lo > b.x_min + 1e-12,
                                         upper=it.kind != "pair" and x_hi < b.x_max - 1e-12)
            tables.append(table)
            info.append({"interaction": it.label, "kind": it.kind, "types": list(it.types),
                         "grid": [float(_to_user(it.kind, b.x_min)), float(_to_user(it.kind, b.x_max))],
                         "n_basis": b.size, "table_range": [float(_to_user(it.kind, x_lo)),
                                                            float(_to_user(it.kind, x_hi))],
                         "n_samples": int(cnt.sum()), "samples_outside_grid": ne.outside[k].tolist(),
                         "sparse_ranges": [[float(_to_user(it.kind, a)), float(_to_user(it.kind, z)), n]
                                           for a, z, n in sparse],
                         "max_force_error": float(np.nanmax(ferr)) if ferr is not None else None,
                         "force_error": ferr})
        for t in self.fixed_tables:
            tables.append(t)
            info.append({"interaction": t.label, "kind": t.kind, "types": list(t.types), "fixed": True,
                         "table_range": [float(_to_user(t.kind, t.x0)), float(_to_user(t.kind, t.x_max))],
                         "n_samples": None, "samples_outside_grid": None, "sparse_ranges": [],
                         "max_force_error": None, "force_error": None})
        pot = TabulatedPotential(self.type_names, self.topology, tables)
        self.results = ForceMatchResult(tables=tables, potential=pot, interactions=info,
                                        coefficients=c, residual=residual,
                                        n_frames=ne.n_frames, n_blocks=len(ne.A_blocks),
                                        solve_seconds=solve_s, method=method)
        return self.results

    def run(self, positions, forces, boxes=None, **solve_kw) -> "SplineForceMatching":
        """Accumulate all frames and solve (results in ``.results``)."""
        self.accumulate(positions, forces, boxes)
        self.solve(**solve_kw)
        return self


def _make_table(it: Interaction, coef, jk_coef, x_lo, x_hi, points_per_interval):
    """Fine table (U, dU) of one interaction from its spline coefficients, plus force error bars."""
    b = it.basis
    n_pts = max(int(round((x_hi - x_lo) / b.h * points_per_interval)), 2) + 1
    if b.periodic:
        n_pts = b.n_intervals * points_per_interval + 1
    x = np.linspace(x_lo, x_hi, n_pts)
    h = x[1] - x[0]
    f = b.value(coef, x)
    if b.periodic:
        f = f - np.trapezoid(f, x) / (x[-1] - x[0])  # a periodic potential has zero mean force
    fm = b.value(coef, 0.5 * (x[1:] + x[:-1]))
    if b.periodic:
        fm = fm - (np.trapezoid(b.value(coef, x), x) / (x[-1] - x[0]))
    # U(x) = -∫ f dx, Simpson on each table interval (exact for the cubic pieces)
    incr = -(h / 6.0) * (f[:-1] + 4 * fm + f[1:])
    U = np.concatenate([[0.0], np.cumsum(incr)])
    if it.kind == "pair":
        U -= U[-1]  # zero at the cutoff
    else:
        U -= U.min()  # minimum zero for bonded
    if b.periodic:
        U[-1] = U[0]
    ferr = None
    if jk_coef is not None and len(jk_coef) >= 2:
        fk = b.value(jk_coef, x)
        nb = len(jk_coef)
        ferr = np.sqrt((nb - 1) / nb * ((fk - fk.mean(0)) ** 2).sum(0))
    return Table(it.kind, it.types, x[0], h, U, -f), ferr


def _wall_stiffness(x, U, dU, outward: float, w: float) -> float:
    """Curvature k (eV/Å² or eV/rad²) of the quadratic wall at one table end.

    ``outward`` is +1 at the upper end and -1 at the lower end. k is the largest of
    (a) the curvature of the table over its last fifth at that end (a harmonic well continues
    as itself: Boltzmann-inverted tables keep their physical stiffness), (b) a floor that lets
    the wall rise by max(ΔU_table, 0.1 eV) over one table width, and (c) where the end slope
    points the wrong way (U falling into the unsampled region), the stiffness that turns it
    round within a tenth of the width.
    """
    m = max(3, len(x) // 5)
    xs, Us = (x[-m:], U[-m:]) if outward > 0 else (x[:m], U[:m])
    k_end = max(2.0 * float(np.polyfit(xs - xs.mean(), Us, 2)[0]), 0.0)
    k_floor = 2.0 * max(float(np.ptp(U)), 0.1) / w ** 2
    slope = float(dU[-1] if outward > 0 else dU[0]) * outward  # > 0: rising outward (confining)
    k_turn = -slope / (0.1 * w) if slope < 0 else 0.0
    return max(k_end, k_floor, k_turn)


def _add_walls(t: Table, ferr, *, lower: bool, upper: bool):
    """Continue a trimmed table into its unsampled ends with confining quadratic walls.

    Unsampled means improbable, i.e. a high free energy: beyond the sampled range the potential
    must rise. Linear continuation of a fitted end slope can point the wrong way (an angle
    potential falling towards unsampled small angles folds the molecule). The wall
    U = U_end + U'_end Δ + ½ k Δ² keeps U and U' continuous; k is chosen per end by
    :func:`_wall_stiffness` (the end curvature of the table, a floor, and a turn-round within a
    tenth of the width for wrong-way slopes). Angles are extended to [0, π]; bonds and pairs by
    half the width.
    """
    if not (lower or upper):
        return t, ferr
    x, U, dU = t.x, t.U.copy(), t.dU.copy()
    w = x[-1] - x[0]
    h = t.dx
    lo_x = np.zeros(0)
    hi_x = np.zeros(0)
    if lower:
        end = 0.0 if t.kind == "angle" else max(x[0] - 0.5 * w, 0.0 if t.kind != "pair" else 0.1)
        n = int(np.floor((x[0] - end) / h))
        lo_x = x[0] - h * np.arange(n, 0, -1)
    if upper:
        end = math.pi if t.kind == "angle" else x[-1] + 0.5 * w
        n = int(np.floor((end - x[-1]) / h))
        hi_x = x[-1] + h * np.arange(1, n + 1)
    parts_x, parts_U, parts_dU = [], [], []
    if len(lo_x):
        d = lo_x - x[0]  # negative
        slope = dU[0]
        k = _wall_stiffness(x, U, dU, -1.0, w)
        parts_x.append(lo_x)
        parts_U.append(U[0] + slope * d + 0.5 * k * d * d)
        parts_dU.append(slope + k * d)
    parts_x.append(x)
    parts_U.append(U)
    parts_dU.append(dU)
    if len(hi_x):
        d = hi_x - x[-1]
        slope = dU[-1]
        k = _wall_stiffness(x, U, dU, 1.0, w)
        parts_x.append(hi_x)
        parts_U.append(U[-1] + slope * d + 0.5 * k * d * d)
        parts_dU.append(slope + k * d)
    xx = np.concatenate(parts_x)
    UU = np.concatenate(parts_U)
    if t.kind != "pair":
        UU = UU - UU.min()
    else:
        UU = UU - UU[-1]
    if ferr is not None:
        ferr = np.concatenate([np.full(len(lo_x), np.nan), ferr, np.full(len(hi_x), np.nan)])
    return Table(t.kind, t.types, xx[0], h, UU, np.concatenate(parts_dU)), ferr


class ForceMatchResult:
    """Result of spline force matching.

    ``tables``: list of :class:`Table` (x in Å or rad, U eV, dU = -f); ``potential``: the
    :class:`TabulatedPotential`; ``interactions``: per-interaction info (grid, samples, sparse
    ranges, jackknife force error ``force_error`` on the table grid, eV/Å or eV/rad);
    ``residual``: RMS force residual per bead type vs RMS mapped force (eV/Å).
    """

    def __init__(self, tables, potential, interactions, coefficients, residual, n_frames, n_blocks,
                 solve_seconds, method):
        self.tables, self.potential, self.interactions = tables, potential, interactions
        self.coefficients, self.residual = coefficients, residual
        self.n_frames, self.n_blocks, self.solve_seconds, self.method = n_frames, n_blocks, solve_seconds, method

    def summary(self) -> dict:
        return {"n_frames": self.n_frames, "n_blocks": self.n_blocks, "method": self.method,
                "solve_seconds": self.solve_seconds, "residual_per_bead_type": self.residual,
                "interactions": [{k: v for k, v in d.items() if k != "force_error"} for d in self.interactions],
                "units": {"distance": "Å", "angle": "deg", "energy": "eV", "force": "eV/Å (pairs, bonds), "
                          "eV/rad (angles, dihedrals)"}}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.summary(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def write_tables(self, directory) -> list[Path]:
        """One text table per interaction: x (Å or deg), U (eV), f (eV/Å or eV/rad), σ_f."""
        return write_table_files(self.tables, directory, [i["force_error"] for i in self.interactions])

    def plot(self, path=None):
        """Force and potential of every interaction (with error bands); saved to ``path``."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        n = len(self.tables)
        fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.5), squeeze=False)
        for k, (t, info) in enumerate(zip(self.tables, self.interactions)):
            x = _to_user(t.kind, t.x)
            ax = axes[0, k]
            ax.plot(x, t.force, lw=1)
            if info["force_error"] is not None:
                e = np.asarray(info["force_error"])
                ax.fill_between(x, t.force - 2 * e, t.force + 2 * e, alpha=0.3, lw=0)
            ax.set_title(t.label, fontsize=9)
            ax.set_ylabel("f (eV/rad)" if t.kind in ANGULAR else "f (eV/Å)")
            axes[1, k].plot(x, t.U, lw=1)
            axes[1, k].set_ylabel("U (eV)")
            axes[1, k].set_xlabel(f"x ({_unit(t.kind)})")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig


def _harmonic_fallback(kind, key, label, xs, kT, min_count):
    """Boltzmann inverse of a Gaussian fitted to too few samples: U = kT (x − μ)² / 2σ² (Å or
    rad), with a warning naming the interaction. Refuses samples without spread."""
    sd = float(np.std(xs))
    if len(xs) < 10 or not sd > 0:
        raise ForceMatchError(f"{label}: {len(xs)} samples without spread cannot be Boltzmann-inverted; "
                              "add frames (a longer trajectory)")
    mu = float(np.mean(xs))
    warnings.warn(f"{label}: fewer than 4 histogram bins hold {min_count} samples ({len(xs)} samples); "
                  f"using the Boltzmann inverse of a Gaussian fit (mean {float(_to_user(kind, mu)):.4g} "
                  f"{_unit(kind)}, sd {float(_to_user(kind, sd)):.3g} {_unit(kind)}); add frames for a real "
                  "histogram", SparseSamplingWarning, stacklevel=3)
    lo, hi = (0.0, math.pi) if kind == "angle" else (max(mu - 8 * sd, 1e-3), mu + 8 * sd)
    x = np.linspace(lo, hi, 401)
    U = 0.5 * kT * (x - mu) ** 2 / sd ** 2
    return Table(kind, key, lo, x[1] - x[0], U - U.min(), kT * (x - mu) / sd ** 2)


def boltzmann_bonded_tables(type_names, species, topology: Topology, positions, boxes=None, *,
                            temperature: float = 300.0, kinds=("bond", "angle"), bin_width=None,
                            min_count: int = 20, smooth: int = 2) -> list:
    """Bond and angle tables by Boltzmann inversion of the mapped distributions.

    U(x) = -kT ln[P(x)/J(x)] with the Jacobian J = x² (bonds), sin θ (angles), on the range
    where the histogram bins hold at least ``min_count`` samples (gaps inside interpolated; with
    fewer than 4 such bins, the inverse of a fitted Gaussian with a :class:`SparseSamplingWarning`),
    smoothed ``smooth`` times with a (1, 2, 1)/4 filter; beyond that range the tables rise with
    confining quadratic walls (an unsampled coordinate is an improbable one). ``bin_width``:
    {kind: width} in Å / deg (defaults 0.01 Å, 1.5 deg). Dihedrals: use
    :class:`~cgkit.forcematch.ibi.IterativeBoltzmannInversion`.
    For hybrid force matching pass the result as ``SplineForceMatching(..., fixed=tables)``.

    positions (n_frames, n_beads, 3) Å; boxes per frame or one; temperature K. Returns a list
    of :class:`Table` (x in Å or rad, U eV, minimum zero).
    """
    from ..units import KB_EV
    from .validate import bonded_samples
    kT = KB_EV * float(temperature)
    width = {"bond": 0.01, "angle": 1.5}
    width.update(bin_width or {})
    names = np.asarray(type_names)[np.asarray(species)]
    out = []
    for kind in kinds:
        if kind not in ("bond", "angle"):
            raise InputError(f"boltzmann_bonded_tables inverts bonds and angles, got '{kind}'")
        for key, x in bonded_samples(kind, positions, boxes, names, topology).items():
            label = type_label(kind, key)
            if kind == "angle":
                edges = np.radians(np.arange(0.0, 180.0 + 1e-9, width[kind]))
            else:
                edges = np.arange(max(0.0, x.min() - width[kind]), x.max() + 2 * width[kind], width[kind])
            xs = np.radians(x) if kind == "angle" else x
            cnt, _ = np.histogram(xs, bins=edges)
            c = 0.5 * (edges[1:] + edges[:-1])
            good = np.nonzero(cnt >= min_count)[0]
            if len(good) < 4:
                out.append(_harmonic_fallback(kind, key, label, xs, kT, min_count))
                continue
            sel = np.arange(good[0], good[-1] + 1)
            jac = c ** 2 if kind == "bond" else np.sin(c)
            p = cnt[sel] / jac[sel]
            ok = cnt[sel] >= min_count
            U = np.full(len(sel), np.nan)
            U[ok] = -kT * np.log(p[ok] / p[ok].max())
            if not ok.all():
                U[~ok] = np.interp(c[sel][~ok], c[sel][ok], U[ok])
            for _ in range(smooth):
                U = np.concatenate([[U[0]], 0.25 * (U[:-2] + 2 * U[1:-1] + U[2:]), [U[-1]]])
            h = c[1] - c[0]
            dU = np.gradient(U, h)
            t = Table(kind, key, c[sel][0], h, U - U.min(), dU)
            lower = t.x0 > h  # unsampled short bonds / small angles: confining wall
            upper = kind == "bond" or t.x_max < math.pi - h
            t, _ = _add_walls(t, None, lower=lower, upper=upper)
            out.append(t)
    return out
