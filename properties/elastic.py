"""Elastic constants: stress–strain fits (any ASE calculator with stress) and, for cgkit
potentials, the analytic Born term minus the internal-relaxation correction.

Definitions (Voigt order xx, yy, zz, yz, xz, xy; engineering shear strains η; GPa):

* A strain is applied as the symmetric deformation F = I + ε(η) to cell and atoms. The
  reported tensor is the stress–strain coefficient ``C_IJ = dσ_I/dη_J`` at η = 0 (σ the Cauchy
  stress of the strained crystal) — the constants that govern wave propagation and stability.
  At zero reference stress it equals (1/V) ∂²E/∂η_I∂η_J.
* Clamped-ion: atoms follow the homogeneous strain. Relaxed-ion: the atoms are relaxed at
  fixed strained cell.
* Finite-strain route: σ(η) at strains ±0.5 %, ±1 % (default) of every component, the linear
  term fitted by least squares (even-order terms cancel for symmetric strains); the rms
  residual of the fit is reported (GPa).
* Analytic route (cgkit Potential): from the (3n+6)² Hessian of positions x and strains η,
  ``C0 = H_ηη / V`` (Born term), ``C_relaxed = C0 − Λᵀ H_xx⁺ Λ / V`` with Λ = H_xη and the three
  acoustic translations projected out of H_xx. With a reference stress σ⁰ the prestress
  terms ``−σ⁰_ij δ_kl + ¼(σ⁰_ik δ_jl + σ⁰_il δ_jk + σ⁰_jk δ_il + σ⁰_jl δ_ik)`` are added so
  both routes describe the same quantity.

Derived: bulk K, shear G, Young's E moduli and Poisson ratio ν (Voigt, Reuss, Hill), the Born
stability criteria of the crystal system, and the tensor averaged over the point group of the
crystal (symmetry-averaged constants; named C11, C12, C44 … by crystal system).

Frames. The tensors are computed in the Cartesian frame of the structure as given (the *input
frame*; a CIF file read by ASE puts a along x and b in the xy plane, so a primitive fcc cell
read from CIF has its cubic axes along no Cartesian axis). Named constants, moduli and the Born
criteria are evaluated in the **standard setting** of the detected space group: the tensor is
rotated, ``C'_ijkl = R_ia R_jb R_kc R_ld C_abcd``, by spglib's ``std_rotation_matrix`` R
(x_standard = R x_input), i.e. into the idealized conventional cell (cubic axes along x, y, z;
hexagonal/trigonal/tetragonal c along z, a along x), as pymatgen and matscipy report them.
Both are in :attr:`ElasticConstants.results` (``C_relaxed`` etc. in the input frame,
``standard_setting`` in the standard setting) and labelled in :meth:`ElasticConstants.summary`.

Residual stress. Without a cell relaxation, a reference stress above
:data:`RESIDUAL_STRESS_WARNING_GPA` (max |σ_ij|, GPa) triggers a
:class:`ResidualStressWarning` (also listed in ``results["warnings"]``): the constants then
describe a pre-stressed state, not the equilibrium crystal.
"""
from __future__ import annotations

from cgkit.errors import CgkitWarning

import time
import warnings

import numpy as np
import torch

from cgkit.errors import InputError, NotSupportedError, StructureError
from cgkit.results import Analysis
from cgkit.units import EV_PER_A3_TO_GPA

from .calculators import Results, resolve_model
from cgkit.results import figure_path
from cgkit.structures import check_overlaps, check_periodic, read_structure

__all__ = ["ElasticConstants", "RelaxationError", "ResidualStressWarning", "moduli", "born_stability",
           "crystal_symmetry", "standard_setting", "rotate_voigt", "symmetrize_voigt",
           "voigt_to_tensor", "tensor_to_voigt", "prestress_correction", "named_constants",
           "VOIGT_PAIRS", "RESIDUAL_STRESS_WARNING_GPA"]

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
from cgkit.errors import RelaxationError  # noqa: E402  (re-exported)

_NAMES = ("xx", "yy", "zz", "yz", "xz", "xy")

#: GPa; without a cell relaxation, a reference stress with max |σ_ij| above this is warned about
RESIDUAL_STRESS_WARNING_GPA = 0.5


class ResidualStressWarning(CgkitWarning):
    """The reference structure is under a large residual stress (not relaxed)."""


# ---------------------------------------------------------------------- tensor helpers
def voigt_to_tensor(C) -> np.ndarray:
    """(6, 6) Voigt → (3, 3, 3, 3) tensor (no factors: engineering-strain convention)."""
    C = np.asarray(C, dtype=float)
    T = np.zeros((3, 3, 3, 3))
    for I, (i, j) in enumerate(VOIGT_PAIRS):
        for J, (k, l) in enumerate(VOIGT_PAIRS):
            for a, b in {(i, j), (j, i)}:
                for c, d in {(k, l), (l, k)}:
                    T[a, b, c, d] = C[I, J]
    return T


def tensor_to_voigt(T) -> np.ndarray:
    return np.array([[T[i, j, k, l] for (k, l) in VOIGT_PAIRS] for (i, j) in VOIGT_PAIRS])


def strain_matrix(voigt: int, eta: float) -> np.ndarray:
    """(3, 3) symmetric strain tensor of engineering Voigt strain ``eta`` in component ``voigt``."""
    i, j = VOIGT_PAIRS[voigt]
    e = np.zeros((3, 3))
    if i == j:
        e[i, i] = eta
    else:
        e[i, j] = e[j, i] = 0.5 * eta
    return e


def prestress_correction(stress) -> np.ndarray:
    """(6, 6) term added to H_ηη/V for a reference Cauchy stress (3, 3) (same units as it)."""
    s = np.asarray(stress, dtype=float)
    d = np.eye(3)
    out = np.zeros((6, 6))
    for I, (i, j) in enumerate(VOIGT_PAIRS):
        for J, (k, l) in enumerate(VOIGT_PAIRS):
            out[I, J] = (-s[i, j] * d[k, l]
                         + 0.25 * (s[i, k] * d[j, l] + s[i, l] * d[j, k]
                                   + s[j, k] * d[i, l] + s[j, l] * d[i, k]))
    return out


def moduli(C) -> dict:
    """Polycrystalline moduli (GPa) and Poisson ratios of a (6, 6) Voigt tensor (GPa).

    Voigt (uniform strain) and Reuss (uniform stress) bounds and their Hill average, for the
    bulk K, shear G and Young's modulus E = 9KG/(3K+G) and ν = (3K−2G)/(2(3K+G)).
    """
    C = np.asarray(C, dtype=float)
    C = 0.5 * (C + C.T)
    KV = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9.0
    GV = (C[0, 0] + C[1, 1] + C[2, 2] - (C[0, 1] + C[1, 2] + C[0, 2])
          + 3 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15.0
    try:
        S = np.linalg.inv(C)
        KR = 1.0 / (S[0, 0] + S[1, 1] + S[2, 2] + 2 * (S[0, 1] + S[1, 2] + S[0, 2]))
        GR = 15.0 / (4 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4 * (S[0, 1] + S[1, 2] + S[0, 2])
                     + 3 * (S[3, 3] + S[4, 4] + S[5, 5]))
    except np.linalg.LinAlgError:
        KR = GR = float("nan")

    def derived(K, G):
        E = 9 * K * G / (3 * K + G) if (3 * K + G) != 0 else float("nan")
        nu = (3 * K - 2 * G) / (2 * (3 * K + G)) if (3 * K + G) != 0 else float("nan")
        return {"bulk": float(K), "shear": float(G), "young": float(E), "poisson": float(nu)}

    return {"voigt": derived(KV, GV), "reuss": derived(KR, GR),
            "hill": derived(0.5 * (KV + KR), 0.5 * (GV + GR)),
            "units": "GPa (poisson: dimensionless)"}


def crystal_symmetry(atoms, symprec: float = 1e-5) -> dict:
    """Space group and crystal system (spglib) and the Cartesian point-group rotations in the
    input frame (see :func:`standard_setting` for the standard frame)."""
    import spglib
    cell = (np.asarray(atoms.cell.array), atoms.get_scaled_positions(), atoms.get_atomic_numbers())
    ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if ds is None:
        return {"spacegroup": None, "number": 1, "crystal_system": "triclinic",
                "rotations": np.eye(3)[None]}
    number = int(ds.number)
    system = next(name for top, name in _SYSTEMS if number <= top)
    L = np.asarray(atoms.cell.array)
    rots = []
    for W in np.asarray(ds.rotations):
        R = L.T @ W @ np.linalg.inv(L.T)  # r' = Lᵀ W L⁻ᵀ r for column vectors r = Lᵀ f
        key = tuple(np.round(R, 6).ravel())
        if key not in {tuple(np.round(x, 6).ravel()) for x in rots}:
            rots.append(R)
    return {"spacegroup": str(ds.international), "number": number, "crystal_system": system,
            "rotations": np.array(rots)}


def symmetrize_voigt(C, rotations) -> np.ndarray:
    """Average of a (6, 6) Voigt tensor over Cartesian rotations (n, 3, 3) of the point group."""
    T = voigt_to_tensor(C)
    acc = np.zeros_like(T)
    for R in rotations:
        acc += np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, T, optimize=True)
    return tensor_to_voigt(acc / len(rotations))


def rotate_voigt(C, R) -> np.ndarray:
    """(6, 6) Voigt tensor in a frame rotated by the (3, 3) rotation ``R`` (x' = R x):
    ``C'_ijkl = R_ia R_jb R_kc R_ld C_abcd`` through the full (3, 3, 3, 3) tensor."""
    R = np.asarray(R, dtype=float)
    T = voigt_to_tensor(C)
    return tensor_to_voigt(np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, T, optimize=True))


_SYSTEMS = [(2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
            (167, "trigonal"), (194, "hexagonal"), (230, "cubic")]


def standard_setting(atoms, symprec: float = 1e-5) -> dict:
    """The standard (conventional, idealized) setting of the space group of ``atoms`` (spglib).

    Returns ``spacegroup`` (international symbol), ``number``, ``crystal_system``,
    ``rotation`` (3, 3) R with x_standard = R x_input (spglib's ``std_rotation_matrix``; the
    identity when no symmetry is found), ``conventional_cell`` (3, 3) Å, rows, in the standard
    frame, ``transformation_matrix`` (spglib's P: standard basis = input basis · P⁻¹) and
    ``rotations`` (n, 3, 3), the Cartesian point-group operations in the **standard** frame.
    """
    import spglib
    cell = (np.asarray(atoms.cell.array), atoms.get_scaled_positions(), atoms.get_atomic_numbers())
    try:
        ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception as exc:  # noqa: BLE001 - spglib raises its own error class on bad cells
        raise StructureError(f"spglib cannot analyse the structure ({exc}); check for overlapping "
                             "atoms or a degenerate cell") from exc
    if ds is None:
        return {"spacegroup": None, "number": 1, "crystal_system": "triclinic",
                "rotation": np.eye(3), "conventional_cell": np.asarray(atoms.cell.array),
                "transformation_matrix": np.eye(3), "rotations": np.eye(3)[None]}
    number = int(ds.number)
    system = next(name for top, name in _SYSTEMS if number <= top)
    R = np.asarray(ds.std_rotation_matrix, dtype=float)
    L = np.asarray(atoms.cell.array)
    rots = []
    for W in np.asarray(ds.rotations):
        Rin = L.T @ W @ np.linalg.inv(L.T)  # input-frame Cartesian operation
        Rs = R @ Rin @ R.T                    # the same operation in the standard frame
        key = tuple(np.round(Rs, 6).ravel())
        if key not in {tuple(np.round(x, 6).ravel()) for x in rots}:
            rots.append(Rs)
    return {"spacegroup": str(ds.international), "number": number, "crystal_system": system,
            "rotation": R, "conventional_cell": np.asarray(ds.std_lattice, dtype=float),
            "transformation_matrix": np.asarray(ds.transformation_matrix, dtype=float),
            "rotations": np.array(rots)}


#: independent constants named per crystal system, in the standard setting (Voigt indices, 1-based)
_NAMED = {
    "cubic": ("11", "12", "44"),
    "hexagonal": ("11", "12", "13", "33", "44", "66"),
    "trigonal": ("11", "12", "13", "14", "15", "33", "44", "66"),
    "tetragonal": ("11", "12", "13", "16", "33", "44", "66"),
    "orthorhombic": ("11", "22", "33", "12", "13", "23", "44", "55", "66"),
}


def named_constants(C, system: str) -> dict:
    """Named constants of a symmetry-averaged (6, 6) tensor **in the standard setting**
    (:func:`standard_setting`): C11, C12, C44 (cubic); C11, C12, C13, C33, C44, C66
    (hexagonal, c along z); C11 … C66 with C14, C15 (trigonal) or C16 (tetragonal) as the
    Laue class allows; nine for orthorhombic; all 21 Cij (i ≤ j) for monoclinic and triclinic."""
    C = np.asarray(C, dtype=float)
    keys = _NAMED.get(system)
    if keys is None:
        keys = tuple(f"{i}{j}" for i in range(1, 7) for j in range(i, 7))
    return {f"C{k}": float(C[int(k[0]) - 1, int(k[1]) - 1]) for k in keys}


def born_stability(C, crystal_system: str = "triclinic", tol: float = 0.0) -> dict:
    """Born mechanical stability: the necessary and sufficient criterion (all eigenvalues of the
    symmetric 6×6 tensor positive) and the explicit conditions for cubic, hexagonal and
    tetragonal crystals (Mouhat & Coudert, PRB 90, 224104 (2014))."""
    C = 0.5 * (np.asarray(C, dtype=float) + np.asarray(C, dtype=float).T)
    ev = np.linalg.eigvalsh(C)
    cond = {}
    if crystal_system == "cubic":
        c11, c12, c44 = C[0, 0], C[0, 1], C[3, 3]
        cond = {"C11 - C12 > 0": c11 - c12 > tol, "C11 + 2 C12 > 0": c11 + 2 * c12 > tol,
                "C44 > 0": c44 > tol}
    elif crystal_system in ("hexagonal", "tetragonal"):
        c11, c12, c13, c33, c44, c66 = C[0, 0], C[0, 1], C[0, 2], C[2, 2], C[3, 3], C[5, 5]
        cond = {"C11 > |C12|": c11 - abs(c12) > tol,
                "2 C13^2 < C33 (C11 + C12)": c33 * (c11 + c12) - 2 * c13 ** 2 > tol,
                "C44 > 0": c44 > tol, "C66 > 0": c66 > tol}
    stable = bool(ev.min() > tol) and all(cond.values())
    return {"stable": stable, "eigenvalues": ev.tolist(), "crystal_system": crystal_system,
            "conditions": {k: bool(v) for k, v in cond.items()},
            "criterion": "all eigenvalues of C positive" + (
                f" and the {crystal_system} conditions" if cond else "")}


# ---------------------------------------------------------------------- the calculation
class ElasticConstants(Analysis):
    """Full 6×6 elastic tensor (GPa), clamped- and relaxed-ion.

    Parameters
    ----------
    structure : ASE Atoms or ASE-readable file, periodic in 3D
    model : cgkit Potential / CgkitCalculator (analytic route + finite strains), any ASE
        calculator that computes stress (finite strains), or a ``--potential`` spec string
    strains : engineering strains applied to every Voigt component (default ±0.5 %, ±1 %)
    method : ``"auto"`` (both routes for cgkit potentials, finite strain otherwise),
        ``"analytic"`` or ``"finite_strain"``
    relax_ions : also compute the relaxed-ion tensor by finite strains
    relax_cell : relax cell and atoms (FrechetCellFilter + BFGS) before the calculation
    fmax : eV/Å, force tolerance of the internal relaxations; ``cell_fmax`` for ``relax_cell``
    max_steps : optimizer steps before :class:`RelaxationError`
    symprec : Å, symmetry tolerance for the crystal system and the averaged tensor
    stress_warning : GPa; without ``relax_cell``, a reference stress with max |σ_ij| above it
        is warned about (:class:`ResidualStressWarning`, listed in ``results["warnings"]``)

    Results (``self.results``, GPa). In the **input frame** (Cartesian axes of the structure as
    given; unchanged by ``relax_cell``, see ``relaxation_rotation_deg``): ``C_clamped``,
    ``C_relaxed`` (analytic when available, else finite strain), ``analytic`` and
    ``finite_strain`` route details (fits, rms residuals, intercepts), ``route_difference``
    (max |analytic − finite strain|), ``reference_stress``, ``cell``. In the **standard
    setting** of the space group: ``standard_setting`` {rotation R (x_std = R x_input),
    conventional_cell, C_clamped, C_relaxed}, ``symmetry`` (space group, crystal system,
    ``C_*_symmetrized`` and ``named_*`` constants), ``moduli`` {clamped, relaxed},
    ``stability``. Also ``warnings`` (list of str) and ``timings`` s.
    """

    def __init__(self, structure, model, *, strains=(-0.01, -0.005, 0.005, 0.01),
                 method: str = "auto", relax_ions: bool = True, relax_cell: bool = False,
                 fmax: float = 1e-5, cell_fmax: float = 1e-4, max_steps: int = 500,
                 symprec: float = 1e-5, stress_warning: float = RESIDUAL_STRESS_WARNING_GPA):
        self.atoms = read_structure(structure)
        check_periodic(self.atoms, "an elastic-constant calculation")
        check_overlaps(self.atoms)
        strains = np.asarray(strains, dtype=float).reshape(-1)
        if len(strains) < 1 or np.any(strains == 0) or np.any(np.abs(strains) > 0.1):
            raise InputError("strains must be non-zero engineering strains with |η| ≤ 0.1 "
                             f"(e.g. -0.01 -0.005 0.005 0.01), got {strains.tolist()}")
        if method not in ("auto", "analytic", "finite_strain"):
            raise InputError(f"method must be 'auto', 'analytic' or 'finite_strain', got '{method}'")
        self.strains = strains
        self.model = model
        self.method = method
        self.relax_ions = relax_ions
        self.relax_cell = relax_cell
        self.fmax = float(fmax)
        self.cell_fmax = float(cell_fmax)
        self.max_steps = int(max_steps)
        self.symprec = float(symprec)
        if not stress_warning > 0:
            raise InputError(f"stress_warning must be > 0 GPa, got {stress_warning}")
        self.stress_warning = float(stress_warning)
        self.results = Results()

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _stress(atoms, calc) -> np.ndarray:
        """Voigt stress (6,) eV/Å³; a clear error when the calculator has none."""
        from ase.calculators.calculator import PropertyNotImplementedError
        atoms.calc = calc
        try:
            s = atoms.get_stress(voigt=True)
        except (PropertyNotImplementedError, NotImplementedError) as exc:
            raise NotSupportedError(
                f"the calculator {type(calc).__name__} does not compute stress, which elastic "
                "constants from stress–strain need; use a calculator that implements stress "
                "(e.g. ase:EMT) or a cgkit potential") from exc
        if s is None or not np.all(np.isfinite(s)):
            raise NotSupportedError(f"the calculator {type(calc).__name__} returned no finite stress")
        return np.asarray(s, dtype=float)

    def _relax_positions(self, atoms, calc, what: str):
        from ase.optimize import BFGS
        atoms.calc = calc
        if np.abs(atoms.get_forces()).max() < self.fmax:
            return
        opt = BFGS(atoms, logfile=None)
        converged = opt.run(fmax=self.fmax, steps=self.max_steps)
        if not converged:
            fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
            raise RelaxationError(
                f"{what} did not relax to fmax={self.fmax} eV/Å in {self.max_steps} steps "
                f"(max force {fmax:.3g} eV/Å); raise max_steps/fmax, use smaller strains, or "
                "check that the structure is stable with this potential")

    def _relax_cell(self, atoms, calc):
        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS
        atoms.calc = calc
        self._stress(atoms, calc)
        opt = BFGS(FrechetCellFilter(atoms), logfile=None)
        if not opt.run(fmax=self.cell_fmax, steps=self.max_steps):
            raise RelaxationError(f"the cell did not relax to fmax={self.cell_fmax} eV/Å in "
                                  f"{self.max_steps} steps; raise max_steps or check the structure")

    def _finite_strain(self, calc, relax: bool) -> dict:
        base = self.atoms
        cell0 = np.asarray(base.cell.array)
        etas = np.concatenate([[0.0], self.strains])
        ref = base.copy()
        if relax:
            self._relax_positions(ref, calc, "the unstrained structure")
        s0 = self._stress(ref, calc)
        stresses = np.zeros((6, len(etas), 6))
        for J in range(6):
            stresses[J, 0] = s0
            for m, eta in enumerate(self.strains, start=1):
                a = ref.copy()
                a.set_cell(cell0 @ (np.eye(3) + strain_matrix(J, eta)), scale_atoms=True)
                if relax:
                    self._relax_positions(a, calc, f"the cell strained by {eta:+g} in {_NAMES[J]}")
                stresses[J, m] = self._stress(a, calc)
        # least-squares line σ_I(η) = σ0_I + C_IJ η for every J
        A = np.column_stack([np.ones_like(etas), etas])
        C = np.zeros((6, 6))
        rms = np.zeros((6, 6))
        for J in range(6):
            coef, *_ = np.linalg.lstsq(A, stresses[J], rcond=None)
            C[:, J] = coef[1]
            rms[:, J] = np.sqrt(np.mean((A @ coef - stresses[J]) ** 2, axis=0))
        g = EV_PER_A3_TO_GPA
        return {"C": C * g, "rms_residual": rms * g, "max_rms_residual": float(rms.max() * g),
                "strains": etas.tolist(), "stresses": stresses * g}

    def _analytic(self, potential) -> dict:
        graph = potential.graph(self.atoms, dtype=torch.float64)
        out = potential.compute(graph, forces=True, stress=True)
        fmax = float(out["forces"].abs().max())
        sigma0 = out["stress"][0].numpy()
        H = potential.hessian(graph, include_strain=True).numpy()
        n3 = 3 * len(self.atoms)
        Hxx, Lam, Hee = H[:n3, :n3], H[:n3, n3:], H[n3:, n3:]
        V = abs(self.atoms.cell.volume)
        corr_p = prestress_correction(sigma0)
        C0 = Hee / V + corr_p
        # translations: orthonormal basis of uniform displacements
        T = np.zeros((n3, 3))
        for c in range(3):
            T[c::3, c] = 1.0 / np.sqrt(len(self.atoms))
        P = np.eye(n3) - T @ T.T
        w, U = np.linalg.eigh(P @ Hxx @ P)
        scale = max(np.abs(w).max(), 1e-12)
        keep = np.abs(w) > 1e-9 * scale
        n_zero = int((~keep).sum())
        if n_zero > 3:
            warnings.warn(f"{n_zero - 3} zero internal modes besides the translations: the "
                          "relaxed-ion constants may be ill-defined", RuntimeWarning, stacklevel=3)
        n_negative = int((w[keep] < 0).sum())
        if n_negative:
            warnings.warn(f"{n_negative} negative Hessian eigenvalues: the structure is not at a "
                          "minimum (relaxed-ion constants describe a saddle point)",
                          RuntimeWarning, stacklevel=3)
        B = U[:, keep].T @ (P @ Lam)
        relax = (B.T / w[keep]) @ B / V
        g = EV_PER_A3_TO_GPA
        return {"C_clamped": C0 * g, "C_relaxed": (C0 - relax) * g, "born_term": Hee / V * g,
                "prestress_correction": corr_p * g, "relaxation_correction": relax * g,
                "max_force": fmax, "negative_modes": n_negative}

    # ------------------------------------------------------------------ run
    def run(self) -> "ElasticConstants":
        t0 = time.perf_counter()
        potential, calc = resolve_model(self.model)
        method = self.method
        if method == "analytic" and potential is None:
            raise InputError("the analytic route needs a cgkit potential; for an ASE calculator "
                             "use method='finite_strain'")
        if potential is None:
            self._stress(self.atoms.copy(), calc)  # fail early without stress
        input_cell = np.asarray(self.atoms.cell.array).copy()
        if self.relax_cell:
            a = self.atoms.copy()
            self._relax_cell(a, calc)
            self.atoms = a.copy()
        ref = self.atoms.copy()
        if not np.all(np.isfinite(ref.get_positions())) or not np.all(np.isfinite(ref.cell.array)):
            raise StructureError("the structure has non-finite positions or cell "
                                 "(after relaxation, if --relax): check the structure and potential")
        res = Results(n_atoms=len(ref), cell=np.asarray(ref.cell.array).tolist(),
                      volume=abs(ref.cell.volume), strains=self.strains.tolist(),
                      relax_cell=bool(self.relax_cell))
        if self.relax_cell:
            res["input_cell"] = input_cell.tolist()
            res["relaxation_rotation_deg"] = _rotation_angle_deg(input_cell, np.asarray(ref.cell.array))
        warn_msgs = []
        ref_stress = self._stress(ref, calc)
        res["reference_stress"] = (ref_stress * EV_PER_A3_TO_GPA).tolist()
        smax = float(np.abs(ref_stress).max() * EV_PER_A3_TO_GPA)
        res["reference_stress_max_abs"] = smax
        res["residual_stress_threshold"] = self.stress_warning
        if not self.relax_cell and smax > self.stress_warning:
            msg = (f"the structure is under a residual stress of up to {smax:.3g} GPa (max |σ_ij| "
                   f"> {self.stress_warning:g} GPa): the constants describe this pre-stressed state, "
                   "not the equilibrium crystal; relax cell and atoms first (--relax, "
                   "relax_cell=True)")
            warn_msgs.append(msg)
            warnings.warn(msg, ResidualStressWarning, stacklevel=2)
        ref.calc = calc
        res["reference_max_force"] = float(np.abs(ref.get_forces()).max())
        timings = {}
        if potential is not None and method in ("auto", "analytic"):
            t = time.perf_counter()
            res["analytic"] = self._analytic(potential)
            timings["analytic"] = time.perf_counter() - t
        if method in ("auto", "finite_strain"):
            t = time.perf_counter()
            fs = {"clamped": self._finite_strain(calc, relax=False)}
            if self.relax_ions:
                fs["relaxed"] = self._finite_strain(calc, relax=True)
            res["finite_strain"] = fs
            timings["finite_strain"] = time.perf_counter() - t
        if "analytic" in res:
            res["C_clamped"] = res["analytic"]["C_clamped"]
            res["C_relaxed"] = res["analytic"]["C_relaxed"]
            res["route"] = "analytic"
        else:
            fs = res["finite_strain"]
            res["C_clamped"] = fs["clamped"]["C"]
            res["C_relaxed"] = fs["relaxed"]["C"] if "relaxed" in fs else None
            res["route"] = "finite_strain"
        for kind in ("clamped", "relaxed"):
            C = res[f"C_{kind}"]
            if C is not None and not np.all(np.isfinite(C)):
                raise NotSupportedError(f"the {kind}-ion elastic tensor has non-finite entries: the "
                                        "potential returned no finite stress/Hessian for this structure")
        if "analytic" in res and "finite_strain" in res:
            diff = {"clamped": float(np.abs(res["analytic"]["C_clamped"]
                                            - res["finite_strain"]["clamped"]["C"]).max())}
            if "relaxed" in res["finite_strain"]:
                diff["relaxed"] = float(np.abs(res["analytic"]["C_relaxed"]
                                               - res["finite_strain"]["relaxed"]["C"]).max())
            res["route_difference"] = diff
        # named constants, moduli and stability in the standard setting of the space group
        std = standard_setting(ref, self.symprec)
        rots = std.pop("rotations")
        R = std["rotation"]
        sym = {"spacegroup": std["spacegroup"], "number": std["number"],
               "crystal_system": std["crystal_system"], "n_rotations": len(rots),
               "frame": "standard setting"}
        stdres = {"rotation": R, "conventional_cell": std["conventional_cell"],
                  "transformation_matrix": std["transformation_matrix"]}
        res["moduli"] = {}
        for kind in ("clamped", "relaxed"):
            C = res[f"C_{kind}"]
            if C is None:
                continue
            Cstd = rotate_voigt(C, R)
            stdres[f"C_{kind}"] = Cstd
            Cs = symmetrize_voigt(Cstd, rots)
            sym[f"C_{kind}_symmetrized"] = Cs
            sym[f"named_{kind}"] = named_constants(Cs, sym["crystal_system"])
            sym[f"symmetrization_change_{kind}"] = float(np.abs(Cs - Cstd).max())
            res["moduli"][kind] = moduli(Cstd)
        res["standard_setting"] = stdres
        res["symmetry"] = sym
        kind = "relaxed" if res["C_relaxed"] is not None else "clamped"
        res["stability"] = born_stability(sym[f"C_{kind}_symmetrized"], sym["crystal_system"])
        res["stability"]["tensor"] = f"{kind}-ion, standard setting, symmetry-averaged"
        if not res["stability"]["stable"]:
            msg = ("the elastic tensor violates the Born stability criteria: the structure is "
                   "mechanically unstable with this potential")
            warn_msgs.append(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        res["warnings"] = warn_msgs
        timings["total"] = time.perf_counter() - t0
        res["timings"] = timings
        res["units"] = {"C": "GPa", "stress": "GPa", "force": "eV/Å", "volume": "Å³", "time": "s",
                        "cell": "Å", "angle": "degree"}
        self.results = res
        return self

    # ------------------------------------------------------------------ output
    def summary(self) -> dict:
        """JSON-ready digest; every tensor key says its frame (``input_frame`` or
        ``standard_setting``)."""
        if not self.results:
            raise InputError("call run() first")
        r = self.results
        sym = r["symmetry"]
        out = {k: r[k] for k in ("route", "n_atoms", "volume", "strains", "relax_cell",
                                 "relaxation_rotation_deg", "reference_stress_max_abs",
                                 "residual_stress_threshold", "reference_max_force",
                                 "route_difference", "warnings") if k in r}
        out["frames"] = {
            "input_frame": "Cartesian axes of the structure as read" + (
                " (kept by the cell relaxation)" if r.get("relax_cell") else ""),
            "standard_setting": f"conventional standard setting of {sym['spacegroup'] or 'P1'} "
                                "(spglib, idealized: x_standard = rotation · x_input)"}
        out["standard_setting"] = {
            "spacegroup": sym["spacegroup"], "number": sym["number"],
            "crystal_system": sym["crystal_system"],
            "rotation": r["standard_setting"]["rotation"],
            "conventional_cell": r["standard_setting"]["conventional_cell"],
            **{f"named_{k}": sym[f"named_{k}"] for k in ("relaxed", "clamped") if f"named_{k}" in sym},
            **{f"C_{k}_symmetrized": sym[f"C_{k}_symmetrized"]
               for k in ("relaxed", "clamped") if f"C_{k}_symmetrized" in sym},
            **{f"C_{k}": r["standard_setting"][f"C_{k}"]
               for k in ("relaxed", "clamped") if f"C_{k}" in r["standard_setting"]},
            "moduli": r["moduli"], "stability": r["stability"]}
        out["input_frame"] = {"cell": r["cell"], "reference_stress": r["reference_stress"],
                              "C_clamped": r["C_clamped"], "C_relaxed": r["C_relaxed"]}
        if "input_cell" in r:
            out["input_frame"]["cell_before_relaxation"] = r["input_cell"]
        if "finite_strain" in r:
            out["input_frame"]["finite_strain"] = {
                k: {"C": v["C"], "max_rms_residual": v["max_rms_residual"]}
                for k, v in r["finite_strain"].items()}
        out["timings"] = r["timings"]
        out["units"] = r["units"]
        return out

    def to_json(self, path=None, full: bool = False) -> str:
        """Strict JSON of :meth:`summary` (``full=True``: every result), atomically to ``path``."""
        if not self.results:
            raise InputError("call run() first")
        data = Results(self.results) if full else Results(self.summary())
        return data.to_json(path)

    def plot(self, directory) -> list:
        """Stress–strain data and fitted lines for the six strain components (finite-strain
        route, input frame) as ``stress_strain.png`` in ``directory``; returns the paths (none
        for the analytic route alone). A path ending in an image suffix is written as given."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        if not self.results:
            raise InputError("call run() first")
        r = self.results
        if "finite_strain" not in r:
            return []
        target = figure_path(directory, "stress_strain.png")
        fig, axes = plt.subplots(2, 3, figsize=(11, 6.5), sharex=True)
        for J, ax in enumerate(axes.ravel()):
            for kind, style in (("clamped", "o"), ("relaxed", "s")):
                fs = r["finite_strain"].get(kind)
                if fs is None:
                    continue
                eta = np.asarray(fs["strains"])
                s = np.asarray(fs["stresses"])[J]
                for I in range(6):
                    if np.ptp(s[:, I]) < 1e-3 * max(np.ptp(s), 1e-12):
                        continue
                    line = ax.plot(100 * eta, s[:, I], style, ms=4, mfc="none" if kind == "clamped" else None,
                                   label=f"σ_{_NAMES[I]} {kind}")[0]
                    x = np.linspace(eta.min(), eta.max(), 2)
                    ax.plot(100 * x, s[0, I] + fs["C"][I, J] * x, "-", color=line.get_color(), lw=0.8)
            ax.set_title(f"strain η_{_NAMES[J]} (input frame)")
            ax.set_xlabel("strain (%)")
            ax.set_ylabel("stress (GPa)")
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(target, dpi=110)
        plt.close(fig)
        return [target]


def _rotation_angle_deg(cell_before, cell_after) -> float:
    """Angle (degrees) of the rigid rotation in the deformation that maps ``cell_before`` onto
    ``cell_after`` (rows): the orthogonal factor of its polar decomposition."""
    F = np.linalg.solve(np.asarray(cell_before, dtype=float), np.asarray(cell_after, dtype=float))
    U, _, Vt = np.linalg.svd(F)
    Q = U @ Vt
    return float(np.degrees(np.arccos(np.clip((np.trace(Q) - 1.0) / 2.0, -1.0, 1.0))))
