"""Small synthetic all-atom topologies (MDAnalysis Universes) for mapping tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
VOTCA = Path("/usr/share/votca/csg-tutorials")
MASS = {"C": 12.011, "H": 1.008, "O": 15.9994}

# hexane: 6 residues, atom names repeat across residues (as in the OPLS-AA VOTCA topology)
HEX_RES = [("CHL", ["C", "H1", "H2", "H3"]), ("CH2", ["C", "H1", "H2"]), ("CH2", ["C", "H1", "H2"]),
           ("CH2", ["C", "H1", "H2"]), ("CH2", ["C", "H1", "H2"]), ("CHR", ["C", "H1", "H2", "H3"])]


def build_universe(molecules, box=None, seed=0, spread=1.2, bonds=False):
    """molecules: list of lists of (resname, [atom names]). Atom positions: a random compact
    cloud per molecule (Å) inside ``box`` (3,) or a 30 Å cube."""
    import MDAnalysis as mda
    rng = np.random.default_rng(seed)
    names, resnames, res_of_atom, seg = [], [], [], []
    r = 0
    mol_of_res = []
    for mi, mol in enumerate(molecules):
        for rn, atoms in mol:
            resnames.append(rn)
            mol_of_res.append(mi)
            for a in atoms:
                names.append(a)
                res_of_atom.append(r)
            r += 1
    n = len(names)
    u = mda.Universe.empty(n, n_residues=r, atom_resindex=res_of_atom, trajectory=True,
                           velocities=True, forces=True)
    u.add_TopologyAttr("names", names)
    u.add_TopologyAttr("resnames", resnames)
    u.add_TopologyAttr("resids", np.arange(1, r + 1))
    u.add_TopologyAttr("masses", [MASS.get(a[0], 12.011) for a in names])
    u.add_TopologyAttr("molnums", mol_of_res)
    box = np.asarray(box if box is not None else [30.0, 30.0, 30.0], float)
    centers = rng.uniform(0, 1, (len(molecules), 3)) * box
    pos = []
    k = 0
    for mi, mol in enumerate(molecules):
        na = sum(len(a) for _, a in mol)
        pos.append(centers[mi] + rng.normal(0, spread, (na, 3)))
        k += na
    u.atoms.positions = np.concatenate(pos)
    u.dimensions = [*box, 90, 90, 90]
    if bonds:
        b = []
        a0 = 0
        for mol in molecules:
            na = sum(len(a) for _, a in mol)
            b += [(a0 + i, a0 + i + 1) for i in range(na - 1)]
            a0 += na
        u.add_TopologyAttr("bonds", b)
    return u


@pytest.fixture
def hexane_universe():
    return build_universe([HEX_RES] * 4, seed=1)


@pytest.fixture
def water_universe():
    return build_universe([[("SOL", ["OW", "HW1", "HW2"])]] * 6, seed=2, spread=0.6)


def pe_molecules(lengths):
    mols = []
    for L in lengths:
        res = [("PEH", ["C1", "C2", "C3", "C4"])] + [("PE", ["C1", "C2", "C3", "C4"])] * (L - 2) + \
              [("PET", ["C1", "C2", "C3", "C4"])]
        mols.append(res)
    return mols


def systems():
    """(shipped mapping file, Universe factory) pairs covering every shipped definition."""
    pep = [("ALA", ["N", "H", "CA", "HA", "CB", "HB1", "HB2", "HB3", "C", "O"]),
           ("GLY", ["N", "H", "CA", "HA1", "HA2", "C", "O"]),
           ("SER", ["N", "H", "CA", "HA", "CB", "HB1", "HB2", "OG", "HG", "C", "O"])]
    return {
        "hexane_3bead": lambda: build_universe([HEX_RES] * 3, seed=3),
        "propane_3bead": lambda: build_universe(
            [[("ppn", ["C1", "C2", "C3"] + [f"H{k}" for k in range(4, 12)])]] * 3, seed=4),
        "methanol_1bead": lambda: build_universe([[("MeO", ["C", "HA", "HB", "HC", "O", "H"])]] * 3, seed=5),
        "methanol_2bead": lambda: build_universe([[("MeO", ["C", "HA", "HB", "HC", "O", "H"])]] * 3, seed=6),
        "spce_water_1bead": lambda: build_universe([[("SOL", ["OW", "HW1", "HW2"])]] * 4, seed=7),
        "polyethylene_ua_4to1": lambda: build_universe(pe_molecules([3, 6]), seed=8, spread=3.0),
        "peptide_ca": lambda: _protein(build_universe([pep, pep], seed=9, spread=3.0, bonds=True)),
        "peptide_cacb": lambda: _protein(build_universe([pep], seed=10, spread=3.0)),
    }


def _protein(u):
    return u
