"""Force matching (MS-CG) of coarse-grained potentials.

* :class:`SplineForceMatching` — linear MS-CG with cubic B-spline tables per pair type, bond,
  angle and dihedral type; normal equations accumulated frame by frame, additive across chunks
  (:class:`NormalEquations`), ridge/smoothness regularisation, jackknife error bars.
* :class:`TabulatedPotential` — the fitted tables as a cgkit Potential (MD, ASE, save/load).
* :mod:`cgkit.forcematch.validate` — structural validation (distributions, RDFs, JS divergence).
* :mod:`cgkit.forcematch.ibi` — iterative Boltzmann inversion driven by cgkit CG MD.
* :mod:`cgkit.forcematch.relent` — relative-entropy minimisation (Newton steps on spline
  energy tables, CG averages from cgkit CG MD).

Inputs are plain arrays: CG positions (n_frames, n_beads, 3) Å, mapped forces eV/Å, boxes,
bead type names and a :class:`cgkit.topology.Topology`.
"""
from .mscg import (ForceMatchError, ForceMatchResult, Interaction, NormalEquations,  # noqa: F401
                   SparseSamplingWarning, SplineForceMatching, boltzmann_bonded_tables, suggest_grids)
from .relent import RelativeEntropyMinimisation  # noqa: F401
from .tabulated import Table, TabulatedPotential  # noqa: F401

__all__ = ["SplineForceMatching", "NormalEquations", "ForceMatchResult", "ForceMatchError",
           "SparseSamplingWarning", "Interaction", "Table", "TabulatedPotential", "suggest_grids",
           "boltzmann_bonded_tables", "RelativeEntropyMinimisation"]
