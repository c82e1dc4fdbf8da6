"""Force matching (MS-CG) and iterative refinement of coarse-grained potentials.

* :class:`SplineForceMatching` — linear MS-CG with cubic B-spline tables per pair type, bond,
  angle and dihedral type; normal equations streamed frame by frame (:meth:`~SplineForceMatching.accumulate`
  per chunk, then :meth:`~SplineForceMatching.solve`), additive across chunks
  (:class:`NormalEquations`), ridge/smoothness regularisation, jackknife error bars.
* :func:`hybrid_fit` — the hybrid recipe (Boltzmann-inverted bonds/angles → force matching of
  the rest → optional IBI of the bonded terms) that ``cgkit fm --bonded``, the demo and the case
  studies call.
* :func:`boltzmann_bonded_tables` / :mod:`cgkit.forcematch.boltzmann` — the one Boltzmann inversion.
* :class:`Interaction` — an interaction type (kind, bead types) as an immutable value.
* :class:`TabulatedPotential` — the fitted tables as a cgkit Potential (MD, ASE, save/load).
* :mod:`cgkit.forcematch.validate` — structural validation (distributions, RDFs, JS divergence).
* :class:`IterativeBoltzmannInversion` — IBI driven by cgkit CG MD.
* :class:`RelativeEntropyMinimisation` — Newton steps on spline energy tables, CG averages
  from cgkit CG MD.

Inputs are plain arrays: CG positions (n_frames, n_beads, 3) Å, mapped forces eV/Å, boxes,
bead type names and a :class:`cgkit.topology.Topology`.
"""
from .boltzmann import (ForceMatchError, SparseSamplingWarning, boltzmann_bonded_tables,  # noqa: F401
                        boltzmann_table)
from .hybrid import HybridFit, IBISettings, hybrid_fit  # noqa: F401
from .ibi import IBI_DEFAULTS, IterativeBoltzmannInversion  # noqa: F401
from .imc import InverseMonteCarlo, imc_step  # noqa: F401
from .interaction import Grid, Interaction, Term  # noqa: F401
from .mscg import ForceMatchResult, SplineForceMatching, suggest_grids  # noqa: F401
from .normal_equations import NormalEquations  # noqa: F401
from .pressure_match import PressureTarget  # noqa: F401
from .relent import RelativeEntropyMinimisation  # noqa: F401
from .tabulated import Table, TabulatedPotential  # noqa: F401
from .threebody import ThreeBody, ThreeBodyPotential  # noqa: F401
from .validate import StructuralValidation  # noqa: F401
from .votca import read_votca_settings, votca_options  # noqa: F401

__all__ = ["SplineForceMatching", "PressureTarget", "NormalEquations", "ForceMatchResult", "ForceMatchError",
           "SparseSamplingWarning", "Interaction", "Grid", "Term", "Table", "TabulatedPotential",
           "suggest_grids", "boltzmann_bonded_tables", "boltzmann_table", "hybrid_fit", "HybridFit",
           "IBISettings", "IBI_DEFAULTS", "IterativeBoltzmannInversion", "RelativeEntropyMinimisation",
           "StructuralValidation", "ThreeBody", "ThreeBodyPotential", "read_votca_settings", "votca_options",
           "InverseMonteCarlo", "imc_step"]
