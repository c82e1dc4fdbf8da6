"""Neural CG potential: an equivariant network (cgkit ENNP, bead types as species) on top of a
physical prior, trained by force matching on mapped forces.

The prior (e.g. the spline MS-CG :class:`TabulatedPotential`, or Boltzmann-inverted tables)
carries the bonded terms and the short-range repulsion; the network learns the remaining
mean force ``F_mapped - F_prior``. Training uses :class:`cgkit.train.Trainer` unchanged —
mini-batches, validation split, early stopping, EMA, checkpoints and exact resume — on an
extxyz file of residual forces (energy labels are unknown in force matching: they are written
as 0 and the energy loss weight is 0). The result is ``SumPotential([prior, ennp])``, a
regular cgkit Potential (MD, ASE, save/load).

Two network kinds (``kind``):

- ``"descriptor"`` (default): :class:`BeadDescriptorNet`, an invariant many-body bead model —
  per bead, Gaussian radial densities (two-body) and, within the first shell, the rotational
  invariants Σ_m |Σ_j w(r_ij) Y_lm(r̂_ij)|² for l = 0..l_max (three-body: the same information as
  Σ_jk w_j w_k P_l(cos θ_jik), the Steinhardt / ACE B2 invariants; q_l order parameters are
  built from them), fed to a small MLP per bead. Trained here with a plain loop: the residual
  forces F_mapped − F_prior are computed once, the neighbour edges of every training frame are
  built once and cached, frames are subsampled (``frames``), one line of progress per epoch,
  best validation state kept, early stopping. With ``refit`` (what ``cgkit fm --model nn``
  passes), prior and network are fitted **jointly** by backfitting: the MS-CG objective
  J = Σ |F_mapped − F_prior − F_net|² over the training frames is minimised alternately over the
  prior (an exact linear least-squares refit of the spline on F_mapped − F_net) and over the
  network (continued on F_mapped − F_prior), ``backfit_rounds`` times. A pair table fitted
  alone absorbs the pair projection of the many-body forces (an effective pair potential); the
  joint fit hands those forces to the network and gives the pair table that belongs with it.
  J is checked after every step (a prior refit that does not lower it is rejected) and
  reported in ``results["backfit"]``.
- ``"ennp"``: the equivariant cgkit ENNP through :class:`cgkit.train.Trainer` (much slower on
  thousands of beads: about 10 min per epoch on 2180 water beads).

Units: Å, eV, eV/Å.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..jsonutil import write_json

from ..data import AtomicGraph
from ..errors import InputError
from ..potential import Potential, SumPotential, scatter_sum
from .geometry import as_cell

__all__ = ["NeuralCGTraining", "BeadDescriptorNet", "force_residuals", "spline_refit"]


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


def spline_refit(type_names, species, topology, fm_kwargs: dict | None = None,
                 solve_kwargs: dict | None = None):
    """The prior refit of the joint (backfitted) neural CG fit: a callable
    ``refit(positions, forces, boxes) -> Potential`` that runs spline MS-CG
    (:class:`~cgkit.forcematch.SplineForceMatching` with ``fm_kwargs``, solved with
    ``solve_kwargs``: the same grids and solver settings as the prior's own fit) on the given
    frames and forces — :class:`NeuralCGTraining` calls it with F_mapped − F_network.

    positions, forces : (n_frames, n_beads, 3) Å, eV/Å; boxes : per-frame boxes or None."""
    from .boltzmann import SparseSamplingWarning
    from .mscg import SplineForceMatching
    fm_kwargs = dict(fm_kwargs or {})
    solve_kwargs = dict(solve_kwargs or {})

    def refit(positions, forces, boxes):
        import warnings
        fm = SplineForceMatching(type_names, species, topology, **fm_kwargs)
        fm.accumulate(positions, forces, boxes, progress=False)
        with warnings.catch_warnings():   # the prior's own fit already reported its sparse ranges
            warnings.simplefilter("ignore", SparseSamplingWarning)
            return fm.solve(**solve_kwargs).potential
    return refit


def _cosine_cutoff(r, rc):
    return 0.5 * (torch.cos(math.pi * r / rc) + 1.0) * (r < rc)


class BeadDescriptorNet(Potential):
    """Invariant many-body bead potential: E = Σ_i MLP(standardised descriptors of bead i).

    Descriptors of bead i (neighbours j within ``r_cut``):

    - radial: ρ_ik = Σ_j exp(−((r_ij − μ_k)/σ)²) f_c(r_ij; r_cut), ``n_radial`` centres μ_k from
      2.2 Å to r_cut − 0.3 Å, per neighbour type;
    - angular (neighbours within ``r_ang``): for shells s with weights
      w_s(r) = exp(−((r − ν_s)/0.3)²) f_c(r; r_ang) and l = 0..l_max,
      a_isl = (1/(2l+1)) Σ_m (Σ_j w_s(r_ij) Y_lm(r̂_ij))² = Σ_jk w_s(r_ij) w_s(r_ik) P_l(cos θ_jik)
      (Y with component normalisation; j = k terms included); with ``cross_shells`` also the
      mixed-shell invariants a_iss'l = (1/(2l+1)) Σ_m A_islm A_is'lm = Σ_jk w_s(r_ij) w_s'(r_ik)
      P_l(cos θ_jik) for s < s' (the full power spectrum, as in SOAP): the angles between a
      close neighbour and one farther out, e.g. water's interstitial fifth neighbour, which the
      same-shell terms see only through the tails of the shell weights.

    The MLP (SiLU, ``hidden`` widths) takes the descriptors standardised by the training-set mean
    and standard deviation (buffers) plus the one-hot bead type. Smooth in positions (cosine
    cut-offs), so MD-safe. Units: Å, eV; forces −∂E/∂r by autograd (base class).
    """

    #: a bead's energy depends on its neighbours within ``cutoff`` only (one edge hop): the LAMMPS
    #: export (:func:`cgkit.nn.export.export_lammps`) uses this for the ghost-atom range
    edge_hops = 1

    def __init__(self, type_names, *, r_cut: float = 5.0, r_ang: float = 3.7, n_radial: int = 10,
                 shells=(2.75, 3.25), l_max: int = 6, hidden=(48, 48), dtype: str = "float64",
                 cross_shells: bool = False):
        super().__init__()
        self.type_names = tuple(type_names)
        self.cutoff = float(r_cut)
        self.r_ang = float(r_ang)
        if not (0 < self.r_ang <= self.cutoff):
            raise InputError(f"r_ang ({r_ang} Å) must lie in (0, r_cut = {r_cut} Å]")
        self.n_radial = int(n_radial)
        self.shells = tuple(float(v) for v in shells)
        self.l_max = int(l_max)
        self.hidden = tuple(int(h) for h in hidden)
        dt = getattr(torch, dtype)
        nt = len(self.type_names)
        self.register_buffer("mu", torch.linspace(2.2, self.cutoff - 0.3, self.n_radial, dtype=dt))
        self.sigma = float((self.cutoff - 2.5) / max(self.n_radial - 1, 1))
        self.register_buffer("nu", torch.tensor(self.shells, dtype=dt))
        self.cross_shells = bool(cross_shells)
        ns = len(self.shells)
        self._shell_pairs = ([(a, b) for a in range(ns) for b in range(a, ns)] if self.cross_shells
                             else [(a, a) for a in range(ns)])
        self.n_features = self.n_radial * nt + len(self._shell_pairs) * (self.l_max + 1)
        self.register_buffer("feat_mean", torch.zeros(self.n_features, dtype=dt))
        self.register_buffer("feat_std", torch.ones(self.n_features, dtype=dt))
        layers, width = [], self.n_features + nt
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h, dtype=dt), torch.nn.SiLU()]
            width = h
        last = torch.nn.Linear(width, 1, dtype=dt)
        torch.nn.init.normal_(last.weight, std=0.01)
        torch.nn.init.zeros_(last.bias)
        self.mlp = torch.nn.Sequential(*layers, last)
        self._dtype_name = dtype

    def get_config(self) -> dict:
        return {"type_names": list(self.type_names), "r_cut": self.cutoff, "r_ang": self.r_ang,
                "n_radial": self.n_radial, "shells": list(self.shells), "l_max": self.l_max,
                "hidden": list(self.hidden), "dtype": self._dtype_name, "cross_shells": self.cross_shells}

    def descriptors(self, species, i, j, vec, n: int) -> torch.Tensor:
        """(n, n_features) raw descriptors from edges (centre ``i``, neighbour ``j``, vectors
        ``vec`` (E, 3) Å from the centre to its neighbour; both directions of every pair
        present); ``species`` (n,) bead type indices."""
        from e3nn import o3
        r = torch.linalg.norm(vec, dim=1)
        nt = len(self.type_names)
        g = torch.exp(-((r[:, None] - self.mu) / self.sigma) ** 2) * _cosine_cutoff(r, self.cutoff)[:, None]
        if nt > 1:   # one radial block per neighbour type
            oh = torch.nn.functional.one_hot(species[j], nt).to(g.dtype)
            g = (oh[:, :, None] * g[:, None, :]).reshape(g.shape[0], -1)  # traced size (LAMMPS export)
        rad = scatter_sum(g, i, n)                                     # (n, nt * n_radial)
        m = r < self.r_ang
        ia, va, ra = i[m], vec[m], r[m]
        w = torch.exp(-((ra[:, None] - self.nu) / 0.3) ** 2) * _cosine_cutoff(ra, self.r_ang)[:, None]
        Y = o3.spherical_harmonics(list(range(self.l_max + 1)), va, normalize=True,
                                   normalization="component")          # (Ea, (l_max+1)^2)
        A = scatter_sum(w[:, :, None] * Y[:, None, :], ia, n)          # (n, S, (l_max+1)^2)
        ang = []
        sa = [a for a, _ in self._shell_pairs]
        sb = [b for _, b in self._shell_pairs]
        for l in range(self.l_max + 1):
            Al = A[:, :, l * l:(l + 1) * (l + 1)]
            ang.append((Al[:, sa] * Al[:, sb]).sum(-1) / (2 * l + 1))   # (n, n_pairs)
        ang = torch.stack(ang, -1).reshape(n, -1)                      # (n, n_pairs*(l_max+1))
        return torch.cat([rad, ang], 1)

    def energies_from_edges(self, species, i, j, vec, n: int) -> torch.Tensor:
        """(n,) eV per bead from edges (see :meth:`descriptors`)."""
        d = (self.descriptors(species, i, j, vec, n) - self.feat_mean) / self.feat_std
        onehot = torch.nn.functional.one_hot(species, len(self.type_names)).to(d.dtype)
        return self.mlp(torch.cat([d, onehot], 1)).squeeze(-1)

    def atomic_energies(self, graph, positions, cell):
        i, j, vec, dist = self.neighbor_edges(graph, positions, cell)
        # positions.shape[0], not len(positions): a traced size stays dynamic (LAMMPS export)
        return self.energies_from_edges(graph.species, i, j, vec, positions.shape[0])


class NeuralCGTraining:
    """Train ENNP(bead graph) on mapped forces minus a prior's forces.

    prior : Potential (its ``type_names`` define the bead types)
    positions, forces : (n_frames, n_beads, 3) Å, eV/Å; boxes : per-frame or single box / None
    species : (n_beads,) indices into ``prior.type_names``; masses : (n_beads,) amu
    out : output folder; r_cut : Å; model : options of the network (descriptor: those of
    :class:`BeadDescriptorNet`; ennp: ENNP options, default a small invariant-ish model)
    kind : "descriptor", "ennp", or "auto" (default: ennp when ``model`` holds ENNP options such
    as channels / n_layers, else descriptor); progress : one line per epoch on stderr (descriptor)
    train : descriptor: max_epochs (30), max_frames (60, evenly subsampled), lr (3e-3, decayed
    to lr_final 3e-4), val_fraction (0.2), early_stopping_patience (6); backfit_epochs
    (max_epochs // 3, at least 1: network epochs per backfitting round, lr from backfit_lr 1e-3
    to lr_final); ennp: overrides of the :class:`cgkit.train.Trainer` config (max_epochs, batch_size, ...)
    refit : None (the prior stays as given) or a callable ``refit(positions, forces, boxes) ->
        Potential`` that refits the prior by linear least squares to the given forces (e.g.
        :func:`spline_refit`); descriptor only: prior and network are then fitted jointly by
        backfitting (module docstring), ``backfit_rounds`` (2) rounds of prior refit + network
        continuation after the first network fit
    """

    def __init__(self, prior, positions, forces, boxes, species, masses, out, *, r_cut: float = 6.0,
                 model: dict | None = None, train: dict | None = None, seed: int = 0,
                 kind: str = "auto", progress: bool = True, refit=None, backfit_rounds: int = 2):
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
        if kind == "auto":   # ENNP options (channels, n_layers) given: the equivariant network
            kind = "ennp" if set(model or {}) & {"channels", "n_layers", "hidden_channels"} else "descriptor"
        if kind not in ("descriptor", "ennp"):
            raise InputError(f"network kind {kind!r}: give 'descriptor' (fast invariant many-body "
                             "bead model) or 'ennp' (equivariant network)")
        self.kind = kind
        self.progress = progress
        if kind == "ennp":
            self.model = {"channels": 16, "l_max": 1, "n_layers": 2, "dtype": "float64", **(model or {})}
        else:
            # mixed-shell angular invariants on by default (the full first-shell three-body power
            # spectrum; the constructor's default stays False so that older saved models load)
            self.model = {"cross_shells": True, **(model or {})}
        self.train = dict(train or {})
        self.seed = seed
        if refit is not None and not callable(refit):
            raise InputError("refit must be a callable refit(positions, forces, boxes) -> Potential "
                             "(e.g. cgkit.forcematch.neural.spline_refit(...)) or None")
        if refit is not None and kind != "descriptor":
            raise InputError("the joint prior + network fit (refit) needs the descriptor network; "
                             "the ENNP is trained on the fixed prior")
        if int(backfit_rounds) < 0:
            raise InputError(f"backfit_rounds must be ≥ 0, got {backfit_rounds}")
        self.refit = refit
        self.backfit_rounds = int(backfit_rounds) if refit is not None else 0
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
        if self.kind == "descriptor":
            return self._run_descriptor()
        return self._run_ennp()

    # ------------------------------------------------------------------ fast descriptor model
    def _log(self, text):
        if self.progress:
            print(f"cgkit fm: {text}", file=sys.stderr, flush=True)

    def _run_descriptor(self) -> "NeuralCGTraining":
        cfg = {"max_epochs": 30, "max_frames": 60, "lr": 3e-3, "lr_final": 3e-4, "val_fraction": 0.2,
               "early_stopping_patience": 6, "normalization_frames": 10, "backfit_epochs": None,
               "backfit_lr": 1e-3, **self.train}
        if cfg["backfit_epochs"] is None:   # a third of the first fit's budget per round (30 -> 10)
            cfg["backfit_epochs"] = max(1, int(cfg["max_epochs"]) // 3)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        dt = self.prior.dtype
        allowed = {"r_ang", "n_radial", "shells", "l_max", "hidden", "cross_shells"}
        bad = set(self.model) - allowed
        if bad:
            raise InputError(f"unknown option(s) {sorted(bad)} of the descriptor network; allowed: "
                             f"{sorted(allowed)}")
        net = BeadDescriptorNet(self.type_names, r_cut=self.r_cut, **self.model).to(dt)
        n_all = len(self.positions)
        if n_all < 2:
            raise InputError(f"neural CG training needs at least 2 frames (got {n_all})")
        # frames subsampled evenly (neighbouring frames are correlated; thousands of beads per
        # frame give plenty of force samples)
        use = (np.unique(np.linspace(0, n_all - 1, int(cfg["max_frames"])).round().astype(int))
               if cfg["max_frames"] and n_all > cfg["max_frames"] else np.arange(n_all))
        n = len(use)
        t0 = time.perf_counter()
        species = torch.as_tensor(self.species)

        def prior_forces(prior, k):
            """(n_beads, 3) eV/Å of ``prior`` on frame ``use[k]``."""
            cell, pbc = as_cell(self._box(use[k]))
            g = AtomicGraph.from_arrays(self.positions[use[k]], cell, pbc, max(prior.cutoff, 1e-3),
                                        species=self.species, type_names=self.type_names, dtype=dt)
            return prior.compute(g)["forces"].detach().to(dt)

        # per frame: edges i, j, vectors (fixed), the mapped forces, and the residual F - F_prior
        # (updated when the prior is refitted)
        cache = []
        for k in range(n):
            cell, pbc = as_cell(self._box(use[k]))
            g = AtomicGraph.from_arrays(self.positions[use[k]], cell, pbc, max(net.cutoff, 1e-3),
                                        species=self.species, type_names=self.type_names, dtype=dt)
            i, j, vec, _ = net.neighbor_edges(g, g.positions, g.cell)
            fmap = torch.as_tensor(self.forces[use[k]], dtype=dt)
            cache.append([i, j, vec.detach(), fmap - prior_forces(self.prior, k), fmap])
        resid0 = [c[3].clone() for c in cache]      # what the given (pair-only) prior leaves
        self._log(f"neural CG: residual forces and neighbour edges of {n} of {n_all} frames cached "
                  f"({time.perf_counter() - t0:.0f} s)")
        perm = rng.permutation(n)
        n_val = max(1, int(round(cfg["val_fraction"] * n)))
        val, tr = perm[:n_val], perm[n_val:]
        if len(tr) == 0:
            raise InputError("no training frames left after the validation split; give more frames")
        nb = len(self.species)
        with torch.no_grad():
            feats = torch.cat([net.descriptors(species, cache[k][0], cache[k][1], cache[k][2], nb)
                               for k in tr[:cfg["normalization_frames"]]])
            net.feat_mean.copy_(feats.mean(0))
            net.feat_std.copy_(feats.std(0).clamp_min(1e-6))

        def forces(k, create_graph):
            i, j, vec = cache[k][:3]
            v = vec.clone().requires_grad_(True)
            e = net.energies_from_edges(species, i, j, v, nb).sum()
            gvec = torch.autograd.grad(e, v, create_graph=create_graph)[0]
            return scatter_sum(gvec, i, nb) - scatter_sum(gvec, j, nb)     # −∂E/∂x

        def evaluate(frames, reference=None):
            """Σ|r − F_net|² over the frames and Σ|r0|² (r: current residual F − F_prior; r0:
            that of the given prior, or the current one)."""
            se = ref = 0.0
            for k in frames:
                f = forces(k, False).detach()
                r = cache[k][3]
                se += float(((f - r) ** 2).sum())
                ref += float(((r if reference is None else reference[k]) ** 2).sum())
            return se, ref

        history = []
        t_train = time.perf_counter()

        def fit_network(epochs, lr, stage):
            """Adam on the current residuals from the current state, ``epochs`` at most; the best
            validation state (the starting state included) is kept."""
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            gamma = (cfg["lr_final"] / lr) ** (1.0 / max(epochs * len(tr), 1))
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
            best, _ = evaluate(val)
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            stale = 0
            for ep in range(1, epochs + 1):
                te = time.perf_counter()
                se_tr = ref_tr = 0.0
                for k in rng.permutation(tr):
                    f = forces(k, True)
                    r = cache[k][3]
                    loss = ((f - r) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    se_tr += float(loss.detach()) * r.numel()
                    ref_tr += float((r ** 2).sum())
                se_v, _ = evaluate(val)
                _, ref_v0 = evaluate(val, resid0)
                row = {"epoch": len(history) + 1, "stage": stage,
                       "train_rmse": math.sqrt(se_tr / (len(tr) * 3 * nb)),
                       "val_rmse": math.sqrt(se_v / (len(val) * 3 * nb)),
                       "val_rmse_zero": math.sqrt(ref_v0 / (len(val) * 3 * nb)),
                       "val_variance_explained": 1.0 - se_v / ref_v0 if ref_v0 > 0 else 0.0,
                       "seconds": time.perf_counter() - te}
                history.append(row)
                if not math.isfinite(se_v):
                    raise InputError(f"neural CG training diverged at epoch {ep} (non-finite validation "
                                     "error); lower the learning rate (train lr)")
                el = time.perf_counter() - t_train
                self._log(f"nn {stage} epoch {ep}/{epochs}: train RMSE {row['train_rmse']:.4f}, validation "
                          f"RMSE {row['val_rmse']:.4f} eV/Å (prior alone {row['val_rmse_zero']:.4f}; "
                          f"residual variance explained {100 * row['val_variance_explained']:.1f} %), "
                          f"{row['seconds']:.0f} s/epoch, {el:.0f} s so far")
                if se_v < best * (1 - 1e-4):
                    best, stale = se_v, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= cfg["early_stopping_patience"]:
                        self._log(f"nn {stage}: early stop at epoch {ep} (no validation gain for {stale} epochs)")
                        break
            net.load_state_dict(best_state)

        objective = []

        def record(step):
            """The MS-CG objective of prior + network (RMS force residual, eV/Å) on the training
            and validation frames."""
            se_t, _ = evaluate(tr)
            se_v, _ = evaluate(val)
            objective.append({"step": step, "train_rmse": math.sqrt(se_t / (len(tr) * 3 * nb)),
                              "val_rmse": math.sqrt(se_v / (len(val) * 3 * nb))})
            self._log(f"backfit {step}: RMS force residual of prior + network {objective[-1]['train_rmse']:.5f} "
                      f"(training), {objective[-1]['val_rmse']:.5f} eV/Å (validation)")

        prior = self.prior
        fit_network(int(cfg["max_epochs"]), cfg["lr"], "network" if not self.backfit_rounds else "round 0 network")
        refits = []
        if self.backfit_rounds:
            record("round 0: network on the given prior")
        for rnd in range(1, self.backfit_rounds + 1):
            tp = time.perf_counter()
            f_net = [forces(k, False).detach() for k in tr]
            new_prior = self.refit(self.positions[use[tr]],
                                   np.array([(cache[k][4] - fn).cpu().numpy() for k, fn in zip(tr, f_net)]),
                                   None if self.boxes is None else np.array([self._box(use[k]) for k in tr]))
            old = [cache[k][3] for k in range(n)]
            for k in range(n):
                cache[k][3] = cache[k][4] - prior_forces(new_prior, k)
            prev = objective[-1]["train_rmse"]
            record(f"round {rnd}: prior refitted on F - F_net")
            accepted = objective[-1]["train_rmse"] <= prev * (1 + 1e-9)
            refits.append({"round": rnd, "accepted": accepted, "seconds": time.perf_counter() - tp})
            if accepted:
                prior = new_prior
            else:   # cannot happen for an exact least-squares refit; kept as a guard
                for k in range(n):
                    cache[k][3] = old[k]
                objective[-1]["rejected"] = True
                self._log(f"backfit round {rnd}: the refitted prior does not lower the objective; "
                          "kept the previous one")
            fit_network(int(cfg["backfit_epochs"]), cfg["backfit_lr"], f"round {rnd} network")
            record(f"round {rnd}: network continued on F - F_prior")
        net.eval()
        self.network = net
        self.prior_fitted = prior
        self.potential = SumPotential([prior, net])
        self.potential.save(self.out / "cg_nn_potential.pt", metadata={"masses": self.masses.tolist()})
        if prior is not self.prior:
            prior.save(self.out / "cg_prior_joint.pt", metadata={"masses": self.masses.tolist()})
        se_v, _ = evaluate(val)
        _, ref_v = evaluate(val, resid0)
        se_t, _ = evaluate(tr)
        _, ref_t = evaluate(tr, resid0)

        def per_type(frames, with_net):
            out = {}
            for t, name in enumerate(self.type_names):
                msk = torch.as_tensor(self.species == t)
                if not bool(msk.any()):
                    continue
                err = ref = 0.0
                cnt = 0
                for k in frames:
                    r = (cache[k][3] - forces(k, False).detach())[msk] if with_net else resid0[k][msk]
                    err += float((r ** 2).sum())
                    ref += float((cache[k][4][msk] ** 2).sum())
                    cnt += r.numel()
                out[name] = {"rms_residual_eV_per_A": math.sqrt(err / cnt),
                             "rms_force_eV_per_A": math.sqrt(ref / cnt)}
            return out
        train_rmse = [o["train_rmse"] for o in objective if not o.get("rejected")]   # accepted states
        self.results = {
            "kind": "descriptor", "model": net.get_config(),
            "prior": per_type(val, False), "prior_plus_nn": per_type(val, True),
            "evaluated_on": f"{len(val)} validation frames",
            # share of the variance of the forces the given prior leaves that the final model
            # (refitted prior + network) explains
            "residual_variance_explained": {"validation": 1 - se_v / ref_v if ref_v > 0 else 0.0,
                                            "training": 1 - se_t / ref_t if ref_t > 0 else 0.0},
            "frames": {"training": int(len(tr)), "validation": int(len(val)), "available": int(n_all)},
            "frame_indices": {"training": sorted(int(use[k]) for k in tr),
                              "validation": sorted(int(use[k]) for k in val)},
            "epochs": history, "config": cfg,
            "backfit": {"rounds": self.backfit_rounds, "objective": objective, "refits": refits,
                        "monotonic": bool(all(b <= a * (1 + 1e-9) for a, b in zip(train_rmse, train_rmse[1:])))},
            "timing_seconds": {"cache": t_train - t0, "training": time.perf_counter() - t_train}}
        if self.backfit_rounds and not self.results["backfit"]["monotonic"]:
            self._log("backfit: warning: the training objective did not decrease monotonically "
                      f"({', '.join(f'{x:.5f}' for x in train_rmse)} eV/Å)")
        if prior is not self.prior:
            self._plot_pair_tables(prior)
        write_json(self.out / "summary.json", self.results)
        return self

    def _plot_pair_tables(self, prior):
        """``prior_pair_tables.png``: the pair forces of the given prior and of the jointly
        fitted one (when both have pair tables)."""
        try:
            old = {t.types: t for t in getattr(self.prior, "tables", []) if t.kind == "pair"}
            new = {t.types: t for t in getattr(prior, "tables", []) if t.kind == "pair"}
        except TypeError:
            return
        if not old or not new:
            return
        from ..plotting import pyplot, savefig
        plt = pyplot()
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        for key, t in new.items():
            lab = "-".join(key)
            for tab, ls, what in ((old.get(key), "--", "prior alone"), (t, "-", "joint with network")):
                if tab is None:
                    continue
                m = tab.x >= max(tab.x0, 2.3)
                ax[0].plot(tab.x[m], tab.force[m], ls, label=f"{lab} {what}")
                ax[1].plot(tab.x[m], tab.U[m], ls, label=f"{lab} {what}")
        ax[0].set(xlabel="r (Å)", ylabel="pair force f = −dU/dr (eV/Å)", ylim=(-0.5, 1.0))
        ax[1].set(xlabel="r (Å)", ylabel="pair potential U (eV)", ylim=(-0.15, 0.2))
        ax[0].legend(fontsize=7)
        fig.tight_layout()
        savefig(fig, self.out / "prior_pair_tables.png")

    def _run_ennp(self) -> "NeuralCGTraining":
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
