"""Diverse selection of candidates: invariant structure descriptors and farthest-point sampling.

:func:`structure_descriptors` gives each structure a vector invariant under rotations,
reflections, translations and permutations of like atoms: for every (centre species, neighbour
species) pair, Behler G2 radial functions Σ_j exp(−η (r_ij − r_s)²) f_c(r_ij) on a grid of
``n_radial`` centres r_s in [0.5, cutoff] Å, averaged over the centres of that species (the
mean environment) and their maximum over centres (the most unusual atom, where a defect or a
surface shows up). :func:`farthest_point_sampling` then picks structures far apart in that space,
so that one event seen in many consecutive MD frames is labelled once.

:func:`max_sigma_diverse` is the selection ``cgkit learn`` uses by default: over the whole
explored pool, the frames with the largest (calibrated) uncertainty first, skipping any frame
closer in descriptor space than an exclusion radius to one already chosen in the same batch, so
that a batch is not several consecutive frames of one trajectory.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["structure_descriptors", "farthest_point_sampling", "max_sigma_diverse"]


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
    if len(As):  # row by row of ``already``: memory O(G·D), never (G, M, D)
        dmin = np.full(len(Xs), np.inf)
        for a in As:
            dmin = np.minimum(dmin, np.linalg.norm(Xs - a, axis=-1))
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


# rows whose pairwise distances set the exclusion radius: all of them up to this many (8.4 M
# distances, 67 MB, gathered row by row), else this many evenly spaced rows (a deterministic estimate)
_RADIUS_ROWS = 4096


def _pairwise_quantile(X: np.ndarray, q: float) -> float:
    """The ``q`` quantile of the Euclidean distances between distinct rows of X (G, D), row by
    row in ``np.triu_indices`` order (never a (G, G, D) array); above ``_RADIUS_ROWS`` rows, of
    ``_RADIUS_ROWS`` evenly spaced rows."""
    if len(X) > _RADIUS_ROWS:
        X = X[np.linspace(0, len(X) - 1, _RADIUS_ROWS).round().astype(int)]
    d = np.concatenate([np.linalg.norm(X[i] - X[i + 1:], axis=-1) for i in range(len(X) - 1)])
    return float(np.quantile(d, q))


def max_sigma_diverse(scores, X, k: int, *, exclusion_quantile: float = 0.1) -> list[int]:
    """Indices of up to ``k`` rows of ``X`` (G, D): greedily the largest ``scores`` (G,) (e.g. a
    frame's calibrated force σ, eV/Å) first, skipping rows whose Euclidean descriptor distance to
    a row already chosen is below r = the ``exclusion_quantile`` quantile of all pairwise
    distances between rows (0: no exclusion, pure max-σ; above 4096 rows, of 4096 evenly spaced
    rows). When every remaining row is excluded before ``k`` are chosen, the radius is halved and
    the pass repeated (so ``min(k, G)`` rows are always returned). Deterministic; ties → lowest
    index. Non-finite scores are refused. Memory O(G·D) beside the radius's distances (at most
    8.4 M of them, about 0.1 GB while gathered), so pools of 10⁵ frames are fine."""
    X = np.asarray(X, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if X.ndim != 2 or len(X) != len(s):
        raise InputError(f"max_sigma_diverse needs descriptors (G, D) and G scores, got {X.shape} and {s.shape}")
    if not np.all(np.isfinite(s)):
        raise InputError("max_sigma_diverse: the scores (uncertainties) must be finite")
    if not 0.0 <= exclusion_quantile < 1.0:
        raise InputError(f"exclusion_quantile must be in [0, 1), got {exclusion_quantile}")
    k = int(min(max(k, 0), len(X)))
    if k == 0:
        return []
    r = _pairwise_quantile(X, exclusion_quantile) if len(X) > 1 and exclusion_quantile > 0 else 0.0
    order = np.argsort(-s, kind="stable")
    chosen: list[int] = []
    taken = np.zeros(len(X), dtype=bool)
    nearest = np.full(len(X), np.inf)  # distance of each row to the nearest chosen row
    while len(chosen) < k:
        for i in order:
            if len(chosen) >= k:
                break
            if taken[i]:
                continue
            if not chosen or nearest[i] >= r:
                chosen.append(int(i))
                taken[i] = True
                nearest = np.minimum(nearest, np.linalg.norm(X - X[i], axis=-1))
        r *= 0.5
        if r < 1e-300:
            r = 0.0
    return chosen
