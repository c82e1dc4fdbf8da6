"""Bare point-charge Coulomb energy as a cgkit Potential, and the fixed-charge helpers the
charged classical potentials (:mod:`~cgkit.potentials.nacl`, :mod:`~cgkit.potentials.spcfw`)
share.

E = k_e Σ_{i<j} q_i q_j / r_ij (over all periodic images, k_e = 14.399645 eV·Å/e²), evaluated
by :class:`cgkit.electrostatics.Electrostatics`: Ewald summation for cells periodic in all
three directions, a direct sum for open structures (molecules, clusters), with the method and
requested relative accuracy as parameters. Conventions (tin-foil boundary, no neutralising
background unless asked for) are those of :mod:`cgkit.electrostatics`: a non-neutral periodic
structure is refused unless ``background=True``.

The charges (e) are the structure's ASE ``initial_charges`` (``atoms.set_initial_charges``, an
extxyz ``initial_charges`` column), carried by :attr:`cgkit.data.AtomicGraph.charges`. A
structure without charges is refused.

Forces, stress and Hessians come from autograd through the Ewald sum (:class:`Potential`);
the fixed-charge Born effective charges are ``Z*_i = q_i·I`` (:meth:`born_effective_charges`).

The potential has no short-range part: ``short_range_cutoff`` is 0 Å and its ``cutoff``
(1 Å) only sizes the (unused) neighbour graph. For phonons this means: with the
non-analytic correction (``cgkit phonons --nac``) the supercell needs no minimum width for
this term (phonopy's dipole–dipole Ewald takes the long range exactly); without it the
long-range force constants cannot be represented in any finite supercell and the phonon
calculation refuses (see :mod:`cgkit.properties.phonons`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, NotSupportedError
from ..potential import Potential

__all__ = ["CoulombPotential", "coulomb_atomic_energies", "fixed_born_charges"]

#: eV·Å/e² (same value as :data:`cgkit.electrostatics.K_E`)
K_E = 14.399645


def _electrostatics():
    try:
        from .. import electrostatics as es
        return es.Electrostatics, es.Exclusions
    except (ImportError, AttributeError) as exc:  # pragma: no cover - only while es-core is missing
        raise NotSupportedError(f"cgkit.electrostatics is not available ({exc})") from None


def make_electrostatics(method="auto", accuracy=1e-6, real_space_cutoff=None, background=False,
                        dsf_alpha=0.2, dsf_cutoff=10.0):
    """An :class:`cgkit.electrostatics.Electrostatics` with these settings (checked)."""
    Electrostatics, _ = _electrostatics()
    if not (isinstance(accuracy, (int, float)) and 0 < accuracy < 1):
        raise InputError(f"accuracy must be a relative accuracy in (0, 1), e.g. 1e-6; got {accuracy!r}")
    return Electrostatics(method=method, accuracy=float(accuracy), cutoff=real_space_cutoff,
                          background=bool(background), dsf_alpha=float(dsf_alpha),
                          dsf_cutoff=float(dsf_cutoff))


def coulomb_atomic_energies(es, graph, positions: torch.Tensor, cell: torch.Tensor,
                            charges: torch.Tensor, exclusions=None) -> torch.Tensor:
    """(n,) eV: the Coulomb energy of every structure of ``graph`` (batched graphs one
    structure at a time), split per atom by ``es``.

    positions (n, 3) Å and cell (G, 3, 3) Å as passed to ``atomic_energies`` (may carry
    strain); charges (n,) e; exclusions: None or a list of G ``(pairs (m, 2), scale (m,))``
    with indices local to each structure.
    """
    _, Exclusions = _electrostatics()
    charges = charges.to(positions.dtype)
    if graph.n_graphs == 1:
        ex = None
        if exclusions is not None and exclusions[0] is not None and len(exclusions[0][0]):
            ex = Exclusions(*exclusions[0])
        return es.atomic_energies(positions, charges, cell[0], graph.pbc[0], exclusions=ex)
    out = []
    counts = graph.atoms_per_graph().tolist()
    start = 0
    for k, n in enumerate(counts):
        sl = slice(start, start + n)
        ex = None
        if exclusions is not None and exclusions[k] is not None and len(exclusions[k][0]):
            ex = Exclusions(*exclusions[k])
        out.append(es.atomic_energies(positions[sl], charges[sl], cell[k], graph.pbc[k], exclusions=ex))
        start += n
    return torch.cat(out)


def fixed_born_charges(charges) -> np.ndarray:
    """(n, 3, 3) e: Z*_i = q_i·I, the Born effective charges of fixed point charges."""
    q = np.asarray(charges, dtype=np.float64).reshape(-1)
    return q[:, None, None] * np.eye(3)[None, :, :]


class CoulombPotential(Potential):
    """Bare point charges from the structure (module docstring).

    Parameters
    ----------
    method : "auto" (Ewald for periodic cells, PME for large ones, direct sum for open
        structures), "ewald", "pme", "direct", "slab" or "dsf" (damped shifted force, an
        approximation) — see :class:`cgkit.electrostatics.Electrostatics`
    accuracy : requested relative accuracy of energy and forces (Ewald/PME parameters are
        chosen from it)
    real_space_cutoff : Å, fix the Ewald real-space cutoff instead of choosing it (None)
    background : False refuses a non-neutral periodic structure; True adds a uniform
        neutralising background
    dsf_alpha : 1/Å, damping of the "dsf" method; dsf_cutoff : Å, its cutoff
    """

    #: Å: the potential has no short-range part (see module docstring)
    short_range_cutoff = 0.0

    def __init__(self, method: str = "auto", accuracy: float = 1e-6,
                 real_space_cutoff: float | None = None, background: bool = False,
                 dsf_alpha: float = 0.2, dsf_cutoff: float = 10.0):
        super().__init__()
        self.cutoff = 1.0  # neighbour graph only; the Ewald sum finds its own pairs
        self.es = make_electrostatics(method, accuracy, real_space_cutoff, background,
                                      dsf_alpha, dsf_cutoff)
        self._config = {"method": method, "accuracy": float(accuracy),
                        "real_space_cutoff": real_space_cutoff, "background": bool(background),
                        "dsf_alpha": float(dsf_alpha), "dsf_cutoff": float(dsf_cutoff)}

    def get_config(self) -> dict:
        return dict(self._config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items())

    def atomic_energies(self, graph, positions, cell):
        if graph.charges is None:
            raise InputError("cgkit:coulomb takes its point charges from the structure's ASE "
                             "initial_charges (atoms.set_initial_charges(...), or an "
                             "'initial_charges' column in extxyz), but this structure has none "
                             "(or all are zero); set the charges (e) of every atom")
        return coulomb_atomic_energies(self.es, graph, positions, cell, graph.charges)

    def charges_of(self, atoms) -> np.ndarray:
        """(n,) e: the structure's initial charges (refused when there are none)."""
        q = np.asarray(atoms.get_initial_charges(), dtype=np.float64) \
            if "initial_charges" in atoms.arrays else np.zeros(len(atoms))
        if not np.any(q != 0):
            raise InputError("cgkit:coulomb needs the structure's initial_charges (e), but it has "
                             "none; set them with atoms.set_initial_charges(...)")
        return q

    def born_effective_charges(self, atoms) -> np.ndarray:
        """(n, 3, 3) e: Z*_i = q_i·I for the initial charges of ``atoms``."""
        return fixed_born_charges(self.charges_of(atoms))
