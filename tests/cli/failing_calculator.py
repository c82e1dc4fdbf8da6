"""An ASE calculator whose SCF never converges (for the CLI's error handling)."""
from ase.calculators.calculator import Calculator, CalculationFailed


class NeverConverges(Calculator):
    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        raise CalculationFailed("SCF not converged in 250 cycles")
