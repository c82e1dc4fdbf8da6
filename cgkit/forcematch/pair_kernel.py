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

* the **fused MD loop** (:class:`FusedMD`): for pair tables (+ bond tables and pair
  exclusions) the whole step loop of BAOAB Langevin / velocity Verlet in C — integrator,
  counter-based Langevin noise, list check, list rebuild (particles re-sorted by bin, ghost
  rows for periodic images, one padded run of partners per particle) and pair (+ bond)
  forces — K steps per call; its pair forces in float64
  (``precision="double"``) or in **mixed precision** (``"mixed"``: float32 relative
  coordinates, table and per-particle sums, 16 pairs per AVX-512 vector; positions,
  velocities, integration and force totals in float64), about 2× faster.

All of it is C compiled once with the system C compiler (``cc``, ``-O3``) into a
cache folder (``$CGKIT_CACHE_DIR`` or ``~/.cache/cgkit``; the file name holds a hash of the
source, so an edited kernel is rebuilt) and called through :mod:`ctypes`; no Python loop
runs over pairs or particles. Without a C compiler :func:`available` is False and callers use
the vectorised torch path (same results, about 10-20× slower).

Accuracy: everything is float64 whatever the MD precision (float32 MD casts the positions in
and the forces out), except the fused loop's ``precision="mixed"`` pair loop; the float64 forces
equal the autograd forces of :meth:`TabulatedPotential.atomic_energies` to rounding (the tests
check 1e-10 eV/Å), the mixed ones to float32 accuracy (tested: every component within 1e-5 of
the largest force; about 5e-6 relative on one-bead water).

Units: positions and cells Å, energies eV, forces eV/Å.
"""
from __future__ import annotations

import ctypes
import warnings

import numpy as np

from ..cbuild import CompiledLibrary
from ..errors import CgkitWarning

__all__ = ["available", "PairKernel", "FusedMD", "half_neighbor_list", "KernelUnavailableWarning",
           "PAIR_PRECISIONS"]

#: precisions of the fused loop's pair forces: ``"double"`` (float64 throughout) or ``"mixed"``
#: (float32 pair loop: relative coordinates, table, per-particle sums; positions, velocities,
#: integration and the force totals in float64 — GROMACS's default mixed precision, but with
#: double integration)
PAIR_PRECISIONS = ("double", "mixed")

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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
/* ===================== fused MD loop (BAOAB Langevin / velocity Verlet) =====================
   The whole step loop of MolecularDynamics for tabulated potentials of pair tables (+ bond
   tables, pair exclusions) on fully periodic cells: integrator, Langevin noise, list-rebuild
   check, list rebuild and pair (+ bond) forces, K steps per call. State in a malloc'ed struct (md_create/md_free); particles are kept
   internally in cell-list order (re-sorted at every list build, so a particle's neighbours are
   near it in memory), coordinates split into x/y/z arrays, periodic images as ghost rows
   (owner + lattice shift, refreshed every step), and the half list stored per particle i as a
   run of partner rows padded to a multiple of 8 with a far-away dummy row, so that the pair
   loop over one i vectorises without conflicts (every partner row appears once per run).

   Langevin noise: counter-based. The normal deviate of (MD step s, particle row o, component
   c) is a function of the key derived from the seed and of (s, o, c) only (SplitMix64 outputs
   at counters derived from them, Marsaglia's polar method, see md_noise): the same seed gives
   the same trajectory however the run is split into calls. */

typedef struct {
    int64_t n, n0, R, ntypes, ntab, ng, cap_pairs, cap_ext, cap_runs, nrebuild, rebuild_next, build_step;
    double cell[9], inv[9], rl, skin;
    int64_t nb[3], reach;
    int32_t *pair_id, *species0;             /* (ntypes, ntypes); (n) species by original row */
    int32_t *id, *pos_of;                    /* internal row -> original row; original -> internal */
    double *X, *Y, *Z, *FX, *FY, *FZ;        /* extended: n real + ng ghosts + 1 dummy */
    double *VX, *VY, *VZ, *PX, *PY, *PZ, *RX, *RY, *RZ;   /* velocities, previous positions, list positions */
    double *kick, *sig;                      /* per internal row: dt/2m (ASE units), c2 sqrt(kT/m) */
    double *kick0, *sig0;                    /* per original row */
    double *noise;                           /* (3n) by original row */
    int32_t *gown; double *gsx, *gsy, *gsz;  /* ghosts: owner (internal row), Cartesian shift */
    int64_t *rs;                             /* (n+1) run starts */
    int32_t *js, *jt;                        /* padded partner rows, table ids */
    int32_t *pi, *pj, *ptid; int8_t *ps;     /* half list of the last build (internal rows, shifts) */
    int32_t *gmap;                           /* (27 n) ghost of (row, shift) */
    double *tmpd; int32_t *tmpi;
    /* tables */
    double *x0, *ih, *U, *dU, *C, *rmax2; int64_t *nt, *off;
    /* mixed precision (mixed = 1): float32 coordinates relative to the cell centre (extended rows),
       float32 table coefficients and per-table parameters */
    int mixed;
    double orig[3];
    double *F4; float *xyzf, *Cf, *tx0, *tih, *tlast, *trm2, *tU0, *tdU0; int32_t *toff;
    /* bond tables (md_set_bonds): instances (original rows over all replicas), table ids, packed
       Hermite tables (linear continuation below and above the grid) */
    int64_t nbond, nbtab;
    int32_t *bi, *bj, *bt; double *bx0, *bih, *bU, *bdU, *bC; int64_t *bnt, *boff;
    /* pair exclusions (md_set_exclusions): CSR over original rows of one replica (mod n0) */
    int64_t *exo; int32_t *exj;
} md_state;

void md_free(md_state *s) {
    if (!s) return;
    void *p[] = {s->pair_id, s->species0, s->id, s->pos_of, s->X, s->Y, s->Z, s->FX, s->FY, s->FZ, s->VX, s->VY,
                 s->VZ, s->PX, s->PY, s->PZ, s->RX, s->RY, s->RZ, s->kick, s->sig, s->kick0, s->sig0, s->noise,
                 s->gown, s->gsx, s->gsy, s->gsz, s->rs, s->js, s->jt, s->pi, s->pj, s->ptid, s->ps, s->gmap,
                 s->tmpd, s->tmpi, s->x0, s->ih, s->U, s->dU, s->C, s->rmax2, s->nt, s->off,
                 s->bi, s->bj, s->bt, s->bx0, s->bih, s->bU, s->bdU, s->bC, s->bnt, s->boff, s->exo, s->exj,
                 s->F4, s->xyzf, s->Cf, s->tx0, s->tih, s->tlast, s->trm2, s->tU0, s->tdU0, s->toff};
    for (size_t k = 0; k < sizeof(p) / sizeof(p[0]); k++) free(p[k]);
    free(s);
}

static void *dup_(const void *src, size_t bytes) {
    void *d = malloc(bytes ? bytes : 1);
    if (d && bytes) memcpy(d, src, bytes);
    return d;
}

md_state *md_create(int64_t n0, int64_t R, const double *cell, const double *inv, const int64_t *nb, int64_t reach,
                    double rl, double skin, const int32_t *species0, const int32_t *pair_id, int64_t ntypes,
                    const double *kick0, const double *sig0,
                    int64_t ntab, const double *x0, const double *ih, const int64_t *nt, const int64_t *off,
                    const double *U, const double *dU, const double *C, const double *rmax2, int mixed) {
    md_state *s = calloc(1, sizeof(md_state));
    if (!s) return NULL;
    int64_t n = n0 * R, ncoef = off[ntab - 1] + nt[ntab - 1];
    s->n = n; s->n0 = n0; s->R = R; s->ntypes = ntypes; s->ntab = ntab; s->rl = rl; s->skin = skin;
    s->reach = reach; s->rebuild_next = 1;
    memcpy(s->cell, cell, 9 * sizeof(double)); memcpy(s->inv, inv, 9 * sizeof(double));
    memcpy(s->nb, nb, 3 * sizeof(int64_t));
    s->pair_id = dup_(pair_id, sizeof(int32_t) * ntypes * ntypes);
    s->species0 = dup_(species0, sizeof(int32_t) * n);
    s->kick0 = dup_(kick0, sizeof(double) * n); s->sig0 = dup_(sig0, sizeof(double) * n);
    s->x0 = dup_(x0, sizeof(double) * ntab); s->ih = dup_(ih, sizeof(double) * ntab);
    s->nt = dup_(nt, sizeof(int64_t) * ntab); s->off = dup_(off, sizeof(int64_t) * ntab);
    s->rmax2 = dup_(rmax2, sizeof(double) * ntab);
    s->U = dup_(U, sizeof(double) * ncoef); s->dU = dup_(dU, sizeof(double) * ncoef);
    s->C = dup_(C, sizeof(double) * 4 * ncoef);
    s->id = malloc(sizeof(int32_t) * n); s->pos_of = malloc(sizeof(int32_t) * n);
    s->kick = malloc(sizeof(double) * n); s->sig = malloc(sizeof(double) * n);
    s->noise = malloc(sizeof(double) * (3 * n + 2));
    double **v3[] = {&s->VX, &s->VY, &s->VZ, &s->PX, &s->PY, &s->PZ, &s->RX, &s->RY, &s->RZ};
    for (int k = 0; k < 9; k++) *v3[k] = malloc(sizeof(double) * n);
    s->rs = malloc(sizeof(int64_t) * (n + 1));
    s->gmap = malloc(sizeof(int32_t) * 27 * n);
    s->tmpd = malloc(sizeof(double) * 3 * n);
    s->tmpi = malloc(sizeof(int32_t) * (n + 1) * 2 + sizeof(int32_t) * 64);
    if (!s->pair_id || !s->species0 || !s->kick0 || !s->sig0 || !s->x0 || !s->ih || !s->nt || !s->off || !s->rmax2
        || !s->U || !s->dU || !s->C || !s->id || !s->pos_of || !s->kick || !s->sig || !s->noise || !s->VX || !s->VY
        || !s->VZ || !s->PX || !s->PY || !s->PZ || !s->RX || !s->RY || !s->RZ || !s->rs || !s->gmap
        || !s->tmpd || !s->tmpi) { md_free(s); return NULL; }
    {
        int64_t c = n + 1024;
        double **e[] = {&s->X, &s->Y, &s->Z, &s->FX, &s->FY, &s->FZ};
        for (int k = 0; k < 6; k++) *e[k] = malloc(sizeof(double) * c);
        s->gown = malloc(sizeof(int32_t) * c); s->gsx = malloc(sizeof(double) * c);
        s->gsy = malloc(sizeof(double) * c); s->gsz = malloc(sizeof(double) * c);
        if (!s->X || !s->Y || !s->Z || !s->FX || !s->FY || !s->FZ || !s->gown || !s->gsx || !s->gsy || !s->gsz) {
            md_free(s); return NULL;
        }
        s->cap_ext = c;
        if (mixed) {
            s->xyzf = malloc(sizeof(float) * 4 * c); s->F4 = malloc(sizeof(double) * 4 * c);
            if (!s->xyzf || !s->F4) { md_free(s); return NULL; }
        }
    }
    if (mixed) {
        s->mixed = 1;
        for (int d = 0; d < 3; d++) s->orig[d] = 0.5 * (cell[d] + cell[3 + d] + cell[6 + d]);
        s->Cf = malloc(sizeof(float) * 4 * ncoef + 64);
        float **tp[] = {&s->tx0, &s->tih, &s->tlast, &s->trm2, &s->tU0, &s->tdU0};
        for (int k = 0; k < 6; k++) *tp[k] = malloc(sizeof(float) * ntab);
        s->toff = malloc(sizeof(int32_t) * ntab);
        if (!s->Cf || !s->tx0 || !s->tih || !s->tlast || !s->trm2 || !s->tU0 || !s->tdU0 || !s->toff) {
            md_free(s); return NULL;
        }
        for (int64_t q = 0; q < 4 * ncoef; q++) s->Cf[q] = (float)C[q];
        for (int64_t t = 0; t < ntab; t++) {
            s->tx0[t] = (float)x0[t]; s->tih[t] = (float)ih[t]; s->tlast[t] = (float)(nt[t] - 1);
            s->trm2[t] = (float)rmax2[t]; s->tU0[t] = (float)U[off[t]]; s->tdU0[t] = (float)dU[off[t]];
            s->toff[t] = (int32_t)off[t];
        }
    }
    for (int64_t q = 0; q < n; q++) { s->id[q] = (int32_t)q; s->pos_of[q] = (int32_t)q;
                                      s->kick[q] = kick0[q]; s->sig[q] = sig0[q]; }
    return s;
}

/* Bond tables of the run: nbond instances (i, j original rows over all replicas, table id t),
   nbtab packed tables (x0, 1/h, points, offsets, U, dU, C as the pair tables). 0, or -1 (memory). */
int md_set_bonds(md_state *s, int64_t nbond, const int32_t *bi, const int32_t *bj, const int32_t *bt, int64_t nbtab,
                 const double *x0, const double *ih, const int64_t *nt, const int64_t *off, const double *U,
                 const double *dU, const double *C) {
    if (nbond <= 0 || nbtab <= 0) return 0;
    const int64_t ncoef = off[nbtab - 1] + nt[nbtab - 1];
    s->bi = dup_(bi, sizeof(int32_t) * nbond); s->bj = dup_(bj, sizeof(int32_t) * nbond);
    s->bt = dup_(bt, sizeof(int32_t) * nbond);
    s->bx0 = dup_(x0, sizeof(double) * nbtab); s->bih = dup_(ih, sizeof(double) * nbtab);
    s->bnt = dup_(nt, sizeof(int64_t) * nbtab); s->boff = dup_(off, sizeof(int64_t) * nbtab);
    s->bU = dup_(U, sizeof(double) * ncoef); s->bdU = dup_(dU, sizeof(double) * ncoef);
    s->bC = dup_(C, sizeof(double) * 4 * ncoef);
    if (!s->bi || !s->bj || !s->bt || !s->bx0 || !s->bih || !s->bnt || !s->boff || !s->bU || !s->bdU || !s->bC) return -1;
    s->nbond = nbond; s->nbtab = nbtab;
    return 0;
}

/* Pair exclusions: CSR over the n0 original rows of one replica, exo (n0 + 1) offsets into exj
   (excluded partner rows, both directions); the pair is excluded in every image, as
   Topology.exclusion_mask. 0, or -1 (memory). */
int md_set_exclusions(md_state *s, const int64_t *exo, const int32_t *exj) {
    const int64_t ne = exo[s->n0];
    s->exo = dup_(exo, sizeof(int64_t) * (s->n0 + 1));
    s->exj = dup_(exj, sizeof(int32_t) * (ne > 0 ? ne : 1));
    return (s->exo && s->exj) ? 0 : -1;
}

static inline int md_excluded_(const md_state *s, int64_t a, int64_t b) {   /* original rows */
    a %= s->n0; b %= s->n0;
    for (int64_t q = s->exo[a]; q < s->exo[a + 1]; q++) if (s->exj[q] == b) return 1;
    return 0;
}

/* Bond forces (added to FX, FY, FZ of the real rows, in double whatever the pair precision) and
   energies (E by replica, when energy): minimum-image bond vectors (the fractional shift rounded
   half to even, as torch.round in geometry.minimum_image), the Hermite table with linear
   continuation below and above the grid (hermite() of tabulated.py). */
static void md_bonds(md_state *s, int energy, double *E) {
    const double *cl = s->cell, *iv = s->inv;
    for (int64_t b = 0; b < s->nbond; b++) {
        const int64_t a = s->pos_of[s->bi[b]], c = s->pos_of[s->bj[b]];
        const int t = s->bt[b];
        double d[3] = {s->X[c] - s->X[a], s->Y[c] - s->Y[a], s->Z[c] - s->Z[a]}, f[3];
        for (int k = 0; k < 3; k++) f[k] = -nearbyint(d[0] * iv[k] + d[1] * iv[3 + k] + d[2] * iv[6 + k]);
        for (int k = 0; k < 3; k++) d[k] += f[0] * cl[k] + f[1] * cl[3 + k] + f[2] * cl[6 + k];
        const double r = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
        const double x0 = s->bx0[t], ih = s->bih[t], last = (double)(s->bnt[t] - 1);
        const int64_t o = s->boff[t];
        const double u = (r - x0) * ih;
        double val, der;
        if (u < 0.0) { val = s->bU[o] + s->bdU[o] * (r - x0); der = s->bdU[o]; }
        else if (u > last) {
            const int64_t e = o + s->bnt[t] - 1;
            val = s->bU[e] + s->bdU[e] * (r - x0 - last / ih); der = s->bdU[e];
        } else {
            int64_t k = (int64_t)u;
            if (k > s->bnt[t] - 2) k = s->bnt[t] - 2;
            double tt = u - (double)k;
            tt = tt < 0.0 ? 0.0 : (tt > 1.0 ? 1.0 : tt);
            const double *cc = s->bC + 4 * (o + k);
            val = ((cc[3] * tt + cc[2]) * tt + cc[1]) * tt + cc[0];
            der = ((3.0 * cc[3] * tt + 2.0 * cc[2]) * tt + cc[1]) * ih;
        }
        const double g = der / r;
        s->FX[a] += g * d[0]; s->FY[a] += g * d[1]; s->FZ[a] += g * d[2];
        s->FX[c] -= g * d[0]; s->FY[c] -= g * d[1]; s->FZ[c] -= g * d[2];
        if (energy) E[a / s->n0] += val;
    }
}

/* (Re)build: wrap the positions into the cell, re-sort the particles by bin (within each
   replica), build the half list with cutoff rl, make ghosts and padded runs. 0, or -1 (memory),
   -2 (a pair shift beyond one cell: the caller falls back to the per-step path). */
static int md_rebuild(md_state *s) {
    const int64_t n = s->n, n0 = s->n0, nx = s->nb[0], ny = s->nb[1], nz = s->nb[2], nbins = nx * ny * nz;
    double *X = s->X, *Y = s->Y, *Z = s->Z;
    /* wrap; bins */
    int32_t *bin = malloc(sizeof(int32_t) * (n + 1));
    int64_t *cnt = calloc(nbins + 1, sizeof(int64_t));
    int32_t *order = malloc(sizeof(int32_t) * (n + 1));
    if (!bin || !cnt || !order) { free(bin); free(cnt); free(order); return -1; }
    for (int64_t a = 0; a < n; a++) {
        double x[3] = {X[a], Y[a], Z[a]}, f[3];
        int64_t ib[3];
        for (int d = 0; d < 3; d++) {
            double u = x[0] * s->inv[d] + x[1] * s->inv[3 + d] + x[2] * s->inv[6 + d];
            u -= floor(u);
            if (u >= 1.0) u -= 1.0;
            f[d] = u;
            int64_t m = (int64_t)(u * s->nb[d]);
            ib[d] = m < 0 ? 0 : (m >= s->nb[d] ? s->nb[d] - 1 : m);
        }
        X[a] = f[0] * s->cell[0] + f[1] * s->cell[3] + f[2] * s->cell[6];
        Y[a] = f[0] * s->cell[1] + f[1] * s->cell[4] + f[2] * s->cell[7];
        Z[a] = f[0] * s->cell[2] + f[1] * s->cell[5] + f[2] * s->cell[8];
        bin[a] = (int32_t)((ib[0] * ny + ib[1]) * nz + ib[2]);
    }
    /* stable counting sort by bin within each replica */
    for (int64_t r = 0; r < s->R; r++) {
        int64_t lo = r * n0, hi = lo + n0;
        memset(cnt, 0, sizeof(int64_t) * (nbins + 1));
        for (int64_t a = lo; a < hi; a++) cnt[bin[a] + 1]++;
        for (int64_t b = 0; b < nbins; b++) cnt[b + 1] += cnt[b];
        for (int64_t a = lo; a < hi; a++) order[lo + cnt[bin[a]]++] = (int32_t)a;
    }
    int32_t *sbin = malloc(sizeof(int32_t) * (n + 1));          /* bin of each sorted row */
    int64_t *bstart = malloc(sizeof(int64_t) * (nbins + 1) * s->R);  /* per replica: first row of each bin */
    if (!sbin || !bstart) { free(bin); free(cnt); free(order); free(sbin); free(bstart); return -1; }
    for (int64_t q = 0; q < n; q++) sbin[q] = bin[order[q]];
    for (int64_t r = 0; r < s->R; r++) {
        int64_t *st = bstart + r * (nbins + 1);
        memset(st, 0, sizeof(int64_t) * (nbins + 1));
        for (int64_t q = r * n0; q < (r + 1) * n0; q++) st[sbin[q] + 1]++;
        for (int64_t b = 0; b < nbins; b++) st[b + 1] += st[b];
    }
    free(bin); free(cnt);
    /* permute the per-particle state (positions, velocities, per-particle constants, ids) */
    {
        double *arrs[] = {X, Y, Z, s->VX, s->VY, s->VZ, s->FX, s->FY, s->FZ, s->kick, s->sig};
        for (int k = 0; k < 11; k++) {
            double *a = arrs[k];
            for (int64_t q = 0; q < n; q++) s->tmpd[q] = a[order[q]];
            memcpy(a, s->tmpd, sizeof(double) * n);
        }
        int32_t *t = s->tmpi;
        for (int64_t q = 0; q < n; q++) t[q] = s->id[order[q]];
        memcpy(s->id, t, sizeof(int32_t) * n);
        for (int64_t q = 0; q < n; q++) s->pos_of[s->id[q]] = (int32_t)q;
    }
    free(order);
    int32_t *spec = s->tmpi;
    for (int64_t q = 0; q < n; q++) {
        spec[q] = s->species0[s->id[q]];
        s->RX[q] = X[q]; s->RY[q] = Y[q]; s->RZ[q] = Z[q];
    }
    /* half list, replica by replica (pairs grouped by increasing i), the stencil of half_list
       on the sorted, wrapped positions: bins adjacent along the last axis are contiguous rows,
       so every stencil row is one to three contiguous ranges with one lattice shift each, and a
       candidate costs a difference and a square (no fractional transform) */
    int64_t m = 0;
    const int k = (int)s->reach;
    const double rl2 = s->rl * s->rl;
    const int single_t = s->ntypes == 1;            /* one type: one table id (no gather) */
    const int32_t t_single = s->pair_id[0];
    const double *cl = s->cell;
    for (int64_t r = 0; r < s->R; r++) {
        const int64_t lo = r * n0;
        const int64_t *st = bstart + r * (nbins + 1);
        for (int64_t i = lo; i < lo + n0; i++) {
            const int64_t b = sbin[i], bx = b / (ny * nz), by = (b / nz) % ny, bz = b % nz;
            const double xi = X[i], yi = Y[i], zi = Z[i];
            const int32_t *prow = s->pair_id + s->ntypes * spec[i];
            for (int dx = 0; dx <= k; dx++) {
                int64_t cx = bx + dx; int wx = 0;
                if (cx >= nx) { cx -= nx; wx = 1; }
                for (int dy = (dx == 0 ? 0 : -k); dy <= k; dy++) {
                    int64_t cy = by + dy; int wy = 0;
                    if (cy < 0) { cy += ny; wy = -1; } else if (cy >= ny) { cy -= ny; wy = 1; }
                    const int64_t row = (cx * ny + cy) * nz;
                    const int own = (dx == 0 && dy == 0);
                    const int64_t z0 = bz + (own ? 0 : -k), z1 = bz + k;
                    int64_t seg_lo[3], seg_hi[3]; int seg_w[3], nseg = 0;
                    if (z0 < 0) { seg_lo[nseg] = z0 + nz; seg_hi[nseg] = nz - 1; seg_w[nseg++] = -1; }
                    {
                        int64_t l = z0 < 0 ? 0 : z0, h = z1 >= nz ? nz - 1 : z1;
                        if (l <= h) { seg_lo[nseg] = l; seg_hi[nseg] = h; seg_w[nseg++] = 0; }
                    }
                    if (z1 >= nz) { seg_lo[nseg] = 0; seg_hi[nseg] = z1 - nz; seg_w[nseg++] = 1; }
                    for (int g = 0; g < nseg; g++) {
                        int64_t a0 = lo + st[row + seg_lo[g]], a1 = lo + st[row + seg_hi[g] + 1];
                        if (own && seg_w[g] == 0 && a0 <= i) a0 = i + 1;   /* own bin starts the row: j > i */
                        if (a1 <= a0) continue;
                        if (m + (a1 - a0) + 16 > s->cap_pairs) {   /* + 16: vector stores */
                            int64_t c = 2 * (m + (a1 - a0)) + 65536;
                            void *pa = realloc(s->pi, sizeof(int32_t) * c);
                            if (!pa) goto oom;
                            s->pi = pa;
                            pa = realloc(s->pj, sizeof(int32_t) * c);
                            if (!pa) goto oom;
                            s->pj = pa;
                            pa = realloc(s->ptid, sizeof(int32_t) * c);
                            if (!pa) goto oom;
                            s->ptid = pa;
                            pa = realloc(s->ps, 3 * c);
                            if (!pa) goto oom;
                            s->ps = pa; s->cap_pairs = c;
                        }
                        const int w0 = wx, w1 = wy, w2 = seg_w[g];
                        /* the pair's lattice shift as one code 0..26, (w0 + 1) 9 + (w1 + 1) 3 + w2 + 1
                           (13: none); every |w| <= 1 here (k bins < nb: at most one wrap) */
                        const int code = (w0 + 1) * 9 + (w1 + 1) * 3 + (w2 + 1);
                        const double ox = w0 * cl[0] + w1 * cl[3] + w2 * cl[6] - xi;
                        const double oy = w0 * cl[1] + w1 * cl[4] + w2 * cl[7] - yi;
                        const double oz = w0 * cl[2] + w1 * cl[5] + w2 * cl[8] - zi;
                        int32_t *restrict pi = s->pi, *restrict pj = s->pj, *restrict pt = s->ptid;
                        int8_t *restrict ps = s->ps;
#if defined(__AVX512F__)
                        /* 8 candidates per vector; the accepted ones compressed in a register (in
                           order: the same list as the scalar loop) and stored */
                        const __m512d vox = _mm512_set1_pd(ox), voy = _mm512_set1_pd(oy), voz = _mm512_set1_pd(oz),
                                      vrl2 = _mm512_set1_pd(rl2);
                        const __m256i vi = _mm256_set1_epi32((int32_t)i), z8 = _mm256_setzero_si256(),
                                      iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                        int8_t pat[8];   /* the segment's shift code for 8 pairs, stored whatever is accepted */
                        for (int e = 0; e < 8; e++) pat[e] = (int8_t)code;
                        for (int64_t at = a0; at < a1; at += 8) {
                            const int64_t left = a1 - at;
                            const __mmask8 lm = left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1u);
                            const __m512d d0 = _mm512_add_pd(_mm512_maskz_loadu_pd(lm, X + at), vox);
                            const __m512d d1 = _mm512_add_pd(_mm512_maskz_loadu_pd(lm, Y + at), voy);
                            const __m512d d2 = _mm512_add_pd(_mm512_maskz_loadu_pd(lm, Z + at), voz);
                            const __m512d r2 = _mm512_fmadd_pd(d2, d2, _mm512_fmadd_pd(d1, d1, _mm512_mul_pd(d0, d0)));
                            __mmask8 ok = _mm512_mask_cmp_pd_mask(lm, r2, vrl2, _CMP_LT_OQ);
                            const __m256i t = single_t ? _mm256_set1_epi32(t_single)
                                : _mm256_mmask_i32gather_epi32(z8, lm, _mm256_maskz_loadu_epi32(lm, spec + at), prow, 4);
                            ok &= _mm256_cmpge_epi32_mask(t, z8);
                            _mm256_storeu_si256((__m256i *)(pj + m),
                                                _mm256_maskz_compress_epi32(ok, _mm256_add_epi32(_mm256_set1_epi32((int32_t)at), iota)));
                            _mm256_storeu_si256((__m256i *)(pt + m), _mm256_maskz_compress_epi32(ok, t));
                            _mm256_storeu_si256((__m256i *)(pi + m), vi);
                            memcpy(ps + m, pat, 8);   /* no branch on the count */
                            m += __builtin_popcount((unsigned)ok);
                        }
#else
                        for (int64_t at = a0; at < a1; at++) {
                            const double d0 = X[at] + ox, d1 = Y[at] + oy, d2 = Z[at] + oz;
                            const int32_t t = prow[spec[at]];
                            pi[m] = (int32_t)i; pj[m] = (int32_t)at; pt[m] = t;
                            ps[m] = (int8_t)code;
                            m += (d0 * d0 + d1 * d1 + d2 * d2 < rl2) & (t >= 0);
                        }
#endif
                    }
                }
            }
        }
    }
    free(sbin); free(bstart);
    if (0) {
oom:
        free(sbin); free(bstart);
        return -1;
    }
    if (s->exo) {   /* drop excluded pairs (in order) */
        int64_t w = 0;
        for (int64_t p = 0; p < m; p++) {
            if (md_excluded_(s, s->id[s->pi[p]], s->id[s->pj[p]])) continue;
            s->pi[w] = s->pi[p]; s->pj[w] = s->pj[p]; s->ptid[w] = s->ptid[p]; s->ps[w] = s->ps[p];
            w++;
        }
        m = w;
    }
    /* ghosts for the pairs across the cell boundary */
    for (int64_t q = 0; q < 27 * n; q++) s->gmap[q] = -1;
    int64_t ng = 0;
    for (int64_t p = 0; p < m; p++) {
        const int code = s->ps[p];
        if ((unsigned)code > 26u) return -2;
        const int64_t key = 27 * (int64_t)s->pj[p] + code;
        if ((code != 13) & (s->gmap[key] < 0)) s->gmap[key] = (int32_t)(ng++);
    }
    s->ng = ng;
    int64_t next = n + ng + 1;
    if (next > s->cap_ext) {
        int64_t c = next + next / 4 + 256;
        double **e[] = {&s->X, &s->Y, &s->Z, &s->FX, &s->FY, &s->FZ};
        for (int k = 0; k < 6; k++) {
            void *q = realloc(*e[k], sizeof(double) * c);
            if (!q) return -1;
            *e[k] = q;
        }
        void *g0 = realloc(s->gown, sizeof(int32_t) * c), *g1 = g0 ? realloc(s->gsx, sizeof(double) * c) : NULL;
        if (g0) s->gown = g0;
        if (g1) s->gsx = g1;
        void *g2 = g1 ? realloc(s->gsy, sizeof(double) * c) : NULL;
        if (g2) s->gsy = g2;
        void *g3 = g2 ? realloc(s->gsz, sizeof(double) * c) : NULL;
        if (!g3) return -1;
        s->gsz = g3;
        if (s->mixed) {
            void *q = realloc(s->xyzf, sizeof(float) * 4 * c);
            if (!q) return -1;
            s->xyzf = q;
            q = realloc(s->F4, sizeof(double) * 4 * c);
            if (!q) return -1;
            s->F4 = q;
        }
        s->cap_ext = c;
        X = s->X; Y = s->Y; Z = s->Z;
    }
    for (int64_t q = 0; q < 27 * n; q++) {
        int32_t g = s->gmap[q];
        if (g < 0) continue;
        int64_t row = q / 27, code = q % 27;
        double a = (double)(code / 9 - 1), b = (double)((code / 3) % 3 - 1), c = (double)(code % 3 - 1);
        s->gown[g] = (int32_t)row;
        s->gsx[g] = a * s->cell[0] + b * s->cell[3] + c * s->cell[6];
        s->gsy[g] = a * s->cell[1] + b * s->cell[4] + c * s->cell[7];
        s->gsz[g] = a * s->cell[2] + b * s->cell[5] + c * s->cell[8];
    }
    const int64_t dummy = n + ng;
    X[dummy] = Y[dummy] = Z[dummy] = 1e7;
    /* padded runs */
    for (int64_t a = 0; a <= n; a++) s->rs[a] = 0;
    for (int64_t p = 0; p < m; p++) s->rs[s->pi[p] + 1]++;
    int64_t tot = 0;
    const int64_t padm = s->mixed ? 15 : 7;   /* runs padded to 16 (mixed) or 8 (double) rows */
    for (int64_t a = 0; a < n; a++) {
        int64_t c = s->rs[a + 1];
        s->rs[a] = tot;
        tot += (c + padm) & ~padm;
    }
    s->rs[n] = tot;
    if (tot + 8 > s->cap_runs) {
        int64_t c = tot + tot / 4 + 1024;
        void *q = realloc(s->js, sizeof(int32_t) * c);
        if (!q) return -1;
        s->js = q;
        q = realloc(s->jt, sizeof(int32_t) * c);
        if (!q) return -1;
        s->jt = q; s->cap_runs = c;
    }
    {
        int64_t p = 0;
        for (int64_t a = 0; a < n; a++) {
            int64_t at = s->rs[a], end = s->rs[a + 1];
            while (p < m && s->pi[p] == a) {
                const int code = s->ps[p];
                const int32_t j = s->pj[p], g = s->gmap[27 * (int64_t)j + code];
                s->js[at] = code == 13 ? j : (int32_t)(n + g);   /* a select, not a branch */
                s->jt[at] = s->ptid[p];
                at++; p++;
            }
            for (; at < end; at++) { s->js[at] = (int32_t)dummy; s->jt[at] = 0; }
        }
    }
    s->nrebuild++;
    return 0;
}

/* Pair forces on the extended arrays (ghost rows refreshed from their owners first, ghost
   forces folded back after); energies (R,) into E when `energy`. Per particle i, its padded run
   in chunks: a vectorised pass (gathers of the partner positions and table coefficients, the
   same arithmetic as pass1 above) keeps F_i in registers and stores the pair forces, then a
   scalar pass subtracts them from the partners (cheaper than vector scatters here).
   Returns the number of pairs at zero distance. */
static inline __attribute__((always_inline)) int64_t md_forces_(md_state *s, const int multi, const int energy,
                                                                double *E) {
    const int64_t n = s->n, ng = s->ng;
    double *restrict X = s->X, *restrict Y = s->Y, *restrict Z = s->Z;
    double *restrict FX = s->FX, *restrict FY = s->FY, *restrict FZ = s->FZ;
    for (int64_t g = 0; g < ng; g++) {
        int64_t o = s->gown[g];
        X[n + g] = X[o] + s->gsx[g]; Y[n + g] = Y[o] + s->gsy[g]; Z[n + g] = Z[o] + s->gsz[g];
    }
    memset(FX, 0, sizeof(double) * (n + ng + 1));
    memset(FY, 0, sizeof(double) * (n + ng + 1));
    memset(FZ, 0, sizeof(double) * (n + ng + 1));
    const double *restrict C = s->C, *restrict Ut = s->U, *restrict dUt = s->dU;
    const double *restrict x0 = s->x0, *restrict ih_ = s->ih, *restrict rmax2 = s->rmax2;
    const int64_t *restrict nt = s->nt, *restrict offt = s->off;
    const int32_t *restrict js = s->js, *restrict jt = s->jt;
    const double X0 = x0[0], IH = ih_[0], RM2 = rmax2[0], LASTD = (double)(nt[0] - 1);
    const double U0 = Ut[offt[0]], DU0 = dUt[offt[0]];
    const int O0 = (int)offt[0];
    int64_t nzero = 0;
    double G0[512] __attribute__((aligned(64))), G1[512] __attribute__((aligned(64))), G2[512] __attribute__((aligned(64)));
    for (int64_t a = 0; a < n; a++) {
        const double xi = X[a], yi = Y[a], zi = Z[a];
        double fx = 0.0, fy = 0.0, fz = 0.0, ev = 0.0;
        int64_t nz = 0;
        const int64_t p0 = s->rs[a], p1 = s->rs[a + 1];
        for (int64_t c0 = p0; c0 < p1; c0 += 512) {
            const int64_t c1 = c0 + 512 < p1 ? c0 + 512 : p1;
#pragma omp simd reduction(+:fx, fy, fz, ev, nz)
            for (int64_t p = c0; p < c1; p++) {
                const int j = js[p];
                const double d0 = X[j] - xi, d1 = Y[j] - yi, d2 = Z[j] - zi;
                const double r2 = d0 * d0 + d1 * d1 + d2 * d2;
                nz += (r2 == 0.0);
                const int t = multi ? jt[p] : 0;
                const double rm2 = multi ? rmax2[t] : RM2, xa = multi ? x0[t] : X0, ih = multi ? ih_[t] : IH;
                const double lastd = multi ? (double)(nt[t] - 1) : LASTD;
                const int o = multi ? (int)offt[t] : O0;
                const double inside = (r2 <= rm2 && r2 > 0.0) ? 1.0 : 0.0;
                const double rinv = 1.0 / sqrt(r2 > 1e-300 ? r2 : 1e-300);
                const double r = r2 * rinv;
                const double u = (r - xa) * ih;
                const double u0 = u > 0.0 ? u : 0.0;
                const double uc = u0 < lastd - 0.5 ? u0 : lastd - 0.5;
                const int k = (int)uc;
                const double tt = (u0 < lastd ? u0 : lastd) - (double)k;
                const int b = 4 * (o + k);
                const double a1 = C[b + 1], a2 = C[b + 2], a3 = C[b + 3];
                double der = ((3.0 * a3 * tt + 2.0 * a2) * tt + a1) * ih;
                const double below = u < 0.0 ? 1.0 : 0.0;
                const double keep = (u <= lastd) ? inside : 0.0;
                der = below * (multi ? dUt[o] : DU0) + (1.0 - below) * der;
                const double g = keep * der * rinv;
                if (energy) {
                    const double a0 = C[b];
                    double val = ((a3 * tt + a2) * tt + a1) * tt + a0;
                    val = below * ((multi ? Ut[o] : U0) + (multi ? dUt[o] : DU0) * (r - xa)) + (1.0 - below) * val;
                    ev += keep * val;
                }
                const double g0 = g * d0, g1 = g * d1, g2 = g * d2;
                fx += g0; fy += g1; fz += g2;
                G0[p - c0] = g0; G1[p - c0] = g1; G2[p - c0] = g2;
            }
            for (int64_t p = c0; p < c1; p++) {
                const int j = js[p];
                FX[j] -= G0[p - c0]; FY[j] -= G1[p - c0]; FZ[j] -= G2[p - c0];
            }
        }
        FX[a] += fx; FY[a] += fy; FZ[a] += fz;
        if (energy) E[a / s->n0] += ev;
        nzero += nz;
    }
    for (int64_t g = 0; g < ng; g++) {
        int64_t o = s->gown[g];
        FX[o] += FX[n + g]; FY[o] += FY[n + g]; FZ[o] += FZ[n + g];
    }
    return nzero;
}

/* Mixed precision pair forces (s->mixed): the double rows X, Y, Z (ghosts refreshed) are
   rounded once per step to float32 coordinates relative to the cell centre (rows of 4 floats
   x, y, z, 0; |x| < ~1.5 cell: rounding error <= 2e-6 A per coordinate for a 40 A cell); the
   pair loop runs in float32 with the float32 table (rows of 4 coefficients), the same
   interpolation rules as md_forces_; each particle's own force is summed in float over its run
   and added to the double forces, the partner forces are subtracted from the double forces pair
   by pair; energies summed in float per particle, in double over particles. Integration,
   velocities and positions stay in double. With AVX-512: 16 pairs per vector (runs padded to
   16), partner coordinates and table rows fetched as 16-byte rows and transposed (three times
   faster than gather instructions on Zen 4), 1/r from rsqrt14 + one Newton step; per chunk a
   first pass computes distances and table indices, a second one (the rows of the table are
   fetched from indices stored by the first) the forces. */
#if defined(__AVX512F__)
static inline __attribute__((always_inline)) void rows4x16_(const float *tab, const int32_t *j, __m512 *A0, __m512 *A1,
                                                           __m512 *A2, __m512 *A3) {
    __m512 A[4];
    for (int k = 0; k < 4; k++) {
        __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(tab + 4 * (int64_t)j[k])),
                                         _mm_loadu_ps(tab + 4 * (int64_t)j[k + 4]), 1);
        __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(tab + 4 * (int64_t)j[k + 8])),
                                         _mm_loadu_ps(tab + 4 * (int64_t)j[k + 12]), 1);
        A[k] = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
    const __m512 t0 = _mm512_unpacklo_ps(A[0], A[1]), t1 = _mm512_unpacklo_ps(A[2], A[3]);
    const __m512 t2 = _mm512_unpackhi_ps(A[0], A[1]), t3 = _mm512_unpackhi_ps(A[2], A[3]);
    /* lane 4L + e holds row j[4L + e]... of A[e] lane L: j[e + 4L] */
    *A0 = _mm512_shuffle_ps(t0, t1, 0x44); *A1 = _mm512_shuffle_ps(t0, t1, 0xEE);
    *A2 = _mm512_shuffle_ps(t2, t3, 0x44); *A3 = _mm512_shuffle_ps(t2, t3, 0xEE);
}
#endif

static inline __attribute__((always_inline)) int64_t md_forces_mixed_(md_state *s, const int multi, const int energy,
                                                                      double *E) {
    const int64_t n = s->n, ng = s->ng;
    double *restrict X = s->X, *restrict Y = s->Y, *restrict Z = s->Z;
    double *restrict FX = s->FX, *restrict FY = s->FY, *restrict FZ = s->FZ;
    float *restrict xyz = s->xyzf;
    const double ox = s->orig[0], oy = s->orig[1], oz = s->orig[2];
    for (int64_t g = 0; g < ng; g++) {
        int64_t o = s->gown[g];
        X[n + g] = X[o] + s->gsx[g]; Y[n + g] = Y[o] + s->gsy[g]; Z[n + g] = Z[o] + s->gsz[g];
    }
    for (int64_t q = 0; q < n + ng; q++) {
        xyz[4 * q] = (float)(X[q] - ox); xyz[4 * q + 1] = (float)(Y[q] - oy); xyz[4 * q + 2] = (float)(Z[q] - oz);
        xyz[4 * q + 3] = 0.0f;
    }
    xyz[4 * (n + ng)] = xyz[4 * (n + ng) + 1] = xyz[4 * (n + ng) + 2] = 1e7f;   /* the padding row */
    xyz[4 * (n + ng) + 3] = 0.0f;
#if defined(__AVX512F__)
    double *restrict F4 = s->F4;   /* (n + ng + 1) rows of 4 doubles: fx, fy, fz, 0 */
    memset(F4, 0, sizeof(double) * 4 * (n + ng + 1));
#else
    memset(FX, 0, sizeof(double) * (n + ng + 1));
    memset(FY, 0, sizeof(double) * (n + ng + 1));
    memset(FZ, 0, sizeof(double) * (n + ng + 1));
#endif
    const float *restrict Cf = s->Cf;
    const int32_t *restrict js = s->js, *restrict jt = s->jt;
    int64_t nzero = 0;
    float G0[512] __attribute__((aligned(64))), G1[512] __attribute__((aligned(64))), G2[512] __attribute__((aligned(64)));
#if defined(__AVX512F__)
    float Bt[512] __attribute__((aligned(64))), By[512] __attribute__((aligned(64))), Bu[512] __attribute__((aligned(64)));
    float Br[512] __attribute__((aligned(64)));
    int32_t Bk[512] __attribute__((aligned(64)));
    __mmask16 Bkeep[32];
    const __m512 X0 = _mm512_set1_ps(s->tx0[0]), IH = _mm512_set1_ps(s->tih[0]), LAST = _mm512_set1_ps(s->tlast[0]),
                 RM2 = _mm512_set1_ps(s->trm2[0]), U0 = _mm512_set1_ps(s->tU0[0]), DU0 = _mm512_set1_ps(s->tdU0[0]);
    const __m512i O0 = _mm512_set1_epi32(s->toff[0]);
    const __m512 zero = _mm512_setzero_ps(), tiny = _mm512_set1_ps(1e-30f);
    const __m512 half = _mm512_set1_ps(0.5f), threehalf = _mm512_set1_ps(1.5f), three = _mm512_set1_ps(3.0f);
#endif
    for (int64_t a = 0; a < n; a++) {
        const int64_t p0 = s->rs[a], p1 = s->rs[a + 1];
        double fxs = 0.0, fys = 0.0, fzs = 0.0, evs = 0.0;
#if defined(__AVX512F__)
        const __m512 xi = _mm512_set1_ps(xyz[4 * a]), yi = _mm512_set1_ps(xyz[4 * a + 1]),
                     zi = _mm512_set1_ps(xyz[4 * a + 2]);
        __m512 fx = zero, fy = zero, fz = zero, ev = zero;
#endif
        for (int64_t c0 = p0; c0 < p1; c0 += 512) {
            const int64_t c1 = c0 + 512 < p1 ? c0 + 512 : p1;   /* runs are padded to 16 */
#if defined(__AVX512F__)
            /* pass A: distances, 1/r, table interval and offset, masks */
            for (int64_t p = c0; p < c1; p += 16) {
                const int64_t q = p - c0;
                __m512 xj, yj, zj, wj;
                rows4x16_(xyz, js + p, &xj, &yj, &zj, &wj);
                (void)wj;
                const __m512 d0 = _mm512_sub_ps(xj, xi), d1 = _mm512_sub_ps(yj, yi), d2 = _mm512_sub_ps(zj, zi);
                const __m512 r2 = _mm512_fmadd_ps(d2, d2, _mm512_fmadd_ps(d1, d1, _mm512_mul_ps(d0, d0)));
                nzero += __builtin_popcount((unsigned)_mm512_cmp_ps_mask(r2, zero, _CMP_EQ_OQ));
                __m512 xa = X0, ih = IH, last = LAST, rm2 = RM2;
                __m512i o = O0;
                if (multi) {
                    const __m512i t = _mm512_loadu_si512(jt + p);
                    xa = _mm512_i32gather_ps(t, s->tx0, 4); ih = _mm512_i32gather_ps(t, s->tih, 4);
                    last = _mm512_i32gather_ps(t, s->tlast, 4); rm2 = _mm512_i32gather_ps(t, s->trm2, 4);
                    o = _mm512_i32gather_epi32(t, s->toff, 4);
                }
                const __m512 r2c = _mm512_max_ps(r2, tiny);
                __m512 y = _mm512_rsqrt14_ps(r2c);
                y = _mm512_mul_ps(y, _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_mul_ps(half, r2c), y), y, threehalf));
                const __m512 r = _mm512_mul_ps(r2c, y);
                const __m512 u = _mm512_mul_ps(_mm512_sub_ps(r, xa), ih);
                const __m512 uu = _mm512_max_ps(u, zero);
                const __m512 uc = _mm512_min_ps(uu, _mm512_sub_ps(last, half));
                const __m512i k = _mm512_cvttps_epi32(uc);
                const __m512 tt = _mm512_sub_ps(_mm512_min_ps(uu, last), _mm512_cvtepi32_ps(k));
                _mm512_store_si512(Bk + q, _mm512_add_epi32(o, k));
                _mm512_store_ps(Bt + q, tt); _mm512_store_ps(By + q, y); _mm512_store_ps(Bu + q, u);
                if (energy) _mm512_store_ps(Br + q, r);
                _mm512_store_ps(G0 + q, d0); _mm512_store_ps(G1 + q, d1); _mm512_store_ps(G2 + q, d2);
                Bkeep[q >> 4] = _mm512_mask_cmp_ps_mask(
                    _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(r2, rm2, _CMP_LE_OQ), r2, zero, _CMP_GT_OQ),
                    u, last, _CMP_LE_OQ);
            }
            /* pass B: table rows, forces (G0..G2 hold the distance vectors, overwritten by the forces) */
            for (int64_t p = c0; p < c1; p += 16) {
                const int64_t q = p - c0;
                __m512 a0, a1, a2, a3;
                rows4x16_(Cf, Bk + q, &a0, &a1, &a2, &a3);
                __m512 ih = IH, du0 = DU0, xa = X0, u0v = U0;
                if (multi) {
                    const __m512i t = _mm512_loadu_si512(jt + p);
                    ih = _mm512_i32gather_ps(t, s->tih, 4); du0 = _mm512_i32gather_ps(t, s->tdU0, 4);
                    if (energy) { xa = _mm512_i32gather_ps(t, s->tx0, 4); u0v = _mm512_i32gather_ps(t, s->tU0, 4); }
                }
                const __m512 tt = _mm512_load_ps(Bt + q), y = _mm512_load_ps(By + q), u = _mm512_load_ps(Bu + q);
                const __mmask16 keep = Bkeep[q >> 4];
                const __mmask16 below = _mm512_cmp_ps_mask(u, zero, _CMP_LT_OQ);
                __m512 der = _mm512_mul_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_mul_ps(three, a3), tt,
                                                                            _mm512_add_ps(a2, a2)), tt, a1), ih);
                der = _mm512_mask_blend_ps(below, der, du0);
                const __m512 gg = _mm512_maskz_mul_ps(keep, der, y);
                const __m512 g0 = _mm512_mul_ps(gg, _mm512_load_ps(G0 + q)), g1 = _mm512_mul_ps(gg, _mm512_load_ps(G1 + q)),
                             g2 = _mm512_mul_ps(gg, _mm512_load_ps(G2 + q));
                fx = _mm512_add_ps(fx, g0); fy = _mm512_add_ps(fy, g1); fz = _mm512_add_ps(fz, g2);
                {   /* partners: the 4x4 transpose within 128-bit lanes gives the rows (gx, gy, gz, 0) */
                    const __m512 t0 = _mm512_unpacklo_ps(g0, g1), t1 = _mm512_unpacklo_ps(g2, zero);
                    const __m512 t2 = _mm512_unpackhi_ps(g0, g1), t3 = _mm512_unpackhi_ps(g2, zero);
                    const __m512 R[4] = {_mm512_shuffle_ps(t0, t1, 0x44), _mm512_shuffle_ps(t0, t1, 0xEE),
                                         _mm512_shuffle_ps(t2, t3, 0x44), _mm512_shuffle_ps(t2, t3, 0xEE)};
                    const int32_t *jj = js + p;
#define MD_SUB4_(L, e) { double *f = F4 + 4 * (int64_t)jj[4 * L + e]; \
                         _mm256_storeu_pd(f, _mm256_sub_pd(_mm256_loadu_pd(f), _mm256_cvtps_pd(_mm512_extractf32x4_ps(R[e], L)))); }
                    MD_SUB4_(0, 0) MD_SUB4_(0, 1) MD_SUB4_(0, 2) MD_SUB4_(0, 3)
                    MD_SUB4_(1, 0) MD_SUB4_(1, 1) MD_SUB4_(1, 2) MD_SUB4_(1, 3)
                    MD_SUB4_(2, 0) MD_SUB4_(2, 1) MD_SUB4_(2, 2) MD_SUB4_(2, 3)
                    MD_SUB4_(3, 0) MD_SUB4_(3, 1) MD_SUB4_(3, 2) MD_SUB4_(3, 3)
#undef MD_SUB4_
                }
                if (energy) {
                    __m512 val = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(a3, tt, a2), tt, a1), tt, a0);
                    const __m512 r = _mm512_load_ps(Br + q);
                    val = _mm512_mask_blend_ps(below, val, _mm512_fmadd_ps(du0, _mm512_sub_ps(r, xa), u0v));
                    ev = _mm512_mask_add_ps(ev, keep, ev, val);
                }
            }
#else
            for (int64_t p = c0; p < c1; p++) {
                const int j = js[p];
                const float d0 = xyz[4 * j] - xyz[4 * a], d1 = xyz[4 * j + 1] - xyz[4 * a + 1],
                            d2 = xyz[4 * j + 2] - xyz[4 * a + 2];
                const float r2 = d0 * d0 + d1 * d1 + d2 * d2;
                nzero += (r2 == 0.0f);
                const int t = multi ? jt[p] : 0;
                const float xa = s->tx0[t], ih = s->tih[t], last = s->tlast[t];
                const float rinv = 1.0f / sqrtf(r2 > 1e-30f ? r2 : 1e-30f);
                const float r = r2 * rinv, u = (r - xa) * ih;
                const float uu = u > 0.0f ? u : 0.0f;
                const float uc = uu < last - 0.5f ? uu : last - 0.5f;
                const int k = (int)uc;
                const float tt = (uu < last ? uu : last) - (float)k;
                const int64_t b = 4 * ((int64_t)s->toff[t] + k);
                const float a1 = Cf[b + 1], a2 = Cf[b + 2], a3 = Cf[b + 3];
                float der = ((3.0f * a3 * tt + 2.0f * a2) * tt + a1) * ih;
                const int below = u < 0.0f;
                const int keep = (r2 <= s->trm2[t]) && (r2 > 0.0f) && (u <= last);
                if (below) der = s->tdU0[t];
                const float g = keep ? der * rinv : 0.0f;
                const float g0 = g * d0, g1 = g * d1, g2 = g * d2;
                fxs += g0; fys += g1; fzs += g2;
                G0[p - c0] = g0; G1[p - c0] = g1; G2[p - c0] = g2;
                if (energy && keep) {
                    float val = ((a3 * tt + a2) * tt + a1) * tt + Cf[b];
                    if (below) val = s->tU0[t] + s->tdU0[t] * (r - xa);
                    evs += val;
                }
            }
            for (int64_t p = c0; p < c1; p++) {
                const int j = js[p];
                FX[j] -= G0[p - c0]; FY[j] -= G1[p - c0]; FZ[j] -= G2[p - c0];
            }
#endif
        }
#if defined(__AVX512F__)
        fxs = _mm512_reduce_add_ps(fx); fys = _mm512_reduce_add_ps(fy); fzs = _mm512_reduce_add_ps(fz);
        if (energy) evs = _mm512_reduce_add_ps(ev);
        F4[4 * a] += fxs; F4[4 * a + 1] += fys; F4[4 * a + 2] += fzs;
#else
        FX[a] += fxs; FY[a] += fys; FZ[a] += fzs;
#endif
        if (energy) E[a / s->n0] += evs;
    }
#if defined(__AVX512F__)
    for (int64_t g = 0; g < ng; g++) {
        const int64_t o = s->gown[g];
        F4[4 * o] += F4[4 * (n + g)]; F4[4 * o + 1] += F4[4 * (n + g) + 1]; F4[4 * o + 2] += F4[4 * (n + g) + 2];
    }
    for (int64_t q = 0; q < n; q++) { FX[q] = F4[4 * q]; FY[q] = F4[4 * q + 1]; FZ[q] = F4[4 * q + 2]; }
#else
    for (int64_t g = 0; g < ng; g++) {
        int64_t o = s->gown[g];
        FX[o] += FX[n + g]; FY[o] += FY[n + g]; FZ[o] += FZ[n + g];
    }
#endif
    return nzero;
}

static int64_t md_pair_forces_(md_state *s, int energy, double *E) {
    if (s->mixed) {
        if (s->ntab == 1) return energy ? md_forces_mixed_(s, 0, 1, E) : md_forces_mixed_(s, 0, 0, E);
        return energy ? md_forces_mixed_(s, 1, 1, E) : md_forces_mixed_(s, 1, 0, E);
    }
    if (s->ntab == 1) return energy ? md_forces_(s, 0, 1, E) : md_forces_(s, 0, 0, E);
    return energy ? md_forces_(s, 1, 1, E) : md_forces_(s, 1, 0, E);
}

static int64_t md_forces(md_state *s, int energy, double *E) {
    if (energy) for (int64_t r = 0; r < s->R; r++) E[r] = 0.0;
    const int64_t z = md_pair_forces_(s, energy, E);
    if (s->nbond) md_bonds(s, energy, E);
    return z;
}

static inline uint64_t splitmix_(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int64_t md_nrebuild(const md_state *s) { return s->nrebuild; }
int64_t md_build_step(const md_state *s) { return s->build_step; }

/* normals N[step, row, comp] for all rows (original order) into out (3n): the flat index
   f = step·3n + 3·row + comp; the pair m = f/2 gives the normals 2m and 2m+1 by Marsaglia's
   polar method from uniforms u, v in (-1, 1) of SplitMix64 at counters 64m + 2a and 64m + 2a + 1
   (attempt a = 0, 1, ... until 0 < u² + v² < 1; 32 rejections in a row, probability 1e-21,
   fall back to Box-Muller of the last pair). */
static inline double unif_(uint64_t key, uint64_t c) {   /* (0, 1) */
    return ((double)(splitmix_(key + (c + 1) * 0x9E3779B97F4A7C15ULL) >> 11) + 0.5) * 0x1.0p-53;
}
/* The two normals of counter m: Marsaglia's polar method on up to 32 uniform pairs, then
   Box-Muller on the last pair (32 rejections in a row, probability 1e-21). The scalar rule; the AVX-512 path of
   md_noise gives the same numbers and falls back to this for lanes rejected three times. */
static inline void polar_pair_(uint64_t key, int64_t m, double *z0, double *z1) {
    double u = 0.5, v = 0.5;
    for (uint64_t a = 0; a < 32; a++) {
        u = 2.0 * unif_(key, 64 * (uint64_t)m + 2 * a) - 1.0;
        v = 2.0 * unif_(key, 64 * (uint64_t)m + 2 * a + 1) - 1.0;
        double q = u * u + v * v;
        if (q < 1.0 && q > 0.0) {
            double f = sqrt(-2.0 * log(q) / q);
            *z0 = u * f; *z1 = v * f;
            return;
        }
    }
    double rad = sqrt(-2.0 * log(0.5 * (u + 1.0))), ang = 3.141592653589793 * (v + 1.0);
    *z0 = rad * cos(ang); *z1 = rad * sin(ang);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* 8 lanes of unif_: the same SplitMix64 bits, the same (0, 1) double */
static inline __m512d unif8_(__m512i key, __m512i c) {
    const __m512i one = _mm512_set1_epi64(1);
    __m512i z = _mm512_add_epi64(key, _mm512_mullo_epi64(_mm512_add_epi64(c, one), _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ULL)));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94D049BB133111EBULL));
    z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
    return _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(z, 11)), _mm512_set1_pd(0.5)),
                         _mm512_set1_pd(0x1.0p-53));
}
/* natural log of positive normal doubles (q in (0, 1) here): x = 2^e m, m in [sqrt(1/2), sqrt(2)),
   log x = e ln 2 + 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.172, series to s^23 (error < 1e-17) */
static inline __m512d log8_(__m512d x) {
    __m512d m = _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);   /* [1, 2) */
    __m512d e = _mm512_getexp_pd(x);
    const __mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    m = _mm512_mask_mul_pd(m, big, m, _mm512_set1_pd(0.5));
    e = _mm512_mask_add_pd(e, big, e, _mm512_set1_pd(1.0));
    const __m512d sv = _mm512_div_pd(_mm512_sub_pd(m, _mm512_set1_pd(1.0)), _mm512_add_pd(m, _mm512_set1_pd(1.0)));
    const __m512d s2 = _mm512_mul_pd(sv, sv);
    __m512d p = _mm512_set1_pd(1.0 / 23.0);
    for (int k = 21; k >= 1; k -= 2) p = _mm512_fmadd_pd(p, s2, _mm512_set1_pd(1.0 / k));
    return _mm512_fmadd_pd(e, _mm512_set1_pd(0.6931471805599453), _mm512_mul_pd(_mm512_add_pd(sv, sv), p));
}
#endif

void md_noise(uint64_t key, int64_t step, int64_t n, double *out) {
    const int64_t base = step * 3 * n;          /* flat index of (step, 0, 0) */
    const int64_t m0 = base >> 1, m1 = (base + 3 * n - 1) >> 1;
    int64_t m = m0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    /* 8 pairs at a time: the first attempt vectorised (accepted with probability pi/4); pairs whose
       first attempt is rejected go through the scalar loop below, which starts again at attempt 0 */
    {
        const __m512i vkey = _mm512_set1_epi64((long long)key), lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        double Z0[8] __attribute__((aligned(64))), Z1[8] __attribute__((aligned(64)));
        const __m512i ilo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), ihi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
        for (; m + 7 <= m1; m += 8) {
            const __m512i c = _mm512_slli_epi64(_mm512_add_epi64(_mm512_set1_epi64(m), lane), 6);   /* 64 m */
            __m512d z0v = _mm512_setzero_pd(), z1v = _mm512_setzero_pd();
            __mmask8 todo = 0xFF;
            for (int a = 0; a < 3 && todo; a++) {   /* attempts 0, 1, 2 of every pair (counters 64 m + 2a, + 1) */
                const __m512i ca = _mm512_add_epi64(c, _mm512_set1_epi64(2 * a));
                const __m512d u = _mm512_fmsub_pd(_mm512_set1_pd(2.0), unif8_(vkey, ca), _mm512_set1_pd(1.0));
                const __m512d v = _mm512_fmsub_pd(_mm512_set1_pd(2.0), unif8_(vkey, _mm512_add_epi64(ca, _mm512_set1_epi64(1))),
                                                  _mm512_set1_pd(1.0));
                const __m512d q = _mm512_fmadd_pd(u, u, _mm512_mul_pd(v, v));
                const __mmask8 ok = todo & _mm512_cmp_pd_mask(q, _mm512_set1_pd(1.0), _CMP_LT_OQ)
                                  & _mm512_cmp_pd_mask(q, _mm512_setzero_pd(), _CMP_GT_OQ);
                const __m512d qs = _mm512_mask_blend_pd(ok, _mm512_set1_pd(0.5), q);
                const __m512d f = _mm512_sqrt_pd(_mm512_div_pd(_mm512_mul_pd(_mm512_set1_pd(-2.0), log8_(qs)), qs));
                z0v = _mm512_mask_mul_pd(z0v, ok, u, f);
                z1v = _mm512_mask_mul_pd(z1v, ok, v, f);
                todo &= (__mmask8)~ok;
            }
            _mm512_store_pd(Z0, z0v);
            _mm512_store_pd(Z1, z1v);
            for (int l = 0; l < 8; l++) {
                if (!((todo >> l) & 1)) continue;
                /* rejected three times (probability 1 %): the scalar rule from attempt 0 */
                polar_pair_(key, m + l, &Z0[l], &Z1[l]);
            }
            const int64_t q0 = 2 * m - base;
            if (q0 >= 0 && q0 + 16 <= 3 * n) {   /* inside: the 16 normals are contiguous */
                const __m512d A = _mm512_load_pd(Z0), B = _mm512_load_pd(Z1);
                _mm512_storeu_pd(out + q0, _mm512_permutex2var_pd(A, ilo, B));
                _mm512_storeu_pd(out + q0 + 8, _mm512_permutex2var_pd(A, ihi, B));
            } else {
                for (int l = 0; l < 8; l++) {
                    const int64_t r0 = q0 + 2 * l, r1 = r0 + 1;
                    if (r0 >= 0 && r0 < 3 * n) out[r0] = Z0[l];
                    if (r1 >= 0 && r1 < 3 * n) out[r1] = Z1[l];
                }
            }
        }
    }
#endif
    for (; m <= m1; m++) {
        double z0, z1;
        polar_pair_(key, m, &z0, &z1);
        int64_t q0 = 2 * m - base, q1 = q0 + 1;
        if (q0 >= 0 && q0 < 3 * n) out[q0] = z0;
        if (q1 >= 0 && q1 < 3 * n) out[q1] = z1;
    }
}

/* status codes of md_steps */
#define MD_OK 0
#define MD_JUMP 1        /* info[0] = original row, dinfo[0] = displacement (Å) */
#define MD_NANPOS 2
#define MD_NANFORCE 3
#define MD_ZERO 4        /* info[0], info[1] = original rows of a pair at zero distance */
#define MD_NOMEM 5
#define MD_SHIFT 6

/* Load / store the state in original row order: x, v, F (n, 3) AoS. */
void md_load(md_state *s, const double *x, const double *v, const double *F) {
    for (int64_t q = 0; q < s->n; q++) {
        int64_t o = s->id[q];
        s->X[q] = x[3 * o]; s->Y[q] = x[3 * o + 1]; s->Z[q] = x[3 * o + 2];
        s->VX[q] = v[3 * o]; s->VY[q] = v[3 * o + 1]; s->VZ[q] = v[3 * o + 2];
        s->FX[q] = F[3 * o]; s->FY[q] = F[3 * o + 1]; s->FZ[q] = F[3 * o + 2];
    }
}

/* which: 0 positions, 1 velocities, 2 forces, 3 positions at the start of the last step,
   4 positions at the last list build */
void md_store(md_state *s, int which, double *out) {
    const double *A, *B, *Cc;
    switch (which) {
        case 0: A = s->X; B = s->Y; Cc = s->Z; break;
        case 1: A = s->VX; B = s->VY; Cc = s->VZ; break;
        case 2: A = s->FX; B = s->FY; Cc = s->FZ; break;
        case 3: A = s->PX; B = s->PY; Cc = s->PZ; break;
        default: A = s->RX; B = s->RY; Cc = s->RZ; break;
    }
    for (int64_t q = 0; q < s->n; q++) {
        int64_t o = s->id[q];
        out[3 * o] = A[q]; out[3 * o + 1] = B[q]; out[3 * o + 2] = Cc[q];
    }
}

/* K steps from the loaded state (x, v, F at step `step`). langevin: BAOAB with c1 and the
   per-row noise amplitudes; else velocity Verlet. dt in ASE time units. Energies (R,) of the
   final state into E. force_rebuild: rebuild the list before the first force evaluation.
   Returns a status; *done = completed steps (on an error, the failing step is step+done+1 and
   the state is that of its force evaluation: positions after the drift, previous positions
   the step's start). A forced rebuild happens before the first step (at the loaded positions,
   as the per-step loop builds its list at the start of a run), so the first step's
   displacement is checked too. */
int64_t md_steps(md_state *s, int64_t K, int64_t step, int langevin, double dt, double c1, uint64_t key,
                 int force_rebuild, double *E, int64_t *done, int64_t *info, double *dinfo) {
    const int64_t n = s->n;
    const double hdt = 0.5 * dt, lim2 = 0.25 * s->skin * s->skin, jump = 3.0 + s->skin;
    *done = 0;
    if (force_rebuild || s->rebuild_next) {
        for (int64_t q = 0; q < n; q++)
            if (!(fabs(s->X[q]) + fabs(s->Y[q]) + fabs(s->Z[q]) <= 1e300)) { info[0] = s->id[q]; return MD_NANPOS; }
        int rc = md_rebuild(s);
        if (rc == -1) return MD_NOMEM;
        if (rc == -2) return MD_SHIFT;
        s->rebuild_next = 0;
        s->build_step = step;
    }
    for (int64_t k = 0; k < K; k++) {
        double *restrict X = s->X, *restrict Y = s->Y, *restrict Z = s->Z;
        double *restrict VX = s->VX, *restrict VY = s->VY, *restrict VZ = s->VZ;
        const double *restrict kick = s->kick;
        memcpy(s->PX, X, sizeof(double) * n); memcpy(s->PY, Y, sizeof(double) * n);
        memcpy(s->PZ, Z, sizeof(double) * n);
        if (langevin) {
            md_noise(key, step + k, n, s->noise);
            const double *restrict sig = s->sig, *restrict nz = s->noise;
            const int32_t *restrict id = s->id;
            for (int64_t q = 0; q < n; q++) {
                const int64_t o = 3 * (int64_t)id[q];
                double vx = VX[q] + kick[q] * s->FX[q], vy = VY[q] + kick[q] * s->FY[q], vz = VZ[q] + kick[q] * s->FZ[q];
                X[q] = X[q] + hdt * vx; Y[q] = Y[q] + hdt * vy; Z[q] = Z[q] + hdt * vz;
                vx = c1 * vx + sig[q] * nz[o]; vy = c1 * vy + sig[q] * nz[o + 1]; vz = c1 * vz + sig[q] * nz[o + 2];
                X[q] = X[q] + hdt * vx; Y[q] = Y[q] + hdt * vy; Z[q] = Z[q] + hdt * vz;
                VX[q] = vx; VY[q] = vy; VZ[q] = vz;
            }
        } else {
            for (int64_t q = 0; q < n; q++) {
                double vx = VX[q] + kick[q] * s->FX[q], vy = VY[q] + kick[q] * s->FY[q], vz = VZ[q] + kick[q] * s->FZ[q];
                X[q] = X[q] + dt * vx; Y[q] = Y[q] + dt * vy; Z[q] = Z[q] + dt * vz;
                VX[q] = vx; VY[q] = vy; VZ[q] = vz;
            }
        }
        /* list check: the largest displacement since the last build */
        double dmax = 0.0; int64_t qmax = 0, bad = -1;
        for (int64_t q = 0; q < n; q++) {
            double a = X[q] - s->RX[q], b = Y[q] - s->RY[q], c = Z[q] - s->RZ[q];
            double d2 = a * a + b * b + c * c;
            if (!(d2 <= 1e300)) { if (bad < 0) bad = q; continue; }
            if (d2 > dmax) { dmax = d2; qmax = q; }
        }
        if (bad >= 0 || s->skin <= 0.0 || dmax > lim2) {
            if (bad >= 0) { info[0] = s->id[bad]; return MD_NANPOS; }
            if (sqrt(dmax) > jump) { info[0] = s->id[qmax]; dinfo[0] = sqrt(dmax); return MD_JUMP; }
            int rc = md_rebuild(s);
            if (rc == -1) { s->rebuild_next = 1; return MD_NOMEM; }
            if (rc == -2) { s->rebuild_next = 1; return MD_SHIFT; }
            s->build_step = step + k + 1;
        }
        const int last = (k == K - 1);
        int64_t z = md_forces(s, last, E);
        if (z > 0) {
            /* find the pair for the message */
            for (int64_t a = 0; a < n; a++)
                for (int64_t p = s->rs[a]; p < s->rs[a + 1]; p++) {
                    int64_t j = s->js[p];
                    if (j == n + s->ng) continue;
                    double dx = s->X[j] - s->X[a], dy = s->Y[j] - s->Y[a], dz = s->Z[j] - s->Z[a];
                    if (s->mixed) {   /* the mixed loop's test: equal float32 coordinates */
                        const float *f = s->xyzf;
                        dx = f[4 * j] - f[4 * a]; dy = f[4 * j + 1] - f[4 * a + 1]; dz = f[4 * j + 2] - f[4 * a + 2];
                    }
                    if (dx * dx + dy * dy + dz * dz == 0.0) {
                        int64_t jr = j < n ? j : s->gown[j - n];
                        info[0] = s->id[a]; info[1] = s->id[jr];
                        return MD_ZERO;
                    }
                }
            return MD_ZERO;
        }
        double fsum = 0.0;
        VX = s->VX; VY = s->VY; VZ = s->VZ;
        for (int64_t q = 0; q < n; q++) {
            VX[q] += kick[q] * s->FX[q]; VY[q] += kick[q] * s->FY[q]; VZ[q] += kick[q] * s->FZ[q];
            fsum += s->FX[q] + s->FY[q] + s->FZ[q];
        }
        if (!isfinite(fsum)) return MD_NANFORCE;  /* velocities were kicked: the caller reports, never continues */
        *done = k + 1;
    }
    return MD_OK;
}
"""


class KernelUnavailableWarning(CgkitWarning):
    """The compiled pair kernel could not be built; the (slower) torch path is used."""


def _declare(lib) -> None:
    """argtypes/restype of the kernel's functions."""
    P = ctypes.c_void_p
    i64, f64 = ctypes.c_int64, ctypes.c_double
    lib.half_list.restype = i64
    lib.half_list.argtypes = [i64, P, P, P, P, i64, f64, i64, P, P, i64, i64, P, P, P, P]
    lib.pair_forces.restype = i64
    lib.pair_forces.argtypes = [i64] + [P] * 17
    lib.md_create.restype = P
    lib.md_create.argtypes = [i64, i64, P, P, P, i64, f64, f64, P, P, i64, P, P, i64] + [P] * 8 + [ctypes.c_int]
    lib.md_set_bonds.restype = ctypes.c_int
    lib.md_set_bonds.argtypes = [P, i64, P, P, P, i64] + [P] * 7
    lib.md_set_exclusions.restype = ctypes.c_int
    lib.md_set_exclusions.argtypes = [P, P, P]
    lib.md_free.restype = None
    lib.md_free.argtypes = [P]
    lib.md_load.restype = None
    lib.md_load.argtypes = [P, P, P, P]
    lib.md_store.restype = None
    lib.md_store.argtypes = [P, ctypes.c_int, P]
    lib.md_nrebuild.restype = i64
    lib.md_nrebuild.argtypes = [P]
    lib.md_build_step.restype = i64
    lib.md_build_step.argtypes = [P]
    lib.md_noise.restype = None
    lib.md_noise.argtypes = [ctypes.c_uint64, i64, i64, P]
    lib.md_steps.restype = i64
    lib.md_steps.argtypes = [P, i64, i64, ctypes.c_int, f64, f64, ctypes.c_uint64, ctypes.c_int,
                             P, P, P, P]


#: the kernel library, built on first use (:class:`cgkit.cbuild.CompiledLibrary`: compiled for
#: the host CPU with ``-march=native``, where the pair pass vectorises with AVX2/AVX-512, ~2×
#: faster; falls back to a generic build)
_LIBRARY = CompiledLibrary("pair_kernel", _SOURCE, _declare)


def _lib():
    return _LIBRARY.get()


def available() -> bool:
    """True when the compiled kernel could be built (or was cached) and loaded."""
    return _LIBRARY.available()


def unavailable_reason() -> str:
    return _LIBRARY.unavailable_reason()


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
            raise RuntimeError(f"compiled pair kernel unavailable: {unavailable_reason()}")
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


class FusedMD:
    """Fused MD loop of :class:`cgkit.md.MolecularDynamics` for tabulated potentials of pair
    (+ bond) tables: ``K`` steps of BAOAB Langevin or velocity Verlet per call, entirely in C (integrator,
    Langevin noise, list-rebuild check, list rebuild, pair forces), float64 or mixed precision.

    ``kernel``: the :class:`PairKernel` of the run (tables, species, replicas); ``cell`` (3, 3)
    Å; ``list_cutoff`` Å (cutoff + skin); ``skin`` Å; ``kick`` (R·n,) = dt/(2 m) and ``sigma``
    (R·n,) = c2·sqrt(kT/m) per row in ASE units (the torch loop's ``kick`` and ``noise_scale``).
    :meth:`available_for` says whether the cell suits it (fully periodic, cell-list bins).

    ``bonds``: optional bond tables, ``(idx (m, 2) rows over all replicas, table ids (m,), packed
    tables (x0, dx, points, offsets, U, dU, C))`` as ``TabulatedPotential`` packs them (forces in
    float64, minimum image); ``exclusions``: optional (e, 2) pairs of one replica's rows that get
    no pair force (in any image), as ``Topology.exclusions``.

    ``precision``: ``"double"`` (float64 pair forces, equal to autograd to rounding) or
    ``"mixed"`` (float32 pair loop: coordinates relative to the cell centre rounded to float32
    once per step, float32 table, per-particle sums in float32, totals, positions, velocities and
    integration in float64; forces to float32 accuracy, ~5e-6 relative).

    Langevin noise is counter-based (SplitMix64 + Marsaglia's polar method, see ``md_noise``
    in the C source): the normal of
    (MD step, row, component) is a function of ``seed`` and those three only, so a seed gives
    the same trajectory however the run is split into calls; it is not the torch generator's
    stream of the per-step loop (same distribution, other numbers).
    """

    OK, JUMP, NANPOS, NANFORCE, ZERO, NOMEM, SHIFT = range(7)

    def __init__(self, kernel: "PairKernel", cell: np.ndarray, list_cutoff: float, skin: float,
                 kick: np.ndarray, sigma: np.ndarray, seed: int, precision: str = "double",
                 bonds=None, exclusions=None):
        if precision not in PAIR_PRECISIONS:
            raise ValueError(f"precision must be one of {PAIR_PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.lib = kernel.lib
        self.n = len(kernel.species)
        self.R = kernel.R
        cell = np.ascontiguousarray(cell, dtype=np.float64)
        bins = _bins(cell, list_cutoff)
        if bins is None or len(kernel.nt) < 1:
            raise ValueError("FusedMD needs a cell at least 3 list cutoffs thick (see available_for)")
        self._keep = []  # arrays whose addresses C copied or reads

        def arr(a, dt):
            a = np.ascontiguousarray(a, dtype=dt)
            self._keep.append(a)
            return a.ctypes.data

        nb, reach = bins
        self.ptr = self.lib.md_create(
            self.n // self.R, self.R, arr(cell, np.float64), arr(np.linalg.inv(cell), np.float64),
            arr(nb, np.int64), int(reach), float(list_cutoff), float(skin), arr(kernel.species, np.int32),
            arr(kernel.pair_id, np.int32), len(kernel.pair_id), arr(kick, np.float64), arr(sigma, np.float64),
            len(kernel.nt), arr(kernel.x0, np.float64), arr(kernel.ih, np.float64), arr(kernel.nt, np.int64),
            arr(kernel.off, np.int64), arr(kernel.U, np.float64), arr(kernel.dU, np.float64),
            arr(kernel.C, np.float64), arr(kernel.rmax2, np.float64), int(precision == "mixed"))
        self._keep.clear()
        if not self.ptr:
            raise MemoryError("FusedMD: out of memory")
        if bonds is not None and len(bonds[0]):
            idx, tid, (x0, dx, nt, off, U, dU, C) = bonds
            idx = np.asarray(idx, dtype=np.int32).reshape(-1, 2)
            rc = self.lib.md_set_bonds(
                self.ptr, len(idx), arr(idx[:, 0], np.int32), arr(idx[:, 1], np.int32), arr(tid, np.int32), len(nt),
                arr(x0, np.float64), arr(1.0 / np.asarray(dx, dtype=np.float64), np.float64), arr(nt, np.int64),
                arr(off, np.int64), arr(U, np.float64), arr(dU, np.float64), arr(C, np.float64))
            self._keep.clear()
            if rc != 0:
                raise MemoryError("FusedMD: out of memory")
        if exclusions is not None and len(exclusions):
            n0 = self.n // self.R
            ex = np.asarray(exclusions, dtype=np.int64).reshape(-1, 2)
            both = np.concatenate([ex, ex[:, ::-1]])
            both = both[np.lexsort((both[:, 1], both[:, 0]))]
            exo = np.zeros(n0 + 1, dtype=np.int64)
            np.add.at(exo, both[:, 0] + 1, 1)
            rc = self.lib.md_set_exclusions(self.ptr, arr(np.cumsum(exo), np.int64), arr(both[:, 1], np.int32))
            self._keep.clear()
            if rc != 0:
                raise MemoryError("FusedMD: out of memory")
        # 64-bit key of the noise stream from the run seed
        self.key = int(np.random.SeedSequence([int(seed) & (2 ** 63 - 1), 0x6367_6B69_74]).generate_state(
            1, dtype=np.uint64)[0])
        self.E = np.zeros(self.R)
        self._done = np.zeros(1, dtype=np.int64)
        self.info = np.zeros(2, dtype=np.int64)
        self.dinfo = np.zeros(1)

    @staticmethod
    def available_for(cell: np.ndarray, pbc, list_cutoff: float) -> bool:
        return bool(np.all(pbc)) and _bins(np.asarray(cell, dtype=np.float64), list_cutoff) is not None

    def __del__(self):
        ptr = getattr(self, "ptr", None)
        if ptr:
            self.lib.md_free(ptr)
            self.ptr = None

    @property
    def n_rebuilds(self) -> int:
        return int(self.lib.md_nrebuild(self.ptr))

    @property
    def build_step(self) -> int:
        """MD step of the last list build."""
        return int(self.lib.md_build_step(self.ptr))

    def load(self, x: np.ndarray, v: np.ndarray, F: np.ndarray) -> None:
        """State in row order: positions Å, velocities (ASE units), forces eV/Å, all (R·n, 3) float64."""
        x, v, F = (np.ascontiguousarray(a, dtype=np.float64) for a in (x, v, F))
        self.lib.md_load(self.ptr, x.ctypes.data, v.ctypes.data, F.ctypes.data)

    def store(self, which: int) -> np.ndarray:
        """0 positions, 1 velocities, 2 forces, 3 positions at the start of the last step, 4 at
        the last list build: (R·n, 3) float64 in row order."""
        out = np.empty((self.n, 3))
        self.lib.md_store(self.ptr, int(which), out.ctypes.data)
        return out

    def steps(self, K: int, step: int, langevin: bool, dt_ase: float, c1: float, force_rebuild: bool):
        """Run ``K`` steps from MD step ``step``; returns (status, completed steps). The
        energies (R,) eV of the last state are in ``self.E`` (status OK)."""
        st = self.lib.md_steps(self.ptr, int(K), int(step), int(bool(langevin)), float(dt_ase), float(c1),
                               self.key, int(bool(force_rebuild)), self.E.ctypes.data, self._done.ctypes.data,
                               self.info.ctypes.data, self.dinfo.ctypes.data)
        return int(st), int(self._done[0])

    def noise(self, step: int) -> np.ndarray:
        """The Langevin normals (R·n, 3) of MD step ``step`` (for tests and documentation)."""
        out = np.empty((self.n, 3))
        self.lib.md_noise(self.key, int(step), self.n, out.ctypes.data)
        return out


def bonded_energy_forces(potential, graph):
    """Bonded-table energies (G,) eV and forces (n, 3) eV/Å of a TabulatedPotential in closed
    form (float64, the same formulas as its ``_energy_forces``, through
    ``TabulatedPotential.bonded_energy_gradients``: sin³-damped dihedral tables included);
    None without bonded instances."""
    import torch

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
            e, grads = potential.bonded_energy_gradients(kind, pos, idx, tid, cell, pbc, g_of)
            for c in range(idx.shape[1]):
                F.index_add_(0, idx[:, c], -grads[:, c])
            E.index_add_(0, g_of, e)
    return E, F


def warn_unavailable() -> None:
    """Warn (once per process and call site) that MD falls back to the torch path."""
    warnings.warn(f"the compiled pair kernel is unavailable ({unavailable_reason()}); MD with "
                  "tabulated potentials uses the slower torch path", KernelUnavailableWarning,
                  stacklevel=3)
