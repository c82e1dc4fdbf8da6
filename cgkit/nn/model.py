"""The E(3)-equivariant neural-network potential (ENNP), built on e3nn.

Architecture (NequIP-style message passing, optional MACE-style body-order products):

* species embedding → ``channels`` even scalars per atom;
* edge attributes: spherical harmonics ``Y^l(r̂_ij)`` up to ``l_max`` and a radial basis of
  Bessel functions (learnable frequencies) — the radial MLP output is multiplied by a C²
  polynomial envelope, so every message vanishes smoothly at ``r_cut``;
* ``n_layers`` interaction blocks: linear → Clebsch–Gordan tensor product of neighbour
  features with ``Y(r̂_ij)`` (``uvu`` paths) weighted per edge by the radial MLP → scatter-sum
  over neighbours / sqrt(avg_num_neighbors) → linear → optional products of the aggregated
  features with themselves (``correlation`` − 1 channel-wise CG products: body order
  ``correlation + 1`` per layer, as in MACE) → linear + species self-connection → gated
  nonlinearity (SiLU on even scalars, tanh on odd scalars, sigmoid gates on l > 0) → residual;
* readout: MLP on the l = 0 even channel → atomic energy ``E_i = scale · ε_i + shift[species_i]``.

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
from e3nn.nn import FullyConnectedNet, Gate

from ..data import AtomicGraph
from ..errors import InputError, UnknownSpeciesError
from ..potential import Potential, scatter_sum
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
    SO(3): all even ("0e+1e+2e").
    """
    if isinstance(channels, int):
        channels = [channels] * (l_max + 1)
    channels = list(channels)
    if len(channels) != l_max + 1 or any(int(c) < 1 for c in channels):
        raise InputError(f"channels must be a positive int or one positive int per l = 0..{l_max}, "
                         f"got {channels}")
    out = []
    for l, c in enumerate(channels):
        if not parity:
            out.append((int(c), (l, 1)))
        else:
            out.append((int(c), (l, (-1) ** l)))
            if full_parity:
                out.append((int(c), (l, -((-1) ** l))))
    return o3.Irreps(out).sort().irreps.simplify()


class _Interaction(torch.nn.Module):
    """One message-passing block (see module docstring). Features in → features out."""

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_hidden: o3.Irreps,
                 n_species: int, n_radial: int, radial_hidden: int, radial_layers: int,
                 correlation: int):
        super().__init__()
        self.irreps_in = irreps_in
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l > 0])
        acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(scalars, acts, gates, [torch.sigmoid] * len(gates), gated)
        irreps_gate_in = self.gate.irreps_in
        self.irreps_out = self.gate.irreps_out

        self.linear_up = o3.Linear(irreps_in, irreps_in)
        targets = {ir for _, ir in irreps_hidden}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_edge:
                    if ir_out in targets:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(mid)
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = FullyConnectedNet([n_radial] + [radial_hidden] * radial_layers + [self.tp.weight_numel],
                                        torch.nn.functional.silu)
        self.linear_down = o3.Linear(irreps_mid, irreps_hidden)

        # MACE-style higher body order: A ← A + Linear(A ⊗ A_0) channel-wise, (correlation − 1) times
        self.products = torch.nn.ModuleList()
        self.product_linears = torch.nn.ModuleList()
        for _ in range(max(0, int(correlation) - 1)):
            pmid, pins = [], []
            for i, (m1, ir1) in enumerate(irreps_hidden):
                for j, (m2, ir2) in enumerate(irreps_hidden):
                    if m1 != m2:
                        continue
                    for ir_out in ir1 * ir2:
                        if ir_out in targets:
                            pins.append((i, j, len(pmid), "uuu", True))
                            pmid.append((m1, ir_out))
            tp = o3.TensorProduct(irreps_hidden, irreps_hidden, o3.Irreps(pmid), pins,
                                  internal_weights=True, shared_weights=True)
            self.products.append(tp)
            self.product_linears.append(o3.Linear(o3.Irreps(pmid), irreps_hidden))
        self.linear_out = o3.Linear(irreps_hidden, irreps_gate_in)
        self.self_connection = o3.FullyConnectedTensorProduct(irreps_in, o3.Irreps(f"{n_species}x0e"),
                                                              irreps_gate_in)
        self.resnet = irreps_in == self.irreps_out

    def forward(self, h, onehot, sh, radial, envelope, i, j, inv_sqrt_neigh):
        x = self.linear_up(h)
        w = self.radial(radial) * envelope.unsqueeze(-1)
        msg = self.tp(x[j], sh, w)
        agg = scatter_sum(msg, i, h.shape[0]) * inv_sqrt_neigh
        a0 = self.linear_down(agg)
        a = a0
        for tp, lin in zip(self.products, self.product_linears):
            a = a + lin(tp(a, a0))
        out = self.gate(self.linear_out(a) + self.self_connection(h, onehot))
        return h + out if self.resnet else out


class ENNP(Potential):
    """E(3)/SO(3)-equivariant neural-network potential (energies eV, lengths Å).

    Parameters
    ----------
    species : element symbols (or bead type names), in the order of ``graph.species``
    r_cut : cutoff radius, Å
    channels : multiplicity of every irrep (int), or one int per l
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
        for _ in range(int(n_layers)):
            block = _Interaction(irreps, irreps_sh, irreps_hidden, n_species, int(n_radial),
                                 int(radial_hidden), int(radial_layers), int(correlation))
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
        sh = self.sh(vec)
        radial = self.bessel(dist)
        env = self.envelope(dist)
        onehot = torch.nn.functional.one_hot(species, len(self.type_names)).to(positions.dtype)
        h = self.embedding(onehot)
        for layer in self.layers:
            h = layer(h, onehot, sh, radial, env, i, j, self.inv_sqrt_neighbors)
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
