"""Bad mapping definitions fail with a MappingError naming file, line and reason; fuzzing
never yields anything but a valid Mapping or a cgkit error."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgkit.errors import CgkitError, MappingError
from cgkit.mapping import Mapping, load_definition

from .conftest import HEX_RES, build_universe

GOOD = """version: 1
molecules:
  - name: W
    resname: SOL
    beads:
      - name: W
        type: W
        atoms: [OW, HW1, HW2]
        weights: mass
"""


@pytest.fixture
def water():
    return build_universe([[("SOL", ["OW", "HW1", "HW2"])]] * 3, seed=1)


def _write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _fails(tmp_path, text, topo, line, *words):
    p = _write(tmp_path, text)
    with pytest.raises(MappingError) as exc:
        Mapping.from_yaml(p, topo)
    msg = str(exc.value)
    assert str(p) in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg
        assert exc.value.line == line
    for w in words:
        assert w in msg, msg
    return exc.value


def test_good_definition_compiles(tmp_path, water):
    m = Mapping.from_yaml(_write(tmp_path, GOOD), water)
    assert m.n_beads == 3


def test_unknown_atom_name_names_bead_line_and_available_atoms(tmp_path, water):
    e = _fails(tmp_path, GOOD.replace("HW2]", "HW9]"), water, 6, "unknown atom name 'HW9'", "HW1")
    assert e.field.endswith("atoms")


def test_bead_with_no_atoms(tmp_path, water):
    _fails(tmp_path, GOOD.replace("[OW, HW1, HW2]", "[]"), water, 8, "has no atoms")


@pytest.mark.parametrize("weights", ["[0, 0, 0]", "[1, -1, 0]"])
def test_zero_or_negative_weights(tmp_path, water, weights):
    _fails(tmp_path, GOOD.replace("weights: mass", f"weights: {weights}"), water, 9, "weights")


def test_topology_bond_naming_missing_bead(tmp_path, water):
    text = GOOD + "    bonds: [[W, X]]\n"
    _fails(tmp_path, text, water, 10, "'X'", "bonds")


def test_atoms_in_two_beads_need_opt_in(tmp_path, water):
    text = GOOD.replace("[OW, HW1, HW2]", "[OW, HW1]") + "      - {name: H, type: H, atoms: [HW1, HW2]}\n"
    _fails(tmp_path, text, water, 10, "shared_atoms: true", "'W'", "'H'")
    ok = text.replace("version: 1\n", "version: 1\noptions: {shared_atoms: true}\n"
                      "force_map: weights\n").replace(
        "weights: mass\n", "weights: mass\n        force_weights: [1, 0]\n").replace(
        "atoms: [HW1, HW2]}", "atoms: [HW1, HW2], force_weights: [0, 1]}")
    m = Mapping.from_yaml(_write(tmp_path, ok), water)
    np.testing.assert_allclose((m.M @ m.D.T).toarray(), np.eye(m.n_beads), atol=1e-12)


def test_unmapped_atoms_error_or_warning_by_option(tmp_path, water):
    text = GOOD.replace("[OW, HW1, HW2]", "[OW, HW1]").replace("weights: mass", "weights: geometry")
    _fails(tmp_path, text, water, None, "belong to no bead", "unmapped_atoms")
    p = _write(tmp_path, text.replace("version: 1\n", "version: 1\noptions: {unmapped_atoms: warn}\n"))
    with pytest.warns(UserWarning, match="belong to no bead"):
        Mapping.from_yaml(p, water)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Mapping.from_yaml(p, water, unmapped="ignore")


def test_yaml_syntax_error_has_line(tmp_path, water):
    _fails(tmp_path, GOOD.replace("atoms: [OW, HW1, HW2]", "atoms: [OW, HW1, HW2"), water, None,
           "YAML syntax error")


@pytest.mark.parametrize("version,needle", [("2", "unsupported version"), ("'1'", "unsupported version")])
def test_wrong_version(tmp_path, water, version, needle):
    _fails(tmp_path, GOOD.replace("version: 1", f"version: {version}"), water, 1, needle)


def test_missing_version(tmp_path, water):
    _fails(tmp_path, GOOD.replace("version: 1\n", ""), water, None, "missing 'version'")


def test_unknown_key_and_residue_offset_name_checks(tmp_path, water):
    _fails(tmp_path, GOOD.replace("weights: mass", "weights: mass\n        colour: red"), water, 10,
           "unknown key 'colour'")
    u = build_universe([HEX_RES], seed=0)
    text = """version: 1
molecules:
  - name: HEX
    residues: [CHL, CH2, CH2, CH2, CH2, CHR]
    beads:
      - {name: A, atoms: [0:C, 1:CHR:C]}
      - {name: B, atoms: [2:C, 3:C, 4:C, 5:C]}
"""
    _fails(tmp_path, text, u, 6, "expects residue CHR")


def test_no_template_matches(tmp_path, water):
    _fails(tmp_path, GOOD.replace("resname: SOL", "resname: HOH"), water, None, "no template matches")


def test_votca_and_martini_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<cg_molecule>\n<name>X</name>\n<topology><cg_beads>\n<cg_bead><name>A</name>"
                   "<type>A</type><mapping>M</mapping><beads>1:R:C</beads></cg_bead>\n"
                   "</cg_beads></topology>\n<maps><map><name>M</name><weights>1 2</weights></map></maps>\n"
                   "</cg_molecule>\n")
    with pytest.raises(MappingError, match=r"bad.xml, line 6.*2 weights but bead 'A' has 1 atoms"):
        load_definition(bad)
    broken = tmp_path / "broken.xml"
    broken.write_text("<cg_molecule>\n<name>X</name>\n</cg_mol>\n")
    with pytest.raises(MappingError, match="line 3"):
        load_definition(broken)
    mp = tmp_path / "x.map"
    mp.write_text("[ molecule ]\nX\n[ martini ]\nA\n[ atoms ]\n 1 C1 B\n")
    with pytest.raises(MappingError, match=r"x.map, line 6.*'B'"):
        load_definition(mp)


# ---------------------------------------------------------------------------- fuzzing
_names = st.sampled_from(["OW", "HW1", "HW2", "HW9", "C", "0:OW", "1:OW", "0:SOL:HW1", 0, 1, 5, -1,
                          "a:b:c:d", "", None, 3.5, True])
_weights = st.one_of(st.sampled_from(["mass", "geometry", "bogus", None]),
                     st.lists(st.one_of(st.floats(-2, 5), st.just(float("nan")), st.integers(-1, 3)), max_size=4),
                     st.fixed_dictionaries({"atom": _names}))
_bead = st.fixed_dictionaries(
    {"name": st.sampled_from(["W", "A", "B", "", "x:y", 7]),
     "atoms": st.one_of(st.lists(_names, max_size=4), st.none(), st.just("OW"))},
    optional={"type": st.sampled_from(["W", "A", 3]), "weights": _weights,
              "mass": st.one_of(st.floats(-1, 20), st.just("heavy")),
              "force_weights": st.lists(st.floats(-1, 2), max_size=4)})
_mol = st.fixed_dictionaries(
    {"name": st.sampled_from(["W", "M", ""]), "beads": st.lists(_bead, max_size=3)},
    optional={"resname": st.sampled_from(["SOL", "HOH", ["SOL", "X"], 5]),
              "residues": st.lists(st.sampled_from(["SOL", "X"]), max_size=3),
              "selection": st.sampled_from(["resname SOL", "name OW", "bogus((", "all"]),
              "bonds": st.lists(st.lists(st.sampled_from(["W", "A", "+1:W", "-1:A", "Q"]),
                                         max_size=3), max_size=2),
              "exclusions": st.sampled_from(["bonded", "none", 2, -1, "all"])})
_doc = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2, "1", None]), "molecules": st.lists(_mol, max_size=2)},
    optional={"force_map": st.sampled_from(["basic", "weights", "optimized", "magic",
                                            {"method": "optimized", "support": "bead"}]),
              "options": st.fixed_dictionaries({}, optional={
                  "shared_atoms": st.sampled_from([True, False, "yes"]),
                  "unmapped_atoms": st.sampled_from(["error", "warn", "ignore", "maybe"]),
                  "bead_masses": st.sampled_from(["sum", "noid", "x"])})})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_doc, mangle=st.integers(0, 3))
def test_fuzz_random_yaml_gives_valid_mapping_or_cgkit_error(tmp_path, water, doc, mangle):
    text = yaml.safe_dump(doc, sort_keys=False)
    if mangle == 1:
        text = text[: len(text) // 2]          # truncated file
    elif mangle == 2:
        text = text.replace(":", "", 1)         # broken syntax
    p = tmp_path / "fuzz.yaml"
    p.write_text(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = Mapping.from_yaml(p, water)
    except CgkitError:
        return
    # a valid mapping: rows sum to one, consistent force map
    np.testing.assert_allclose(np.asarray(m.M.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert m.consistency_error() < 1e-8
