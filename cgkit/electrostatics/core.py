"""The :class:`Electrostatics` term: Coulomb energy of point charges, per atom, in torch.

Conventions
-----------
* Units: positions and cell in Å, charges in e, energies in eV; ``k_e = K_E = 14.399645
  eV·Å/e²`` (the value LAMMPS uses for ``qqr2e`` in metal units).
* ``E = k_e Σ_{i<j} q_i q_j / r_ij`` summed over all periodic images (``n ≠ 0`` for i = j).
* Periodic sums (Ewald, PME, slab) use **tin-foil (conducting) boundary conditions**: the
  surface (dipole) term of the conditionally convergent lattice sum is zero, as in LAMMPS,
  GROMACS and pymatgen. The slab method adds the Yeh–Berkowitz dipole correction instead.
* A periodic structure must be neutral. With ``background=True`` a net charge Q is
  compensated by a uniform neutralising background, whose energy −π k_e Q²/(2 V α²) is added
  (split as −π k_e q_i Q/(2 V α²) per atom); otherwise a non-neutral periodic structure is
  refused. (A net charge within round-off is always compensated that way.)
* Per-atom energies: real-space pair terms are split half to each atom, the reciprocal part
  is ``q_i φ_i^rec / 2``, the self term is ``−k_e α q_i²/√π``.
* Accuracy: ``accuracy`` is relative in the LAMMPS sense: the truncation errors of the
  energy per atom and of the force components are about ``accuracy × k_e q²/(1 Å)`` (the
  force between two unit charges 1 Å apart, 14.4 eV/Å, times the mean squared charge).
  α, the real-space cutoff and the k-vectors (or the PME mesh) are chosen from it on every
  call from the cell volume and the number of atoms — a discrete choice that is not
  differentiated; the energy is independent of it to within ``accuracy``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError, NotSupportedError, StructureError
from . import _kernels as K

__all__ = ["Electrostatics", "Exclusions", "K_E", "METHODS"]

K_E = K.K_E

METHODS = ("auto", "ewald", "pme", "direct", "slab", "dsf")

#: periodic structures with at least this many atoms use PME under method="auto"
PME_THRESHOLD = 150

_AXES = "xyz"

#: measured costs (energy + forces, one thread, µs): one real-space pair, one (k-vector,
#: atom) term of the Ewald sum, one grid point × log2(grid size) of PME; they only steer the
#: choice of α (the accuracy does not depend on them)
_COST_PAIR, _COST_KTERM, _COST_GRID = 1.3, 0.07, 0.03
_W_PAIR_OVER_KTERM = _COST_PAIR / (2.0 * _COST_KTERM)   # (half list) / (half k-space)

#: truncation thresholds are set to accuracy × _MARGIN (the error estimates are not bounds)
_MARGIN = 0.1


class Exclusions:
    """Scaled (or excluded) Coulomb pairs of a molecular force field.

    pairs : (m, 2) integer atom indices (each unordered pair once); scale : (m,) factor of the
    pair's Coulomb interaction (0 = excluded, 0.5 = OPLS 1-4, 1 = unchanged). For Ewald/PME
    the excluded part ``(1 − s) k_e q_i q_j / r`` (real-space erfc part + reciprocal erf part)
    is subtracted; the pair vector is the minimum image (bonded neighbours in molecules).
    """

    __slots__ = ("pairs", "scale")

    def __init__(self, pairs, scale=None):
        p = torch.as_tensor(np.asarray(pairs.detach().cpu() if torch.is_tensor(pairs) else pairs))
        if p.numel() == 0:
            p = p.reshape(0, 2)
        if p.dim() != 2 or p.shape[1] != 2:
            raise InputError(f"exclusion pairs must have shape (m, 2), got {tuple(p.shape)}")
        if p.is_floating_point():
            if not torch.all(p == torch.round(p)):
                raise InputError("exclusion pairs must be integer atom indices")
        p = p.long()
        if scale is None:
            s = torch.zeros(p.shape[0], dtype=torch.float64)
        else:
            s = torch.as_tensor(np.asarray(scale.detach().cpu() if torch.is_tensor(scale) else scale,
                                           dtype=np.float64)).reshape(-1)
        if s.shape[0] != p.shape[0]:
            raise InputError(f"exclusion scale has {s.shape[0]} entries for {p.shape[0]} pairs")
        if not torch.all(torch.isfinite(s)):
            raise InputError("exclusion scale factors must be finite")
        if p.shape[0] and bool((p[:, 0] == p[:, 1]).any()):
            k = int(torch.nonzero(p[:, 0] == p[:, 1])[0, 0])
            raise InputError(f"exclusion pair {k} pairs atom {int(p[k, 0])} with itself")
        self.pairs, self.scale = p, s

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def __repr__(self) -> str:
        return f"Exclusions({len(self)} pairs)"


def _erfc_inv_small(eps: float) -> float:
    """s with erfc(s) = eps (eps < 1), by Newton from the asymptotic guess."""
    s = math.sqrt(max(-math.log(eps), 0.25))
    for _ in range(60):
        f = math.erfc(s) - eps
        df = -2.0 / math.sqrt(math.pi) * math.exp(-s * s)
        step = f / df
        s -= step
        if s <= 0:
            s = 1e-3
        if abs(step) < 1e-12:
            break
    return s


def _smooth_size(k: int) -> int:
    """Smallest integer ≥ k whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    k = max(int(k), 1)
    while True:
        m = k
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return k
        k += 1


@dataclasses.dataclass(frozen=True)
class Electrostatics:
    """Coulomb energy of point charges (e) at positions (Å) in an open, slab or periodic cell.

    Parameters
    ----------
    method : "auto" — Ewald for periodic cells with fewer than 150 atoms (the measured
        crossover at accuracy 1e-5, benchmarks/electrostatics.py), above that the cheaper of Ewald
        and PME by a cost estimate (Ewald for tight accuracies), the
        slab method for cells periodic in two directions, a direct sum for open structures;
        "ewald" | "pme" (smooth particle-mesh Ewald) | "direct" (open boundaries, all pairs) |
        "slab" (two periodic directions, Yeh–Berkowitz correction) | "dsf" (damped shifted
        force, Fennell & Gezelter 2006 — an *approximation*: a cutoff Coulomb with
        ``dsf_alpha`` and ``dsf_cutoff``, no long-range tail; any boundary conditions).
    accuracy : requested relative accuracy (see module docstring), in (0, 1).
    cutoff : Å, fixes the Ewald/PME real-space cutoff (α is then chosen from it and the
        accuracy); None chooses it too.
    background : allow a net charge in periodic cells (uniform neutralising background).
    slab : volume factor of the slab method (height of the Ewald cell / height of the
        structure, LAMMPS ``kspace_modify slab``); False or True mean 3.0.
    dsf_alpha : 1/Å, damping of "dsf"; dsf_cutoff : Å, its cutoff.
    pme_order : B-spline order of PME (4–8; even orders recommended).

    All methods use tin-foil boundary conditions for periodic directions; units e, Å, eV.
    Instances are immutable and hashable.
    """

    method: str = "auto"
    accuracy: float = 1e-6
    cutoff: float | None = None
    background: bool = False
    slab: Any = False
    dsf_alpha: float = 0.2
    dsf_cutoff: float = 10.0
    pme_order: int = 6

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown electrostatics method {self.method!r}; use one of {METHODS}")
        acc = self.accuracy
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not (0.0 < float(acc) < 1.0):
            raise InputError(f"accuracy must be a relative accuracy in (0, 1), e.g. 1e-6; got {acc!r}")
        object.__setattr__(self, "accuracy", float(acc))
        if self.cutoff is not None:
            c = self.cutoff
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(c) and c > 0):
                raise InputError(f"the real-space cutoff must be a positive distance in Å or None, got {c!r}")
            object.__setattr__(self, "cutoff", float(c))
        if not isinstance(self.background, (bool, np.bool_)):
            raise InputError(f"background must be True or False, got {self.background!r}")
        object.__setattr__(self, "background", bool(self.background))
        slab = self.slab
        if not isinstance(slab, (bool, np.bool_)):
            if not isinstance(slab, (int, float)) or not (math.isfinite(slab) and slab >= 2.0):
                raise InputError(f"slab must be False/True or a volume factor ≥ 2 (e.g. 3.0), got {slab!r}")
            object.__setattr__(self, "slab", float(slab))
        for name in ("dsf_alpha", "dsf_cutoff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (name == "dsf_cutoff" and v == 0):
                raise InputError(f"{name} must be a {'positive' if name == 'dsf_cutoff' else 'non-negative'}"
                                 f" number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not isinstance(self.pme_order, (int, np.integer)) or not 4 <= int(self.pme_order) <= 8:
            raise InputError(f"pme_order must be an integer in 4..8, got {self.pme_order!r}")
        object.__setattr__(self, "pme_order", int(self.pme_order))

    # ------------------------------------------------------------------ settings
    @property
    def slab_factor(self) -> float:
        return 3.0 if isinstance(self.slab, bool) else float(self.slab)

    def resolve_method(self, pbc, n: int, cell=None) -> str:
        """The method used for a structure with this ``pbc``, ``n`` atoms and ``cell``.

        "auto" in a periodic cell: Ewald below ``PME_THRESHOLD`` atoms; above, whichever of
        Ewald and PME has the lower estimated cost at this accuracy (PME meshes grow fast for
        tight accuracies)."""
        pbc = _as_pbc(pbc)
        if self.method != "auto":
            return self.method
        if pbc.all():
            if n < PME_THRESHOLD or cell is None:
                return "ewald" if n < PME_THRESHOLD else "pme"
            cell_np = np.asarray(cell.detach().cpu() if torch.is_tensor(cell) else cell, dtype=np.float64)
            volume = abs(float(np.linalg.det(cell_np)))
            return "pme" if self._pme_params(cell_np, volume, n)["_cost"] <= \
                self._ewald_params(cell_np, volume, n, with_m=False)["_cost"] else "ewald"
        if not pbc.any():
            return "direct"
        if pbc.sum() == 2:
            return "slab"
        raise NotSupportedError(
            f"no electrostatics method for a structure periodic only along "
            f"{_AXES[int(np.nonzero(pbc)[0][0])]}: make it periodic in 2 or 3 directions or open")

    def parameters_for(self, cell, pbc, n: int) -> dict:
        """The parameters a call with this cell (3, 3) Å, pbc and ``n`` atoms would use:
        ``method``, ``alpha`` (1/Å), ``r_cut`` (Å) and ``k_max`` (reciprocal cutoff, 1/Å,
        with ``n_kvectors``) for Ewald/slab or ``mesh`` and ``order`` for PME."""
        cell_np = np.asarray(cell.detach().cpu() if torch.is_tensor(cell) else cell, dtype=np.float64)
        pbc = _as_pbc(pbc)
        method = self.resolve_method(pbc, n, cell_np)
        if method == "direct":
            return {"method": "direct"}
        if method == "dsf":
            return {"method": "dsf", "alpha": self.dsf_alpha, "r_cut": self.dsf_cutoff}
        if method == "slab":
            cell_np = _slab_cell_numpy(cell_np, pbc, None, self.slab_factor)
        volume = abs(float(np.linalg.det(cell_np)))
        par = self._pme_params(cell_np, volume, n) if method == "pme" else self._ewald_params(cell_np, volume, n)
        return {"method": method, **{k: v for k, v in par.items() if not k.startswith("_")}}

    def _ewald_params(self, cell: np.ndarray, volume: float, n: int, with_m: bool = True) -> dict:
        eps = self.accuracy * _MARGIN
        s_r = _erfc_inv_small(eps)
        s_k = math.sqrt(-math.log(eps))
        if self.cutoff is not None:
            r_cut = self.cutoff
            alpha = s_r / r_cut
        else:
            # balance real-space pairs (∝ N² r_c³/V) against k-vectors × atoms (∝ N V k_c³)
            w = _W_PAIR_OVER_KTERM
            a6 = w * (4.0 * math.pi / 3.0) * s_r ** 3 * n / volume ** 2 * (12.0 * math.pi ** 2) / (8.0 * s_k ** 3)
            alpha = max(a6, 1e-300) ** (1.0 / 6.0)
            r_cut = s_r / alpha
        k_cut = 2.0 * alpha * s_k
        n_pairs = (2.0 * math.pi / 3.0) * r_cut ** 3 * n * n / volume
        n_khalf = volume * k_cut ** 3 / (12.0 * math.pi ** 2)
        cost = _COST_PAIR * n_pairs + _COST_KTERM * n_khalf * n
        if not with_m:
            return {"alpha": alpha, "r_cut": r_cut, "k_max": k_cut, "_cost": cost}
        m = K.kvector_indices(cell, k_cut)
        return {"alpha": alpha, "r_cut": r_cut, "k_max": k_cut, "n_kvectors": 2 * len(m), "_m": m,
                "_cost": cost}

    def _pme_mesh(self, cell: np.ndarray, alpha: float) -> tuple[int, int, int]:
        eps, p = self.accuracy * _MARGIN, self.pme_order
        # aliasing error of order-p B-spline interpolation ~ C (k h / 2π)^p e^{−k²/4α²},
        # largest at k² = 2pα²: require it below eps
        c = 8.0
        ah = (2.0 * math.pi / math.sqrt(2.0 * p)) * (eps * math.exp(p / 2.0) / c) ** (1.0 / p)
        h = ah / alpha
        k_cut = 2.0 * alpha * math.sqrt(-math.log(eps))
        mesh = []
        for d in range(3):
            L = float(np.linalg.norm(cell[d]))
            hmax = k_cut * L / (2.0 * math.pi)
            mesh.append(_smooth_size(max(math.ceil(L / h), math.ceil(2 * hmax + 1), 2 * p)))
        return tuple(mesh)

    def _pme_params(self, cell: np.ndarray, volume: float, n: int) -> dict:
        s_r = _erfc_inv_small(self.accuracy * _MARGIN)
        if self.cutoff is not None:
            r_cut = self.cutoff
            alpha = s_r / r_cut
            mesh = self._pme_mesh(cell, alpha)
            ng = mesh[0] * mesh[1] * mesh[2]
            cost = (_COST_PAIR * (2.0 * math.pi / 3.0) * r_cut ** 3 * n * n / volume
                    + _COST_GRID * ng * math.log2(ng))
        else:
            best = None
            for r_cut in np.arange(4.0, 16.01, 0.25):
                alpha = s_r / r_cut
                mesh = self._pme_mesh(cell, alpha)
                ng = mesh[0] * mesh[1] * mesh[2]
                cost = (_COST_PAIR * (2.0 * math.pi / 3.0) * r_cut ** 3 * n * n / volume
                        + _COST_GRID * ng * math.log2(ng))
                if best is None or cost < best[0]:
                    best = (cost, r_cut, alpha, mesh)
            cost, r_cut, alpha, mesh = best
        return {"alpha": float(alpha), "r_cut": float(r_cut), "mesh": tuple(int(k) for k in mesh),
                "order": self.pme_order, "_cost": cost}

    # ------------------------------------------------------------------ evaluation
    def energy(self, positions, charges, cell, pbc, exclusions: Exclusions | None = None) -> torch.Tensor:
        """Total Coulomb energy (scalar tensor, eV) = ``atomic_energies(...).sum()``."""
        return self.atomic_energies(positions, charges, cell, pbc, exclusions).sum()

    def atomic_energies(self, positions, charges, cell, pbc,
                        exclusions: Exclusions | None = None) -> torch.Tensor:
        """Coulomb energy per atom (n,) eV.

        positions (n, 3) Å; charges (n,) e; cell (3, 3) Å, rows = lattice vectors (ignored
        along open directions of "direct"/"dsf"); pbc (3,) bool; exclusions: scaled pairs.
        Differentiable in positions, cell and charges (to any order).
        """
        positions, charges, cell, pbc = _check_inputs(positions, charges, cell, pbc)
        n = positions.shape[0]
        dtype = positions.dtype
        tiny = 4.0 * float(torch.finfo(dtype).eps)
        method = self.resolve_method(pbc, n, cell)
        if method in ("ewald", "pme", "slab") and self.accuracy < tiny:
            raise InputError(
                f"accuracy {self.accuracy:g} cannot be reached in {str(dtype).replace('torch.', '')} "
                f"(machine epsilon {torch.finfo(dtype).eps:.3g}): use float64 or accuracy ≥ {tiny:.2g}")
        if exclusions is not None and not isinstance(exclusions, Exclusions):
            exclusions = Exclusions(*exclusions)
        if exclusions is not None and len(exclusions):
            if int(exclusions.pairs.max()) >= n or int(exclusions.pairs.min()) < 0:
                raise InputError(f"exclusion pairs reference atom indices outside 0..{n - 1}")
        if n == 0:
            return positions.new_zeros(0)

        if method in ("ewald", "pme"):
            if not pbc.all():
                d = _AXES[int(np.nonzero(~pbc)[0][0])]
                raise NotSupportedError(
                    f"method={method!r} needs a cell periodic in all three directions, but "
                    f"direction {d} is not periodic: use method='slab' for a structure periodic in "
                    "two directions or method='direct' for a molecule/cluster (or method='auto')")
            e = self._periodic(positions, charges, cell, pbc, method, n)
        elif method == "slab":
            e = self._slab(positions, charges, cell, pbc, n)
        elif method == "direct":
            if pbc.any():
                d = _AXES[int(np.nonzero(pbc)[0][0])]
                raise NotSupportedError(
                    f"method='direct' is for open boundaries, but direction {d} is periodic: use "
                    "method='ewald'/'pme' (3D periodic), 'slab' (2D periodic) or 'auto'")
            _check_distinct_direct(positions)
            e = K.direct_sum(positions, charges)
        else:  # dsf
            e = K.dsf(positions, charges, cell, pbc, self.dsf_alpha, self.dsf_cutoff)
        if exclusions is not None and len(exclusions):
            ex_pbc = pbc if method != "direct" else np.zeros(3, bool)
            e = e + K.exclusion_correction(positions, charges, cell, ex_pbc,
                                           exclusions.pairs.to(positions.device),
                                           exclusions.scale.to(dtype=dtype, device=positions.device))
        return e

    def _check_neutral(self, charges: torch.Tensor, tiny: float) -> None:
        q = charges.detach()
        Q = float(q.sum())
        tol = max(self.accuracy, tiny) * max(1.0, float(q.abs().sum()))
        if abs(Q) > tol and not self.background:
            raise InputError(
                f"the periodic structure has a net charge of {Q:.6g} e: neutralise the charges, or "
                "pass background=True for a uniform neutralising background")

    def _periodic(self, positions, charges, cell, pbc, method, n):
        tiny = 4.0 * float(torch.finfo(positions.dtype).eps)
        self._check_neutral(charges, tiny)
        cell_np = cell.detach().cpu().double().numpy()
        volume = K.volume(cell)
        if method == "ewald":
            par = self._ewald_params(cell_np, abs(float(np.linalg.det(cell_np))), n)
            e_rec = K.ewald_reciprocal(positions, charges, cell, par["alpha"], par["_m"])
        else:
            par = self._pme_params(cell_np, abs(float(np.linalg.det(cell_np))), n)
            e_rec = K.pme_reciprocal(positions, charges, cell, par["alpha"], par["mesh"], par["order"])
        alpha = par["alpha"]
        e = K.ewald_real(positions, charges, cell, pbc, alpha, par["r_cut"]) + e_rec
        e = e + K.self_energy(charges, alpha) + K.background_energy(charges, volume, alpha)
        return e

    def _slab(self, positions, charges, cell, pbc, n):
        if int(pbc.sum()) != 2:
            raise NotSupportedError(
                f"method='slab' needs exactly two periodic directions (pbc = {pbc.tolist()}): use "
                "'ewald'/'pme' for 3D periodic cells and 'direct' for open structures")
        tiny = 4.0 * float(torch.finfo(positions.dtype).eps)
        self._check_neutral(charges, tiny)
        open_d = int(np.nonzero(~pbc)[0][0])
        a, b = [cell[d] for d in range(3) if pbc[d]]
        normal = torch.linalg.cross(a, b)
        normal = normal / torch.linalg.vector_norm(normal)
        z = positions @ normal
        height = _slab_height(cell.detach().cpu().double().numpy(), pbc,
                              z.detach().cpu().double().numpy())
        L = self.slab_factor * height
        rows = [cell[d] if pbc[d] else None for d in range(3)]
        rows[open_d] = normal * L
        ext = torch.stack(rows)
        if float(torch.linalg.det(ext.detach())) < 0:
            rows[open_d] = -normal * L
            ext = torch.stack(rows)
        ext_np = ext.detach().cpu().double().numpy()
        volume = K.volume(ext)
        par = self._ewald_params(ext_np, abs(float(np.linalg.det(ext_np))), n)
        alpha = par["alpha"]
        allp = np.ones(3, bool)
        e = (K.ewald_real(positions, charges, ext, allp, alpha, par["r_cut"])
             + K.ewald_reciprocal(positions, charges, ext, alpha, par["_m"])
             + K.self_energy(charges, alpha) + K.background_energy(charges, volume, alpha))
        return e + K.slab_correction(z, charges, volume, L)


# ---------------------------------------------------------------------------- helpers
def _as_pbc(pbc) -> np.ndarray:
    if torch.is_tensor(pbc):
        pbc = pbc.detach().cpu().numpy()
    arr = np.asarray(pbc)
    if arr.ndim == 0:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,):
        raise InputError(f"pbc must be a bool or 3 bools, got shape {arr.shape}")
    return arr.astype(bool)


def _check_inputs(positions, charges, cell, pbc):
    if not torch.is_tensor(positions):
        positions = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    if not positions.is_floating_point():
        positions = positions.double()
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise InputError(f"positions must have shape (n_atoms, 3), got {tuple(positions.shape)}")
    n = positions.shape[0]
    if not torch.is_tensor(charges):
        charges = torch.as_tensor(np.asarray(charges, dtype=np.float64))
    charges = charges.to(dtype=positions.dtype, device=positions.device)
    if charges.dim() != 1 or charges.shape[0] != n:
        raise InputError(f"charges must have shape ({n},) — one charge (e) per atom — got "
                         f"{tuple(charges.shape)}")
    bad = ~torch.isfinite(charges.detach())
    if bool(bad.any()):
        idx = torch.nonzero(bad).reshape(-1)[:10].tolist()
        raise InputError(f"charges of atoms {idx} are NaN or infinite; give finite charges (e)")
    badp = ~torch.isfinite(positions.detach()).all(1)
    if bool(badp.any()):
        idx = torch.nonzero(badp).reshape(-1)[:10].tolist()
        raise StructureError(f"positions of atoms {idx} are NaN or infinite; fix the structure")
    if not torch.is_tensor(cell):
        cell = torch.as_tensor(np.asarray(cell, dtype=np.float64))
    cell = cell.to(dtype=positions.dtype, device=positions.device)
    if cell.shape == (1, 3, 3):
        cell = cell[0]
    if cell.shape != (3, 3) or not bool(torch.isfinite(cell.detach()).all()):
        raise InputError(f"cell must be a finite (3, 3) matrix of lattice vectors (rows, Å), got "
                         f"shape {tuple(cell.shape)}")
    pbc = _as_pbc(pbc)
    if pbc.all():
        det = float(torch.linalg.det(cell.detach().double()))
        if det <= 1e-8:
            raise StructureError(f"the periodic cell has a non-positive volume (det = {det:.6g} Å³); "
                                 "give three right-handed, linearly independent lattice vectors")
    return positions, charges, cell, pbc


def _check_distinct_direct(positions: torch.Tensor) -> None:
    n = positions.shape[0]
    if n < 2 or n > 20000:
        return
    x = positions.detach().double()
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    if float(d.min()) < 1e-8:
        i, j = np.unravel_index(int(torch.argmin(d)), d.shape)
        raise StructureError(f"atoms {i} and {j} are at the same position: the Coulomb energy is infinite")


def _slab_height(cell: np.ndarray, pbc: np.ndarray, z: np.ndarray) -> float:
    open_d = int(np.nonzero(~pbc)[0][0])
    a, b = [cell[d] for d in range(3) if pbc[d]]
    nrm = np.cross(a, b)
    nrm /= np.linalg.norm(nrm)
    h_cell = abs(float(cell[open_d] @ nrm))
    extent = float(z.max() - z.min()) if len(z) else 0.0
    if h_cell < 1e-8:
        if extent < 1e-6:
            raise StructureError(
                f"slab: the atoms have no extent along the non-periodic direction "
                f"{_AXES[open_d]} and the cell vector {open_d} is zero: give the cell height "
                "along it (the Ewald cell is slab × that height)")
        return extent
    if extent > h_cell + 1e-9:
        raise StructureError(
            f"slab: the atoms extend {extent:.4g} Å along the non-periodic direction "
            f"{_AXES[open_d]}, more than the cell height {h_cell:.4g} Å: enlarge cell vector {open_d}")
    return h_cell


def _slab_cell_numpy(cell: np.ndarray, pbc: np.ndarray, z, factor: float) -> np.ndarray:
    open_d = int(np.nonzero(~pbc)[0][0])
    a, b = [cell[d] for d in range(3) if pbc[d]]
    nrm = np.cross(a, b)
    nrm /= np.linalg.norm(nrm)
    h = abs(float(cell[open_d] @ nrm))
    if h < 1e-8:
        h = 1.0 if z is None else float(np.ptp(z))
    out = cell.copy()
    out[open_d] = nrm * factor * h
    if np.linalg.det(out) < 0:
        out[open_d] *= -1
    return out
