"""A teacher for resume tests: ASE's EMT, slowed down so that a run can be killed mid-way."""
import time

from ase.calculators.emt import EMT


class SlowEMT(EMT):
    def __init__(self, delay=0.3, **kwargs):
        super().__init__(**kwargs)
        self.delay = float(delay)

    def calculate(self, *args, **kwargs):
        time.sleep(self.delay)
        super().calculate(*args, **kwargs)


class NaNForces(EMT):
    """A broken teacher: finite energy, NaN forces (a diverged SCF that did not raise)."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = self.results["forces"] * float("nan")
