"""cgkit.topology.UnwrapPlan: the one molecule unwrapper, against the unwrapped truth and MDAnalysis."""
from __future__ import annotations

import numpy as np

from cgkit.topology import Topology, UnwrapPlan


def test_unwrapped_chains_are_the_originals_up_to_a_lattice_translation():
    rng = np.random.default_rng(4)
    cell = np.array([[7.0, 0, 0], [1.5, 8.0, 0], [-1.0, 0.5, 9.0]])  # triclinic
    steps = rng.normal(scale=1.0, size=(3, 2, 10, 3))                 # 3 frames, 2 chains of 10
    whole = (np.cumsum(steps, axis=2) + 3.0).reshape(3, 20, 3)
    frac = whole @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    bonds = [(i, i + 1) for s in (0, 10) for i in range(s, s + 9)]
    x = UnwrapPlan(20, bonds).apply(wrapped, cell)
    for s in (0, 10):
        shift = x[:, s] - whole[:, s]
        np.testing.assert_allclose(x[:, s:s + 10], whole[:, s:s + 10] + shift[:, None], atol=1e-10)
        n = shift @ np.linalg.inv(cell)
        np.testing.assert_allclose(n, np.round(n), atol=1e-10)  # a lattice translation
        np.testing.assert_allclose(x[:, s], wrapped[:, s])       # first particle kept in place


def test_branched_molecule_matches_mdanalysis_unwrap():
    import MDAnalysis as mda
    rng = np.random.default_rng(1)
    # a star: centre 0 with three arms of 4, box 6 Å so that arms cross the boundary
    bonds = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12)]
    n = 13
    topo = Topology.from_bonds(n, bonds)
    whole = np.zeros((n, 3))
    for a, b in bonds:
        whole[b] = whole[a] + rng.normal(scale=0.9, size=3)
    whole += 2.0
    wrapped = whole % 6.0
    ours = topo.unwrap(wrapped, np.diag([6.0, 6.0, 6.0]))
    u = mda.Universe.empty(n, trajectory=True)
    u.add_TopologyAttr("bonds", bonds)
    u.dimensions = [6, 6, 6, 90, 90, 90]
    u.atoms.positions = wrapped
    ref = u.atoms.unwrap(compound="fragments", reference=None)
    d = ours - ref
    np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-4)  # same up to a translation
    np.testing.assert_allclose(ours - ours[0], whole - whole[0], atol=1e-10)


def test_no_periodicity_returns_positions_unchanged():
    x = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(UnwrapPlan(5, [(0, 1), (1, 2)]).apply(x, np.zeros((3, 3))), x)
