"""Compiled kernels of the ENNP edge convolution (:mod:`cgkit.nn.conv`): one loop over edges
in C, every per-edge intermediate in cache.

The convolution is the multilinear form (see :mod:`cgkit.nn.conv`)

    Φ(G, T, x, w) = Σ_{e, o, k, q, c} G[m_o + k, i_e, c] · T[e, t_o + k·D_o + q]
                                       · x[a_r, j_e, c] · w[u_e, p_r, c],   r = r_o + q,

with output irrep blocks o (d3_o components starting at m_o, D_o rows starting at r_o, couplings
starting at column t_o of T), row r reading input component ``a_r`` and radial weight of path
``p_r``, and ``u_e`` = ``wmap[e]`` (or e). The PyTorch form gathers, for chunks of edges, the
(E, R, C) rows ``x[a_r, j_e] · w[u_e, p_r]`` (R ≈ 100 rows: every input component once per path
that reads it) and runs one batched matmul per output irrep; at molecule sizes that is bound by
the memory traffic of those intermediates and the per-operation overhead (about 0.25 ms per
elementwise operation on one chunk). Here one C loop visits each edge once, keeps its R × C rows
in a small buffer and writes each result once:

* ``conv_fwd``: the messages ∂Φ/∂G, scattered to the receivers;
* ``conv_grad``: any of ∂Φ/∂T (per edge), ∂Φ/∂x (scattered to the senders), ∂Φ/∂w;
* ``conv_gradgrad``: the gradients of ⟨H_T, ∂Φ/∂T⟩ + ⟨H_x, ∂Φ/∂x⟩ + ⟨H_w, ∂Φ/∂w⟩ with respect
  to any of G, T, x, w (every term again a partial derivative of Φ with one slot replaced).

float32 and float64 versions (the same source, compiled twice); sums run over the same terms
as the PyTorch form in a different order, so results agree to rounding (tests:
tests/nn/test_conv_kernel.py, 1e-12 relative in float64, and every test of the convolution's
derivatives runs through this kernel). Single-threaded and deterministic (edges in order).
Built once per machine by :func:`cgkit.cbuild.build_library`; without a C compiler
:func:`available` is False and :mod:`cgkit.nn.conv` uses its PyTorch form.
"""
from __future__ import annotations

import ctypes
import os

import torch

from ..cbuild import CompiledLibrary

__all__ = ["available", "unavailable_reason", "forward", "grad", "gradgrad"]

_BODY = r"""
/* meta: E, N, C, P, n_blocks, ST (T row length), R (rows), M_in, M_out
   bl: per block o: d3, D, toff, moff, roff        comp, wid: (R,) input component and path of row r
   i, j: (E,) receiver, sender; wmap: (E,) radial-weight row of edge e, or NULL (row e)       */

static void xw_rows_SFX(const int64_t *meta, const int64_t *comp, const int64_t *wid, int64_t je,
                        int64_t ue, const REAL *x, const REAL *w, REAL *xw)
{
    const int64_t N = meta[1], C = meta[2], P = meta[3], R = meta[6];
    for (int64_t r = 0; r < R; r++) {
        const REAL *xr = x + (comp[r] * N + je) * C, *wr = w + (ue * P + wid[r]) * C;
        REAL *o = xw + r * C;
        #pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] = xr[c] * wr[c];
    }
}

/* out[m_o + k, i_e, :] += Σ_q A[e, t_o + k D + q] · rows[r_o + q, :] for every block */
static void apply_T_SFX(const int64_t *meta, const int64_t *bl, const REAL *Te, const REAL *rows,
                        REAL *out, int64_t ie, REAL *acc)
{
    const int64_t N = meta[1], C = meta[2], nb = meta[4];
    for (int64_t o = 0; o < nb; o++) {
        const int64_t d3 = bl[5 * o], D = bl[5 * o + 1], toff = bl[5 * o + 2], moff = bl[5 * o + 3],
                      roff = bl[5 * o + 4];
        for (int64_t k = 0; k < d3; k++) {
            const REAL *t = Te + toff + k * D;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) acc[c] = 0;
            for (int64_t q = 0; q < D; q++) {
                const REAL tq = t[q], *row = rows + (roff + q) * C;
                #pragma omp simd
                for (int64_t c = 0; c < C; c++) acc[c] += tq * row[c];
            }
            REAL *dst = out + ((moff + k) * N + ie) * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) dst[c] += acc[c];
        }
    }
}

/* v[r_o + q, :] = Σ_k A[e, t_o + k D + q] · G[m_o + k, i_e, :] for every block */
static void apply_Tt_SFX(const int64_t *meta, const int64_t *bl, const REAL *Te, const REAL *G,
                         int64_t ie, REAL *v)
{
    const int64_t N = meta[1], C = meta[2], nb = meta[4];
    for (int64_t o = 0; o < nb; o++) {
        const int64_t d3 = bl[5 * o], D = bl[5 * o + 1], toff = bl[5 * o + 2], moff = bl[5 * o + 3],
                      roff = bl[5 * o + 4];
        for (int64_t q = 0; q < D; q++) {
            REAL *vr = v + (roff + q) * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) vr[c] = 0;
        }
        for (int64_t k = 0; k < d3; k++) {
            const REAL *t = Te + toff + k * D, *g = G + ((moff + k) * N + ie) * C;
            for (int64_t q = 0; q < D; q++) {
                const REAL tq = t[q];
                REAL *vr = v + (roff + q) * C;
                #pragma omp simd
                for (int64_t c = 0; c < C; c++) vr[c] += tq * g[c];
            }
        }
    }
}

/* gT[e, t_o + k D + q] = Σ_c G[m_o + k, i_e, c] · rows[r_o + q, c] */
static void outer_G_SFX(const int64_t *meta, const int64_t *bl, const REAL *G, const REAL *rows,
                        int64_t ie, REAL *gTe)
{
    const int64_t N = meta[1], C = meta[2], nb = meta[4];
    for (int64_t o = 0; o < nb; o++) {
        const int64_t d3 = bl[5 * o], D = bl[5 * o + 1], toff = bl[5 * o + 2], moff = bl[5 * o + 3],
                      roff = bl[5 * o + 4];
        for (int64_t k = 0; k < d3; k++) {
            const REAL *g = G + ((moff + k) * N + ie) * C;
            REAL *dst = gTe + toff + k * D;
            for (int64_t q = 0; q < D; q++) {
                const REAL *row = rows + (roff + q) * C;
                REAL s = 0;
                #pragma omp simd reduction(+:s)
                for (int64_t c = 0; c < C; c++) s += g[c] * row[c];
                dst[q] = s;
            }
        }
    }
}

int conv_fwd_SFX(const int64_t *meta, const int64_t *bl, const int64_t *comp, const int64_t *wid,
                 const int64_t *I, const int64_t *J, const int64_t *wmap, const REAL *T, const REAL *x,
                 const REAL *w, REAL *out)
{
    const int64_t E = meta[0], C = meta[2], ST = meta[5], R = meta[6];
    REAL *xw = malloc(sizeof(REAL) * (R + 1) * C);
    if (!xw) return 1;
    REAL *acc = xw + R * C;
    for (int64_t e = 0; e < E; e++) {
        const int64_t ue = wmap ? wmap[e] : e;
        xw_rows_SFX(meta, comp, wid, J[e], ue, x, w, xw);
        apply_T_SFX(meta, bl, T + e * ST, xw, out, I[e], acc);
    }
    free(xw);
    return 0;
}

int conv_grad_SFX(const int64_t *meta, const int64_t *bl, const int64_t *comp, const int64_t *wid,
                  const int64_t *I, const int64_t *J, const int64_t *wmap, const REAL *G, const REAL *T,
                  const REAL *x, const REAL *w, REAL *gT, REAL *gx, REAL *gw)
{
    const int64_t E = meta[0], N = meta[1], C = meta[2], P = meta[3], ST = meta[5], R = meta[6];
    REAL *buf = malloc(sizeof(REAL) * 2 * R * C);
    if (!buf) return 1;
    REAL *xw = buf, *v = buf + R * C;
    for (int64_t e = 0; e < E; e++) {
        const int64_t ie = I[e], je = J[e], ue = wmap ? wmap[e] : e;
        if (gT) {
            xw_rows_SFX(meta, comp, wid, je, ue, x, w, xw);
            outer_G_SFX(meta, bl, G, xw, ie, gT + e * ST);
        }
        if (gx || gw) {
            apply_Tt_SFX(meta, bl, T + e * ST, G, ie, v);
            for (int64_t r = 0; r < R; r++) {
                const REAL *vr = v + r * C;
                if (gx) {
                    const REAL *wr = w + (ue * P + wid[r]) * C;
                    REAL *d = gx + (comp[r] * N + je) * C;
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += vr[c] * wr[c];
                }
                if (gw) {
                    const REAL *xr = x + (comp[r] * N + je) * C;
                    REAL *d = gw + (ue * P + wid[r]) * C;
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += vr[c] * xr[c];
                }
            }
        }
    }
    free(buf);
    return 0;
}

int conv_gradgrad_SFX(const int64_t *meta, const int64_t *bl, const int64_t *comp, const int64_t *wid,
                      const int64_t *I, const int64_t *J, const int64_t *wmap, const REAL *G,
                      const REAL *T, const REAL *x, const REAL *w, const REAL *HT, const REAL *Hx,
                      const REAL *Hw, REAL *gG, REAL *gT, REAL *gx, REAL *gw)
{
    const int64_t E = meta[0], N = meta[1], C = meta[2], P = meta[3], ST = meta[5], R = meta[6];
    REAL *buf = malloc(sizeof(REAL) * (4 * R + 1) * C);
    if (!buf) return 1;
    REAL *s = buf, *xw = buf + R * C, *v = buf + 2 * R * C, *hv = buf + 3 * R * C, *acc = buf + 4 * R * C;
    const int have_s = Hx || Hw;
    for (int64_t e = 0; e < E; e++) {
        const int64_t ie = I[e], je = J[e], ue = wmap ? wmap[e] : e;
        const REAL *Te = T + e * ST, *HTe = HT ? HT + e * ST : 0;
        /* s = Hx_j ∘ w + x_j ∘ Hw */
        if (have_s) {
            for (int64_t r = 0; r < R; r++) {
                const int64_t xo = (comp[r] * N + je) * C, wo = (ue * P + wid[r]) * C;
                REAL *sr = s + r * C;
                if (Hx && Hw) {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) sr[c] = Hx[xo + c] * w[wo + c] + x[xo + c] * Hw[wo + c];
                } else if (Hx) {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) sr[c] = Hx[xo + c] * w[wo + c];
                } else {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) sr[c] = x[xo + c] * Hw[wo + c];
                }
            }
        }
        if (gG) {
            if (have_s) apply_T_SFX(meta, bl, Te, s, gG, ie, acc);
            if (HTe) {
                xw_rows_SFX(meta, comp, wid, je, ue, x, w, xw);
                apply_T_SFX(meta, bl, HTe, xw, gG, ie, acc);
            }
        }
        if (gT && have_s) outer_G_SFX(meta, bl, G, s, ie, gT + e * ST);
        if (!gx && !gw) continue;
        if (have_s) apply_Tt_SFX(meta, bl, Te, G, ie, v);
        if (HTe) apply_Tt_SFX(meta, bl, HTe, G, ie, hv);
        for (int64_t r = 0; r < R; r++) {
            const int64_t xo = (comp[r] * N + je) * C, wo = (ue * P + wid[r]) * C;
            const REAL *vr = v + r * C, *hr = hv + r * C;
            if (gx && (HTe || Hw)) {
                REAL *d = gx + xo;
                if (HTe && Hw) {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += hr[c] * w[wo + c] + vr[c] * Hw[wo + c];
                } else if (HTe) {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += hr[c] * w[wo + c];
                } else {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += vr[c] * Hw[wo + c];
                }
            }
            if (gw && (HTe || Hx)) {
                REAL *d = gw + wo;
                if (HTe && Hx) {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += hr[c] * x[xo + c] + vr[c] * Hx[xo + c];
                } else if (HTe) {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += hr[c] * x[xo + c];
                } else {
                    #pragma omp simd
                    for (int64_t c = 0; c < C; c++) d[c] += vr[c] * Hx[xo + c];
                }
            }
        }
    }
    free(buf);
    return 0;
}
"""

_SOURCE = ("#include <stdint.h>\n#include <stdlib.h>\n"
           + _BODY.replace("REAL", "float").replace("SFX", "f32")
           + _BODY.replace("REAL", "double").replace("SFX", "f64"))

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _declare(lib) -> None:
    P = ctypes.c_void_p
    for sfx in _SUFFIX.values():
        for name, n in (("conv_fwd", 11), ("conv_grad", 14), ("conv_gradgrad", 18)):
            f = getattr(lib, f"{name}_{sfx}")
            f.restype, f.argtypes = ctypes.c_int, [P] * n


#: the kernels, built on first use (:class:`cgkit.cbuild.CompiledLibrary`)
_LIBRARY = CompiledLibrary("conv_kernel", _SOURCE, _declare)


available = _LIBRARY.available
unavailable_reason = _LIBRARY.unavailable_reason


def _plain(t) -> bool:
    """A dense CPU tensor with its own memory: not a functorch wrapper (``vmap``-batched or
    grad-tracking tensors of ``torch.func``), whose data pointer is not its values."""
    try:
        from torch._C._functorch import is_functorch_wrapped_tensor
        if is_functorch_wrapped_tensor(t):
            return False
    except ImportError:  # pragma: no cover - older torch
        pass
    return t.device.type == "cpu" and t.layout == torch.strided


def usable(*tensors) -> bool:
    """The kernels serve these tensors (None entries ignored): built, plain CPU tensors
    (:func:`_plain`) of one float dtype (float32/float64)."""
    if _LIBRARY.get() is None:
        return False
    dt = tensors[0].dtype
    return dt in _SUFFIX and all(t is None or (t.dtype == dt and _plain(t)) for t in tensors)


def _layout(conv):
    """(block table (n_blocks·5,), comp (R,), wid (R,), ST, R, M_out) of an ``_EdgeConv``,
    cached on it (int64 CPU tensors and ints; see the C source for the block table)."""
    lay = getattr(conv, "_kernel_layout", None)
    if lay is None:
        bl, toff, moff, roff = [], 0, 0, 0
        for d3, D in conv.blocks:
            bl += [d3, D, toff, moff, roff]
            toff, moff, roff = toff + d3 * D, moff + d3, roff + D
        lay = (torch.tensor(bl, dtype=torch.int64), conv.comp_idx.to(torch.int64).cpu().contiguous(),
               conv.wid.to(torch.int64).cpu().contiguous(), toff, roff, moff)
        conv._kernel_layout = lay
    return lay


#: edges per thread below which one thread runs the whole kernel
MIN_EDGES_PER_THREAD = 1024
_POOL = None
_POOL_PID = None


def _pool(n: int):
    """A thread pool of at least ``n`` workers, made by this process (one inherited through
    ``fork`` is not reused: its worker threads belong to the parent)."""
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid() or _POOL._max_workers < n:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cgkit-conv")
        _POOL_PID = os.getpid()
    return _POOL


def _ptr(t, offset: int = 0):
    return None if t is None else ctypes.c_void_p(t.data_ptr() + offset * t.element_size())


def _check(conv, e, n_nodes, i, j, wmap, args, st, m_out) -> None:
    """Shapes, memory layout and index ranges the C loop relies on (it reads raw memory: an
    inconsistent call must raise here, not read out of bounds)."""
    C, P = conv.channels, conv.n_paths
    size = {"T": e * st, "x": conv.m_in * n_nodes * C, "G": m_out * n_nodes * C}
    n_w = None
    for t, _, role in args:
        if t is None:
            continue
        if not t.is_contiguous():
            raise ValueError(f"cgkit.nn.conv_kernel: a non-contiguous '{role}' argument")
        if role == "w":
            rows = t.numel() // (P * C)
            if rows * P * C != t.numel() or (n_w is not None and rows != n_w) or (wmap is None and rows != e):
                raise ValueError(f"cgkit.nn.conv_kernel: radial weights of {t.numel()} elements for "
                                 f"{e} edges, {P} paths, {C} channels")
            n_w = rows
        elif t.numel() != size[role]:
            raise ValueError(f"cgkit.nn.conv_kernel: '{role}' has {t.numel()} elements, expected {size[role]}")
    for name, idx, hi in (("receiver", i, n_nodes), ("sender", j, n_nodes), ("wmap", wmap, n_w)):
        if idx is not None and hi is not None and (int(idx.min()) < 0 or int(idx.max()) >= hi):
            raise ValueError(f"cgkit.nn.conv_kernel: {name} index outside [0, {hi})")


def _run(fn, conv, i, j, wmap, n_nodes, args):
    """Call kernel ``fn`` over the edges with ``args`` in the kernel's order, each a triple
    (tensor or None, kind, role): role ``"T"`` (E, ST) couplings, ``"x"`` (M_in, N, C) node
    rows, ``"w"`` radial-weight rows, ``"G"`` (M_out, N, C) output rows; kind ``"read"`` read-only, ``"edge"`` one row per edge (read, or written
    by that edge only), ``"sum"`` an output accumulated by scatter. With
    ``torch.get_num_threads()`` > 1 and enough edges, contiguous ranges of edges run in that
    many threads (ctypes releases the GIL during the call); every thread but the first
    accumulates into its own zeroed copy of the ``"sum"`` outputs, added at the end in thread
    order (results do not depend on scheduling)."""
    bl, comp, wid, st, R, m_out = _layout(conv)
    e = i.shape[0]
    if e == 0:
        return
    i, j = i.to(torch.int64).contiguous(), j.to(torch.int64).contiguous()
    wmap = None if wmap is None else wmap.to(torch.int64).contiguous()
    _check(conv, e, n_nodes, i, j, wmap, args, st, m_out)
    nt = max(1, min(torch.get_num_threads(), e // MIN_EDGES_PER_THREAD))
    bounds = [e * k // nt for k in range(nt + 1)]
    metas = [torch.tensor([b - a, n_nodes, conv.channels, conv.n_paths, len(conv.blocks), st, R,
                           conv.m_in, m_out], dtype=torch.int64) for a, b in zip(bounds[:-1], bounds[1:])]
    private = [[t if k == 0 or kind != "sum" or t is None else torch.zeros_like(t) for t, kind, _ in args]
               for k in range(nt)]
    lib_fn = getattr(_LIBRARY.get(), fn)

    def run(k):
        a = bounds[k]
        ptrs = [_ptr(metas[k]), _ptr(bl), _ptr(comp), _ptr(wid), _ptr(i, a), _ptr(j, a),
                None if wmap is None else _ptr(wmap, a)]
        ptrs += [_ptr(t, a * (t.numel() // e) if kind == "edge" and t is not None else 0)
                 for t, (_, kind, _) in zip(private[k], args)]
        return lib_fn(*ptrs)
    rcs = [run(0)] if nt == 1 else list(_pool(nt).map(run, range(nt)))
    if any(rcs):
        raise MemoryError("cgkit.nn.conv_kernel: could not allocate the per-edge buffer")
    for k in range(1, nt):
        for (t, kind, _), u in zip(args, private[k]):
            if kind == "sum" and t is not None:
                t.add_(u)


def _w_kind(wmap, shared: str = "read") -> str:
    """Radial weights (and their gradient): one row per edge without ``wmap``, else shared rows."""
    return "edge" if wmap is None else shared


def forward(conv, i, j, wmap, n_nodes, T, x, w, out):
    """out (M_out·N, C), zero on entry, += ∂Φ/∂G; T, x, w contiguous."""
    _run(f"conv_fwd_{_SUFFIX[x.dtype]}", conv, i, j, wmap, n_nodes,
         [(T, "edge", "T"), (x, "read", "x"), (w, _w_kind(wmap), "w"), (out, "sum", "G")])


def grad(conv, i, j, wmap, n_nodes, G, T, x, w, gT, gx, gw):
    """gT (E, ST) = ∂Φ/∂T; gx (M_in·N, C) += ∂Φ/∂x; gw += ∂Φ/∂w (each may be None; gx, gw zero
    on entry)."""
    _run(f"conv_grad_{_SUFFIX[x.dtype]}", conv, i, j, wmap, n_nodes,
         [(G, "read", "G"), (T, "edge", "T"), (x, "read", "x"), (w, _w_kind(wmap), "w"),
          (gT, "edge", "T"), (gx, "sum", "x"), (gw, _w_kind(wmap, "sum"), "w")])


def gradgrad(conv, i, j, wmap, n_nodes, G, T, x, w, HT, Hx, Hw, gG, gT, gx, gw):
    """As :func:`cgkit.nn.conv._gradgrad`; outputs zero on entry (gT: every entry written where
    H_x or H_w is given)."""
    _run(f"conv_gradgrad_{_SUFFIX[x.dtype]}", conv, i, j, wmap, n_nodes,
         [(G, "read", "G"), (T, "edge", "T"), (x, "read", "x"), (w, _w_kind(wmap), "w"),
          (HT, "edge", "T"), (Hx, "read", "x"), (Hw, _w_kind(wmap), "w"), (gG, "sum", "G"),
          (gT, "edge", "T"), (gx, "sum", "x"), (gw, _w_kind(wmap, "sum"), "w")])
