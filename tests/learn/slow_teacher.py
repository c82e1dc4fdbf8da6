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
