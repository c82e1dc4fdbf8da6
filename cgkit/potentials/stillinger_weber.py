"""Stillinger–Weber potential for silicon (Phys. Rev. B 31, 5262 (1985)).

E = Σ_{i<j} φ₂(r_ij) + Σ_i Σ_{j<k} φ₃(r_ij, r_ik, θ_jik)

φ₂(r) = A ε [B (σ/r)^p − (σ/r)^q] exp(σ / (r − aσ))
φ₃ = λ ε (cos θ_jik + 1/3)² exp(γσ / (r_ij − aσ)) exp(γσ / (r_ik − aσ))

both zero for r ≥ aσ (the cutoff, 3.7712 Å for Si) and smooth to all orders there. Original
parameters: ε = 2.1683 eV, σ = 2.0951 Å, a = 1.80, λ = 21.0, γ = 1.20, A = 7.049556277,
B = 0.6022245584, p = 4, q = 0 — the diamond lattice constant is 5.43095 Å, cohesive energy
4.3366 eV/atom.
"""
from __future__ import annotations

import torch

from ..errors import InputError, UnknownSpeciesError
from ..potential import Potential

__all__ = ["StillingerWeber", "triplets_from_edges", "SW_SI_1985"]

SW_SI_1985 = dict(epsilon=2.1683, sigma=2.0951, a=1.80, lambda_=21.0, gamma=1.20,
                  A=7.049556277, B=0.6022245584, p=4.0, q=0.0)


def triplets_from_edges(center: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs of distinct edges sharing a centre atom.

    center: (E,) centre index of every edge. Returns edge indices (e1, e2), each (T,), with
    center[e1] == center[e2] and e1 != e2; no Python loop over atoms or edges.
    """
    E = center.shape[0]
    if E == 0:
        empty = torch.zeros(0, dtype=torch.long, device=center.device)
        return empty, empty
    order = torch.argsort(center, stable=True)
    c_sorted = center[order]
    counts = torch.bincount(c_sorted, minlength=n_atoms)
    starts = torch.cumsum(counts, 0) - counts
    deg = counts[c_sorted]                                # (E,) degree of each edge's centre
    p1 = torch.repeat_interleave(torch.arange(E, device=center.device), deg)
    first = torch.cumsum(deg, 0) - deg
    offs = torch.arange(int(deg.sum()), device=center.device) - torch.repeat_interleave(first, deg)
    p2 = starts[c_sorted][p1] + offs
    keep = p1 != p2
    return order[p1[keep]], order[p2[keep]]


class StillingerWeber(Potential):
    """Stillinger–Weber silicon (single species). Parameters as in :data:`SW_SI_1985`;
    ``epsilon`` eV, ``sigma`` Å; cutoff = a·σ."""

    def __init__(self, epsilon: float = 2.1683, sigma: float = 2.0951, a: float = 1.80,
                 lambda_: float = 21.0, gamma: float = 1.20, A: float = 7.049556277,
                 B: float = 0.6022245584, p: float = 4.0, q: float = 0.0, species: str = "Si"):
        super().__init__()
        if sigma <= 0 or a <= 0 or epsilon <= 0:
            raise InputError("Stillinger–Weber needs epsilon > 0 eV, sigma > 0 Å and a > 0")
        self.params = dict(epsilon=float(epsilon), sigma=float(sigma), a=float(a), lambda_=float(lambda_),
                           gamma=float(gamma), A=float(A), B=float(B), p=float(p), q=float(q))
        self.species = species
        self.type_names = (species,)
        self.cutoff = float(a * sigma)

    def get_config(self) -> dict:
        return {**self.params, "species": self.species}

    def atomic_energies(self, graph, positions, cell):
        if graph.type_names != self.type_names:
            raise UnknownSpeciesError(f"this Stillinger–Weber potential is for {self.species} only, "
                                      f"the structure has {list(graph.type_names)}")
        P = self.params
        eps, sig, rc = P["epsilon"], P["sigma"], self.cutoff
        i, j, vec, r = self.neighbor_edges(graph, positions, cell)
        n = graph.n_atoms
        out = torch.zeros(n, dtype=positions.dtype, device=positions.device)
        if r.numel() == 0:
            return out
        inv = sig / r
        e2 = P["A"] * eps * (P["B"] * inv ** P["p"] - inv ** P["q"]) * torch.exp(sig / (r - rc))
        out = out.index_add(0, i, 0.5 * e2)
        # three-body term centred on i, over ordered pairs of its neighbours (j, k), j != k
        e1, e2_ = triplets_from_edges(i, n)
        if e1.numel():
            g = torch.exp(P["gamma"] * sig / (r - rc))       # (E,)
            cos = (vec[e1] * vec[e2_]).sum(1) / (r[e1] * r[e2_])
            e3 = P["lambda_"] * eps * (cos + 1.0 / 3.0) ** 2 * g[e1] * g[e2_]
            out = out.index_add(0, i[e1], 0.5 * e3)        # each unordered pair appears twice
        return out
