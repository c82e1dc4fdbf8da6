"""Make cu_test.extxyz: an independent labelled test set for the EMT copper case study.

Frames from ASE Langevin MD with the teacher itself (EMT) — never from the committee's own
exploration — over the regimes the loop is meant to cover: fcc bulk at 300/900 K, bulk under
±3 % strain, a (111) slab, a vacancy, and a liquid (1800 K). Run: python make_test_set.py
"""
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin

from cgkit.sampling import thermalize

HERE = Path(__file__).resolve().parent


def frames(atoms, T, n, seed, every=40):
    a = atoms.copy()
    a.calc = EMT()
    thermalize(a, T, np.random.default_rng(seed))
    md = Langevin(a, 2 * units.fs, temperature_K=T, friction=0.02 / units.fs, fixcm=False,
                  rng=np.random.default_rng(seed + 1))
    md.run(200)
    out = []
    for _ in range(n):
        md.run(every)
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces(),
                                       **({"stress": a.get_stress()} if a.pbc.all() else {}))
        out.append(b)
    return out


def main():
    fcc = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 2, 2))
    vac = fcc.copy()
    del vac[0]
    strained = fcc.copy()
    strained.set_cell(fcc.cell.array * 1.03, scale_atoms=True)
    squeezed = fcc.copy()
    squeezed.set_cell(fcc.cell.array * 0.97, scale_atoms=True)
    slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0)
    test = []
    test += frames(fcc, 300, 6, 100)
    test += frames(fcc, 900, 6, 200)
    test += frames(strained, 600, 4, 300)
    test += frames(squeezed, 600, 4, 400)
    test += frames(slab, 600, 6, 500)
    test += frames(vac, 600, 6, 600)
    test += frames(fcc, 1800, 8, 700)
    write(str(HERE / "cu_test.extxyz"), test, format="extxyz")
    print(f"wrote {HERE / 'cu_test.extxyz'} ({len(test)} frames)")


if __name__ == "__main__":
    main()
