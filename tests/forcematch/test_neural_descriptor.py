"""The bead descriptor network's mixed-shell angular invariants (``cross_shells``): they are the
three-body sums Σ_jk w_s(r_ij) w_s'(r_ik) P_l(cos θ_jik) computed directly over neighbour pairs,
and the network's forces are −∂E/∂r (finite differences)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import eval_legendre

from cgkit.data import AtomicGraph
from cgkit.forcematch.neural import BeadDescriptorNet
from cgkit.testing import random_liquid

L = 10.0


def _config(rng, n=24, dmin=2.2):
    """Random configuration of n beads in the L³ box with all distances ≥ dmin (Å)."""
    return random_liquid(rng, n, L, dmin)


def _graph(net, x):
    return AtomicGraph.from_arrays(x, np.eye(3) * L, True, net.cutoff, species=np.zeros(len(x), int),
                                   type_names=("W",))


def test_mixed_shell_invariants_equal_the_explicit_triplet_sums():
    net = BeadDescriptorNet(["W"], r_ang=3.7, shells=(2.75, 3.25), l_max=4, cross_shells=True)
    x = _config(np.random.default_rng(2))
    g = _graph(net, x)
    i, j, vec, _ = net.neighbor_edges(g, g.positions, g.cell)
    d = net.descriptors(g.species, i, j, vec, len(x)).numpy()
    ang = d[:, net.n_radial:].reshape(len(x), 3, 5)          # shell pairs (0,0), (0,1), (1,1); l = 0..4
    i, j, vec = i.numpy(), j.numpy(), vec.numpy()

    def w(r, nu):
        return np.exp(-((r - nu) / 0.3) ** 2) * 0.5 * (np.cos(np.pi * r / 3.7) + 1) * (r < 3.7)
    for c in (0, 5, 11):
        v = vec[i == c]
        r = np.linalg.norm(v, axis=1)
        cos = np.clip((v @ v.T) / np.outer(r, r), -1, 1)
        for p, (a, b) in enumerate([(0, 0), (0, 1), (1, 1)]):
            wa, wb = w(r, net.shells[a]), w(r, net.shells[b])
            for l in range(5):
                ref = wa @ eval_legendre(l, cos) @ wb
                assert ang[c, p, l] == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_cross_shell_network_forces_are_minus_energy_gradient():
    torch.manual_seed(0)
    net = BeadDescriptorNet(["W"], hidden=(16,), cross_shells=True)
    for p in net.mlp.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = _config(np.random.default_rng(1))
    f = net.compute(_graph(net, x))["forces"].detach().numpy()
    h = 1e-5
    for a, b in ((0, 0), (3, 1), (7, 2)):
        e = []
        for s in (1, -1):
            y = x.copy()
            y[a, b] += s * h
            e.append(float(net.compute(_graph(net, y))["energy"]))
        assert f[a, b] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-6, abs=1e-9)
