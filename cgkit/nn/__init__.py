"""E(3)-equivariant neural-network potentials (ENNP) on e3nn: :class:`ENNP`, presets;
:class:`LongRangeENNP` (local ENNP + Coulomb of learned charges)."""
from .longrange import LongRangeENNP
from .model import ENNP, PRESETS, hidden_irreps
from .radial import BesselBasis, PolynomialEnvelope

__all__ = ["ENNP", "LongRangeENNP", "PRESETS", "hidden_irreps", "BesselBasis", "PolynomialEnvelope"]
