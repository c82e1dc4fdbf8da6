"""Statistically optimal force map (Krämer et al., J. Chem. Theory Comput. / JPCL 2023) and the
mapped-force noise report.

For a valid force map D (M·Dᵀ = I) the mapped force D·f has conditional mean equal to the
mean force, so E|D·f|² = E|F_mean|² + noise(D): minimising the second moment of the mapped
force over valid D minimises the noise. Per template (all instances of one molecule template
share one local map, which keeps the map permutation-equivariant), with C = E[f fᵀ] over the
template's atoms (n_t × n_t, summed over x, y, z), each bead row solves

    min_d  d C dᵀ   subject to   M_loc dᵀ = e_I,

restricted to the instance's atoms (``support='molecule'``) or the bead's atoms
(``support='bead'``). Atoms joined by constraints (``constraints='hbonds'`` / ``'all-bonds'``,
from the topology's bonds) get equal weight, so unknown constraint forces cancel.

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

__all__ = ["optimized_force_map", "MappedForceNoise"]


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


def _groups(mapping, constraints, atoms):
    """Constraint groups within one instance's atoms: (n_local,) group label."""
    n = len(atoms)
    lab = np.arange(n)
    tab = mapping.atom_table
    if constraints in (None, "none") or tab is None or len(tab.bonds) == 0:
        if constraints not in (None, "none") and (tab is None or len(tab.bonds) == 0):
            raise MappingError("constraints were requested but the topology has no bonds; give a "
                               "topology with bonds (tpr, psf, LAMMPS data) or constraints: none")
        return lab
    pos = {int(a): k for k, a in enumerate(atoms)}
    b = tab.bonds
    if constraints == "hbonds":
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


def optimized_force_map(mapping, frames, *, constraints: str = "none", support: str = "molecule",
                        regularization: float = 1e-8, max_frames: int | None = None,
                        progress: bool | None = None) -> sp.csr_matrix:
    """Estimate the optimal force map D (B, N) from force frames (eV/Å; anything with
    ``.forces`` or plain (N, 3) arrays). ``regularization`` (relative to the mean diagonal of
    C) keeps the solve well posed when few frames are given."""
    if support not in ("molecule", "bead"):
        raise InputError("support must be 'molecule' or 'bead'")
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
