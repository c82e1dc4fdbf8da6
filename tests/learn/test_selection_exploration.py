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


def test_slab_strain_is_in_plane_and_molecules_are_refused():
    """+3 % on a (111) slab stretches the surface plane (in-plane spacings and area), keeps the
    vacuum and the layer spacing; a bulk cell gets the isotropic strain; a strain along the
    slab normal, or of a molecule, is refused (the loop skips strained runs of molecules)."""
    from ase.build import molecule
    from cgkit.learn import apply_strain, in_plane_strain
    slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0)
    s = apply_strain(slab, in_plane_strain(slab, 0.03))
    # independent route: the in-plane cell vectors are longer by exactly 3 %, the normal one is not
    np.testing.assert_allclose(np.linalg.norm(s.cell[:2], axis=1), 1.03 * np.linalg.norm(slab.cell[:2], axis=1),
                               rtol=1e-12)
    np.testing.assert_allclose(s.cell[2], slab.cell[2], atol=1e-12)
    np.testing.assert_allclose(s.get_volume() / slab.get_volume(), 1.03 ** 2, rtol=1e-12)
    # nearest-neighbour distances within a layer grow by 3 %, the interlayer heights do not
    np.testing.assert_allclose(s.positions[:, 2], slab.positions[:, 2], atol=1e-12)
    d0 = slab.get_distance(0, 1, mic=True)
    np.testing.assert_allclose(s.get_distance(0, 1, mic=True), 1.03 * d0, rtol=1e-12)
    assert not np.allclose(s.positions, slab.positions)  # not an unstrained duplicate
    b = cu_bulk()
    np.testing.assert_allclose(in_plane_strain(b, 0.03), 0.03 * np.eye(3), atol=1e-15)
    sb = apply_strain(b, [0.03, 0.03, 0.03, 0, 0, 0])
    np.testing.assert_allclose(sb.get_volume() / b.get_volume(), 1.03 ** 3, rtol=1e-12)
    with pytest.raises(InputError, match="non-periodic direction"):
        apply_strain(slab, [0.03, 0.03, 0.03, 0, 0, 0])
    mol = molecule("CH3CH2OH")
    mol.center(vacuum=5.0)
    with pytest.raises(InputError, match="non-periodic structure"):
        in_plane_strain(mol, 0.03)


def test_loop_explores_slabs_under_in_plane_strain(tmp_path):
    """The loop's strained slab run starts from the in-plane strained cell (not an unstrained
    duplicate, the earlier behaviour) and strained runs of a molecule are skipped."""
    from cgkit.learn.loop import ActiveLearning
    from ase import Atoms
    from ase.io import write
    write(str(tmp_path / "dimer.extxyz"), Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.4]]))
    cfg = {"teacher": "ase:EMT", "species": ["Cu"],
           "structures": [{"surface": "fcc111", "symbol": "Cu", "size": [1, 1, 3], "a": 3.61, "vacuum": 5.0},
                          {"bulk": "Cu", "crystalstructure": "fcc", "a": 3.61}, "dimer.extxyz"],
           "seed_set": {"n_rattled": 1}, "exploration": {"temperatures": [300.0], "strains": [0.0, 0.03],
                                                         "steps": 5, "sample_every": 5},
           "trust": {"lo": 0.0, "hi": 1e9}, "selection": {"method": "random"}}
    al = ActiveLearning(cfg, tmp_path / "run", base=tmp_path, progress=False)
    (tmp_path / "run" / "iter_000").mkdir(parents=True)
    cands, pool, failed, info = al._explore(0, committee())
    slab = al.structures[0]
    by = {(c.info["structure"], c.info["strain"]): c for c in pool}
    np.testing.assert_allclose(by[(0, 0.03)].cell[:2], 1.03 * slab.cell[:2], rtol=1e-12)
    np.testing.assert_allclose(by[(0, 0.03)].cell[2], slab.cell[2], atol=1e-12)
    np.testing.assert_allclose(by[(0, 0.0)].cell.array, slab.cell.array, atol=1e-12)
    np.testing.assert_allclose(by[(1, 0.03)].get_volume(), 1.03 ** 3 * al.structures[1].get_volume(), rtol=1e-12)
    assert info["strained_runs_skipped_for_structures"] == [2]
    assert (2, 0.0) in by and (2, 0.03) not in by
