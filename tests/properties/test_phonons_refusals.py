"""Phonons: supercells narrower than twice the interaction reach are refused (issue 13.2),
tracebacks become cgkit errors and outputs are checked before the computation (issue 13.9).

The criterion: every perpendicular width of the supercell ≥ 2 × reach (cutoff; n_layers ×
cutoff for a message-passing ENNP). Tested against larger supercells along the whole band path,
where incommensurate q-points expose folded force constants."""
import json
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from cgkit.errors import CgkitError, NotSupportedError, StructureError
from cgkit.jsonutil import loads_strict
from cgkit.properties.phonons import (Phonons, SmallSupercellWarning, SupercellTooSmallError,
                                      check_supercell, interaction_reach)

SW_A = 5.431
KW = dict(mesh=(2, 2, 2), band_npoints=11, progress=False)


@pytest.fixture(scope="module")
def sw():
    from cgkit.potentials.stillinger_weber import StillingerWeber
    return StillingerWeber().to(torch.float64)


def _flat(ph):
    return np.concatenate([np.asarray(f) for f in ph.results.band["frequencies"]])


def test_primitive_si_1x1x1_is_refused_naming_the_smallest_supercell(sw):
    with pytest.raises(SupercellTooSmallError, match=r"3 3 3 \(54 atoms\)") as exc:
        Phonons(bulk("Si", "diamond", SW_A), sw, supercell=(1, 1, 1), **KW).run()
    assert "7.54" in str(exc.value) and "--allow-small-supercell" in str(exc.value)
    with pytest.raises(SupercellTooSmallError):
        Phonons(bulk("Si", "diamond", SW_A), sw, supercell=(2, 2, 2), **KW).run()


def test_criterion_gives_the_bands_of_a_larger_supercell(sw):
    prim = bulk("Si", "diamond", SW_A)
    ok = Phonons(prim, sw, supercell=(3, 3, 3), **KW).run()     # the smallest that fits
    big = Phonons(prim, sw, supercell=(5, 5, 5), **KW).run()
    assert ok.results.supercell_check["ok"] and ok.results.warnings == []
    assert np.abs(_flat(ok) - _flat(big)).max() < 0.05        # THz, every q on the path
    x3 = np.sort(ok.results.labels_frequencies["X"])
    assert np.allclose(x3[::2], [6.65, 12.99, 15.63], atol=0.01)
    four = Phonons(prim, sw, supercell=(4, 4, 4), **KW).run()
    assert np.abs(np.sort(four.results.labels_frequencies["X"]) - x3).max() < 0.05
    # the refused 2×2×2, computed on request, is wrong away from its commensurate q-points
    with pytest.warns(SmallSupercellWarning):
        small = Phonons(prim, sw, supercell=(2, 2, 2), allow_small_supercell=True, **KW).run()
    assert np.abs(_flat(small) - _flat(big)).max() > 0.3
    assert small.results.supercell_check["override"] is True
    assert small.results.warnings and "allow-small-supercell" in small.results.warnings[0]


def test_message_passing_reach_is_layers_times_cutoff():
    from cgkit.nn.model import ENNP
    pot = ENNP(["Si"], r_cut=2.6, n_layers=2, channels=4, l_max=1, init_seed=0).to(torch.float64)
    reach, how = interaction_reach(pot)
    assert reach == pytest.approx(5.2) and "2 message-passing layers" in how
    prim = bulk("Si", "diamond", SW_A)
    # 2×2×2 would pass a cutoff-only rule (6.27 Å ≥ 2 × 2.6 Å) but not 2 × layers × cutoff
    with pytest.raises(SupercellTooSmallError, match=r"4 4 4"):
        Phonons(prim, pot, supercell=(2, 2, 2), **KW).run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model has soft modes
        ok = Phonons(prim, pot, supercell=(4, 4, 4), **KW).run()
        big = Phonons(prim, pot, supercell=(5, 5, 5), **KW).run()
        small = Phonons(prim, pot, supercell=(2, 2, 2), allow_small_supercell=True, **KW).run()
    assert np.abs(_flat(ok) - _flat(big)).max() < 1e-4
    assert np.abs(_flat(small) - _flat(big)).max() > 0.01


def test_ase_calculators_with_and_without_a_known_reach():
    cu = bulk("Cu", "fcc", 3.6)
    chk = check_supercell(cu, np.eye(3, dtype=int), EMT())
    assert chk["ok"] is False and chk["smallest_diagonal"] == [6, 6, 6]
    with pytest.raises(SupercellTooSmallError, match="6 6 6"):
        Phonons(cu, EMT(), supercell=(1, 1, 1), **KW).run()
    # overridden, a one-atom supercell has vanishing force constants: a clear error, not
    # phonopy's "ValueError: arange"
    with pytest.raises(NotSupportedError, match="larger supercell"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Phonons(cu, EMT(), supercell=(1, 1, 1), allow_small_supercell=True, **KW).run()

    class Opaque(EMT):
        pass
    with pytest.warns(SmallSupercellWarning, match="cannot be checked"):
        ph = Phonons(bulk("Cu", "fcc", 3.6, cubic=True), Opaque(), supercell=(2, 2, 2), **KW).run()
    assert ph.results.supercell_check["ok"] is None


def test_overlapping_atoms_are_a_structure_error_naming_them(sw, tmp_path):
    atoms = bulk("Si", "diamond", SW_A)
    atoms.positions[1] = atoms.positions[0] + [0.01, 0.0, 0.0]
    with pytest.raises(StructureError, match=r"atoms 0 and 1 are 0.01 Å apart"):
        Phonons(atoms, sw, supercell=(3, 3, 3))
    from cgkit.cli import main
    write(tmp_path / "bad.xyz", atoms)
    assert main(["phonons", "--structure", str(tmp_path / "bad.xyz"), "--potential", "cgkit:sw",
                 "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_refuses_small_supercell_records_override_and_checks_out_first(tmp_path, capsys):
    from cgkit.cli import main
    write(tmp_path / "Si.cif", bulk("Si", "diamond", SW_A))
    base = ["phonons", "--structure", str(tmp_path / "Si.cif"), "--potential", "cgkit:sw",
            "--mesh", "2", "2", "2"]
    assert main(base + ["--supercell", "1", "1", "1", "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "cgkit phonons: error:" in err and "--supercell 3 3 3" in err
    assert not (tmp_path / "a").exists()
    assert main(base + ["--supercell", "2", "2", "2", "--allow-small-supercell",
                        "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "warning: the 2×2×2 supercell is too small" in out
    s = loads_strict((tmp_path / "b" / "summary.json").read_text())
    assert s["supercell_check"]["override"] is True and s["warnings"]
    # an --out that cannot be created is refused before the computation
    (tmp_path / "file").write_text("x")
    assert main(base + ["--out", str(tmp_path / "file" / "sub")]) == 1
    assert "cgkit phonons: error:" in capsys.readouterr().err
    # an existing non-empty --out is refused without --overwrite, replaced with it
    assert main(base + ["--out", str(tmp_path / "b"), "--supercell", "3", "3", "3"]) == 1
    assert main(base + ["--out", str(tmp_path / "b"), "--supercell", "3", "3", "3",
                        "--overwrite"]) == 0
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["supercell_check"]["ok"] is True and s["warnings"] == []


def test_phonons_follow_the_results_protocol(sw, tmp_path):
    ph = Phonons(bulk("Si", "diamond", SW_A), sw, supercell=(3, 3, 3), **KW)
    assert ph.run() is ph
    paths = ph.plot(tmp_path / "figs")
    assert [p.name for p in paths] == ["band_dos.png"] and paths[0].is_file()
    text = ph.to_json(tmp_path / "s.json")
    assert loads_strict(text)["supercell_check"]["ok"] is True
    assert isinstance(ph.summary(), dict)
    assert issubclass(SupercellTooSmallError, CgkitError)


def test_left_handed_cell_is_a_structure_error_for_phonons_and_elastic(sw):
    from cgkit.properties.elastic import ElasticConstants
    atoms = bulk("Si", "diamond", SW_A)
    atoms.set_cell(-atoms.cell.array, scale_atoms=True)
    with pytest.raises(StructureError, match="left-handed"):
        Phonons(atoms, sw, supercell=(3, 3, 3))
    with pytest.raises(StructureError, match="left-handed"):
        ElasticConstants(atoms, sw)
    dup = bulk("Si", "diamond", SW_A)
    dup.positions[1] = dup.positions[0]
    with pytest.raises(StructureError, match="atoms 0 and 1"):
        ElasticConstants(dup, sw)
