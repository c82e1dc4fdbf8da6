"""The E(3)-equivariant neural-network potential (ENNP), built on e3nn.

Architecture (NequIP-style message passing, optional MACE-style body-order products):

* species embedding → ``channels`` even scalars per atom;
* edge attributes: spherical harmonics ``Y^l(r̂_ij)`` up to ``l_max`` times a C² polynomial
  envelope (computed once per call and shared by all layers, so every message vanishes
  smoothly at ``r_cut``) and a radial basis of Bessel functions (learnable frequencies);
* ``n_layers`` interaction blocks: linear → edge convolution (:class:`_EdgeConv`): every
  Clebsch–Gordan path of neighbour features with ``Y(r̂_ij)`` (``uvu``: channel-wise),
  weighted per edge and channel by a radial MLP, paths into the same irrep summed on the
  edge → scatter-sum over neighbours / sqrt(avg_num_neighbors) → linear → optional products
  of the aggregated features with themselves (``correlation`` − 1 channel-wise CG products:
  body order ``correlation + 1`` per layer, as in MACE) → linear + species self-connection
  → gated nonlinearity (SiLU on even scalars, tanh on odd scalars, sigmoid gates on l > 0)
  → residual;
* the last block outputs scalars only (nothing else reaches the energy readout; with
  ``correlation = 1`` its messages are then computed for l = 0 only — NequIP does the same),
  unless an equivariant head needs its l > 0 features;
* readout: MLP on the l = 0 even channel → atomic energy ``E_i = scale · ε_i + shift[species_i]``.

Speed (CPU): no Python loop over atoms or edges; Clebsch–Gordan coefficients (with path
normalisation) are buffers built once in float64 and cast with the model; per-edge tensors
are channel-last so broadcasts run along contiguous memory. Between blocks node features are
kept in a component layout (M, N, C) (component m of every irrep, node, channel) whenever
every multiplicity is a multiple of the channel count (all presets; ``correlation > 1`` and
uneven per-l channel lists use the e3nn layout): every e3nn ``Linear`` and the species
self-connection is then one batched GEMM over components with weights gathered from the
e3nn weight vectors (same parameters, same results), the gate a few elementwise ops, and
the edge convolution a handful of fused ops (:meth:`_EdgeConv.forward_components`) — about
4× fewer tensor operations per call than composing e3nn modules, which is what dominates a
small molecule. The convolution runs as autograd Functions with hand-written first and
second derivatives (:mod:`cgkit.nn.conv`), each one C loop over edges
(:mod:`cgkit.nn.conv_kernel`; a chunked PyTorch form without a compiler), and the radial MLPs
once per pair of reverse edges: forces and the double backward of a force loss in training never
rebuild the per-path product graph. ``benchmarks/ennp_speed.py`` times it beside MACE and
NequIP (docs/ennp_speed.md).

``parity=True`` gives an O(3) model (features carry parity, the energy is invariant under
reflections); ``parity=False`` an SO(3) model (all features even: cross products are
allowed, so it can tell enantiomers apart).

Optional equivariant per-atom heads: ``vector_head`` (l = 1, e.g. dipoles, e·Å) and
``tensor_head`` (l = 2, symmetric traceless 3×3), see :meth:`ENNP.equivariant_outputs`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from e3nn.nn import Gate

from ..data import AtomicGraph
from ..errors import InputError, UnknownSpeciesError
from ..potential import Potential, scatter_sum
from .conv import edge_convolution
from .radial import BesselBasis, PolynomialEnvelope

__all__ = ["ENNP", "PRESETS", "hidden_irreps"]

#: named model sizes (``cgkit model init --preset``)
PRESETS = {
    "small": dict(channels=32, l_max=2, n_layers=2, n_radial=8, radial_hidden=64, radial_layers=2,
                  correlation=1, readout_hidden=16),
    "medium": dict(channels=64, l_max=2, n_layers=3, n_radial=8, radial_hidden=64, radial_layers=2,
                   correlation=2, readout_hidden=32),
}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def hidden_irreps(channels, l_max: int, parity: bool, full_parity: bool = False) -> o3.Irreps:
    """Node-feature irreps: ``channels`` (int, or one int per l) copies of every l ≤ l_max.

    O(3) (``parity``): parity (−1)^l ("0e+1o+2e"), both parities with ``full_parity``;
    SO(3): all even ("0e+1e+2e"). A per-l count of 0 (l ≥ 1) leaves that l out.
    """
    if isinstance(channels, int):
        channels = [channels] * (l_max + 1)
    channels = list(channels)
    if (len(channels) != l_max + 1 or int(channels[0]) < 1
            or any(int(c) < 0 for c in channels)):
        raise InputError(f"channels must be a positive int or one int per l = 0..{l_max} "
                         f"(positive for l = 0, >= 0 above), got {channels}")
    out = []
    for l, c in enumerate(channels):
        if int(c) == 0:
            continue
        if not parity:
            out.append((int(c), (l, 1)))
        else:
            out.append((int(c), (l, (-1) ** l)))
            if full_parity:
                out.append((int(c), (l, -((-1) ** l))))
    return o3.Irreps(out).sort().irreps.simplify()


class _EdgeConv(torch.nn.Module):
    """Edge convolution with scatter-sum: ``A_i = Σ_j Σ_paths w_p(r_ij) ⊙ (x_j ⊗ Y(r̂_ij))_p``.

    Every Clebsch–Gordan path p = (l₁ ⊗ l₂ → l₃) is ``uvu`` (channel-wise, NequIP style) with
    a per-edge, per-channel weight ``w_p`` (E, C) from the radial MLP; paths reaching the same
    output irrep are summed on the edge (the following linear layer mixes channels), so only
    ``C × Σ(2l₃+1)`` numbers per edge are scattered.

    Implementation — no Python loop over atoms, edges or paths: the paths are sorted by output
    irrep o; one gather builds, for every edge, the rows of ``x_j`` every path needs (E, R, C)
    (R = Σ_p d₁), one product applies the per-path radial weights; the channel-independent
    couplings of all paths into o, ``T_o = Y · CG_o`` (E, d₃, D_o) (CG and path normalisation
    in one constant matrix), come from one GEMM, and one batched matmul per output irrep
    sums all its paths: ``m_o = T_o · (x_j w)_o``. Edge tensors are channel-last (E, d, C):
    broadcasts and reductions run along the contiguous channel axis.

    Shapes: ``x`` (N, C·M_in) in e3nn layout of :attr:`irreps_in`; ``y`` (E, M_sh) spherical
    harmonics (already multiplied by the cutoff envelope); ``weights``: one (E, C) tensor per
    path (or (E, P·C) in :attr:`order`); returns (N, C·M_out) in e3nn layout of
    :attr:`irreps_out`. :meth:`forward_components` takes and returns the component layout.
    """

    def __init__(self, in_irs, sh_irs, targets, channels: int):
        super().__init__()
        C = int(channels)
        self.channels = C
        in_irs, sh_irs = list(in_irs), list(sh_irs)
        paths = [(a, b, ir3) for a, ir1 in enumerate(in_irs) for b, ir2 in enumerate(sh_irs)
                 for ir3 in ir1 * ir2 if ir3 in targets]
        if not paths:
            raise InputError("no Clebsch–Gordan path reaches the hidden irreps; raise l_max")
        out_irs = [ir for _, ir in o3.Irreps([(1, ir) for ir in {p[2] for p in paths}]).sort().irreps]
        self.irreps_in = o3.Irreps([(C, ir) for ir in in_irs])
        self.irreps_out = o3.Irreps([(C, ir) for ir in out_irs])
        self.n_paths = len(paths)
        self.sh_dims = [ir.dim for ir in sh_irs]
        in_off = [0]
        for ir in in_irs:
            in_off.append(in_off[-1] + C * ir.dim)
        self.in_slices = [(in_off[a], ir.dim) for a, ir in enumerate(in_irs)]
        fan_in = {ir: sum(1 for p in paths if p[2] == ir) for ir in out_irs}
        self.paths = []  # (input irrep index, sh irrep index, output irrep index, d1, d3)
        w3js = []
        for a, b, ir3 in paths:
            ir1, ir2 = in_irs[a], sh_irs[b]
            # component normalisation: ‖CG‖ = 1, × sqrt(2l₃+1) → unit-variance outputs;
            # ÷ sqrt(number of paths into ir₃) → fan-in normalisation
            alpha = math.sqrt(ir3.dim / fan_in[ir3])
            w3js.append(alpha * o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64))  # (d1, d2, d3)
            self.register_buffer(f"cg{len(self.paths)}", w3js[-1].permute(1, 0, 2).reshape(ir2.dim, -1),
                                 persistent=False)
            self.paths.append((a, b, out_irs.index(ir3), ir1.dim, ir3.dim))
        self.group_sizes = [C] * len(paths)
        self.out_dims = [ir.dim for ir in out_irs]
        # fused layout: paths sorted by output irrep; rows R = Σ_p d1_p of the weighted gathered
        # input ("xw"), one block of D_o rows per output irrep o
        self.order = sorted(range(len(paths)), key=lambda k: (self.paths[k][2], self.paths[k][0],
                                                               self.paths[k][1]))
        rank = {k: r for r, k in enumerate(self.order)}
        in_comp = [0]
        for ir in in_irs:
            in_comp.append(in_comp[-1] + ir.dim)
        sh_off = [0]
        for ir in sh_irs:
            sh_off.append(sh_off[-1] + ir.dim)
        comp_idx, wid, cgs, self.blocks = [], [], [], []
        for o, d3 in enumerate(self.out_dims):
            ks = [k for k in self.order if self.paths[k][2] == o]
            D = sum(self.paths[k][3] for k in ks)
            cg = torch.zeros(sh_off[-1], d3, D, dtype=torch.float64)
            q = 0
            for k in ks:
                a, b, _, d1, _ = self.paths[k]
                cg[sh_off[b]:sh_off[b + 1], :, q:q + d1] = w3js[k].permute(1, 2, 0)  # (d2, d3, d1)
                comp_idx += [in_comp[a] + m for m in range(d1)]
                wid += [rank[k]] * d1
                q += d1
            cgs.append(cg.reshape(sh_off[-1], d3 * D))
            self.blocks.append((d3, D))
        # T_o = Y · CG_o: per edge the (d3, D_o) coupling of all paths into o (channel-independent)
        self.register_buffer("cg", torch.cat(cgs, dim=1), persistent=False)
        self.register_buffer("comp_idx", torch.tensor(comp_idx, dtype=torch.long), persistent=False)
        self.register_buffer("wid", torch.tensor(wid, dtype=torch.long), persistent=False)
        self.t_sizes = [d3 * D for d3, D in self.blocks]
        self.d_sizes = [D for _, D in self.blocks]
        self.m_in = in_comp[-1]

    def forward_components(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                           i: torch.Tensor, j: torch.Tensor, wmap: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`forward` in the component layout: x (M_in, N, C) → (M_out, N, C);
        ``weights`` (E, P·C) in :attr:`order`, or (U, P·C) with ``wmap`` (E,): edge e uses
        row wmap[e] (autograd-Function convolution only)."""
        n_nodes, e, C = x.shape[1], y.shape[0], self.channels
        if _use_conv_function():
            # one autograd Function whose backward is made of itself (cgkit.nn.conv)
            return edge_convolution(self, x, y @ self.cg, weights.view(-1, self.n_paths, C), i, j, wmap)
        if wmap is not None:
            weights = weights.index_select(0, wmap)
        rows = j.unsqueeze(1) + n_nodes * self.comp_idx                         # (E, R)
        xe = x.reshape(-1, C).index_select(0, rows.reshape(-1)).view(e, self.comp_idx.numel(), C)
        xw = xe * weights.view(e, self.n_paths, C).index_select(1, self.wid)    # (E, R, C)
        ts = (y @ self.cg).split(self.t_sizes, dim=1)
        xws = xw.split(self.d_sizes, dim=1) if len(self.d_sizes) > 1 else [xw]
        msgs = [torch.bmm(t.view(e, d3, D), xo) for t, xo, (d3, D) in zip(ts, xws, self.blocks)]
        m = torch.cat(msgs, dim=1) if len(msgs) > 1 else msgs[0]                 # (E, M_out, C)
        m_out = m.shape[1]
        dest = i.unsqueeze(1) + n_nodes * torch.arange(m_out, device=i.device)
        out = m.new_zeros(m_out * n_nodes, C).index_add(0, dest.reshape(-1), m.reshape(-1, C))
        return out.view(m_out, n_nodes, C)

    def forward(self, x: torch.Tensor, y: torch.Tensor, weights, i: torch.Tensor,
                j: torch.Tensor) -> torch.Tensor:
        """Per-path form (e3nn layout; ``weights`` one (E, C) tensor per path in :attr:`paths`
        order): per path one GEMM ``T_p = Y_l₂ · CG_p`` and one ``bmm``/``baddbmm`` adding
        ``T_pᵀ (x_j w_p)`` to the message of l₃. Its intermediates are (E, d, C) per path, so
        it is the cheaper form for many edges (Si512: 1.5× faster than the fused form, whose
        (E, R, C) intermediates of ~200 MB cost page faults and bandwidth); the fused form
        wins where the ~30 paths' operation overhead dominates (molecules, small batches)."""
        n_nodes, e, C = x.shape[0], y.shape[0], self.channels
        ys = y.split(self.sh_dims, dim=1)
        xjs = [x[:, s:s + C * d].reshape(n_nodes, C, d).transpose(1, 2).contiguous().index_select(0, j)
               for s, d in self.in_slices]                                      # (E, d1, C) each
        msgs: list = [None] * len(self.out_dims)
        for k, ((a, b, o, d1, d3), w) in enumerate(zip(self.paths, weights)):
            T = (ys[b] @ getattr(self, f"cg{k}")).reshape(e, d1, d3).transpose(1, 2)  # (E, d3, d1)
            xw = xjs[a] * w.unsqueeze(1)                                        # (E, d1, C)
            msgs[o] = torch.bmm(T, xw) if msgs[o] is None else torch.baddbmm(msgs[o], T, xw)
        return torch.cat([scatter_sum(m, i, n_nodes).transpose(1, 2).reshape(n_nodes, C * d)
                          for m, d in zip(msgs, self.out_dims)], dim=1)


class _RadialMLP(torch.nn.Module):
    """(E, n_radial) → per-edge weights per output block: SiLU MLP without biases (so the
    weights vanish with the enveloped basis), e3nn's N(0, 1)/sqrt(fan-in) convention; the
    last layer is one matrix per output block (parameter ``out.k`` for path k)."""

    def __init__(self, n_in: int, hidden: int, n_layers: int, out_sizes, order=None):
        super().__init__()
        self.order = list(range(len(out_sizes))) if order is None else list(order)
        dims = [n_in] + [hidden] * n_layers
        self.hidden = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(a, b)) for a, b in zip(dims[:-1], dims[1:])])
        self.out = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(dims[-1], s)) for s in out_sizes])
        self.act = normalize2mom(torch.nn.functional.silu)
        # 1/sqrt(fan-in) as Python floats fixed here: the same numbers as w.shape[0] ** -0.5, but
        # a traced export (cgkit model export) would compute those from a traced size in float32
        self.norms = [float(d) ** -0.5 for d in dims]

    def forward(self, x: torch.Tensor, fused: bool = False):
        """``fused``: one (E, Σ sizes) tensor, blocks in ``order`` (one GEMM); otherwise a
        list of (E, size) tensors in block order (one GEMM per block: no slicing of per-edge
        tensors, whose backward would allocate and fill full-size zero tensors)."""
        for w, c in zip(self.hidden, self.norms):
            x = self.act(x @ (w * c))
        if not fused:
            return [x @ (w * self.norms[-1]) for w in self.out]
        w = torch.cat([self.out[k] for k in self.order], dim=1) if len(self.out) > 1 else self.out[0]
        return x @ (w * self.norms[-1])


class _ChannelProduct(torch.nn.Module):
    """Channel-wise (``uuu``) Clebsch–Gordan products of two node-feature vectors with the same
    irreps, one learnable weight per path and channel: the same map as e3nn's
    ``TensorProduct(irreps, irreps, irreps_out, [(i, j, k, "uuu", True), ...])`` with
    internal weights (tested against it), computed per irrep pair as one outer product
    (N, C, d₁·d₂) and one GEMM with all CG coefficients of the pair's paths.

    ``irreps``: input irreps (pairs of equal multiplicity are combined); ``targets``: allowed
    output irreps. Output: (N, irreps_out.dim), one block (mul, ir_out) per path, in e3nn order.
    """

    def __init__(self, irreps: o3.Irreps, targets):
        super().__init__()
        offs = [0]
        for mul, ir in irreps:
            offs.append(offs[-1] + mul * ir.dim)
        pmid, self.pairs = [], []
        for i, (m1, ir1) in enumerate(irreps):
            for j, (m2, ir2) in enumerate(irreps):
                if m1 != m2:
                    continue
                outs = [ir for ir in ir1 * ir2 if ir in targets]
                if not outs:
                    continue
                K = sum(ir.dim for ir in outs)
                cg = torch.zeros(ir1.dim, ir2.dim, K, dtype=torch.float64)
                slots, c = [], 0
                for ir3 in outs:
                    # e3nn "component" normalisation of a uuu path: × sqrt(2l₃+1)
                    cg[:, :, c:c + ir3.dim] = math.sqrt(ir3.dim) * o3.wigner_3j(
                        ir1.l, ir2.l, ir3.l, dtype=torch.float64)
                    slots.append((len(pmid), c, ir3.dim))
                    pmid.append((m1, ir3))
                    c += ir3.dim
                self.register_buffer(f"cg{len(self.pairs)}", cg.reshape(ir1.dim * ir2.dim, K),
                                     persistent=False)
                self.pairs.append((offs[i], offs[j], m1, ir1.dim, ir2.dim, slots))
        self.irreps_out = o3.Irreps(pmid)
        self.weight_offsets = [0]
        for mul, _ in pmid:
            self.weight_offsets.append(self.weight_offsets[-1] + mul)
        self.weight = torch.nn.Parameter(torch.randn(self.weight_offsets[-1]))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = a.shape[0]
        outs: list = [None] * (len(self.weight_offsets) - 1)
        ws = self.weight.split([self.weight_offsets[k + 1] - self.weight_offsets[k]
                                for k in range(len(outs))])
        for q, (o1, o2, m, d1, d2, slots) in enumerate(self.pairs):
            x1 = a[:, o1:o1 + m * d1].reshape(n, m, d1, 1)
            x2 = b[:, o2:o2 + m * d2].reshape(n, m, 1, d2)
            z = (x1 * x2).reshape(n, m, d1 * d2) @ getattr(self, f"cg{q}")      # (N, m, K)
            for p, c, d3 in slots:
                outs[p] = (z[:, :, c:c + d3] * ws[p].unsqueeze(-1)).reshape(n, m * d3)
        return torch.cat(outs, dim=1)



#: the fused edge convolution runs as one autograd Function closed under differentiation
#: (:mod:`cgkit.nn.conv`); False: the same ops composed under autograd (the reference)
_CONV_FUNCTION = True


def _use_conv_function() -> bool:
    """The autograd-Function convolution (any graph size); not while tracing an export
    (``torch.jit.trace`` records plain tensor ops only: there the fused ops are composed)."""
    return _CONV_FUNCTION and not torch.jit.is_tracing()


def _reverse_edge_pairs(graph: AtomicGraph, i: torch.Tensor, j: torch.Tensor):
    """Pairs of reverse edges (i, j, s) and (j, i, −s): ``(wmap (E,), first (U,))`` with edge e
    belonging to pair wmap[e] and ``first[u]`` one edge of pair u; ``(None, None)`` when the
    edges are not the graph's own (some dropped) or have no partners to share with.

    Both edges of a pair have bitwise the same length, computed by the same function of the
    positions and cell (r_i − r_j − s·h = −(r_j − r_i + s·h) exactly in floating point), so
    radial features computed for one serve both, gradients included."""
    n = graph.n_atoms
    if i.shape[0] != graph.edge_index.shape[1] or i.shape[0] < 2 or torch.jit.is_tracing():
        return None, None
    s = graph.cell_shifts.to(torch.long)
    smax = int(s.abs().max()) if s.numel() else 0
    m = 2 * smax + 1
    if float(n) * n * m ** 3 > 2.0 ** 62:
        return None, None
    nz = s != 0
    first_nz = torch.where(nz.any(1), nz.to(torch.int8).argmax(1), torch.zeros_like(i))
    lead = s.gather(1, first_nz.unsqueeze(1)).squeeze(1)
    flip = (i > j) | ((i == j) & (lead < 0))
    a, b = torch.where(flip, j, i), torch.where(flip, i, j)
    s = torch.where(flip.unsqueeze(1), -s, s) + smax
    key = (((a * n + b) * m + s[:, 0]) * m + s[:, 1]) * m + s[:, 2]
    uniq, wmap = torch.unique(key, return_inverse=True)
    if uniq.shape[0] > 0.75 * i.shape[0]:
        return None, None
    first = torch.full((uniq.shape[0],), i.shape[0], dtype=torch.long, device=i.device)
    first = first.scatter_reduce(0, wmap, torch.arange(i.shape[0], device=i.device), "amin")
    return wmap, first


#: without the autograd-Function convolution (``_CONV_FUNCTION = False``, and in a traced
#: export): largest (E, R, C) intermediate (elements) for which the fused edge convolution is used;
#: above it the per-path form is faster (measured: the fused form is faster on one 20-atom
#: molecule (1.1M elements), not faster on a batch of 5 (5.5M) and 1.5x slower on Si512 (47M),
#: where its large intermediates cost page faults and memory bandwidth)
_FUSED_MAX_ELEMENTS = 2 * 2**20
#: the component-layout path (see _Interaction._build_fast) is used for graphs whose largest
#: fused-convolution intermediate has at most this many elements, the e3nn-module path above
#: (no measurable gain there, within ±20 % noise of a loaded machine: Si512 and batches of
#: 5 molecules run the same code as before)
_FAST_MAX_ELEMENTS = 2 * 2**20


def _blocks(irreps: o3.Irreps, C: int):
    """Component layout of ``irreps`` in units of ``C`` channels: per irreps block
    (first component, k = mul / C sub-blocks, d); None when a multiplicity is not a multiple of C.

    Node features of the fast path are (M, N, C) tensors: component m of every node and
    channel; a block (k·C)×ir takes k·d components ordered (sub-block, m)."""
    out, m = [], 0
    for mul, ir in irreps:
        if mul % C:
            return None
        out.append((m, mul // C, ir.dim))
        m += mul // C * ir.dim
    return out


def _to_e3nn(h: torch.Tensor, irreps: o3.Irreps, C: int) -> torch.Tensor:
    """(M, N, C) component layout → (N, irreps.dim) e3nn layout (mul-major per block)."""
    n = h.shape[1]
    parts = []
    for m0, k, d in _blocks(irreps, C):
        parts.append(h[m0:m0 + k * d].reshape(k, d, n, C).permute(2, 0, 3, 1).reshape(n, k * C * d))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def _from_e3nn(x: torch.Tensor, irreps: o3.Irreps, C: int) -> torch.Tensor:
    """(N, irreps.dim) e3nn layout → (M, N, C) component layout."""
    n = x.shape[0]
    parts, s = [], 0
    for _, k, d in _blocks(irreps, C):
        parts.append(x[:, s:s + k * C * d].reshape(n, k, C, d).permute(1, 3, 0, 2).reshape(k * d, n, C))
        s += k * C * d
    return torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]


def _linear_plan(instructions, irreps_in, irreps_out, C: int, v: int = 1):
    """Component-level form of an e3nn Linear (``v = 1``; instructions (u, w)) or of a
    FullyConnectedTensorProduct with a one-hot l = 0 second input of ``v`` species
    (instructions uvw (u, v, w)): entries e = (input component, output component, weight
    block (u·v/…, C) gathered from the flat weight vector, factor)."""
    bin_, bout = _blocks(irreps_in, C), _blocks(irreps_out, C)
    m_in, m_out, widx, fac = [], [], [], []
    off = 0
    for ins in instructions:
        i_in = ins.i_in if hasattr(ins, "i_in") else ins.i_in1
        shape = tuple(ins.path_shape)
        u, w = shape[0], shape[-1]
        f = float(ins.path_weight)
        if len(shape) == 3:  # l ⊗ 0e → l, e3nn's Wigner 3j value δ/sqrt(2l+1)
            l = irreps_in[i_in].ir.l
            f *= float(o3.wigner_3j(l, 0, l, dtype=torch.float64)[0, 0, 0])
        s0, ki, d = bin_[i_in]
        t0, ko, _ = bout[ins.i_out]
        for gi in range(ki):
            for go in range(ko):
                # weight rows (input channel a, species s) → flat row (gi·C + a)·v + s
                rows = torch.arange((gi * C) * v, (gi * C + C) * v)
                cols = torch.arange(go * C, go * C + C)
                block = off + rows[:, None] * w + cols[None, :]
                for mm in range(d):
                    m_in.append(s0 + gi * d + mm)
                    m_out.append(t0 + go * d + mm)
                    widx.append(block)
                    fac.append(f)
        off += math.prod(shape)
    return (torch.tensor(m_in, dtype=torch.long), torch.tensor(m_out, dtype=torch.long),
            torch.stack(widx), torch.tensor(fac, dtype=torch.float64))


class _Interaction(torch.nn.Module):
    """One message-passing block (see module docstring). Features in → features out."""

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_hidden: o3.Irreps,
                 n_species: int, n_radial: int, radial_hidden: int, radial_layers: int,
                 correlation: int, irreps_node_out: o3.Irreps | None = None):
        """``irreps_hidden``: irreps of the aggregated messages A (and of the node features);
        ``irreps_node_out``: irreps this block outputs (default ``irreps_hidden``; the last
        block of an energy-only model outputs scalars only — nothing else reaches the readout,
        so the messages of a two-body (correlation 1) last block are computed for 0e only)."""
        super().__init__()
        self.irreps_in = irreps_in
        node_out = irreps_hidden if irreps_node_out is None else irreps_node_out
        if int(correlation) == 1:  # A feeds the node output linearly: only its irreps are needed
            irreps_hidden = node_out
        scalars = o3.Irreps([(m, ir) for m, ir in node_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in node_out if ir.l > 0])
        acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(scalars, acts, gates, [torch.sigmoid] * len(gates), gated)
        irreps_gate_in = self.gate.irreps_in
        self.irreps_out = self.gate.irreps_out

        targets = {ir for _, ir in irreps_hidden}
        channels = max(mul for mul, _ in irreps_hidden)
        in_irs = []
        for _, ir in irreps_in:
            if ir not in in_irs:
                in_irs.append(ir)
        self.conv = _EdgeConv(in_irs, [ir for _, ir in irreps_sh], targets, channels)
        self.linear_up = o3.Linear(irreps_in, self.conv.irreps_in)
        self.radial = _RadialMLP(n_radial, radial_hidden, radial_layers, self.conv.group_sizes,
                                 self.conv.order)
        self.linear_down = o3.Linear(self.conv.irreps_out, irreps_hidden)

        # MACE-style higher body order: A ← A + Linear(A ⊗ A_0) channel-wise, (correlation − 1) times
        self.products = torch.nn.ModuleList()
        self.product_linears = torch.nn.ModuleList()
        for _ in range(max(0, int(correlation) - 1)):
            tp = _ChannelProduct(irreps_hidden, targets)
            self.products.append(tp)
            self.product_linears.append(o3.Linear(tp.irreps_out, irreps_hidden))
        self.linear_out = o3.Linear(irreps_hidden, irreps_gate_in)
        self.self_connection = o3.FullyConnectedTensorProduct(irreps_in, o3.Irreps(f"{n_species}x0e"),
                                                              irreps_gate_in)
        # residual connection on the leading irreps that input and output share
        k = 0
        while (k < min(len(irreps_in), len(self.irreps_out))
               and irreps_in[k] == self.irreps_out[k]):
            k += 1
        self.res_dim = irreps_in[:k].dim if k == len(self.irreps_out) else 0
        self._build_fast(irreps_in, irreps_hidden, irreps_gate_in, scalars, gated, n_species, k)

    def _build_fast(self, irreps_in, irreps_hidden, irreps_gate_in, scalars, gated, n_species, k_res):
        """The component-layout ("fast") path: node features (M, N, C), every e3nn Linear and
        the species self-connection as one batched GEMM over components (weights gathered from
        the e3nn weight vectors, so parameters and results are those of the e3nn modules), the
        gate as a few elementwise ops. Needs every multiplicity to be a multiple of C."""
        C = self.conv.channels
        self.C = C
        irreps_list = [irreps_in, self.conv.irreps_in, self.conv.irreps_out, irreps_hidden,
                       irreps_gate_in, self.irreps_out]
        self.fast = all(_blocks(ir, C) is not None for ir in irreps_list) and not len(self.products)
        if not self.fast:
            return
        # the conv takes/gives the component layout in e3nn irreps order: check it is the same
        for name, lin in (("up", self.linear_up), ("down", self.linear_down), ("out", self.linear_out)):
            mi, mo, wi, f = _linear_plan(lin.instructions, lin.irreps_in, lin.irreps_out, C)
            self._plan_buffers(name, mi, mo, wi, f, _blocks(lin.irreps_in, C), _blocks(lin.irreps_out, C))
        sc = self.self_connection
        mi, mo, wi, f = _linear_plan(sc.instructions, sc.irreps_in1, sc.irreps_out, C, n_species)
        self._plan_buffers("self", mi, mo, wi, f, _blocks(sc.irreps_in1, C), _blocks(sc.irreps_out, C))
        # gate: e3nn's Gate cuts its (sorted) input into scalars, gates and gated irreps
        cut = self.gate.sc.cut
        bl = _blocks(cut.irreps_in, C)
        comps = [[m for q in ins for m in range(bl[q][0], bl[q][0] + bl[q][1] * bl[q][2])]
                 for ins in cut.instructions]
        self.gate_scalars = []
        for q, act in zip(cut.instructions[0], self.gate.act_scalars.acts if len(scalars) else []):
            self.gate_scalars.append((bl[q][0], bl[q][1] * bl[q][2], act))
        self.gate_has_gated = bool(gated.num_irreps)
        if self.gate_has_gated:
            gate_of, kk = [], 0
            for _, k, d in _blocks(gated, C):
                gate_of += [kk + g for g in range(k) for _ in range(d)]
                kk += k
            self.register_buffer("gate_gates", torch.tensor(comps[1], dtype=torch.long), persistent=False)
            self.register_buffer("gate_gated", torch.tensor(comps[2], dtype=torch.long), persistent=False)
            self.register_buffer("gate_of", torch.tensor(gate_of, dtype=torch.long), persistent=False)
            self.gate_act_gates = self.gate.act_gates.acts[0]
        self.res_comps = sum(k * d for _, k, d in _blocks(irreps_in[:k_res], C)) if self.res_dim else 0

    def _plan_buffers(self, name, mi, mo, wi, f, bin_, bout):
        m_in = sum(k * d for _, k, d in bin_)
        m_out = sum(k * d for _, k, d in bout)
        ident_in = len(mi) == m_in and bool((mi == torch.arange(m_in)).all())
        ident_out = len(mo) == m_out and bool((mo == torch.arange(m_out)).all())
        setattr(self, f"_{name}_meta", (None if ident_in else True, None if ident_out else True, m_out))
        self.register_buffer(f"_{name}_min", mi, persistent=False)
        self.register_buffer(f"_{name}_mout", mo, persistent=False)
        self.register_buffer(f"_{name}_widx", wi, persistent=False)
        self.register_buffer(f"_{name}_fac", f.reshape(-1, 1, 1), persistent=False)

    def _lin(self, name: str, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Component-layout linear map ``name`` with e3nn weight vector ``weight``: x (M_in, N, C')."""
        gather, scatter, m_out = getattr(self, f"_{name}_meta")
        widx = getattr(self, f"_{name}_widx")
        W = weight.index_select(0, widx.reshape(-1)).view(widx.shape) * getattr(self, f"_{name}_fac")
        xin = x.index_select(0, getattr(self, f"_{name}_min")) if gather else x
        y = torch.bmm(xin, W)                                                        # (K, N, C)
        if scatter:
            y = y.new_zeros((m_out,) + tuple(y.shape[1:])).index_add(0, getattr(self, f"_{name}_mout"), y)
        return y

    def forward_fast(self, h, onehot, y, radial, i, j, inv_sqrt_neigh, wmap=None):
        """h (M_in, N, C) component layout → (M_out, N, C); ``wmap``: see
        :meth:`_EdgeConv.forward_components`."""
        C = self.C
        n = h.shape[1]
        x = self._lin("up", self.linear_up.weight, h)
        conv = self.conv
        if _use_conv_function() or y.shape[0] * conv.comp_idx.numel() * C <= _FUSED_MAX_ELEMENTS:
            agg = conv.forward_components(x, y, self.radial(radial, fused=True), i, j, wmap)
        else:
            agg = _from_e3nn(conv(_to_e3nn(x, conv.irreps_in, C), y, self.radial(radial), i, j),
                             conv.irreps_out, C)
        agg = agg * inv_sqrt_neigh
        a = self._lin("down", self.linear_down.weight, agg)
        hs = (h.unsqueeze(-1) * onehot.view(1, n, 1, -1)).reshape(h.shape[0], n, -1)
        g = self._lin("out", self.linear_out.weight, a) + self._lin("self", self.self_connection.weight, hs)
        outs = [act(g[m0:m0 + md]) for m0, md, act in self.gate_scalars]
        if self.gate_has_gated:
            gates = self.gate_act_gates(g.index_select(0, self.gate_gates))
            outs.append(g.index_select(0, self.gate_gated) * gates.index_select(0, self.gate_of))
        out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        if self.res_comps:
            out = out + h[:self.res_comps]
        return out

    def forward(self, h, onehot, y, radial, i, j, inv_sqrt_neigh):
        """h (N, irreps_in.dim); y (E, M_sh) enveloped spherical harmonics; radial (E, n_radial)."""
        x = self.linear_up(h)
        agg = self.conv(x, y, self.radial(radial), i, j) * inv_sqrt_neigh
        a0 = self.linear_down(agg)
        a = a0
        for tp, lin in zip(self.products, self.product_linears):
            a = a + lin(tp(a, a0))
        out = self.gate(self.linear_out(a) + self.self_connection(h, onehot))
        return out + h[:, :self.res_dim] if self.res_dim else out


class ENNP(Potential):
    """E(3)/SO(3)-equivariant neural-network potential (energies eV, lengths Å).

    Parameters
    ----------
    species : element symbols (or bead type names), in the order of ``graph.species``
    r_cut : cutoff radius, Å
    channels : multiplicity of every irrep (int), or one int per l; 0 for an l ≥ 1 gives no
        node features of that l while messages and products still use every l ≤ l_max
        (MACE's 64x0e+64x1o hidden irreps with max_ell 3: ``channels=[64, 64, 0, 0], l_max=3``)
    l_max : highest angular momentum of features and spherical harmonics
    n_layers : interaction blocks
    n_radial : Bessel functions; ``trainable_radial``: learnable frequencies
    radial_hidden, radial_layers : width and depth of the radial MLPs
    envelope_p : exponent of the polynomial envelope (≥ 2; C² at r_cut)
    parity : True → O(3) model, False → SO(3) model (chiral)
    full_parity : O(3) features of both parities at every l (NequIP-like) instead of (−1)^l
    correlation : 1 = NequIP (two-body messages); ν > 1 adds ν − 1 body-order products per layer
    readout_hidden : width of the scalar readout MLP
    avg_num_neighbors : message normalisation (refit by the trainer from the data)
    vector_head, tensor_head : add l = 1 / l = 2 per-atom equivariant outputs
    dtype : "float32" or "float64"
    init_seed : seed of the initial weights (None: torch's global RNG)
    """

    def __init__(self, species, r_cut: float = 5.0, **kwargs):
        # e3nn computes Clebsch–Gordan coefficients and normalisation constants in the default
        # dtype: build in float64 (accurate constants whatever the caller's default), then cast.
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            self._build(species, r_cut, **kwargs)
        finally:
            torch.set_default_dtype(old)

    def _build(self, species: Sequence[str], r_cut: float = 5.0, *, channels=32, l_max: int = 2,
                 n_layers: int = 2, n_radial: int = 8, trainable_radial: bool = True,
                 radial_hidden: int = 64, radial_layers: int = 2, envelope_p: int = 6,
                 parity: bool = True, full_parity: bool = False, correlation: int = 1,
                 readout_hidden: int = 16, avg_num_neighbors: float = 10.0,
                 vector_head: bool = False, tensor_head: bool = False, dtype: str = "float32",
                 init_seed: int | None = 0):
        torch.nn.Module.__init__(self)
        species = [str(s) for s in species]
        if not species or len(set(species)) != len(species):
            raise InputError(f"species must be a non-empty list of distinct names, got {species}")
        if not (isinstance(r_cut, (int, float)) and math.isfinite(r_cut) and r_cut > 0):
            raise InputError(f"r_cut must be a positive distance in Å, got {r_cut!r}")
        if int(l_max) < 0 or int(n_layers) < 1 or int(correlation) < 1:
            raise InputError(f"need l_max >= 0, n_layers >= 1, correlation >= 1 (got l_max={l_max}, "
                             f"n_layers={n_layers}, correlation={correlation})")
        if dtype not in _DTYPES:
            raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self._config = dict(species=species, r_cut=float(r_cut), channels=channels, l_max=int(l_max),
                            n_layers=int(n_layers), n_radial=int(n_radial),
                            trainable_radial=bool(trainable_radial), radial_hidden=int(radial_hidden),
                            radial_layers=int(radial_layers), envelope_p=int(envelope_p),
                            parity=bool(parity), full_parity=bool(full_parity),
                            correlation=int(correlation), readout_hidden=int(readout_hidden),
                            avg_num_neighbors=float(avg_num_neighbors), vector_head=bool(vector_head),
                            tensor_head=bool(tensor_head), dtype=dtype,
                            init_seed=None if init_seed is None else int(init_seed))
        self.type_names = tuple(species)
        self.cutoff = float(r_cut)
        n_species = len(species)
        self.parity = bool(parity)

        irreps_hidden = hidden_irreps(channels, int(l_max), bool(parity), bool(full_parity))
        # messages / aggregated features A (and body-order products) keep every l ≤ l_max, also
        # where the node features have none (MACE-like: 64x0e+64x1o nodes, max_ell 3 messages)
        ch = [channels] * (int(l_max) + 1) if isinstance(channels, int) else list(channels)
        irreps_messages = hidden_irreps([int(c) if int(c) > 0 else max(ch) for c in ch], int(l_max),
                                        bool(parity), bool(full_parity))
        irreps_sh = o3.Irreps.spherical_harmonics(int(l_max), p=-1 if parity else 1)
        self.irreps_hidden = irreps_hidden
        self.sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component",
                                        irreps_in="1o" if parity else "1e")
        self.bessel = BesselBasis(r_cut, int(n_radial), bool(trainable_radial))
        self.envelope = PolynomialEnvelope(r_cut, int(envelope_p))
        n0 = irreps_hidden.count("0e")
        self.embedding = o3.Linear(o3.Irreps(f"{n_species}x0e"), o3.Irreps(f"{n0}x0e"))
        irreps = o3.Irreps(f"{n0}x0e")
        self.layers = torch.nn.ModuleList()
        heads = bool(vector_head) or bool(tensor_head)
        for k in range(int(n_layers)):
            last_scalars = k == int(n_layers) - 1 and not heads
            block = _Interaction(irreps, irreps_sh, irreps_messages, n_species, int(n_radial),
                                 int(radial_hidden), int(radial_layers), int(correlation),
                                 o3.Irreps(f"{n0}x0e") if last_scalars else irreps_hidden)
            self.layers.append(block)
            irreps = block.irreps_out
        self.irreps_out = irreps
        self.readout = torch.nn.Sequential(
            o3.Linear(irreps, o3.Irreps(f"{int(readout_hidden)}x0e")),
            _SiLU(),
            o3.Linear(o3.Irreps(f"{int(readout_hidden)}x0e"), o3.Irreps("0e")))
        self.vector_head = o3.Linear(irreps, o3.Irreps("1o" if parity else "1e")) if vector_head else None
        self.tensor_head = o3.Linear(irreps, o3.Irreps("2e")) if tensor_head else None
        self.register_buffer("energy_shift", torch.zeros(n_species))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("inv_sqrt_neighbors", torch.tensor(1.0 / math.sqrt(max(avg_num_neighbors, 1e-6))))
        if init_seed is not None:
            self._reinitialize(int(init_seed))
        self.to(_DTYPES[dtype])

    def _reinitialize(self, seed: int) -> None:
        """Draw every weight from N(0, 1) (e3nn's convention: normalisation happens in the
        forward pass) with a private generator, so that the initial weights depend on
        ``seed`` only — not on the global RNG or on e3nn's code-generation caches."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("bessel."):
                    continue
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        cfg = dict(self._config)
        cfg["dtype"] = str(self.dtype).replace("torch.", "")
        cfg["avg_num_neighbors"] = float(self.inv_sqrt_neighbors) ** -2
        return cfg

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as exc:
            if any(k.endswith(".tp.output_mask") or ".radial.net." in k for k in state_dict):
                raise InputError("these ENNP weights were written by an earlier cgkit development "
                                 "version (before the fused edge convolution, whose layers differ); "
                                 "create the model again (`cgkit model init`) or retrain it") from exc
            raise InputError(f"the weights do not fit this ENNP configuration: {exc}") from exc

    @classmethod
    def from_preset(cls, preset: str, species, r_cut: float = 5.0, **overrides) -> "ENNP":
        if preset not in PRESETS:
            raise InputError(f"unknown preset '{preset}'; choose from {sorted(PRESETS)}")
        return cls(species, r_cut, **{**PRESETS[preset], **overrides})

    # ------------------------------------------------------------------ statistics
    def set_statistics(self, *, shift=None, scale=None, avg_num_neighbors=None) -> None:
        """Per-species energy shift (eV, one per species), energy scale (eV) and neighbour count."""
        with torch.no_grad():
            if shift is not None:
                shift = torch.as_tensor(shift, dtype=self.energy_shift.dtype).reshape(-1)
                if shift.shape != self.energy_shift.shape:
                    raise InputError(f"shift needs one value per species {self.type_names}")
                self.energy_shift.copy_(shift)
            if scale is not None:
                self.energy_scale.fill_(float(scale))
            if avg_num_neighbors is not None:
                self.inv_sqrt_neighbors.fill_(1.0 / math.sqrt(max(float(avg_num_neighbors), 1e-6)))

    # ------------------------------------------------------------------ Hessian
    #: rows per call of the core Hessian: ≤ 24 makes it take one backward pass per row, which
    #: for this model is 2–2.5x faster per row than vmap-batched vector-Jacobian products
    #: (measured on Si64, float64: 0.10 s/row vs 0.12–0.25 s/row)
    _HESSIAN_ROWS_PER_PASS = 24

    def hessian(self, graph: AtomicGraph, *, include_strain: bool = False, rows=None,
                chunk_size: int = 96, progress: bool = False) -> torch.Tensor:
        """As :meth:`Potential.hessian` (eV/Å², (3n, 3n) or selected rows), computed with
        one backward pass per row in blocks of :attr:`_HESSIAN_ROWS_PER_PASS` rows."""
        n_var = 3 * graph.n_atoms + (6 if include_strain else 0)
        row_idx = (torch.arange(n_var) if rows is None
                   else torch.as_tensor(rows, dtype=torch.long).reshape(-1))
        step = self._HESSIAN_ROWS_PER_PASS
        starts = range(0, len(row_idx), step)
        if progress:
            from ..progress import progress_bar
            starts = progress_bar(starts, desc="Hessian rows", unit="block")
        blocks = [Potential.hessian(self, graph, include_strain=include_strain,
                                    rows=row_idx[s:s + step], chunk_size=step)
                  for s in starts]
        H = torch.cat(blocks) if blocks else torch.zeros(0, n_var, dtype=self.dtype)
        return 0.5 * (H + H.T) if rows is None else H

    # ------------------------------------------------------------------ forward
    def _species(self, graph: AtomicGraph) -> torch.Tensor:
        if graph.type_names is None or tuple(graph.type_names) == self.type_names:
            return graph.species
        lookup = {t: k for k, t in enumerate(self.type_names)}
        missing = [t for t in graph.type_names if t not in lookup]
        present = set(graph.species.unique().tolist())
        if any(graph.type_names.index(t) in present for t in missing):
            raise UnknownSpeciesError(f"species {missing} are not known to this model (it knows "
                                      f"{list(self.type_names)}); train a model that includes them")
        remap = torch.tensor([lookup.get(t, 0) for t in graph.type_names], dtype=torch.long)
        return remap[graph.species]

    def features(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor):
        """(n, irreps_out.dim) equivariant node features and (n,) species indices."""
        species = self._species(graph)
        i, j, vec, dist = self.neighbor_edges(graph, positions, cell)
        # the envelope multiplies every message: apply it once, to the spherical harmonics
        y = self.sh(vec) * self.envelope(dist).unsqueeze(-1)
        onehot = torch.nn.functional.one_hot(species, len(self.type_names)).to(positions.dtype)
        h = self.embedding(onehot)
        if all(layer.fast for layer in self.layers) and (
                _use_conv_function()
                or i.shape[0] * max(layer.conv.comp_idx.numel() * layer.C for layer in self.layers)
                <= _FAST_MAX_ELEMENTS):
            # the radial MLPs run once per pair of reverse edges (same distance, same function
            # of the positions and cell): the convolution reads row wmap[e] for edge e
            wmap, first = _reverse_edge_pairs(graph, i, j) if _use_conv_function() else (None, None)
            radial = self.bessel(dist if first is None else dist.index_select(0, first))
            # component layout (M, N, C) between the blocks (see _Interaction._build_fast)
            h = _from_e3nn(h, self.layers[0].irreps_in, self.layers[0].C)
            for layer in self.layers:
                h = layer.forward_fast(h, onehot, y, radial, i, j, self.inv_sqrt_neighbors, wmap)
            return _to_e3nn(h, self.irreps_out, self.layers[-1].C), species
        radial = self.bessel(dist)
        for layer in self.layers:
            h = layer(h, onehot, y, radial, i, j, self.inv_sqrt_neighbors)
        return h, species

    def atomic_energies(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """(n,) atomic energies, eV."""
        h, species = self.features(graph, positions, cell)
        eps = self.readout(h).squeeze(-1)
        return self.energy_scale * eps + self.energy_shift[species]

    def equivariant_outputs(self, graph: AtomicGraph, positions=None, cell=None) -> dict:
        """Per-atom equivariant heads: ``vectors`` (n, 3) (x, y, z) and ``tensors`` (n, 3, 3)
        symmetric traceless, plus ``energies`` (n,) eV. Differentiable (no ``no_grad``)."""
        positions = graph.positions if positions is None else positions
        cell = graph.cell if cell is None else cell
        h, species = self.features(graph, positions, cell)
        out = {"energies": self.energy_scale * self.readout(h).squeeze(-1) + self.energy_shift[species]}
        if self.vector_head is not None:
            out["vectors"] = self.vector_head(h)  # e3nn 0.6 l=1 basis is (x, y, z)
        if self.tensor_head is not None:
            out["tensors"] = _l2_to_cartesian(self.tensor_head(h))
        return out


class _SiLU(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.silu(x)


_L2_BASIS = None


def _l2_to_cartesian(t2: torch.Tensor) -> torch.Tensor:
    """(n, 5) l=2 components → (n, 3, 3) symmetric traceless Cartesian tensors.

    The map is the (pseudo-)inverse of n ↦ Y²(n) restricted to symmetric traceless matrices,
    Y²(n) = A · vec(n nᵀ − I/3), solved once in float64 (equivariant by construction)."""
    global _L2_BASIS
    if _L2_BASIS is None:
        g = torch.Generator().manual_seed(0)
        n = torch.randn(64, 3, generator=g, dtype=torch.float64)
        n = n / n.norm(dim=1, keepdim=True)
        s = (n[:, :, None] * n[:, None, :] - torch.eye(3, dtype=torch.float64) / 3).reshape(64, 9)
        y = o3.spherical_harmonics(2, n, normalize=True, normalization="component")
        A = torch.linalg.lstsq(s, y, driver="gelsd").solution.T  # (5, 9): y = A s
        _L2_BASIS = torch.linalg.pinv(A).reshape(3, 3, 5)  # s = A⁺ y
    return torch.einsum("abm,nm->nab", _L2_BASIS.to(t2.dtype), t2)
