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

__all__ = ["export_torchscript"]


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
