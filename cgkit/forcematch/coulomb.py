"""Coulomb between charged CG beads: the fixed electrostatic term of a CG model.

:class:`BeadCoulombPotential` holds the charges (e) of the beads of one CG system (from the
mapping: summed atom charges of the topology or charges given in the mapping YAML, see
:class:`cgkit.mapping.Mapping`) and the system's non-bonded exclusions, and evaluates

    E = k_e Σ_{i<j, (i,j) not excluded} q_i q_j / r_ij      (k_e = 14.399645 eV·Å/e²)

with :class:`cgkit.electrostatics.Electrostatics`: Ewald or smooth PME for cells periodic in
x, y, z (tin-foil boundary), a direct sum for open systems. Excluded pairs (the CG topology's
``exclusions``, the same pairs the pair tables leave out) lose their whole Coulomb interaction,
real- and reciprocal-space parts — LAMMPS ``special_bonds lj/coul 0.0 ...`` with ``coul/long``.

In force matching the term is *fixed* (like a prior): its forces are subtracted from the mapped
forces before the spline fit (``SplineForceMatching(..., fixed_terms=[coulomb])``), and the
fitted model is ``SumPotential([tables, coulomb])``, saved and reloaded as one file and run by
``cgkit md`` (torch path). Export: :func:`cgkit.export.write_lammps` writes ``pair_style
hybrid/overlay table ... coul/long`` + ``kspace_style pppm``.

A periodic system with a net charge is refused unless ``background=True`` (uniform
neutralising background, as LAMMPS/GROMACS do silently). Units: Å, e, eV.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..potential import Potential, SumPotential

__all__ = ["BeadCoulombPotential", "COULOMB_METHODS", "split_coulomb"]

#: electrostatics methods of a CG Coulomb term ("auto": Ewald/PME periodic, direct open)
COULOMB_METHODS = ("auto", "ewald", "pme", "direct")


class BeadCoulombPotential(Potential):
    """Coulomb energy of fixed bead charges of one CG system (module docstring).

    Parameters
    ----------
    charges : (n_beads,) e, one per bead of the system (graphs holding R copies of the system,
        ``n_atoms = R·n_beads``, get the charges repeated)
    exclusions : (m, 2) bead index pairs without Coulomb interaction (the CG topology's
        ``exclusions``)
    method : "auto" (Ewald/PME for 3D-periodic cells, direct sum for open systems), "ewald",
        "pme" or "direct"
    accuracy : relative accuracy of energies and forces in the LAMMPS sense (error ≈ accuracy ×
        14.4 eV/Å × mean q²), see :class:`cgkit.electrostatics.Electrostatics`
    background : allow a net charge in a periodic cell (uniform neutralising background)
    type_names : bead type names (only checked for consistency in sums with tables)
    """

    #: Å: no short-range part
    short_range_cutoff = 0.0

    def __init__(self, charges, exclusions=None, *, method: str = "auto", accuracy: float = 1e-6,
                 background: bool = False, type_names=None):
        super().__init__()
        from ..electrostatics import Electrostatics
        q = np.asarray(charges, dtype=object).reshape(-1)
        try:
            q = np.array([float(v) for v in q], dtype=np.float64)
            if any(isinstance(v, bool) for v in np.asarray(charges, dtype=object).reshape(-1)):
                raise TypeError
        except (TypeError, ValueError):
            raise InputError("bead charges must be numbers (e), one per bead") from None
        if len(q) == 0:
            raise InputError("a Coulomb term needs at least one bead charge")
        if not np.all(np.isfinite(q)):
            k = int(np.nonzero(~np.isfinite(q))[0][0])
            raise InputError(f"bead {k} has the charge {q[k]!r}; bead charges must be finite (e)")
        if method not in COULOMB_METHODS:
            raise InputError(f"Coulomb method must be one of {COULOMB_METHODS}, got {method!r}")
        if not isinstance(background, (bool, np.bool_)):
            raise InputError(f"background must be True or False, got {background!r}")
        ex = np.zeros((0, 2), np.int64) if exclusions is None else np.asarray(exclusions)
        ex = ex.reshape(-1, 2)
        if ex.size and (not np.issubdtype(ex.dtype, np.integer) or ex.min() < 0 or ex.max() >= len(q)):
            raise InputError(f"Coulomb exclusions must be bead index pairs in 0..{len(q) - 1}")
        ex = np.unique(np.sort(ex.astype(np.int64), axis=1), axis=0) if ex.size else ex.astype(np.int64)
        if ex.size and np.any(ex[:, 0] == ex[:, 1]):
            raise InputError("a Coulomb exclusion pairs a bead with itself")
        self.es = Electrostatics(method=method, accuracy=accuracy, background=bool(background))
        self.charges = q
        self.exclusions = ex
        self.method, self.accuracy, self.background = method, float(accuracy), bool(background)
        self.type_names = None if type_names is None else tuple(str(t) for t in type_names)
        self.cutoff = 0.0
        self.net_charge = float(q.sum())
        if self.method in ("ewald", "pme"):
            self.check_neutral()
        self._cache = {}

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_topology(cls, charges, topology, **kw) -> "BeadCoulombPotential":
        """The Coulomb term of a CG system with these bead ``charges`` (e) and the non-bonded
        exclusions of ``topology`` (:class:`cgkit.topology.Topology`)."""
        q = np.asarray(charges).reshape(-1)
        if len(q) != topology.n_particles:
            raise InputError(f"{len(q)} bead charges for a CG topology of {topology.n_particles} beads; "
                             "the charges and the CG topology do not match")
        return cls(q, topology.exclusions, **kw)

    def check_neutral(self) -> None:
        """Refuse (InputError) a net charge without ``background`` (periodic sums)."""
        tol = 1e-6 * max(1.0, float(np.abs(self.charges).sum()))
        if abs(self.net_charge) > tol and not self.background:
            raise InputError(
                f"the CG system has a net charge of {self.net_charge:.6g} e (sum of the bead charges); a "
                "periodic Coulomb sum needs a neutral system: fix the bead charges in the mapping, or "
                "ask for a uniform neutralising background explicitly (background=True; cgkit fm "
                "--coulomb-background); an open (non-periodic) system takes method 'direct' (--coulomb direct)")

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        return {"charges": self.charges.tolist(), "exclusions": self.exclusions.tolist(),
                "method": self.method, "accuracy": self.accuracy, "background": self.background,
                "type_names": None if self.type_names is None else list(self.type_names)}

    def extra_repr(self) -> str:
        return (f"{len(self.charges)} beads, net charge {self.net_charge:.4g} e, method={self.method!r}, "
                f"accuracy={self.accuracy:g}, {len(self.exclusions)} exclusions")

    def describe(self) -> dict:
        """JSON-ready settings (for summaries)."""
        q = self.charges
        return {"method": self.method, "accuracy": self.accuracy, "background": self.background,
                "net_charge_e": self.net_charge, "n_charged_beads": int(np.count_nonzero(q)),
                "charge_range_e": [float(q.min()), float(q.max())],
                "n_excluded_pairs": int(len(self.exclusions)), "coulomb_constant_eV_A_per_e2": 14.399645}

    # ------------------------------------------------------------------ energy
    def _per_graph(self, n: int, device, dtype):
        key = (n, str(device), dtype)
        if key not in self._cache:
            n0 = len(self.charges)
            if n % n0:
                raise InputError(f"this Coulomb term holds the charges of {n0} beads, but the structure "
                                 f"has {n} particles (not a multiple); use the CG system it was fitted for")
            reps = n // n0
            q = torch.as_tensor(np.tile(self.charges, reps), dtype=dtype, device=device)
            ex = None
            if len(self.exclusions):
                off = (np.arange(reps) * n0)[:, None, None]
                pairs = (self.exclusions[None] + off).reshape(-1, 2)
                ex = (torch.as_tensor(pairs, device=device), torch.zeros(len(pairs), dtype=torch.float64))
            self._cache[key] = (q, ex)
        return self._cache[key]

    def atomic_energies(self, graph, positions, cell):
        from ..potentials.coulomb import coulomb_atomic_energies
        counts = graph.atoms_per_graph().tolist() if graph.n_graphs > 1 else [graph.n_atoms]
        qs, exs = [], []
        for k, n in enumerate(counts):
            q, ex = self._per_graph(int(n), positions.device, positions.dtype)
            if bool(np.asarray(graph.pbc[k].detach().cpu() if torch.is_tensor(graph.pbc) else graph.pbc[k]).any()):
                self.check_neutral()
            qs.append(q)
            exs.append(ex)
        charges = qs[0] if len(qs) == 1 else torch.cat(qs)
        return coulomb_atomic_energies(self.es, graph, positions, cell, charges, exclusions=exs)

    def lammps_parameters(self, cell, n_atoms: int | None = None) -> dict:
        """``{"r_cut": Å, "kspace": "pppm", "accuracy": ...}`` for LAMMPS ``coul/long`` +
        ``kspace_style pppm`` at this term's accuracy in ``cell`` (3, 3) Å: the real-space
        cutoff Ewald would use here (LAMMPS then picks its own g_ewald and mesh for the
        accuracy), at least 2 Å."""
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        n = int(n_atoms or len(self.charges))
        from ..electrostatics import Electrostatics
        par = Electrostatics(method="ewald", accuracy=self.accuracy).parameters_for(cell, [True] * 3, n)
        return {"r_cut": max(2.0, math.ceil(par["r_cut"] * 10.0) / 10.0), "kspace": "pppm",
                "accuracy": self.accuracy}


def split_coulomb(potential):
    """``(rest, coulomb)``: a fitted CG model split into its non-Coulomb part (a
    TabulatedPotential, ThreeBodyPotential, ... or a SumPotential of several) and its
    :class:`BeadCoulombPotential` (None when it has none). More than one Coulomb term is refused."""
    if isinstance(potential, BeadCoulombPotential):
        return None, potential
    if not isinstance(potential, SumPotential):
        return potential, None
    coul = [t for t in potential.terms if isinstance(t, BeadCoulombPotential)]
    rest = [t for t in potential.terms if not isinstance(t, BeadCoulombPotential)]
    if len(coul) > 1:
        raise InputError("the model holds more than one bead Coulomb term; give it one")
    if not rest:
        return None, coul[0] if coul else None
    return (rest[0] if len(rest) == 1 else SumPotential(rest)), (coul[0] if coul else None)
