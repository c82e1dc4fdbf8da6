"""Harmonic phonons through phonopy, from analytic Hessians or finite displacements.

Route 1 — a cgkit :class:`~cgkit.potential.Potential`: the force constants of the supercell
are exact second derivatives by autograd (float64). By the lattice translations of the
supercell only the rows of the atoms of the primitive cell are needed (3·n_prim vector–Hessian
products in one batched double-backward pass); phonopy expands them to the full
(n_sc, n_sc, 3, 3) layout.

Route 2 — any ASE calculator: phonopy's symmetry-reduced finite displacements.

Either way the force constants go into a :class:`phonopy.Phonopy` object, the acoustic sum
rule is imposed (its size is reported), and band structure (standard path of the Bravais
lattice, from ASE's :meth:`~ase.cell.Cell.bandpath`), DOS, thermal properties, Γ-point
frequencies with irreducible representations, the stable MD time step and phonopy's own
files (``phonopy_params.yaml``, ``FORCE_CONSTANTS``) follow.

Supercell size. Phonopy stores one force constant per pair of supercell atoms and gives it
the shortest vector between them, so the result is right only if no atom interacts with two
images of the same atom. cgkit refuses (:class:`SupercellTooSmallError`) a supercell whose
perpendicular widths are not all ≥ 2 × the model's *reach* (the distance within which an
atom's energy depends on other atoms: the cutoff of pair, three-body and embedded-atom
potentials, n_layers × cutoff of a message-passing ENNP, ``rc_list`` of ASE's EMT, ``rc`` of
ASE's LennardJones): then every atom's interaction sphere holds at most one image of every
atom, and every interacting pair is represented by its unique shortest vector. The error names
the smallest diagonal supercell that fits; ``allow_small_supercell=True``
(``--allow-small-supercell``) computes anyway, with a :class:`SmallSupercellWarning` recorded in
``results["warnings"]``. For a model whose reach is unknown (an arbitrary ASE calculator) the
check is skipped with a warning. (In a many-body potential two atoms can also couple through a
common neighbour, up to 2 × reach apart; these indirect couplings are weak, and with the
criterion met the bands of SW silicon and of a two-layer ENNP agree with those of larger
supercells to < 1e-4 THz along the whole path — see tests/properties/test_phonons_refusals.py.)

Polar crystals (non-analytic correction, ``nac=True`` / ``--nac``). A potential with long-range
Coulomb interactions (one that provides ``born_effective_charges(atoms)``: ``cgkit:coulomb``,
``cgkit:nacl-bmh``, ``cgkit:spcfw``, long-range ENNPs) has force constants that decay as 1/r³,
which no finite supercell holds, and a macroscopic field at q → 0 that splits LO from TO modes.
With ``nac=True`` the Born effective charges Z* (from the potential, computed for the unit cell,
or given as ``born_charges``) and the high-frequency dielectric tensor ε∞ (``epsilon_inf``,
scalar or 3×3; default 1, the exact value for point charges that do not respond to a field,
i.e. for every fixed-charge model) go to phonopy's Gonze–Lee correction (``nac_params``,
``method="gonze"``, ``factor`` = k_e = 14.399645 eV·Å/e²): phonopy subtracts the dipole–dipole
force constants (an Ewald sum with Z* and ε∞) from the supercell force constants, interpolates
the short-range rest and adds the dipole–dipole dynamical matrix back at every q. For rigid point
charges (Z* = q·I, ε∞ = 1) the dipole–dipole term *is* the harmonic Coulomb interaction, so the
rest has the reach of the short-range terms alone: the supercell criterion above then uses the
potential's ``short_range_cutoff`` (BMH/LJ cutoff; 0 for bare Coulomb) — exact, not an
approximation. Bands show the LO–TO splitting (phonopy takes the q → 0 direction from the path
segment at Γ); ``results["lo_to"]`` lists the Γ frequencies with the correction along the
Cartesian x, y and z directions beside those without. Without ``nac`` a long-range potential is
refused (:class:`SupercellTooSmallError`: the long-range force constants would be folded into the
supercell), unless ``allow_small_supercell``. The MD time step (``timestep``) is that of the
supercell's Γ point from the force constants as computed (Ewald, tin-foil boundary), i.e. of an
MD run in that supercell, with or without ``nac``.

Units: frequencies THz (imaginary modes as negative numbers), force constants eV/Å², masses
amu, Born charges e, thermal properties as phonopy: free energy kJ/mol, entropy and heat capacity J/(K·mol)
per mole of primitive cells.
"""
from __future__ import annotations

from cgkit.errors import CgkitWarning

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cgkit.errors import InputError, NotSupportedError, StructureError
from cgkit.results import Analysis

from cgkit.results import figure_path
from cgkit.structures import MIN_DISTANCE, check_overlaps, check_periodic, read_structure  # noqa: F401  (re-exported)

from .calculators import Results, resolve_model
from .timestep import stability_from_hessian, timestep_from_frequency

__all__ = ["Phonons", "ImaginaryModeWarning", "SmallSupercellWarning", "SupercellTooSmallError",
           "analytic_force_constants", "ase_to_phonopy", "phonopy_to_ase", "interaction_reach",
           "perpendicular_widths", "check_supercell", "check_overlaps", "born_charges_of",
           "is_long_range", "epsilon_tensor", "supercell_charges", "K_E"]

#: eV·Å/e², the Coulomb constant (phonopy's NAC unit factor for eV, Å, e)
K_E = 14.399645

#: Å; atoms closer than this (periodic images included) are refused as overlapping


class ImaginaryModeWarning(CgkitWarning):
    """The structure has imaginary phonon frequencies (reported as negative numbers)."""


class SmallSupercellWarning(CgkitWarning):
    """The supercell is narrower than twice the interaction reach (computed on request) or its
    reach cannot be checked."""


class SupercellTooSmallError(InputError):
    """The supercell is narrower than twice the interaction reach of the model."""


# ---------------------------------------------------------------------- supercell check
def interaction_reach(model, atoms=None):
    """``(reach Å or None, how)``: the distance within which an atom's energy depends on other
    atoms. cgkit potentials: ``cutoff`` (pair, three-body, embedded-atom), ``n_layers × cutoff``
    for a message-passing :class:`~cgkit.nn.model.ENNP`, the largest term of a sum or ensemble;
    ASE: EMT's ``rc_list`` (its neighbour-list cutoff, for ``atoms``), LennardJones' ``rc``;
    ``None`` when unknown."""
    from cgkit.calculator import CgkitCalculator
    from cgkit.potential import Potential
    if isinstance(model, CgkitCalculator):
        model = model.potential
    if isinstance(model, Potential):
        return _potential_reach(model)
    name = type(model).__name__
    if name == "EMT" and atoms is not None and hasattr(model, "initialize"):
        probe = type(model)(**dict(getattr(model, "parameters", {}) or {}))
        probe.initialize(atoms)
        return float(probe.rc_list), "EMT neighbour-list cutoff rc_list"
    params = getattr(model, "parameters", None) or {}
    if name == "LennardJones":
        rc = params.get("rc")
        if rc is None:
            rc = 3.0 * float(params.get("sigma", 1.0))
        return float(rc), "LennardJones cutoff rc"
    return None, f"the reach of {name} is unknown"


def _potential_reach(pot):
    from cgkit.potential import SumPotential
    src = getattr(pot, "short_range_cutoff", None)
    if src is not None:  # a potential with a long-range Coulomb part: its short-range reach
        return float(src), f"{type(pot).__name__} short-range cutoff (Coulomb long range by NAC)"
    terms = getattr(pot, "terms", None) if isinstance(pot, SumPotential) else None
    members = getattr(pot, "members", None)
    parts = list(terms) if terms is not None else (list(members) if members is not None else None)
    if parts:
        reaches = [_potential_reach(t) for t in parts]
        if any(r is None for r, _ in reaches):
            return None, "a term of unknown reach"
        r, how = max(reaches, key=lambda x: x[0])
        return r, how
    try:
        from cgkit.nn.model import ENNP
    except ImportError:  # pragma: no cover
        ENNP = ()
    cutoff = float(getattr(pot, "cutoff", 0.0) or 0.0)
    if not cutoff > 0:
        return None, f"{type(pot).__name__} has no cutoff"
    layers = getattr(pot, "layers", None)  # ENNP, and wrappers of one (e.g. LongRangeENNP)
    if (ENNP and isinstance(pot, ENNP)) or (layers is not None and hasattr(layers, "__len__")):
        n = len(layers)
        return n * cutoff, f"{n} message-passing layers × cutoff {cutoff:g} Å"
    return cutoff, f"{type(pot).__name__} cutoff"


def _parts(model):
    """The potential terms of a model (a Potential, a sum, an ensemble or a CgkitCalculator)."""
    from cgkit.calculator import CgkitCalculator
    if isinstance(model, CgkitCalculator):
        model = model.potential
    terms = getattr(model, "terms", None)
    if terms is None:
        terms = getattr(model, "members", None)
    if terms is not None:
        return [p for t in terms for p in _parts(t)]
    return [model]


def is_long_range(model) -> bool:
    """True when a cgkit model (or a term of it) has long-range Coulomb interactions, i.e.
    provides ``born_effective_charges``."""
    return any(callable(getattr(p, "born_effective_charges", None)) for p in _parts(model))


def born_charges_of(model, atoms) -> np.ndarray | None:
    """(n, 3, 3) e: the Born effective charges of ``atoms`` from the model (summed over the
    terms of a sum; the mean over the members of an ensemble), or None when the model has
    none."""
    from cgkit.calculator import CgkitCalculator
    if isinstance(model, CgkitCalculator):
        model = model.potential
    fn = getattr(model, "born_effective_charges", None)
    if callable(fn):
        z = np.asarray(fn(atoms), dtype=np.float64)
        if z.shape != (len(atoms), 3, 3) or not np.all(np.isfinite(z)):
            raise NotSupportedError(f"{type(model).__name__}.born_effective_charges returned "
                                    f"shape {z.shape} (or non-finite values); expected "
                                    f"({len(atoms)}, 3, 3) finite numbers")
        return z
    terms, members = getattr(model, "terms", None), getattr(model, "members", None)
    if terms is not None:
        zs = [z for z in (born_charges_of(t, atoms) for t in terms) if z is not None]
        return sum(zs) if zs else None
    if members is not None:
        zs = [born_charges_of(m, atoms) for m in members]
        if any(z is None for z in zs):
            return None
        return sum(zs) / len(zs)
    return None


def epsilon_tensor(epsilon_inf) -> np.ndarray:
    """(3, 3) ε∞ from a scalar, 3 diagonal values or a 3×3 / 9-value tensor; refused unless
    finite, symmetric and ≥ 1 in every direction."""
    e = np.asarray(epsilon_inf if epsilon_inf is not None else 1.0, dtype=float)
    if e.size == 1:
        e = np.eye(3) * float(e.reshape(-1)[0])
    elif e.size == 3:
        e = np.diag(e.reshape(-1))
    elif e.size == 9:
        e = e.reshape(3, 3)
    else:
        raise InputError(f"epsilon_inf (--epsilon-inf) takes 1, 3 (diagonal) or 9 (3×3) numbers, "
                         f"got {e.size}")
    if not np.all(np.isfinite(e)) or not np.allclose(e, e.T, atol=1e-10):
        raise InputError(f"epsilon_inf must be a finite symmetric tensor, got {e.tolist()}")
    if np.linalg.eigvalsh(e).min() < 1.0 - 1e-12:
        raise InputError(f"epsilon_inf must be ≥ 1 in every direction (a dielectric constant), got "
                         f"eigenvalues {np.linalg.eigvalsh(e).tolist()}")
    return e


def perpendicular_widths(cell) -> np.ndarray:
    """(3,) distances (Å) between opposite faces of the cell (rows: lattice vectors, Å)."""
    L = np.asarray(cell, dtype=float)
    V = abs(np.linalg.det(L))
    return np.array([V / np.linalg.norm(np.cross(L[(i + 1) % 3], L[(i + 2) % 3])) for i in range(3)])


def check_supercell(atoms, supercell_matrix, model, *, nac: bool = False) -> dict:
    """The supercell criterion (module docstring): ``ok`` when every perpendicular width of the
    supercell of ``atoms`` (``supercell_matrix`` 3×3, rows in units of ``atoms.cell``) is at
    least ``2 × reach``. Returns ``ok`` (None when the reach is unknown), ``reach`` Å,
    ``reach_from``, ``widths`` Å, ``needed_width`` Å and ``smallest_diagonal`` (the smallest
    diagonal supercell of ``atoms`` that fits). A long-range (Coulomb) model fails the check
    whatever the size unless ``nac`` (``long_range`` True, ``needs_nac`` True)."""
    M = np.asarray(supercell_matrix, dtype=float)
    unit = np.asarray(atoms.cell.array, dtype=float)
    widths = perpendicular_widths(M @ unit)
    reach, how = interaction_reach(model, atoms)
    long_range = is_long_range(model)
    out = {"reach": reach, "reach_from": how, "widths": widths.tolist(), "criterion":
           "every perpendicular width of the supercell ≥ 2 × reach", "long_range": long_range,
           "needs_nac": bool(long_range and not nac)}
    if reach is None:
        out.update(ok=None, needed_width=None, smallest_diagonal=None)
        return out
    need = 2.0 * reach
    w_unit = perpendicular_widths(unit)
    smallest = [int(max(1, np.ceil(need / w - 1e-9))) for w in w_unit]
    out.update(ok=bool(np.all(widths >= need - 1e-6)) and not out["needs_nac"], needed_width=need,
               smallest_diagonal=smallest)
    return out


# ---------------------------------------------------------------------- conversions
def ase_to_phonopy(atoms):
    from phonopy.structure.atoms import PhonopyAtoms
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell.array),
                        scaled_positions=atoms.get_scaled_positions(wrap=False),
                        masses=atoms.get_masses())


def phonopy_to_ase(patoms):
    from ase import Atoms
    return Atoms(symbols=patoms.symbols, cell=patoms.cell, scaled_positions=patoms.scaled_positions,
                 masses=patoms.masses, pbc=True)


def _supercell_matrix(supercell):
    m = np.asarray(supercell, dtype=int)
    if m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or abs(round(np.linalg.det(m))) < 1:
        raise InputError(f"supercell must be 3 integers or a 3×3 integer matrix with non-zero "
                         f"determinant, got {supercell!r}")
    return m


# ---------------------------------------------------------------------- analytic Hessian
def supercell_charges(phonon, unit_charges):
    """(n_sc,) e: the unit cell's ASE initial charges carried to ``phonon.supercell`` (None
    when there are none)."""
    if unit_charges is None:
        return None
    sc = phonon.supercell
    u2u = sc.u2u_map
    return np.array([unit_charges[u2u[s]] for s in sc.s2u_map], dtype=np.float64)


def _unit_charges(atoms):
    if "initial_charges" not in atoms.arrays:
        return None
    q = np.asarray(atoms.get_initial_charges(), dtype=np.float64)
    return q if np.any(q != 0) else None


def analytic_force_constants(potential, phonon, *, use_symmetry: bool = True,
                             charges=None) -> np.ndarray:
    """Full-layout force constants (n_sc, n_sc, 3, 3) eV/Å² of ``phonon.supercell``.

    Only the Hessian rows of the symmetry-independent atoms of the supercell are computed
    (``use_symmetry``; phonopy's space-group operations and atom permutations fill the other
    rows, as phonopy does with its displaced-supercell forces); without symmetry, the rows of
    the primitive-cell atoms, mapped to all atoms by the lattice translations.
    ``charges``: (n_sc,) e, initial charges of the supercell atoms (for potentials that read
    them, e.g. ``cgkit:coulomb``; see :func:`supercell_charges`).
    """
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc, distribute_force_constants
    sc = phonopy_to_ase(phonon.supercell)
    if charges is not None:
        sc.set_initial_charges(charges)
    graph = potential.graph(sc, dtype=torch.float64)
    n_s = len(sc)
    if use_symmetry:
        sym = phonon.symmetry
        atoms = np.asarray(sym.get_independent_atoms(), dtype=np.int64)
    else:
        atoms = np.asarray(phonon.primitive.p2s_map, dtype=np.int64)
    rows = (3 * atoms[:, None] + np.arange(3)[None, :]).reshape(-1)
    R = potential.hessian(graph, rows=rows).numpy()                   # (3 n_a, 3 n_s)
    block = R.reshape(len(atoms), 3, n_s, 3).transpose(0, 2, 1, 3)    # (n_a, n_s, 3, 3)
    if not use_symmetry:
        return compact_fc_to_full_fc(phonon.primitive, block.copy())
    fc = np.zeros((n_s, n_s, 3, 3), dtype=np.double, order="C")
    fc[atoms] = block
    distribute_force_constants(fc, atoms, np.asarray(phonon.supercell.cell, dtype=np.double).T.copy(),
                               np.asarray(sym.symmetry_operations["rotations"], dtype=np.int64),
                               np.asarray(sym.atomic_permutations, dtype=np.int64))
    return fc


def _asr_drift(fc: np.ndarray) -> float:
    """max |Σ_j Φ_ij| over atoms i and Cartesian pairs (eV/Å²), full layout."""
    return float(np.abs(fc.sum(axis=1)).max())


# ---------------------------------------------------------------------- band path
_PRETTY = {"G": "Γ"}


def band_path(cell, npoints: int = 51):
    """Standard path of the Bravais lattice of ``cell`` (rows, Å) from ASE.

    Returns (segments, labels): segments is a list of connected pieces, each a list of
    (label, fractional q in the reciprocal basis of ``cell``).
    """
    from ase.cell import Cell
    bp = Cell(np.asarray(cell)).bandpath(npoints=0)
    pieces = []
    for piece in bp.path.split(","):
        labels, k = [], 0
        while k < len(piece):  # labels may carry digits or primes (e.g. 'M1', 'Y2')
            j = k + 1
            while j < len(piece) and (piece[j].isdigit() or piece[j] == "'"):
                j += 1
            labels.append(piece[k:j])
            k = j
        pieces.append([(lab, np.asarray(bp.special_points[lab], dtype=float)) for lab in labels])
    return pieces


class Phonons(Analysis):
    """Harmonic phonons of a crystal (MDAnalysis-style: construct, :meth:`run`, read
    :attr:`results`).

    Parameters
    ----------
    structure : ASE Atoms or any ASE-readable file — the unit cell, periodic in 3D
    model : cgkit Potential / CgkitCalculator (analytic Hessian), any ASE calculator (phonopy
        finite displacements) or a ``--potential`` spec string (see
        :func:`cgkit.properties.calculators.load_model`)
    supercell : 3 repetitions or a 3×3 integer matrix of the unit cell
    primitive_matrix : phonopy's (``"auto"``: found by symmetry; ``None``: the unit cell)
    method : ``"auto"`` (analytic for cgkit potentials), ``"analytic"`` or ``"finite_displacement"``
    displacement : Å, phonopy displacement distance for the finite-displacement route
    mesh : q-point mesh for DOS and thermal properties (3 ints, or a length density as phonopy)
    band_npoints : q-points per band segment
    temperatures : (t_min, t_max, t_step) K for thermal properties
    symmetrize : impose the acoustic sum rule and index permutation symmetry (phonopy's
        ``symmetrize_force_constants``); the correction is reported either way
    imaginary_tol : THz; frequencies below ``-imaginary_tol`` count as imaginary (warned)
    symprec : symmetry tolerance (Å)
    allow_small_supercell : compute even when the supercell is narrower than twice the model's
        reach (see the module docstring); recorded in ``results["warnings"]`` and warned
    nac : apply the non-analytic correction of polar crystals (module docstring); needs Born
        effective charges from the potential (``born_effective_charges``) or ``born_charges``
    epsilon_inf : ε∞ for ``nac``: a scalar, 3 diagonal values or a 3×3 tensor (default 1, exact
        for fixed point charges)
    born_charges : (n, 3, 3) e (or (n,) charges q meaning q·I) of the atoms of ``structure``,
        overriding the potential's (e.g. for an ASE calculator)

    Results (``self.results``)
    --------------------------
    ``labels_frequencies`` {label: frequencies THz} at the high-symmetry points of the path;
    ``band`` {distances 1/Å, frequencies THz, labels, label_positions}; ``dos`` {frequencies
    THz, dos states/THz per primitive cell}; ``thermal`` {temperatures K, free_energy kJ/mol,
    entropy J/K/mol, heat_capacity J/K/mol}; ``gamma`` {frequencies THz, irreps};
    ``max_frequency`` THz (band path and mesh) and ``timestep`` (λ_max eV/Å²/amu, ω_max rad/fs,
    dt_max fs, … of the supercell's Γ point, i.e. of an MD run in that supercell);
    ``asr`` {drift_before, drift_after, max_change} eV/Å²; ``imaginary`` {count, min_frequency};
    with ``nac``: ``nac`` {epsilon_inf, born_charges of the primitive-cell atoms e, born_sum (Σ Z*
    over the unit cell before the neutrality correction) e, method, factor} and ``lo_to``
    {directions, frequencies_nac THz per direction, frequencies_without THz, max_splitting THz};
    ``timings`` s; ``method``; ``supercell_check`` (reach Å, widths Å, ok, smallest diagonal
    supercell, override); ``warnings`` (list of str).
    """

    def __init__(self, structure, model, supercell=(3, 3, 3), *, primitive_matrix="auto",
                 method: str = "auto", displacement: float = 0.01, mesh=(20, 20, 20),
                 band_npoints: int = 51, temperatures=(0.0, 1000.0, 10.0), symmetrize: bool = True,
                 imaginary_tol: float = 1e-2, symprec: float = 1e-5, progress: bool = True,
                 allow_small_supercell: bool = False, nac: bool = False, epsilon_inf=None,
                 born_charges=None):
        self.atoms = read_structure(structure)
        check_periodic(self.atoms, "a phonon calculation")
        check_overlaps(self.atoms)
        self.supercell_matrix = _supercell_matrix(supercell)
        if method not in ("auto", "analytic", "finite_displacement"):
            raise InputError(f"method must be 'auto', 'analytic' or 'finite_displacement', got '{method}'")
        if not displacement > 0:
            raise InputError(f"displacement must be > 0 Å, got {displacement}")
        self.model = model
        self.primitive_matrix = primitive_matrix
        self.method = method
        self.displacement = float(displacement)
        self.mesh = mesh
        self.band_npoints = int(band_npoints)
        self.temperatures = tuple(float(t) for t in temperatures)
        self.symmetrize = symmetrize
        self.imaginary_tol = float(imaginary_tol)
        self.symprec = float(symprec)
        self.progress = progress
        self.allow_small_supercell = bool(allow_small_supercell)
        self.nac = bool(nac)
        if not self.nac and (epsilon_inf is not None or born_charges is not None):
            raise InputError("epsilon_inf and born_charges are parameters of the non-analytic "
                             "correction: pass nac=True (--nac) as well")
        self.epsilon_inf = epsilon_tensor(epsilon_inf) if self.nac else None
        self.born_charges = None
        if born_charges is not None:
            z = np.asarray(born_charges, dtype=float)
            if z.shape == (len(self.atoms),):
                z = z[:, None, None] * np.eye(3)[None]
            if z.shape != (len(self.atoms), 3, 3) or not np.all(np.isfinite(z)):
                raise InputError(f"born_charges must be finite, shape ({len(self.atoms)}, 3, 3) or "
                                 f"({len(self.atoms)},) e, got shape {z.shape}")
            self.born_charges = z
        self.phonopy = None
        self.results = Results()
        self._model = None

    def _resolved(self):
        if self._model is None:
            self._model = resolve_model(self.model)
        return self._model

    def check_supercell(self) -> dict:
        """The supercell criterion of the module docstring, before any force calculation.

        Raises :class:`SupercellTooSmallError` when the supercell is too narrow and
        ``allow_small_supercell`` is False; otherwise returns the check (``ok``, ``reach``,
        ``widths``, ``smallest_diagonal``, ``override``, ``warning``)."""
        potential, calc = self._resolved()
        model = potential if potential is not None else calc
        if self.nac:
            self._born()  # refuse --nac without Born charges before anything else
        chk = check_supercell(self.atoms, self.supercell_matrix, model, nac=self.nac)
        chk["override"] = self.allow_small_supercell
        chk["warning"] = None
        M = self.supercell_matrix
        label = ("×".join(str(int(x)) for x in np.diag(M)) if np.allclose(M, np.diag(np.diag(M)))
                 else str(M.tolist()))
        widths = ", ".join(f"{w:.2f}" for w in chk["widths"])
        if chk["needs_nac"]:
            msg = (f"{type(potential).__name__} has long-range Coulomb interactions: its force "
                   "constants decay as 1/r³ and no finite supercell holds them, and the LO–TO "
                   "splitting at Γ needs the macroscopic field")
            if not self.allow_small_supercell:
                raise SupercellTooSmallError(
                    msg + ": use the non-analytic correction, --nac [--epsilon-inf 1] "
                    "(nac=True), or pass --allow-small-supercell (allow_small_supercell=True) to "
                    "compute with the long-range force constants folded into the supercell")
            chk["warning"] = msg + "; computed without --nac on request (--allow-small-supercell): " \
                                   "the bands lack the LO–TO splitting and are wrong away from " \
                                   "the supercell's commensurate q-points"
        elif chk["ok"] is None:
            chk["warning"] = (f"the supercell cannot be checked against the interaction range: "
                              f"{chk['reach_from']}; make sure its widths ({widths} Å) are at least "
                              "twice the range of the potential")
        elif not chk["ok"]:
            n = chk["smallest_diagonal"]
            n_atoms = len(self.atoms) * int(np.prod(n))
            msg = (f"the {label} supercell is too small for this potential: its perpendicular "
                   f"widths are {widths} Å, but every width must be at least 2 × the interaction "
                   f"reach = {chk['needed_width']:.2f} Å ({chk['reach_from']}: "
                   f"{chk['reach']:.3f} Å) so that no atom interacts with two images of another "
                   f"(phonopy keeps one force constant per atom pair). The smallest diagonal "
                   f"supercell that fits is {n[0]} {n[1]} {n[2]} ({n_atoms} atoms)")
            if not self.allow_small_supercell:
                raise SupercellTooSmallError(
                    msg + f": use --supercell {n[0]} {n[1]} {n[2]} (supercell=({n[0]}, {n[1]}, "
                    f"{n[2]})), or pass --allow-small-supercell (allow_small_supercell=True) to "
                    "compute with folded force constants anyway")
            chk["warning"] = msg + "; computed anyway on request (--allow-small-supercell): " \
                                   "frequencies away from the supercell's commensurate q-points are wrong"
        return chk

    def _born(self) -> np.ndarray:
        """(n_unit, 3, 3) e: Born effective charges of the unit cell (given or from the
        potential); refused when there are none."""
        if self.born_charges is not None:
            z = self.born_charges
        else:
            potential, calc = self._resolved()
            model = potential if potential is not None else calc
            z = born_charges_of(model, self.atoms)
            if z is None:
                raise InputError(
                    f"--nac (nac=True) needs Born effective charges, but the potential "
                    f"({type(model).__name__}) provides none (it has no born_effective_charges); "
                    "use a charged potential (cgkit:nacl-bmh, cgkit:coulomb, cgkit:spcfw, an ENNP "
                    "with learned charges), give born_charges=..., or drop --nac")
        total = z.sum(axis=0)
        if float(np.abs(total).max()) > 1e-2:
            raise InputError(f"the Born effective charges of the unit cell sum to "
                             f"{np.round(total, 6).tolist()} e; they must sum to zero (charge "
                             "neutrality, the acoustic sum rule): check the charges of the structure")
        return z

    def _nac_params(self, phonon) -> dict:
        """phonopy ``nac_params`` for the primitive cell (Gonze–Lee, factor k_e)."""
        z = self._born()
        total = z.sum(axis=0)
        z = z - total[None] / len(z)  # a residual below 1e-2 e (learned charges) spread evenly
        sc = phonon.supercell
        unit_idx = [sc.u2u_map[sc.s2u_map[s]] for s in phonon.primitive.p2s_map]
        return {"born": np.ascontiguousarray(z[unit_idx]), "dielectric": self.epsilon_inf.copy(),
                "factor": K_E, "method": "gonze", "_born_sum": total}

    # ------------------------------------------------------------------ force constants
    def _make_phonopy(self):
        from phonopy import Phonopy
        return Phonopy(ase_to_phonopy(self.atoms), supercell_matrix=self.supercell_matrix,
                       primitive_matrix=self.primitive_matrix, symprec=self.symprec, log_level=0)

    def _fd_force_constants(self, phonon, calc):
        from cgkit.progress import progress_bar
        phonon.generate_displacements(distance=self.displacement)
        forces = []
        cells = phonon.supercells_with_displacements
        charges = supercell_charges(phonon, _unit_charges(self.atoms))
        for sc in progress_bar(cells, desc="displaced supercells", unit="cell",
                               disable=None if self.progress else True):
            a = phonopy_to_ase(sc)
            if charges is not None:
                a.set_initial_charges(charges)
            a.calc = calc
            forces.append(np.asarray(a.get_forces(), dtype=np.float64))
        phonon.forces = np.asarray(forces)
        phonon.produce_force_constants(show_drift=False)
        return len(cells)

    def run(self) -> "Phonons":
        t0 = time.perf_counter()
        potential, calc = self._resolved()
        method = self.method
        if method == "auto":
            method = "analytic" if potential is not None else "finite_displacement"
        if method == "analytic" and potential is None:
            raise InputError("the analytic route needs a cgkit potential; for an ASE calculator "
                             "use method='finite_displacement'")
        check = self.check_supercell()
        warn_msgs = []
        if check["warning"]:
            warn_msgs.append(check["warning"])
            warnings.warn(check["warning"], SmallSupercellWarning, stacklevel=2)
        try:
            phonon = self._make_phonopy()
        except Exception as exc:  # noqa: BLE001 - spglib/phonopy reject the cell with their own classes
            if isinstance(exc, (InputError, NotSupportedError)):
                raise
            raise StructureError(f"phonopy cannot set up this structure ({type(exc).__name__}: "
                                 f"{exc}); check for overlapping atoms, a degenerate cell, or "
                                 "--primitive none") from exc
        self.phonopy = phonon
        timings = {"phonopy_setup": time.perf_counter() - t0}
        t_fc = time.perf_counter()
        if method == "analytic":
            phonon.force_constants = analytic_force_constants(
                potential, phonon, charges=supercell_charges(phonon, _unit_charges(self.atoms)))
            n_calls = 0
        else:
            n_calls = self._fd_force_constants(phonon, calc)
        timings["force_constants"] = time.perf_counter() - t_fc
        fc = np.array(phonon.force_constants)
        if not np.all(np.isfinite(fc)):
            raise NotSupportedError("the force constants are not finite: the potential returned "
                                    "NaN/inf forces or Hessian entries for this structure")
        asr = {"drift_before": _asr_drift(fc)}
        if self.symmetrize:
            phonon.symmetrize_force_constants(show_drift=False)
        fc_new = np.asarray(phonon.force_constants)
        asr["drift_after"] = _asr_drift(fc_new)
        asr["max_change"] = float(np.abs(fc_new - fc).max())
        asr["units"] = "eV/Å²"
        if self.nac:
            nac = self._nac_params(phonon)
            born_sum = nac.pop("_born_sum")
            phonon.nac_params = nac
        res = Results(method=method, n_force_calls=n_calls, asr=asr,
                      n_atoms_unitcell=len(self.atoms), n_atoms_primitive=len(phonon.primitive),
                      n_atoms_supercell=len(phonon.supercell),
                      supercell_matrix=self.supercell_matrix.tolist(),
                      displacement=self.displacement if method == "finite_displacement" else None,
                      supercell_check=check)
        if self.nac:
            res["nac"] = {"method": "gonze", "factor": K_E, "epsilon_inf": self.epsilon_inf.tolist(),
                          "born_charges": np.asarray(phonon.nac_params["born"]).tolist(),
                          "born_sum": born_sum.tolist(),
                          "units": {"born_charges": "e", "factor": "eV·Å/e²"}}
        t1 = time.perf_counter()
        self._band(phonon, res)
        self._mesh(phonon, res)
        self._gamma(phonon, res)
        timings["analysis"] = time.perf_counter() - t1

        # the stable MD time step of the supercell (its Γ point)
        n_s = len(phonon.supercell)
        H = np.asarray(phonon.force_constants).transpose(0, 2, 1, 3).reshape(3 * n_s, 3 * n_s)
        res["timestep"] = stability_from_hessian(H, phonon.supercell.masses)
        res["timestep_from_max_frequency"] = timestep_from_frequency(max(res["max_frequency"], 1e-12))

        # imaginary modes: reported (negative), warned, never hidden
        fmin = min(np.min(res["band"]["frequencies_flat"]), np.min(res["gamma"]["frequencies"]),
                   res["_mesh_min"])
        n_imag = int(np.sum(np.asarray(res["band"]["frequencies_flat"]) < -self.imaginary_tol))
        res["imaginary"] = {"count_on_band_path": n_imag, "min_frequency": float(fmin),
                            "tolerance": self.imaginary_tol}
        if fmin < -self.imaginary_tol:
            msg = (f"imaginary phonon frequencies down to {fmin:.4f} THz (reported as negative "
                   "numbers): the structure is not at a minimum of this potential or the "
                   "supercell is too small")
            warn_msgs.append(msg)
            warnings.warn(msg, ImaginaryModeWarning, stacklevel=2)
        del res["_mesh_min"]
        del res["band"]["frequencies_flat"]
        for key in ("max_frequency", "max_frequency_band"):
            if not np.isfinite(res[key]):
                raise NotSupportedError("phonopy returned non-finite frequencies: check the "
                                        "structure and potential")
        res["warnings"] = warn_msgs
        timings["total"] = time.perf_counter() - t0
        res["timings"] = timings
        self.results = res
        return self

    # ------------------------------------------------------------------ analyses
    def _band(self, phonon, res):
        from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections
        pieces = band_path(phonon.primitive.cell)
        paths = [[q.tolist() for _, q in piece] for piece in pieces]
        qpoints, connections = get_band_qpoints_and_path_connections(paths, npoints=self.band_npoints)
        phonon.run_band_structure(qpoints, path_connections=connections)
        bs = phonon.band_structure
        bd = {"frequencies": bs.frequencies, "distances": bs.distances, "qpoints": bs.qpoints}
        seg_labels = [(a[0], b[0]) for piece in pieces for a, b in zip(piece[:-1], piece[1:])]
        freqs = [np.asarray(f) for f in bd["frequencies"]]
        dists = [np.asarray(d) for d in bd["distances"]]
        at_labels = {}
        for (la, lb), f in zip(seg_labels, freqs):
            at_labels.setdefault(la, f[0].tolist())
            at_labels.setdefault(lb, f[-1].tolist())
        # x positions of labels (merge labels of disconnected pieces as "U|X")
        ticks, tick_labels = [], []
        for k, ((la, lb), d) in enumerate(zip(seg_labels, dists)):
            start = _PRETTY.get(la, la)
            if k == 0:
                ticks.append(float(d[0]))
                tick_labels.append(start)
            elif not connections[k - 1]:
                tick_labels[-1] = f"{tick_labels[-1]}|{start}"
            ticks.append(float(d[-1]))
            tick_labels.append(_PRETTY.get(lb, lb))
        allf = np.concatenate(freqs)
        res["labels_frequencies"] = at_labels
        res["band"] = {"distances": [d.tolist() for d in dists],
                       "frequencies": [f.tolist() for f in freqs],
                       "qpoints": [np.asarray(q).tolist() for q in bd["qpoints"]],
                       "segment_labels": seg_labels, "connections": list(connections),
                       "label_positions": ticks, "labels": tick_labels,
                       "frequencies_flat": allf.reshape(-1)}
        res["max_frequency_band"] = float(allf.max())
        imax = np.unravel_index(np.argmax(allf), allf.shape)
        allq = np.concatenate([np.asarray(q) for q in bd["qpoints"]])
        res["max_frequency_qpoint"] = allq[imax[0]].tolist()

    def _mesh(self, phonon, res):
        phonon.run_mesh(self.mesh, is_gamma_center=True)
        mf = np.asarray(phonon.mesh.frequencies)
        if not np.all(np.isfinite(mf)):
            raise NotSupportedError("phonopy returned non-finite frequencies on the mesh: check "
                                    "the structure and potential")
        if float(np.ptp(mf)) < 1e-6:
            raise NotSupportedError(
                f"every phonon frequency on the mesh is {float(mf.max()):.3g} THz: the force "
                "constants vanish (e.g. a one-atom supercell, where every interaction is with the "
                "atom's own images and the acoustic sum rule removes it); use a larger supercell")
        phonon.run_total_dos()
        dos = {"frequency_points": phonon.total_dos.frequency_points,
               "total_dos": phonon.total_dos.dos}
        t_min, t_max, t_step = self.temperatures
        phonon.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step,
                                      exclude_gamma_acoustic=True)
        th = phonon.thermal_properties
        tp = {"temperatures": th.temperatures, "free_energy": th.free_energy,
              "entropy": th.entropy, "heat_capacity": th.heat_capacity}
        res["dos"] = {"frequencies": np.asarray(dos["frequency_points"]).tolist(),
                      "dos": np.asarray(dos["total_dos"]).tolist(),
                      "mesh": np.asarray(phonon.mesh.mesh_numbers).tolist(),
                      "units": {"frequencies": "THz", "dos": "states/THz per primitive cell"}}
        res["thermal"] = {"temperatures": np.asarray(tp["temperatures"]).tolist(),
                          "free_energy": np.asarray(tp["free_energy"]).tolist(),
                          "entropy": np.asarray(tp["entropy"]).tolist(),
                          "heat_capacity": np.asarray(tp["heat_capacity"]).tolist(),
                          "units": {"temperatures": "K", "free_energy": "kJ/mol",
                                    "entropy": "J/K/mol", "heat_capacity": "J/K/mol",
                                    "per": "mole of primitive cells",
                                    "note": "the three zero-frequency acoustic modes at Γ are excluded"}}
        res["max_frequency"] = float(max(res["max_frequency_band"], mf.max()))
        res["_mesh_min"] = float(mf.min())

    def _gamma(self, phonon, res):
        phonon.run_qpoints([[0.0, 0.0, 0.0]])
        freqs = np.asarray(phonon.qpoints.frequencies[0])
        irreps = None
        try:
            run = getattr(phonon, "run_irreps", None) or phonon.set_irreps
            ir = run([0.0, 0.0, 0.0])
            ir = ir if ir is not None else phonon.irreps
            labels = getattr(ir, "_ir_labels", None)
            sets = getattr(ir, "_degenerate_sets", None)
            if labels is not None and sets is not None:
                irreps = [{"bands": [int(b) for b in s], "frequency": float(freqs[s[0]]),
                           "irrep": lab} for s, lab in zip(sets, labels)]
        except Exception as exc:  # noqa: BLE001 - irreps are optional decoration
            irreps = f"not available: {exc}"
        res["gamma"] = {"frequencies": freqs.tolist(), "irreps": irreps}
        if self.nac:
            # q → 0 along Cartesian x, y, z (phonopy wants reduced coordinates: q_red = q_cart·cellᵀ)
            cell = np.asarray(phonon.primitive.cell)
            lo = {}
            for name, d in zip("xyz", np.eye(3)):
                phonon.run_qpoints([[0.0, 0.0, 0.0]], nac_q_direction=d @ cell.T)
                lo[name] = np.asarray(phonon.qpoints.frequencies[0]).tolist()
            split = max(float(np.max(np.abs(np.asarray(f) - freqs))) for f in lo.values())
            res["lo_to"] = {"directions": {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1]},
                            "frequencies_nac": lo, "frequencies_without": freqs.tolist(),
                            "max_splitting": split,
                            "note": "Γ frequencies for q → 0 along each Cartesian direction "
                                    "(with the non-analytic term) and at q = 0 without it (TO)"}

    # ------------------------------------------------------------------ output
    def _need(self):
        if not self.results:
            raise InputError("call run() first")

    def summary(self) -> dict:
        """The compact record written as ``summary.json`` by ``cgkit phonons``."""
        self._need()
        r = self.results
        keys = ["method", "n_force_calls", "n_atoms_unitcell", "n_atoms_primitive",
                "n_atoms_supercell", "supercell_matrix", "displacement", "labels_frequencies",
                "max_frequency", "max_frequency_band", "max_frequency_qpoint", "gamma",
                "timestep", "asr", "imaginary", "supercell_check", "nac", "lo_to", "warnings",
                "timings"]
        out = {k: r[k] for k in keys if k in r}
        out["units"] = {"frequency": "THz", "lambda_max": "eV/Å²/amu", "omega_max": "rad/fs",
                        "dt": "fs", "force_constants": "eV/Å²", "time": "s"}
        return out

    def to_json(self, path=None, full: bool = False) -> str:
        """JSON of the summary (``full=True``: every result incl. band, DOS and thermal arrays)."""
        self._need()
        data = Results(self.results) if full else Results(self.summary())
        return data.to_json(path)

    def write_phonopy(self, directory) -> list[str]:
        """Write ``phonopy_params.yaml`` (structure + force constants) and ``FORCE_CONSTANTS``
        so the calculation can be continued in phonopy."""
        from phonopy.file_IO import write_FORCE_CONSTANTS
        self._need()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        p1 = d / "phonopy_params.yaml"
        self.phonopy.save(str(p1), settings={"force_constants": True})
        p2 = d / "FORCE_CONSTANTS"
        write_FORCE_CONSTANTS(np.asarray(self.phonopy.force_constants), filename=str(p2))
        return [str(p1), str(p2)]

    def write_data(self, directory) -> list[str]:
        """Plain-text band.dat, dos.dat and thermal.dat."""
        self._need()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        r = self.results
        dist = np.concatenate([np.asarray(x) for x in r["band"]["distances"]])
        freq = np.concatenate([np.asarray(x) for x in r["band"]["frequencies"]])
        np.savetxt(d / "band.dat", np.column_stack([dist, freq]),
                   header="distance (1/Å), frequencies of every band (THz)")
        np.savetxt(d / "dos.dat", np.column_stack([r["dos"]["frequencies"], r["dos"]["dos"]]),
                   header="frequency (THz), DOS (states/THz per primitive cell)")
        t = r["thermal"]
        np.savetxt(d / "thermal.dat", np.column_stack([t["temperatures"], t["free_energy"],
                                                       t["entropy"], t["heat_capacity"]]),
                   header="T (K), free energy (kJ/mol), entropy (J/K/mol), heat capacity (J/K/mol)")
        return [str(d / n) for n in ("band.dat", "dos.dat", "thermal.dat")]

    def plot(self, directory, title: str | None = None) -> list:
        """Band structure and DOS side by side as ``band_dos.png`` in ``directory``; returns
        the paths. A path ending in an image suffix is written as given."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._need()
        target = figure_path(directory, "band_dos.png")
        r = self.results
        fig, (ax, axd) = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True,
                                      gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05})
        for d, f in zip(r["band"]["distances"], r["band"]["frequencies"]):
            ax.plot(d, f, color="tab:blue", lw=1.0)
        for x in r["band"]["label_positions"]:
            ax.axvline(x, color="0.7", lw=0.6)
        ax.axhline(0.0, color="0.5", lw=0.6, ls="--")
        ax.set_xticks(r["band"]["label_positions"])
        ax.set_xticklabels(r["band"]["labels"])
        ax.set_xlim(r["band"]["label_positions"][0], r["band"]["label_positions"][-1])
        ax.set_ylabel("Frequency (THz)")
        ax.set_xlabel("Wave vector")
        nac = ", non-analytic correction (LO–TO)" if "nac" in r else ""
        ax.set_title(title or f"Phonons ({r['method'].replace('_', ' ')}{nac})")
        axd.plot(r["dos"]["dos"], r["dos"]["frequencies"], color="k", lw=1.0)
        axd.set_xlabel("DOS (states/THz)")
        axd.set_xlim(left=0)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92)
        fig.savefig(target, dpi=120)
        plt.close(fig)
        return [target]
