"""Classical potentials written in torch (teachers, CG priors, test oracles).

Each is a :class:`cgkit.potential.Potential`: forces, stress and Hessians come from autograd.
"""
from .lennard_jones import LennardJones, polynomial_switch
from .stillinger_weber import StillingerWeber, triplets_from_edges
from .coulomb import CoulombPotential
from .nacl import NaClBMH
from .spcfw import SPCFw

__all__ = ["LennardJones", "StillingerWeber", "polynomial_switch", "triplets_from_edges",
           "CoulombPotential", "NaClBMH", "SPCFw"]
