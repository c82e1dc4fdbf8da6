"""The Potential interface: anything that maps an AtomicGraph to a total energy.

A subclass implements one method, :meth:`Potential.atomic_energies` — per-atom energies (eV)
as a differentiable function of positions and cell. Everything derived is computed here,
once, by autograd, for every potential:

* forces ``F = -∂E/∂r`` (eV/Å), conservative by construction;
* virial and stress from a symmetric strain ε applied to positions and cell,
  ``σ = (1/V) ∂E/∂ε`` (eV/Å³, ASE's sign convention: positive = tensile);
* the Hessian ``∂²E/∂r∂r`` (eV/Å², 3n × 3n), optionally extended by the 6 independent
  strain components (mixed ∂²E/∂r∂ε and ∂²E/∂ε∂ε, used for analytic elastic constants).

Sums of potentials (a prior plus a network) are potentials too: ``p1 + p2``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

import torch

from .data import AtomicGraph
from .errors import InputError, NotSupportedError

__all__ = ["Potential", "SumPotential", "scatter_sum", "VOIGT_PAIRS", "describe", "build",
           "save_potential", "FORMAT", "FORMAT_VERSION", "UNITS"]

#: the potential file format (read by :func:`cgkit.io_potential.load_potential`)
FORMAT = "cgkit-potential"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Å", "force": "eV/Å", "stress": "eV/Å³", "mass": "amu"}

#: Voigt order of the independent strain components: xx, yy, zz, yz, xz, xy
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def scatter_sum(src: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Sum rows of ``src`` into ``size`` bins given by ``index`` (differentiable)."""
    out = torch.zeros((size,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


def _voigt_basis(dtype, device=None) -> torch.Tensor:
    """(6, 3, 3): symmetric strain tensor of unit Voigt *engineering* strain η_k.

    Diagonal components carry ε_aa = η_k; shear components carry ε_ab = ε_ba = η_k / 2,
    so that σ_k = (1/V) ∂E/∂η_k and C_kl = (1/V) ∂²E/∂η_k∂η_l in Voigt notation.
    """
    B = torch.zeros(6, 3, 3, dtype=dtype, device=device)
    for k, (a, b) in enumerate(VOIGT_PAIRS):
        if a == b:
            B[k, a, a] = 1.0
        else:
            B[k, a, b] = B[k, b, a] = 0.5
    return B


def _voigt_strain(eta: torch.Tensor) -> torch.Tensor:
    """(G, 6) Voigt engineering strains → (G, 3, 3) symmetric strain tensors."""
    return torch.einsum("gk,kab->gab", eta, _voigt_basis(eta.dtype, eta.device))


class Potential(torch.nn.Module):
    """Base class. Subclasses set ``cutoff`` (Å) and implement :meth:`atomic_energies`.

    ``type_names``: the species (element symbols or bead types) the potential is built for,
    in the order of ``graph.species``; ``None`` means it works from ``atomic_numbers`` or
    accepts any types.
    """

    cutoff: float = 0.0
    type_names: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        """Constructor arguments (JSON-serialisable) that rebuild this potential."""
        raise NotSupportedError(f"{type(self).__name__} cannot be saved (no get_config)")

    @classmethod
    def from_config(cls, config: dict) -> "Potential":
        return cls(**config)

    def save(self, path, metadata: dict | None = None) -> None:
        """Write one file holding class, config, weights and metadata (see
        :func:`cgkit.io_potential.load_potential`)."""
        save_potential(self, path, metadata)

    # ------------------------------------------------------------------ to implement
    def atomic_energies(self, graph: AtomicGraph, positions: torch.Tensor,
                        cell: torch.Tensor) -> torch.Tensor:
        """(n_atoms,) eV. ``positions`` (n, 3) and ``cell`` (G, 3, 3) may differ from the
        graph's (strained copies carrying gradients): always build geometry from them, e.g.
        with :meth:`neighbor_edges`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.float64

    def graph(self, atoms, *, dtype: torch.dtype | None = None, cutoff: float | None = None) -> AtomicGraph:
        """An AtomicGraph of ASE ``atoms`` with this potential's cutoff, types and dtype."""
        return AtomicGraph.from_atoms(atoms, cutoff or self.cutoff, type_names=self.type_names,
                                      dtype=dtype or self.dtype)

    def neighbor_edges(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor,
                       cutoff: float | None = None):
        """Edges within ``cutoff`` (default: this potential's): ``(i, j, r_ij (E,3), |r_ij| (E,))``.

        The graph may have been built with a larger cutoff (e.g. for a sum of potentials);
        longer edges are dropped here.
        """
        cutoff = self.cutoff if cutoff is None else cutoff
        if graph.cutoff + 1e-9 < cutoff:
            raise InputError(f"the graph was built with cutoff {graph.cutoff} Å, but this potential "
                             f"needs {cutoff} Å; build it with potential.graph(atoms)")
        vec = graph.edge_vectors(positions, cell)
        i, j = graph.edge_index[0], graph.edge_index[1]
        dist = torch.linalg.norm(vec, dim=1)
        if graph.cutoff > cutoff:
            keep = dist.detach() < cutoff
            i, j, vec, dist = i[keep], j[keep], vec[keep], dist[keep]
        return i, j, vec, dist

    def __add__(self, other: "Potential") -> "SumPotential":
        return SumPotential([self, other])

    # ------------------------------------------------------------------ derived quantities
    def _strained(self, graph: AtomicGraph, positions: torch.Tensor, e6: torch.Tensor):
        eps = _voigt_strain(e6)
        deform = torch.eye(3, dtype=positions.dtype, device=positions.device) + eps  # (G,3,3)
        pos = torch.einsum("ni,nij->nj", positions, deform[graph.batch])
        cell = graph.cell.to(positions.dtype) @ deform
        return pos, cell

    def atomic_terms(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> dict:
        """Per-atom outputs of one evaluation: ``energies`` (n,) eV and, for models that make
        them on the way to the energy (learned charges, :class:`cgkit.nn.LongRangeENNP`),
        ``charges`` (n,) e. The default has the energies only."""
        return {"energies": self.atomic_energies(graph, positions, cell)}

    def compute(self, graph: AtomicGraph, *, forces: bool = True, stress: bool = False,
                atomic: bool = False, create_graph: bool = False, charges: bool = False) -> dict:
        """Energy and derived quantities of every structure in ``graph``.

        Returns a dict with ``energy`` (G,) eV; ``forces`` (n, 3) eV/Å; ``stress`` (G, 3, 3)
        eV/Å³ and ``virial`` (G, 3, 3) eV (= -V σ) when ``stress``; ``energies`` (n,) eV when
        ``atomic``; ``charges`` (n,) e when ``charges`` (models with learned charges: the
        charges of the same evaluation, no second forward pass). ``create_graph=True`` keeps
        the autograd graph (for training on forces).
        """
        if stress and not bool(graph.pbc.all()):
            raise NotSupportedError("stress needs a structure periodic in all three directions "
                                    "(the volume is undefined otherwise)")
        positions = graph.positions
        need_grad = forces or stress
        if need_grad:
            positions = positions.detach().requires_grad_(True)
        e6 = None
        if stress:
            e6 = positions.new_zeros(graph.n_graphs, 6, requires_grad=True)
            pos, cell = self._strained(graph, positions, e6)
        else:
            pos, cell = positions, graph.cell.to(positions.dtype)
        if charges:
            terms = self.atomic_terms(graph, pos, cell)
            if "charges" not in terms:
                if not callable(getattr(self, "atomic_charges", None)):
                    raise NotSupportedError(f"{type(self).__name__} has no atomic charges; ask for "
                                            "charges only from a model with learned charges")
                terms["charges"] = self.atomic_charges(graph, pos, cell)  # a second pass
            e_atom = terms["energies"]
        else:
            e_atom = self.atomic_energies(graph, pos, cell)
        energy = scatter_sum(e_atom, graph.batch, graph.n_graphs)
        out = {"energy": energy}
        if charges:
            out["charges"] = terms["charges"]
        if atomic:
            out["energies"] = e_atom
        if need_grad:
            inputs = [positions] + ([e6] if stress else [])
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph,
                                        allow_unused=True)
            g_pos = grads[0] if grads[0] is not None else torch.zeros_like(positions)
            if forces:
                out["forces"] = -g_pos
            if stress:
                g_e6 = grads[1] if grads[1] is not None else torch.zeros_like(e6)
                # dE/dη_k = ∂E/∂ε_ab for every Voigt component (engineering shear strains)
                sym = (_voigt_basis(g_e6.dtype, g_e6.device) > 0).to(g_e6.dtype)
                dE_deps = torch.einsum("gk,kab->gab", g_e6, sym)
                vol = torch.linalg.det(graph.cell.to(positions.dtype)).abs()
                out["stress"] = dE_deps / vol[:, None, None]
                out["virial"] = -dE_deps
        if not create_graph:
            out = {k: v.detach() for k, v in out.items()}
        return out

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        """(G,) total energies, eV (no derivatives)."""
        with torch.no_grad():
            e = self.atomic_energies(graph, graph.positions, graph.cell)
        return scatter_sum(e, graph.batch, graph.n_graphs)

    def hessian(self, graph: AtomicGraph, *, include_strain: bool = False, rows=None,
                chunk_size: int = 96, progress: bool = False) -> torch.Tensor:
        """Second derivatives of the energy of a single structure, by autograd.

        Returns the (3n, 3n) Hessian ∂²E/∂x_a∂x_b in eV/Å², rows ordered atom-major
        (x0, y0, z0, x1, ...). With ``include_strain`` the matrix is (3n+6, 3n+6): the last
        six variables are the Voigt strain components η in Voigt order (xx, yy, zz, yz, xz, xy;
        engineering shear strains, see :func:`_voigt_basis`); the mixed block ∂²E/∂x∂η is in
        eV/Å and the strain block ∂²E/∂η∂η in eV, so that at zero stress the clamped-ion
        elastic constants are ``C = H_ηη / V``.

        ``rows``: compute only these rows (indices into the variable vector), returning
        (len(rows), n_var) — e.g. the 3·n_primitive rows phonopy needs from a supercell.
        Rows are computed in chunks with batched vector-Jacobian products (vmap); a handful
        of rows, or operations without a batching rule, use one backward pass per row.
        """
        if graph.n_graphs != 1:
            raise InputError("the Hessian is computed for one structure at a time; split the batch")
        if include_strain and not bool(graph.pbc.all()):
            raise NotSupportedError("strain derivatives need a fully periodic structure")
        positions = graph.positions.detach().requires_grad_(True)
        inputs = [positions]
        if include_strain:
            e6 = positions.new_zeros(1, 6, requires_grad=True)
            pos, cell = self._strained(graph, positions, e6)
            inputs.append(e6)
        else:
            pos, cell = positions, graph.cell.to(positions.dtype)
        energy = self.atomic_energies(graph, pos, cell).sum()
        grads = torch.autograd.grad(energy, inputs, create_graph=True, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, inputs)]
        flat = torch.cat([g.reshape(-1) for g in grads])
        n_var = flat.numel()
        row_idx = torch.arange(n_var) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        H = torch.zeros(len(row_idx), n_var, dtype=positions.dtype)
        if not flat.requires_grad:  # energy linear in the variables
            return H

        def vjp(v: torch.Tensor, batched: bool) -> torch.Tensor:
            out = torch.autograd.grad(flat, inputs, grad_outputs=v, retain_graph=True,
                                      is_grads_batched=batched, allow_unused=True)
            lead = (v.shape[0],) if batched else ()
            return torch.cat([(o if o is not None else torch.zeros(lead + x.shape, dtype=v.dtype))
                              .reshape(lead + (-1,)) for o, x in zip(out, inputs)], dim=-1)

        starts = range(0, len(row_idx), chunk_size)
        if progress:
            from .progress import progress_bar
            starts = progress_bar(starts, desc="Hessian rows", unit="chunk")
        batched = len(row_idx) > 24  # few rows: plain backward passes beat vmap's set-up cost
        for s in starts:
            r = row_idx[s:s + chunk_size]
            v = torch.zeros(len(r), n_var, dtype=positions.dtype)
            v[torch.arange(len(r)), r] = 1.0
            if batched:
                try:
                    H[s:s + len(r)] = vjp(v, True).detach()
                    continue
                except RuntimeError:  # an operation without a vmap batching rule
                    batched = False
            for k in range(len(r)):
                H[s + k] = vjp(v[k], False).detach()
        return 0.5 * (H + H.T) if rows is None else H


class SumPotential(Potential):
    """The sum of several potentials (e.g. a physical prior plus a neural network)."""

    def __init__(self, terms: Sequence[Potential]):
        super().__init__()
        flat = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, SumPotential) else [t])
        if not flat:
            raise InputError("a SumPotential needs at least one term")
        names = [t.type_names for t in flat if t.type_names is not None]
        for n in names[1:]:
            if tuple(n) != tuple(names[0]):
                raise InputError(f"cannot add potentials built for different species: {names[0]} vs {n}")
        self.terms = torch.nn.ModuleList(flat)
        self.cutoff = max(t.cutoff for t in flat)
        self.type_names = tuple(names[0]) if names else None

    def atomic_energies(self, graph, positions, cell):
        total = None
        for t in self.terms:
            e = t.atomic_energies(graph, positions, cell)
            total = e if total is None else total + e
        return total

    def get_config(self) -> dict:
        return {"terms": [describe(t) for t in self.terms]}

    @classmethod
    def from_config(cls, config: dict) -> "SumPotential":
        return cls([build(d) for d in config["terms"]])


# ---------------------------------------------------------------------- persistence (one file)
def describe(potential: Potential) -> dict:
    """{module, class, config} of a potential (config from its ``get_config``)."""
    cls = type(potential)
    return {"module": cls.__module__, "class": cls.__name__, "config": potential.get_config()}


def build(description: dict) -> Potential:
    """Instantiate a potential from :func:`describe` output (weights not loaded)."""
    try:
        cls = getattr(importlib.import_module(description["module"]), description["class"])
    except (ImportError, AttributeError, KeyError, TypeError) as exc:
        raise InputError(f"cannot rebuild potential {description!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Potential)):
        raise InputError(f"cannot rebuild potential {description!r}: not a cgkit Potential class")
    config = description.get("config")
    if not isinstance(config, dict):
        raise InputError(f"cannot rebuild {cls.__name__}: its stored configuration is not a dict")
    try:
        return cls.from_config(config)
    except (TypeError, KeyError) as exc:  # a configuration this version of the class cannot take
        raise InputError(f"cannot rebuild {cls.__name__} from its stored configuration ({exc}); was "
                         "the file written by another cgkit version?") from None


def save_potential(potential: Potential, path, metadata: dict | None = None) -> None:
    """Write ``potential`` as one file holding class, config, weights and metadata (atomic:
    an interrupted save never leaves a half-written model). Layout: see
    :mod:`cgkit.io_potential`."""
    from .version import __version__
    meta = {"type_names": list(potential.type_names) if potential.type_names else None,
            "cutoff": float(potential.cutoff), "units": UNITS,
            "dtype": str(potential.dtype).replace("torch.", "")}
    meta.update(metadata or {})
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "cgkit_version": __version__,
               "model": describe(potential), "state_dict": potential.state_dict(), "metadata": meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
