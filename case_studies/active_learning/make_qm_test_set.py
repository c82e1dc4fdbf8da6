"""Make qm_xtb_test.extxyz: an independent GFN2-xTB (tblite) test set for qm_xtb.yaml.

For each start structure of qm_start.extxyz (ethanol, water dimer, ethanol-water complex; made by
qm_make_structures.py): ASE Langevin MD driven by the teacher itself at 300, 600, 900 and 1200 K
(0.5 fs steps, friction 0.02/fs, centre of mass fixed), 100 steps of equilibration, then 5 frames
20 steps apart: 20 frames per system, 60 in all. ``info['regime']`` is the system,
``info['temperature_K']`` the temperature. The MD seeds (100 + 10·system + k) differ from every
seed `cgkit learn` uses, and the temperatures 600 and 900 K are not among the exploration
temperatures.

``--start qm_molset_start.extxyz --out qm_molset_test.extxyz`` makes the test set of
qm_xtb_molset.yaml the same way (19 molecules, 380 frames); ``info['regime']`` is then the
molecule's chemical class (``info['class']`` of the start structure) and ``info['system']`` the
molecule. Needs the tblite package. Run: python make_qm_test_set.py
"""
import argparse
from pathlib import Path

import numpy as np
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.md.langevin import Langevin
from tblite.ase import TBLite

from cgkit.sampling import thermalize

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="qm_start.extxyz", help="start structures (in this folder)")
    ap.add_argument("--out", default="qm_xtb_test.extxyz", help="test set to write (in this folder)")
    args = ap.parse_args()
    out = []
    for s, start in enumerate(read(str(HERE / args.start), ":")):
        for k, T in enumerate((300.0, 600.0, 900.0, 1200.0)):
            a = start.copy()
            a.calc = TBLite(method="GFN2-xTB", verbosity=0)
            thermalize(a, T, np.random.default_rng(100 + 10 * s + k))
            md = Langevin(a, 0.5 * units.fs, temperature_K=T, friction=0.02 / units.fs, fixcm=True,
                          rng=np.random.default_rng(200 + 10 * s + k))
            md.run(100)
            for _ in range(5):
                md.run(20)
                b = a.copy()
                b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
                b.info = {"regime": start.info.get("class", start.info["system"]), "temperature_K": T}
                if "class" in start.info:
                    b.info["system"] = start.info["system"]
                out.append(b)
    write(str(HERE / args.out), out, format="extxyz")
    print(f"wrote {HERE / args.out} ({len(out)} frames)")


if __name__ == "__main__":
    main()
