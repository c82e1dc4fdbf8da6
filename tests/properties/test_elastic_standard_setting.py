"""Elastic constants in the standard setting of the space group (issue 13.1) and the
residual-stress warning (issue 13.6).

Primitive cells written to CIF, randomly rotated and triclinic-setting cells must give the
same named constants as the conventional cubic cell; the reference is an independent
stress–strain finite difference with ASE's own calculator on the conventional cell."""
import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.io import read, write
from ase.optimize import BFGS

from cgkit.properties.elastic import (ElasticConstants, ResidualStressWarning, rotate_voigt,
                                      standard_setting)


@pytest.fixture(scope="module")
def sw():
    from cgkit.potentials.stillinger_weber import StillingerWeber
    return StillingerWeber().to(torch.float64)


def _random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _rotated(atoms, R):
    a = atoms.copy()
    a.set_cell(np.asarray(a.cell.array) @ R.T, scale_atoms=True)
    return a


def _ase_cubic_constants(a0, h=1e-3):
    """C11, C12, C44 (GPa) of EMT Cu from central differences of ASE stresses on the relaxed
    conventional cell — an independent route (no cgkit code)."""
    atoms = bulk("Cu", "fcc", a0, cubic=True)
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-6, steps=200)
    cell0 = atoms.cell.array.copy()

    def stress(eps):
        b = atoms.copy()
        b.calc = EMT()
        b.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
        return b.get_stress(voigt=True) / 1e9 * 1.602176634e-19 / 1e-30  # eV/Å³ → GPa

    e = np.zeros((3, 3))
    e[0, 0] = h
    dxx = (stress(e) - stress(-e)) / (2 * h)
    g = np.zeros((3, 3))
    g[1, 2] = g[2, 1] = h / 2  # engineering shear γ_yz = h
    dyz = (stress(g) - stress(-g)) / (2 * h)
    return {"C11": dxx[0], "C12": dxx[1], "C44": dyz[3]}


@pytest.fixture(scope="module")
def cu_reference():
    return _ase_cubic_constants(3.6)


def test_rotate_voigt_is_a_rotation_of_the_fourth_rank_tensor():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 6))
    C = A @ A.T
    R = _random_rotation(2)
    back = rotate_voigt(rotate_voigt(C, R), R.T)
    assert np.allclose(back, C, atol=1e-10)
    # a 90° rotation about z swaps C11 and C22, C44 and C55
    Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    Cr = rotate_voigt(C, Rz)
    assert Cr[0, 0] == pytest.approx(C[1, 1]) and Cr[3, 3] == pytest.approx(C[4, 4])


def test_cu_primitive_cif_gives_the_conventional_constants(tmp_path, cu_reference):
    write(tmp_path / "Cu.cif", bulk("Cu", "fcc", a=3.6))
    assert not np.allclose(read(tmp_path / "Cu.cif").cell.array, bulk("Cu", "fcc", a=3.6).cell.array)
    prim = ElasticConstants(tmp_path / "Cu.cif", EMT(), relax_cell=True, relax_ions=False).run()
    conv = ElasticConstants(bulk("Cu", "fcc", 3.6, cubic=True), EMT(), relax_cell=True,
                            relax_ions=False).run()
    named_p = prim.results.symmetry["named_clamped"]
    named_c = conv.results.symmetry["named_clamped"]
    assert prim.results.symmetry["spacegroup"] == "Fm-3m"
    for k in ("C11", "C12", "C44"):
        assert named_p[k] == pytest.approx(named_c[k], abs=0.5), k
        assert named_p[k] == pytest.approx(cu_reference[k], abs=0.5), k
    # known EMT values (issue 13.1): 172.6 / 115.5 / 90.0 GPa
    assert named_p["C11"] == pytest.approx(172.6, abs=0.5)
    assert named_p["C12"] == pytest.approx(115.5, abs=0.5)
    assert named_p["C44"] == pytest.approx(90.0, abs=0.5)
    # the raw tensor stays in the input frame, where the cubic axes are not Cartesian
    assert abs(prim.results.C_clamped[0, 3]) > 10.0
    # the cell relaxation does not rotate the lattice
    assert prim.results.relaxation_rotation_deg < 1e-6
    # moduli are the same in both frames' summaries
    assert prim.results.moduli["clamped"]["hill"]["bulk"] == pytest.approx(
        conv.results.moduli["clamped"]["hill"]["bulk"], abs=0.5)
    s = json.loads(prim.to_json())
    assert s["standard_setting"]["named_clamped"]["C44"] == pytest.approx(named_c["C44"], abs=0.5)
    assert "input_frame" in s and "C_clamped" in s["input_frame"] and "frames" in s


@pytest.mark.parametrize("setting", ["primitive_cif", "rotated_conventional", "triclinic_basis"])
def test_sw_silicon_standard_constants_do_not_depend_on_the_setting(sw, tmp_path, setting):
    a0 = 5.431
    if setting == "primitive_cif":
        write(tmp_path / "Si.cif", bulk("Si", "diamond", a=a0))
        atoms = read(tmp_path / "Si.cif")
    elif setting == "rotated_conventional":
        atoms = _rotated(bulk("Si", "diamond", a0, cubic=True), _random_rotation(7))
    else:  # a skewed (triclinic-looking) basis of the primitive lattice, then rotated
        prim = bulk("Si", "diamond", a0)
        M = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])  # unimodular: the same lattice
        from ase.build import make_supercell
        atoms = _rotated(make_supercell(prim, M), _random_rotation(11))
    el = ElasticConstants(atoms, sw, method="analytic", relax_cell=True).run()
    named = el.results.symmetry["named_relaxed"]
    assert el.results.symmetry["spacegroup"] == "Fd-3m"
    assert named["C11"] == pytest.approx(151.42, abs=0.5)
    assert named["C12"] == pytest.approx(76.42, abs=0.5)
    assert named["C44"] == pytest.approx(56.45, abs=0.5)
    assert el.results.symmetry["symmetrization_change_relaxed"] < 0.1  # the frame is right


def test_hexagonal_tensor_has_c_along_z_in_the_standard_setting():
    hcp = bulk("Cu", "hcp", a=2.55, c=4.16)
    atoms = _rotated(hcp, _random_rotation(3))
    el = ElasticConstants(atoms, EMT(), relax_ions=False, relax_cell=True).run()
    C = np.asarray(el.results.standard_setting["C_clamped"])  # rotated, not averaged
    assert el.results.symmetry["crystal_system"] == "hexagonal"
    # transverse isotropy about z: C11 = C22, C13 = C23, C44 = C55, C66 = (C11 − C12)/2
    assert C[0, 0] == pytest.approx(C[1, 1], abs=0.2)
    assert C[0, 2] == pytest.approx(C[1, 2], abs=0.2)
    assert C[3, 3] == pytest.approx(C[4, 4], abs=0.2)
    assert C[5, 5] == pytest.approx(0.5 * (C[0, 0] - C[0, 1]), abs=0.2)
    std = standard_setting(atoms)
    assert np.allclose(std["rotation"] @ std["rotation"].T, np.eye(3), atol=1e-8)


def test_residual_stress_is_warned_without_relax_and_recorded(sw):
    atoms = bulk("Si", "diamond", 5.7)  # ~16 GPa of tension with SW
    with pytest.warns(ResidualStressWarning, match="--relax"):
        el = ElasticConstants(atoms, sw, method="analytic").run()
    assert el.results.reference_stress_max_abs > 5.0
    assert any("residual stress" in w for w in el.results.warnings)
    assert json.loads(el.to_json())["warnings"]
    # relaxed first: no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResidualStressWarning)
        el = ElasticConstants(atoms, sw, method="analytic", relax_cell=True).run()
    assert el.results.warnings == []
    # a small residual stress below the stated threshold (0.5 GPa) is not warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResidualStressWarning)
        el = ElasticConstants(bulk("Si", "diamond", 5.432), sw, method="analytic").run()
    assert el.results.reference_stress_max_abs < 0.5 and el.results.warnings == []


def test_cli_elastic_standard_setting_warning_and_refused_output(tmp_path, capsys):
    from cgkit.cli import main
    write(tmp_path / "Si.cif", bulk("Si", "diamond", a=5.7))
    rc = main(["elastic", "--structure", str(tmp_path / "Si.cif"), "--potential", "cgkit:sw",
               "--method", "analytic", "--out", str(tmp_path / "el")])
    out = capsys.readouterr().out
    assert rc == 0 and "warning: the structure is under a residual stress" in out
    assert "standard setting" in out and "input frame" in out
    from cgkit.jsonutil import loads_strict
    s = loads_strict((tmp_path / "el" / "summary.json").read_text())
    assert s["warnings"] and s["standard_setting"]["spacegroup"] == "Fd-3m"
    # an existing output folder is refused before any computation
    rc = main(["elastic", "--structure", str(tmp_path / "Si.cif"), "--potential", "cgkit:sw",
               "--out", str(tmp_path / "el")])
    assert rc == 1
    assert "--overwrite" in capsys.readouterr().err


def test_elastic_constants_follow_the_results_protocol(tmp_path):
    from cgkit.jsonutil import loads_strict
    from cgkit.results import Analysis
    el = ElasticConstants(bulk("Cu", "fcc", 3.5898, cubic=True), EMT(), relax_ions=False)
    assert isinstance(el, Analysis) and el.run() is el
    paths = el.plot(tmp_path / "figs")
    assert [p.name for p in paths] == ["stress_strain.png"] and paths[0].is_file()
    s = loads_strict(el.to_json(tmp_path / "s.json"))
    assert s["standard_setting"]["crystal_system"] == "cubic"
