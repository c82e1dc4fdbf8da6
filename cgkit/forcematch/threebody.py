"""Three-body (Stillinger–Weber-type) force-matching term and its potential.

    E₃ = Σ_i Σ_{j<k} f(cos θ_jik) g(r_ij) g(r_ik),   g(r) = exp(γ / (r - a)) for r < a, else 0

over every bead i of the centre type and every unordered pair of its neighbours j, k (of the two
neighbour types) within the cutoff a; θ_jik is the angle at i. The radial factor g is fixed (SW
form, smooth to all orders at r = a, as VOTCA's three-body force matching and OpenMSCG's
``nb3b``; VOTCA's parameters map as a = a_V σ_V, γ = γ_V σ_V), the angular function f is linear in
its coefficients, so force matching stays a linear least-squares problem:

* ``basis="spline"``: cubic B-splines in c = cos θ on [-1, 1] (a function of cos θ is smooth in
  Cartesian coordinates at θ = 0 and 180° by construction: no 1/sin θ forces);
* ``basis="cos2"``: f = w₀ + w₁ c + w₂ c², the Stillinger–Weber family λ(c - c₀)² + const, which
  LAMMPS's ``pair_style sw`` evaluates exactly (:func:`cgkit.export.write_lammps`).

Forces in closed form: F_b = -[f'(c) G ∂c/∂r_b + f(c) ∂G/∂r_b] with G = g(r_ij) g(r_ik).
Pairs excluded in the CG topology (bonded neighbours) do not form triplets.

Units: Å, eV; f in eV (G is dimensionless).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..potential import Potential
from .spline import BSplineBasis

__all__ = ["ThreeBody", "ThreeBodyTerm", "ThreeBodyTable", "ThreeBodyPotential", "triplet_geometry"]


class _PolyBasis:
    """f(c) = Σ_k w_k c^k, k < size (``cos2``: size 3)."""

    def __init__(self, size: int = 3):
        self.size = size
        self.periodic = False
        self.x_min, self.x_max = -1.0, 1.0
        self.n_intervals = 1
        self.h = 2.0

    def evaluate(self, x, derivative: bool = False):
        k = torch.arange(self.size, device=x.device)
        idx = k.expand(len(x), self.size)
        if derivative:
            vals = torch.stack([k_ * x ** max(k_ - 1, 0) if k_ else torch.zeros_like(x)
                                for k_ in range(self.size)], 1)
        else:
            vals = torch.stack([x ** k_ for k_ in range(self.size)], 1)
        return idx, vals

    def value(self, coef, x):
        x = np.asarray(x, dtype=np.float64)
        return sum(float(c) * x ** k for k, c in enumerate(np.asarray(coef).reshape(-1)))

    def second_difference(self):
        return np.zeros((0, self.size))

    def support(self, k):
        return -1.0, 1.0


class ThreeBody:
    """A three-body interaction to fit: ``types`` = (centre, neighbour, neighbour) bead types;
    ``a`` the cutoff (Å), ``gamma`` the range of the radial factor (Å); ``basis`` "spline"
    (B-splines in cos θ with knot ``spacing`` in cos θ) or "cos2"."""

    def __init__(self, types, a: float, gamma: float, basis: str = "spline", spacing: float = 0.1):
        types = tuple(str(t) for t in types)
        if len(types) != 3:
            raise InputError(f"a three-body term needs (centre, neighbour, neighbour) types, got {list(types)}")
        if not (a > 0 and gamma > 0 and math.isfinite(a) and math.isfinite(gamma)):
            raise InputError(f"three-body {'-'.join(types)}: need a > 0 Å and gamma > 0 Å, got a={a}, gamma={gamma}")
        if basis not in ("spline", "cos2"):
            raise InputError(f"three-body basis must be 'spline' or 'cos2', got '{basis}'")
        if basis == "spline" and not (0 < spacing <= 1.0):
            raise InputError(f"three-body spline spacing (in cos θ) must be in (0, 1], got {spacing}")
        self.types = (types[0],) + tuple(sorted(types[1:]))
        self.a, self.gamma, self.basis_kind, self.spacing = float(a), float(gamma), basis, float(spacing)

    @property
    def label(self) -> str:
        return "threebody " + "-".join(self.types)

    def basis(self):
        return BSplineBasis(-1.0, 1.0, self.spacing) if self.basis_kind == "spline" else _PolyBasis(3)

    def config(self) -> dict:
        return {"types": list(self.types), "a": self.a, "gamma": self.gamma, "basis": self.basis_kind,
                "spacing": self.spacing}


class ThreeBodyTerm:
    """A :class:`ThreeBody` with its basis and design-matrix columns (the interface of
    :class:`~cgkit.forcematch.interaction.Term` that the solver uses)."""
    kind = "threebody"

    def __init__(self, spec: ThreeBody, offset: int = 0, basis=None):
        self.spec = spec
        self.basis = basis if basis is not None else spec.basis()
        self.offset = offset

    @property
    def types(self):
        return self.spec.types

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def size(self) -> int:
        return self.basis.size

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    def at(self, offset: int) -> "ThreeBodyTerm":
        return ThreeBodyTerm(self.spec, offset, self.basis)

    def range_str(self, lo, hi) -> str:
        return f"cos θ in [{lo:.3g}, {hi:.3g}]"

    def signature(self) -> list:
        return ["threebody", list(self.types), self.spec.a, self.spec.gamma, self.spec.basis_kind,
                self.spec.spacing]


def radial(r: torch.Tensor, a: float, gamma: float):
    """g(r) = exp(γ/(r - a)) (0 for r ≥ a) and dg/dr."""
    inside = r < a
    d = torch.where(inside, r - a, -torch.ones_like(r))
    g = torch.where(inside, torch.exp(gamma / d), torch.zeros_like(r))
    dg = torch.where(inside, -g * gamma / (d * d), torch.zeros_like(r))
    return g, dg


def triplet_geometry(pos, edge_i, edge_j, shift_vec, species, type_index, spec: ThreeBody, excluded=None):
    """Triplets of one :class:`ThreeBody` from a neighbor list.

    pos (n, 3) Å; edges i → j (both directions present) with Cartesian image offsets
    ``shift_vec`` (E, 3) (r_ij = pos[j] - pos[i] + shift); ``species`` (n,) type indices;
    ``type_index`` {name: index}; ``excluded`` (E,) bool mask of excluded pairs or None.
    Returns (beads (m, 3) [i, j, k], c (m,), G (m,), dc (m, 3, 3), dG (m, 3, 3)): cos θ_jik, the
    radial product and their gradients with respect to the positions of i, j, k.
    """
    from ..potentials.stillinger_weber import triplets_from_edges
    tc = type_index.get(spec.types[0], -1)
    t1 = type_index.get(spec.types[1], -1)
    t2 = type_index.get(spec.types[2], -1)
    u = pos[edge_j] - pos[edge_i] + shift_vec
    r = torch.linalg.norm(u, dim=1)
    keep = (species[edge_i] == tc) & (r < spec.a) & ((species[edge_j] == t1) | (species[edge_j] == t2))
    if excluded is not None:
        keep &= ~excluded
    sel = torch.nonzero(keep).reshape(-1)
    ei, ej, u, r = edge_i[sel], edge_j[sel], u[sel], r[sel]
    e1, e2 = triplets_from_edges(ei, len(pos))
    lo = e1 < e2
    e1, e2 = e1[lo], e2[lo]
    s1, s2 = species[ej[e1]], species[ej[e2]]
    ok = ((s1 == t1) & (s2 == t2)) | ((s1 == t2) & (s2 == t1))
    e1, e2 = e1[ok], e2[ok]
    uu, vv, ru, rv = u[e1], u[e2], r[e1], r[e2]
    c = (uu * vv).sum(1) / (ru * rv)
    dc_du = vv / (ru * rv)[:, None] - c[:, None] * uu / (ru * ru)[:, None]
    dc_dv = uu / (ru * rv)[:, None] - c[:, None] * vv / (rv * rv)[:, None]
    gu, dgu = radial(ru, spec.a, spec.gamma)
    gv, dgv = radial(rv, spec.a, spec.gamma)
    G = gu * gv
    dG_du = (dgu * gv / ru)[:, None] * uu
    dG_dv = (gu * dgv / rv)[:, None] * vv
    beads = torch.stack([ei[e1], ej[e1], ej[e2]], 1)
    dc = torch.stack([-(dc_du + dc_dv), dc_du, dc_dv], 1)
    dG = torch.stack([-(dG_du + dG_dv), dG_du, dG_dv], 1)
    return beads, c.clamp(-1.0, 1.0), G, dc, dG


class ThreeBodyTable:
    """A fitted three-body term: its :class:`ThreeBody` spec and basis coefficients (eV)."""
    kind = "threebody"

    def __init__(self, spec: ThreeBody, coef):
        self.spec = spec
        self.basis = spec.basis()
        self.coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        if len(self.coef) != self.basis.size:
            raise InputError(f"{spec.label}: {len(self.coef)} coefficients for a basis of {self.basis.size}")
        if not np.all(np.isfinite(self.coef)):
            raise InputError(f"{spec.label}: non-finite coefficients")

    types = property(lambda self: self.spec.types)
    label = property(lambda self: self.spec.label)

    def f(self, c):
        """(f(c), df/dc) in eV at cos θ = c (NumPy)."""
        ct = torch.as_tensor(np.asarray(c, dtype=np.float64)).reshape(-1)
        return tuple(v.numpy() for v in self.evaluate(ct))

    def evaluate(self, c: torch.Tensor):
        idx, vals = self.basis.evaluate(c)
        _, der = self.basis.evaluate(c, derivative=True)
        w = torch.as_tensor(self.coef, dtype=c.dtype, device=c.device)[idx]
        return (w * vals).sum(1), (w * der).sum(1)

    def to_dict(self) -> dict:
        return {**self.spec.config(), "coef": self.coef.tolist()}

    @classmethod
    def from_dict(cls, d) -> "ThreeBodyTable":
        return cls(ThreeBody(d["types"], d["a"], d["gamma"], d.get("basis", "spline"), d.get("spacing", 0.1)),
                   d["coef"])


class ThreeBodyPotential(Potential):
    """Three-body tables (:class:`ThreeBodyTable`) plus an optional ``base`` potential (the pair and
    bonded :class:`~cgkit.forcematch.tabulated.TabulatedPotential` of the same fit): energy and
    forces in closed form (what MD asks for), everything else through autograd.

    type_names : bead types; topology : the CG Topology (exclusions; ``n_particles`` for
    replicated systems); tables : list of ThreeBodyTable (or their dicts).
    """

    def __init__(self, type_names, topology, tables, base=None):
        super().__init__()
        from ..topology import Topology
        from .tabulated import TabulatedPotential
        self.type_names = tuple(str(t) for t in type_names)
        if isinstance(topology, dict):
            topology = Topology(**{k: (np.asarray(v) if v is not None and k != "n_particles" else v)
                                   for k, v in topology.items()})
        self.topology = topology
        self.tables3 = [t if isinstance(t, ThreeBodyTable) else ThreeBodyTable.from_dict(t) for t in tables]
        if not self.tables3:
            raise InputError("a ThreeBodyPotential needs at least one three-body table")
        for t in self.tables3:
            missing = [n for n in t.types if n not in self.type_names]
            if missing:
                raise InputError(f"{t.label}: bead types {missing} are not in type_names {list(self.type_names)}")
        if isinstance(base, dict):
            base = TabulatedPotential(**base)
        self.base = base
        self.cutoff = max([t.spec.a for t in self.tables3] + ([base.cutoff] if base is not None else []))
        self._index = {t: k for k, t in enumerate(self.type_names)}

    def get_config(self) -> dict:
        top = self.topology
        return {"type_names": list(self.type_names),
                "topology": {"n_particles": int(top.n_particles), "bonds": top.bonds.tolist(),
                             "angles": top.angles.tolist(), "dihedrals": top.dihedrals.tolist(),
                             "molecule": top.molecule.tolist(), "exclusions": top.exclusions.tolist()},
                "tables": [t.to_dict() for t in self.tables3],
                "base": None if self.base is None else self.base.get_config()}

    @property
    def tables(self):
        """The base potential's pair/bonded tables (for exports and table lookups)."""
        return self.base.tables if self.base is not None else []

    def table(self, kind, types):
        return self.base.table(kind, types)

    def _triplets(self, graph, positions, cell, t: ThreeBodyTable):
        from .tabulated import _shift_vectors
        i, j = graph.edge_index[0], graph.edge_index[1]
        shift = _shift_vectors(graph.cell_shifts, cell, graph.batch[i], positions.dtype)
        n0 = self.topology.n_particles
        excl = None
        if len(self.topology.exclusions):
            excl = self.topology.exclusion_mask(i % n0, j % n0)
        return triplet_geometry(positions, i, j, shift, graph.species, self._index, t.spec, excl)

    def atomic_energies(self, graph, positions, cell):
        out = torch.zeros(graph.n_atoms, dtype=positions.dtype, device=positions.device)
        if self.base is not None:
            out = out + self.base.atomic_energies(graph, positions, cell)
        for t in self.tables3:
            beads, c, G, _, _ = self._triplets(graph, positions, cell, t)
            f, _ = t.evaluate(c)
            out = out.index_add(0, beads[:, 0], f * G)
        return out

    def compute(self, graph, *, forces: bool = True, stress: bool = False, atomic: bool = False,
                create_graph: bool = False) -> dict:
        """As :meth:`Potential.compute`; energy + forces alone in closed form."""
        if not forces or stress or atomic or create_graph:
            return super().compute(graph, forces=forces, stress=stress, atomic=atomic, create_graph=create_graph)
        if graph.cutoff + 1e-9 < self.cutoff:
            raise InputError(f"the graph was built with cutoff {graph.cutoff} Å, but this potential needs "
                             f"{self.cutoff} Å; build it with potential.graph(atoms)")
        from ..potential import scatter_sum
        with torch.no_grad():
            pos = graph.positions
            cell = graph.cell.to(pos.dtype)
            if self.base is not None:
                base = self.base.compute(graph, forces=True)
                E, F = base["energy"].clone(), base["forces"].clone().to(pos.dtype)
            else:
                E = torch.zeros(graph.n_graphs, dtype=pos.dtype, device=pos.device)
                F = torch.zeros_like(pos)
            for t in self.tables3:
                beads, c, G, dc, dG = self._triplets(graph, pos, cell, t)
                if len(c) == 0:
                    continue
                f, df = t.evaluate(c)
                grad = df[:, None, None] * G[:, None, None] * dc + f[:, None, None] * dG  # dE/dr_b
                for col in range(3):
                    F.index_add_(0, beads[:, col], -grad[:, col])
                E = E + scatter_sum(f * G, graph.batch[beads[:, 0]], graph.n_graphs)
        return {"energy": E, "forces": F}
