"""Training data: extxyz (ASE) structures → AtomicGraphs with targets, splits, statistics.

Targets read per structure: ``energy`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å³, ASE
sign convention) from the ASE calculator results or ``info``/``arrays``; optional per-structure
vectors (e.g. a dipole, e·Å) from ``atoms.info[vector_key]`` and symmetric traceless 3×3
tensors (l = 2, e.g. a traceless quadrupole, e·Å²) from ``atoms.info[tensor_key]`` (a 3×3
array or 9 numbers, row-major). Both are sums over atoms of the model's per-atom heads.
Per-atom ``charges`` (e) and per-structure ``dipole`` (3,) e·Å (μ = Σ q_i r_i, positions as
stored) are read when present (ASE calculator results, ``arrays['charges']``,
``info['dipole']``). Every structure also carries a ``weight`` (from its data source) used in
the loss.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..data import AtomicGraph
from ..errors import InputError, TrainingError

__all__ = ["load_structures", "graphs_from_atoms", "split_indices", "split_three",
           "fit_statistics", "symmetric_traceless_target"]

#: relative tolerance of the symmetric/traceless check of tensor targets (round-off of text files)
TENSOR_TOLERANCE = 1e-6


def symmetric_traceless_target(value, *, where: str = "a structure") -> np.ndarray:
    """(3, 3) float64 array from a 3×3 array or 9 numbers (row-major) that must be symmetric
    and traceless (within :data:`TENSOR_TOLERANCE` of its largest component).

    The returned tensor is the exact symmetric traceless part (removes text round-off).
    Anything else raises :class:`InputError`: an l = 2 head can only represent the symmetric
    traceless part, so a silent projection would hide a mislabelled property.
    """
    t = np.asarray(value, dtype=np.float64)
    if t.size != 9:
        raise InputError(f"the tensor target of {where} has {t.size} numbers; give a 3×3 matrix "
                         "(or 9 numbers, row-major)")
    t = t.reshape(3, 3)
    if not np.isfinite(t).all():
        raise InputError(f"the tensor target of {where} is not finite")
    sym = 0.5 * (t + t.T)
    proj = sym - np.trace(sym) / 3.0 * np.eye(3)
    tol = TENSOR_TOLERANCE * max(float(np.abs(t).max()), 1e-300)
    asym, trace = float(np.abs(t - t.T).max()), abs(float(np.trace(t)))
    if asym > tol or trace > tol:
        raise InputError(f"the tensor target of {where} is not symmetric and traceless "
                         f"(max |T − Tᵀ| = {asym:.3g}, |tr T| = {trace:.3g}); the l = 2 head learns "
                         "symmetric traceless tensors only: store (T + Tᵀ)/2 − tr(T)/3·I "
                         "(e.g. the traceless quadrupole) and, if needed, the trace as a separate label")
    return proj


def load_structures(path) -> list:
    """All frames of an extxyz (or any ASE-readable) file."""
    from ase.io import read
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file '{path}' does not exist; give an extxyz file")
    try:
        frames = read(str(path), index=":")
    except Exception as exc:  # noqa: BLE001 - any parser error means an unreadable file
        raise InputError(f"cannot read '{path}' as a structure file: {exc}") from exc
    if not frames:
        raise InputError(f"'{path}' holds no structures")
    return frames


def graphs_from_atoms(frames: Iterable, type_names: Sequence[str], cutoff: float, *,
                      dtype=torch.float64, weight: float = 1.0, vector_key: str | None = None,
                      tensor_key: str | None = None, source: str = "") -> list[AtomicGraph]:
    """One AtomicGraph with targets per frame (every frame must have an energy).

    Targets: ``energy`` (1,), ``forces`` (n, 3), ``stress`` (1, 3, 3), ``vectors`` (1, 3) from
    ``info[vector_key]``, ``tensors`` (1, 3, 3) symmetric traceless from ``info[tensor_key]``
    (see :func:`symmetric_traceless_target`), ``weight`` (1,)."""
    out = []
    src = source or "the data"
    for k, atoms in enumerate(frames):
        where = f"frame {k} of {src}"
        _check_finite(np.asarray(atoms.positions), f"{where}: positions")
        if atoms.pbc.any():
            _check_finite(np.asarray(atoms.cell[:]), f"{where}: cell")
        g = AtomicGraph.from_atoms(atoms, cutoff, type_names=type_names, dtype=dtype, read_targets=True)
        if "energy" not in g.targets:
            raise InputError(f"{where} has no energy; every training structure needs an energy "
                             "(and ideally forces)")
        if "forces" in g.targets and g.targets["forces"].shape != (len(atoms), 3):
            raise InputError(f"{where}: forces must be (n_atoms, 3)")
        for key in ("energy", "forces", "stress"):
            if key in g.targets:
                _check_finite(g.targets[key].detach().cpu().numpy(), f"{where}: {key}")
        g.targets = {key: v.to(dtype) for key, v in g.targets.items()}
        if vector_key and vector_key in atoms.info:
            try:
                vec = np.asarray(atoms.info[vector_key], dtype=np.float64).reshape(1, 3)
            except (TypeError, ValueError):
                raise InputError(f"{where}: info['{vector_key}'] must be 3 numbers "
                                 f"(a vector), got {atoms.info[vector_key]!r}") from None
            _check_finite(vec, f"{where}: info['{vector_key}']")
            g.targets["vectors"] = torch.as_tensor(vec, dtype=dtype)
        if tensor_key and tensor_key in atoms.info:
            ten = symmetric_traceless_target(atoms.info[tensor_key],
                                             where=where)
            g.targets["tensors"] = torch.as_tensor(ten, dtype=dtype).unsqueeze(0)
        _charge_targets(atoms, g, where, dtype)
        g.targets["weight"] = torch.tensor([float(weight)], dtype=dtype)
        out.append(g)
    return out


def _label(atoms, key: str, per_atom: bool):
    """A label stored with ``atoms``: calculator results first, then arrays/info; or None."""
    calc = atoms.calc
    res = getattr(calc, "results", None) or {}
    if key in res and res[key] is not None:
        return res[key]
    store = atoms.arrays if per_atom else atoms.info
    return store.get(key)


def _charge_targets(atoms, g, where: str, dtype) -> None:
    """``charges`` (n,) e and ``dipole`` (1, 3) e·Å targets when the frame has them."""
    q = _label(atoms, "charges", True)
    if q is not None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(atoms),):
            raise InputError(f"{where}: charges must be one number per atom ({len(atoms)}), "
                             f"got shape {q.shape}")
        _check_finite(q, f"{where}: charges")
        g.targets["charges"] = torch.as_tensor(q, dtype=dtype)
    mu = _label(atoms, "dipole", False)
    if mu is not None:
        try:
            mu = np.asarray(mu, dtype=np.float64).reshape(1, 3)
        except (TypeError, ValueError):
            raise InputError(f"{where}: dipole must be 3 numbers (e·Å), got {mu!r}") from None
        _check_finite(mu, f"{where}: dipole")
        _check_dipole_unit_and_size(atoms, mu[0], q, where)
        g.targets["dipole"] = torch.as_tensor(mu, dtype=dtype)


#: spellings of e·Å accepted in ``info['dipole_unit']`` (case-insensitive, without spaces, '*', '·')
DIPOLE_UNITS_EA = {"ea", "eå", "eang", "eangstrom", "e_a", "e_ang"}
#: factors to e·Å of units users commonly store dipoles in (for the refusal message)
DIPOLE_UNIT_HINTS = {"debye": 1 / 4.803204, "d": 1 / 4.803204, "au": 0.529177, "ebohr": 0.529177,
                     "ea0": 0.529177, "cm": 1 / 1.602176634e-29}
#: largest |atomic charge| (e) a dipole label may imply: |μ − Q c| ≤ Q_MAX · Σ_i |r_i − c|
DIPOLE_Q_MAX = 2.0


def _check_dipole_unit_and_size(atoms, mu: np.ndarray, q_ref, where: str) -> None:
    """Refuse a dipole label in another unit than e·Å, and one no point charges |q_i| ≤
    :data:`DIPOLE_Q_MAX` could give for these positions (for an open structure).

    ``info['dipole_unit']`` (or ``dipole_units``), if present, must name e·Å. Magnitude: for
    charges q_i with Σ q_i = Q and any point c, ``μ − Q c = Σ q_i (r_i − c)``, so
    ``|μ − Q c| ≤ max|q_i| · Σ_i |r_i − c|`` (c: the centroid; Q: the sum of the ASE
    ``initial_charges``, else of the reference charges, else 0). A label in Debye (4.8× e·Å)
    of a polar molecule, or one taken about another origin for a charged structure, breaks it.
    Periodic structures are not checked here (their dipole labels are refused by the trainer
    when ``dipole_weight > 0``)."""
    unit = atoms.info.get("dipole_unit", atoms.info.get("dipole_units"))
    if unit is not None:
        key = str(unit).lower().replace(" ", "").replace("*", "").replace("·", "").replace(".", "")
        if key not in DIPOLE_UNITS_EA:
            hint = DIPOLE_UNIT_HINTS.get(key)
            conv = f" (multiply by {hint:.6g} to convert {unit} to e·Å)" if hint else ""
            raise InputError(f"{where}: the dipole is labelled in {unit!r}; cgkit trains on dipoles "
                             f"in e·Å (μ = Σ q_i r_i, q in e, r in Å){conv}; store it in e·Å and set "
                             "info['dipole_unit'] = 'e*A' (or remove the key)")
    if bool(np.any(atoms.pbc)):
        return
    r = np.asarray(atoms.positions, dtype=np.float64)
    c = r.mean(0)
    q0 = np.asarray(atoms.get_initial_charges(), dtype=np.float64) if "initial_charges" in atoms.arrays else None
    if q0 is not None and np.any(q0 != 0):
        Q = float(q0.sum())
    elif q_ref is not None:
        Q = float(np.sum(q_ref))
    else:
        Q = 0.0
    bound = DIPOLE_Q_MAX * float(np.linalg.norm(r - c, axis=1).sum()) + 1e-3
    size = float(np.linalg.norm(mu - Q * c))
    if size > bound:
        raise InputError(f"{where}: the dipole label |μ − Q·c| = {size:.4g} e·Å (Q = {Q:g} e, c the "
                         f"centroid) exceeds what atomic charges within ±{DIPOLE_Q_MAX:g} e can give for "
                         f"these positions ({bound:.4g} e·Å): is it in Debye or atomic units instead of "
                         "e·Å (1 e·Å = 4.803 D = 1.890 e·a0), or, for a charged structure, taken about "
                         "another origin than the coordinates' (μ = Σ q_i r_i with the positions as "
                         "stored; set initial_charges to the total charge)?")


def _check_finite(values: np.ndarray, what: str) -> None:
    """InputError naming ``what`` (file, frame, quantity) and the atoms/components if not finite."""
    bad = ~np.isfinite(values)
    if bad.any():
        detail = ""
        if values.ndim == 2 and values.shape[1] == 3 and "cell" not in what and "stress" not in what:
            detail = f" at atoms {np.flatnonzero(bad.any(axis=1)).tolist()[:10]} (0-based)"
        raise InputError(f"{what} contain NaN or infinite values{detail}; remove or relabel that frame")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split of ``n`` structures (reproducible with ``seed``)."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    if n - n_val < 1:
        raise TrainingError(f"only {n} structures: nothing left for training after the validation split")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_three(n: int, val_fraction: float, test_fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/validation/test split of ``n`` structures (reproducible with ``seed``).

    The validation set is the one :func:`split_indices` draws (the same for any
    ``test_fraction``, so adding a test split keeps the validation set of ``test_fraction: 0``
    runs); the test set is the next ``round(test_fraction · n)`` of the same permutation
    (at least one when ``test_fraction > 0``)."""
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"test_fraction must be in [0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    n_test = int(round(test_fraction * n))
    if test_fraction > 0 and n_test == 0:
        n_test = 1
    if n - n_val - n_test < 1:
        raise TrainingError(f"only {n} structures: nothing left for training after the validation "
                            f"({n_val}) and test ({n_test}) splits; lower val_fraction/test_fraction")
    return (np.sort(perm[n_val + n_test:]), np.sort(perm[:n_val]),
            np.sort(perm[n_val:n_val + n_test]))


def fit_statistics(graphs: Sequence[AtomicGraph], n_species: int, e0s=None) -> dict:
    """Per-species reference energies (``e0s`` (n_species,) eV if given, else the least-squares
    fit E_g ≈ Σ_s n_gs e_s — MACE's ``E0s: average``), energy scale (RMS of force components,
    eV/Å·Å = eV; RMS of per-atom residual energy without forces) and the mean number of
    neighbours within the cutoff."""
    counts = np.stack([np.bincount(g.species.numpy(), minlength=n_species) for g in graphs]).astype(float)
    energies = np.array([float(g.targets["energy"][0]) for g in graphs])
    if e0s is None:
        shift, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    else:
        shift = np.asarray(e0s, dtype=np.float64).reshape(n_species)
    forces = [g.targets["forces"].numpy().ravel() for g in graphs if "forces" in g.targets]
    if forces:
        scale = float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))
    else:
        resid = (energies - counts @ shift) / counts.sum(1)
        scale = float(np.sqrt(np.mean(resid ** 2)))
    if not np.isfinite(scale) or scale < 1e-6:
        scale = 1.0
    n_edges = sum(g.n_edges for g in graphs)
    n_atoms = sum(g.n_atoms for g in graphs)
    return {"shift": shift.tolist(), "scale": scale, "avg_num_neighbors": max(n_edges / n_atoms, 1.0)}
