"""Descriptors are invariant and tell structures apart; farthest-point sampling picks one per
event; exploration MD classifies steps by the trust levels and stops above hi."""
import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111

from cgkit.ensemble import EnsemblePotential
from cgkit.errors import InputError
from cgkit.learn import TrustLevels, explore, farthest_point_sampling, structure_descriptors
from cgkit.nn import ENNP


def cu_bulk(seed=0, rattle=0.05):
    a = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 2, 2))
    a.rattle(rattle, seed=seed)
    return a


def test_descriptors_are_invariant_and_separate_bulk_surface_vacancy():
    a = cu_bulk()
    d0 = structure_descriptors([a], ["Cu"])[0]
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    b = a.copy()
    b.set_cell(a.cell.array @ q.T, scale_atoms=False)
    b.positions = a.positions @ q.T + 1.7
    b = b[rng.permutation(len(b))]
    np.testing.assert_allclose(structure_descriptors([b], ["Cu"])[0], d0, rtol=1e-10, atol=1e-12)

    surf = fcc111("Cu", (2, 2, 4), vacuum=6.0)
    vac = cu_bulk(1)
    del vac[5]
    X = structure_descriptors([cu_bulk(2), surf, vac], ["Cu"])
    # the vacancy and the surface are each farther from bulk than two bulk snapshots are apart
    d_bb = np.linalg.norm(structure_descriptors([cu_bulk(3)], ["Cu"])[0] - X[0])
    assert np.linalg.norm(X[1] - X[0]) > 5 * d_bb
    assert np.linalg.norm(X[2] - X[0]) > 5 * d_bb
    with pytest.raises(InputError, match="elements \\['Cu'\\]"):
        structure_descriptors([a], ["Ag"])


def test_farthest_point_sampling_labels_each_event_once():
    # 30 near-duplicate frames of 3 events: 10 bulk, 10 surface, 10 vacancy snapshots
    frames = [cu_bulk(s, 0.02) for s in range(10)]
    frames += [fcc111("Cu", (2, 2, 4), vacuum=6.0) for _ in range(10)]
    for s in range(10):
        frames[10 + s].rattle(0.02, seed=s)
    for s in range(10):
        v = cu_bulk(s + 20, 0.02)
        del v[5]
        frames.append(v)
    X = structure_descriptors(frames, ["Cu"])
    pick = farthest_point_sampling(X, 3)
    assert sorted(p // 10 for p in pick) == [0, 1, 2]
    # with the bulk and surface events already in the training set, the vacancy comes first
    pick = farthest_point_sampling(X[20:], 1, already=X[[0, 10]])
    assert len(pick) == 1
    pick = farthest_point_sampling(X, 1, already=X[[0, 10]])
    assert pick[0] // 10 == 2
    assert farthest_point_sampling(X, 0) == []
    assert len(farthest_point_sampling(X, 100)) == 30


def committee():
    ms = []
    for seed in range(2):
        torch.manual_seed(seed)
        m = ENNP(["Cu"], 3.0, channels=4, l_max=1, n_layers=1, n_radial=4, radial_hidden=4,
                 radial_layers=1, readout_hidden=4, dtype="float64", init_seed=seed)
        m.set_statistics(shift=[-3.5], scale=0.1, avg_num_neighbors=12.0)
        ms.append(m)
    return EnsemblePotential(ms)


def test_exploration_follows_the_trust_levels():
    ens = committee()
    start = bulk("Cu", "fcc", 3.61, cubic=True)
    everything = explore(ens, start, temperature_K=300, n_steps=20, sample_every=5,
                         trust=TrustLevels(0.0, 1e9), seed=1)
    assert everything.stopped == "completed"
    assert everything.counts == {"accurate": 0, "candidate": 4, "failed": 0}
    assert [c.info["md_step"] for c in everything.candidates] == [5, 10, 15, 20]
    s = np.array(everything.sigma_max)
    assert np.all(np.isfinite(s)) and np.all(s > 0)
    np.testing.assert_allclose([c.info["sigma_max"] for c in everything.candidates], s)
    # the same seed gives the same trajectory; hi below the first sigma stops at once
    stop = explore(ens, start, temperature_K=300, n_steps=20, sample_every=5,
                   trust=TrustLevels(0.0, 0.5 * s[0]), seed=1)
    assert stop.stopped == "uncertainty above hi at step 5" and stop.candidates == []
    calm = explore(ens, start, temperature_K=300, n_steps=20, sample_every=5,
                   trust=TrustLevels(2 * s.max(), 4 * s.max()), seed=1)
    assert calm.counts["accurate"] == 4 and calm.candidates == []
    strained = explore(ens, start, temperature_K=300, n_steps=5, sample_every=5, seed=1,
                       trust=TrustLevels(0.0, 1e9), strain=[0.02, 0, 0, 0, 0, 0])
    assert strained.candidates[0].cell[0, 0] == pytest.approx(3.61 * 1.02)


def test_bad_trust_levels_are_refused():
    with pytest.raises(InputError, match="lo < hi"):
        TrustLevels(0.3, 0.1)
    with pytest.raises(InputError, match="committee"):
        explore(object(), bulk("Cu"), temperature_K=300, n_steps=5, trust=TrustLevels(0.1, 0.2))
