"""The fused edge convolution against e3nn's TensorProduct, the blocked Hessian against single
rows, and clear errors for weights of the earlier ENNP layout."""

import numpy as np
import pytest
import torch
from e3nn import o3

from cgkit.errors import InputError
from cgkit.nn.model import _EdgeConv

from .conftest import tiny_model


def _reference(conv, in_irs, sh_irs, x, y, weights, i, j, n):
    """Σ_j over edges of e3nn's ``uvu`` TensorProduct, one instruction per path, paths into the
    same irrep summed — computed edge by edge from the e3nn layout, no cgkit code."""
    C = conv.channels
    irreps_in = o3.Irreps([(C, ir) for ir in in_irs])
    irreps_sh = o3.Irreps([(1, ir) for ir in sh_irs])
    out = torch.zeros(n, conv.irreps_out.dim, dtype=torch.float64)
    out_offsets = dict(zip([ir for _, ir in conv.irreps_out],
                           np.cumsum([0] + [mul * ir.dim for mul, ir in conv.irreps_out])[:-1]))
    fan_in = {}
    for a, b, o, _, _ in conv.paths:
        fan_in[o] = fan_in.get(o, 0) + 1
    for (a, b, o, _, d3), w in zip(conv.paths, weights):
        ir3 = conv.irreps_out[o].ir
        tp = o3.TensorProduct(irreps_in, irreps_sh, o3.Irreps([(C, ir3)]),
                              [(a, b, 0, "uvu", True, 1.0 / fan_in[o])],  # e3nn: sqrt(d3 · weight)
                              irrep_normalization="component", path_normalization="none",
                              internal_weights=False, shared_weights=False).to(torch.float64)
        msg = tp(x[j], y, w)  # (E, C·d3), e3nn layout
        s = int(out_offsets[ir3])
        out[:, s:s + C * d3] += torch.zeros(n, C * d3, dtype=torch.float64).index_add(0, i, msg)
    return out


@pytest.mark.parametrize("parity", ["o3", "o3_full", "so3"])
def test_edge_convolution_equals_e3nn_uvu_tensor_product_summed_over_neighbours(parity):
    g = torch.Generator().manual_seed(0)
    l_max, C, n, e = 2, 3, 5, 17
    if parity == "so3":
        in_irs = [o3.Irrep(l, 1) for l in range(l_max + 1)]
        sh_irs = in_irs
    else:
        in_irs = [o3.Irrep(l, (-1) ** l) for l in range(l_max + 1)]
        if parity == "o3_full":
            in_irs += [o3.Irrep(l, -((-1) ** l)) for l in range(l_max + 1)]
        sh_irs = [o3.Irrep(l, (-1) ** l) for l in range(l_max + 1)]
    targets = set(in_irs)
    conv = _EdgeConv(in_irs, sh_irs, targets, C).to(torch.float64)
    x = torch.randn(n, conv.irreps_in.dim, generator=g, dtype=torch.float64)
    y = torch.randn(e, sum(ir.dim for ir in sh_irs), generator=g, dtype=torch.float64)
    weights = [torch.randn(e, C, generator=g, dtype=torch.float64) for _ in conv.paths]
    i = torch.randint(0, n, (e,), generator=g)
    j = torch.randint(0, n, (e,), generator=g)
    got = conv(x, y, weights, i, j)
    ref = _reference(conv, in_irs, sh_irs, x, y, weights, i, j, n)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
    # the SO(3) model has the chiral 1e⊗1e→1e (cross-product) path, the O(3) one must not
    has_cross = any(in_irs[a] == o3.Irrep("1e") and sh_irs[b] == o3.Irrep("1e")
                    and conv.irreps_out[o].ir == o3.Irrep("1e") for a, b, o, _, _ in conv.paths)
    assert has_cross == (parity == "so3")


def test_hessian_in_row_blocks_equals_selected_rows_and_is_symmetric(crystal):
    model = tiny_model()
    a = crystal[:6].copy()
    a.pbc = False
    a.center(vacuum=4.0)
    g = model.graph(a)
    H = model.hessian(g)
    rows = [0, 5, 11, 17]
    Hr = model.hessian(g, rows=rows)
    assert H.shape == (18, 18) and Hr.shape == (4, 18)
    assert torch.allclose(Hr, H[rows], rtol=0, atol=1e-10 * float(H.abs().max()))
    assert torch.allclose(H, H.T, rtol=0, atol=1e-12 * float(H.abs().max()))


def test_weights_of_the_earlier_layout_raise_a_clear_error():
    model = tiny_model()
    state = dict(model.state_dict())
    state["layers.0.tp.output_mask"] = torch.ones(3)
    with pytest.raises(InputError, match="earlier cgkit"):
        model.load_state_dict(state)
    state = dict(model.state_dict())
    state.pop("energy_scale")
    with pytest.raises(InputError, match="do not fit"):
        model.load_state_dict(state)


@pytest.mark.parametrize("irreps", ["3x0e+3x1o+3x2e", "2x0e+2x0o+2x1o+2x1e+3x2e", "2x0e+2x1e+2x2e+2x3e"])
def test_channel_product_equals_e3nn_uuu_tensor_product(irreps):
    from cgkit.nn.model import _ChannelProduct
    irreps = o3.Irreps(irreps)
    targets = {ir for _, ir in irreps}
    prod = _ChannelProduct(irreps, targets).to(torch.float64)
    pmid, pins = [], []
    for i, (m1, ir1) in enumerate(irreps):
        for j, (m2, ir2) in enumerate(irreps):
            if m1 == m2:
                for ir_out in ir1 * ir2:
                    if ir_out in targets:
                        pins.append((i, j, len(pmid), "uuu", True))
                        pmid.append((m1, ir_out))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its CG constants in the default dtype
    try:
        ref = o3.TensorProduct(irreps, irreps, o3.Irreps(pmid), pins, internal_weights=True,
                               shared_weights=True)
    finally:
        torch.set_default_dtype(old)
    assert prod.irreps_out == ref.irreps_out and prod.weight.shape == ref.weight.shape
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ref.weight.copy_(torch.randn(ref.weight.shape, generator=g, dtype=torch.float64))
        prod.weight.copy_(ref.weight)
    a = torch.randn(7, irreps.dim, generator=g, dtype=torch.float64)
    b = torch.randn(7, irreps.dim, generator=g, dtype=torch.float64)
    want = ref(a, b)
    assert torch.allclose(prod(a, b), want, rtol=0, atol=1e-12 * float(want.abs().max()))


def test_model_without_l2_node_features_but_l2_messages_is_equivariant(crystal):
    """channels=[c, c, 0] (MACE-like: node features 0e+1o, messages and products up to l=2)."""
    from .conftest import random_rotation
    from .test_ennp_equivariance import _compute, _rel, _transformed
    model = tiny_model(channels=[3, 3, 0], correlation=2)
    assert str(model.irreps_hidden) == "3x0e+3x1o"
    assert "2e" in str(model.layers[0].conv.irreps_out)
    ref = _compute(model, crystal)
    R = random_rotation(5, reflect=True)
    out = _compute(model, _transformed(crystal, R, np.array([0.3, -1.0, 2.0])))
    assert _rel(out["energy"], ref["energy"]) < 1e-10
    assert _rel(out["forces"], ref["forces"] @ R.T) < 1e-10
    assert _rel(out["stress"][0], R @ ref["stress"][0] @ R.T) < 1e-10
    with pytest.raises(InputError, match="positive for l = 0"):
        tiny_model(channels=[0, 3, 3])
