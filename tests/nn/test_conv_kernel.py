"""The compiled edge-convolution kernels (cgkit.nn.conv_kernel) against the PyTorch form of
cgkit.nn.conv, kernel by kernel: every combination of requested outputs and incoming second-order
gradients, with and without shared radial-weight rows (wmap), in float64 (1e-12 relative) and
float32 (float32 rounding), and the pruning of gradients the autograd engine will not use."""

import itertools

import pytest
import torch

import cgkit.nn.conv as CV
import cgkit.nn.model as M
from cgkit.nn import conv_kernel

from .conftest import edge_conv_irreps, tiny_model

pytestmark = pytest.mark.skipif(not conv_kernel.available(),
                                reason=f"no compiled kernel: {conv_kernel.unavailable_reason()}")


def _case(parity, dtype, shared, C=3, n=7, e=23, seed=1):
    g = torch.Generator().manual_seed(seed)
    in_irs, sh_irs = edge_conv_irreps(parity)
    conv = M._EdgeConv(in_irs, sh_irs, set(in_irs), C).to(dtype)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    i = torch.randint(0, n, (e,), generator=g)
    j = torch.randint(0, n, (e,), generator=g)
    wmap = torch.randint(0, 9, (e,), generator=g) if shared else None
    n_w = 9 if shared else e
    st = sum(conv.t_sizes)
    m_out = sum(conv.out_dims)
    t = dict(T=r(e, st), x=r(conv.m_in, n, C), w=r(n_w, conv.n_paths, C), G=r(m_out, n, C),
             HT=r(e, st), Hx=r(conv.m_in, n, C), Hw=r(n_w, conv.n_paths, C))
    return conv, i, j, wmap, n, t


def _both(fn):
    """fn() with the compiled kernels and with the PyTorch form."""
    CV.USE_COMPILED = True
    try:
        got = fn()
        CV.USE_COMPILED = False
        ref = fn()
    finally:
        CV.USE_COMPILED = True
    return got, ref


def _close(got, ref, dtype):
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for a, b in zip(got, ref):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=0, atol=tol * max(float(b.abs().max()), 1.0)), \
                float((a - b).abs().max())


@pytest.fixture
def threads(request, monkeypatch):
    """Run the compiled kernels in ``request.param`` threads (ranges of 5+ edges each)."""
    old = torch.get_num_threads()
    monkeypatch.setattr(conv_kernel, "MIN_EDGES_PER_THREAD", 5)
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 3], indirect=True)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("parity", ["o3_full", "so3"])
def test_compiled_kernels_equal_torch_form(parity, shared, dtype, threads):
    conv, i, j, wmap, n, t = _case(parity, dtype, shared)
    T, x, w, G = t["T"], t["x"], t["w"], t["G"]
    got, ref = _both(lambda: [CV._forward(conv, i, j, wmap, n, T, x, w)])
    _close(got, ref, dtype)
    for k in range(1, 4):
        for need in itertools.combinations("Txw", k):
            got, ref = _both(lambda: CV._grad(conv, i, j, wmap, n, G, T, x, w, "".join(need)))
            _close(got, ref, dtype)
    # every subset of incoming gradients (H) and of requested outputs
    for hs in itertools.product([False, True], repeat=3):
        if not any(hs):
            continue
        H = [t[k] if h else None for k, h in zip(("HT", "Hx", "Hw"), hs)]
        for k in range(1, 5):
            for need in itertools.combinations("GTxw", k):
                got, ref = _both(lambda: CV._gradgrad(conv, i, j, wmap, n, G, T, x, w, *H, "".join(need)))
                _close(got, ref, dtype)


@pytest.mark.parametrize("threads", [2], indirect=True)
def test_threaded_kernels_work_in_a_forked_child(threads):
    """The threaded kernels give the same messages in a forked child (a labelling or exploration
    worker) as in the parent, whose thread pool existed before the fork."""
    import multiprocessing as mp
    conv, i, j, wmap, n, t = _case("o3_full", torch.float64, True)
    args = (conv, i, j, wmap, n, t["T"], t["x"], t["w"])
    ref = CV._forward(*args)                       # creates the parent's pool
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_forward_in_child, (args, threads)).get(timeout=60)
    assert torch.equal(got, ref)


def _forward_in_child(args, n_threads):
    import cgkit.nn.conv_kernel as K
    torch.set_num_threads(n_threads)
    K.MIN_EDGES_PER_THREAD = 5
    return CV._forward(*args)


def test_inconsistent_calls_raise_instead_of_reading_out_of_bounds():
    conv, i, j, wmap, n, t = _case("o3", torch.float64, True)
    T, x, w = t["T"], t["x"], t["w"]
    bad_j = j.clone()
    bad_j[3] = n
    with pytest.raises(ValueError, match="sender index"):
        CV._forward(conv, i, bad_j, wmap, n, T, x, w)
    bad_map = wmap.clone()
    bad_map[0] = w.shape[0]
    with pytest.raises(ValueError, match="wmap index"):
        CV._forward(conv, i, j, bad_map, n, T, x, w)
    with pytest.raises(ValueError, match="'T' has"):
        CV._forward(conv, i, j, wmap, n, T[:-1].contiguous(), x, w)
    with pytest.raises(ValueError, match="radial weights"):
        CV._forward(conv, i, j, None, n, T, x, w)  # 9 shared rows, but no wmap for 23 edges


def test_batched_tensors_fall_back_to_torch_form():
    conv, i, j, wmap, n, t = _case("o3", torch.float64, False)
    assert conv_kernel.usable(t["T"], t["x"], t["w"])

    def check(x):
        assert not conv_kernel.usable(t["T"], x, t["w"])
        return x.sum()
    torch.vmap(check)(t["x"].unsqueeze(0).expand(2, -1, -1, -1).contiguous())


def test_parameter_only_backward_skips_position_gradients_and_gives_same_gradients(crystal, monkeypatch):
    """loss.backward(inputs=params) (the trainer's step) gives the same parameter gradients of a
    force loss as a full backward, and the convolution then computes no gradient of the
    couplings T (they depend on the positions only)."""
    model = tiny_model(full_parity=True)
    g = model.graph(crystal)
    params = [p for p in model.parameters() if p.requires_grad]
    asked = []
    real = CV._gradgrad

    def spy(conv, i, j, wmap, n_nodes, G, T, x, w, HT, Hx, Hw, need):
        asked.append(need)
        return real(conv, i, j, wmap, n_nodes, G, T, x, w, HT, Hx, Hw, need)
    monkeypatch.setattr(CV, "_gradgrad", spy)

    def grads(inputs):
        model.zero_grad()
        out = model.compute(g, forces=True, stress=True, create_graph=True)
        loss = (out["forces"] ** 2).sum() + out["energy"].sum() + (out["stress"] ** 2).sum()
        loss.backward(inputs=inputs)
        return [p.grad.clone() for p in params]
    full = grads(None)
    assert asked and all("T" in a for a in asked)
    asked.clear()
    pruned = grads(params)
    assert asked and not any("T" in a for a in asked)
    for a, b in zip(pruned, full):
        assert torch.allclose(a, b, rtol=0, atol=1e-12 * max(float(b.abs().max()), 1e-12))
