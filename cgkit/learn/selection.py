"""Diverse selection of candidates: invariant structure descriptors and farthest-point sampling.

:func:`structure_descriptors` gives each structure a vector invariant under rotations,
reflections, translations and permutations of like atoms: for every (centre species, neighbour
species) pair, Behler G2 radial functions Σ_j exp(−η (r_ij − r_s)²) f_c(r_ij) on a grid of
``n_radial`` centres r_s in [0.5, cutoff] Å, averaged over the centres of that species (the
mean environment) and their maximum over centres (the most unusual atom, where a defect or a
surface shows up). :func:`farthest_point_sampling` then picks structures far apart in that space,
so that one event seen in many consecutive MD frames is labelled once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["structure_descriptors", "farthest_point_sampling"]


def structure_descriptors(structures: Sequence, species: Sequence[str], *, cutoff: float = 5.0,
                          n_radial: int = 8) -> np.ndarray:
    """(G, 2·S²·n_radial) descriptors of ``structures`` for the element list ``species``."""
    from ase.neighborlist import neighbor_list
    species = list(species)
    index = {s: k for k, s in enumerate(species)}
    S = len(species)
    centres = np.linspace(0.5, cutoff, n_radial)
    eta = 1.0 / (2.0 * (centres[1] - centres[0]) ** 2) if n_radial > 1 else 1.0
    out = np.zeros((len(structures), 2 * S * S * n_radial))
    for g, atoms in enumerate(structures):
        sym = atoms.get_chemical_symbols()
        unknown = sorted(set(sym) - set(index))
        if unknown:
            raise InputError(f"structure {g} has elements {unknown} that are not in {species}")
        z = np.array([index[s] for s in sym])
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        fc = 0.5 * (np.cos(np.pi * d / cutoff) + 1.0)
        g2 = np.exp(-eta * (d[:, None] - centres[None, :]) ** 2) * fc[:, None]  # (pairs, n_radial)
        per_atom = np.zeros((len(atoms), S, n_radial))
        np.add.at(per_atom, (i, z[j]), g2)
        for a in range(S):
            sel = z == a
            if not sel.any():
                continue
            block = per_atom[sel]  # (n_a, S, n_radial)
            mean = block.mean(0).ravel()
            mx = block.max(0).ravel()
            o = a * S * n_radial
            out[g, o:o + S * n_radial] = mean
            out[g, S * S * n_radial + o:S * S * n_radial + o + S * n_radial] = mx
    return out


def farthest_point_sampling(X, k: int, *, already=None, weights=None) -> list[int]:
    """Indices of ``k`` rows of ``X`` (G, D) chosen greedily to be far from each other and from
    the rows of ``already`` (M, D), Euclidean distance on the raw features (per-feature
    standardisation would blow up the noise of features that barely vary, such as the
    surface-only parts of a descriptor). The first pick (with nothing already chosen) is the row with the
    largest ``weights`` (e.g. σ; default the first row). Deterministic; ties → lowest index."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"descriptors must be a 2-D array, got shape {X.shape}")
    k = int(min(max(k, 0), len(X)))
    if k == 0:
        return []
    A = np.asarray(already, dtype=np.float64).reshape(-1, X.shape[1]) if already is not None else np.zeros((0, X.shape[1]))
    Xs, As = X, A
    if len(As):
        dmin = np.min(np.linalg.norm(Xs[:, None, :] - As[None, :, :], axis=-1), axis=1)
        first = None
    else:
        dmin = np.full(len(Xs), np.inf)
        w = np.zeros(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
        first = int(np.argmax(w))
    chosen = []
    for _ in range(k):
        pick = first if (first is not None and not chosen) else int(np.argmax(dmin))
        chosen.append(pick)
        dmin = np.minimum(dmin, np.linalg.norm(Xs - Xs[pick], axis=1))
        dmin[chosen] = -np.inf
    return chosen
