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

Layout (one job per module): interactions and grids :mod:`.interaction`, spline basis
:mod:`.spline`, normal equations :mod:`.normal_equations`, solver :mod:`.solver`, tables and
walls :mod:`.walls`, Boltzmann inversion :mod:`.boltzmann`, the hybrid recipe :mod:`.hybrid`;
this module holds the accumulation (design matrices) and :class:`SplineForceMatching`.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..neighbors import neighbor_list
from ..results import Analysis, Results
from ..threads import torch_threads
from ..topology import Topology
from .boltzmann import ForceMatchError, SparseSamplingWarning, boltzmann_bonded_tables
from .geometry import ARITY, as_cell, instance_gradients, type_key
from .interaction import ANGULAR, Grid, Interaction, Term, damped_dihedral_table, layout, to_user as _to_user, unit as _unit
from .normal_equations import NormalEquations
from .solver import METHODS, solve_system
from .tabulated import Table, TabulatedPotential, write_table_files
from .walls import add_walls, make_table

__all__ = ["ForceMatchError", "SparseSamplingWarning", "Interaction", "NormalEquations",
           "SplineForceMatching", "ForceMatchResult", "suggest_grids", "boltzmann_bonded_tables"]


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
    bx = per_frame_boxes(boxes, len(pos))
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




def _dihedral_damping_map(spec) -> dict:
    """{Interaction | None (= every dihedral): damping} from None, a damping name or a dict."""
    from .tabulated import DAMPINGS
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = {None: spec}
    out = {}
    for k, v in dict(spec).items():
        key = None if k is None else Interaction.parse(k)
        if key is not None and key.kind != "dihedral":
            raise InputError(f"dihedral_damping: {key.label} is not a dihedral")
        if v is not None and v not in DAMPINGS:
            raise InputError(f"dihedral_damping: unknown damping '{v}' for "
                             f"{'every dihedral' if key is None else key.label}; use one of {DAMPINGS} or None")
        out[key] = v
    return out


def per_frame_boxes(boxes, n_frames):
    """One box (or None) per frame from None, one box for all frames, or one box per frame."""
    if boxes is None:
        return [None] * n_frames
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1 or (b.ndim == 2 and b.shape == (3, 3)):
        return [b] * n_frames
    if len(b) != n_frames:
        raise InputError(f"got {len(b)} boxes for {n_frames} frames; give one box per frame or one for all")
    return list(b)


class SplineForceMatching(Analysis):
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
    outside : what to do with instances whose coordinate lies outside their (non-periodic) grid:
        "drop" (default; counted and warned) or "extrapolate" — keep them, evaluated on the end
        polynomial pieces of the spline, as VOTCA's ``csg_fmatch`` does (use it to reproduce a
        VOTCA run; see :mod:`cgkit.forcematch.votca`); pairs beyond their grid's end (their
        cutoff) never interact
    threebody : :class:`~cgkit.forcematch.threebody.ThreeBody` terms (Stillinger–Weber-type
        E = Σ f(cos θ_jik) g(r_ij) g(r_ik) with fixed g and f fitted); the result's potential is
        then a :class:`~cgkit.forcematch.threebody.ThreeBodyPotential` (tables + three-body)
    fixed : tables (:class:`Table` list or a :class:`TabulatedPotential`) kept as they are:
        their forces are subtracted from the mapped forces before fitting, their interaction
        types are not fitted, and they are part of the resulting potential (hybrid scheme).
        The reported residual is that of the whole model (fixed + fitted) against the mapped
        forces; its ``rms_force_eV_per_A`` is then the RMS of the forces the fixed tables leave.
    dihedral_damping : None (default), "sin3" for every fitted dihedral, or {"dihedral A-B-B-A":
        "sin3" | None} per dihedral: fit U(φ)·sin³θ₁·sin³θ₂ (Bulacu et al. 2013; bounded forces
        near collinear triplets) instead of U(φ); the spline then expands the energy U(φ) (see
        :class:`~cgkit.forcematch.interaction.Term`) and the tables carry ``damping="sin3"``
    fixed_terms : other fixed cgkit Potentials of this CG system, typically the bead Coulomb term
        :class:`~cgkit.forcematch.coulomb.BeadCoulombPotential` (Ewald/PME/direct, with the
        topology's exclusions): their forces are subtracted from the mapped forces before
        fitting, like ``fixed`` tables, and the resulting potential is
        ``SumPotential([tables, *fixed_terms])``
    """

    def __init__(self, type_names, species, topology: Topology, *, pair=(0.0, 10.0, 0.1),
                 bond=(0.5, 5.0, 0.05), angle=(0.0, 180.0, 5.0), dihedral=20.0,
                 grids: dict | None = None, block_size: int = 10, on_empty: str = "error",
                 check: bool = True, fixed=None, outside: str = "drop", threebody=(),
                 dihedral_damping=None, fixed_terms=()):
        if outside not in ("drop", "extrapolate"):
            raise InputError(f"outside must be 'drop' or 'extrapolate', got '{outside}'")
        self.outside = outside
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
        from ..potential import Potential
        for t in fixed_terms or ():
            if not isinstance(t, Potential):
                raise InputError(f"fixed_terms must be cgkit Potentials, got {type(t).__name__}")
        #: fixed non-table terms (e.g. bead Coulomb), subtracted before fitting, added to the result
        self.fixed_terms = tuple(fixed_terms or ())
        grids = {Interaction.parse(k): v for k, v in (grids or {}).items()}
        names = np.asarray(self.type_names)[self.species]
        present = sorted(set(names.tolist()))
        inter: list[Term] = []

        damping_of = _dihedral_damping_map(dihedral_damping)

        def add(kind, types, default):
            key = Interaction(kind, types)
            spec = grids.pop(key) if key in grids else default
            if spec is None or (kind, key.types) in fixed_keys:
                return
            grid = Grid.from_user(kind, spec, default, key.label)
            damping = damping_of.pop(key, damping_of.get(None)) if kind == "dihedral" else None
            inter.append(Term(key, grid.basis(), damping=damping))

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
            raise InputError(f"grids given for interactions not in the system: {sorted(map(str, grids))}; "
                             f"the system has {[i.label for i in inter]}")
        damping_of.pop(None, None)
        if damping_of and check:
            raise InputError(f"dihedral_damping given for dihedrals not fitted in this system: "
                             f"{sorted(map(str, damping_of))}; the fitted dihedrals are "
                             f"{[i.label for i in inter if i.kind == 'dihedral']}")
        inter = layout(inter)
        off = sum(it.size for it in inter)
        from .threebody import ThreeBody, ThreeBodyTerm
        tb = []
        for spec in threebody or ():
            if not isinstance(spec, ThreeBody):
                raise InputError(f"threebody terms must be cgkit.forcematch.ThreeBody objects, got {type(spec).__name__}")
            missing = [t for t in spec.types if t not in lookup]
            if missing:
                raise InputError(f"{spec.label}: bead types {missing} are not in type_names {list(self.type_names)}")
            tb.append(ThreeBodyTerm(spec, off))
            off += tb[-1].size
        if len({t.label for t in tb}) != len(tb):
            raise InputError("two three-body terms for the same type triplet; give one per triplet")
        #: fitted three-body terms (columns after those of ``interactions``)
        self.threebody_terms = tuple(tb)
        if not inter and not tb:
            raise InputError("no interactions to fit: give pair/bond/angle/dihedral grids "
                             "(every interaction is fixed or has no grid)")
        #: the fitted terms (Interaction + spline basis + design-matrix columns); not changed later
        self.interactions = tuple(inter)
        self.n_coef = off
        self._by_key = {(it.kind, it.types): k for k, it in enumerate(inter)}
        nt = len(self.type_names)
        self._pair_id = -np.ones((nt, nt), dtype=np.int64)
        for k, it in enumerate(inter):
            if it.kind == "pair":
                a, b = lookup[it.types[0]], lookup[it.types[1]]
                self._pair_id[a, b] = self._pair_id[b, a] = k
        self.pair_cutoff = max([it.basis.x_max for it in inter if it.kind == "pair"], default=0.0)
        self.threebody_cutoff = max([t.spec.a for t in tb], default=0.0)
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
        self._ne = self._empty()
        self._block_A = None
        self._block_b = None
        self._block_n = 0
        self._frames_seen = 0
        # mean-pressure constraint (solve(pressure=...)): Σ_f Σ x B(x) / (3 V_f) per coefficient,
        # Σ_f N / V_f, frames counted, first non-periodic frame (see .pressure_match)
        self._virial_row = np.zeros(self.n_coef)
        self._virial_n_over_v = 0.0
        self._virial_frames = 0
        self._virial_nonperiodic = None
        self.results: ForceMatchResult | None = None

    @property
    def normal_equations(self) -> NormalEquations:
        """The normal equations accumulated so far (an open jackknife block is closed first, so
        they are complete: ready to :meth:`NormalEquations.save` or to add elsewhere)."""
        self._close_block()
        return self._ne

    # ------------------------------------------------------------------ accumulation
    def _empty(self) -> NormalEquations:
        terms = list(self.interactions) + list(self.threebody_terms)
        return NormalEquations([it.signature() for it in terms], len(self.type_names),
                               self.n_coef, [it.basis.n_intervals for it in terms])

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

    def _design(self, pos_np: np.ndarray, box, counts, outside, virial=None) -> torch.Tensor:
        """The (3n, n_coef) design matrix G of one frame: F_model = G c; adds the virial row
        Σ x B(x) of the pair and bond instances (W = virial · c, eV) to ``virial`` when given."""
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
                if self.outside == "drop":
                    x, beads, grad = x[inside], beads[inside], grad[inside]
                elif it.kind == "pair":  # beyond its cutoff a pair does not interact
                    x, beads, grad = x[~above], beads[~above], grad[~above]
            if len(x) == 0:
                continue
            if it.damping is not None:
                self._design_damped(G, it, beads, pos_np, box, counts[k])
                continue
            idx, vals = b.evaluate(x)
            if not b.periodic:
                iv = ((x - b.x_min) / b.h).floor().long()
                iv = iv[(iv >= 0) & (iv < b.n_intervals)] if self.outside == "extrapolate" else \
                    torch.clamp(iv, 0, b.n_intervals - 1)
            else:
                iv = idx[:, 0]
            counts[k] += np.bincount(iv.numpy(), minlength=b.n_intervals)
            if virial is not None and it.kind in ("pair", "bond"):  # angles, dihedrals: W = 0
                np.add.at(virial, (it.offset + idx).numpy().ravel(), (x[:, None] * vals).numpy().ravel())
            # rows: 3*bead + α → (m, ar, 3); columns: offset + idx → (m, 4)
            rows = (3 * beads[:, :, None] + torch.arange(3)[None, None, :])  # (m, ar, 3)
            cols = it.offset + idx  # (m, 4)
            flat = rows[:, :, :, None] * self.n_coef + cols[:, None, None, :]
            val = grad[:, :, :, None] * vals[:, None, None, :]
            G.index_add_(0, flat.reshape(-1), val.reshape(-1))
        if self.threebody_terms:
            self._design_threebody(G, pos_np, box, counts)
        return G.reshape(3 * n, self.n_coef)

    def _design_damped(self, G, it, beads, pos_np, box, counts) -> None:
        """Columns of a sin³-damped dihedral (energy basis U = Σ a_k B_k(φ)): the force on
        bead b of basis function k is -(B_k'(φ) s ∂φ/∂r_b + B_k(φ) ∂s/∂r_b)."""
        from .tabulated import damped_dihedral_terms
        cell_np, pbc_np = as_cell(box)
        pos = torch.as_tensor(pos_np, dtype=torch.float64)
        phi, _, s_grad_phi, grad_s, _ = damped_dihedral_terms(
            pos, beads, torch.as_tensor(cell_np, dtype=torch.float64), torch.as_tensor(pbc_np), None)
        b = it.basis
        idx, vals = b.evaluate(phi)
        _, der = b.evaluate(phi, derivative=True)
        counts += np.bincount(idx[:, 0].numpy(), minlength=b.n_intervals)
        rows = (3 * beads[:, :, None] + torch.arange(3)[None, None, :])  # (m, 4, 3)
        cols = it.offset + idx
        flat = rows[:, :, :, None] * self.n_coef + cols[:, None, None, :]
        val = -(s_grad_phi[:, :, :, None] * der[:, None, None, :] + grad_s[:, :, :, None] * vals[:, None, None, :])
        G.index_add_(0, flat.reshape(-1), val.reshape(-1))

    def _design_threebody(self, G, pos_np, box, counts) -> None:
        """Three-body columns: the force on bead b of basis function B_k is
        -(B_k'(c) G ∂c/∂r_b + B_k(c) ∂G/∂r_b) (see :mod:`.threebody`)."""
        from .threebody import triplet_geometry
        cell_np, pbc_np = as_cell(box)
        ei, S = neighbor_list(pos_np, cell_np, pbc_np, self.threebody_cutoff)
        i, j = torch.as_tensor(ei[0]), torch.as_tensor(ei[1])
        pos = torch.as_tensor(pos_np, dtype=torch.float64)
        shift = torch.as_tensor(S, dtype=torch.float64) @ torch.as_tensor(cell_np, dtype=torch.float64)
        excl = (self.topology.exclusion_mask(i, j) if len(self.topology.exclusions) else None)
        sp = torch.as_tensor(self.species)
        index = {t: k for k, t in enumerate(self.type_names)}
        n_interactions = len(self.interactions)
        for q, term in enumerate(self.threebody_terms):
            beads, c, Gr, dc, dG = triplet_geometry(pos, i, j, shift, sp, index, term.spec, excl)
            if len(c) == 0:
                continue
            idx, vals = term.basis.evaluate(c)
            _, der = term.basis.evaluate(c, derivative=True)
            k = n_interactions + q
            iv = torch.clamp(((c - term.basis.x_min) / term.basis.h).floor().long(), 0, term.basis.n_intervals - 1)
            counts[k] += np.bincount(iv.numpy(), minlength=term.basis.n_intervals)
            # force on bead b: -(der G dc_b + vals dG_b) per basis function
            a = -(Gr[:, None, None, None] * dc[:, :, :, None] * der[:, None, None, :]
                  + dG[:, :, :, None] * vals[:, None, None, :])  # (m, 3 beads, 3, 4)
            rows = 3 * beads[:, :, None] + torch.arange(3)[None, None, :]
            cols = term.offset + idx
            flat = rows[:, :, :, None] * self.n_coef + cols[:, None, None, :]
            G.index_add_(0, flat.reshape(-1), a.reshape(-1))

    def accumulate(self, positions, forces, boxes=None, *, progress: bool = True,
                   frame_indices=None, source: str = "the trajectory") -> "SplineForceMatching":
        """Add frames to the normal equations (streaming: call once per chunk, then :meth:`solve`).

        positions : (n_frames, n_beads, 3) or (n_beads, 3) Å
        forces : same shape, eV/Å (mapped atomistic forces)
        boxes : None (no periodicity), one box for all frames or one per frame — (3,) lengths,
            (6,) [a, b, c, α, β, γ] or (3, 3) lattice vectors (Å, deg)
        frame_indices : 0-based index of every frame in its file, for error messages (default:
            the running count of frames given to this object); ``source``: the file's name
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
        idx = (np.arange(self._frames_seen, self._frames_seen + len(pos)) if frame_indices is None
               else np.asarray(frame_indices).reshape(-1))
        for what, arr in (("positions", pos), ("forces", frc)):
            bad = ~np.all(np.isfinite(arr), axis=2)
            if bad.any():
                f = int(np.nonzero(bad.any(axis=1))[0][0])
                beads = np.nonzero(bad[f])[0]
                raise InputError(f"frame {int(idx[f])} of {source}: the {what} of beads "
                                 f"{beads[:10].tolist()}{' ...' if len(beads) > 10 else ''} are NaN/inf; "
                                 "force matching needs finite mapped positions and forces in every frame "
                                 "(drop or repair that frame, e.g. with --start/--stop)")
        if not np.any(frc):
            raise InputError("all forces are zero: the trajectory holds no forces (write forces "
                             "in the atomistic MD run)")
        self._frames_seen += len(pos)
        with torch_threads(1):
            return self._accumulate(pos, frc, per_frame_boxes(boxes, len(pos)), progress)

    def _accumulate(self, pos, frc, bx, progress):
        ne = self._ne
        types = [np.repeat(self.species == t, 3) for t in range(len(self.type_names))]
        from ..progress import progress_bar
        frames = progress_bar(range(len(pos)), desc="force matching", unit="frame",
                              disable=None if progress else True)
        for f in frames:
            cell_f, pbc_f = as_cell(bx[f])
            vol = abs(float(np.linalg.det(cell_f))) if bool(np.all(pbc_f)) else 0.0
            vir = np.zeros(self.n_coef) if vol > 0 else None
            if vir is None and self._virial_nonperiodic is None:
                self._virial_nonperiodic = self._frames_seen - len(pos) + f
            G = self._design(pos[f], bx[f], ne.counts, ne.outside, vir).numpy()
            if vir is not None:
                self._virial_row += vir / (3.0 * vol)
                self._virial_n_over_v += self.n_beads / vol
                self._virial_frames += 1
            F = frc[f].reshape(-1)
            if self._fixed_potential is not None or self.fixed_terms:
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
        """Forces (n_beads, 3) eV/Å of the fixed tables and ``fixed_terms`` on one frame (zeros
        without any)."""
        pos = np.asarray(positions, dtype=np.float64)
        out = np.zeros_like(pos)
        from ..data import AtomicGraph
        cell, pbc = as_cell(box)
        for pot in ([self._fixed_potential] if self._fixed_potential is not None else []) + list(self.fixed_terms):
            g = AtomicGraph.from_arrays(pos, cell, pbc, max(pot.cutoff, 1e-3), species=self.species,
                                        type_names=self.type_names)
            out += pot.compute(g)["forces"].detach().to(torch.float64).numpy()
        return out

    def _close_block(self) -> None:
        if self._block_n:
            ne = self._ne
            ne.A_blocks.append(self._block_A)
            ne.b_blocks.append(self._block_b)
            ne.block_frames.append(self._block_n)
        self._block_A, self._block_b, self._block_n = None, None, 0

    def add(self, other: NormalEquations) -> "SplineForceMatching":
        """Add normal equations accumulated elsewhere (another chunk, process or machine)."""
        self._close_block()
        self._ne = self._ne + other
        return self

    # ------------------------------------------------------------------ solving
    def _sampled_ranges(self, min_samples: int):
        """Per interaction: (lo, hi) of the well-sampled range and the sparse ranges."""
        out = []
        for it, c in zip(self.interactions, self._ne.counts):
            good = np.nonzero(c >= min_samples)[0]
            b = it.basis
            if len(good) == 0:
                out.append((None, None, []))
                continue
            lo, hi = b.x_min + good[0] * b.h, b.x_min + (good[-1] + 1) * b.h
            out.append((lo, hi, _sparse_runs(c, b, min_samples)))
        return out

    def solve(self, *, method: str = "ridge", ridge: float = 1e-12, smooth: float = 1e-8,
              min_samples: int = 10, trim: bool = True, table_points: int = 20, natural: bool = False,
              errors: str = "jackknife", pressure=None) -> "ForceMatchResult":
        """Solve the normal equations; returns (and stores in ``.results``) a ForceMatchResult.

        method : "ridge" (regularised, default) or "lstsq" (no regularisation; raises
            ForceMatchError naming the interactions the data cannot determine)
        ridge, smooth : relative weights of the ridge and second-difference penalties
        min_samples : grid intervals with fewer samples are "sparse" (warned, trimmed)
        trim : restrict the output tables to the well-sampled range
        table_points : table points per spline interval
        natural : constrain f'' = 0 at both ends of every non-periodic grid (the natural cubic
            spline of VOTCA's constrained least squares)
        errors : "jackknife" (default: the fit of all frames, jackknife error bars over blocks) or
            "blocks" (VOTCA's ``csg_fmatch``: every block of ``block_size`` frames is solved on
            its own; the table is the mean of the block solutions and its error their standard
            deviation / √n_blocks)
        pressure : None or a :class:`~cgkit.forcematch.pressure_match.PressureTarget` (bar, K):
            impose exactly that the mean virial pressure N k_B T/V + W/(3V) of the fitted model
            over the accumulated frames (each with its own volume V) equals the target (Das &
            Andersen 2010); the summary's ``pressure`` block gives ⟨P⟩ with and without the
            constraint and the force residual of both. Needs periodic frames accumulated by this
            object, pairs/bonds only besides angles/dihedrals (no three-body, fixed tables or
            fixed terms)
        """
        if errors not in ("jackknife", "blocks"):
            raise InputError("errors must be 'jackknife' or 'blocks'")
        if method not in METHODS:
            raise InputError("method must be 'ridge' or 'lstsq'")
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
        n_regular = len(keep)
        for term, cnt in zip(self.threebody_terms, ne.counts[len(self.interactions):]):
            if cnt.sum() == 0:
                msg = f"{term.label}: no triplets within its cutoff {term.spec.a} Å"
                if self.on_empty == "error":
                    raise ForceMatchError(msg + "; check the bead types and the cutoff a, or drop the term")
                warnings.warn(msg + "; the term is dropped", SparseSamplingWarning, stacklevel=2)
                continue
            keep.append(term)
        if not keep:
            raise ForceMatchError("no interaction has samples; nothing to solve")
        equality, p_info = None, None
        if pressure is not None:
            equality, p_info = self._pressure_equality(pressure, ne, keep)
        A_all = ne.A.sum(0)
        b_all = ne.b.sum(0)
        cols = np.concatenate([np.arange(it.offset, it.offset + it.size) for it in keep])
        sub = np.ix_(cols, cols)
        # solve on the kept columns (laid out from 0: the terms are passed to the solver, nothing
        # on self changes); dropped interactions have c = 0
        remap = layout(keep)
        t0 = time.perf_counter()
        jk = []
        nb = len(ne.A_blocks)
        if errors == "blocks":
            if nb < 2:
                raise ForceMatchError(f"errors='blocks' needs at least 2 blocks of {self.block_size} frames, "
                                      f"got {nb}; lower the block size or add frames")
            blocks = [solve_system(remap, Ak[sub], bk[cols], ridge, smooth, method, natural, equality)
                      for Ak, bk in zip(ne.A_blocks, ne.b_blocks)]
            c = np.mean(blocks, axis=0)
            # make_table's jackknife formula √((n-1)/n Σ(y_k - ȳ)²) of the pseudo-values
            # y_k = x̄ + (x_k - x̄)/√(n(n-1)) is VOTCA's block error √((⟨x²⟩ - ⟨x⟩²)/n)
            jk = [c + (ck - c) / math.sqrt(nb * (nb - 1)) for ck in blocks]
        else:
            c = solve_system(remap, A_all[sub], b_all[cols], ridge, smooth, method, natural, equality)
        solve_s = time.perf_counter() - t0
        if nb >= 2 and errors == "jackknife":
            for k in range(nb):
                Ak = A_all - ne.A_blocks[k]
                bk = b_all - ne.b_blocks[k]
                try:
                    jk.append(solve_system(remap, Ak[sub], bk[cols], ridge, smooth, method, natural, equality))
                except ForceMatchError:
                    pass
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
        if p_info is not None:
            c_free = (np.mean([solve_system(remap, Ak[sub], bk[cols], ridge, smooth, method, natural)
                               for Ak, bk in zip(ne.A_blocks, ne.b_blocks)], axis=0) if errors == "blocks"
                      else solve_system(remap, A_all[sub], b_all[cols], ridge, smooth, method, natural))
            p_info = self._pressure_report(p_info, ne, cols, c, c_free)
        tables, info = [], []
        from .threebody import ThreeBodyPotential, ThreeBodyTable
        tables3, info3 = [], []
        for it_new, it in zip(remap[n_regular:], keep[n_regular:]):
            tables3.append(ThreeBodyTable(it.spec, c[it_new.columns]))
            k = len(self.interactions) + self.threebody_terms.index(it)
            err = None
            if len(jk) >= 2:
                cj = np.array([x[it_new.columns] for x in jk])
                err = np.sqrt((len(cj) - 1) / len(cj) * ((cj - cj.mean(0)) ** 2).sum(0)).tolist()
            sparse3 = _sparse_runs(ne.counts[k], it.basis, min_samples)
            if sparse3:
                rng = "; ".join(f"{it.range_str(a, z)} ({n} triplets)" for a, z, n in sparse3)
                warnings.warn(f"{it.label}: fewer than {min_samples} triplets per interval for {rng}; the "
                              "angular function there is set by the smoothness regulariser, not by the data "
                              "(the CG MD should not visit it: check the validation's outside-range fractions)",
                              SparseSamplingWarning, stacklevel=2)
            info3.append({"interaction": it.label, "kind": "threebody", "types": list(it.types),
                          "a": it.spec.a, "gamma": it.spec.gamma, "basis": it.spec.basis_kind,
                          "spacing": it.spec.spacing, "coefficients": c[it_new.columns].tolist(),
                          "coefficient_errors": err, "n_samples": int(ne.counts[k].sum()),
                          "force_error": None, "max_force_error": None,
                          "sparse_ranges": [[float(a), float(z), n] for a, z, n in sparse3]})
        remap, keep = remap[:n_regular], keep[:n_regular]
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
            # pairs beyond the end of their grid are beyond their cutoff: nothing to report
            n_out = (int(ne.outside[k, 0]), 0 if it.kind == "pair" else int(ne.outside[k, 1]))
            if any(n_out):
                how = ("were fitted on the end pieces of the spline (outside='extrapolate')"
                       if self.outside == "extrapolate" else "were left out of the fit")
                warnings.warn(f"{it.label}: {n_out[0]} samples below and {n_out[1]} above the grid "
                              f"{it.range_str(b.x_min, b.x_max)} {how}; widen the grid",
                              SparseSamplingWarning, stacklevel=2)
            if b.periodic:
                x_lo, x_hi = b.x_min, b.x_max
            elif it.kind == "pair":
                x_lo, x_hi = (lo if trim else b.x_min), b.x_max
            else:
                x_lo, x_hi = (lo, hi) if trim else (b.x_min, b.x_max)
            if it.damping is not None:
                table, ferr = damped_dihedral_table(it, coef, jk_coef, table_points)
            else:
                table, ferr = make_table(it, coef, jk_coef, x_lo, x_hi, table_points)
            if trim and it.kind == "angle":  # always continued to [0, π] with zero end slopes
                table, ferr = add_walls(table, ferr, lower=table.x0 > 1e-9, upper=table.x_max < math.pi - 1e-9)
            elif trim and not b.periodic:
                table, ferr = add_walls(table, ferr, lower=x_lo > b.x_min + 1e-12,
                                         upper=it.kind != "pair" and x_hi < b.x_max - 1e-12)
            tables.append(table)
            info.append({"interaction": it.label, "kind": it.kind, "types": list(it.types),
                         **({"damping": it.damping} if it.damping is not None else {}),
                         "grid": [float(_to_user(it.kind, b.x_min)), float(_to_user(it.kind, b.x_max))],
                         "n_basis": b.size, "table_range": [float(_to_user(it.kind, x_lo)),
                                                            float(_to_user(it.kind, x_hi))],
                         "n_samples": int(cnt.sum()), "samples_outside_grid": ne.outside[k].tolist(),
                         "sparse_ranges": [[float(_to_user(it.kind, a)), float(_to_user(it.kind, z)), n]
                                           for a, z, n in sparse],
                         "max_force_error": (float(np.nanmax(ferr)) if ferr is not None and np.any(np.isfinite(ferr))
                                             else None),
                         "force_error": ferr})
        for t in self.fixed_tables:
            tables.append(t)
            info.append({"interaction": t.label, "kind": t.kind, "types": list(t.types), "fixed": True,
                         "table_range": [float(_to_user(t.kind, t.x0)), float(_to_user(t.kind, t.x_max))],
                         "n_samples": None, "samples_outside_grid": None, "sparse_ranges": [],
                         "max_force_error": None, "force_error": None})
        pot = TabulatedPotential(self.type_names, self.topology, tables)
        if tables3:
            pot = ThreeBodyPotential(self.type_names, self.topology, tables3, base=pot)
        info.extend(info3)
        if self.fixed_terms:
            from ..potential import SumPotential
            pot = SumPotential([pot, *self.fixed_terms])
            for t in self.fixed_terms:
                d = t.describe() if hasattr(t, "describe") else {}
                info.append({"interaction": "coulomb" if hasattr(t, "net_charge") else type(t).__name__,
                             "kind": "coulomb" if hasattr(t, "net_charge") else "fixed", "types": [],
                             "fixed": True, **d, "force_error": None, "max_force_error": None,
                             "sparse_ranges": []})
        self.results = ForceMatchResult(tables=tables, potential=pot, interactions=info,
                                        coefficients=c, residual=residual,
                                        n_frames=ne.n_frames, n_blocks=len(ne.A_blocks),
                                        solve_seconds=solve_s, method=method)
        self.results.pressure = p_info
        return self.results

    def _pressure_equality(self, pressure, ne, keep):
        """(row (1, n_kept), rhs (1,)) of ⟨P_CG⟩ = target on the kept columns, and the info
        needed for the report; refuses what the virial row cannot describe."""
        from .pressure_match import KB_EV_PER_K, PressureTarget
        if not isinstance(pressure, PressureTarget):
            raise InputError(f"pressure must be a cgkit.forcematch.pressure_match.PressureTarget, got "
                             f"{type(pressure).__name__}")
        if self.threebody_terms:
            raise InputError("a pressure target with three-body terms is not supported: their virial is "
                             "not in the constraint row; fit without --threebody or without --pressure-target")
        if self.fixed_tables or self.fixed_terms:
            raise InputError("a pressure target with fixed tables or fixed terms (hybrid bonded tables, "
                             "Coulomb) is not supported: their virial is not in the constraint row; use "
                             "--bonded fm and --coulomb none, or drop --pressure-target")
        if self._virial_nonperiodic is not None:
            raise InputError(f"a pressure target needs periodic frames (a volume per frame); frame "
                             f"{self._virial_nonperiodic} has no periodic box in all three directions")
        if self._virial_frames != ne.n_frames:
            raise InputError(f"a pressure target needs the virial of every frame, but {ne.n_frames - self._virial_frames} "
                             "of the frames come from added normal equations (--add / add()), which carry no "
                             "virial; accumulate all frames in this run")
        nf = self._virial_frames
        cols = np.concatenate([np.arange(it.offset, it.offset + it.size) for it in keep])
        row = self._virial_row[cols] / nf
        p_kin = KB_EV_PER_K * pressure.temperature_K * self._virial_n_over_v / nf
        if not np.any(row):
            raise InputError("a pressure target needs fitted pair or bond interactions (only they carry a "
                             "virial); this fit has none")
        return (row[None, :], np.array([pressure.ev_per_A3 - p_kin])), {"target": pressure, "p_kin": p_kin,
                                                                          "row": row}

    def _pressure_report(self, p, ne, cols, c, c_free) -> dict:
        from .pressure_match import EV_PER_A3_IN_BAR

        def rms(cc):
            full = np.zeros(self.n_coef)
            full[cols] = cc
            A, b = ne.A.sum(0), ne.b.sum(0)
            r2 = ne.ff.sum() - 2 * full @ b + full @ A @ full
            return float(math.sqrt(max(r2, 0.0) / max(int(ne.n_rows.sum()), 1)))

        P = lambda cc: float((p["row"] @ cc + p["p_kin"]) * EV_PER_A3_IN_BAR)  # noqa: E731
        r_c, r_f = rms(c), rms(c_free)
        return {"target_bar": float(p["target"].bar), "temperature_K": float(p["target"].temperature_K),
                "kinetic_bar": float(p["p_kin"] * EV_PER_A3_IN_BAR),
                "constrained_mean_bar": P(c), "unconstrained_mean_bar": P(c_free),
                "rms_residual_constrained_eV_per_A": r_c, "rms_residual_unconstrained_eV_per_A": r_f,
                "rms_force_eV_per_A": float(math.sqrt(ne.ff.sum() / max(int(ne.n_rows.sum()), 1))),
                "residual_increase_percent": float(100.0 * (r_c / r_f - 1.0)) if r_f > 0 else 0.0,
                "n_frames": int(self._virial_frames),
                "note": "mean virial pressure N k_B T/V + W/(3V) of the fitted tables on the fitted frames"}

    def run(self, positions, forces, boxes=None, *, progress: bool = True, **solve_kw) -> "SplineForceMatching":
        """Accumulate all frames and solve (results in ``.results``)."""
        self.accumulate(positions, forces, boxes, progress=progress)
        self.solve(**solve_kw)
        return self

    def summary(self) -> dict:
        """The summary of the last :meth:`solve` (empty before)."""
        return self.results.summary() if self.results is not None else {}

    def plot(self, directory) -> list[Path]:
        """``fm.png`` (forces and potentials of every table) in ``directory``."""
        return self.results.plot(directory) if self.results is not None else []


class ForceMatchResult(Analysis):
    """Result of spline force matching (the ``.results`` of :class:`SplineForceMatching`).

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
        #: None, or the mean-pressure report of solve(pressure=...) (bar, eV/Å)
        self.pressure = None
        self.results = Results(tables=tables, residual=residual, interactions=interactions)

    def summary(self) -> dict:
        from ..jsonutil import jsonable
        return jsonable({"n_frames": self.n_frames, "n_blocks": self.n_blocks, "method": self.method,
                "solve_seconds": self.solve_seconds, "residual_per_bead_type": self.residual,
                "interactions": [{k: v for k, v in d.items() if k != "force_error"} for d in self.interactions],
                **({"pressure": self.pressure} if self.pressure is not None else {}),
                "units": {"distance": "Å", "angle": "deg", "energy": "eV", "force": "eV/Å (pairs, bonds), "
                          "eV/rad (angles, dihedrals)"}})

    def write_tables(self, directory) -> list[Path]:
        """One text table per interaction: x (Å or deg), U (eV), f (eV/Å or eV/rad), σ_f; for
        three-body terms ``threebody_<C>-<N1>-<N2>.dat``: cos θ, f(cos θ) (eV), df/dcos θ (eV)."""
        paths = write_table_files(self.tables, directory, [i["force_error"] for i in self.interactions][:len(self.tables)])
        for t in getattr(self.potential, "tables3", []):
            c = np.linspace(-1.0, 1.0, 201)
            f, df = t.f(c)
            p = Path(directory) / f"threebody_{'-'.join(t.types)}.dat"
            np.savetxt(p, np.column_stack([c, f, df]),
                       header=f"{t.label}: E = sum f(cos theta_jik) g(r_ij) g(r_ik), g(r) = exp(gamma/(r - a)), "
                              f"a = {t.spec.a} A, gamma = {t.spec.gamma} A, basis {t.spec.basis_kind}; "
                              "columns: cos theta, f (eV), df/dcos theta (eV)")
            paths.append(p)
        return paths

    def plot(self, directory=None) -> list[Path]:
        """Force and potential of every interaction (with error bands): ``fm.png`` in
        ``directory`` (a path ending in ``.png`` is used as the file name). Returns [path]."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        if directory is None:
            return []
        target = Path(directory)
        if target.suffix.lower() != ".png":
            target.mkdir(parents=True, exist_ok=True)
            target = target / "fm.png"
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
        fig.savefig(target, dpi=110)
        plt.close(fig)
        return [target]


def _sparse_runs(counts, basis, min_samples: int) -> list:
    """[(x_lo, x_hi, samples)] of the runs of grid intervals of ``basis`` (uniform, ``x_min``,
    ``h``) holding fewer than ``min_samples`` samples each; [] for a basis without intervals."""
    if not hasattr(basis, "h") or len(counts) == 0:
        return []
    c = np.asarray(counts)
    bad = c < min_samples
    runs, k = [], 0
    while k < len(c):
        if bad[k]:
            s = k
            while k < len(c) and bad[k]:
                k += 1
            runs.append((basis.x_min + s * basis.h, basis.x_min + k * basis.h, int(c[s:k].sum())))
        else:
            k += 1
    return runs
