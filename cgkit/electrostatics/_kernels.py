"""Torch kernels of :mod:`cgkit.electrostatics` (private; see :class:`Electrostatics`).

Every function returns per-atom energies (n,) in eV and is differentiable in positions,
cell and charges. Discrete choices (pairs within the cutoff, k-vectors, mesh indices) are
made on detached values; the energy is then a smooth function of the inputs at fixed
choices.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import StructureError
from ..neighbors import edge_vectors, neighbor_list, validate_structure

#: eV·Å/e² — Coulomb constant e²/(4πε0) (LAMMPS ``qqr2e`` in metal units)
K_E = 14.399645

_SQRT_PI = math.sqrt(math.pi)


def volume(cell: torch.Tensor) -> torch.Tensor:
    """det(cell) as a triple product (differentiable; avoids a dtype bug of det's backward
    for float32 inputs under a float64 default dtype)."""
    return torch.dot(cell[0], torch.linalg.cross(cell[1], cell[2]))


def _scatter(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    return values.new_zeros(n).index_add(0, index, values)


# ----------------------------------------------------------------------------- real space
def real_space_pairs(positions: torch.Tensor, cell: torch.Tensor, pbc: np.ndarray, r_cut: float):
    """Half neighbor list within ``r_cut``: every pair (i, j, S) once (of its two directions),
    self-images (i, i, S) once for ±S. Returns (i, j, d (E,)), d differentiable in positions
    and cell (cell rows of open directions are not used: their shifts are zero)."""
    pos_np = np.ascontiguousarray(positions.detach().cpu().double().numpy())
    cell_np = cell.detach().cpu().double().numpy()
    if pbc.all() and len(pos_np):
        # vesin's half list directly (half the search work of the full list)
        import vesin
        validate_structure(pos_np, cell_np, pbc)
        nl = vesin.NeighborList(cutoff=float(r_cut), full_list=False, n_threads=1)
        i0, j0, sh = nl.compute(pos_np, cell_np, True, quantities="ijS", copy=True)
        ei = np.stack([np.asarray(i0, dtype=np.int64), np.asarray(j0, dtype=np.int64)])
        sh = np.asarray(sh, dtype=np.int64).reshape(-1, 3)
    else:
        ei, sh = neighbor_list(pos_np, cell_np, pbc, r_cut)
        i0, j0 = ei
        # first nonzero shift component positive ⇒ keep one of (i, i, S) and (i, i, −S)
        first = np.where(sh[:, 0] != 0, sh[:, 0], np.where(sh[:, 1] != 0, sh[:, 1], sh[:, 2]))
        keep = (i0 < j0) | ((i0 == j0) & (first > 0))
        ei, sh = np.ascontiguousarray(ei[:, keep]), np.ascontiguousarray(sh[keep])
    ei = torch.from_numpy(ei).to(positions.device)
    sh = torch.from_numpy(sh).to(positions.device)
    rij = edge_vectors(positions, cell, ei, sh)
    d = torch.linalg.vector_norm(rij, dim=1)
    if d.numel() and float(d.detach().min()) < 1e-8:
        k = int(torch.argmin(d.detach()))
        raise StructureError(f"atoms {int(ei[0, k])} and {int(ei[1, k])} are at the same position "
                             "(or an atom on its own periodic image): the Coulomb energy is infinite")
    return ei[0], ei[1], d


def ewald_real(positions, charges, cell, pbc, alpha: float, r_cut: float) -> torch.Tensor:
    """½ Σ_j Σ_n' k_e q_i q_j erfc(α r)/r per atom i (pairs with r < r_cut)."""
    n = positions.shape[0]
    i, j, d = real_space_pairs(positions, cell, pbc, r_cut)
    pair = charges[i] * charges[j] * torch.erfc(alpha * d) / d
    return 0.5 * K_E * (_scatter(pair, i, n) + _scatter(pair, j, n))


def self_energy(charges, alpha: float) -> torch.Tensor:
    return -K_E * alpha / _SQRT_PI * charges * charges


def background_energy(charges, volume, alpha: float) -> torch.Tensor:
    """Uniform neutralising background: −π q_i Q/(2 V α²) k_e per atom (sums to −πQ²/(2Vα²))."""
    return -K_E * math.pi * charges * charges.sum() / (2.0 * volume * alpha * alpha)


# ------------------------------------------------------------------------ reciprocal (Ewald)
def kvector_indices(cell: np.ndarray, k_cut: float) -> np.ndarray:
    """Integer triples m (half space: one of each ±m pair, m ≠ 0) with |m·B| ≤ k_cut, where
    B = 2π cell⁻ᵀ are the reciprocal vectors (rows)."""
    cell = np.asarray(cell, dtype=np.float64)
    recip = 2.0 * math.pi * np.linalg.inv(cell).T
    hmax = [int(math.floor(k_cut * np.linalg.norm(cell[d]) / (2.0 * math.pi))) for d in range(3)]
    rng = [np.arange(-h, h + 1) for h in hmax]
    m = np.stack(np.meshgrid(*rng, indexing="ij"), axis=-1).reshape(-1, 3)
    half = (m[:, 0] > 0) | ((m[:, 0] == 0) & (m[:, 1] > 0)) | ((m[:, 0] == 0) & (m[:, 1] == 0) & (m[:, 2] > 0))
    m = m[half]
    k2 = ((m @ recip) ** 2).sum(1)
    return m[k2 <= k_cut * k_cut]


def ewald_reciprocal(positions, charges, cell, alpha: float, m_int: np.ndarray,
                     chunk_elems: int = 4_000_000) -> torch.Tensor:
    """k_e q_i φ_i^rec / 2 per atom, φ_i = (4π/V) Σ_{k≠0} e^{−k²/4α²}/k² Re[S(k) e^{−ik·r_i}]."""
    n = positions.shape[0]
    if len(m_int) == 0:
        return positions.new_zeros(n)
    vol = volume(cell)
    recip = 2.0 * math.pi * torch.linalg.inv(cell).transpose(0, 1)
    m = torch.as_tensor(m_int, dtype=positions.dtype, device=positions.device)
    chunk = max(1, chunk_elems // max(n, 1))
    phi = positions.new_zeros(n)
    for start in range(0, m.shape[0], chunk):
        k = m[start:start + chunk] @ recip                  # (nk, 3)
        k2 = (k * k).sum(1)
        f = torch.exp(-k2 / (4.0 * alpha * alpha)) / k2    # (nk,)
        phase = positions @ k.transpose(0, 1)               # (n, nk)
        c, s = torch.cos(phase), torch.sin(phase)
        C, S = charges @ c, charges @ s                      # (nk,)
        phi = phi + c @ (f * C) + s @ (f * S)
    phi = phi * (8.0 * math.pi / vol)   # 2 (half space) × 4π/V
    return 0.5 * K_E * charges * phi


# ----------------------------------------------------------------------------------- PME
def _bspline_weights(w: torch.Tensor, order: int) -> list[torch.Tensor]:
    """θ_k = M_p(w + k), k = 0..p−1, for cardinal B-splines M_p (w in [0, 1))."""
    theta = [w, 1.0 - w]  # order 2: M_2(w) = w, M_2(w+1) = 1 − w
    for n in range(3, order + 1):
        new = []
        for k in range(n):
            a = (w + k) * theta[k] if k < n - 1 else 0.0
            b = (n - w - k) * theta[k - 1] if k >= 1 else 0.0
            new.append((a + b) / (n - 1))
        theta = new
    return theta


def _bspline_moduli(K: int, order: int) -> np.ndarray:
    """|b(m)|² of smooth PME (Essmann et al. 1995, eq. 4.4) for m = 0..K−1."""
    x = np.arange(order, dtype=np.float64)
    # M_p at integer points 1..p−1
    vals = np.zeros(order + 1)
    vals[1] = 1.0  # M_2 at 0,1,2 -> 0,1,0
    for n in range(3, order + 1):
        new = np.zeros(order + 1)
        for k in range(1, n):
            new[k] = (k * vals[k] + (n - k) * vals[k - 1]) / (n - 1)
        vals = new
    Mk = vals[1:order]  # M_p(1..p−1)
    m = np.arange(K)
    arg = 2.0 * math.pi * np.outer(m, np.arange(order - 1)) / K
    den = (Mk[None, :] * np.exp(1j * arg)).sum(1)
    den2 = np.abs(den) ** 2
    bad = den2 < 1e-10  # odd orders vanish at the Nyquist frequency: interpolate
    for idx in np.nonzero(bad)[0]:
        den2[idx] = 0.5 * (den2[(idx - 1) % K] + den2[(idx + 1) % K])
    del x
    return 1.0 / den2


def pme_reciprocal(positions, charges, cell, alpha: float, mesh: tuple[int, int, int],
                   order: int) -> torch.Tensor:
    """Smooth PME reciprocal energy per atom (k_e q_i φ_i / 2), Essmann et al. 1995."""
    n = positions.shape[0]
    dtype, dev = positions.dtype, positions.device
    K = torch.tensor(mesh, dtype=dtype, device=dev)
    inv = torch.linalg.inv(cell)
    vol = volume(cell)
    u = (positions @ inv) * K                               # (n, 3) grid units
    fl = torch.floor(u.detach())
    w = u - fl
    ar = torch.arange(order, device=dev)
    idx, th = [], []
    for d in range(3):
        idx.append(torch.remainder(fl[:, d].long()[:, None] - ar[None, :], mesh[d]))   # (n, p)
        th.append(torch.stack(_bspline_weights(w[:, d], order), dim=1))                # (n, p)
    flat = ((idx[0][:, :, None, None] * mesh[1] + idx[1][:, None, :, None]) * mesh[2]
            + idx[2][:, None, None, :]).reshape(n, -1)
    weights = (th[0][:, :, None, None] * th[1][:, None, :, None] * th[2][:, None, None, :]).reshape(n, -1)
    ngrid = mesh[0] * mesh[1] * mesh[2]
    Q = positions.new_zeros(ngrid).index_add(0, flat.reshape(-1), (charges[:, None] * weights).reshape(-1))
    FQ = torch.fft.rfftn(Q.reshape(mesh))
    # influence function G(m) = B(m) exp(−π² m²/α²) / (π V m²) on the rfft half grid
    f = [torch.fft.fftfreq(mesh[d], d=1.0 / mesh[d], dtype=dtype, device=dev) for d in range(2)]
    f.append(torch.arange(mesh[2] // 2 + 1, dtype=dtype, device=dev))
    mi = torch.stack(torch.meshgrid(*f, indexing="ij"), dim=-1)          # (K1, K2, K3/2+1, 3)
    mvec = mi @ inv.transpose(0, 1)                                       # m_d b*_d, b* = rows of inv.T
    m2 = (mvec * mvec).sum(-1)
    m2 = torch.where(m2 > 0, m2, torch.ones_like(m2))
    bm = [torch.as_tensor(_bspline_moduli(mesh[d], order), dtype=dtype, device=dev) for d in range(3)]
    B = bm[0][:, None, None] * bm[1][None, :, None] * bm[2][None, None, : mesh[2] // 2 + 1]
    G = B * torch.exp(-(math.pi ** 2) * m2 / (alpha * alpha)) / (math.pi * vol * m2)
    zero = torch.zeros_like(G)
    zero[0, 0, 0] = 1.0
    G = G * (1.0 - zero)
    phi_grid = torch.fft.irfftn(G * FQ, s=mesh).reshape(-1) * ngrid
    phi = (weights * phi_grid[flat]).sum(1)
    return 0.5 * K_E * charges * phi


# ----------------------------------------------------------------------------- open / DSF
def direct_sum(positions, charges, chunk: int = 2_000_000) -> torch.Tensor:
    """½ Σ_{j≠i} k_e q_i q_j / r_ij per atom (no periodic images)."""
    n = positions.shape[0]
    out = positions.new_zeros(n)
    if n < 2:
        return out
    iu = torch.triu_indices(n, n, 1, device=positions.device)
    for s in range(0, iu.shape[1], chunk):
        i, j = iu[0, s:s + chunk], iu[1, s:s + chunk]
        d = torch.linalg.vector_norm(positions[j] - positions[i], dim=1)
        pair = 0.5 * K_E * charges[i] * charges[j] / d
        out = out + _scatter(pair, i, n) + _scatter(pair, j, n)
    return out


def dsf(positions, charges, cell, pbc, alpha: float, r_cut: float) -> torch.Tensor:
    """Damped shifted force (Fennell & Gezelter 2006; LAMMPS ``coul/dsf``) per atom.

    Pair: k_e q_i q_j [erfc(αr)/r − erfc(αR)/R + (erfc(αR)/R² + 2α e^{−α²R²}/(√π R))(r − R)]
    for r < R; self: −k_e (e_shift/2 + α/√π) q_i² with e_shift = erfc(αR)/R + R·slope (LAMMPS).
    """
    n = positions.shape[0]
    i, j, d = real_space_pairs(positions, cell, pbc, r_cut)
    erfc_c = math.erfc(alpha * r_cut)
    shift = erfc_c / r_cut
    slope = erfc_c / r_cut ** 2 + 2.0 * alpha / _SQRT_PI * math.exp(-(alpha * r_cut) ** 2) / r_cut
    v = torch.erfc(alpha * d) / d - shift + slope * (d - r_cut)
    pair = charges[i] * charges[j] * v
    e = 0.5 * K_E * (_scatter(pair, i, n) + _scatter(pair, j, n))
    # self term as LAMMPS coul/dsf: −(e_shift/2 + α/√π) q_i², e_shift = V(0)-shift of the pair
    # potential erfc(αR)/R + slope·R
    e_self = -K_E * (0.5 * (shift + slope * r_cut) + alpha / _SQRT_PI) * charges * charges
    return e + e_self


# ----------------------------------------------------------------------------- exclusions
def exclusion_correction(positions, charges, cell, pbc: np.ndarray, pairs: torch.Tensor,
                         scale: torch.Tensor) -> torch.Tensor:
    """−(1 − s) k_e q_i q_j / r_ij per pair (minimum image), split half to each atom.

    Removes (1 − s) of the full Coulomb interaction of the pair from a sum (Ewald real +
    reciprocal, direct) that contains it once."""
    n = positions.shape[0]
    if pairs.shape[0] == 0:
        return positions.new_zeros(n)
    i, j = pairs[:, 0], pairs[:, 1]
    rij = positions[j] - positions[i]
    if pbc.any():
        with torch.no_grad():
            cd = cell.detach().double()
            inv = torch.linalg.inv(cd)
            frac = rij.detach().double() @ inv
            per = torch.as_tensor(pbc, device=positions.device)
            base = torch.where(per, -torch.round(frac), torch.zeros_like(frac))
            cand = torch.stack(torch.meshgrid(*[torch.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
            cand = cand.to(positions.device).double() * per.double()
            trial = base[:, None, :] + cand[None, :, :]                    # (m, 27, 3)
            vec = rij.detach().double()[:, None, :] + trial @ cd
            best = torch.argmin((vec * vec).sum(-1), dim=1)
            shift = trial[torch.arange(len(best)), best]
        rij = rij + shift.to(positions.dtype) @ cell
    d = torch.linalg.vector_norm(rij, dim=1)
    pair = -0.5 * K_E * (1.0 - scale) * charges[i] * charges[j] / d
    return _scatter(pair, i, n) + _scatter(pair, j, n)


def slab_correction(z, charges, volume, height_ext) -> torch.Tensor:
    """Yeh–Berkowitz (1999) dipole correction with the net-charge terms of Ballenegger et al.
    (2009), per atom as LAMMPS: E = 2π k_e/V (M² − Q Σ q z² − Q² L²/12)."""
    Q = charges.sum()
    M = (charges * z).sum()
    M2 = (charges * z * z).sum()
    return (2.0 * math.pi * K_E / volume) * charges * (
        z * M - 0.5 * (M2 + Q * z * z) - Q * height_ext * height_ext / 12.0)
