"""Active learning: explore where a committee is unsure, select diverse configurations, label
them with a teacher on one machine or many.

* :mod:`cgkit.learn.exploration` — uncertainty-aware MD with trust levels (DP-GEN style: below
  ``lo`` accepted, between ``lo`` and ``hi`` selected as candidates, above ``hi`` stopped as
  unphysical);
* :mod:`cgkit.learn.selection` — invariant structure descriptors, largest-σ selection with a
  descriptor exclusion radius (the default) and farthest-point sampling, so that one event is not
  labelled many times;
* :mod:`cgkit.learn.labelling` — teacher calls through a serial loop, a local process pool or
  Dask (``dask.distributed``, and ``dask-jobqueue`` clusters for SLURM/PBS), with a content-
  addressed label store that makes labelling resumable after a kill.
"""
from .exploration import ExplorationResult, TrustLevels, apply_strain, explore, in_plane_strain
from .labelling import Labeller, LabelStore, frame_key
from .selection import farthest_point_sampling, max_sigma_diverse, structure_descriptors

__all__ = ["ExplorationResult", "TrustLevels", "explore", "apply_strain", "in_plane_strain", "Labeller", "LabelStore", "frame_key",
           "farthest_point_sampling", "max_sigma_diverse", "structure_descriptors"]
