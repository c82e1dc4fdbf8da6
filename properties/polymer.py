"""Polymer behaviour of atomistic and coarse-grained trajectories: size, shape, stiffness,
scaling, local structure and dynamics, per chain species, with block-average error bars.

>>> from cgkit.properties.polymer import PolymerAnalysis
>>> pa = PolymerAnalysis(u.select_atoms("type C"), n_blocks=5).run(step=10)
>>> pa.results.groups["PE:N100"]["rg"]          # {'value': .., 'error': .., 'unit': 'Å'}
>>> pa.to_json("summary.json"); pa.plot("plots/")

Definitions (L backbone beads per chain, n_b = L − 1 bonds, b_i backbone bond vectors):

* ``rg`` ⟨R_g⟩, ``rg2`` ⟨R_g²⟩ from the gyration tensor S = Σ w (r − r_c)(r − r_c)ᵀ / Σ w
  over all chain atoms (mass-weighted by default, as MDAnalysis ``radius_of_gyration``);
  eigenvalues λ₁ ≥ λ₂ ≥ λ₃: asphericity λ₁ − (λ₂ + λ₃)/2 (Å²), acylindricity λ₂ − λ₃ (Å²),
  relative shape anisotropy κ² = 1 − 3(λ₁λ₂ + λ₂λ₃ + λ₃λ₁)/(λ₁ + λ₂ + λ₃)² (0 sphere … 1 rod).
* ``ree2`` ⟨R_ee²⟩ between the first and last backbone bead; ``C_n`` = ⟨R_ee²⟩ / (n_b ⟨b²⟩).
* internal distances R²(n) = ⟨|r_{i+n} − r_i|²⟩ over all backbone pairs; ``nu`` from
  R(n) ∝ n^ν over ``flory_range``; ``flory_from_sizes`` from ⟨R_g²⟩^{1/2} ∝ N^ν across species.
* bond autocorrelation C(n) = ⟨b̂_i · b̂_{i+n}⟩, averaged over the n_b − n pairs at separation n
  in every chain and every analysed frame (the normalisation MDAnalysis issue #5453 gets wrong
  for sliced runs); ``lp_acf`` fits C(s) = exp(−s/l_p) with s = n⟨b⟩; ``lp_wlc`` solves the
  worm-like-chain relation ⟨R_ee²⟩ = 2 l_p L_c − 2 l_p² (1 − e^{−L_c/l_p}), L_c = n_b ⟨b⟩.
* bond angle θ at the middle bead (180° = straight); dihedral φ, IUPAC (trans = 180°);
  trans |φ| > 120°, gauche⁺ 0 ≤ φ ≤ 120°, gauche⁻ −120° ≤ φ < 0.
* RDF of chain atoms (periodic systems): total, inter-chain and intra-chain, each normalised by
  its own number of ordered pairs N_p as g(r) = counts / (n_frames · N_p / ⟨V⟩ · shell volume).
* MSD of chain centres of mass and of monomers (chains unwrapped by bonds, then in time by the
  minimum image between analysed frames — analysed frames must be closer than half a box
  length of motion); D from MSD = 6 D t over ``msd_fit_window`` of the lag range.

Error bars: standard error of block estimates. ``error_method='time'`` splits the analysed
frames into ``n_blocks`` contiguous blocks (correlated time series); ``'chains'`` splits the
chains into max(n_blocks, 20) groups (independent chains, few frames); ``'auto'`` uses time when there are at least
2·n_blocks frames, chains otherwise. Derived quantities (ratios, fits) are computed per block.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from cgkit.jsonutil import jsonable
from MDAnalysis.analysis.base import AnalysisBase

from cgkit.errors import InputError, StructureError
from cgkit.progress import progress_bar
from cgkit.results import Analysis

from .polymer_chains import Chains, has_box, minimum_image
from .polymer_stats import (autocorrelation_sum, block_error, block_indices, diffusion_fit,
                            exponential_decay_length, flory_fit, mean_square_separation,
                            wlc_persistence_length)

__all__ = ["PolymerAnalysis", "flory_exponent_from_sizes"]

PS_TO_FS = 1000.0


def _q(value, error, unit):
    return {"value": float(value), "error": float(error), "unit": unit}


def _half_width(box) -> float:
    from MDAnalysis.lib.mdamath import triclinic_vectors
    a, b, c = triclinic_vectors(box).astype(float)
    vol = abs(np.dot(a, np.cross(b, c)))
    widths = [vol / np.linalg.norm(np.cross(b, c)), vol / np.linalg.norm(np.cross(c, a)),
              vol / np.linalg.norm(np.cross(a, b))]
    return 0.5 * min(widths)


class PolymerAnalysis(AnalysisBase, Analysis):
    """Everything a polymer (CG) modeller checks on a trajectory, per chain species.

    An MDAnalysis ``AnalysisBase`` (``run(start, stop, step)``, ``.results``) that follows
    cgkit's results protocol too: :meth:`summary`, :meth:`to_json` (strict JSON, atomic) and
    :meth:`plot` ``(directory) -> list[Path]``. ``run(..., progress=True)`` reports progress
    over frames (a bar on a terminal, one line with an ETA every 30 s otherwise). A frame with
    NaN/inf positions or box is a :class:`~cgkit.errors.StructureError` naming the file, the
    0-based frame and the atoms; an unreadable frame an :class:`~cgkit.errors.InputError`.

    Parameters
    ----------
    atomgroup : MDAnalysis AtomGroup: whole molecules or their bonded backbone. The universe
        needs bonds (topology file, or ``guess_bonds``). Chains = connected components of the
        bonds inside the selection; species = (residue names, backbone length).
    weights : ``"mass"`` (MDAnalysis convention; falls back to uniform without masses) or None
        (every atom counts the same) — for R_g and centres of mass.
    n_blocks : blocks for error bars. error_method : ``"auto"``, ``"time"`` or ``"chains"``.
    bins : histogram bins for bond lengths, R_ee (angles: 1°, dihedrals: 2.5°).
    flory_range : (n_min, n_max) backbone separations for ν; default (max(2, L//10), L//2).
    acf_threshold : fit C(s) only up to where it first drops below this (None: all points).
    rdf : compute RDFs (needs a box); rdf_range (r_min, r_max) Å, default (0, min(15, half box));
        rdf_bins.
    msd : ``"chains"``, ``"all"`` (chains and monomers) or None. msd_fit_window: fractions of
        the largest lag used for D.
    min_beads : ignore bonded components smaller than this (ions, water).
    """

    def __init__(self, atomgroup, *, weights="mass", n_blocks: int = 5, error_method: str = "auto",
                 bins: int = 100, flory_range=None, acf_threshold: float | None = 0.05,
                 rdf: bool = True, rdf_range=None, rdf_bins: int = 75, msd: str | None = "all",
                 msd_fit_window=(0.1, 0.5), min_beads: int = 2, verbose: bool = False):
        super().__init__(atomgroup.universe.trajectory, verbose=verbose)
        if error_method not in ("auto", "time", "chains"):
            raise InputError(f"error_method must be 'auto', 'time' or 'chains', not {error_method!r}")
        if msd not in (None, "chains", "all"):
            raise InputError(f"msd must be None, 'chains' or 'all', not {msd!r}")
        if weights not in (None, "mass"):
            raise InputError(f"weights must be 'mass' or None, not {weights!r}")
        if int(n_blocks) < 2:
            raise InputError(f"n_blocks must be at least 2 to estimate an error bar, got {n_blocks}")
        self.atomgroup = atomgroup
        self.chains = Chains(atomgroup, min_beads=min_beads)
        self.n_blocks, self.error_method, self.bins = int(n_blocks), error_method, int(bins)
        self.flory_range, self.acf_threshold = flory_range, acf_threshold
        self.do_rdf, self.rdf_range, self.rdf_bins = bool(rdf), rdf_range, int(rdf_bins)
        self.msd, self.msd_fit_window = msd, tuple(msd_fit_window)
        w = None
        if weights == "mass" and hasattr(atomgroup.universe._topology, "masses"):
            w = np.asarray(atomgroup.masses, dtype=np.float64)
            if not np.all(np.isfinite(w)) or np.any(w[self.chains.atom_order] <= 0):
                w = None
        self._uniform = w is None
        self._w = np.ones(len(atomgroup)) if w is None else w
        ch = self.chains
        self._wa = self._w[ch.atom_order]
        self._wsum = np.add.reduceat(self._wa, ch.atom_start)

    # ------------------------------------------------------------------ running
    def run(self, start=None, stop=None, step=None, frames=None, verbose=None, *, progress: bool = False,
            **kwargs) -> "PolymerAnalysis":
        """Analyse the selected frames (MDAnalysis ``AnalysisBase.run`` arguments);
        ``progress``: report progress over frames (cgkit's progress lines / bar)."""
        self._progress = bool(progress)
        self._bar = None
        try:
            super().run(start=start, stop=stop, step=step, frames=frames,
                        verbose=False if progress else verbose, **kwargs)
        except (OSError, EOFError) as exc:   # the trajectory reader, e.g. a file cut short
            done = getattr(self, "_frame_index", -1) + 1
            raise InputError(f"cannot read the trajectory {self._source()} after {done} analysed "
                             f"frame(s): {type(exc).__name__}: {exc}; the file is cut short or "
                             "corrupt: analyse fewer frames (--stop) or repair it") from None
        finally:
            if self._bar is not None:
                self._bar.close()
        return self

    def _source(self) -> str:
        return str(getattr(self._trajectory, "filename", None) or "the trajectory")

    def _check_finite(self, ts, pos):
        if not np.isfinite(pos).all():
            bad = np.asarray(self.atomgroup.indices)[~np.isfinite(pos).all(axis=1)]
            shown = ", ".join(str(int(i)) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
            raise StructureError(
                f"frame {ts.frame} of {self._source()}: positions of {len(bad)} atom(s) are NaN or "
                f"inf (atoms {shown}, 0-based); the simulation blew up or the file is corrupt: "
                f"analyse the frames before it (--stop {ts.frame}) or repair the file")
        if ts.dimensions is not None and not np.isfinite(ts.dimensions).all():
            raise StructureError(f"frame {ts.frame} of {self._source()}: the box is NaN or inf "
                                 f"({list(ts.dimensions)}); the file is corrupt")

    # ------------------------------------------------------------------ per frame
    def _prepare(self):
        nf = self.n_frames
        ch = self.chains
        if getattr(self, "_progress", False):
            self._bar = progress_bar(total=nf, desc="polymer analysis", unit="frame")
        self._g = []
        for grp in ch.groups:
            C, L = len(grp.chain_ids), grp.n_beads
            self._g.append(dict(
                rg2=np.zeros((nf, C)), ree2=np.zeros((nf, C)), lam=np.zeros((nf, C, 3)),
                bmean=np.zeros((nf, C)), b2mean=np.zeros((nf, C)),
                r2n_f=np.zeros((nf, L)), r2n_c=np.zeros((C, L)),
                acf_f=np.zeros((nf, max(L - 1, 1))), acf_c=np.zeros((C, max(L - 1, 1))),
                tg_f=np.zeros((nf, 3)), tg_c=np.zeros((C, 3)),
                h=None))
        self._vol = np.zeros(nf)
        self._rdf_counts = None
        self._com = np.zeros((nf, ch.n_chains, 3)) if self.msd else None
        self._mono = None
        if self.msd == "all":
            nbytes = nf * len(ch.atom_order) * 3 * 4
            if nbytes > 4e9:
                warnings.warn(f"monomer MSD would store {nbytes / 1e9:.1f} GB; computing the "
                              "chain-centre MSD only (analyse fewer frames or use msd='chains')")
                self.msd = "chains"
            else:
                self._mono = np.zeros((nf, len(ch.atom_order), 3), dtype=np.float32)
        self._prev = None

    def _init_hist(self, gi, bl, contour):
        bmax = 2.0 * float(bl.max())
        self._g[gi]["h"] = dict(
            bond_length=[np.linspace(0.0, bmax, self.bins + 1), 0],
            bond_angle=[np.linspace(0.0, 180.0, 181), 0],
            dihedral=[np.linspace(-180.0, 180.0, 145), 0],
            ree=[np.linspace(0.0, 1.25 * float(contour.max()), self.bins + 1), 0])

    def _hist(self, gi, name, values):
        h = self._g[gi]["h"][name]
        h[1] = h[1] + np.histogram(values, bins=h[0])[0]

    def _single_frame(self):
        f = self._frame_index
        ch = self.chains
        ts = self._ts
        pos = self.atomgroup.positions.astype(np.float64)
        self._check_finite(ts, pos)
        box = ts.dimensions if has_box(ts.dimensions) else None
        u = ch.unwrap(pos, box)
        if box is not None:
            self._vol[f] = ts.volume
        # gyration tensors of all chains at once
        ua = u[ch.atom_order]
        com = np.add.reduceat(ua * self._wa[:, None], ch.atom_start) / self._wsum[:, None]
        dr = ua - com[ch.atom_chain]
        gyr = np.add.reduceat(self._wa[:, None, None] * dr[:, :, None] * dr[:, None, :],
                              ch.atom_start) / self._wsum[:, None, None]
        lam = np.linalg.eigvalsh(gyr)[:, ::-1]
        for gi, grp in enumerate(ch.groups):
            d = self._g[gi]
            ids = grp.chain_ids
            X = u[grp.backbone]                                   # (C, L, 3)
            B = X[:, 1:] - X[:, :-1]
            bl = np.linalg.norm(B, axis=-1)
            if d["h"] is None:
                self._init_hist(gi, bl, bl.sum(axis=1))
            d["lam"][f] = lam[ids]
            d["rg2"][f] = lam[ids].sum(axis=1)
            ree = X[:, -1] - X[:, 0]
            d["ree2"][f] = (ree * ree).sum(axis=1)
            d["bmean"][f] = bl.mean(axis=1)
            d["b2mean"][f] = (bl * bl).mean(axis=1)
            self._hist(gi, "bond_length", bl)
            self._hist(gi, "ree", np.sqrt(d["ree2"][f]))
            r2n = mean_square_separation(X)                        # (C, L)
            d["r2n_f"][f] = r2n.mean(axis=0)
            d["r2n_c"] += r2n
            U = B / bl[..., None]
            nb = U.shape[1]
            acf = autocorrelation_sum(U) / (nb - np.arange(nb))    # per-separation pair count
            d["acf_f"][f] = acf.mean(axis=0)
            d["acf_c"] += acf
            if nb >= 2:
                cosb = np.clip((U[:, :-1] * U[:, 1:]).sum(-1), -1.0, 1.0)
                self._hist(gi, "bond_angle", np.degrees(np.arccos(-cosb)))
            if nb >= 3:
                b1, b2, b3 = B[:, :-2], B[:, 1:-1], B[:, 2:]
                n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
                y = np.linalg.norm(b2, axis=-1) * (b1 * n2).sum(-1)
                x = (n1 * n2).sum(-1)
                phi = np.degrees(np.arctan2(y, x))
                self._hist(gi, "dihedral", phi)
                counts = np.stack([(np.abs(phi) > 120).sum(1), ((phi >= 0) & (phi <= 120)).sum(1),
                                   ((phi < 0) & (phi >= -120)).sum(1)], axis=1)
                d["tg_f"][f] = counts.sum(0)
                d["tg_c"] += counts
        if self.msd:
            if self._prev is None:
                self._cum = u[ch.atom_order].copy()
            else:
                step = u[ch.atom_order] - self._prev
                self._cum += minimum_image(step, box)
            self._prev = u[ch.atom_order]
            self._com[f] = np.add.reduceat(self._cum * self._wa[:, None], ch.atom_start) / self._wsum[:, None]
            if self._mono is not None:
                self._mono[f] = self._cum
        if self.do_rdf and box is not None:
            self._rdf_frame(pos[ch.atom_order], box)
        if getattr(self, "_bar", None) is not None:
            self._bar.update(1)

    def _rdf_frame(self, x, box):
        from MDAnalysis.lib.distances import self_capped_distance
        if self._rdf_counts is None:
            hw = _half_width(box)
            lo, hi = self.rdf_range if self.rdf_range is not None else (0.0, min(15.0, hw))
            if hi > hw * (1 + 1e-9):
                raise InputError(f"rdf_range upper limit {hi:g} Å exceeds half the box width "
                                 f"({hw:.3g} Å), where minimum-image distances stop being valid: "
                                 f"set rdf_range to at most (0, {hw:.3g})")
            self._rdf_edges = np.linspace(lo, hi, self.rdf_bins + 1)
            self._rdf_counts = np.zeros((2, self.rdf_bins))
            self._rdf_frames = 0
        pairs, dist = self_capped_distance(x.astype(np.float32), self._rdf_edges[-1], box=box)
        intra = self.chains.atom_chain[pairs[:, 0]] == self.chains.atom_chain[pairs[:, 1]]
        self._rdf_counts[0] += np.histogram(dist[~intra], bins=self._rdf_edges)[0]
        self._rdf_counts[1] += np.histogram(dist[intra], bins=self._rdf_edges)[0]
        self._rdf_frames += 1

    # ------------------------------------------------------------------ conclusion
    def _blocks(self, n_chains):
        nf = self.n_frames
        method = self.error_method
        if method == "auto":
            method = "time" if nf >= 2 * self.n_blocks else "chains"
        if method == "chains" and n_chains < 2:
            method = "time"
        # chains are independent samples: use more (smaller) blocks for a steadier error estimate
        idx = block_indices(nf, self.n_blocks) if method == "time" else \
            block_indices(n_chains, max(self.n_blocks, 20))
        return method, idx

    def _view(self, d, L, frames=None, chains=None):
        """Averages restricted to frames (time block) or chains (chain block)."""
        fs = slice(None) if frames is None else frames
        cs = slice(None) if chains is None else chains
        lam = d["lam"][fs][:, cs]
        tr = lam.sum(-1)
        k2 = 1.0 - 3.0 * (lam[..., 0] * lam[..., 1] + lam[..., 1] * lam[..., 2]
                          + lam[..., 2] * lam[..., 0]) / np.where(tr > 0, tr, np.nan) ** 2
        v = dict(rg2=d["rg2"][fs][:, cs].mean(), rg=np.sqrt(d["rg2"][fs][:, cs]).mean(),
                 ree2=d["ree2"][fs][:, cs].mean(), ree=np.sqrt(d["ree2"][fs][:, cs]).mean(),
                 b=d["bmean"][fs][:, cs].mean(), b2=d["b2mean"][fs][:, cs].mean(),
                 asphericity=(lam[..., 0] - 0.5 * (lam[..., 1] + lam[..., 2])).mean(),
                 acylindricity=(lam[..., 1] - lam[..., 2]).mean(), kappa2=np.nanmean(k2))
        if chains is None:
            v["r2n"] = d["r2n_f"][fs].mean(0)
            v["acf"] = d["acf_f"][fs].mean(0)
            tg = d["tg_f"][fs].sum(0)
        else:
            nf = self.n_frames
            v["r2n"] = d["r2n_c"][cs].sum(0) / (nf * len(chains))
            v["acf"] = d["acf_c"][cs].sum(0) / (nf * len(chains))
            tg = d["tg_c"][cs].sum(0)
        v["tg"] = tg / tg.sum() if tg.sum() > 0 else np.full(3, np.nan)
        return v

    def _estimates(self, v, L):
        nb = L - 1
        n = np.arange(L)
        fr = self.flory_range if self.flory_range is not None else (max(2, L // 10), max(3, L // 2))
        nu, _ = flory_fit(n[1:], v["r2n"][1:], fr) if L >= 4 else (np.nan, np.nan)
        s = np.arange(len(v["acf"])) * v["b"]
        lp_acf = exponential_decay_length(s, v["acf"], self.acf_threshold) if nb >= 2 else np.nan
        return dict(
            rg=v["rg"], rg2=v["rg2"], ree=v["ree"], ree2=v["ree2"],
            ree2_over_rg2=v["ree2"] / v["rg2"], C_n=v["ree2"] / (nb * v["b2"]),
            asphericity=v["asphericity"], acylindricity=v["acylindricity"], kappa2=v["kappa2"],
            bond_length=v["b"], nu=nu, lp_acf=lp_acf,
            lp_wlc=wlc_persistence_length(v["ree2"], nb * v["b"]),
            trans_fraction=v["tg"][0], gauche_plus_fraction=v["tg"][1],
            gauche_minus_fraction=v["tg"][2])

    UNITS = dict(rg="Å", rg2="Å^2", ree="Å", ree2="Å^2", ree2_over_rg2="1", C_n="1",
                 asphericity="Å^2", acylindricity="Å^2", kappa2="1", bond_length="Å", nu="1",
                 lp_acf="Å", lp_wlc="Å", trans_fraction="1", gauche_plus_fraction="1",
                 gauche_minus_fraction="1")

    def _conclude(self):
        if self.n_frames == 0:
            raise InputError("no frames were analysed: check start/stop/step against the trajectory length")
        ch = self.chains
        res = self.results
        res.n_frames = int(self.n_frames)
        res.times = np.asarray(self.times, dtype=float) * PS_TO_FS
        res.n_chains = ch.n_chains
        res.weights = "uniform" if self._uniform else "mass"
        res.groups = {}
        self._block_views = {}
        for gi, grp in enumerate(ch.groups):
            d = self._g[gi]
            L, C = grp.n_beads, len(grp.chain_ids)
            method, blocks = self._blocks(C)
            full = self._view(d, L)
            est = self._estimates(full, L)
            views = [self._view(d, L, frames=b) if method == "time" else self._view(d, L, chains=b)
                     for b in blocks]
            self._block_views[grp.label] = (method, views)
            bests = [self._estimates(v, L) for v in views]
            g = dict(n_chains=C, n_beads=L, error_method=method, n_blocks=len(blocks))
            for k, val in est.items():
                g[k] = _q(val, block_error(val, [b[k] for b in bests]), self.UNITS[k])
            n = np.arange(L)
            r2_blocks = np.array([v["r2n"] for v in views])
            acf_blocks = np.array([v["acf"] for v in views])
            sem = lambda a: (np.std(a, axis=0, ddof=1) / np.sqrt(len(a)) if len(a) > 1  # noqa: E731
                             else np.full(a.shape[1:], np.nan))
            g["internal_distances"] = dict(n=n, R2=full["r2n"], R2_error=sem(r2_blocks), unit="Å^2")
            with np.errstate(divide="ignore", invalid="ignore"):
                g["characteristic_ratio_n"] = dict(n=n[1:], C=full["r2n"][1:] / (n[1:] * full["b2"]), unit="1")
            s = np.arange(len(full["acf"])) * full["b"]
            g["bond_acf"] = dict(n=np.arange(len(full["acf"])), s=s, C=full["acf"],
                                 C_error=sem(acf_blocks), unit="1 (s in Å)")
            g["flory_range"] = list(self.flory_range if self.flory_range is not None
                                    else (max(2, L // 10), max(3, L // 2)))
            g["distributions"] = {}
            units = dict(bond_length="Å", bond_angle="deg", dihedral="deg", ree="Å")
            for name, (edges, counts) in (d["h"] or {}).items():
                counts = np.asarray(counts, dtype=float)
                if np.ndim(counts) == 0 or counts.sum() == 0:
                    continue
                dens = counts / (counts.sum() * np.diff(edges))
                g["distributions"][name] = dict(edges=edges, density=dens, unit=units[name],
                                                n_samples=int(counts.sum()))
            g["timeseries"] = dict(time=res.times, rg=np.sqrt(d["rg2"]).mean(1),
                                   ree=np.sqrt(d["ree2"]).mean(1), unit="Å (time in fs)")
            g["per_chain"] = dict(rg2=d["rg2"].mean(0), ree2=d["ree2"].mean(0), unit="Å^2")
            res.groups[grp.label] = g
        res.flory_from_sizes = self._flory_sizes()
        res.rdf = self._conclude_rdf()
        res.msd = self._conclude_msd()

    def _flory_sizes(self):
        labs = [g.label for g in self.chains.groups]
        Ns = np.array([g.n_beads for g in self.chains.groups], dtype=float)
        if len(np.unique(Ns)) < 2:
            return None
        rg2 = np.array([self.results.groups[lab]["rg2"]["value"] for lab in labs])
        nu, a = flory_exponent_from_sizes(Ns, rg2)
        nblk = min(len(self._block_views[lab][1]) for lab in labs)
        blk = [flory_exponent_from_sizes(Ns, [self._block_views[lab][1][i]["rg2"] for lab in labs])[0]
               for i in range(nblk)]
        return dict(nu=_q(nu, block_error(nu, blk), "1"), prefactor=_q(a, np.nan, "Å"),
                    N=Ns, rg2=rg2, labels=labs)

    def _conclude_rdf(self):
        if self._rdf_counts is None or self._rdf_frames == 0:
            return None
        ch = self.chains
        nf = self._rdf_frames
        vol = self._vol[self._vol > 0].mean()
        edges = self._rdf_edges
        shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        n = len(ch.atom_order)
        n_intra = float((ch.atom_counts * (ch.atom_counts - 1)).sum())
        n_tot = float(n * (n - 1))
        n_inter = n_tot - n_intra
        inter, intra = 2.0 * self._rdf_counts          # unordered → ordered pairs

        def g(c, npairs):
            return c / (nf * shell * npairs / vol) if npairs > 0 else np.zeros_like(c)
        return dict(r=0.5 * (edges[1:] + edges[:-1]), edges=edges, g_total=g(inter + intra, n_tot),
                    g_inter=g(inter, n_inter), g_intra=g(intra, n_intra), unit="1 (r in Å)",
                    n_pairs=dict(total=n_tot, inter=n_inter, intra=n_intra))

    def _conclude_msd(self):
        if not self.msd or self.n_frames < 4:
            return None
        t = np.asarray(self.times, dtype=float) * PS_TO_FS
        lag = t - t[0]
        if not np.allclose(np.diff(lag), lag[1] - lag[0], rtol=1e-6, atol=1e-9) or lag[1] <= 0:
            warnings.warn("analysed frames are not evenly spaced in time: no MSD computed")
            return None
        out = dict(time=lag, unit="Å^2 (time in fs)", fit_window=list(self.msd_fit_window))
        ch = self.chains
        com = mean_square_separation(self._com.transpose(1, 0, 2))           # (chains, frames)
        out["com"] = self._msd_summary(lag, com)
        if self._mono is not None:
            per = np.zeros((len(ch.atom_order), self.n_frames))
            for s in range(0, len(ch.atom_order), 2048):                      # chunks bound memory
                per[s:s + 2048] = mean_square_separation(
                    self._mono[:, s:s + 2048].astype(np.float64).transpose(1, 0, 2))
            # blocks over chains for monomers too (monomers of one chain are correlated)
            chain_mean = np.add.reduceat(per, ch.atom_start) / ch.atom_counts[:, None]
            out["monomer"] = self._msd_summary(lag, per, chain_mean=chain_mean,
                                               weights=ch.atom_counts)
        return out

    def _msd_summary(self, lag, per, chain_mean=None, weights=None):
        cm = per if chain_mean is None else chain_mean
        w = np.ones(len(cm)) if weights is None else np.asarray(weights, dtype=float)
        msd = per.mean(0)
        D, (i0, i1) = diffusion_fit(lag, msd, self.msd_fit_window)
        blocks = block_indices(len(cm), self.n_blocks)
        bm = np.array([np.average(cm[b], axis=0, weights=w[b]) for b in blocks])
        bD = [diffusion_fit(lag, m, self.msd_fit_window)[0] for m in bm]
        err = np.std(bm, axis=0, ddof=1) / np.sqrt(len(bm)) if len(bm) > 1 else np.full_like(msd, np.nan)
        return dict(msd=msd, msd_error=err, D=_q(D, block_error(D, bD), "Å^2/fs"),
                    D_cm2_s=_q(D * 0.1, block_error(D, bD) * 0.1, "cm^2/s"),
                    fit_indices=[int(i0), int(i1)])

    # ------------------------------------------------------------------ output
    def summary(self) -> dict:
        """JSON-ready dict: every quantity with its unit and error bar, curves and histograms."""
        return jsonable(dict(
            n_frames=self.results.n_frames, n_chains=self.results.n_chains,
            weights=self.results.weights, groups=self.results.groups,
            flory_from_sizes=self.results.flory_from_sizes, rdf=self.results.rdf,
            msd=self.results.msd, units=dict(length="Å", time="fs", angle="deg",
                                             diffusion="Å^2/fs")))

    def to_json(self, path=None) -> str:
        """The :meth:`summary` as strict JSON text (NaN → null, ±inf → "inf"/"-inf"); also
        written atomically to ``path`` when given."""
        return Analysis.to_json(self, path)

    def plot(self, directory) -> list[Path]:
        """PNG figures of distributions, R(|i−j|) scaling, bond ACF fits, time series, MSD and
        RDF, written into ``directory``; returns their paths."""
        from .polymer_plots import plot_polymer
        return plot_polymer(self.summary(), directory)


def flory_exponent_from_sizes(n_beads, rg2) -> tuple[float, float]:
    """ν and prefactor A (Å) from ⟨R_g²⟩^{1/2} = A N^ν fitted across chain lengths.

    n_beads: (k,) backbone beads per chain species; rg2: (k,) ⟨R_g²⟩ Å². Needs k ≥ 2 lengths.
    """
    n = np.asarray(n_beads, dtype=float)
    r = np.asarray(rg2, dtype=float)
    if len(np.unique(n)) < 2:
        raise InputError("the Flory exponent from sizes needs chains of at least two different lengths")
    slope, icpt = np.polyfit(np.log(n), 0.5 * np.log(r), 1)
    return float(slope), float(np.exp(icpt))


