"""Export of ENNP models for deployment (``cgkit model export``).

Export route: the atomic-energy function (positions, cell → per-atom energies, with the edge
list as input) is *traced* (``torch.jit.trace``: the model has no data-dependent Python
control flow once the edges are given), and a small *scripted* wrapper takes the gradients
(forces, and stress through a symmetric strain). ``torch.jit.script`` of the model fails
(torch 2.13): on ``ENNP`` with "Unknown type annotation: 'tuple[str, ...] | None'"
(Potential.type_names), on the edge convolution with "getattr's second argument must be a
string literal" (its CG buffers are looked up by computed names), on an interaction block
in e3nn's Gate ("Module 'Activation' has no attribute 'paths' ... Python type 'list'").
``torch.compile`` works but gives no file to deploy, so it is not an export format; measured
on this 2-core machine under a load average of ~10 ('small', float32, Si216, E+F, CPU time):
eager 44 ms; edge convolutions compiled (``dynamic=True``) 31 ms after a first call of 129 s
(cold cache); the whole atomic-energy function compiled (``dynamic=True``) 26 ms after a first
call of 387 s and a recompilation of 67 s for the next system size. TorchScript is deprecated in recent torch in favour of ``torch.export``
(``torch.jit.load`` warns); the files still load and run with torch 2.13.
"""
from __future__ import annotations

import json

__all__ = ["export_torchscript", "export_lammps", "receptive_field", "message_passing_hops", "split_prior",
           "LAMMPS_FORMAT"]


def _exported_wrapper():
    """The scripted wrapper class (defined lazily: importing cgkit must not touch torch.jit)."""
    from typing import List, Tuple

    import torch

    class ExportedPotential(torch.nn.Module):
        """Energy, forces and stress of one structure from a traced atomic-energy function."""

        cutoff: float
        type_names: List[str]

        def __init__(self, core, cutoff: float, type_names):
            super().__init__()
            self.core = core
            self.cutoff = float(cutoff)
            self.type_names = list(type_names)

        def forward(self, positions: torch.Tensor, cell: torch.Tensor, species: torch.Tensor,
                    edge_index: torch.Tensor, cell_shifts: torch.Tensor,
                    compute_stress: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            pos0 = positions.detach().requires_grad_(True)
            stress = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
            if compute_stress:
                # σ = (1/V) ∂E/∂ε for a symmetric strain ε applied to positions and cell
                strain = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device).requires_grad_(True)
                deform = torch.eye(3, dtype=positions.dtype, device=positions.device) + 0.5 * (strain + strain.t())
                energy = self.core(pos0 @ deform, cell @ deform, species, edge_index, cell_shifts).sum()
                grads = torch.autograd.grad([energy], [pos0, strain], allow_unused=True)
                g_strain = grads[1]
                if g_strain is not None:
                    stress = g_strain / torch.linalg.det(cell).abs()
            else:
                energy = self.core(pos0, cell, species, edge_index, cell_shifts).sum()
                grads = torch.autograd.grad([energy], [pos0], allow_unused=True)
            g_pos = grads[0]
            forces = -g_pos if g_pos is not None else torch.zeros_like(positions)
            return energy.detach(), forces.detach(), stress.detach()

    # this module uses postponed annotations (strings), which TorchScript cannot resolve for a
    # class defined in a function: give it the attribute types as objects
    ExportedPotential.__annotations__ = {"cutoff": float, "type_names": List[str]}
    return ExportedPotential


def _energy_core(potential):
    """Module (positions, cell (3,3), species, edge_index, cell_shifts) → (n,) atomic energies."""
    import torch

    from ..data import AtomicGraph

    class AtomicEnergies(torch.nn.Module):
        def __init__(self, pot):
            super().__init__()
            self.pot = pot

        def forward(self, positions, cell, species, edge_index, cell_shifts):
            cell3 = cell.unsqueeze(0)
            graph = AtomicGraph(positions=positions, species=species, atomic_numbers=torch.zeros_like(species),
                                masses=torch.ones_like(positions[:, 0]), cell=cell3,
                                pbc=torch.ones(1, 3, dtype=torch.bool), batch=torch.zeros_like(species),
                                edge_index=edge_index, cell_shifts=cell_shifts,
                                cutoff=self.pot.cutoff, type_names=self.pot.type_names)
            return self.pot.atomic_energies(graph, positions, cell3)

    return AtomicEnergies(potential)


def _example_structure(potential, n_cells: int, seed: int):
    """A rattled periodic fcc-like cell holding every species of ``potential`` (for tracing/checks)."""
    import numpy as np
    from ase.build import bulk

    a = 1.6 * potential.cutoff / 2.0  # nearest neighbours well inside the cutoff
    atoms = bulk("Cu", "fcc", a, cubic=True) * (n_cells, n_cells, 1)
    names = list(potential.type_names)
    rng = np.random.default_rng(seed)
    atoms.arrays["bead_types"] = np.array([names[k % len(names)] for k in rng.permutation(len(atoms))])
    atoms.rattle(0.05 * a, seed=seed)
    return atoms


def export_torchscript(potential, path, *, check: bool = True) -> dict:
    """Write ``potential`` (an ENNP) as a TorchScript file runnable with torch alone.

    The file holds a module with ``forward(positions (n,3) Å, cell (3,3) Å, species (n,) int64
    indices into ``type_names``, edge_index (2,E) int64, cell_shifts (E,3), compute_stress=False)
    → (energy () eV, forces (n,3) eV/Å, stress (3,3) eV/Å³, zeros unless compute_stress)`` for
    ONE structure; edges are every ordered pair within ``cutoff`` (e.g.
    :meth:`cgkit.potential.Potential.graph`). Attributes ``cutoff`` (Å) and ``type_names``;
    the extra file ``cgkit_metadata.json`` repeats them with the dtype and units.

    With ``check`` the loaded file is compared with the eager model on a structure of another
    size than the one traced; a difference above 1e-6 (float32) / 1e-10 (float64) relative
    (stress: 1e-5 / 1e-9) raises :class:`cgkit.errors.NotSupportedError`. Returns a report dict.
    """
    import warnings

    import torch

    from ..errors import NotSupportedError
    from ..nn import ENNP

    if not isinstance(potential, ENNP):
        raise NotSupportedError(f"export supports ENNP models, got {type(potential).__name__}; "
                                "export a trained or initialised ENNP model file")
    import copy
    model = copy.deepcopy(potential).eval()  # never change the caller's model
    for p in model.parameters():
        p.requires_grad_(False)
    g = model.graph(_example_structure(model, 2, 0))
    example = (g.positions, g.cell[0], g.species, g.edge_index, g.cell_shifts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        core = torch.jit.trace(_energy_core(model), example, check_trace=False)
    scripted = torch.jit.script(_exported_wrapper()(core, model.cutoff, model.type_names))
    dtype = str(model.dtype).replace("torch.", "")
    meta = {"format": "cgkit-torchscript", "cutoff": model.cutoff, "type_names": list(model.type_names),
            "dtype": dtype, "units": {"energy": "eV", "length": "Å", "force": "eV/Å", "stress": "eV/Å³"},
            "inputs": "positions (n,3), cell (3,3), species (n,), edge_index (2,E), cell_shifts (E,3), "
                      "compute_stress", "model_config": model.get_config()}
    torch.jit.save(scripted, str(path), _extra_files={"cgkit_metadata.json": json.dumps(meta)})
    report = {"dtype": dtype, "cutoff": model.cutoff, "type_names": list(model.type_names)}
    if check:
        loaded = torch.jit.load(str(path))
        gc = model.graph(_example_structure(model, 3, 1))
        ref = model.compute(gc, forces=True, stress=True)
        e, f, s = loaded(gc.positions, gc.cell[0], gc.species, gc.edge_index, gc.cell_shifts, True)
        e_rel = float((e - ref["energy"][0]).abs() / ref["energy"][0].abs().clamp_min(1e-30))
        f_err = float((f - ref["forces"]).abs().max())
        s_err = float((s - ref["stress"][0]).abs().max())
        tol = 1e-6 if model.dtype == torch.float32 else 1e-10
        f_scale = max(float(ref["forces"].abs().max()), 1e-30)
        s_scale = max(float(ref["stress"].abs().max()), 1e-30)
        # float32 stress: a sum of cancelling virial terms, accumulated in another order than
        # cgkit's Voigt-strain route — its float32 round-off is ~1e-6 of its largest component
        if e_rel > tol or f_err > tol * f_scale or s_err > 10 * tol * s_scale:
            raise NotSupportedError(f"the exported model differs from the eager one (relative energy "
                                    f"{e_rel:.2e}, forces {f_err / f_scale:.2e}, stress {s_err / s_scale:.2e}); "
                                    "this model cannot be exported faithfully — run it with cgkit instead")
        report.update(check_atoms=gc.n_atoms, energy_rel_error=e_rel, forces_max_error=f_err,
                      stress_max_error=s_err)
    return report


# ---------------------------------------------------------------------- LAMMPS (pair_style cgkit)
#: format tag of files for the LAMMPS plugin (``lammps_plugin/``); the plugin refuses others
LAMMPS_FORMAT = "cgkit-lammps-1"


def _lammps_wrapper():
    """The scripted module the LAMMPS plugin calls (defined lazily, see :func:`_exported_wrapper`)."""
    from typing import List, Tuple

    import torch

    class LammpsPotential(torch.nn.Module):
        """Energy of a LAMMPS domain: local atoms' energies on the graph of local + ghost atoms."""

        cgkit_format: str
        cutoff: float
        receptive_field: float
        n_hops: int
        type_names: List[str]
        dtype_name: str

        def __init__(self, core, cutoff: float, receptive_field: float, n_hops: int, type_names,
                     dtype_name: str):
            super().__init__()
            self.core = core
            self.cgkit_format = LAMMPS_FORMAT
            self.cutoff = float(cutoff)
            self.receptive_field = float(receptive_field)
            self.n_hops = int(n_hops)
            self.type_names = list(type_names)
            self.dtype_name = dtype_name

        def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                    nlocal: int, compute_virial: bool, per_atom_virial: bool
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            n = positions.shape[0]
            pos = positions.detach().requires_grad_(True)
            # explicit ghosts: no periodic shifts. The shifts still enter the traced function
            # (r_ij = r_j - r_i + S_ij·cell with cell = I), so ∂E/∂S_ij = ∂E/∂r_ij: the pair virial
            shifts = torch.zeros(edge_index.shape[1], 3, dtype=positions.dtype)
            shifts.requires_grad_(compute_virial)
            eye = torch.eye(3, dtype=positions.dtype)
            e_all = self.core(pos, eye, species, edge_index, shifts)
            e_loc = e_all[:nlocal]
            energy = e_loc.sum()
            virial = torch.zeros(6, dtype=positions.dtype)
            vatom = torch.zeros(0, 6, dtype=positions.dtype)
            if compute_virial:
                grads = torch.autograd.grad([energy], [pos, shifts], allow_unused=True)
                g_edge = grads[1]
                if g_edge is not None:
                    i, j = edge_index[0], edge_index[1]
                    vec = positions[j] - positions[i]
                    a = torch.tensor([0, 1, 2, 0, 0, 1])
                    b = torch.tensor([0, 1, 2, 1, 2, 2])
                    w = -vec[:, a] * g_edge[:, b]  # (E, 6) LAMMPS order xx yy zz xy xz yz
                    virial = w.sum(0)
                    if per_atom_virial:
                        vatom = torch.zeros(n, 6, dtype=positions.dtype)
                        vatom = vatom.index_add(0, i, 0.5 * w).index_add(0, j, 0.5 * w)
            else:
                grads = torch.autograd.grad([energy], [pos], allow_unused=True)
            g_pos = grads[0]
            forces = -g_pos if g_pos is not None else torch.zeros_like(positions)
            return energy.detach(), e_loc.detach(), forces.detach(), virial.detach(), vatom.detach()

    LammpsPotential.__annotations__ = {"cgkit_format": str, "cutoff": float, "receptive_field": float,
                                       "n_hops": int, "type_names": List[str], "dtype_name": str}
    return LammpsPotential


def receptive_field(potential) -> float:
    """Distance (Å) within which other atoms change the atomic energies of an atom of ``potential``.

    ENNP: ``n_layers × cutoff`` (each message-passing layer reaches one cutoff further);
    ensembles and sums: the largest of their members'. Other potentials raise
    :class:`cgkit.errors.NotSupportedError` (their range is not known).
    """
    return _range(potential)[0]


def message_passing_hops(potential) -> int:
    """Number of edge hops (message-passing layers) an atomic energy of ``potential`` sees:
    ENNP ``n_layers``; ensembles and sums the largest of their members'. The LAMMPS plugin
    evaluates only atoms within that many hops of its local atoms (exact: farther atoms cannot
    reach a local atom's energy through the edges)."""
    return _range(potential)[1]


def _range(potential):
    from ..ensemble import EnsemblePotential
    from ..errors import NotSupportedError
    from ..potential import SumPotential
    from .model import ENNP

    if isinstance(potential, ENNP):
        return len(potential.layers) * float(potential.cutoff), len(potential.layers)
    hops = getattr(potential, "edge_hops", None)  # a local model declaring how far its energies see
    if isinstance(hops, int) and hops >= 1:
        return hops * float(potential.cutoff), hops
    if isinstance(potential, (EnsemblePotential, SumPotential)):
        parts = [_range(m) for m in (potential.members if isinstance(potential, EnsemblePotential)
                                     else potential.terms)]
        return max(p[0] for p in parts), max(p[1] for p in parts)
    raise NotSupportedError(f"{type(potential).__name__} cannot be exported for LAMMPS: only ENNPs, "
                            "bead-descriptor CG networks, ensembles and sums of them can; a tabulated CG prior goes to LAMMPS as "
                            "tables (cgkit model export --lammps on a neural CG model writes them)")


def split_prior(potential):
    """``(network, prior)`` of a neural CG potential ``SumPotential([TabulatedPotential, ...])``:
    the tabulated terms (exported as LAMMPS tables) and the rest (exported for the plugin);
    ``prior`` is None when there is no tabulated term."""
    from ..forcematch.tabulated import TabulatedPotential
    from ..potential import SumPotential

    if isinstance(potential, TabulatedPotential):
        return None, potential
    if not isinstance(potential, SumPotential):
        return potential, None
    tab = [t for t in potential.terms if isinstance(t, TabulatedPotential)]
    rest = [t for t in potential.terms if not isinstance(t, TabulatedPotential)]
    if not tab:
        return potential, None
    if len(tab) > 1:
        from ..errors import NotSupportedError
        raise NotSupportedError(f"the model has {len(tab)} tabulated terms; LAMMPS export supports one prior")
    if not rest:
        return None, tab[0]
    net = rest[0] if len(rest) == 1 else SumPotential(rest)
    return net, tab[0]


def _lammps_graph_inputs(potential, atoms):
    """(positions, species, edge_index, n_local) of ``atoms`` (wrapped into its cell) with its
    periodic images made explicit, as LAMMPS hands them to the plugin (the cell's own atoms
    first), for checks of an export."""
    import numpy as np
    import torch

    rf = receptive_field(potential)
    cell = np.asarray(atoms.cell[:], dtype=float)
    pos = atoms.get_positions()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    # images within the receptive field of the cell (enough for the local atoms' energies)
    inv = np.linalg.inv(cell) if np.all(pbc) else None
    reps = []
    for k in range(3):
        if not pbc[k]:
            reps.append([0])
            continue
        height = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
        m = int(np.ceil(rf / height)) + 1
        reps.append(range(-m, m + 1))
    names = list(potential.type_names)
    spec = np.array([names.index(t) for t in atoms.arrays.get("bead_types", atoms.get_chemical_symbols())])
    all_pos, all_spec = [pos], [spec]
    for a in reps[0]:
        for b in reps[1]:
            for c in reps[2]:
                if a == b == c == 0:
                    continue
                all_pos.append(pos + np.array([a, b, c]) @ cell)
                all_spec.append(spec)
    P = np.concatenate(all_pos)
    S = np.concatenate(all_spec)
    if inv is not None:
        # keep images within the receptive field (+ margin) of the cell's own atoms
        frac = P @ inv
        keep = np.ones(len(P), dtype=bool)
        for k in range(3):
            height = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
            margin = (rf + 1e-6) / height
            keep &= (frac[:, k] > -margin) & (frac[:, k] < 1 + margin)
        keep[:len(pos)] = True
        P, S = P[keep], S[keep]
    ii, jj = _pairs_open(P, potential.cutoff)
    dtype = potential.dtype
    return (torch.as_tensor(P, dtype=dtype), torch.as_tensor(S, dtype=torch.long),
            torch.as_tensor(np.stack([ii, jj]), dtype=torch.long), len(pos))


def _pairs_open(P, cutoff):
    """Ordered pairs (i, j), i ≠ j, |P_j − P_i| < cutoff of an open point set (scipy KD-tree)."""
    import numpy as np
    from scipy.spatial import cKDTree

    pairs = cKDTree(P).query_pairs(cutoff, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])


def export_lammps(potential, path, *, check: bool = True) -> dict:
    """Write ``potential`` as the file LAMMPS's ``pair_style cgkit`` loads (``lammps_plugin/``).

    The TorchScript module's ``forward(positions (n,3) Å, species (n,) int64, edge_index (2,E)
    int64, nlocal, compute_virial, per_atom_virial)`` takes LAMMPS's local atoms (the first
    ``nlocal``) and ghost atoms (explicit periodic images, so no cell shifts) with every ordered
    pair closer than ``cutoff`` (the plugin passes only atoms within ``n_hops`` edges of a local
    atom and the edges with an end within ``n_hops - 1``: the same local energies), and returns (energy of the local atoms () eV, their atomic
    energies (nlocal,) eV, forces on all n atoms (n,3) eV/Å, virial (6,) eV in LAMMPS order
    xx yy zz xy xz yz = −Σ_edges r_ij ⊗ ∂E/∂r_ij, per-atom virial (n,6) eV (half of each edge's
    to each end) or (0,6)). Attributes read by the plugin: ``cgkit_format``
    (= :data:`LAMMPS_FORMAT`), ``cutoff`` Å, ``receptive_field`` Å (LAMMPS's ghost cutoff must
    cover it), ``n_hops`` (message-passing layers), ``type_names``, ``dtype_name`` (``float32``/``float64``).

    ``potential``: an ENNP, an :class:`cgkit.ensemble.EnsemblePotential` (exported as its mean),
    a sum of them, or a neural CG model ``SumPotential([TabulatedPotential, ENNP])`` whose
    network part only is exported here (see :func:`split_prior`; the prior goes to LAMMPS as
    tables). With ``check`` the loaded file is compared with the eager potential on a periodic
    structure (images made explicit); a relative difference above 1e-10 (float64) / 1e-5
    (float32) raises :class:`cgkit.errors.NotSupportedError`. Returns a report dict.
    """
    import copy
    import warnings

    import numpy as np
    import torch

    from ..errors import NotSupportedError

    rf, hops = _range(potential)  # refuses unsupported potentials before any work
    if not potential.type_names:
        raise NotSupportedError("the potential has no species names; LAMMPS maps atom types to them")
    model = copy.deepcopy(potential).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dtype = str(model.dtype).replace("torch.", "")
    atoms = _example_structure(model, 2, 0)
    pos, spec, edges, _ = _lammps_graph_inputs(model, atoms)
    example = (pos, torch.eye(3, dtype=model.dtype), spec, edges,
               torch.zeros(edges.shape[1], 3, dtype=model.dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        core = torch.jit.trace(_energy_core(model), example, check_trace=False)
    scripted = torch.jit.script(_lammps_wrapper()(core, model.cutoff, rf, hops, model.type_names, dtype))
    meta = {"format": LAMMPS_FORMAT, "cutoff": float(model.cutoff), "receptive_field": rf, "n_hops": hops,
            "type_names": list(model.type_names), "dtype": dtype,
            "units": {"energy": "eV", "length": "Å", "force": "eV/Å", "virial": "eV"},
            "lammps": "units metal; newton on; pair_style cgkit; pair_coeff * * FILE " + " ".join(model.type_names)}
    torch.jit.save(scripted, str(path), _extra_files={"cgkit_metadata.json": json.dumps(meta)})
    report = {"dtype": dtype, "cutoff": float(model.cutoff), "receptive_field": rf, "n_hops": hops,
              "type_names": list(model.type_names)}
    if check:
        loaded = torch.jit.load(str(path))
        atoms = _example_structure(model, 2, 1)  # other atoms, edges and images than traced
        atoms.cell[2, 0] += 0.3 * atoms.cell[0, 0]  # triclinic
        atoms.wrap()
        g = model.graph(atoms)
        ref = model.compute(g, forces=True, stress=True)
        P, S, Eidx, nloc = _lammps_graph_inputs(model, atoms)
        e, _, f, w, _ = loaded(P, S, Eidx, nloc, True, False)
        # ghost forces belong to their owners (LAMMPS's reverse communication)
        n0 = len(atoms)
        owner = _owners(P, atoms)
        f_own = torch.zeros(n0, 3, dtype=f.dtype).index_add(0, owner, f)
        e_ref = ref["energy"][0]
        vol = abs(float(np.linalg.det(atoms.cell[:])))
        s = ref["stress"][0]
        w_ref = -vol * torch.stack([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]])
        e_rel = float((e - e_ref).abs() / e_ref.abs().clamp_min(1e-30))
        f_rel = float((f_own - ref["forces"]).abs().max()) / max(float(ref["forces"].abs().max()), 1e-30)
        w_rel = float((w - w_ref).abs().max()) / max(float(w_ref.abs().max()), 1e-30)
        tol = 1e-5 if model.dtype == torch.float32 else 1e-10
        if e_rel > tol or f_rel > tol or w_rel > 10 * tol:
            raise NotSupportedError(f"the LAMMPS export differs from the eager model (relative energy "
                                    f"{e_rel:.2e}, forces {f_rel:.2e}, virial {w_rel:.2e}); this model "
                                    "cannot be exported faithfully — run it with cgkit instead")
        report.update(check_atoms=n0, check_ghosts=len(P) - n0, energy_rel_error=e_rel,
                      forces_rel_error=f_rel, virial_rel_error=w_rel)
    return report


def _owners(P, atoms):
    """Index of the cell atom each explicit image in ``P`` (local atoms first) belongs to."""
    import numpy as np
    import torch

    cell = np.asarray(atoms.cell[:], dtype=float)
    n0 = len(atoms)
    pos = atoms.get_positions()
    frac = (np.asarray(P, dtype=float)[:, None, :] - pos[None, :, :]) @ np.linalg.inv(cell)
    dist = np.abs(frac - np.round(frac)).max(-1)
    return torch.as_tensor(dist.argmin(1), dtype=torch.long) if n0 else torch.zeros(0, dtype=torch.long)
