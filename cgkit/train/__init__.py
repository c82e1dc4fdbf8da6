"""Training of cgkit potentials: datasets from extxyz, losses, the Trainer (``cgkit train``)."""
from .dataset import fit_statistics, graphs_from_atoms, load_structures, split_indices
from .evaluate import Evaluation
from .trainer import DEFAULT_CONFIG, Trainer, evaluate, merge_config

__all__ = ["Trainer", "Evaluation", "DEFAULT_CONFIG", "merge_config", "evaluate", "load_structures",
           "graphs_from_atoms", "split_indices", "fit_statistics"]
