"""E(3)-equivariant neural-network potentials (ENNP) on e3nn: :class:`ENNP`, presets."""
from .model import ENNP, PRESETS, hidden_irreps
from .radial import BesselBasis, PolynomialEnvelope

__all__ = ["ENNP", "PRESETS", "hidden_irreps", "BesselBasis", "PolynomialEnvelope"]
