"""Largest-σ selection with a descriptor exclusion radius (the default `cgkit learn` selection):
it takes the most uncertain frame of each distinct event before a second frame of the same one."""
import numpy as np
import pytest
from ase.build import bulk, fcc111

from cgkit.errors import InputError
from cgkit.learn import max_sigma_diverse, structure_descriptors
from cgkit.learn.selection import _pairwise_quantile


def _pool():
    """30 frames of 3 events (10 near-duplicate snapshots each): bulk, surface, vacancy."""
    frames = []
    for s in range(10):
        a = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 2, 2))
        a.rattle(0.02, seed=s)
        frames.append(a)
    for s in range(10):
        a = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0)
        a.rattle(0.02, seed=s)
        frames.append(a)
    for s in range(10):
        a = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 2, 2))
        a.rattle(0.02, seed=s + 20)
        del a[5]
        frames.append(a)
    return frames


def test_largest_sigma_first_one_frame_per_event():
    X = structure_descriptors(_pool(), ["Cu"])
    rng = np.random.default_rng(0)
    # surfaces most uncertain, then the vacancy, bulk least; noise within each event
    sigma = np.concatenate([0.1 + 0.01 * rng.random(10), 1.0 + 0.01 * rng.random(10),
                            0.5 + 0.01 * rng.random(10)])
    # 135 of the 435 pairs (31 %) are two snapshots of one event: a radius at the 40 % quantile
    # of the pairwise distances excludes a second snapshot of a chosen event
    pick = max_sigma_diverse(sigma, X, 3, exclusion_quantile=0.4)
    assert pick[0] == 10 + int(np.argmax(sigma[10:20]))      # the most uncertain frame overall
    assert [p // 10 for p in pick] == [1, 2, 0]              # then one of each other event, by σ
    assert pick[1] == 20 + int(np.argmax(sigma[20:30]))
    # without exclusion it is plain max-σ: three surface duplicates
    pure = max_sigma_diverse(sigma, X, 3, exclusion_quantile=0.0)
    assert pure == [int(i) for i in np.argsort(-sigma)[:3]]
    assert all(p // 10 == 1 for p in pure)
    # more picks than events: the radius shrinks and every frame can be chosen, none twice
    allp = max_sigma_diverse(sigma, X, 30, exclusion_quantile=0.4)
    assert sorted(allp) == list(range(30))
    assert max_sigma_diverse(sigma, X, 0) == []


def test_refuses_bad_inputs():
    X = np.zeros((3, 2))
    with pytest.raises(InputError, match="finite"):
        max_sigma_diverse([0.1, np.nan, 0.2], X, 1)
    with pytest.raises(InputError, match="G scores"):
        max_sigma_diverse([0.1, 0.2], X, 1)
    with pytest.raises(InputError, match="exclusion_quantile"):
        max_sigma_diverse([0.1, 0.2, 0.3], X, 1, exclusion_quantile=1.0)


def _brute_force_picks(scores, X, k, q):
    """The definition, on the full (G, G) distance matrix: largest score first, skipping rows
    closer than r = the q quantile of all pairwise distances to a chosen row, r halved per pass."""
    D = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=-1)
    r = float(np.quantile(D[np.triu_indices(len(X), 1)], q)) if q > 0 and len(X) > 1 else 0.0
    chosen = []
    while len(chosen) < k:
        for i in np.argsort(-scores, kind="stable"):
            if len(chosen) < k and i not in chosen and (not chosen or D[i, chosen].min() >= r):
                chosen.append(int(i))
        r = r * 0.5 if r * 0.5 >= 1e-300 else 0.0
    return chosen


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9])
def test_picks_match_the_definition_on_the_full_distance_matrix(q):
    rng = np.random.default_rng(3)
    for G, D, k in [(1, 3, 2), (40, 5, 7), (120, 12, 30), (60, 2, 60)]:
        X = np.round(rng.normal(size=(G, D)), 1)  # rounded: exact ties in distance and score
        s = np.round(rng.random(G), 1)
        assert max_sigma_diverse(s, X, k, exclusion_quantile=q) == _brute_force_picks(s, X, min(k, G), q)


def test_large_pools_need_no_pairwise_array():
    """A pool of 20 000 frames with the 144 descriptors of three elements: the old (G, G, D)
    difference array would take 460 GB; now the picks come in O(G·D) memory, and every pair of
    picks is at least the exclusion radius apart (no radius halving needed here)."""
    from cgkit.learn import farthest_point_sampling
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 144))
    s = rng.random(20000)
    picks = max_sigma_diverse(s, X, 10, exclusion_quantile=0.1)
    assert len(set(picks)) == 10 and picks[0] == int(np.argmax(s))
    r = _pairwise_quantile(X, 0.1)
    P = X[picks]
    assert np.linalg.norm(P[:, None] - P[None], axis=-1)[np.triu_indices(10, 1)].min() >= r
    fps = farthest_point_sampling(X, 5, already=X[:2000])
    assert len(set(fps)) == 5 and not set(fps) & set(range(2000))
