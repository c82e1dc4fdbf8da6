"""The ENNP edge convolution as autograd Functions with hand-written first and second derivatives.

The convolution of :class:`cgkit.nn.model._EdgeConv` (component layout) is the multilinear form

    Φ(G, T, x, w) = Σ_{e, k, r, c} G[k, i_e, c] · T[e, k, r] · x[a_r, j_e, c] · w[e, p_r, c]

of four arguments: ``G`` (M_out, N, C) a weight on the output (the incoming gradient),
``T`` (E, Σ_o d3_o·D_o) the per-edge Clebsch–Gordan couplings ``T = Y · CG`` (one (d3, D)
block per output irrep o, k ranges over that block's components, r over its D rows),
``x`` (M_in, N, C) node features in the component layout (row r reads component a_r of the
sender j_e) and ``w`` (E, P, C) the per-edge, per-channel radial weights (row r belongs to
path p_r; or (U, P, C) shared by the two edges of a reverse pair, see ``wmap``). The
messages scattered to the receivers are ``∂Φ/∂G``; their gradients are ``∂Φ/∂T``,
``∂Φ/∂x`` and ``∂Φ/∂w`` evaluated with ``G`` = the incoming gradient. Because Φ is linear
in each argument, the second derivatives are again partial derivatives of Φ with one slot
replaced by an incoming gradient. So three hand-written kernels cover everything forces
(one backward) and the parameter gradients of a force loss (a double backward) need:
:func:`_forward` (``∂Φ/∂G``), :func:`_grad` (the three first partials in one pass, sharing
the gathered rows) and :func:`_gradgrad` (all second-order terms in one pass). No autograd
graph of the per-path products is ever built; a third derivative raises (nothing in cgkit
needs one).

The three kernels run in C (:mod:`cgkit.nn.conv_kernel`: one loop over edges, each edge's
rows in a small buffer, 1.9x faster than the PyTorch form on a molecule training step and
1.6-1.9x on Si512) for plain CPU tensors; the PyTorch form below serves the rest (vmap-batched
Hessian rows, machines without a C compiler, ``USE_COMPILED = False``) and is what the compiled
kernels are tested against. The autograd Functions compute only the gradients the running
backward pass will use (:func:`_needed`).

In the PyTorch form each call gathers the rows it needs, applies the weights and does one
batched matmul per output irrep, over chunks of at most :data:`CHUNK_ELEMENTS` elements of the (E, R, C)
intermediates so that they stay in cache and no large temporary is allocated (and
page-faulted) per call (2**18 elements measured fastest on molecules and Si512; 4x larger
chunks are 15-30 % slower). Batched matmuls with a size-1 dimension (the blocks of scalar
outputs) are broadcast products: PyTorch's CPU ``bmm`` is 3-5x slower on them. Results
equal the composed autograd form (:meth:`_EdgeConv.forward_components` with
``_CONV_FUNCTION = False``) to rounding (tests/nn/test_conv_autograd.py: 1e-10 relative in
float64 for messages, energies, forces, stress, Hessian-vector products, Hessians and
parameter gradients of a force loss; gradcheck and gradgradcheck).
"""
from __future__ import annotations

import torch

from . import conv_kernel

__all__ = ["edge_convolution", "CHUNK_ELEMENTS"]

#: largest (E_chunk, R, C) intermediate (elements) per chunk of edges
CHUNK_ELEMENTS = 2**18

#: run the three kernels in C (:mod:`cgkit.nn.conv_kernel`) where it is built; False: the
#: PyTorch form below (the reference the compiled kernels are tested against)
USE_COMPILED = True


def _compiled(*tensors) -> bool:
    return USE_COMPILED and conv_kernel.usable(*tensors)


class _Chunk:
    """The rows one chunk of edges [a, b) reads: gathered lazily and cached."""

    def __init__(self, conv, i, j, wmap, n_nodes, a, b):
        self.conv, self.n, self.a, self.b, self.ec = conv, n_nodes, a, b, b - a
        self.i, self.j = i[a:b], j[a:b]
        self.wmap = None if wmap is None else wmap[a:b]
        self._rows = self._grows = self._wrows = None

    @property
    def rows(self):  # (ec·R,) rows of the (M_in·N, C) node features read by the chunk
        if self._rows is None:
            self._rows = (self.conv.comp_idx * self.n + self.j.unsqueeze(1)).reshape(-1)
        return self._rows

    @property
    def grows(self):  # (ec·M_out,) rows of the (M_out·N, C) output written by the chunk
        if self._grows is None:
            m_out = sum(self.conv.out_dims)
            self._grows = (torch.arange(m_out, device=self.i.device) * self.n
                           + self.i.unsqueeze(1)).reshape(-1)
        return self._grows

    def xe(self, x):  # (ec, R, C) sender rows of node features x (M_in, N, C)
        C = self.conv.channels
        return x.reshape(-1, C).index_select(0, self.rows).view(self.ec, -1, C)

    @property
    def wrows(self):  # (ec·R,) rows of the (U·P, C) radial weights read by the chunk
        if self._wrows is None:
            self._wrows = (self.wmap.unsqueeze(1) * self.conv.n_paths + self.conv.wid).reshape(-1)
        return self._wrows

    def we(self, w):  # (ec, R, C) radial weights w (E or U, P, C) of every row's path
        if self.wmap is None:
            return w[self.a:self.b].index_select(1, self.conv.wid)
        C = self.conv.channels
        return w.reshape(-1, C).index_select(0, self.wrows).view(self.ec, -1, C)

    def add_w(self, gw, u):  # gw (E or U, P, C) += u (ec, R, C) summed over each path's rows
        if self.wmap is None:
            gw[self.a:self.b].index_add_(1, self.conv.wid, u)
        else:
            gw.view(-1, self.conv.channels).index_add_(0, self.wrows, u.reshape(-1, self.conv.channels))

    def gm(self, G):  # (ec, M_out, C) receiver rows of G (M_out, N, C), split per output irrep
        C = self.conv.channels
        g = G.reshape(-1, C).index_select(0, self.grows).view(self.ec, -1, C)
        return g.split(self.conv.out_dims, dim=1) if len(self.conv.blocks) > 1 else [g]

    def ts(self, T):  # per output irrep o the (ec, d3, D) couplings
        return [t.view(self.ec, d3, D) for t, (d3, D)
                in zip(T[self.a:self.b].split(self.conv.t_sizes, dim=1), self.conv.blocks)]

    def split(self, v):  # (ec, R, C) → per output irrep (ec, D, C)
        return v.split(self.conv.d_sizes, dim=1) if len(self.conv.blocks) > 1 else [v]


def _cat(parts, dim=1):
    return torch.cat(parts, dim=dim) if len(parts) > 1 else parts[0]


def _chunks(conv, i, j, wmap, n_nodes):
    e = i.shape[0]
    step = max(1, CHUNK_ELEMENTS // max(1, conv.comp_idx.numel() * conv.channels))
    for a in range(0, e, step):
        yield _Chunk(conv, i, j, wmap, n_nodes, a, min(a + step, e))


def _bmm(a, b):
    """Batched matmul (B, m, k) @ (B, k, n); a size-1 inner or outer dimension as a broadcast
    product (PyTorch's CPU bmm takes a slow per-element kernel for such tiny matrices: the
    scalar-output blocks are 3-5x faster this way)."""
    if a.shape[2] == 1:
        return a * b
    if a.shape[1] == 1:
        return (a.transpose(1, 2) * b).sum(1, keepdim=True)
    if b.shape[2] == 1:
        return (a * b.transpose(1, 2)).sum(2, keepdim=True)
    return torch.bmm(a, b)


def _tv(ts, vs):
    """Σ_r T[e, k, r] v[e, r, c] per output irrep → (ec, M_out, C)."""
    return _cat([_bmm(t, v) for t, v in zip(ts, vs)])


def _ttg(ts, gs):
    """Σ_k T[e, k, r] g[e, k, c] → (ec, R, C)."""
    return _cat([_bmm(t.transpose(1, 2), g) for t, g in zip(ts, gs)])


def _gv(gs, vs, ec):
    """Σ_c g[e, k, c] v[e, r, c] per output irrep → (ec, Σ d3·D) in the layout of T."""
    return _cat([_bmm(g, v.transpose(1, 2)).reshape(ec, -1) for g, v in zip(gs, vs)])


def _new(conv, ref, n_nodes, e, which, n_w):
    C = conv.channels
    if which == "G":
        return ref.new_zeros(sum(conv.out_dims) * n_nodes, C)
    if which == "T":
        return ref.new_zeros(e, sum(conv.t_sizes))
    if which == "x":
        return ref.new_zeros(conv.m_in * n_nodes, C)
    return ref.new_zeros(n_w, conv.n_paths, C)


def _forward(conv, i, j, wmap, n_nodes, T, x, w):
    """∂Φ/∂G: the messages scattered to the receivers, (M_out, N, C)."""
    out = _new(conv, x, n_nodes, i.shape[0], "G", w.shape[0])
    if _compiled(T, x, w):
        conv_kernel.forward(conv, i, j, wmap, n_nodes, T, x, w, out)
        return out.view(-1, n_nodes, conv.channels)
    for ch in _chunks(conv, i, j, wmap, n_nodes):
        m = _tv(ch.ts(T), ch.split(ch.xe(x) * ch.we(w)))
        out.index_add_(0, ch.grows, m.reshape(-1, conv.channels))
    return out.view(-1, n_nodes, conv.channels)


def _grad(conv, i, j, wmap, n_nodes, G, T, x, w, need):
    """(∂Φ/∂T, ∂Φ/∂x, ∂Φ/∂w) at (G, T, x, w); entries not in ``need`` are None."""
    e, C = i.shape[0], conv.channels
    compiled = _compiled(G, T, x, w)
    gx, gw = (_new(conv, G, n_nodes, e, s, w.shape[0]) if s in need else None for s in "xw")
    gT = None
    if "T" in need:  # the compiled kernel writes every entry: no zero fill
        gT = G.new_empty(e, sum(conv.t_sizes)) if compiled else _new(conv, G, n_nodes, e, "T", w.shape[0])
    if compiled:
        conv_kernel.grad(conv, i, j, wmap, n_nodes, G, T, x, w, gT, gx, gw)
        return (gT, None if gx is None else gx.view(-1, n_nodes, C), gw)
    for ch in _chunks(conv, i, j, wmap, n_nodes):
        gms = ch.gm(G)
        xe = ch.xe(x) if ("T" in need or "w" in need) else None
        we = ch.we(w) if ("T" in need or "x" in need) else None
        if gT is not None:
            gT[ch.a:ch.b] = _gv(gms, ch.split(xe * we), ch.ec)
        if gx is not None or gw is not None:
            v = _ttg(ch.ts(T), gms)                                                # (ec, R, C)
            if gx is not None:
                gx.index_add_(0, ch.rows, (v * we).reshape(-1, C))
            if gw is not None:
                ch.add_w(gw, v * xe)
    return (gT, None if gx is None else gx.view(-1, n_nodes, C), gw)


def _gradgrad(conv, i, j, wmap, n_nodes, G, T, x, w, HT, Hx, Hw, need):
    """Gradients of ⟨HT, ∂Φ/∂T⟩ + ⟨Hx, ∂Φ/∂x⟩ + ⟨Hw, ∂Φ/∂w⟩ (any H may be None) with respect
    to (G, T, x, w); entries not in ``need`` are None. By multilinearity every term is a
    partial derivative of Φ with one slot replaced by an H."""
    e, C = i.shape[0], conv.channels
    gG, gT, gx, gw = (_new(conv, G, n_nodes, e, s, w.shape[0]) if s in need else None for s in "GTxw")
    if _compiled(G, T, x, w, HT, Hx, Hw):
        conv_kernel.gradgrad(conv, i, j, wmap, n_nodes, G, T, x, w, HT, Hx, Hw, gG, gT, gx, gw)
        return (gG if gG is None else gG.view(-1, n_nodes, C), gT,
                gx if gx is None else gx.view(-1, n_nodes, C), gw)
    for ch in _chunks(conv, i, j, wmap, n_nodes):
        ts = ch.ts(T)
        hts = ch.ts(HT) if HT is not None else None
        xe, we = ch.xe(x), ch.we(w)
        hxe = ch.xe(Hx) if Hx is not None else None
        hwe = ch.we(Hw) if Hw is not None else None
        # s = Hx_j ∘ w + x_j ∘ Hw: the part of x_j ∘ w varied by Hx and Hw
        s = None
        if hxe is not None:
            s = hxe * we
        if hwe is not None:
            s = xe * hwe if s is None else torch.addcmul(s, xe, hwe)
        if gG is not None:
            m = _tv(ts, ch.split(s)) if s is not None else None
            if hts is not None:
                mt = _tv(hts, ch.split(xe * we))
                m = mt if m is None else m + mt
            if m is not None:
                gG.index_add_(0, ch.grows, m.reshape(-1, C))
        if gT is None and gx is None and gw is None:
            continue
        gms = ch.gm(G)
        if gT is not None and s is not None:
            gT[ch.a:ch.b] = _gv(gms, ch.split(s), ch.ec)
        v = _ttg(ts, gms) if (hwe is not None or hxe is not None) else None       # T^T gm
        hv = _ttg(hts, gms) if hts is not None else None                          # HT^T gm
        if gx is not None:
            u = None
            if hv is not None:
                u = hv * we
            if hwe is not None:
                u = v * hwe if u is None else torch.addcmul(u, v, hwe)
            if u is not None:
                gx.index_add_(0, ch.rows, u.reshape(-1, C))
        if gw is not None:
            u = None
            if hv is not None:
                u = hv * xe
            if hxe is not None:
                u = v * hxe if u is None else torch.addcmul(u, v, hxe)
            if u is not None:
                ch.add_w(gw, u)
    return (gG if gG is None else gG.view(-1, n_nodes, C), gT,
            gx if gx is None else gx.view(-1, n_nodes, C), gw)


def _needed(flags, tensors, names):
    """The names of the inputs whose gradient the running backward pass will use: those that
    require a gradient (``flags``: ``ctx.needs_input_grad``) and whose producing node the
    autograd engine is going to execute. A training step that asks only for the parameters'
    gradients (``loss.backward(inputs=params)``) never runs the backward of the per-edge
    couplings T = Y·CG, which depend on the positions only: their gradient (one batched matmul
    per output irrep and chunk) is then not computed at all."""
    out = []
    for name, flag, t in zip(names, flags, tensors):
        if not flag:
            continue
        node = t.grad_fn
        if node is not None:
            try:
                if not torch._C._will_engine_execute_node(node):
                    continue
            except RuntimeError:  # not inside a pass that knows (conservative: compute it)
                pass
        out.append(name)
    return "".join(out)


class _Conv(torch.autograd.Function):
    """messages = ∂Φ/∂G (T, x, w); backward: :class:`_ConvGrad`."""

    @staticmethod
    def forward(ctx, conv, i, j, wmap, n_nodes, T, x, w):
        ctx.conv, ctx.n_nodes, ctx.wmap = conv, n_nodes, wmap
        ctx.save_for_backward(i, j, T, x, w)
        return _forward(conv, i, j, wmap, n_nodes, T, x, w)

    @staticmethod
    def backward(ctx, G):
        i, j, T, x, w = ctx.saved_tensors
        need = _needed(ctx.needs_input_grad[5:], (T, x, w), "Txw")
        out = _ConvGrad.apply(ctx.conv, i, j, ctx.wmap, ctx.n_nodes, need, G, T, x, w)
        return (None, None, None, None, None, *out)


class _ConvGrad(torch.autograd.Function):
    """(∂Φ/∂T, ∂Φ/∂x, ∂Φ/∂w) (G, T, x, w); backward: :func:`_gradgrad` (second derivatives
    are what forces-in-the-loss training, Hessians and Hessian-vector products need; a third
    derivative through it raises instead of returning a wrong result)."""

    @staticmethod
    def forward(ctx, conv, i, j, wmap, n_nodes, need, G, T, x, w):
        ctx.conv, ctx.n_nodes, ctx.wmap = conv, n_nodes, wmap
        ctx.save_for_backward(i, j, G, T, x, w)
        gT, gx, gw = _grad(conv, i, j, wmap, n_nodes, G.contiguous(), T, x, w, need)
        return gT, gx, gw

    @staticmethod
    def backward(ctx, HT, Hx, Hw):
        i, j, G, T, x, w = ctx.saved_tensors
        need = _needed(ctx.needs_input_grad[6:], (G, T, x, w), "GTxw")
        with torch.no_grad():
            out = _gradgrad(ctx.conv, i, j, ctx.wmap, ctx.n_nodes, G.contiguous(), T, x, w,
                            None if HT is None else HT.contiguous(),
                            None if Hx is None else Hx.contiguous(),
                            None if Hw is None else Hw.contiguous(), need)
        live = [t for t in (G, T, x, w, HT, Hx, Hw) if t is not None and t.requires_grad]
        if torch.is_grad_enabled() and live:  # a graph is being built: refuse its backward
            outs = [o for o in out if o is not None]
            res = iter(_NoThirdDerivative.apply(len(outs), *outs, *live))
            out = tuple(None if o is None else next(res) for o in out)
        return (None, None, None, None, None, None, *out)


class _NoThirdDerivative(torch.autograd.Function):
    """Identity on the first ``n`` tensors, connected to the rest; its backward raises."""

    @staticmethod
    def forward(ctx, n, *tensors):
        return tuple(t.view_as(t) for t in tensors[:n])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("cgkit.nn.conv: third derivatives of the ENNP edge convolution are not "
                           "implemented (energies, forces, stress, Hessians and force-loss gradients "
                           "need at most two); set cgkit.nn.model._CONV_FUNCTION = False for more")


def edge_convolution(conv, x: torch.Tensor, T: torch.Tensor, w: torch.Tensor, i: torch.Tensor,
                     j: torch.Tensor, wmap: torch.Tensor | None = None) -> torch.Tensor:
    """Messages of ``conv`` (an ``_EdgeConv``) scattered to the receivers ``i``.

    x (M_in, N, C) node features (component layout); T (E, Σ d3·D) = ``y @ conv.cg``;
    w (E, P, C) radial weights in ``conv.order``, or (U, P, C) with ``wmap`` (E,): edge e
    uses row wmap[e] (reverse edges share their radial weights); i, j (E,) receivers and
    senders. Returns (M_out, N, C). Differentiable twice in x, T and w."""
    return _Conv.apply(conv, i, j, wmap, x.shape[1], T.contiguous(), x.contiguous(), w.contiguous())
