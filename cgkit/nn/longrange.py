"""Long-range ENNP: a local ENNP plus Coulomb energy of learned, charge-conserving atomic charges.

``E = Σ_i E_i^local + E_Coulomb(q, r)`` with

* ``E_i^local``: the local :class:`~cgkit.nn.model.ENNP` (unchanged: its features, readout,
  energy shift/scale, Hessian routine);
* charges from a charge head on the same final equivariant node features (their l = 0 even
  channels → MLP → one scalar per atom, invariant under rotations, reflections, translations
  and permutations), plus a per-species offset ``q0_s`` (learnable; initialised from
  ``baseline_charges``, e.g. formal charges of a topology, a fixed-charge prior):
  ``q̃_i = head_i + q0_{s_i}``;
* exact total charge per structure (``Σ_{i∈g} q_i = Q_g``):

  - ``charge_scheme="neutralize"`` (default): ``q_i = q̃_i − (Σ_g q̃ − Q_g)/N_g``;
  - ``charge_scheme="qeq_local"``: electronegativity equalisation with a per-species hardness
    ``J_s > 0`` (learnable) and the head read as electronegativity ``χ_i``:
    ``q_i = (λ_g − χ_i)/J_{s_i}`` with ``λ_g = (Q_g + Σ χ_i/J_i)/Σ 1/J_i`` — the minimiser of
    ``Σ χ_i q_i + ½ J_i q_i²`` at fixed total charge (the excess charge goes to the soft atoms;
    no Coulomb coupling in the equilibration — a documented simplification of 4G-HDNNP's Qeq);
  - ``charge_scheme="bond"``: local charge transfer along the graph's edges (split-charge
    style), ``q_i = q_base_i + Σ_{j: r_ij < r_cut} κ(r_ij) (χ_j − χ_i)`` with the head read as
    an electronegativity χ, ``κ(r) = softplus(w·B(r)) · envelope(r)`` (learnable w on the local
    model's Bessel basis; C² to zero at r_cut) and the fixed baseline
    ``q_base = q0_s − (Σ_g q0 − Q_g)/N_g``. The transfers are antisymmetric, so the total is
    exact; and unlike the two global schemes no charge moves between fragments further apart
    than r_cut (two neutral molecules far apart stay neutral — with the global schemes their
    separate excesses are spread over both, a spurious 1/r interaction at any distance);

* ``E_Coulomb`` from :class:`cgkit.electrostatics.Electrostatics` (Ewald/PME for periodic
  cells, direct sum for open structures; settings in ``electrostatics``), differentiable in
  positions, cell *and* charges, so forces, stress, Hessians (through :class:`Potential`) and
  the charges' gradients are exact autograd derivatives.

Charges learnt from energies and forces alone are determined up to a global sign
(``E_Coulomb(q) = E_Coulomb(−q)``); ``baseline_charges`` or charge/dipole targets fix it.

Total charge ``Q_g`` (e): ``graph.targets["total_charge"]`` (G,) if present, else the sum of the
structure's ``graph.charges`` (ASE ``initial_charges``) when the graph carries charges, else
``total_charge`` (model setting, default 0). A net charge in a periodic cell needs
``electrostatics={"background": True}`` (the uniform neutralising background).

The model is a normal cgkit :class:`~cgkit.potential.Potential`: ``save``/``load_potential``,
``SumPotential``/ensembles, :class:`~cgkit.calculator.CgkitCalculator` and phonons work as for
any potential; the trainer fits it to energies/forces (latent charges) through ``compute``
and, where it supports them, to reference ``charges``/``dipole`` through
:meth:`LongRangeENNP.atomic_charges`. TorchScript export is not supported (the Ewald
parameters are chosen per call).

Units: e, Å, eV; dipoles e·Å; Born effective charges e.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from e3nn import o3

from ..data import AtomicGraph
from ..errors import InputError
from ..potential import Potential, scatter_sum
from .model import ENNP, PRESETS

__all__ = ["LongRangeENNP", "CHARGE_SCHEMES", "parse_species_charges"]

CHARGE_SCHEMES = ("neutralize", "qeq_local", "bond")

#: settings passed to :class:`cgkit.electrostatics.Electrostatics` unless overridden
DEFAULT_ELECTROSTATICS = {"method": "auto", "accuracy": 1e-6}


def parse_species_charges(items) -> dict:
    """``["Na=1", "Cl=-1"]`` (or ``"Na=1,Cl=-1"``) → ``{"Na": 1.0, "Cl": -1.0}`` (e), for
    command-line options; a malformed item raises :class:`~cgkit.errors.InputError`."""
    if isinstance(items, str):
        items = [t for t in items.split(",") if t.strip()]
    out = {}
    for item in items or []:
        name, sep, val = str(item).partition("=")
        try:
            q = float(val)
        except ValueError:
            q = math.nan
        if not sep or not name.strip() or not math.isfinite(q):
            raise InputError(f"expected SPECIES=CHARGE (e), e.g. Na=1 Cl=-1, got {item!r}")
        out[name.strip()] = q
    return out


def _electrostatics(settings: dict):
    from ..electrostatics import Electrostatics
    try:
        return Electrostatics(**settings)
    except TypeError as exc:
        raise InputError(f"bad electrostatics settings {settings}: {exc}; see "
                         "cgkit.electrostatics.Electrostatics for the accepted keys") from None


class LongRangeENNP(Potential):
    """Local ENNP + Coulomb energy of learned atomic charges (see module docstring).

    Parameters
    ----------
    species : element symbols (or bead types), in the order of ``graph.species``
    r_cut : cutoff radius of the local model, Å (Coulomb has no cutoff)
    charge_hidden : width of the charge-head MLP (l = 0 features → hidden → 1)
    charge_scheme : "neutralize", "qeq_local" or "bond" (see module docstring); "bond" keeps
        separated fragments at their baseline charge (use it for molecules)
    baseline_charges : per-species offsets q0_s, e: a dict {species: charge} or a list in
        species order (default 0); the fixed-charge prior of a topology
    learn_charges : False freezes the charges at the baseline (head and offsets not trained):
        a local ENNP plus fixed-charge Coulomb
    total_charge : default total charge Q of a structure, e (see module docstring)
    electrostatics : dict of :class:`cgkit.electrostatics.Electrostatics` settings (method,
        accuracy, background, ...), default ``{"method": "auto", "accuracy": 1e-6}``
    preset : optional ENNP preset name ("small", "medium") for the local model's defaults
    **local : every other :class:`~cgkit.nn.model.ENNP` option (channels, l_max, n_layers,
        dtype, init_seed, ...)
    """

    def __init__(self, species: Sequence[str], r_cut: float = 5.0, *, charge_hidden: int = 16,
                 charge_scheme: str = "neutralize", baseline_charges=None, learn_charges: bool = True,
                 total_charge: float = 0.0, electrostatics: dict | None = None,
                 preset: str | None = None, **local):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise InputError(f"unknown preset '{preset}'; choose from {sorted(PRESETS)}")
        if charge_scheme not in CHARGE_SCHEMES:
            raise InputError(f"charge_scheme must be one of {CHARGE_SCHEMES}, got {charge_scheme!r}")
        if int(charge_hidden) < 1:
            raise InputError(f"charge_hidden must be >= 1, got {charge_hidden}")
        if not (isinstance(total_charge, (int, float)) and math.isfinite(total_charge)):
            raise InputError(f"total_charge must be a finite number (e), got {total_charge!r}")
        local_cfg = {**(PRESETS[preset] if preset else {}), **local}
        self.local = ENNP(species, r_cut, **local_cfg)
        self.type_names = self.local.type_names
        self.cutoff = self.local.cutoff
        species = list(self.type_names)
        q0 = self._baseline(baseline_charges, species)
        es = {**DEFAULT_ELECTROSTATICS, **dict(electrostatics or {})}
        self.es = _electrostatics(es)
        self._config = dict(species=species, r_cut=float(r_cut), charge_hidden=int(charge_hidden),
                            charge_scheme=str(charge_scheme), baseline_charges=q0,
                            learn_charges=bool(learn_charges), total_charge=float(total_charge),
                            electrostatics=es, preset=preset, **local)
        self.total_charge = float(total_charge)
        self.charge_scheme = str(charge_scheme)
        self.learn_charges = bool(learn_charges)

        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            irreps = self.local.irreps_out
            h = int(charge_hidden)
            self.charge_in = o3.Linear(irreps, o3.Irreps(f"{h}x0e"))
            self.charge_out = o3.Linear(o3.Irreps(f"{h}x0e"), o3.Irreps("0e"))
        finally:
            torch.set_default_dtype(old)
        seed = self.local._config.get("init_seed")
        g = torch.Generator().manual_seed(1000003 + (0 if seed is None else int(seed)))
        with torch.no_grad():
            for p in self.charge_in.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
            # small, not zero: q = 0 is a stationary point of E_Coulomb = ½ qᵀAq (zero
            # gradient), from which training on energies and forces would never move
            for p in self.charge_out.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        self.charge_offset = torch.nn.Parameter(torch.tensor(q0, dtype=torch.float64))
        # qeq_local: hardness J_s = softplus(ρ_s) + 1e-3 (eV/e²·(arbitrary units)), J = 1 at start
        self.hardness_raw = torch.nn.Parameter(torch.full((len(species),), math.log(math.e - 1),
                                                          dtype=torch.float64))
        # bond: transfer coupling κ(r) = softplus(Σ_k w_k B_k(r)) · envelope(r) on the local
        # model's Bessel basis B_k (w = 0: softplus(0) = ln 2 at short range)
        self.transfer_radial = torch.nn.Parameter(torch.zeros(self.local._config["n_radial"],
                                                              dtype=torch.float64))
        if self.charge_scheme == "bond":  # offsets fixed: a fragment's baseline charge stays put
            self.charge_offset.requires_grad_(False)
        if not self.learn_charges:
            for p in (*self.charge_in.parameters(), *self.charge_out.parameters(),
                      self.charge_offset, self.hardness_raw, self.transfer_radial):
                p.requires_grad_(False)
        self.to(self.local.dtype)

    @staticmethod
    def _baseline(baseline, species) -> list:
        if baseline is None:
            return [0.0] * len(species)
        if isinstance(baseline, dict):
            unknown = sorted(set(map(str, baseline)) - set(species))
            if unknown:
                raise InputError(f"baseline_charges names species {unknown} the model does not know "
                                 f"(it knows {species})")
            vals = [float(baseline.get(s, 0.0)) for s in species]
        else:
            vals = [float(v) for v in baseline]
            if len(vals) != len(species):
                raise InputError(f"baseline_charges needs one charge per species {species}, got {vals}")
        if not all(math.isfinite(v) for v in vals):
            raise InputError(f"baseline_charges must be finite (e), got {vals}")
        return vals

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        cfg = dict(self._config)
        local = self.local.get_config()
        for k in ("dtype", "avg_num_neighbors"):
            cfg[k] = local[k]
        return cfg

    @classmethod
    def from_preset(cls, preset: str, species, r_cut: float = 5.0, **overrides) -> "LongRangeENNP":
        return cls(species, r_cut, preset=preset, **overrides)

    def set_statistics(self, *, shift=None, scale=None, avg_num_neighbors=None) -> None:
        """As :meth:`cgkit.nn.ENNP.set_statistics` (of the local model)."""
        self.local.set_statistics(shift=shift, scale=scale, avg_num_neighbors=avg_num_neighbors)

    @property
    def irreps_hidden(self):
        """Node-feature irreps of the local model."""
        return self.local.irreps_hidden

    @property
    def layers(self):
        """The local model's interaction blocks (their number sets the charges' reach)."""
        return self.local.layers

    # ------------------------------------------------------------------ charges
    def _total_charge(self, graph: AtomicGraph, dtype) -> torch.Tensor:
        G = graph.n_graphs
        q = graph.targets.get("total_charge") if isinstance(graph.targets, dict) else None
        if q is not None:
            q = torch.as_tensor(q, dtype=dtype).reshape(-1)
            if q.shape != (G,):
                raise InputError(f"targets['total_charge'] needs one value per structure ({G}), "
                                 f"got shape {tuple(q.shape)}")
            return q
        charges = getattr(graph, "charges", None)
        if charges is not None:
            return scatter_sum(torch.as_tensor(charges).to(dtype).reshape(-1), graph.batch, G)
        return torch.full((G,), self.total_charge, dtype=dtype)

    def _local_charges(self, h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """q̃_i = head_i + q0_{s_i}: the charges before the total-charge constraint (e)."""
        head = self.charge_out(torch.nn.functional.silu(self.charge_in(h))).squeeze(-1)
        return head + self.charge_offset[species]

    def _charges_from_features(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor,
                               h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        dtype = positions.dtype
        G = graph.n_graphs
        Q = self._total_charge(graph, dtype)
        if self.charge_scheme == "bond":
            # q_i = q_base_i + Σ_j κ(r_ij) (χ_j − χ_i): antisymmetric bond transfers (Σ = 0
            # exactly), zero beyond r_cut; q_base = q0 with the structure's excess spread evenly
            chi = self.charge_out(torch.nn.functional.silu(self.charge_in(h))).squeeze(-1)
            i, j, _, dist = self.local.neighbor_edges(graph, positions, cell)
            kappa = torch.nn.functional.softplus(self.local.bessel(dist) @ self.transfer_radial) \
                * self.local.envelope(dist)
            flow = scatter_sum(kappa * (chi[j] - chi[i]), i, graph.n_atoms)
            q0 = self.charge_offset[species]
            n_g = graph.atoms_per_graph().to(dtype)
            excess = scatter_sum(q0, graph.batch, G) - Q
            return q0 - (excess / n_g)[graph.batch] + flow
        qt = self._local_charges(h, species)
        if self.charge_scheme == "neutralize":
            n_g = graph.atoms_per_graph().to(dtype)
            excess = scatter_sum(qt, graph.batch, G) - Q
            return qt - (excess / n_g)[graph.batch]
        # qeq_local: χ_i = −q̃_i J_i; q_i = (λ − χ_i)/J_i = q̃_i + λ/J_i with
        # λ = (Q + Σ χ/J)/Σ 1/J = (Q − Σ q̃)/Σ 1/J (equal J: the "neutralize" scheme)
        inv = 1.0 / (torch.nn.functional.softplus(self.hardness_raw)[species] + 1e-3)
        lam = (Q - scatter_sum(qt, graph.batch, G)) / scatter_sum(inv, graph.batch, G)
        return qt + lam[graph.batch] * inv

    def atomic_charges(self, graph: AtomicGraph, positions: torch.Tensor | None = None,
                       cell: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) atomic charges, e; ``Σ_{i∈g} q_i = Q_g`` for every structure g (to rounding).
        Differentiable in positions and cell (defaults: the graph's)."""
        positions = graph.positions if positions is None else positions
        cell = graph.cell if cell is None else cell
        h, species = self.local.features(graph, positions, cell)
        return self._charges_from_features(graph, positions, cell, h, species)

    def dipoles(self, graph: AtomicGraph, positions: torch.Tensor | None = None,
                cell: torch.Tensor | None = None) -> torch.Tensor:
        """(G, 3) dipole moments μ_g = Σ_{i∈g} q_i r_i, e·Å (positions as stored, no wrapping;
        origin-independent for neutral structures, shifted by Q_g·a when a structure of total
        charge Q_g is translated by a). Open structures only: in a periodic cell μ changes by
        q_i·L when an atom is wrapped (the polarization is defined modulo a quantum), so a
        batch with a periodic structure raises :class:`~cgkit.errors.NotSupportedError` (for
        crystals use :meth:`born_effective_charges`)."""
        from ..errors import NotSupportedError
        if bool(graph.pbc.any()):
            bad = torch.nonzero(graph.pbc.any(dim=1)).flatten().tolist()
            raise NotSupportedError(f"dipoles Σ q_i r_i are defined for open structures (molecules, "
                                    f"clusters: pbc all False) only; structures {bad[:10]} of the batch "
                                    "are periodic (for a crystal use born_effective_charges)")
        positions = graph.positions if positions is None else positions
        q = self.atomic_charges(graph, positions, cell)
        return scatter_sum(q.unsqueeze(-1) * positions, graph.batch, graph.n_graphs)

    # ------------------------------------------------------------------ energy
    def _coulomb(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor,
                 q: torch.Tensor) -> torch.Tensor:
        counts = graph.atoms_per_graph().tolist()
        if graph.n_graphs > 1 and not bool((graph.batch[1:] >= graph.batch[:-1]).all()):
            raise InputError("the structures of a batch must be contiguous (as batch_graphs makes them)")
        out, s = [], 0
        for k, n in enumerate(counts):
            pbc = graph.pbc[k]
            out.append(self.es.atomic_energies(positions[s:s + n], q[s:s + n], cell[k], pbc))
            s += n
        return torch.cat(out) if len(out) > 1 else out[0]

    def energy_terms(self, graph: AtomicGraph, positions: torch.Tensor | None = None,
                     cell: torch.Tensor | None = None) -> dict:
        """Per-atom ``local`` and ``coulomb`` energies (n,) eV and ``charges`` (n,) e."""
        positions = graph.positions if positions is None else positions
        cell = graph.cell.to(positions.dtype) if cell is None else cell
        h, species = self.local.features(graph, positions, cell)
        e_local = self.local.energy_scale * self.local.readout(h).squeeze(-1) \
            + self.local.energy_shift[species]
        q = self._charges_from_features(graph, positions, cell, h, species)
        return {"local": e_local, "coulomb": self._coulomb(graph, positions, cell, q), "charges": q}

    def atomic_terms(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> dict:
        """``energies`` (n,) eV (local + Coulomb shares) and ``charges`` (n,) e of one forward
        pass (used by ``compute(..., charges=True)``: training on charges/dipoles)."""
        t = self.energy_terms(graph, positions, cell)
        return {"energies": t["local"] + t["coulomb"], "charges": t["charges"]}

    def atomic_energies(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """(n,) eV: local atomic energies + the atoms' shares of the Coulomb energy."""
        t = self.energy_terms(graph, positions, cell)
        return t["local"] + t["coulomb"]

    def equivariant_outputs(self, graph: AtomicGraph, positions=None, cell=None) -> dict:
        """The local model's heads (``vectors``, ``tensors``) plus ``energies`` (n,) eV (total,
        local + Coulomb) and ``charges`` (n,) e."""
        positions = graph.positions if positions is None else positions
        cell = graph.cell.to(positions.dtype) if cell is None else cell
        out = self.local.equivariant_outputs(graph, positions, cell)
        t = self.energy_terms(graph, positions, cell)
        out["energies"] = t["local"] + t["coulomb"]
        out["charges"] = t["charges"]
        return out

    def hessian(self, graph: AtomicGraph, *, include_strain: bool = False, rows=None,
                chunk_size: int = 96, progress: bool = False) -> torch.Tensor:
        """As :meth:`cgkit.nn.ENNP.hessian` (one backward pass per row, blocks of rows)."""
        return ENNP.hessian(self, graph, include_strain=include_strain, rows=rows,
                            chunk_size=chunk_size, progress=progress)

    _HESSIAN_ROWS_PER_PASS = ENNP._HESSIAN_ROWS_PER_PASS

    # ------------------------------------------------------------------ Born effective charges
    def born_effective_charges(self, atoms, *, acoustic_sum_rule: bool = True) -> np.ndarray:
        """(n, 3, 3) Born effective charges Z*[i, α, β] = ∂P_β/∂r_{iα}, e, of ASE ``atoms``.

        ``P = Σ_j q_j r_j``; by autograd, ``Z*_i = q_i δ_αβ + Σ_j (∂q_j/∂r_{iα}) d_{ji,β}``.

        * Open structures (no periodic direction): ``d_ji = r_j − r_i``, exact; the acoustic
          sum rule ``Σ_i Z*_i = Q·I`` (Q the total charge) holds to rounding by itself.
        * Periodic structures (all three directions): the polarization of point charges in a
          crystal is defined only up to how the charge flowed; this uses the convention of the
          infinite-supercell limit — the charge-transfer term from the constraint-free charges
          ``q̃_j = head_j + q0_j`` (the total-charge correction spreads over the whole crystal
          and adds no dipole), ``d_ji`` the minimum-image vector, computed in a supercell
          wider than twice the charges' reach (n_layers × r_cut), so that the result does not
          depend on the cell chosen. This convention satisfies the sum rule only approximately;
          with ``acoustic_sum_rule`` (default) the mean violation ``(Σ_i Z*_i − Q·I)/n`` is
          subtracted from every atom (Quantum ESPRESSO's "simple" ASR for Z*). Fixed charges
          give ``Z*_i = q_i I`` exactly.

        With ``charge_scheme="bond"`` the transfer charges are bond charges, the dipole is a sum
        of bond dipoles and the sum rule holds exactly also for periodic structures.

        Costs 3·n backward passes (n atoms of ``atoms``).
        """
        from ..errors import NotSupportedError
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and not pbc.all():
            raise NotSupportedError("Born effective charges need a structure periodic in all three "
                                    "directions or in none (a molecule/cluster); got pbc "
                                    f"{pbc.tolist()}")
        n = len(atoms)
        periodic = bool(pbc.all())
        work = atoms
        if periodic:
            cell = np.asarray(atoms.cell.array, dtype=float)
            vol = abs(np.linalg.det(cell))
            widths = np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                               for k in range(3)])
            reach = len(self.local.layers) * self.cutoff
            reps = [int(math.floor(2.0 * reach / w)) + 1 for w in widths]
            work = atoms.repeat(reps)  # ASE: the original cell's atoms come first
        graph = self.graph(work)
        positions = graph.positions.detach().clone().requires_grad_(True)
        cell_t = graph.cell.to(positions.dtype)
        h, species = self.local.features(graph, positions, cell_t)
        q = self._charges_from_features(graph, positions, cell_t, h, species)
        q_flow = self._local_charges(h, species) if periodic and self.charge_scheme != "bond" else q
        q0 = q.detach().cpu().numpy().astype(np.float64)[:n]
        r = positions.detach()
        Z = np.zeros((n, 3, 3))
        cinv = torch.linalg.inv(cell_t[0]) if periodic else None
        for i in range(n):
            d = r - r[i]
            if periodic:
                f = d @ cinv
                d = (f - torch.round(f)) @ cell_t[0]
            for b in range(3):
                if not q_flow.requires_grad:
                    break
                (g,) = torch.autograd.grad((q_flow * d[:, b]).sum(), positions, retain_graph=True,
                                           allow_unused=True)
                if g is not None:
                    Z[i, :, b] = g[i].detach().cpu().numpy()
            Z[i] += q0[i] * np.eye(3)
        if periodic and acoustic_sum_rule:
            Z -= (Z.sum(0) - q0.sum() * np.eye(3)) / n
        return Z
