"""VOTCA XML / Martini .map importers, `cgkit map convert`, and checks on VOTCA's real
all-atom configurations (Debian votca-tutorials; skipped with a reason when not installed)."""
from __future__ import annotations

import numpy as np
import pytest

from cgkit.cli import main
from cgkit.mapping import Mapping, load_definition

from .conftest import HEX_RES, MAPPINGS, VOTCA, build_universe

HEX_DIR = VOTCA / "hexane" / "atomistic"
needs_votca = pytest.mark.skipif(not (HEX_DIR / "hexane.xml").exists(),
                                 reason="needs Debian votca-tutorials (apt-get install votca-tutorials)")


def _same_mapping(a: Mapping, b: Mapping):
    assert a.M.shape == b.M.shape and a.M.nnz == b.M.nnz
    assert abs(a.M - b.M).max() < 1e-14 and abs(a.D - b.D).max() < 1e-14
    assert list(a.bead_types) == list(b.bead_types)
    assert list(a.bead_names) == list(b.bead_names)
    np.testing.assert_allclose(a.bead_masses, b.bead_masses)
    for k in ("bonds", "angles", "dihedrals", "exclusions"):
        ta = {tuple(sorted(x)) for x in getattr(a.topology, k).tolist()}
        tb = {tuple(sorted(x)) for x in getattr(b.topology, k).tolist()}
        assert ta == tb, k


@pytest.fixture(scope="module")
def hexane_conf():
    import MDAnalysis as mda
    return mda.Universe(str(HEX_DIR / "conf.gro"))


@needs_votca
def test_votca_hexane_xml_import_equals_shipped_yaml_on_real_conf(hexane_conf):
    a = Mapping.from_yaml(MAPPINGS / "hexane_3bead.yaml", hexane_conf)
    b = Mapping.from_yaml(HEX_DIR / "hexane.xml", hexane_conf)
    assert a.n_atoms == 20000 and a.n_beads == 3000
    _same_mapping(a, b)


@needs_votca
def test_hexane_bead_positions_follow_votca_convention_on_real_conf(hexane_conf):
    """Independent reference: VOTCA's hexane.xml rule written out by hand: bead = weighted mean of
    (C, C, H...) with weights 12 and 1, residue numbers 1..6 within each molecule; the molecule is
    made whole first (gro coordinates are wrapped into the box)."""
    u = hexane_conf
    m = Mapping.from_yaml(MAPPINGS / "hexane_3bead.yaml", u)
    L = u.dimensions[:3].astype(float)
    x = u.atoms.positions.astype(float)
    cg = m.map_positions(x, np.diag(L))
    names = u.atoms.names
    spec = {"A1": ([0, 1], [0, 1]), "B": ([2, 3], [2, 3]), "A2": ([5, 4], [5, 4])}
    ref = np.zeros((1000, 3, 3))
    for mol in range(1000):
        at = np.arange(20 * mol, 20 * mol + 20)
        xm = x[at]
        xm = xm[0] + (xm - xm[0]) - L * np.round((xm - xm[0]) / L)     # make whole
        res = u.atoms[at].resindices - u.atoms[at].resindices[0]
        for k, (bead, (resC, resH)) in enumerate(spec.items()):
            sel = np.isin(res, resC)
            w = np.where(names[at] == "C", 12.0, 1.0) * sel
            ref[mol, k] = (w[:, None] * xm).sum(0) / w.sum()
    d = (cg.reshape(1000, 3, 3) - ref) / L
    np.testing.assert_allclose(d - np.round(d), 0.0, atol=1e-12)
    # VOTCA maps bead B from residues 3,4 (CH2) with 12,12,1,1,1,1 -> 6 atoms
    assert m.M[1].nnz == 6 and m.M[0].nnz == 7


@needs_votca
@pytest.mark.parametrize("system,xml,yaml_name", [
    ("propane", "propane.xml", "propane_3bead"),
    ("methanol", "methanol.xml", "methanol_1bead"),
    ("spce", "water.xml", "spce_water_1bead")])
def test_other_votca_maps_import_and_shipped_maps_cover_real_confs(system, xml, yaml_name):
    import MDAnalysis as mda
    d = VOTCA / system / "atomistic"
    u = mda.Universe(str(d / "conf.gro"))
    imported = Mapping.from_yaml(d / xml, u)
    shipped = Mapping.from_yaml(MAPPINGS / f"{yaml_name}.yaml", u)
    assert imported.n_beads == shipped.n_beads
    assert shipped.check().unmapped.size == 0 and shipped.consistency_error() < 1e-12
    x = u.atoms.positions.astype(float)
    cell = np.diag(u.dimensions[:3].astype(float))
    # VOTCA uses integer masses (12, 16, 1), the shipped maps true masses: beads agree closely
    d = (imported.map_positions(x, cell) - shipped.map_positions(x, cell)) @ np.linalg.inv(cell)
    assert np.abs(d - np.round(d)).max() * cell[0, 0] < 0.01


def test_votca_xml_with_cross_residue_offsets_on_synthetic_hexane(tmp_path):
    u = build_universe([HEX_RES] * 2, seed=3)
    xml = tmp_path / "hex.xml"
    xml.write_text("""<cg_molecule><name>HEX</name><ident>x</ident><topology><cg_beads>
<cg_bead><name>A1</name><type>A</type><mapping>A</mapping>
<beads>1:CHL:C 2:CH2:C 1:CHL:H1 1:CHL:H2 1:CHL:H3 2:CH2:H1 2:CH2:H2</beads></cg_bead>
<cg_bead><name>B</name><type>B</type><mapping>B</mapping>
<beads>3:CH2:C 4:CH2:C 3:CH2:H1 3:CH2:H2 4:CH2:H1 4:CH2:H2</beads></cg_bead>
<cg_bead><name>A2</name><type>A</type><mapping>A</mapping>
<beads>6:CHR:C 5:CH2:C 6:CHR:H1 6:CHR:H2 6:CHR:H3 5:CH2:H1 5:CH2:H2</beads></cg_bead>
</cg_beads><cg_bonded><bond><name>bond</name><beads>A1 B
A2 B</beads></bond><angle><name>angle</name><beads>A1 B A2</beads></angle></cg_bonded></topology>
<maps><map><name>A</name><weights>12 12 1 1 1 1 1</weights></map>
<map><name>B</name><weights>12 12 1 1 1 1</weights></map></maps></cg_molecule>""")
    _same_mapping(Mapping.from_yaml(xml, u), Mapping.from_yaml(MAPPINGS / "hexane_3bead.yaml", u))
    # convert to YAML with the CLI and compile again: same mapping
    out = tmp_path / "hex.yaml"
    assert main(["map", "convert", str(xml), str(out)]) == 0
    _same_mapping(Mapping.from_yaml(out, u), Mapping.from_yaml(xml, u))


def test_martini_map_with_shared_atoms_gives_consistent_force_map(tmp_path):
    u = build_universe([[("MOL", ["C1", "C2", "C3", "C4", "C5"])]] * 2, seed=4)
    mp = tmp_path / "mol.map"
    mp.write_text("""; test molecule
[ molecule ]
MOL
[ martini ]
A B
[ mapping ]
charmm36
[ atoms ]
    1   C1   A A
    2   C2   A
    3   C3   A B     ; shared between A and B
    4   C4   B
    5   C5   B !A
""")
    m = Mapping.from_yaml(mp, u)
    M = m.M.toarray()[:2]
    # centre of geometry with multiplicities: A = (2 C1 + C2 + C3) / 4, B = (C3 + C4 + C5) / 3
    np.testing.assert_allclose(M[0, :5], [0.5, 0.25, 0.25, 0, 0])
    np.testing.assert_allclose(M[1, :5], [0, 0, 1 / 3, 1 / 3, 1 / 3])
    assert m.consistency_error() < 1e-12
    assert m.force_map == "weights"
    out = tmp_path / "mol.yaml"
    assert main(["map", "convert", str(mp), str(out)]) == 0
    _same_mapping(Mapping.from_yaml(out, u), m)
    d = load_definition(out)
    assert d.shared_atoms and d.force_map == "weights"
