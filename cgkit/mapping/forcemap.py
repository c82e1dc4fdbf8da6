"""Statistically optimal force map (Krämer et al., J. Chem. Theory Comput. / JPCL 2023) and the
mapped-force noise report.

For a valid force map D (M·Dᵀ = I) the mapped force D·f has conditional mean equal to the
mean force, so E|D·f|² = E|F_mean|² + noise(D): minimising the second moment of the mapped
force over valid D minimises the noise. Per template (all instances of one molecule template
share one local map, which keeps the map permutation-equivariant), with C = E[f fᵀ] over the
template's atoms (n_t × n_t, summed over x, y, z), each bead row solves

    min_d  d C dᵀ   subject to   M_loc dᵀ = e_I,

restricted to the instance's atoms (``support='molecule'``) or the bead's atoms
(``support='bead'``). Atoms joined by constraints get equal weight, so the constraint forces
that a trajectory does not hold (GROMACS writes forces without SETTLE/LINCS/SHAKE forces) cancel
(Noid et al. 2008; Krämer et al. 2023, as aggforce's constraint-aware maps): for a group J of
atoms joined by constraints, the constraint forces g_i obey Σ_{i∈J} g_i = 0, so Σ_i d_i g_i = 0
only when d is constant over J. ``constraints``:

- ``'auto'`` (default): the constraints the topology records (GROMACS tpr ``[ constraints ]``
  and ``[ settles ]``, :func:`cgkit.mapping.importers.read_tpr_constraints`); none when the
  topology format does not record them (gro, pdb, psf, LAMMPS data — give them explicitly);
- ``'topology'``: as auto, but an error when the topology does not record constraints;
- ``'hbonds'`` / ``'all-bonds'``: the topology's bonds to hydrogen / all its bonds;
- an (nc, 2) array of 0-based constrained atom pairs; ``'none'``: no constraint handling
  (biased mean forces if the run used constraints).

Without constraint handling on rigid water the optimized map drops the hydrogens' forces
(their constraint forces are missing), so its mapped force is not the mean force; with it,
a one-bead rigid water gets the basic map (sum of the molecule's forces), the only valid map.

The noise report uses the Pythagorean identity of that optimum: for any valid D,
noise(D) = noise(D*) + E|(D − D*)·f|², so E|(D − D*)·f|² is the *excess* noise of D over the
optimized map and a lower bound on noise(D) (exact identity on the frames D* was fitted to).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError, MappingError, StructureError
from ..progress import progress_bar
from ..results import Analysis, Results

__all__ = ["optimized_force_map", "resolve_constraints", "MappedForceNoise", "mean_force_identity"]


def _forces_of(fr, k: int):
    """Forces (N, 3) eV/Å of frame ``fr`` (k-th given; its file index when it has one)."""
    f = getattr(fr, "forces", fr)
    idx = getattr(fr, "index", -1)
    where = f"frame {idx if idx is not None and idx >= 0 else k}"
    if f is None:
        raise InputError(f"{where} has no forces; the optimized force map and the noise "
                         "report need forces (GROMACS: nstfout > 0; LAMMPS dump: fx fy fz)")
    f = np.asarray(f, dtype=np.float64)
    if not np.isfinite(f).all():
        bad = np.flatnonzero(~np.isfinite(f).reshape(len(f), -1).all(axis=1))
        raise StructureError(f"{where}: forces of atoms {bad[:10].tolist()} are NaN or inf; "
                             "use frames with finite forces")
    return f


def resolve_constraints(mapping, constraints="auto"):
    """(pairs, label): the constrained atom pairs (nc, 2) an optimized force map must respect
    (None for none) and a short description (for summaries). See the module docstring for
    the accepted ``constraints`` values."""
    if constraints is None or (isinstance(constraints, str) and constraints == "none"):
        return None, "none"
    if isinstance(constraints, str):
        if constraints in ("hbonds", "all-bonds"):
            return constraints, constraints
        if constraints not in ("auto", "topology"):
            raise InputError(f"constraints={constraints!r}: give auto, topology, hbonds, all-bonds, "
                             "none or an (nc, 2) array of constrained atom pairs")
        from .importers import topology_constraints
        tab = mapping.atom_table
        pairs = None if tab is None else topology_constraints(tab)
        if pairs is None:
            if constraints == "topology":
                raise MappingError("constraints=topology, but the topology does not record "
                                   "constraints (only a GROMACS tpr does); give the tpr, or "
                                   "constraints hbonds / all-bonds / none")
            return None, "none (the topology does not record constraints)"
        return pairs, f"topology ({len(pairs)} constrained pairs)"
    pairs = np.asarray(constraints, dtype=np.int64).reshape(-1, 2) if len(constraints) else \
        np.zeros((0, 2), np.int64)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= mapping.n_atoms):
        raise InputError(f"constrained atom pairs must be 0-based indices below {mapping.n_atoms}")
    return pairs, f"given ({len(pairs)} constrained pairs)"


def _groups(mapping, constraints, atoms):
    """Constraint groups within one instance's atoms: (n_local,) group label. ``constraints``:
    None/'none', 'hbonds', 'all-bonds' or an (nc, 2) array of constrained atom pairs."""
    n = len(atoms)
    lab = np.arange(n)
    tab = mapping.atom_table
    if isinstance(constraints, np.ndarray):
        b = constraints
    elif constraints in (None, "none") or tab is None or len(tab.bonds) == 0:
        if constraints not in (None, "none") and (tab is None or len(tab.bonds) == 0):
            raise MappingError("constraints were requested but the topology has no bonds; give a "
                               "topology with bonds (tpr, psf, LAMMPS data) or constraints: none")
        return lab
    else:
        b = tab.bonds
    pos = {int(a): k for k, a in enumerate(atoms)}
    if isinstance(constraints, np.ndarray) and len(b):
        # only pairs with both atoms in this instance
        b = b[np.isin(b[:, 0], atoms) & np.isin(b[:, 1], atoms)]
    if isinstance(constraints, str) and constraints == "hbonds":
        el = tab.elements
        isH = (np.array([str(e).upper() == "H" for e in el]) if el is not None
               else tab.masses < 1.2)
        b = b[isH[b[:, 0]] | isH[b[:, 1]]]
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for i, j in b:
        if int(i) in pos and int(j) in pos:
            a, c = find(pos[int(i)]), find(pos[int(j)])
            if a != c:
                parent[a] = c
    return np.array([find(i) for i in range(n)])


def optimized_force_map(mapping, frames, *, constraints="auto", support: str = "molecule",
                        regularization: float = 1e-8, max_frames: int | None = None,
                        progress: bool | None = None) -> sp.csr_matrix:
    """Estimate the optimal force map D (B, N) from force frames (eV/Å; anything with
    ``.forces`` or plain (N, 3) arrays). ``regularization`` (relative to the mean diagonal of
    C) keeps the solve well posed when few frames are given."""
    if support not in ("molecule", "bead"):
        raise InputError("support must be 'molecule' or 'bead'")
    constraints = resolve_constraints(mapping, constraints)[0]
    M = mapping.M.tocsr()
    Dcur = mapping.D.tocsr()
    # group instances by template and local structure
    bead0 = 0
    groups: dict = {}
    for ins in mapping.instances:
        nb = len(mapping.definition.templates[ins.template].beads)
        rows = np.arange(bead0, bead0 + nb)
        bead0 += nb
        sub = M[rows]
        atoms = np.unique(np.r_[sub.indices, Dcur[rows].indices])
        loc = sub[:, atoms].toarray()
        key = (ins.template, len(atoms), loc.tobytes())
        groups.setdefault(key, {"rows": [], "atoms": [], "loc": loc})
        groups[key]["rows"].append(rows)
        groups[key]["atoms"].append(atoms)
    for g in groups.values():
        g["rows"] = np.asarray(g["rows"])
        g["atoms"] = np.asarray(g["atoms"])
        n = g["atoms"].shape[1]
        g["C"] = np.zeros((n, n))
    nfr = 0
    for fr in progress_bar(frames, desc="force-map statistics", unit="frame", disable=None if progress else True):
        f = _forces_of(fr, nfr)
        if f.shape != (mapping.n_atoms, 3):
            raise InputError(f"forces have shape {f.shape}, expected ({mapping.n_atoms}, 3)")
        for g in groups.values():
            F = f[g["atoms"]]                  # (n_inst, n_t, 3)
            g["C"] += np.einsum("ika,ila->kl", F, F)
        nfr += 1
        if max_frames is not None and nfr >= max_frames:
            break
    if nfr == 0:
        raise InputError("no frames given to estimate the optimized force map")
    rr, cc, vv = [], [], []
    for key, g in groups.items():
        g["template"] = key[0]
        loc, C = g["loc"], g["C"] / (nfr * len(g["atoms"]))
        lab = _groups(mapping, constraints, g["atoms"][0])
        ug, lab = np.unique(lab, return_inverse=True)
        P = np.zeros((len(lab), len(ug)))
        P[np.arange(len(lab)), lab] = 1.0
        Cg = P.T @ C @ P
        Ag = loc @ P                                    # (B_t, g)
        reg = regularization * max(np.trace(Cg) / len(ug), 1e-300)
        Dloc = np.zeros_like(loc)
        Dcur_loc = Dcur[g["rows"][0]][:, g["atoms"][0]].toarray()
        for I in range(loc.shape[0]):
            if support == "bead":
                # groups that touch this bead's atoms (position weight or current force map)
                member = (loc[I] != 0) | (Dcur_loc[I] != 0)
                allowed = np.unique(lab[member])
            else:
                allowed = np.arange(len(ug))
            A = Ag[:, allowed]
            act = np.where(np.abs(A).sum(axis=1) > 0)[0]
            A = A[act]
            rhs = (act == I).astype(float)
            if not rhs.any():
                raise MappingError(f"bead {I} of a template has no atoms in the allowed support")
            Cs = Cg[np.ix_(allowed, allowed)] + reg * np.eye(len(allowed))
            k = len(allowed)
            K = np.zeros((k + len(act), k + len(act)))
            K[:k, :k] = 2 * Cs
            K[:k, k:] = A.T
            K[k:, :k] = A
            sol = np.linalg.lstsq(K, np.r_[np.zeros(k), rhs], rcond=None)[0]
            if np.abs(A @ sol[:k] - rhs).max() > 1e-8:
                raise MappingError(
                    f"no valid force map for template '{mapping.definition.templates[g['template']].name}'"
                    f" bead {I}: the constraint groups / support leave no weights with M·Dᵀ = I "
                    "(a constraint group covers whole beads); use fewer constraints "
                    "(constraints: hbonds or none) or support: molecule")
            e = np.zeros(len(ug))
            e[allowed] = sol[:k]
            Dloc[I] = P @ e
        for rows, atoms in zip(g["rows"], g["atoms"]):
            nz = np.nonzero(Dloc)
            rr.append(rows[nz[0]])
            cc.append(atoms[nz[1]])
            vv.append(Dloc[nz])
    D = sp.csr_matrix((np.concatenate(vv), (np.concatenate(rr), np.concatenate(cc))), shape=M.shape)
    return D


def mean_force_identity(positions, forces, boxes, temperature: float, *, r0: float = 2.8,
                        width: float = 0.25) -> dict:
    """Fit-free test that mapped forces average to the mean force −∇W of the CG coordinates.

    For any smooth field G(R) on periodic CG configurations, integration by parts over
    exp(−W/kT) gives ⟨F·G⟩ = −kT ⟨∇·G⟩ for the mean force F = −∇W; a mapped force D·f that
    misses forces (e.g. constraint forces absent from a GROMACS trajectory) breaks it. Here
    G_I = Σ_J h(r_IJ) r̂_IJ with a Gaussian shell h(r) = exp(−(r − r0)²/(2 width²)), so the
    identity reads (per frame, summed over bead pairs)

        ⟨Σ h (F_I − F_J)·r̂_IJ⟩ = −2 kT ⟨Σ (h′ + 2h/r)⟩

    (the force-sampling RDF relation of Borgis et al. 2013). positions, forces: (n_frames, B, 3)
    Å, eV/Å; boxes: (n_frames, 3) or (3,) orthorhombic box lengths, Å; temperature: K.
    Returns {"lhs", "rhs", "difference", "stderr", "z", "relative", "frames"} (eV/Å per frame,
    z = the difference in standard errors over frames, relative = difference / |rhs|; None where
    undefined). Assumes frames are roughly independent (standard error over frames).
    ``temperature=0`` gives the left side alone: applied to the difference of two force maps,
    (D − D_ref)·f, it measures the bias of D against an unbiased D_ref with paired noise."""
    from scipy.spatial import cKDTree
    kT = 8.617333262e-5 * float(temperature)
    X = np.asarray(positions, dtype=float)
    F = np.asarray(forces, dtype=float)
    if X.ndim != 3 or X.shape != F.shape:
        raise InputError(f"positions {X.shape} and forces {F.shape} must both be (n_frames, B, 3)")
    L = np.broadcast_to(np.asarray(boxes, dtype=float), (len(X), 3))
    rmax = r0 + 5 * width
    lhs = np.zeros(len(X))
    rhs = np.zeros(len(X))
    for k in range(len(X)):
        if 2 * rmax > L[k].min():
            raise InputError(f"frame {k}: box {L[k].tolist()} Å is shorter than twice r0 + 5 width = "
                             f"{rmax:.3g} Å; use a smaller shell")
        x = np.mod(X[k], L[k])
        pr = cKDTree(x, boxsize=L[k]).query_pairs(rmax, output_type="ndarray")
        d = x[pr[:, 0]] - x[pr[:, 1]]
        d -= L[k] * np.round(d / L[k])
        r = np.linalg.norm(d, axis=1)
        u = d / r[:, None]
        h = np.exp(-0.5 * ((r - r0) / width) ** 2)
        hp = -(r - r0) / width ** 2 * h
        lhs[k] = np.sum(h * np.einsum("pa,pa->p", F[k][pr[:, 0]] - F[k][pr[:, 1]], u))
        rhs[k] = -2 * kT * np.sum(hp + 2 * h / r)
    diff = lhs - rhs
    n = len(X)
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else None
    m = float(diff.mean())
    return {"lhs": float(lhs.mean()), "rhs": float(rhs.mean()), "difference": m, "stderr": se,
            "z": m / se if se else None,
            "relative": m / abs(rhs.mean()) if rhs.mean() != 0 else None, "frames": n}


class MappedForceNoise(Analysis):
    """Mapped-force statistics of several force maps on the same frames, per bead type.

    ``maps``: {label: Mapping} with identical position maps; ``frames``: iterable of frames with
    forces (eV/Å). ``reference``: label of the optimized map (default: the label with the lowest
    total second moment). ``run()`` fills ``results``:

    - ``second_moment[label][type]``: ⟨|F_I|²⟩ over beads of that type and frames, (eV/Å)²
    - ``excess_noise[label][type]``: ⟨|(D − D_ref)·f|²⟩, (eV/Å)² — the noise of that map beyond
      the reference (optimized) map; a lower bound on its noise.
    - ``noise_fraction[label][type]``: excess_noise / second_moment (share of the mapped force
      that no CG potential can explain, at least).
    """

    def __init__(self, maps: dict, frames, *, reference: str | None = None, progress=None):
        if not maps:
            raise InputError("give at least one force map")
        self.maps = dict(maps)
        self.frames = frames
        self.reference = reference
        self.progress = progress
        self.results = Results()

    def run(self) -> "MappedForceNoise":
        labels = list(self.maps)
        first = self.maps[labels[0]]
        types = first.bead_types.astype(str)
        tnames = sorted(set(types))
        tidx = np.searchsorted(tnames, types)
        Ds = {k: m.D for k, m in self.maps.items()}
        sm = {k: np.zeros(len(tnames)) for k in labels}
        diff = {(a, b): np.zeros(len(tnames)) for a in labels for b in labels if a != b}
        cnt = np.bincount(tidx, minlength=len(tnames)).astype(float)
        n = 0
        for fr in progress_bar(self.frames, desc="force noise", unit="frame", disable=None if self.progress else True):
            f = _forces_of(fr, n)
            F = {k: D @ f for k, D in Ds.items()}
            for k in labels:
                sm[k] += np.bincount(tidx, weights=(F[k] ** 2).sum(1), minlength=len(tnames))
            for (a, b) in diff:
                diff[(a, b)] += np.bincount(tidx, weights=((F[a] - F[b]) ** 2).sum(1),
                                            minlength=len(tnames))
            n += 1
        if n == 0:
            raise InputError("no frames for the force-noise report")
        norm = cnt * n
        second = {k: sm[k] / norm for k in labels}
        ref = self.reference or min(labels, key=lambda k: float(sm[k].sum()))
        excess = {k: (np.zeros(len(tnames)) if k == ref else diff[(k, ref)] / norm) for k in labels}
        self.results = Results({
            "units": "(eV/Å)^2",
            "frames": n,
            "reference": ref,
            "bead_types": tnames,
            "beads_per_type": {t: int(c) for t, c in zip(tnames, cnt)},
            "second_moment": {k: dict(zip(tnames, map(float, second[k]))) for k in labels},
            "second_moment_total": {k: float(sm[k].sum() / (cnt.sum() * n)) for k in labels},
            "excess_noise": {k: dict(zip(tnames, map(float, excess[k]))) for k in labels},
            # share of the mapped force no CG potential can explain; null for a type whose
            # mapped force vanishes (0/0)
            "noise_fraction": {k: {t: (float(e / s2) if s2 > 0 else None)
                                   for t, e, s2 in zip(tnames, excess[k], second[k])}
                               for k in labels},
        })
        return self

    def summary(self) -> dict:
        """The results (strict JSON through :meth:`to_json`: NaN → null)."""
        return dict(self.results)

    def plot(self, directory) -> list[Path]:
        """Bar chart of ⟨|F_CG|²⟩ per bead type and force map: ``directory/force_noise.png``."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        r = self.results
        labels = list(r["second_moment"])
        types = r["bead_types"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        w = 0.8 / len(labels)
        for k, lab in enumerate(labels):
            ax.bar(np.arange(len(types)) + k * w, [r["second_moment"][lab][t] for t in types], w,
                   label=lab)
        ax.set_xticks(np.arange(len(types)) + 0.4 - w / 2, types)
        ax.set_ylabel("⟨|F_CG|²⟩ (eV/Å)²")
        ax.set_xlabel("bead type")
        ax.legend()
        fig.tight_layout()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "force_noise.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [path]
