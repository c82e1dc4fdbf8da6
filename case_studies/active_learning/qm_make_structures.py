"""Make qm_start.extxyz (qm_xtb.yaml) or qm_molset_start.extxyz (qm_xtb_molset.yaml): exploration
starting points relaxed with GFN2-xTB.

Three C/H/O systems of different difficulty for an aqueous-ethanol potential (open boundaries,
6 Å of vacuum): the ethanol molecule (9 atoms, intramolecular only), the water dimer (6 atoms,
one O-H...O hydrogen bond) and an ethanol-water complex (12 atoms, water donating a hydrogen bond
to the ethanol oxygen). Each is relaxed with GFN2-xTB (tblite, ASE BFGS, fmax 0.01 eV/Å);
``info['system']`` names it.

``--set molset``: MOLSET, 19 closed-shell C/H/O molecules of ASE's G2 set spanning the chemistry a
general organic C/H/O potential meets (alkanes, unsaturated and aromatic hydrocarbons, alcohols
and ethers with a strained ring, carbonyls with a ketene, acids and esters), relaxed the same
way; ``info['class']`` is the chemical class (the test set's regime).

Needs the tblite package. Run: python qm_make_structures.py [--set molset]
"""
import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.collections import s22
from ase.io import write
from ase.optimize import BFGS
from tblite.ase import TBLite

HERE = Path(__file__).resolve().parent


def ethanol_water() -> Atoms:
    """Ethanol with a water molecule whose H points at the ethanol O (O...O 2.9 Å)."""
    e = molecule("CH3CH2OH")
    o = e.positions[[s == "O" for s in e.get_chemical_symbols()].index(True)]
    centre = e.positions.mean(0)
    u = o - centre
    u /= np.linalg.norm(u)
    perp = np.cross(u, [0.0, 0.0, 1.0])
    if np.linalg.norm(perp) < 0.1:
        perp = np.cross(u, [0.0, 1.0, 0.0])
    perp /= np.linalg.norm(perp)
    ow = o + 2.9 * (0.6 * u + 0.8 * perp) / np.linalg.norm(0.6 * u + 0.8 * perp)
    d = (o - ow) / np.linalg.norm(o - ow)
    h1 = ow + 0.97 * d                                   # donor H towards the ethanol O
    side = np.cross(d, u)
    side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-6 else perp
    h2 = ow + 0.97 * (np.cos(np.radians(104.5)) * d + np.sin(np.radians(104.5)) * side)
    return e + Atoms("OH2", positions=[ow, h1, h2])


# (G2 name, chemical class): five alkanes, so that much of a pool drawn uniformly over the set is
# chemically redundant, as it is in any broad exploration
MOLSET = [("CH4", "alkane"), ("C2H6", "alkane"), ("C3H8", "alkane"), ("trans-butane", "alkane"),
          ("isobutane", "alkane"), ("C2H4", "unsaturated"), ("C2H2", "unsaturated"), ("C6H6", "unsaturated"),
          ("CH3OH", "alcohol_ether"), ("CH3CH2OH", "alcohol_ether"), ("CH3OCH3", "alcohol_ether"),
          ("CH2OCH2", "alcohol_ether"), ("H2CO", "carbonyl"), ("CH3CHO", "carbonyl"), ("CH3COCH3", "carbonyl"),
          ("H2CCO", "carbonyl"), ("HCOOH", "acid_ester"), ("CH3COOH", "acid_ester"), ("HCOOCH3", "acid_ester")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=["aqueous_ethanol", "molset"], default="aqueous_ethanol")
    args = ap.parse_args()
    if args.set == "molset":
        systems = [(name, molecule(name), cls) for name, cls in MOLSET]
        path = HERE / "qm_molset_start.extxyz"
    else:
        systems = [("ethanol", molecule("CH3CH2OH"), None), ("water_dimer", s22["Water_dimer"], None),
                   ("ethanol_water", ethanol_water(), None)]
        path = HERE / "qm_start.extxyz"
    out = []
    for name, a, cls in systems:
        a = a.copy()
        a.center(vacuum=6.0)
        a.pbc = False
        a.calc = TBLite(method="GFN2-xTB", verbosity=0)
        BFGS(a, logfile=None).run(fmax=0.01, steps=500)
        e = a.get_potential_energy()
        b = a.copy()
        b.calc = None
        b.info["system"] = name
        if cls is not None:
            b.info["class"] = cls
        out.append(b)
        print(f"{name}: {len(a)} atoms, E = {e:.4f} eV after relaxation")
    write(str(path), out, format="extxyz")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
