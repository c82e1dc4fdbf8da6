"""Compiled pair-table kernel for MD with :class:`~cgkit.forcematch.tabulated.TabulatedPotential`.

What :class:`cgkit.md.MolecularDynamics` uses for tabulated CG potentials (the MD hot loop):

* a **half Verlet list** (each pair once, ``i < j``) built with ``cutoff + skin`` by a cell
  list (bins at least ``cutoff + skin`` wide along every lattice plane spacing, so the 27
  neighbouring bins hold every partner, triclinic cells included); kept until some particle
  has moved more than ``skin/2`` (the MD driver decides);
* **closed-form pair forces** from the tables: the same cubic Hermite interpolation, linear
  continuation below the grid and zero beyond the last point as
  :func:`cgkit.forcematch.tabulated.hermite`, evaluated pair by pair in float64 and
  accumulated into forces (n, 3) eV/Å and per-replica energies (R,) eV.

Both are ~100 lines of C compiled once with the system C compiler (``cc``, ``-O3``) into a
cache folder (``$CGKIT_CACHE_DIR`` or ``~/.cache/cgkit``; the file name holds a hash of the
source, so an edited kernel is rebuilt) and called through :mod:`ctypes`; no Python loop
runs over pairs or particles. Without a C compiler :func:`available` is False and callers use
the vectorised torch path (same results, about 10-20× slower).

Accuracy: everything is float64 whatever the MD precision (float32 MD casts the positions in
and the forces out); the forces equal the autograd forces of
:meth:`TabulatedPotential.atomic_energies` to rounding (the tests check 1e-10 eV/Å).

Units: positions and cells Å, energies eV, forces eV/Å.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import CgkitWarning

__all__ = ["available", "PairKernel", "half_neighbor_list", "KernelUnavailableWarning"]

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>

/* Half list (each pair once) of particles closer than rc in a fully periodic cell, with a
   cell list: bins >= rc/k wide along every lattice plane spacing, >= 2k+1 bins per direction,
   so the half stencil (own bin with j > i, and the offsets lexicographically after (0,0,0)
   within +-k) meets every pair exactly once. Particles are sorted by bin (counting sort);
   bins adjacent along the last axis are contiguous, so each (dx, dy) row of the stencil is
   one to three contiguous ranges, scanned with branch-free compaction (no mispredicted
   branch per candidate). pos (n,3) Cartesian (need not be wrapped; S refers to the given
   positions), cell rows a,b,c, inv = cell^-1. Pairs whose types have no table
   (pair_id < 0) are left out. Returns the number of pairs; once it would exceed cap,
   nothing more is written and the count goes on (the caller retries with a larger buffer).
   Returns -1 if malloc fails. */
int64_t half_list(int64_t n, const double *pos, const double *cell, const double *inv,
                  const int64_t *nb, int64_t k, double rc, int64_t offset,
                  const int32_t *species, const int32_t *pair_id, int64_t ntypes,
                  int64_t cap, int32_t *pi, int32_t *pj, int8_t *ps, int32_t *ptid) {
    int64_t nx = nb[0], ny = nb[1], nz = nb[2], nbins = nx * ny * nz, count = 0;
    double rc2 = rc * rc;
    double *fr = malloc(sizeof(double) * 3 * (n + 1));
    double *sx = malloc(sizeof(double) * (n + 1)), *sy = malloc(sizeof(double) * (n + 1)),
           *sz = malloc(sizeof(double) * (n + 1));
    int32_t *img = malloc(sizeof(int32_t) * 3 * (n + 1)), *simg = malloc(sizeof(int32_t) * 3 * (n + 1));
    int32_t *ssp = malloc(sizeof(int32_t) * (n + 1)), *ord = malloc(sizeof(int32_t) * (n + 1));
    int64_t *bin = malloc(sizeof(int64_t) * (n + 1)), *start = calloc(nbins + 2, sizeof(int64_t)),
            *fill = malloc(sizeof(int64_t) * (nbins + 1));
    if (!fr || !sx || !sy || !sz || !img || !simg || !ssp || !ord || !bin || !start || !fill) {
        count = -1;
        goto done;
    }
    for (int64_t q = 0; q < n; q++) {
        const double *x = pos + 3 * q;
        int64_t ib[3];
        for (int d = 0; d < 3; d++) {
            double s = x[0] * inv[0 * 3 + d] + x[1] * inv[1 * 3 + d] + x[2] * inv[2 * 3 + d];
            double f = floor(s);
            s -= f;
            if (s >= 1.0) { s -= 1.0; f += 1.0; }
            fr[3 * q + d] = s;
            img[3 * q + d] = (int32_t)f;
            int64_t m = (int64_t)(s * nb[d]);
            if (m >= nb[d]) m = nb[d] - 1;
            if (m < 0) m = 0;
            ib[d] = m;
        }
        int64_t b = (ib[0] * ny + ib[1]) * nz + ib[2];
        bin[q] = b;
        start[b + 1]++;
    }
    for (int64_t b = 0; b < nbins; b++) start[b + 1] += start[b];
    for (int64_t b = 0; b < nbins; b++) fill[b] = start[b];
    for (int64_t q = 0; q < n; q++) {  /* stable: increasing particle index within a bin */
        int64_t at = fill[bin[q]]++;
        ord[at] = (int32_t)q;
        sx[at] = fr[3 * q]; sy[at] = fr[3 * q + 1]; sz[at] = fr[3 * q + 2];
        simg[3 * at] = img[3 * q]; simg[3 * at + 1] = img[3 * q + 1]; simg[3 * at + 2] = img[3 * q + 2];
        ssp[at] = species[q];
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t b = bin[i];
        int64_t bx = b / (ny * nz), by = (b / nz) % ny, bz = b % nz;
        const double fx = fr[3 * i], fy = fr[3 * i + 1], fz = fr[3 * i + 2];
        const int32_t ix = img[3 * i], iy = img[3 * i + 1], iz = img[3 * i + 2];
        const int32_t *prow = pair_id + ntypes * species[i];
        for (int dx = 0; dx <= k; dx++) {
            int64_t cx = bx + dx; int wx = 0;
            if (cx >= nx) { cx -= nx; wx = 1; }
            for (int dy = (dx == 0 ? 0 : -k); dy <= k; dy++) {
                int64_t cy = by + dy; int wy = 0;
                if (cy < 0) { cy += ny; wy = -1; } else if (cy >= ny) { cy -= ny; wy = 1; }
                int64_t row = (cx * ny + cy) * nz;
                int64_t z0 = bz + ((dx == 0 && dy == 0) ? 0 : -k), z1 = bz + k;
                /* own bin: only partners with j > i (it is the first bin of the dx = dy = 0 row) */
                int64_t row_own_end = (dx == 0 && dy == 0) ? start[b + 1] : 0;
                /* up to three contiguous segments: wrapped below, inside, wrapped above */
                int64_t seg_lo[3], seg_hi[3]; int seg_w[3], nseg = 0;
                if (z0 < 0) { seg_lo[nseg] = z0 + nz; seg_hi[nseg] = nz - 1; seg_w[nseg++] = -1; }
                {
                    int64_t lo = z0 < 0 ? 0 : z0, hi = z1 >= nz ? nz - 1 : z1;
                    if (lo <= hi) { seg_lo[nseg] = lo; seg_hi[nseg] = hi; seg_w[nseg++] = 0; }
                }
                if (z1 >= nz) { seg_lo[nseg] = 0; seg_hi[nseg] = z1 - nz; seg_w[nseg++] = 1; }
                for (int g = 0; g < nseg; g++) {
                    int64_t a0 = start[row + seg_lo[g]], a1 = start[row + seg_hi[g] + 1];
                    if (a1 <= a0) continue;
                    const int64_t own_end = seg_w[g] == 0 ? row_own_end : 0;
                    const double ox = wx - fx, oy = wy - fy, oz = seg_w[g] - fz;
                    const int32_t tx = wx + ix, ty = wy + iy, tz = seg_w[g] + iz;
                    if (count + (a1 - a0) <= cap) {
                        for (int64_t at = a0; at < a1; at++) {
                            double f0 = sx[at] + ox, f1 = sy[at] + oy, f2 = sz[at] + oz;
                            double d0 = f0 * cell[0] + f1 * cell[3] + f2 * cell[6];
                            double d1 = f0 * cell[1] + f1 * cell[4] + f2 * cell[7];
                            double d2 = f0 * cell[2] + f1 * cell[5] + f2 * cell[8];
                            int32_t j = ord[at], t = prow[ssp[at]];
                            int ok = (d0 * d0 + d1 * d1 + d2 * d2 < rc2) & (t >= 0) & ((at >= own_end) | (j > i));
                            pi[count] = (int32_t)(i + offset);
                            pj[count] = (int32_t)(j + offset);
                            ptid[count] = t;
                            ps[3 * count] = (int8_t)(tx - simg[3 * at]);
                            ps[3 * count + 1] = (int8_t)(ty - simg[3 * at + 1]);
                            ps[3 * count + 2] = (int8_t)(tz - simg[3 * at + 2]);
                            count += ok;
                        }
                    } else {  /* buffer full: count only */
                        for (int64_t at = a0; at < a1; at++) {
                            double f0 = sx[at] + ox, f1 = sy[at] + oy, f2 = sz[at] + oz;
                            double d0 = f0 * cell[0] + f1 * cell[3] + f2 * cell[6];
                            double d1 = f0 * cell[1] + f1 * cell[4] + f2 * cell[7];
                            double d2 = f0 * cell[2] + f1 * cell[5] + f2 * cell[8];
                            int32_t j = ord[at], t = prow[ssp[at]];
                            count += (d0 * d0 + d1 * d1 + d2 * d2 < rc2) & (t >= 0) & ((at >= own_end) | (j > i));
                        }
                    }
                }
            }
        }
    }
done:
    free(fr); free(sx); free(sy); free(sz); free(img); free(simg); free(ssp); free(ord);
    free(bin); free(start); free(fill);
    return count;
}

/* Pair forces and energies from packed Hermite tables (see tabulated._pack): for every pair p
   of the half list, d = x[j] - x[i] + S[p].cell, r = |d|, table t = tid[p];
   u = (r - x0[t]) / h[t]; below the grid linear continuation, beyond its last point zero,
   else the cubic C[off+k] (as hermite(): k = min(floor(u), N-2), t = clamp(u - k, 0, 1)).
   F[i] += dU/dr d/r, F[j] -= dU/dr d/r, E[rep[i]] += U.
   Per chunk of pairs: pass 1 is branch-free (selects, int indices) so that the compiler
   vectorises it (gathers), with a variant for chunks that use a single table (its
   parameters are then scalars, not gathers); pass 2 accumulates, F_i in registers since
   pairs come grouped by i. Returns the number of pairs at zero distance (they get no force;
   the caller reports them). */
#define CHUNK 512
static inline int64_t pass1(int64_t m, const int32_t *ci, const int32_t *cj, const int32_t *ct,
                            const int8_t *cs, const double *pos, const double *cell,
                            const double *x0, const double *ih_, const int64_t *nt, const int64_t *off,
                            const double *U, const double *dU, const double *C, const double *rmax2,
                            const int uniform, double *G0, double *G1, double *G2, double *V) {
    const double c0 = cell[0], c1 = cell[1], c2 = cell[2], c3 = cell[3], c4 = cell[4], c5 = cell[5],
                 c6 = cell[6], c7 = cell[7], c8 = cell[8];
    const int t0 = ct[0];
    int64_t z = 0;
    for (int64_t q = 0; q < m; q++) {
        int i = ci[q], j = cj[q], t = uniform ? t0 : ct[q];
        double s0 = cs[3 * q], s1 = cs[3 * q + 1], s2 = cs[3 * q + 2];
        double d0 = pos[3 * j] - pos[3 * i] + s0 * c0 + s1 * c3 + s2 * c6;
        double d1 = pos[3 * j + 1] - pos[3 * i + 1] + s0 * c1 + s1 * c4 + s2 * c7;
        double d2 = pos[3 * j + 2] - pos[3 * i + 2] + s0 * c2 + s1 * c5 + s2 * c8;
        double r2 = d0 * d0 + d1 * d1 + d2 * d2;
        z += (r2 == 0.0);
        double inside = (r2 <= rmax2[t] && r2 > 0.0) ? 1.0 : 0.0;
        double rinv = 1.0 / sqrt(r2 > 1e-300 ? r2 : 1e-300);
        double r = r2 * rinv, ih = ih_[t], xa = x0[t];
        double u = (r - xa) * ih;
        int o = (int)off[t];
        double lastd = (double)(nt[t] - 1);
        double u0 = u > 0.0 ? u : 0.0;
        double uc = u0 < lastd - 0.5 ? u0 : lastd - 0.5;
        int k = (int)uc;
        double tt = (u0 < lastd ? u0 : lastd) - (double)k;
        int b = 4 * (o + k);
        double a0 = C[b], a1 = C[b + 1], a2 = C[b + 2], a3 = C[b + 3];
        double val = ((a3 * tt + a2) * tt + a1) * tt + a0;
        double der = ((3.0 * a3 * tt + 2.0 * a2) * tt + a1) * ih;
        double below = u < 0.0 ? 1.0 : 0.0;
        double keep = (u <= lastd) ? inside : 0.0;
        val = below * (U[o] + dU[o] * (r - xa)) + (1.0 - below) * val;
        der = below * dU[o] + (1.0 - below) * der;
        double g = keep * der * rinv;
        V[q] = keep * val;
        G0[q] = g * d0; G1[q] = g * d1; G2[q] = g * d2;
    }
    return z;
}

int64_t pair_forces(int64_t np, const int32_t *pi, const int32_t *pj, const int8_t *ps,
                    const int32_t *tid, const double *pos, const double *cell,
                    const double *x0, const double *ih_, const int64_t *nt, const int64_t *off,
                    const double *U, const double *dU, const double *C, const double *rmax2,
                    const int64_t *rep, double *F, double *E) {
    double G0[CHUNK], G1[CHUNK], G2[CHUNK], V[CHUNK];  /* per-chunk pair results */
    int64_t nzero = 0, cur = -1;
    double f0 = 0.0, f1 = 0.0, f2 = 0.0, ev = 0.0;
    for (int64_t p0 = 0; p0 < np; p0 += CHUNK) {
        int64_t m = np - p0 < CHUNK ? np - p0 : CHUNK;
        const int32_t *ci = pi + p0, *cj = pj + p0, *ct = tid + p0;
        const int8_t *cs = ps + 3 * p0;
        int uniform = 1;
        for (int64_t q = 1; q < m; q++) uniform &= (ct[q] == ct[0]);
        if (uniform)
            nzero += pass1(m, ci, cj, ct, cs, pos, cell, x0, ih_, nt, off, U, dU, C, rmax2, 1, G0, G1, G2, V);
        else
            nzero += pass1(m, ci, cj, ct, cs, pos, cell, x0, ih_, nt, off, U, dU, C, rmax2, 0, G0, G1, G2, V);
        for (int64_t q = 0; q < m; q++) {
            int64_t i = ci[q], j = cj[q];
            if (i != cur) {
                if (cur >= 0) { F[3 * cur] += f0; F[3 * cur + 1] += f1; F[3 * cur + 2] += f2; E[rep[cur]] += ev; }
                cur = i; f0 = f1 = f2 = ev = 0.0;
            }
            f0 += G0[q]; f1 += G1[q]; f2 += G2[q]; ev += V[q];
            F[3 * j] -= G0[q]; F[3 * j + 1] -= G1[q]; F[3 * j + 2] -= G2[q];
        }
    }
    if (cur >= 0) { F[3 * cur] += f0; F[3 * cur + 1] += f1; F[3 * cur + 2] += f2; E[rep[cur]] += ev; }
    return nzero;
}
"""


class KernelUnavailableWarning(CgkitWarning):
    """The compiled pair kernel could not be built; the (slower) torch path is used."""


_LIB = None
_TRIED = False
_REASON = ""


def _cache_dir() -> Path:
    env = os.environ.get("CGKIT_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "cgkit"
    return base / "kernels"


def _cpu_tag() -> str:
    """CPU model and feature flags (the cache key of a ``-march=native`` build)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.machine() + platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


def _compile() -> ctypes.CDLL | None:
    """Build (or find in the cache) and load the kernel library. Compiled for the host CPU
    (``-march=native``: the pair pass vectorises with AVX2/AVX-512 gathers, ~2× faster);
    the cache key holds the CPU's model and flags, so a cache folder shared between machines
    never hands one CPU's build to another. Falls back to a generic build."""
    global _REASON
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        _REASON = "no C compiler (cc/gcc/clang) on PATH"
        return None
    extra = os.environ.get("CGKIT_KERNEL_CFLAGS")
    flag_sets = [extra.split()] if extra is not None else [
        ["-march=native", "-fno-math-errno"], ["-fno-math-errno"], []]
    for flags in flag_sets:
        key = _SOURCE + cc + sys.platform + " ".join(flags) + ("\n" + _cpu_tag() if "-march=native" in flags else "")
        tag = hashlib.sha256(key.encode()).hexdigest()[:16]
        for d in (_cache_dir(), Path(tempfile.gettempdir()) / f"cgkit-kernels-{os.getuid()}"):
            lib = d / f"pair_kernel_{tag}.so"
            try:
                if not lib.exists():
                    d.mkdir(parents=True, exist_ok=True)
                    with tempfile.TemporaryDirectory(dir=d) as tmp:
                        src = Path(tmp) / "pair_kernel.c"
                        src.write_text(_SOURCE)
                        out = Path(tmp) / lib.name
                        r = subprocess.run([cc, "-O3", *flags, "-fPIC", "-shared", "-o", str(out), str(src), "-lm"],
                                           capture_output=True, text=True, timeout=120)
                        if r.returncode != 0:
                            _REASON = f"{cc} {' '.join(flags)} failed: {r.stderr.strip()[:300]}"
                            break  # the next flag set
                        os.replace(out, lib)  # atomic: concurrent builders agree on the result
                return ctypes.CDLL(str(lib))
            except OSError as exc:
                _REASON = f"cannot build or load the kernel in {d}: {exc}"
                continue
    return None


def _lib():
    global _LIB, _TRIED
    if not _TRIED:
        _TRIED = True
        if os.environ.get("CGKIT_NO_KERNEL"):
            globals()["_REASON"] = "CGKIT_NO_KERNEL is set"
        else:
            _LIB = _compile()
            if _LIB is not None:
                P = ctypes.c_void_p
                i64, f64 = ctypes.c_int64, ctypes.c_double
                _LIB.half_list.restype = i64
                _LIB.half_list.argtypes = [i64, P, P, P, P, i64, f64, i64, P, P, i64, i64, P, P, P, P]
                _LIB.pair_forces.restype = i64
                _LIB.pair_forces.argtypes = [i64] + [P] * 17

    return _LIB


def available() -> bool:
    """True when the compiled kernel could be built (or was cached) and loaded."""
    return _lib() is not None


def unavailable_reason() -> str:
    _lib()
    return _REASON


def _bins(cell: np.ndarray, rc: float):
    """(bins per lattice direction, stencil reach k): bins at least rc/k wide along every
    plane spacing and at least 2k+1 of them per direction (k = 2 when the cell allows it,
    which checks about 3.5× fewer candidates than k = 1); None when even k = 1 does not fit."""
    vol = abs(float(np.linalg.det(cell)))
    spacing = np.array([vol / np.linalg.norm(np.cross(cell[(d + 1) % 3], cell[(d + 2) % 3]))
                        for d in range(3)])
    for k in (2, 1):
        nb = np.floor(spacing * k / rc).astype(np.int64)
        if np.all(nb >= 2 * k + 1):
            # cap the number of bins (memory) for very large, sparse boxes
            while np.prod(nb) > 8_000_000 and np.all(nb // 2 >= 2 * k + 1):
                nb = nb // 2
            return nb, k
    return None


def half_neighbor_list(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float,
                       n_replicas: int = 1, species=None, pair_id=None):
    """Half neighbour list (each pair once) of particles closer than ``cutoff`` Å.

    positions (R·n, 3) Å, R = ``n_replicas`` independent copies (pairs only within a copy;
    indices are global rows); cell (3, 3) Å, rows are lattice vectors; pbc (3,) bool;
    optional ``species`` (R·n,) and ``pair_id`` (T, T) table index per type pair (pairs with
    ``pair_id < 0`` are left out). Returns ``(i, j, S, tid)``: int32 (m,), int32 (m,),
    int8 (m, 3), int32 (m,) with ``d_ij = r_j - r_i + S @ cell`` (tid 0 without ``pair_id``).
    Uses the compiled cell list when the cell is periodic along all three directions and at
    least 3 list cutoffs thick along each plane spacing; otherwise
    :func:`cgkit.neighbors.neighbor_list` (vesin), filtered to the half list.
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.ascontiguousarray(np.asarray(cell, dtype=np.float64).reshape(3, 3))
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    R = int(n_replicas)
    n = len(pos) // R
    if species is None or pair_id is None:
        species = np.zeros(len(pos), dtype=np.int32)
        pair_id = np.zeros((1, 1), dtype=np.int32)
    species = np.ascontiguousarray(species, dtype=np.int32)
    pair_id = np.ascontiguousarray(pair_id, dtype=np.int32)
    lib = _lib()
    bins = _bins(cell, cutoff) if (lib is not None and pbc.all()) else None
    if bins is None:
        i, j, S = _half_list_vesin(pos, cell, pbc, cutoff, R)
        tid = pair_id[species[i], species[j]]
        keep = tid >= 0
        return i[keep], j[keep], S[keep], np.ascontiguousarray(tid[keep], dtype=np.int32)
    nb, reach = bins
    inv = np.ascontiguousarray(np.linalg.inv(cell))
    # image counts must fit the int8 shifts (positions far outside the cell: use vesin)
    if len(pos) and np.abs(np.floor(pos @ inv)).max() > 60:
        i, j, S = _half_list_vesin(pos, cell, pbc, cutoff, R)
        tid = pair_id[species[i], species[j]]
        keep = tid >= 0
        return i[keep], j[keep], S[keep], np.ascontiguousarray(tid[keep], dtype=np.int32)
    # expected pairs ~ n²/2 · (4π/3 rc³)/V; start with 1.3× that and retry if it was not enough
    vol = abs(float(np.linalg.det(cell)))
    cap = int(1.3 * n * n * (4.0 / 3.0 * np.pi * cutoff ** 3) / (2 * vol)) + 1024
    out = []
    for k in range(R):
        sub = pos[k * n:(k + 1) * n]
        while True:
            pi = np.empty(cap, dtype=np.int32)
            pj = np.empty(cap, dtype=np.int32)
            ps = np.empty((cap, 3), dtype=np.int8)
            pt = np.empty(cap, dtype=np.int32)
            m = lib.half_list(n, sub.ctypes.data, cell.ctypes.data, inv.ctypes.data, nb.ctypes.data, reach,
                              float(cutoff), k * n, species[k * n:(k + 1) * n].ctypes.data,
                              pair_id.ctypes.data, len(pair_id), cap, pi.ctypes.data, pj.ctypes.data,
                              ps.ctypes.data, pt.ctypes.data)
            if m < 0:
                raise MemoryError("half_neighbor_list: out of memory")
            if m <= cap:
                break
            cap = int(m * 1.2) + 1024
        out.append((pi[:m], pj[:m], ps[:m], pt[:m]))
    if R == 1:
        return out[0]
    return tuple(np.concatenate([o[c] for o in out]) for c in range(4))


def _half_list_vesin(pos, cell, pbc, cutoff, R):
    """Half list from :func:`cgkit.neighbors.neighbor_list` (any cell, self-images included)."""
    from ..errors import StructureError
    from ..neighbors import neighbor_list
    n = len(pos) // R
    out_i, out_j, out_s = [], [], []
    for k in range(R):
        (i, j), S = neighbor_list(pos[k * n:(k + 1) * n], cell, pbc, cutoff)
        first = np.where(S[:, 0] != 0, S[:, 0], np.where(S[:, 1] != 0, S[:, 1], S[:, 2]))
        keep = (i < j) | ((i == j) & (first > 0))
        out_i.append(i[keep] + k * n)
        out_j.append(j[keep] + k * n)
        out_s.append(S[keep])
    i, j, S = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    if len(S) and np.abs(S).max() > 127:
        raise StructureError("particles lie more than 127 cells away from the cell; wrap the positions")
    return i.astype(np.int32), j.astype(np.int32), S.astype(np.int8)


class PairKernel:
    """Pair part of a :class:`TabulatedPotential` on a half Verlet list, compiled.

    ``potential``: the TabulatedPotential (its pair tables, ``pair_id`` and exclusions are
    used); ``species`` (R·n,) type indices; ``n_replicas`` R. Call :meth:`build` with the
    positions at a list rebuild (list cutoff = potential cutoff + skin), then
    :meth:`compute` at every step.
    """

    def __init__(self, potential, species, n_replicas: int = 1):
        from .tabulated import _pack
        lib = _lib()
        if lib is None:
            raise RuntimeError(f"compiled pair kernel unavailable: {_REASON}")
        self.lib = lib
        self.potential = potential
        self.species = np.asarray(species, dtype=np.int64)
        self.R = int(n_replicas)
        self.n = len(self.species) // self.R
        pair_tables = [t for t in potential.tables if t.kind == "pair"]
        self.has_pairs = bool(pair_tables)
        if self.has_pairs:
            x0, dx, nt, off, U, dU, C = (p.numpy() for p in _pack(pair_tables, __import__("torch").float64))
            self.x0 = np.ascontiguousarray(x0, dtype=np.float64)
            self.h = np.ascontiguousarray(dx, dtype=np.float64)
            self.ih = 1.0 / self.h
            self.nt = np.ascontiguousarray(nt, dtype=np.int64)
            self.off = np.ascontiguousarray(off, dtype=np.int64)
            self.U = np.ascontiguousarray(U, dtype=np.float64)
            self.dU = np.ascontiguousarray(dU, dtype=np.float64)
            self.C = np.ascontiguousarray(C, dtype=np.float64)
            xmax = self.x0 + self.h * (self.nt - 1)
            self.rmax2 = np.ascontiguousarray((xmax * (1 + 1e-12) + 1e-12) ** 2)
        self.pair_id = potential.pair_id.cpu().numpy()
        self.rep = np.ascontiguousarray(np.repeat(np.arange(self.R, dtype=np.int64), self.n))
        self.pairs = None

    def build(self, positions: np.ndarray, cell: np.ndarray, pbc, list_cutoff: float) -> int:
        """(Re)build the half Verlet list at ``positions`` (R·n, 3) Å; returns its length."""
        if not self.has_pairs:
            self.pairs = None
            return 0
        i, j, S, tid = half_neighbor_list(positions, cell, pbc, list_cutoff, self.R,
                                          self.species, self.pair_id)
        top = self.potential.topology
        if len(top.exclusions) and len(i):
            import torch
            n0 = top.n_particles
            keep = ~top.exclusion_mask(torch.as_tensor(i.astype(np.int64) % n0),
                                       torch.as_tensor(j.astype(np.int64) % n0)).numpy()
            if not keep.all():
                i, j, S, tid = i[keep], j[keep], S[keep], tid[keep]
        i, j, S, tid = (np.ascontiguousarray(a) for a in (i, j, S, tid.astype(np.int32, copy=False)))
        self.pairs = (i, j, S, tid)  # the half list (pair p: i[p] < j[p] within a cell)
        # the call's constant arguments, as plain addresses (no per-step ctypes conversions)
        self._args_pairs = (len(i), i.ctypes.data, j.ctypes.data, S.ctypes.data, tid.ctypes.data)
        self._args_tables = tuple(a.ctypes.data for a in (self.x0, self.ih, self.nt, self.off, self.U,
                                                          self.dU, self.C, self.rmax2, self.rep))
        return len(i)

    def compute(self, positions: np.ndarray, cell: np.ndarray, F: np.ndarray, E: np.ndarray) -> int:
        """Add the pair forces (eV/Å) into ``F`` (R·n, 3) and energies (eV) into ``E`` (R,) at
        ``positions`` (R·n, 3); all float64 and C-contiguous, ``cell`` (3, 3) float64
        C-contiguous (the cell of the list build). Returns the number of pairs at zero
        distance (their force is undefined; they got none): 0 in a sound run."""
        if self.pairs is None:
            return 0
        for a in (positions, cell, F, E):
            if a.dtype != np.float64 or not a.flags.c_contiguous:
                raise ValueError("positions, cell, F and E must be C-contiguous float64 arrays")
        if positions.shape != F.shape or positions.shape != (len(self.species), 3) or E.shape != (self.R,):
            raise ValueError(f"positions and F must be ({len(self.species)}, 3), E ({self.R},)")
        return int(self.lib.pair_forces(*self._args_pairs, positions.ctypes.data, cell.ctypes.data,
                                        *self._args_tables, F.ctypes.data, E.ctypes.data))

    def coincident_pair(self, positions: np.ndarray, cell: np.ndarray) -> tuple[int, int] | None:
        """(i, j) rows of the first listed pair at zero distance, or None."""
        i, j, S, _ = self.pairs
        d = positions[j] - positions[i] + S.astype(np.float64) @ cell
        hit = np.nonzero(np.einsum("ij,ij->i", d, d) == 0.0)[0]
        return (int(i[hit[0]]), int(j[hit[0]])) if len(hit) else None


def bonded_energy_forces(potential, graph):
    """Bonded-table energies (G,) eV and forces (n, 3) eV/Å of a TabulatedPotential in closed
    form (float64, the same formulas as its ``_energy_forces``); None without bonded instances."""
    import torch

    from .tabulated import bonded_x_and_gradients, hermite
    if not potential._instances:
        return None
    n0 = potential.topology.n_particles
    inst = potential._bonded_instances(graph, n0)
    if not any(len(idx) for idx, _ in inst.values()):
        return None
    pos = graph.positions.detach().to(torch.float64)
    cell = graph.cell.to(torch.float64)
    pbc = graph.pbc[0]
    F = torch.zeros_like(pos)
    E = torch.zeros(graph.n_graphs, dtype=torch.float64)
    with torch.no_grad():
        for kind, (idx, tid) in inst.items():
            if len(idx) == 0:
                continue
            g_of = graph.batch[idx[:, 0]]
            x, grads = bonded_x_and_gradients(kind, pos, idx, cell, pbc, g_of)
            e, de = hermite(x, tid, *potential._packed_as(kind, torch.float64, pos.device),
                            periodic=kind == "dihedral", derivative=True)
            for c in range(idx.shape[1]):
                F.index_add_(0, idx[:, c], -de[:, None] * grads[:, c])
            E.index_add_(0, g_of, e)
    return E, F


def warn_unavailable() -> None:
    """Warn (once per process and call site) that MD falls back to the torch path."""
    warnings.warn(f"the compiled pair kernel is unavailable ({unavailable_reason()}); MD with "
                  "tabulated potentials uses the slower torch path", KernelUnavailableWarning,
                  stacklevel=3)
