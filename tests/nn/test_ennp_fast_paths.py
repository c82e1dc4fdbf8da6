"""The speed paths of the ENNP give the results of the plain e3nn-module path: the fused edge
convolution against the per-path one (itself tested against e3nn's TensorProduct), and the
component-layout interaction blocks against composing the e3nn modules, in float64 for
energies, forces, stress and the parameter gradients of a force loss (the double backward)."""

import pytest
import torch

import cgkit.nn.model as M

from .conftest import edge_conv_irreps, tiny_model


@pytest.mark.parametrize("parity", ["o3", "o3_full", "so3"])
def test_fused_edge_convolution_equals_per_path_form(parity):
    g = torch.Generator().manual_seed(3)
    C, n, e = 3, 6, 23
    in_irs, sh_irs = edge_conv_irreps(parity)
    conv = M._EdgeConv(in_irs, sh_irs, set(in_irs), C).to(torch.float64)
    x = torch.randn(n, conv.irreps_in.dim, generator=g, dtype=torch.float64)
    y = torch.randn(e, sum(ir.dim for ir in sh_irs), generator=g, dtype=torch.float64)
    weights = [torch.randn(e, C, generator=g, dtype=torch.float64) for _ in conv.paths]
    i = torch.randint(0, n, (e,), generator=g)
    j = torch.randint(0, n, (e,), generator=g)
    ref = conv(x, y, weights, i, j)
    fused_w = torch.cat([weights[k] for k in conv.order], dim=1)
    got = M._to_e3nn(conv.forward_components(M._from_e3nn(x, conv.irreps_in, C), y, fused_w, i, j),
                     conv.irreps_out, C)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))


def _force_loss_grads(model, g):
    model.zero_grad()
    out = model.compute(g, forces=True, stress=True, create_graph=True)
    ((out["forces"] ** 2).sum() + out["energy"].sum() + (out["stress"] ** 2).sum()).backward()
    return out, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kw", [dict(full_parity=True, n_layers=3), dict(parity=False, vector_head=True)])
@pytest.mark.parametrize("fused_max, conv_function", [(0, False), (M._FUSED_MAX_ELEMENTS, False),
                                                       (M._FUSED_MAX_ELEMENTS, True)])
def test_component_layout_blocks_equal_e3nn_modules(crystal, kw, fused_max, conv_function, monkeypatch):
    monkeypatch.setattr(M, "_CONV_FUNCTION", conv_function)
    monkeypatch.setattr(M, "_FUSED_MAX_ELEMENTS", fused_max)
    monkeypatch.setattr(M, "_FAST_MAX_ELEMENTS", 2**62)
    model = tiny_model(**kw)
    assert all(layer.fast for layer in model.layers)
    g = model.graph(crystal)
    fast, gfast = _force_loss_grads(model, g)
    monkeypatch.setattr(M, "_CONV_FUNCTION", False)
    monkeypatch.setattr(M, "_FAST_MAX_ELEMENTS", -1)  # the e3nn-module path
    ref, gref = _force_loss_grads(model, g)
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(fast[k], ref[k], rtol=0, atol=1e-11 * max(float(ref[k].abs().max()), 1e-8)), k
    assert gfast.keys() == gref.keys()
    for k in gref:
        assert torch.allclose(gfast[k], gref[k], rtol=0, atol=1e-10 * max(float(gref[k].abs().max()), 1e-8)), k
