"""The edge convolution as an autograd Function (cgkit.nn.conv) against the reference paths:
gradcheck / gradgradcheck on a tiny case, and through the ENNP the energies, forces, stress,
Hessian-vector products, Hessians and parameter gradients of a force loss against the same
model with the convolution composed under autograd (e3nn-module path), in float64."""

import numpy as np
import pytest
import torch
from ase import Atoms

import cgkit.nn.conv as CV
import cgkit.nn.model as M
from cgkit.potential import Potential

from .conftest import edge_conv_irreps, tiny_model


def _conv_case(parity, C=2, n=5, e=9, seed=4):
    g = torch.Generator().manual_seed(seed)
    in_irs, sh_irs = edge_conv_irreps(parity)
    conv = M._EdgeConv(in_irs, sh_irs, set(in_irs), C).to(torch.float64)
    x = torch.randn(n, conv.irreps_in.dim, generator=g, dtype=torch.float64)
    y = torch.randn(e, sum(ir.dim for ir in sh_irs), generator=g, dtype=torch.float64)
    w = torch.randn(e, conv.n_paths, C, generator=g, dtype=torch.float64)
    i = torch.randint(0, n, (e,), generator=g)
    j = torch.randint(0, n, (e,), generator=g)
    return conv, x, y, w, i, j


# the compiled kernels (cgkit.nn.conv_kernel), and the PyTorch form in one chunk and in
# chunks of 1-2 edges
@pytest.mark.parametrize("form", [("compiled", 2**18), ("torch", 2**18), ("torch", 100)])
@pytest.mark.parametrize("parity", ["o3", "o3_full", "so3"])
def test_messages_equal_per_path_form_and_pass_gradgradcheck(parity, form, monkeypatch):
    monkeypatch.setattr(CV, "USE_COMPILED", form[0] == "compiled")
    monkeypatch.setattr(CV, "CHUNK_ELEMENTS", form[1])
    conv, x, y, w, i, j = _conv_case(parity)
    C = conv.channels
    ref = conv(x, y, [w[:, conv.order.index(k)] for k in range(conv.n_paths)], i, j)  # per path
    xc = M._from_e3nn(x, conv.irreps_in, C)
    got = CV.edge_convolution(conv, xc, y @ conv.cg, w, i, j)
    got = M._to_e3nn(got, conv.irreps_out, C)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))

    # derivatives in y (through T = y·CG), node features and radial weights, first and second
    def f(y_, x_, w_):
        return CV.edge_convolution(conv, x_, y_ @ conv.cg, w_, i, j)
    args = (y.clone().requires_grad_(), xc.clone().requires_grad_(), w.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, args, eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True)


def test_third_derivative_is_refused():
    conv, x, y, w, i, j = _conv_case("o3")
    xc = M._from_e3nn(x, conv.irreps_in, conv.channels).requires_grad_()
    out = CV.edge_convolution(conv, xc, y @ conv.cg, w, i, j)
    (g1,) = torch.autograd.grad((out ** 3).sum(), xc, create_graph=True)
    (g2,) = torch.autograd.grad((g1 ** 2).sum(), xc, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives"):
        torch.autograd.grad((g2 ** 2).sum(), xc)


def _molecule():
    rng = np.random.default_rng(5)
    pos = np.array([[0, 0, 0], [1.3, 0, 0], [0, 1.4, 0.2], [-0.9, -0.6, 0.8], [1.8, 1.1, -0.7],
                    [0.4, -1.2, -0.9]]) + rng.normal(scale=0.05, size=(6, 3))
    return Atoms("SiCCSiCCSiC", positions=np.vstack([pos, pos[:2] + [0.2, 2.4, 1.3]]))


def _derivatives(model, g, v, periodic):
    """energy, forces, stress, H·v (positions) and parameter gradients of a force/stress loss."""
    model.zero_grad()
    out = model.compute(g, forces=True, stress=periodic, create_graph=True)
    loss = (out["forces"] ** 2).sum() + out["energy"].sum()
    if periodic:
        loss = loss + (out["stress"] ** 2).sum()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    pos = g.positions.detach().clone().requires_grad_()
    e = model.atomic_energies(g, pos, g.cell).sum()
    (f,) = torch.autograd.grad(e, pos, create_graph=True)
    (hv,) = torch.autograd.grad(f, pos, grad_outputs=v)
    res = {k: out[k].detach() for k in ("energy", "forces", "stress") if k in out}
    res["hv"] = hv
    return res, grads


@pytest.mark.parametrize("compiled", [True, False])  # the C kernels; the chunked PyTorch form
@pytest.mark.parametrize("kw", [dict(full_parity=True, n_layers=3), dict(parity=False, vector_head=True)])
@pytest.mark.parametrize("system", ["crystal", "molecule", "self_images"])
def test_model_derivatives_equal_reference_paths(crystal, kw, system, compiled, monkeypatch):
    monkeypatch.setattr(CV, "USE_COMPILED", compiled)
    monkeypatch.setattr(CV, "CHUNK_ELEMENTS", 2**9)  # several chunks of edges
    atoms = {"crystal": crystal, "molecule": _molecule(),
             # one atom in a 2.6 Å cube: its 6 neighbours are its own images (i = j)
             "self_images": Atoms("Si", cell=np.diag([2.6, 2.7, 2.5]) + 0.1 * np.eye(3)[[1, 2, 0]],
                                  pbc=True)}[system]
    model = tiny_model(**kw)
    g = model.graph(atoms)
    # reverse edges share their radial weights: every edge has a partner of the same length
    wmap, first = M._reverse_edge_pairs(g, g.edge_index[0], g.edge_index[1])
    assert wmap is not None and 2 * first.numel() == g.n_edges
    assert torch.equal(torch.bincount(wmap), torch.full((first.numel(),), 2))
    d = g.edge_vectors(g.positions, g.cell).norm(dim=1)
    assert torch.equal(d, d[first][wmap])
    periodic = bool(np.asarray(atoms.pbc).all())
    assert g.n_edges > 2 * (2**9 // (model.layers[1].conv.comp_idx.numel() * model.layers[1].C))
    v = torch.randn(g.positions.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    monkeypatch.setattr(M, "_CONV_FUNCTION", True)
    got, ggot = _derivatives(model, g, v, periodic)
    for ref_kind in ("fused-autograd", "e3nn-modules"):
        monkeypatch.setattr(M, "_CONV_FUNCTION", False)
        monkeypatch.setattr(M, "_FUSED_MAX_ELEMENTS", 2**62)
        monkeypatch.setattr(M, "_FAST_MAX_ELEMENTS", 2**62 if ref_kind == "fused-autograd" else -1)
        ref, gref = _derivatives(model, g, v, periodic)
        assert got.keys() == ref.keys() and ggot.keys() == gref.keys()
        for k in ref:
            assert torch.allclose(got[k], ref[k], rtol=0, atol=1e-10 * float(ref[k].abs().max())), (ref_kind, k)
        for k in gref:
            assert torch.allclose(ggot[k], gref[k], rtol=0,
                                  atol=1e-10 * max(float(gref[k].abs().max()), 1e-12)), (ref_kind, k)


def test_hessian_and_batched_hessian_equal_reference(crystal, monkeypatch):
    model = tiny_model(full_parity=True)
    g = model.graph(crystal)
    monkeypatch.setattr(M, "_CONV_FUNCTION", True)
    H = model.hessian(g, include_strain=True)              # one backward pass per row
    Hb = Potential.hessian(model, g, chunk_size=30)        # vmap-batched rows (is_grads_batched)
    monkeypatch.setattr(M, "_CONV_FUNCTION", False)
    monkeypatch.setattr(M, "_FAST_MAX_ELEMENTS", -1)
    Href = model.hessian(g, include_strain=True)
    tol = 1e-10 * float(Href.abs().max())
    assert torch.allclose(H, Href, rtol=0, atol=tol)
    assert torch.allclose(Hb, Href[:Hb.shape[0], :Hb.shape[1]], rtol=0, atol=tol)


def test_isolated_atom_has_no_edges():
    model = tiny_model()
    g = model.graph(Atoms("Si", positions=[[0, 0, 0]]))
    assert g.n_edges == 0
    out = model.compute(g, forces=True)
    assert torch.isfinite(out["energy"]).all() and torch.equal(out["forces"], torch.zeros(1, 3, dtype=torch.float64))
