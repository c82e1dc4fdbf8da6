"""Model-chain generators for the polymer tests (FJC, FRC, WLC, rigid rod, lattice SAW) and
in-memory MDAnalysis universes built from them — plus checks that the generators themselves
produce the chain statistics they claim (so the analysis tests rest on verified input)."""
from __future__ import annotations

import numpy as np
import pytest

MDAnalysis = pytest.importorskip("MDAnalysis")


# ----------------------------------------------------------------------------- generators
def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_unit(rng, shape):
    return _unit(rng.normal(size=tuple(shape) + (3,)))


def chains_from_cos(rng, n_chains, n_beads, b, cos_theta):
    """Chains with bond length b (Å) whose successive bond vectors make angles with the given
    cosines (n_chains, n_beads - 2) and uniformly random azimuths. Returns (n_chains, n_beads, 3)."""
    t = random_unit(rng, (n_chains,))
    bonds = [t]
    for k in range(n_beads - 2):
        a = np.where(np.abs(t[:, :1]) < 0.9, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
        e1 = _unit(np.cross(t, a))
        e2 = np.cross(t, e1)
        phi = rng.uniform(0, 2 * np.pi, n_chains)[:, None]
        c = cos_theta[:, k:k + 1]
        s = np.sqrt(np.clip(1 - c * c, 0, None))
        t = c * t + s * (np.cos(phi) * e1 + np.sin(phi) * e2)
        bonds.append(t)
    B = b * np.stack(bonds, axis=1)
    x = np.concatenate([np.zeros((n_chains, 1, 3)), np.cumsum(B, axis=1)], axis=1)
    return x + rng.uniform(0, 10, size=(n_chains, 1, 3))


def fjc(rng, n_chains, n_beads, b=1.0):
    """Freely-jointed chain: independent random bond directions."""
    return chains_from_cos(rng, n_chains, n_beads, b, rng.uniform(-1, 1, (n_chains, n_beads - 2)))


def frc(rng, n_chains, n_beads, b, cos_theta):
    """Freely-rotating chain: fixed cosine between successive bond vectors (= −cos of the bond angle)."""
    return chains_from_cos(rng, n_chains, n_beads, b, np.full((n_chains, n_beads - 2), cos_theta))


def wlc_cos_samples(rng, shape, kappa):
    """cos θ drawn from p(cos θ) ∝ exp(κ cos θ) (discrete worm-like chain, bending stiffness κ kT)."""
    u = rng.uniform(size=shape)
    return 1.0 + np.log1p(-u * (-np.expm1(-2 * kappa))) / kappa


def wlc(rng, n_chains, n_beads, b, kappa):
    """Discrete worm-like chain; ⟨cos θ⟩ = coth κ − 1/κ, persistence length −b / ln⟨cos θ⟩."""
    return chains_from_cos(rng, n_chains, n_beads, b, wlc_cos_samples(rng, (n_chains, n_beads - 2), kappa))


def wlc_mean_cos(kappa):
    return 1.0 / np.tanh(kappa) - 1.0 / kappa


def rod(n_chains, n_beads, b, direction=(1.0, 2.0, 2.0)):
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    x = b * np.arange(n_beads)[:, None] * d
    return np.repeat(x[None], n_chains, axis=0) + 5.0 * np.arange(n_chains)[:, None, None]


_CUBE_OPS = None


def _cube_ops():
    """The 47 non-identity symmetry operations of the cubic lattice (signed permutations)."""
    global _CUBE_OPS
    if _CUBE_OPS is None:
        import itertools
        ops = []
        for perm in itertools.permutations(range(3)):
            for signs in itertools.product((1, -1), repeat=3):
                m = np.zeros((3, 3), dtype=np.int64)
                m[np.arange(3), perm] = signs
                if not np.array_equal(m, np.eye(3, dtype=np.int64)):
                    ops.append(m)
        _CUBE_OPS = np.array(ops)
    return _CUBE_OPS


def saw_pivot(rng, n_chains, n_beads, n_attempts):
    """Self-avoiding walks on the simple cubic lattice (unit spacing) by the pivot algorithm,
    run in parallel for n_chains independent Markov chains started from straight rods."""
    ops = _cube_ops()
    x = np.zeros((n_chains, n_beads, 3), dtype=np.int64)
    x[:, :, 0] = np.arange(n_beads)
    P = 4 * n_beads + 1
    idx = np.arange(n_beads)
    rows = np.arange(n_chains)
    for _ in range(n_attempts):
        k = rng.integers(1, n_beads - 1, n_chains)
        g = ops[rng.integers(0, len(ops), n_chains)]
        piv = x[rows, k][:, None, :]
        rot = np.einsum("cij,cnj->cni", g, x - piv) + piv
        tail = idx[None, :] > k[:, None]
        new = np.where(tail[..., None], rot, x)
        key = ((new[..., 0] + 2 * n_beads) * P + (new[..., 1] + 2 * n_beads)) * P + (new[..., 2] + 2 * n_beads)
        ks = np.sort(key, axis=1)
        ok = ~(ks[:, 1:] == ks[:, :-1]).any(axis=1)
        x[ok] = new[ok]
    return x.astype(np.float64)


def make_universe(coords, *, box=None, resnames=None, masses=None, bonds=True, dt_ps=1.0,
                  chain_lengths=None):
    """In-memory universe of linear chains.

    coords: (n_frames, n_atoms, 3) Å with chains stored consecutively, chain c having
    chain_lengths[c] beads (default: equal lengths given by coords of shape (n_frames, C, L, 3)).
    Bonds join consecutive beads of each chain (in atom order unless the caller permutes).
    """
    from MDAnalysis.coordinates.memory import MemoryReader
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 3 and chain_lengths is None:
        coords = coords[None]
    if coords.ndim == 4:
        nf, C, L, _ = coords.shape
        chain_lengths = [L] * C
        coords = coords.reshape(nf, C * L, 3)
    lens = np.asarray(chain_lengths)
    n = int(lens.sum())
    C = len(lens)
    resindex = np.repeat(np.arange(C), lens)
    u = MDAnalysis.Universe.empty(n, n_residues=C, atom_resindex=resindex, trajectory=True)
    u.add_TopologyAttr("names", ["C"] * n)
    u.add_TopologyAttr("types", ["C"] * n)
    u.add_TopologyAttr("resnames", resnames if resnames is not None else ["PLY"] * C)
    if masses is not None:
        u.add_TopologyAttr("masses", masses)
    if bonds:
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        bl = [np.stack([s + np.arange(m - 1), s + np.arange(1, m)], axis=1) for s, m in zip(starts, lens)]
        u.add_TopologyAttr("bonds", [tuple(p) for p in np.concatenate(bl).tolist()])
    dims = None
    if box is not None:
        box = np.asarray(box, dtype=float)
        dims = np.tile(box if box.size == 6 else np.r_[box, 90, 90, 90], (coords.shape[0], 1))
    u.load_new(coords.astype(np.float32), format=MemoryReader, dimensions=dims, dt=dt_ps)
    return u


# ----------------------------------------------------------------------------- generator checks
def test_frc_generator_has_the_requested_bond_angle_and_length():
    rng = np.random.default_rng(0)
    x = frc(rng, 5, 30, 1.5, 0.3)
    B = np.diff(x, axis=1)
    assert np.allclose(np.linalg.norm(B, axis=-1), 1.5)
    c = (B[:, 1:] * B[:, :-1]).sum(-1) / 1.5 ** 2
    assert np.allclose(c, 0.3)


def test_wlc_cos_sampler_matches_langevin_mean():
    rng = np.random.default_rng(1)
    c = wlc_cos_samples(rng, 400_000, 8.0)
    assert c.min() >= -1 - 1e-12 and c.max() <= 1 + 1e-12
    assert abs(c.mean() - wlc_mean_cos(8.0)) < 5 * c.std() / np.sqrt(c.size)


def test_pivot_saw_is_self_avoiding_with_unit_steps():
    rng = np.random.default_rng(2)
    x = saw_pivot(rng, 20, 40, 200)
    assert np.allclose(np.linalg.norm(np.diff(x, axis=1), axis=-1), 1.0)
    for c in x:
        assert len(np.unique(c, axis=0)) == len(c)
    assert not np.allclose(x[:, :, 1:], 0)    # moves were accepted
