"""Reading VOTCA force-matching settings (fmatch.xml / settings.xml) and `cgkit fm --votca-settings`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cgkit.errors import InputError
from cgkit.forcematch.votca import read_votca_settings, read_votca_table, votca_options

ROOT = Path(__file__).resolve().parents[2]
HEXANE = ROOT / "case_studies" / "hexane" / "data"

FMATCH = """<cg>
  <fmatch><constrainedLS>false</constrainedLS><frames_per_block>4</frames_per_block></fmatch>
  <bonded><name>bond</name><min>0</min><max>1</max><step>0.001</step>
    <fmatch><min>0.218</min><max>0.28</max><step>0.005</step><out_step>0.001</out_step></fmatch></bonded>
  <bonded><name>angle</name>
    <fmatch><min>1.6</min><max>3.14</max><step>0.05</step><out_step>0.01</out_step></fmatch></bonded>
  <non-bonded><name>A-B</name><type1>A</type1><type2>B</type2>
    <fmatch><min>0.34</min><max>1.0</max><step>0.02</step><out_step>0.01</out_step></fmatch></non-bonded>
  <non-bonded><name>W3</name><type1>A</type1><type2>B</type2><type3>B</type3><threebody>true</threebody>
    <fmatch><min>0.0</min><max>3.1416</max><step>0.05</step><out_step>0.01</out_step>
      <a>0.37</a><sigma>1.0</sigma><gamma>0.12</gamma></fmatch></non-bonded>
</cg>
"""

MAPPING = """<cg_molecule><name>HEX</name><ident>HEX</ident><topology>
  <cg_beads>
    <cg_bead><name>A1</name><type>A</type><mapping>A</mapping><beads>1:X:C</beads></cg_bead>
    <cg_bead><name>B</name><type>B</type><mapping>B</mapping><beads>1:X:C</beads></cg_bead>
    <cg_bead><name>A2</name><type>A</type><mapping>A</mapping><beads>1:X:C</beads></cg_bead>
  </cg_beads>
  <cg_bonded>
    <bond><name>bond</name><beads>A1 B B A2</beads></bond>
    <angle><name>angle</name><beads>A1 B A2</beads></angle>
  </cg_bonded></topology></cg_molecule>
"""


def test_grids_units_names_and_solver_settings(tmp_path):
    f = tmp_path / "fmatch.xml"
    f.write_text(FMATCH)
    st = read_votca_settings(f, interactions=["bond A-B", "angle A-B-A", "pair A-B"])
    assert st.grids["bond A-B"] == pytest.approx((2.18, 2.8, 0.05))  # the <fmatch> block, nm → Å
    lo, hi, step = st.grids["angle A-B-A"]
    assert (lo, hi, step) == pytest.approx((math.degrees(1.6), math.degrees(3.14), math.degrees(0.05)))
    assert st.grids["pair A-B"] == pytest.approx((3.4, 10.0, 0.2))
    assert st.out_grids["pair A-B"] == pytest.approx((3.4, 10.0, 0.1))
    assert st.names == {"bond A-B": "bond", "angle A-B-A": "angle", "pair A-B": "A-B"}
    assert st.frames_per_block == 4 and st.constrained is False
    (tb,) = st.threebody
    assert tb["types"] == ("A", "B", "B") and tb["a"] == pytest.approx(3.7) and tb["gamma"] == pytest.approx(1.2)
    fm_kw, solve_kw = votca_options(st)
    assert fm_kw["outside"] == "extrapolate" and fm_kw["block_size"] == 4 and fm_kw["pair"] is None
    assert solve_kw == {"natural": True, "errors": "blocks", "method": "lstsq", "trim": False}


def test_bonded_names_resolved_from_a_votca_mapping(tmp_path):
    (tmp_path / "fmatch.xml").write_text(FMATCH.replace("<name>bond</name>", "<name>b1</name>"))
    (tmp_path / "map.xml").write_text(MAPPING.replace("<name>bond</name>", "<name>b1</name>"))
    st = read_votca_settings(tmp_path / "fmatch.xml", mapping=tmp_path / "map.xml")
    assert st.names["bond A-B"] == "b1" and "angle A-B-A" in st.grids
    with pytest.raises(InputError, match="mapping file"):  # "b1" says nothing about its kind
        read_votca_settings(tmp_path / "fmatch.xml", interactions=["bond A-B", "bond B-B", "angle A-B-A"])


@pytest.mark.parametrize("text, match", [
    ("<cg><bonded><name>bond</name></bonded></cg>", "<min>"),
    ("<notcg/>", "root element"),
    ("<cg>", "well-formed"),
    ("<cg><non-bonded><name>x</name><type1>A</type1><min>1</min><max>0.5</max><step>0.1</step></non-bonded></cg>",
     "type2"),
    ("<cg><non-bonded><name>x</name><type1>A</type1><type2>A</type2><min>1</min><max>0.5</max>"
     "<step>0.1</step></non-bonded></cg>", "min < max"),
    ("<cg></cg>", "nothing to fit"),
])
def test_bad_settings_are_refused_with_the_reason(tmp_path, text, match):
    f = tmp_path / "s.xml"
    f.write_text(text)
    with pytest.raises(InputError, match=match):
        read_votca_settings(f, interactions=["bond A-B"])


def test_votca_force_table_units(tmp_path):
    p = tmp_path / "A-A.force"
    p.write_text("0.34 964.85332 96.485332 i\n0.35 0 1 i\n")
    x, f, e = read_votca_table(p, "pair")
    assert np.allclose(x, [3.4, 3.5]) and np.allclose(f, [1.0, 0.0]) and np.allclose(e, [0.1, 1 / 964.85332])
    x, f, e = read_votca_table(p, "angle")
    assert np.allclose(x, [0.34, 0.35]) and np.allclose(f, [10.0, 0.0])


def test_cgkit_fm_with_votca_settings(tmp_path):
    from cgkit.cli import main
    f = tmp_path / "fmatch.xml"
    f.write_text(FMATCH.split("<non-bonded><name>W3")[0].replace("<frames_per_block>4<", "<frames_per_block>2<")
                 + "</cg>\n")
    out = tmp_path / "fm"
    rc = main(["fm", "--cg-trajectory", str(HEXANE / "hexane_cg.trr"), "--cg-topology", str(HEXANE / "hexane_cg.psf"),
               "--stop", "4", "--scan-frames", "4", "--votca-settings", str(f), "--votca-conventions",
               "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert {i["interaction"] for i in s["interactions"]} == {"bond A-B", "angle A-B-A", "pair A-B"}
    assert s["grids"]["pair A-B"] == pytest.approx([3.4, 10.0, 0.2])
    assert s["method"] == "lstsq" and s["n_blocks"] == 2
    assert main(["fm", "--cg-trajectory", str(HEXANE / "hexane_cg.trr"), "--cg-topology",
                 str(HEXANE / "hexane_cg.psf"), "--stop", "8", "--votca-conventions", "--out",
                 str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()
