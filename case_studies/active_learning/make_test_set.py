"""Make cu_test.extxyz (EMT copper) or si_test.extxyz (Stillinger-Weber silicon, ``--system si``):
independent labelled test sets for the classical-teacher case studies.

Frames from ASE Langevin MD with the teacher itself — never from the committee's own
exploration — over the regimes the loop is meant to cover, balanced, 10 frames each:

* copper (EMT, 2 fs): crystal (fcc bulk at 300/900 K and under ±3 % strain), a vacancy
  (600/900 K), a (111) slab (300/900 K) and a liquid (melted at 3000 K, then 1800 K);
* silicon (``cgkit:sw``, 1 fs): crystal (64-atom diamond cell at 300/1000 K and under ±3 %
  strain), a vacancy (600/1000 K), a (111) slab (300/1000 K) and a liquid (melted at 3500 K,
  then 2000 K: SW silicon melts near 1690 K).

``info['regime']`` names each frame's regime.
Run: python make_test_set.py [--system si]
"""
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk, diamond111, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin

from cgkit.sampling import thermalize

HERE = Path(__file__).resolve().parent


def frames(atoms, T, n, seed, every=40, regime="", melt_K=None, calc=EMT, dt_fs=2.0):
    a = atoms.copy()
    a.calc = calc()
    if melt_K:
        thermalize(a, melt_K, np.random.default_rng(seed + 2))
        Langevin(a, dt_fs * units.fs, temperature_K=melt_K, friction=0.02 / units.fs, fixcm=False,
                 rng=np.random.default_rng(seed + 3)).run(1000)
    else:
        thermalize(a, T, np.random.default_rng(seed))
    md = Langevin(a, dt_fs * units.fs, temperature_K=T, friction=0.02 / units.fs, fixcm=False,
                  rng=np.random.default_rng(seed + 1))
    md.run(200)
    out = []
    for _ in range(n):
        md.run(every)
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces(),
                                       **({"stress": a.get_stress()} if a.pbc.all() else {}))
        b.info["regime"] = regime
        out.append(b)
    return out


def regime_frames(cell, slab, hot_K, liquid_K, melt_K, **kw):
    """The 40 test frames of one material: 10 crystal (``cell`` at 300 K and ``hot_K``, and at
    600 K under +3 % and -3 % strain), 10 vacancy (600 K and ``hot_K``), 10 surface (``slab`` at
    300 K and ``hot_K``) and 10 liquid (``cell`` melted at ``melt_K``, sampled at ``liquid_K``)."""
    vac = cell.copy()
    del vac[0]
    strained = cell.copy()
    strained.set_cell(cell.cell.array * 1.03, scale_atoms=True)
    squeezed = cell.copy()
    squeezed.set_cell(cell.cell.array * 0.97, scale_atoms=True)
    test = []
    test += frames(cell, 300, 3, 100, regime="crystal", **kw)
    test += frames(cell, hot_K, 3, 200, regime="crystal", **kw)
    test += frames(strained, 600, 2, 300, regime="crystal", **kw)
    test += frames(squeezed, 600, 2, 400, regime="crystal", **kw)
    test += frames(vac, 600, 5, 600, regime="vacancy", **kw)
    test += frames(vac, hot_K, 5, 650, regime="vacancy", **kw)
    test += frames(slab, 300, 5, 500, regime="surface", **kw)
    test += frames(slab, hot_K, 5, 550, regime="surface", **kw)
    test += frames(cell, liquid_K, 10, 700, regime="liquid", melt_K=melt_K, **kw)
    return test


def copper():
    fcc = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 2, 2))
    slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0)
    return "cu_test.extxyz", regime_frames(fcc, slab, 900, 1800, 3000)


def silicon():
    from cgkit.io_potential import load_calculator

    def sw():
        return load_calculator("cgkit:sw")
    dia = bulk("Si", "diamond", 5.431, cubic=True).repeat((2, 2, 2))
    slab = diamond111("Si", (2, 2, 4), a=5.431, vacuum=6.0)
    return "si_test.extxyz", regime_frames(dia, slab, 1000, 2000, 3500, calc=sw, dt_fs=1.0, every=60)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["cu", "si"], default="cu")
    name, test = {"cu": copper, "si": silicon}[ap.parse_args().system]()
    write(str(HERE / name), test, format="extxyz")
    print(f"wrote {HERE / name} ({len(test)} frames)")


if __name__ == "__main__":
    main()
