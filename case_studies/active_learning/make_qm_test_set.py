"""Make ethanol_xtb_test.extxyz: an independent GFN2-xTB (tblite) test set for qm_xtb.yaml.

Frames from ASE Langevin MD of ethanol driven by the teacher itself at 300, 600, 900 and
1200 K (0.5 fs steps), 5 frames each, 20 steps apart, after 100 steps of equilibration.
Needs the tblite package. Run: python make_qm_test_set.py
"""
from pathlib import Path

import numpy as np
from ase import units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin
from tblite.ase import TBLite

from cgkit.sampling import thermalize

HERE = Path(__file__).resolve().parent


def main():
    out = []
    for k, T in enumerate((300.0, 600.0, 900.0, 1200.0)):
        a = molecule("CH3CH2OH")
        a.center(vacuum=6.0)
        a.calc = TBLite(method="GFN2-xTB", verbosity=0)
        thermalize(a, T, np.random.default_rng(10 + k))
        md = Langevin(a, 0.5 * units.fs, temperature_K=T, friction=0.02 / units.fs, fixcm=True,
                      rng=np.random.default_rng(20 + k))
        md.run(100)
        for _ in range(5):
            md.run(20)
            b = a.copy()
            b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
            out.append(b)
    write(str(HERE / "ethanol_xtb_test.extxyz"), out, format="extxyz")
    print(f"wrote {HERE / 'ethanol_xtb_test.extxyz'} ({len(out)} frames)")


if __name__ == "__main__":
    main()
