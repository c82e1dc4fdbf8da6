"""cgkit — multiscale simulation of matter.

Units inside cgkit: eV, Å, fs, amu, e; stress eV/Å³ (GPa at user interfaces); THz.

The main objects are available from the top level and imported on first use (as in ASE and
e3nn), so ``import cgkit`` stays cheap (no torch, e3nn, phonopy or MDAnalysis until a name
that needs them is touched)::

    import cgkit
    sw = cgkit.load_potential("cgkit:sw")
    calc = cgkit.CgkitCalculator(sw)

=============================  ===============================================================
structures and potentials      AtomicGraph, batch_graphs, Topology, Potential, SumPotential,
                               load_potential, load_model, load_calculator, CgkitCalculator,
                               EnsemblePotential, EnsembleCalculator
classical potentials           LennardJones, StillingerWeber, TraPPEUA
neural potentials, training    ENNP, Trainer
coarse graining                Mapping, SplineForceMatching, TabulatedPotential, hybrid_fit,
                               IterativeBoltzmannInversion, RelativeEntropyMinimisation,
                               StructuralValidation
dynamics                       MolecularDynamics
properties                     Phonons, ElasticConstants, StableTimestep, PolymerAnalysis
results and outputs            Results, Analysis, OutputFolder, Distribution, js_divergence
errors                         CgkitError, InputError, StructureError, NotSupportedError
=============================  ===============================================================
"""
from __future__ import annotations

import importlib

from .errors import CgkitError, InputError, NotSupportedError, StructureError  # noqa: F401
from .version import __version__  # noqa: F401

#: public name → module it lives in (imported on first access)
_LAZY = {
    # structures and potentials
    "AtomicGraph": "cgkit.data",
    "batch_graphs": "cgkit.data",
    "Topology": "cgkit.topology",
    "Potential": "cgkit.potential",
    "SumPotential": "cgkit.potential",
    "load_potential": "cgkit.io_potential",
    "load_model": "cgkit.io_potential",
    "load_calculator": "cgkit.io_potential",
    "CgkitCalculator": "cgkit.calculator",
    "EnsemblePotential": "cgkit.ensemble",
    "EnsembleCalculator": "cgkit.ensemble",
    # classical potentials
    "LennardJones": "cgkit.potentials.lennard_jones",
    "StillingerWeber": "cgkit.potentials.stillinger_weber",
    "TraPPEUA": "cgkit.potentials.trappe",
    # neural potentials, training
    "ENNP": "cgkit.nn",
    "Trainer": "cgkit.train",
    # coarse graining
    "Mapping": "cgkit.mapping",
    "SplineForceMatching": "cgkit.forcematch",
    "TabulatedPotential": "cgkit.forcematch",
    "hybrid_fit": "cgkit.forcematch",
    "IterativeBoltzmannInversion": "cgkit.forcematch.ibi",
    "RelativeEntropyMinimisation": "cgkit.forcematch",
    "StructuralValidation": "cgkit.forcematch.validate",
    # dynamics
    "MolecularDynamics": "cgkit.md",
    # properties
    "Phonons": "cgkit.properties.phonons",
    "ElasticConstants": "cgkit.properties.elastic",
    "StableTimestep": "cgkit.properties.timestep",
    "PolymerAnalysis": "cgkit.properties.polymer",
    # results and outputs
    "Results": "cgkit.results",
    "Analysis": "cgkit.results",
    "OutputFolder": "cgkit.outputs",
    "Distribution": "cgkit.stats",
    "js_divergence": "cgkit.stats",
}

__all__ = ["__version__", "CgkitError", "InputError", "StructureError", "NotSupportedError",
           *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cgkit' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
