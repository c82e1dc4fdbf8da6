"""Tabulated CG potential: pair, bond, angle and dihedral tables as a cgkit Potential.

Every table holds the potential U (eV) and its derivative dU/dx on a uniform grid of the
internal coordinate x (pairs and bonds: distance in Å; angles and dihedrals: rad). Between
grid points U is the cubic Hermite interpolant of (U, dU/dx), so the forces are exactly the
derivative of the energy (energy is conserved in MD) and equal the tabulated forces at the grid
points. Energy + forces (the MD case) are evaluated in closed form, F = -U'(x) ∂x/∂r with the
analytic bond/angle/dihedral gradients; stress, Hessians and training graphs use autograd
through :meth:`Potential.compute` (the tests check that both routes agree to 1e-11).

Outside a table's range:

* pairs: U = 0 beyond the last grid point (the cutoff); below the first point the potential
  continues linearly (constant force, repulsive for a sensible table);
* bonds and angles: linear continuation (constant force) on both sides;
* dihedrals: periodic with period 2π (tables must cover exactly one period).

Damped dihedrals (``Table(..., damping="sin3")``, opt-in per dihedral table): the energy of an
instance is U(φ)·sin³θ₁·sin³θ₂, with θ₁ (θ₂) the bond angle at the second (third) bead — the
restricted/"combined bending-torsion" form of Bulacu et al., J. Chem. Theory Comput. 9, 3282
(2013). The factor vanishes with the third power of sin θ as a triplet becomes collinear, where
φ is undefined and ∂φ/∂r diverges as 1/sin θ; the product stays smooth and its forces bounded
(zero at exactly collinear triplets). The constant of U then matters (it multiplies a
non-constant factor), so a damped table's U is kept as fitted, not shifted to a zero minimum.

The potential is bound to a bonded :class:`~cgkit.topology.Topology` of ``n_particles`` beads;
graphs holding several replicas of the system (``n_atoms = R · n_particles``) are handled.
Non-bonded pairs listed in ``topology.exclusions`` get no pair interaction.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..potential import Potential
from ..topology import Topology
from .geometry import ARITY, KINDS, bonded_x, type_key, type_label

__all__ = ["Table", "TabulatedPotential", "hermite", "write_table_files", "bonded_x_and_gradients",
           "DAMPINGS", "damped_dihedral_terms", "damped_dihedral_energy"]

#: dihedral damping factors: "sin3" = sin³θ₁·sin³θ₂ of the two bond angles (Bulacu et al. 2013)
DAMPINGS = ("sin3",)


class Table:
    """One interaction table.

    kind: "pair" | "bond" | "angle" | "dihedral"; types: bead type names (canonical order);
    x0: first grid point (Å or rad); dx: spacing; U: (N,) eV; dU: (N,) dU/dx (eV/Å or eV/rad),
    i.e. minus the generalised force. damping: None, or "sin3" for a dihedral whose energy is
    U(φ)·sin³θ₁·sin³θ₂ (see the module docstring; U and dU are then the undamped U(φ), U').
    """

    def __init__(self, kind, types, x0, dx, U, dU, damping=None):
        if kind not in KINDS:
            raise InputError(f"table kind must be one of {KINDS}, got '{kind}'")
        if len(types) != ARITY[kind]:
            raise InputError(f"a {kind} table needs {ARITY[kind]} type names, got {types}")
        self.kind, self.types = kind, type_key(kind, types)
        self.x0, self.dx = float(x0), float(dx)
        self.U = np.asarray(U, dtype=np.float64)
        self.dU = np.asarray(dU, dtype=np.float64)
        if self.U.shape != self.dU.shape or self.U.ndim != 1 or len(self.U) < 2:
            raise InputError(f"{self.label}: U and dU must be 1-D arrays of equal length ≥ 2")
        if not (self.dx > 0):
            raise InputError(f"{self.label}: grid spacing must be > 0")
        if not (np.all(np.isfinite(self.U)) and np.all(np.isfinite(self.dU))):
            raise InputError(f"{self.label}: the table holds NaN/inf values")
        if kind == "dihedral" and abs((len(self.U) - 1) * self.dx - 2 * math.pi) > 1e-6:
            raise InputError(f"{self.label}: a dihedral table must span exactly 2π rad "
                             f"(got {(len(self.U) - 1) * self.dx:.6f})")
        if damping is not None and damping not in DAMPINGS:
            raise InputError(f"{self.label}: unknown damping '{damping}'; use one of {DAMPINGS} or None")
        if damping is not None and kind != "dihedral":
            raise InputError(f"{self.label}: damping ('{damping}') is only for dihedral tables")
        self.damping = damping

    @property
    def label(self) -> str:
        return type_label(self.kind, self.types)

    @property
    def x(self) -> np.ndarray:
        return self.x0 + self.dx * np.arange(len(self.U))

    @property
    def x_max(self) -> float:
        return self.x0 + self.dx * (len(self.U) - 1)

    @property
    def force(self) -> np.ndarray:
        """Generalised force f = -dU/dx on the grid."""
        return -self.dU

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "types": list(self.types), "x0": self.x0, "dx": self.dx,
             "U": self.U.tolist(), "dU": self.dU.tolist()}
        if self.damping is not None:
            d["damping"] = self.damping
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Table":
        return cls(d["kind"], d["types"], d["x0"], d["dx"], d["U"], d["dU"], damping=d.get("damping"))

    def __call__(self, x):
        """(U, f) at x (NumPy), with the same interpolation/extrapolation as the potential
        (for a damped dihedral: the undamped U(φ) and -dU/dφ)."""
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64)).requires_grad_(True)
        U = hermite(xt, torch.zeros_like(xt, dtype=torch.long), *_pack([self], torch.float64),
                    periodic=self.kind == "dihedral", zero_beyond=self.kind == "pair")
        (g,) = torch.autograd.grad(U.sum(), xt)
        return U.detach().numpy(), -g.numpy()


def write_table_files(tables, directory, errors=None) -> list:
    """One text table per interaction in ``directory``: ``<kind>_<T1>-<T2>[...].dat`` with
    columns x (Å, or deg for angles/dihedrals), U (eV), f = -dU/dx (eV/Å or eV/rad) and, when
    ``errors`` (a list of arrays or None per table) is given, the error of f, written as -1
    where there is no estimate (a fixed table, a wall beyond the sampled range, fewer than two
    jackknife blocks) so that the files hold no NaN. Returns the paths."""
    from pathlib import Path
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    errors = list(errors) if errors is not None else None
    paths = []
    for k, t in enumerate(tables):
        angular = t.kind in ("angle", "dihedral")
        x = np.degrees(t.x) if angular else t.x
        cols = [x, t.U, t.force]
        head = (f"{t.label}: x ({'deg' if angular else 'Å'}), U (eV), f = -dU/dx "
                f"({'eV/rad' if angular else 'eV/Å'})")
        if errors is not None:
            err = np.full(len(x), -1.0) if errors[k] is None else np.asarray(errors[k], dtype=float).copy()
            err[~np.isfinite(err)] = -1.0
            cols.append(err)
            head += ", jackknife error of f (-1: no estimate)"
        if t.damping is not None:
            head += f"; damping {t.damping}: energy U(phi)*sin^3(theta1)*sin^3(theta2)"
        p = d / f"{t.kind}_{'-'.join(t.types)}.dat"
        np.savetxt(p, np.column_stack(cols), header=head)
        paths.append(p)
    return paths


def _pack(tables, dtype):
    """Flat arrays of several tables: x0 (T,), dx (T,), n (T,), offset (T,), U (ΣN,), dU (ΣN,),
    and the cubic coefficients (ΣN, 4) of every interval (row k: interval [x_k, x_k+1])."""
    x0 = torch.tensor([t.x0 for t in tables], dtype=dtype)
    dx = torch.tensor([t.dx for t in tables], dtype=dtype)
    n = torch.tensor([len(t.U) for t in tables], dtype=torch.long)
    off = torch.tensor(np.concatenate([[0], np.cumsum([len(t.U) for t in tables])[:-1]]), dtype=torch.long)
    U = torch.tensor(np.concatenate([t.U for t in tables]), dtype=dtype)
    dU = torch.tensor(np.concatenate([t.dU for t in tables]), dtype=dtype)
    coef = []
    for t in tables:
        Ua, Ub = t.U[:-1], t.U[1:]
        ga, gb = t.dx * t.dU[:-1], t.dx * t.dU[1:]
        c = np.stack([Ua, ga, -3 * Ua - 2 * ga + 3 * Ub - gb, 2 * Ua + ga - 2 * Ub + gb], 1)
        coef.append(np.concatenate([c, np.zeros((1, 4))]))
    C = torch.tensor(np.concatenate(coef), dtype=dtype)
    return x0, dx, n, off, U, dU, C


def hermite(x, tid, x0, dx, n, off, U, dU, C, *, periodic=False, zero_beyond=False, derivative=False):
    """U(x) of instances with table ids ``tid`` from packed tables (cubic Hermite inside,
    linear outside, or periodic / zero beyond the end as requested). Differentiable in x.
    With ``derivative=True`` returns (U, dU/dx) in closed form (no autograd)."""
    x0, h, nt, o = x0[tid], dx[tid], n[tid], off[tid]
    last = (nt - 1).to(x.dtype)
    if periodic:
        x = x0 + torch.remainder(x - x0, h * last)
    u = (x - x0) / h
    i = torch.minimum(torch.clamp(torch.floor(u.detach()).long(), min=0), nt - 2)
    t = (u - i.to(u.dtype)).clamp(0.0, 1.0)
    c = C[o + i]
    val = ((c[:, 3] * t + c[:, 2]) * t + c[:, 1]) * t + c[:, 0]
    der = ((3 * c[:, 3] * t + 2 * c[:, 2]) * t + c[:, 1]) / h if derivative else None
    below = u < 0
    if bool(below.any()):  # linear continuation below the grid
        val = torch.where(below, U[o] + dU[o] * (x - x0), val)
        if derivative:
            der = torch.where(below, dU[o], der)
    above = u > last
    if bool(above.any()):
        if zero_beyond:
            val = torch.where(above, torch.zeros_like(val), val)
            if derivative:
                der = torch.where(above, torch.zeros_like(der), der)
        else:
            e = o + nt - 1
            val = torch.where(above, U[e] + dU[e] * (x - x0 - h * last), val)
            if derivative:
                der = torch.where(above, dU[e], der)
    return (val, der) if derivative else val


class TabulatedPotential(Potential):
    """Pair + bonded tabulated potential of a CG system (see module docstring).

    Parameters
    ----------
    type_names : bead type names, in the order of ``graph.species``
    topology : :class:`Topology` (bonds, angles, dihedrals, exclusions) of one system copy
    tables : list of :class:`Table` (or their dicts); at most one per kind and type tuple.
        Bonded instances whose type has no table get no energy; so do pairs.
    """

    def __init__(self, type_names, topology: Topology | dict, tables):
        super().__init__()
        self.type_names = tuple(str(t) for t in type_names)
        if isinstance(topology, dict):
            topology = Topology(**{k: (np.asarray(v) if v is not None and k != "n_particles" else v)
                                   for k, v in topology.items()})
        self.topology = topology
        tables = [t if isinstance(t, Table) else Table.from_dict(t) for t in tables]
        lookup = {t: k for k, t in enumerate(self.type_names)}
        seen = set()
        for t in tables:
            missing = [n for n in t.types if n not in lookup]
            if missing:
                raise InputError(f"{t.label}: bead types {missing} are not in type_names {list(self.type_names)}")
            if (t.kind, t.types) in seen:
                raise InputError(f"two tables for {t.label}; give one per interaction type")
            seen.add((t.kind, t.types))
        self.tables = tables
        pair_tables = [t for t in tables if t.kind == "pair"]
        self.cutoff = max([t.x_max for t in pair_tables], default=0.0)
        nt = len(self.type_names)
        pair_id = -torch.ones(nt, nt, dtype=torch.long)
        for k, t in enumerate(pair_tables):
            a, b = lookup[t.types[0]], lookup[t.types[1]]
            pair_id[a, b] = pair_id[b, a] = k
        self.register_buffer("pair_id", pair_id, persistent=False)
        self._packed = {}
        self._instances = {}
        for kind in KINDS:
            ts = [t for t in tables if t.kind == kind]
            if ts:
                self._packed[kind] = _pack(ts, torch.float64)
            if kind == "pair":
                continue
            idx = getattr(topology, kind + "s")
            tid_of = {t.types: k for k, t in enumerate(ts)}
            if len(idx) and ts:
                self._instances[kind] = (torch.as_tensor(idx), tid_of)
        dih = [t for t in tables if t.kind == "dihedral"]
        #: per dihedral table id: True where the table is sin³-damped (None: no damped table)
        self._damped = (torch.tensor([t.damping == "sin3" for t in dih], dtype=torch.bool)
                        if any(t.damping is not None for t in dih) else None)
        self._species_cache = None

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        top = self.topology
        return {"type_names": list(self.type_names),
                "topology": {"n_particles": int(top.n_particles), "bonds": top.bonds.tolist(),
                             "angles": top.angles.tolist(), "dihedrals": top.dihedrals.tolist(),
                             "molecule": top.molecule.tolist(), "exclusions": top.exclusions.tolist()},
                "tables": [t.to_dict() for t in self.tables]}

    def table(self, kind: str, types) -> Table:
        """The table of one interaction type (``types`` in any direction)."""
        key = type_key(kind, types)
        for t in self.tables:
            if t.kind == kind and t.types == key:
                return t
        raise InputError(f"no {type_label(kind, key)} table; available: {[t.label for t in self.tables]}")

    # ------------------------------------------------------------------ energy
    def _packed_as(self, kind, dtype, device):
        key = (kind, dtype, str(device))
        cache = self.__dict__.setdefault("_packed_cache", {})
        if key not in cache:
            cache[key] = [p.to(device=device, dtype=dtype) if p.is_floating_point() else p.to(device)
                          for p in self._packed[kind]]
        return cache[key]

    def _pairs(self, graph, n0: int):
        """(i, j, shifts, table id) of the half list of non-excluded pairs with a table."""
        cache = self.__dict__.get("_pair_cache")
        if cache is not None and cache[0] is graph.edge_index and cache[1] is graph.species:
            return cache[2]
        i, j = graph.edge_index[0], graph.edge_index[1]
        S = graph.cell_shifts
        # half list: i < j, and for an atom's own periodic images the shift with positive sign
        first = torch.where(S[:, 0] != 0, S[:, 0], torch.where(S[:, 1] != 0, S[:, 1], S[:, 2]))
        keep = (i < j) | ((i == j) & (first > 0))
        tid = self.pair_id.to(i.device)[graph.species[i], graph.species[j]]
        keep &= tid >= 0
        if len(self.topology.exclusions):
            keep &= ~self.topology.exclusion_mask(i % n0, j % n0)
        keep &= graph.batch[i] == graph.batch[j]
        val = (i[keep], j[keep], S[keep], tid[keep])
        self.__dict__["_pair_cache"] = (graph.edge_index, graph.species, val)
        return val

    def _bonded_tid(self, kind, species_names_idx: torch.Tensor, idx: torch.Tensor, tid_of: dict):
        """Table id (or -1) of every bonded instance given the species of its beads."""
        names = self.type_names
        sp = species_names_idx[idx].tolist()
        out = [tid_of.get(type_key(kind, tuple(names[s] for s in row)), -1) for row in sp]
        return torch.as_tensor(out, dtype=torch.long)

    def compute(self, graph, *, forces: bool = True, stress: bool = False, atomic: bool = False,
                create_graph: bool = False) -> dict:
        """As :meth:`Potential.compute`; energy + forces alone (what MD asks for) take a
        closed-form path: F = -dU/dx ∂x/∂r per instance, without an autograd graph (about
        twice as fast for CG systems of a few thousand beads). Stress, per-atom energies and
        ``create_graph`` go through autograd."""
        if not forces or stress or atomic or create_graph:
            return super().compute(graph, forces=forces, stress=stress, atomic=atomic,
                                   create_graph=create_graph)
        with torch.no_grad():
            e_atom, F = self._energy_forces(graph)
        from ..potential import scatter_sum
        return {"energy": scatter_sum(e_atom, graph.batch, graph.n_graphs), "forces": F}

    def _energy_forces(self, graph):
        """Per-atom energies (n,) eV and forces (n, 3) eV/Å in closed form."""
        n = graph.n_atoms
        n0 = self.topology.n_particles
        if n % n0 != 0:
            raise InputError(f"this potential was built for a system of {n0} beads (its topology); "
                             f"the structure has {n}")
        pos = graph.positions
        dtype, dev = pos.dtype, pos.device
        cell = graph.cell.to(dtype)
        pbc = graph.pbc[0]
        e_atom = torch.zeros(n, dtype=dtype, device=dev)
        F = torch.zeros(n, 3, dtype=dtype, device=dev)
        if "pair" in self._packed:
            self._check_cutoff(graph)
            i, j, S, tid = self._pairs(graph, n0)
            d = pos[j] - pos[i] + _shift_vectors(S, cell, graph.batch[i], dtype)
            r = torch.linalg.norm(d, dim=1)
            e, de = hermite(r, tid, *self._packed_as("pair", dtype, dev), zero_beyond=True, derivative=True)
            g = (de / r)[:, None] * d  # ∂U/∂r_j = -∂U/∂r_i
            F.index_add_(0, i, g).index_add_(0, j, -g)
            e_atom.index_add_(0, i, 0.5 * e).index_add_(0, j, 0.5 * e)
        for kind, (idx, tid) in self._bonded_instances(graph, n0).items():
            if len(idx) == 0:
                continue
            idx, tid = idx.to(dev), tid.to(dev)
            e, grads = self.bonded_energy_gradients(kind, pos, idx, tid, cell, pbc, graph.batch[idx[:, 0]])
            k = idx.shape[1]
            for c in range(k):
                F.index_add_(0, idx[:, c], -grads[:, c])
                e_atom.index_add_(0, idx[:, c], e / k)
        return e_atom, F

    def bonded_energy_gradients(self, kind, pos, idx, tid, cell, pbc, graph_of):
        """Energies e (m,) eV and gradients ∂e/∂r_b (m, arity, 3) eV/Å of bonded instances
        ``idx`` (m, arity) with table ids ``tid`` (m,) in closed form (no autograd); dihedrals
        of damped tables get U(φ)·sin³θ₁·sin³θ₂ and its product-rule gradient. Shared by
        :meth:`compute` and the compiled MD path (:func:`.pair_kernel.bonded_energy_forces`)."""
        packed = self._packed_as(kind, pos.dtype, pos.device)
        damped = self._damped.to(pos.device)[tid] if (kind == "dihedral" and self._damped is not None) else None
        if damped is None or not bool(damped.any()):
            x, grads = bonded_x_and_gradients(kind, pos, idx, cell, pbc, graph_of)
            e, de = hermite(x, tid, *packed, periodic=kind == "dihedral", derivative=True)
            return e, de[:, None, None] * grads
        phi, s, s_grad_phi, grad_s, grad_phi = damped_dihedral_terms(pos, idx, cell, pbc, graph_of)
        e, de = hermite(phi, tid, *packed, periodic=True, derivative=True)
        dm = damped[:, None, None]
        g_damped = de[:, None, None] * s_grad_phi + e[:, None, None] * grad_s
        # undamped instances of the same call: the plain gradient (their s is not applied)
        g_plain = de[:, None, None] * torch.where(dm, torch.zeros_like(grad_phi), grad_phi)
        return torch.where(damped, e * s, e), torch.where(dm, g_damped, g_plain)

    def _check_cutoff(self, graph):
        if graph.cutoff + 1e-9 < self.cutoff:
            raise InputError(f"the graph was built with cutoff {graph.cutoff} Å, but this potential "
                             f"needs {self.cutoff} Å; build it with potential.graph(atoms)")

    def _bonded_instances(self, graph, n0: int) -> dict:
        """{kind: (instances (m, arity) over all replicas, table ids (m,))}, cached per species."""
        R = graph.n_atoms // n0
        key = (tuple(graph.species[:n0].tolist()), R)
        if self._species_cache is None or self._species_cache[0] != key:
            cache = {}
            for kind, (idx, tid_of) in self._instances.items():
                tid = self._bonded_tid(kind, graph.species[:n0].cpu(), idx, tid_of)
                keep = tid >= 0
                base, tid = idx[keep], tid[keep]
                offs = (torch.arange(R) * n0)[:, None, None]
                cache[kind] = ((base[None] + offs).reshape(-1, base.shape[1]), tid.repeat(R))
            self._species_cache = (key, cache)
        return self._species_cache[1]

    def atomic_energies(self, graph, positions, cell):
        n = graph.n_atoms
        n0 = self.topology.n_particles
        if n % n0 != 0:
            raise InputError(f"this potential was built for a system of {n0} beads (its topology); "
                             f"the structure has {n}")
        dtype, dev = positions.dtype, positions.device
        out = torch.zeros(n, dtype=dtype, device=dev)
        pbc = graph.pbc[0]
        # ---- pairs (half list of non-excluded typed pairs, cached while the edges are unchanged)
        if "pair" in self._packed:
            self._check_cutoff(graph)
            i, j, S, tid = self._pairs(graph, n0)
            off = _shift_vectors(S, cell, graph.batch[i], dtype)
            r = torch.linalg.norm(positions[j] - positions[i] + off, dim=1)
            e = hermite(r, tid, *self._packed_as("pair", dtype, dev), zero_beyond=True)
            out = out.index_add(0, i, 0.5 * e).index_add(0, j, 0.5 * e)
        # ---- bonded
        for kind, (idx, tid) in self._bonded_instances(graph, n0).items():
            if len(idx) == 0:
                continue
            idx, tid = idx.to(dev), tid.to(dev)
            if kind == "dihedral" and self._damped is not None:
                damped = self._damped.to(dev)[tid]
                x, s = damped_dihedral_energy(positions, idx, cell, pbc, graph.batch[idx[:, 0]])
                e = hermite(x, tid, *self._packed_as(kind, dtype, dev), periodic=True)
                e = torch.where(damped, e * s, e)
            else:
                x = bonded_x(kind, positions, idx, cell, pbc, graph.batch[idx[:, 0]])
                e = hermite(x, tid, *self._packed_as(kind, dtype, dev), periodic=kind == "dihedral")
            k = idx.shape[1]
            for c in range(k):
                out = out.index_add(0, idx[:, c], e / k)
        return out


def _shift_vectors(S, cell, graph_of, dtype):
    """Cartesian image offsets S·cell (m, 3) Å of pair shifts S (m, 3) with cell (3, 3) or (G, 3, 3)."""
    c = cell if cell.dim() == 3 else cell.unsqueeze(0)
    if c.shape[0] == 1:
        return S.to(dtype) @ c[0]
    return torch.einsum("ek,ekl->el", S.to(dtype), c[graph_of])


def bonded_x_and_gradients(kind, pos, idx, cell, pbc, graph_of):
    """Internal coordinate x (m,) (Å or rad) of bonded instances ``idx`` (m, arity) and its
    gradient ∂x/∂r_b (m, arity, 3) in closed form (the same conventions as
    :func:`cgkit.forcematch.geometry.bonded_x`: θ at the middle bead, IUPAC dihedrals)."""
    from .geometry import minimum_image
    if kind == "bond":
        d = minimum_image(pos[idx[:, 1]] - pos[idx[:, 0]], cell, pbc, graph_of)
        r = torch.linalg.norm(d, dim=1)
        u = d / r[:, None]
        return r, torch.stack([-u, u], 1)
    if kind == "angle":
        b1 = minimum_image(pos[idx[:, 0]] - pos[idx[:, 1]], cell, pbc, graph_of)
        b2 = minimum_image(pos[idx[:, 2]] - pos[idx[:, 1]], cell, pbc, graph_of)
        n1 = torch.linalg.norm(b1, dim=1)
        n2 = torch.linalg.norm(b2, dim=1)
        cos = (b1 * b2).sum(1) / (n1 * n2)
        eps = 1e-12 if pos.dtype == torch.float64 else 1e-6
        clamped = cos.clamp(-1.0 + eps, 1.0 - eps)
        theta = torch.acos(clamped)
        # dθ/dcos = -1/sin θ; zero where the cosine is clamped (as autograd through the clamp)
        dtheta = torch.where(clamped == cos, -1.0 / torch.sqrt(1.0 - cos * cos).clamp_min(eps),
                             torch.zeros_like(cos))
        g1 = (b2 / (n1 * n2)[:, None] - cos[:, None] * b1 / (n1 * n1)[:, None]) * dtheta[:, None]
        g3 = (b1 / (n1 * n2)[:, None] - cos[:, None] * b2 / (n2 * n2)[:, None]) * dtheta[:, None]
        return theta, torch.stack([g1, -(g1 + g3), g3], 1)
    if kind == "dihedral":
        from .geometry import dihedral_from_vectors
        b1 = minimum_image(pos[idx[:, 1]] - pos[idx[:, 0]], cell, pbc, graph_of)
        b2 = minimum_image(pos[idx[:, 2]] - pos[idx[:, 1]], cell, pbc, graph_of)
        b3 = minimum_image(pos[idx[:, 3]] - pos[idx[:, 2]], cell, pbc, graph_of)
        phi = dihedral_from_vectors(b1, b2, b3)
        m = torch.cross(b1, b2, dim=1)  # normal of the i-j-k plane
        nn = torch.cross(b2, b3, dim=1)  # normal of the j-k-l plane
        lb2 = torch.linalg.norm(b2, dim=1)
        m2 = (m * m).sum(1)
        n2 = (nn * nn).sum(1)
        # Blondel & Karplus, J. Comput. Chem. 17, 1132 (1996), in bonded_x's convention
        # (IUPAC, trans = π); translation invariance: the four gradients sum to zero
        gi = (-lb2 / m2)[:, None] * m
        gl = (lb2 / n2)[:, None] * nn
        p = ((b1 * b2).sum(1) / (lb2 * lb2))[:, None]
        q = ((b3 * b2).sum(1) / (lb2 * lb2))[:, None]
        gj = -(1.0 + p) * gi + q * gl
        gk = p * gi - (1.0 + q) * gl
        return phi, torch.stack([gi, gj, gk, gl], 1)
    raise ValueError(kind)


def _dihedral_vectors(pos, idx, cell, pbc, graph_of):
    from .geometry import minimum_image
    b1 = minimum_image(pos[idx[:, 1]] - pos[idx[:, 0]], cell, pbc, graph_of)
    b2 = minimum_image(pos[idx[:, 2]] - pos[idx[:, 1]], cell, pbc, graph_of)
    b3 = minimum_image(pos[idx[:, 3]] - pos[idx[:, 2]], cell, pbc, graph_of)
    return b1, b2, b3


def damped_dihedral_energy(pos, idx, cell, pbc, graph_of):
    """φ (m,) rad and the damping factor s = sin³θ₁·sin³θ₂ (m,) of dihedral instances ``idx``
    (m, 4), differentiable by autograd everywhere, also at exactly collinear triplets (there
    s = 0 and φ is taken as 0 with a finite gradient, so U(φ)·s has the gradient of the limit).
    θ₁ is the angle at bead 2 (i-j-k), θ₂ at bead 3 (j-k-l); sin²θ = |a×b|²/(|a|²|b|²)."""
    b1, b2, b3 = _dihedral_vectors(pos, idx, cell, pbc, graph_of)
    n1 = torch.cross(b1, b2, dim=1)
    n2 = torch.cross(b2, b3, dim=1)
    l1, l2, l3 = (b1 * b1).sum(1), (b2 * b2).sum(1), (b3 * b3).sum(1)
    q1 = (n1 * n1).sum(1) / (l1 * l2)
    q2 = (n2 * n2).sum(1) / (l2 * l3)
    s = (q1 * q2) ** 1.5
    m1 = torch.cross(n1, b2 / torch.sqrt(l2)[:, None], dim=1)
    x = (n1 * n2).sum(1)
    y = (m1 * n2).sum(1)
    deg = (x * x + y * y) == 0  # a collinear triplet: φ undefined, s = 0
    phi = -torch.atan2(torch.where(deg, torch.zeros_like(y), y), torch.where(deg, torch.ones_like(x), x))
    return phi, s


def damped_dihedral_terms(pos, idx, cell, pbc, graph_of):
    """Closed-form pieces of a sin³-damped dihedral (no autograd): φ (m,) rad (IUPAC, as
    :func:`bonded_x_and_gradients`), s = sin³θ₁ sin³θ₂ (m,), s·∂φ/∂r_b (m, 4, 3) 1/Å (finite
    also where ∂φ/∂r alone diverges), ∂s/∂r_b (m, 4, 3) 1/Å, and ∂φ/∂r_b (m, 4, 3) (NaN-free:
    zero at exactly collinear triplets). The energy U(φ)·s has the gradient
    U'(φ)·s∂φ/∂r + U(φ)·∂s/∂r."""
    b1, b2, b3 = _dihedral_vectors(pos, idx, cell, pbc, graph_of)
    m = torch.cross(b1, b2, dim=1)
    nn = torch.cross(b2, b3, dim=1)
    l1, l2, l3 = (b1 * b1).sum(1), (b2 * b2).sum(1), (b3 * b3).sum(1)
    lb2 = torch.sqrt(l2)
    m2, n2 = (m * m).sum(1), (nn * nn).sum(1)
    q1, q2 = m2 / (l1 * l2), n2 / (l2 * l3)
    s = (q1 * q2) ** 1.5
    # φ as in geometry.dihedral_from_vectors, with the degenerate case made finite
    m1 = torch.cross(m, b2 / lb2[:, None], dim=1)
    x, y = (m * nn).sum(1), (m1 * nn).sum(1)
    deg = (x * x + y * y) == 0
    phi = -torch.atan2(torch.where(deg, torch.zeros_like(y), y), torch.where(deg, torch.ones_like(x), x))
    # Blondel–Karplus gradient (see bonded_x_and_gradients) and s times it: s/m2 = √q1 q2^{3/2}/(l1 l2)
    p = ((b1 * b2).sum(1) / l2)[:, None]
    q = ((b3 * b2).sum(1) / l2)[:, None]

    def assemble(gi, gl):
        return torch.stack([gi, -(1.0 + p) * gi + q * gl, p * gi - (1.0 + q) * gl, gl], 1)

    s_gi = (-lb2 * torch.sqrt(q1) * q2 ** 1.5 / (l1 * l2))[:, None] * m
    s_gl = (lb2 * torch.sqrt(q2) * q1 ** 1.5 / (l2 * l3))[:, None] * nn
    s_grad_phi = assemble(s_gi, s_gl)
    safe_m2 = torch.where(m2 > 0, m2, torch.ones_like(m2))
    safe_n2 = torch.where(n2 > 0, n2, torch.ones_like(n2))
    grad_phi = assemble((-lb2 / safe_m2)[:, None] * m * (m2 > 0)[:, None],
                        (lb2 / safe_n2)[:, None] * nn * (n2 > 0)[:, None])
    # ∂q/∂a, ∂q/∂b of q = 1 - (a·b)²/(|a|²|b|²): -2c (b/(|a||b|) - c a/|a|²), c = cos
    def dq(a, b, la, lb):
        ab = (a * b).sum(1)
        da = -2.0 * (ab / (la * lb))[:, None] * (b - (ab / la)[:, None] * a)
        db = -2.0 * (ab / (la * lb))[:, None] * (a - (ab / lb)[:, None] * b)
        return da, db
    d1a, d1b = dq(b1, b2, l1, l2)  # q1 in b1, b2
    d2a, d2b = dq(b2, b3, l2, l3)  # q2 in b2, b3
    # s = q1^{3/2} q2^{3/2}: ∂s = 3/2 √q1 q2^{3/2} ∂q1 + 3/2 q1^{3/2} √q2 ∂q2
    w1 = (1.5 * torch.sqrt(q1) * q2 ** 1.5)[:, None]
    w2 = (1.5 * q1 ** 1.5 * torch.sqrt(q2))[:, None]
    g1, g2, g3 = w1 * d1a, w1 * d1b + w2 * d2a, w2 * d2b  # ∂s/∂b1, ∂s/∂b2, ∂s/∂b3
    grad_s = torch.stack([-g1, g1 - g2, g2 - g3, g3], 1)
    return phi, s, s_grad_phi, grad_s, grad_phi
