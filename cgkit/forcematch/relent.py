"""Relative-entropy minimisation (RE) of CG potentials driven by cgkit CG MD.

The CG potential of every optimised interaction type (non-bonded pairs per bead-type pair,
bonds, angles, dihedrals per type) is linear in its parameters λ: a cubic B-spline expansion of
the *energy* on a uniform grid,

    U_t(x) = Σ_k λ_k B_k(x),        x ∈ [x_min, x_max]  (Å or rad),

continued linearly outside the grid (exactly what the :class:`TabulatedPotential` built from it
does, so the derivatives below are those of the potential that is simulated). Pair potentials
vanish smoothly at the cutoff (the three B-splines that do not vanish at x_max are pinned at
λ = 0); dihedrals use the periodic basis.

The relative entropy of the CG model with respect to the mapped reference (Shell, J. Chem. Phys.
129, 144108 (2008); Chaimovich & Shell, J. Chem. Phys. 134, 094112 (2011); VOTCA csg_reupdate)

    S_rel(λ) = β⟨U_λ − U_AA⟩_AA − β(A_λ − A_AA) + ⟨S_map⟩_AA,   A_λ = −kT ln Z_λ,

has, for a potential linear in λ (∂²U/∂λ² = 0), with φ_k = ∂U/∂λ_k summed over all
instances of a configuration,

    ∂S/∂λ_k   = β(⟨φ_k⟩_AA − ⟨φ_k⟩_CG),
    ∂²S/∂λ_k∂λ_l = β²(⟨φ_k φ_l⟩_CG − ⟨φ_k⟩_CG⟨φ_l⟩_CG).

The AA averages come from the mapped reference trajectory (computed once), the CG averages
from a CG MD run at the current λ. φ of a frame is a histogram-like accumulation of basis
values over all pairs/bonds/angles (``np.bincount``, no loop over instances). Each iteration
makes a damped Newton–Raphson step Δλ = −α H̃⁻¹ ∇S with the Hessian regularised by
Levenberg–Marquardt damping (H̃ = H + μ diag H) and an eigenvalue floor, keeping only the eigen-directions
whose gradient component stands above its statistical noise (block averages), and the step of
every interaction scaled down to max|Δλ_k| ≤ ``max_step`` kT if larger (a trust region:
|ΔU(x)| ≤ max|Δλ| because the B-splines are a partition of unity). Parameters whose basis
functions have fewer than ``min_samples`` samples in their support, in the reference and in
the current CG run, are held at their start values (never sampled: not determined); those
unsampled by the reference are named (interaction and x range) by a
:class:`SparseSamplingWarning` when the driver is built. A region only the CG model visits
is optimised: there ∂S/∂λ = −β⟨φ⟩_CG pushes the potential up.

Start: Boltzmann inversion of the target distributions (:func:`cgkit.forcematch.boltzmann.boltzmann_table`)
— or the user's ``start_tables`` — projected on the basis by least squares. The target
distributions, the CG MD of every iteration, the JS-divergence scores and the optional pressure
correction (ΔU(r) = A (1 − r/r_c), projected on the pair basis) are those of
:class:`~cgkit.forcematch.ibi.IterativeBoltzmannInversion`, which this class extends.

Every iteration records the gradient norm |∇S| (over the optimised parameters), the change of
S_rel predicted by the quadratic model, ΔS_quad = ∇S·Δλ + ½ Δλᵀ H Δλ, and its free-energy-
perturbation estimate from the same CG samples, ΔS_fep = β⟨ΔU⟩_AA + ln⟨exp(−βΔU)⟩_CG, and the
JS divergences of every distribution (of the potential before the update).

Units: Å, rad inside (deg in summaries, plots and table files), eV, K, fs, pressure GPa;
S_rel is dimensionless (nats).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..jsonutil import jsonable
from ..topology import Topology
from .geometry import KINDS, type_label
from .ibi import IterativeBoltzmannInversion
from .boltzmann import SparseSamplingWarning
from .interaction import Interaction, to_user as _to_user, unit as _unit
from .mscg import SplineForceMatching, per_frame_boxes
from .tabulated import Table, write_table_files

__all__ = ["RelativeEntropyMinimisation", "relative_entropy_derivatives", "basis_values",
           "mean_covariance"]

_DEFAULT_SPACING = {"pair": 0.25, "angle": 5.0, "dihedral": 20.0}  # Å, deg, deg


def basis_values(interaction, x):
    """Indices (m, 4) and values (m, 4) of the nonzero energy basis functions B_k at x (m,)
    (Å or rad) of one interaction; open bases are continued linearly outside the grid
    (B_k(x_e) + B_k'(x_e)(x − x_e)), like the tables the potential is simulated with."""
    b = interaction.basis
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if b.periodic:
        idx, v = b.evaluate(xt)
        return idx.numpy(), v.numpy()
    xc = xt.clamp(b.x_min, b.x_max)
    idx, v = b.evaluate(xc)
    _, d = b.evaluate(xc, derivative=True)
    return idx.numpy(), (v + d * (xt - xc)[:, None]).numpy()


def relative_entropy_derivatives(mean_target, model_vectors, beta):
    """Gradient (n,) and Hessian (n, n) of S_rel for a potential linear in its parameters.

    mean_target : (n,) ⟨φ⟩ over the reference (AA) frames, eV/eV = dimensionless
    model_vectors : (n_frames, n) φ of every CG-model frame
    beta : 1/kT in 1/eV.
    ∇S = β(⟨φ⟩_AA − ⟨φ⟩_CG), H = β² Cov_CG(φ) (1/eV² per parameter pair, λ in eV).
    """
    G = np.asarray(model_vectors, dtype=np.float64)
    mean_model = G.mean(0)
    D = G - mean_model
    return beta * (np.asarray(mean_target) - mean_model), beta ** 2 * (D.T @ D) / len(G)


def mean_covariance(G, n_blocks: int = 10) -> np.ndarray:
    """Covariance (n, n) of the frame average of G (n_frames, n) by block averaging over
    ``n_blocks`` blocks of consecutive frames (time correlation included)."""
    G = np.asarray(G, dtype=np.float64)
    B = max(2, min(int(n_blocks), len(G) // 2))
    if len(G) < 4:
        return np.zeros((G.shape[1], G.shape[1]))
    m = np.array([b.mean(0) for b in np.array_split(G, B)])
    D = m - m.mean(0)
    return D.T @ D / (B - 1) / B


def _logmeanexp(a):
    m = float(np.max(a))
    return m + math.log(float(np.mean(np.exp(a - m))))


class RelativeEntropyMinimisation(IterativeBoltzmannInversion):
    """Relative-entropy minimisation of spline CG potentials with cgkit CG MD.

    Parameters (as :class:`IterativeBoltzmannInversion`, whose targets, MD and scores it uses)
    ----------
    type_names, species, topology, masses (amu per bead) : the CG system
    reference_positions : (n_frames, n_beads, 3) Å mapped reference; reference_boxes: box(es)
    start_positions : (n_beads, 3) Å start of every CG MD run; box : (3,) or (3, 3) Å
    temperature : K; pair_cutoff : Å (pair grids end there); bins : histogram bins (targets, scores)
    kinds : interactions optimised ("pair", "bond", "angle", "dihedral"); the others keep their
        start tables (Boltzmann inversion or ``start_tables``)
    alpha : Newton step damping (0 < α ≤ 1); md_steps, equilibration, sample_every, timestep (fs),
        friction (1/fs) : the CG MD of each iteration; pressure : target GPa (None: no
        correction), pressure_scale : eV per GPa; start_tables : tables replacing the Boltzmann-
        inverted start (e.g. an IBI or force-matching result); these are projected on the basis
        for optimised kinds and kept unchanged for the others
    grids : {"pair A-B": (min, max[, spacing]), "bond A-B": ..., "angle A-B-A": ... (deg),
        "dihedral A-B-B-A": spacing (deg)} overrides of the energy-basis grids (user units).
        Defaults: pairs [closest reference approach − 0.5 Å, pair_cutoff] every 0.25 Å; bonds the
        IBI target range with 20 intervals; angles [0, 180] deg every 5 deg; dihedrals 20 deg
    ridge : Levenberg–Marquardt damping: ridge·H_kk is added to every diagonal element of the
        Hessian. It damps the directions the CG samples hardly determine — combinations of
        parameters that are soft although each parameter alone is not, such as a smooth shift
        of a pair potential at constant volume — where a noisy gradient would otherwise be
        amplified by the inverse of a tiny curvature. eigen_floor : smallest eigenvalue kept,
        relative to the largest; smooth : optional second-difference penalty on Δλ relative to
        the interaction's mean curvature
    max_step : cap on max |Δλ| (= max |ΔU(x)|) per interaction and iteration, in kT
    continue_runs : start every CG MD run from the last configuration of the previous one
        (default; the first starts from ``start_positions``) rather than always from
        ``start_positions``: short runs then carry less memory of one fixed start
    coupling : "full" Hessian, or "block": covariances between different interactions dropped
        (one Newton step per table; robust when the cross-covariances are mostly noise, e.g.
        many parameters and few effective CG frames; converges more slowly when interactions
        compete for the same structure)
    significance : z of the significance filter of the Newton step (see :meth:`newton_step`;
        0 disables it); the gradient noise comes from block averages over ``n_blocks`` blocks
        of the reference and of each CG run
    min_samples : reference samples a basis function needs in its support to be optimised
    engine : CG MD engine, ``"cgkit"`` or ``"lammps"`` (see :mod:`cgkit.forcematch.ibi`)
    """

    def __init__(self, type_names, species, topology: Topology, masses, reference_positions,
                 reference_boxes, start_positions, box, *, temperature: float = 300.0,
                 pair_cutoff: float = 10.0, bins: int = 120, kinds=("pair",), alpha: float = 0.7,
                 md_steps: int = 5000, equilibration: int = 1000, sample_every: int = 50,
                 timestep: float = 5.0, friction: float = 0.01, pressure: float | None = None,
                 pressure_scale: float = 0.01, seed: int = 0, progress: bool = False,
                 start_tables=None, grids: dict | None = None, ridge: float = 0.3,
                 eigen_floor: float = 1e-3, max_step: float = 2.0, min_samples: int = 20,
                 smooth: float = 0.0, significance: float = 2.0, n_blocks: int = 10,
                 continue_runs: bool = True, coupling: str = "full", table_points: int = 10,
                 engine: str = "cgkit"):
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise InputError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        if ridge < 0 or not (0 <= eigen_floor < 1) or not (max_step > 0):
            raise InputError("need ridge ≥ 0, 0 ≤ eigen_floor < 1 and max_step > 0 (kT)")
        super().__init__(type_names, species, topology, masses, reference_positions, reference_boxes,
                         start_positions, box, temperature=temperature, pair_cutoff=pair_cutoff,
                         bins=bins, kinds=kinds, alpha=alpha, md_steps=md_steps,
                         equilibration=equilibration, sample_every=sample_every, timestep=timestep,
                         friction=friction, pressure=pressure, pressure_scale=pressure_scale,
                         seed=seed, progress=progress, start_tables=start_tables, engine=engine)
        self.beta = 1.0 / self.kT
        self.ridge, self.eigen_floor, self.max_step = float(ridge), float(eigen_floor), float(max_step)
        self.min_samples = int(min_samples)
        self.significance, self.n_blocks = float(significance), int(n_blocks)
        self.smooth = float(smooth)
        self.continue_runs = bool(continue_runs)
        if coupling not in ("full", "block"):
            raise InputError(f"coupling must be 'full' or 'block', got '{coupling}'")
        self.coupling = coupling
        self.table_points = max(int(table_points), 2)
        # ---- energy bases (interaction enumeration and per-frame samples from SplineForceMatching)
        self._fm = SplineForceMatching(self.type_names, self.species, topology, pair=None, bond=None,
                                       angle=None, dihedral=None, grids=self._default_grids(grids or {}),
                                       check=True)
        self.interactions = self._fm.interactions
        if not self.interactions:
            raise InputError(f"no interactions of kinds {list(self.kinds)} in this system")
        n = self._fm.n_coef
        self.n_params = n
        self.free = np.ones(n, dtype=bool)
        for it in self.interactions:
            if it.kind == "pair":
                self.free[it.offset + it.size - 3: it.offset + it.size] = False  # U(r_c) = 0
        self._mirrored = self._angle_end_mirrors()
        for dep, _ in self._mirrored:
            self.free[dep] = False  # set by the end rule in _normalised, never optimised
        # ---- start: Boltzmann inversion / start tables projected on the basis
        self.coef = np.zeros(n)
        for it in self.interactions:
            self.coef[it.columns] = self._project(it, self.tables[(it.kind, it.types)](self._fine_x(it))[0])
        self.coef = self._normalised(self.coef)
        self.start_coef = self.coef.copy()
        # ---- reference averages ⟨φ⟩_AA and sampling of every basis function
        ref = np.asarray(reference_positions, dtype=np.float64)
        ref = ref[None] if ref.ndim == 2 else ref
        counts = [np.zeros(it.basis.n_intervals, dtype=np.int64) for it in self.interactions]
        G = self.basis_vectors(ref, reference_boxes, counts=counts, desc="RE reference")
        self.target_mean = G.mean(0)
        self.target_mean_cov = mean_covariance(G, self.n_blocks)
        self.n_reference_frames = len(G)
        self.reference_counts = counts
        self.sampled = self._sampled(counts)
        self.held = self._held_ranges()
        self.active = self.free & self.sampled
        self._update_tables()
        self._last: dict = {}

    # ------------------------------------------------------------------ basis set-up
    def _default_grids(self, user: dict) -> dict:
        user = {str(k): v for k, v in user.items()}
        grids = {}
        for (kind, key), (x, dens) in self.targets.items():
            if kind not in self.kinds:
                continue
            label = type_label(kind, key)
            if label in user:
                grids[label] = user.pop(label)
                continue
            if kind == "pair":
                first = x[np.nonzero(dens > 0)[0][0]] if np.any(dens > 0) else 0.0
                lo = max(0.0, math.floor(10 * (first - 0.5)) / 10)
                grids[label] = (lo, self.pair_cutoff, _DEFAULT_SPACING["pair"])
            elif kind == "bond":
                lo, hi = self._ranges[(kind, key)]
                grids[label] = (lo, hi, (hi - lo) / 20)
            elif kind == "angle":
                grids[label] = (0.0, 180.0, _DEFAULT_SPACING["angle"])
            else:
                grids[label] = _DEFAULT_SPACING["dihedral"]
        other = [k for k in user if k.split()[0] in KINDS and Interaction.parse(k).kind not in self.kinds]
        if other:
            raise InputError(f"grids given for {other}, whose kind is not optimised (kinds = "
                             f"{list(self.kinds)}); add the kind or drop those grids")
        grids.update(user)  # unknown labels: SplineForceMatching names them in its error
        return grids

    def _fine_x(self, it) -> np.ndarray:
        b = it.basis
        m = b.n_intervals * self.table_points
        return np.linspace(b.x_min, b.x_max, m + 1)

    def _design(self, it, x) -> np.ndarray:
        idx, vals = basis_values(it, x)
        B = np.zeros((len(x), it.size))
        np.add.at(B, (np.repeat(np.arange(len(x)), 4), idx.ravel()), vals.ravel())
        return B

    def _project(self, it, U) -> np.ndarray:
        """Least-squares B-spline coefficients (it.size,) of U on the fine grid of ``it``
        (pinned pair coefficients stay 0; a tiny smoothness term fixes flat directions)."""
        x = self._fine_x(it)
        B = self._design(it, x)
        free = self.free[it.columns]
        D = it.basis.second_difference()
        A = B[:, free].T @ B[:, free] + 1e-8 * len(x) * (D[:, free].T @ D[:, free])
        c = np.zeros(it.size)
        c[free] = np.linalg.solve(A, B[:, free].T @ U)
        return c

    def _angle_end_mirrors(self) -> list[tuple[int, int]]:
        """[(dependent, source)] coefficient indices that give every angle table reaching θ = 0
        or π zero slope there: dU/dθ(x_min) = (c₂ − c₀)/2h and dU/dθ(x_max) = (c_{m−1} − c_{m−3})/2h
        for the open cubic B-spline basis, so c₀ = c₂ and c_{m−1} = c_{m−3} (U continued as an
        even function through the linear configuration; a non-zero end slope is a cusp whose
        bead forces diverge as 1/sin θ, the rule force matching and Boltzmann inversion keep)."""
        out = []
        for it in self.interactions:
            b = it.basis
            if it.kind != "angle" or b.periodic or it.size < 4:
                continue
            o, m = it.offset, it.size
            if b.x_min <= 1e-9:
                out.append((o, o + 2))
            if b.x_max >= math.pi - 1e-9:
                out.append((o + m - 1, o + m - 3))
        return out

    def _normalised(self, coef) -> np.ndarray:
        """Angle end rule (:meth:`_angle_end_mirrors`) applied, then bonded potentials shifted
        to minimum zero on their grid (a constant shift of all coefficients, by the partition of
        unity; it changes neither forces nor S_rel)."""
        c = coef.copy()
        for dep, src in self._mirrored:
            c[dep] = c[src]
        for it in self.interactions:
            if it.kind != "pair":
                c[it.columns] -= it.basis.value(c[it.columns], self._fine_x(it)).min()
        return c

    def _sampled(self, counts) -> np.ndarray:
        ok = np.zeros(self.n_params, dtype=bool)
        for it, c in zip(self.interactions, counts):
            b = it.basis
            for k in range(it.size):
                if b.periodic:
                    iv = [(k - 3 + j) % b.n_intervals for j in range(4)]
                else:
                    iv = [j for j in range(k - 3, k + 1) if 0 <= j < b.n_intervals]
                ok[it.offset + k] = c[iv].sum() >= self.min_samples
        return ok

    def _held_ranges(self) -> dict:
        """{label: [(lo, hi) internal units]} of free parameters held for lack of samples; warns."""
        out = {}
        for it, c in zip(self.interactions, self.reference_counts):
            held = np.nonzero(self.free[it.columns] & ~self.sampled[it.columns])[0]
            if not len(held):
                continue
            runs, start = [], held[0]
            for a, b in zip(held[:-1], held[1:]):
                if b != a + 1:
                    runs.append((start, a))
                    start = b
            runs.append((start, held[-1]))
            ranges = [(it.basis.support(int(a))[0], it.basis.support(int(b))[1]) for a, b in runs]
            out[it.label] = ranges
            txt = ", ".join(it.range_str(lo, hi) for lo, hi in ranges)
            if c.sum() == 0:
                msg = (f"{it.label}: the reference has no samples in its grid "
                       f"{it.range_str(it.basis.x_min, it.basis.x_max)}; all its parameters are held "
                       "at the start potential (check the grid or the interaction types)")
            else:
                msg = (f"{it.label}: fewer than {self.min_samples} reference samples for x in {txt}; "
                       "the potential there is held at its start values while the CG MD does not "
                       "sample it either")
            warnings.warn(msg, SparseSamplingWarning, stacklevel=3)
        return out

    # ------------------------------------------------------------------ accumulation
    def basis_vectors(self, positions, boxes, *, counts=None, desc="RE samples") -> np.ndarray:
        """φ (n_frames, n_params): per frame, Σ over instances of every basis function value
        (histogram-like accumulation; ``counts`` gets samples per grid interval)."""
        from ..progress import progress_bar
        pos = np.asarray(positions, dtype=np.float64)
        bx = per_frame_boxes(boxes, len(pos))
        G = np.zeros((len(pos), self.n_params))
        frames = progress_bar(range(len(pos)), desc=desc, unit="frame",
                              disable=None if self.progress else True)
        for f in frames:
            for k, _, x, _ in self._fm._instances(pos[f], bx[f]):
                it = self.interactions[k]
                x = x.numpy()
                idx, vals = basis_values(it, x)
                G[f] += np.bincount((it.offset + idx).ravel(), weights=vals.ravel(),
                                    minlength=self.n_params)
                if counts is not None:
                    b = it.basis
                    u = (x - b.x_min) / b.h
                    if b.periodic:
                        iv = np.floor(np.mod(u, b.n_intervals)).astype(np.int64) % b.n_intervals
                    else:
                        iv = np.floor(u[(u >= 0) & (u <= b.n_intervals)]).astype(np.int64)
                        iv = np.minimum(iv, b.n_intervals - 1)
                    counts[k] += np.bincount(iv, minlength=b.n_intervals)
        return G

    # ------------------------------------------------------------------ tables
    def table(self, it, coef=None) -> Table:
        """The :class:`Table` of interaction ``it`` for coefficients ``coef`` (default: current)."""
        c = (self.coef if coef is None else coef)[it.columns]
        x = self._fine_x(it)
        xt = torch.as_tensor(x)
        idx, d = it.basis.evaluate(xt, derivative=True)
        U = it.basis.value(c, x)
        dU = (c[idx.numpy()] * d.numpy()).sum(1)
        if it.kind == "pair":
            U[-1], dU[-1] = 0.0, 0.0
        if it.basis.periodic:
            U[-1], dU[-1] = U[0], dU[0]
        return Table(it.kind, it.types, x[0], x[1] - x[0], U, dU)

    def _update_tables(self) -> None:
        for it in self.interactions:
            self.tables[(it.kind, it.types)] = self.table(it)
        self.potential = self._potential()

    # ------------------------------------------------------------------ iterations
    def newton_step(self, grad, hess, grad_cov=None):
        """Damped, regularised Newton step Δλ (n_params,) eV on the optimised parameters, the
        interactions whose step was scaled down to the trust region (``max_step`` kT), and the
        number of eigen-directions kept by the significance filter.

        ``grad_cov`` (n_params, n_params): covariance of the gradient's statistical error. Each
        eigen-direction v_i of the regularised Hessian contributes its Newton step scaled by
        max(0, 1 − (z σ_i / |v_i·∇S|)²), σ_i² = v_iᵀ C v_i, z = ``significance``: directions
        the data do not resolve above their noise are not followed (their curvature is small,
        so a noisy gradient there would otherwise make large, random potential changes)."""
        a = self.active
        d = np.zeros(self.n_params)
        if not a.any():
            return d, [], 0
        if self.coupling == "block":  # drop the covariances between different interactions
            blocks = np.zeros_like(hess)
            for it in self.interactions:
                blocks[it.columns, it.columns] = hess[it.columns, it.columns]
            hess = blocks
        g, H = grad[a], hess[np.ix_(a, a)]
        R = np.zeros((self.n_params, self.n_params))
        for it in self.interactions:
            # Levenberg–Marquardt damping ridge·diag(H) (each parameter by its own curvature, so
            # directions that are soft only as combinations, e.g. a uniform shift of a pair
            # potential at constant volume, are damped) + optional smoothness, scaled by the
            # interaction's mean curvature
            c = it.columns
            diag = np.diag(hess)[c]
            s = float(diag[a[c] & (diag > 0)].mean()) if np.any(a[c] & (diag > 0)) else 1.0
            D = it.basis.second_difference()
            R[c, c] += np.diag(self.ridge * np.maximum(diag, 1e-6 * s)) + self.smooth * s * D.T @ D
        w, V = np.linalg.eigh(H + R[np.ix_(a, a)])
        w = np.maximum(w, self.eigen_floor * max(float(w.max()), 1e-300))
        c = V.T @ g
        f = np.ones_like(c)
        if grad_cov is not None and self.significance > 0:
            sig2 = np.einsum("ki,kl,li->i", V, grad_cov[np.ix_(a, a)], V)
            f = np.clip(1.0 - self.significance ** 2 * sig2 / np.maximum(c * c, 1e-300), 0.0, 1.0)
        d[a] = -self.alpha * (V @ (f * c / w))
        cap = self.max_step * self.kT
        capped = []
        for it in self.interactions:  # trust region per table: max |ΔU_t(x)| ≤ max_step kT
            m = float(np.abs(d[it.columns]).max())
            if m > cap:
                d[it.columns] *= cap / m
                capped.append(it.label)
        return d, capped, int((f > 0).sum())

    def pressure_shift(self, pressure) -> tuple[np.ndarray, float | None]:
        """Coefficient change (n_params,) and amplitude A (eV, None without a correction) of the
        pressure correction ΔU(r) = A (1 - r/r_c) for a measured ``pressure`` (GPa)."""
        d = np.zeros(self.n_params)
        if self.pressure is None or pressure is None:
            return d, None
        dp = pressure - self.pressure
        A = -math.copysign(min(abs(dp) * self.pressure_scale, 0.1 * self.kT), dp)
        for it in self.interactions:
            if it.kind == "pair":
                x = self._fine_x(it)
                d[it.columns] = self._project(it, A * (1 - x / it.basis.x_max))
        return d, A

    def step(self) -> dict:
        """One RE iteration: CG MD at the current λ, scores, Newton update; returns its record."""
        it_no = len(self.history)
        pos, pressure = self._simulate(it_no)
        if self.continue_runs:  # the next run starts where this one ended (less start bias)
            self.start = pos[-1].copy()
        dists = self._distributions(pos, self.cell)
        counts = [np.zeros(it.basis.n_intervals, dtype=np.int64) for it in self.interactions]
        G = self.basis_vectors(pos, self.cell, counts=counts, desc="RE CG samples")
        n_opt = int((self.free & self.sampled).sum())
        if len(G) <= n_opt:
            warnings.warn(f"only {len(G)} CG frames for about {n_opt} optimised parameters: the Hessian "
                          "estimate is rank-deficient and the Newton steps follow noise; store frames more "
                          "often (sample_every), run longer (md_steps) or use coarser grids",
                          SparseSamplingWarning, stacklevel=2)
        grad, hess = relative_entropy_derivatives(self.target_mean, G, self.beta)
        grad_cov = self.beta ** 2 * (self.target_mean_cov + mean_covariance(G, self.n_blocks))
        # optimised: sampled by the reference or by this CG run (a region only the CG model
        # visits gets a well-defined push up: ∂S/∂λ = -β⟨φ⟩_CG there)
        self.active = self.free & (self.sampled | self._sampled(counts))
        d, capped, n_kept = self.newton_step(grad, hess, grad_cov)
        a = self.active
        dS_quad = float(grad[a] @ d[a] + 0.5 * d[a] @ hess[np.ix_(a, a)] @ d[a])
        dS_fep = float(self.beta * (self.target_mean @ d) + _logmeanexp(-self.beta * (G @ d)))
        dp, A = self.pressure_shift(pressure)
        before = self.coef.copy()
        self.coef = self._normalised(self.coef + d + dp)
        self._update_tables()
        per = {}
        for it in self.interactions:
            m = a[it.columns]
            cov = grad_cov[it.columns, it.columns][np.ix_(m, m)]
            per[it.label] = {"gradient_norm": float(np.linalg.norm(grad[it.columns][m])),
                             "gradient_noise_norm": float(math.sqrt(max(np.trace(cov), 0.0))),
                             "max_parameter_change_eV": float(np.abs(d[it.columns]).max())}
        rec = {"iteration": it_no, "scores": self._scores(dists), "pressure_GPa": pressure,
               "gradient_norm": float(np.linalg.norm(grad[a])),
               "gradient_noise_norm": float(math.sqrt(max(np.trace(grad_cov[np.ix_(a, a)]), 0.0))),
               "significant_directions": n_kept,
               "delta_S_rel_quadratic": dS_quad, "delta_S_rel_fep": dS_fep,
               "max_parameter_change_eV": float(np.abs(d).max()), "step_capped": capped,
               "pressure_shift_eV": A, "n_cg_frames": len(G), "n_optimised": int(a.sum()),
               "interactions": per}
        self._last = {"dists": dists, "before": before}
        self.history.append(rec)
        return rec

    def run(self, n_iterations: int, directory=None) -> "RelativeEntropyMinimisation":
        """``n_iterations`` steps; with ``directory``: ``summary.json`` rewritten and
        ``plots/iteration_<k>.png`` written after every step."""
        for _ in range(int(n_iterations)):
            self.step()
            if directory is not None:
                self.write_iteration(directory)
        return self

    # ------------------------------------------------------------------ output
    def summary(self) -> dict:
        inter = []
        for it in self.interactions:
            b = it.basis
            inter.append({"interaction": it.label, "unit": _unit(it.kind),
                          "grid": [float(_to_user(it.kind, b.x_min)), float(_to_user(it.kind, b.x_max))],
                          "spacing": float(_to_user(it.kind, b.h)), "n_parameters": it.size,
                          "n_optimised": int(self.active[it.columns].sum()),
                          "reference_samples": int(self.reference_counts[self.interactions.index(it)].sum()),
                          "reference_unsampled_ranges": [
                              [float(_to_user(it.kind, lo)), float(_to_user(it.kind, hi))]
                              for lo, hi in self.held.get(it.label, [])]})
        return jsonable({
            "method": "relative entropy minimisation (Newton-Raphson, cubic B-spline energy basis)",
            "temperature_K": self.temperature, "alpha": self.alpha, "kinds": list(self.kinds),
            "ridge": self.ridge, "eigen_floor": self.eigen_floor, "max_step_kT": self.max_step,
            "significance_z": self.significance, "n_blocks": self.n_blocks, "coupling": self.coupling,
            "continue_runs": self.continue_runs,
            "min_samples": self.min_samples, "n_reference_frames": self.n_reference_frames,
            "pressure_target_GPa": self.pressure, "interactions": inter, "iterations": self.history,
            "coefficients_eV": {it.label: self.coef[it.columns] for it in self.interactions},
            "note": "js: Jensen-Shannon divergence (bits) of r²g(r) / bonded distributions; scores "
                    "and gradients of iteration k are for the potential before its update; "
                    "delta_S_rel (nats): change of S_rel by the update, quadratic model and "
                    "free-energy-perturbation estimate from the CG samples"})

    def write_tables(self, directory) -> list[Path]:
        """Every table of the current potential: x (Å or deg), U (eV), f = -dU/dx."""
        return write_table_files(self.potential.tables, directory)

    def write_iteration(self, directory) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.to_json(d / "summary.json")
        return self.plot_iteration(d / "plots" / f"iteration_{len(self.history) - 1:03d}.png")

    def plot_iteration(self, path) -> Path:
        """PNG of the last iteration: per optimised interaction the potential (start, before and
        after the update) and the target vs CG distribution."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.interactions)
        fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 5.8), squeeze=False)
        dists = self._last.get("dists", {})
        k_it = len(self.history) - 1
        for col, it in enumerate(self.interactions):
            u = _unit(it.kind)
            ax = axes[0, col]
            for coef, lab, ls in ((self.start_coef, "start", ":"),
                                  (self._last.get("before"), f"iteration {k_it}", "--"),
                                  (self.coef, f"after update {k_it}", "-")):
                if coef is None:
                    continue
                t = self.table(it, coef)
                ax.plot(_to_user(it.kind, t.x), t.U, ls, lw=1, label=lab)
            U_now = self.table(it).U
            ax.set_ylim(U_now.min() - 1.5 * self.kT, min(U_now.max(), U_now.min() + 12 * self.kT) + 0.5 * self.kT)
            ax.set_title(it.label, fontsize=9)
            ax.set_xlabel(f"{it.kind if it.kind != 'pair' else 'r'} ({u})")
            ax.set_ylabel("U (eV)")
            ax.legend(fontsize=7)
            ax = axes[1, col]
            key = (it.kind, it.types)
            if key in self.targets:
                x, target = self.targets[key]
                scale = math.pi / 180 if it.kind in ("angle", "dihedral") else 1.0
                xs = _to_user(it.kind, x)
                ax.plot(xs, target * scale, label="target")
                if key in dists:
                    js = self.history[-1]["scores"].get(it.label, {}).get("js") if self.history else None
                    ax.plot(xs, dists[key][1] * scale, "--",
                            label="CG" + (f" (JS {js:.2g})" if js is not None else ""))
            ax.set_xlabel(f"{it.kind if it.kind != 'pair' else 'r'} ({u})")
            ax.set_ylabel("g(r)" if it.kind == "pair" else f"probability density (1/{u})")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def plot(self, directory) -> list[Path]:
        """``history.png`` (JS divergences and |∇S_rel| per iteration) in ``directory``."""
        if not self.history:
            return []
        return [self.plot_history(Path(directory) / "history.png")]

    def plot_history(self, path) -> Path:
        """PNG: JS divergence of every distribution and |∇S_rel| per iteration."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        path = Path(path)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
        its = [r["iteration"] for r in self.history]
        labels = sorted({k for r in self.history for k in r["scores"]})
        for lab in labels:
            a1.semilogy(its, [max(r["scores"].get(lab, {}).get("js", np.nan), 1e-8) for r in self.history],
                        "o-", label=lab)
        a1.set_xlabel("iteration")
        a1.set_ylabel("JS divergence (bits)")
        a1.legend(fontsize=7)
        a2.semilogy(its, [r["gradient_norm"] for r in self.history], "o-")
        a2.set_xlabel("iteration")
        a2.set_ylabel("|∇S_rel| (1/eV)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
