"""Elastic constants: reference values of SW silicon and EMT copper, analytic (Born +
relaxation) against finite strains, moduli against closed forms, clear errors."""
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

from cgkit.errors import CgkitError, InputError, NotSupportedError, StructureError
from cgkit.properties.calculators import load_calculator, load_model
from cgkit.properties.elastic import (ElasticConstants, RelaxationError, born_stability, moduli,
                                symmetrize_voigt, crystal_symmetry)


@pytest.fixture(scope="module")
def sw():
    from cgkit.potentials.stillinger_weber import StillingerWeber
    return StillingerWeber().to(torch.float64)


@pytest.fixture(scope="module")
def si_elastic(sw):
    return ElasticConstants(bulk("Si", "diamond", 5.43095), sw).run()


def test_sw_silicon_reference_constants_relaxed_and_clamped(si_elastic):
    r = si_elastic.results
    named_r, named_c = r.symmetry["named_relaxed"], r.symmetry["named_clamped"]
    assert named_r["C11"] == pytest.approx(151.42, abs=0.1)
    assert named_r["C12"] == pytest.approx(76.42, abs=0.1)
    assert named_r["C44"] == pytest.approx(56.45, abs=0.1)
    assert named_c["C44"] == pytest.approx(109.76, abs=0.1)
    assert r.C_relaxed[3, 3] == pytest.approx(56.45, abs=0.1)  # unsymmetrized too


def test_sw_analytic_and_finite_strain_routes_agree(si_elastic):
    r = si_elastic.results
    assert r.route_difference["clamped"] < 0.1 and r.route_difference["relaxed"] < 0.1
    fs = r.finite_strain["relaxed"]
    assert fs["C"][3, 3] == pytest.approx(56.45, abs=0.1)
    assert 0 < fs["max_rms_residual"] < 0.1  # GPa, nonlinearity of ±1 % strains


def test_prestressed_crystal_routes_agree_with_prestress_terms(sw):
    # expanded silicon carries ~8 GPa tension: the Born term alone would be off by that much
    el = ElasticConstants(bulk("Si", "diamond", 5.6), sw).run()
    r = el.results
    assert r.reference_stress[0] > 5.0
    assert r.route_difference["clamped"] < 0.1 and r.route_difference["relaxed"] < 0.1
    assert np.abs(r.analytic["prestress_correction"]).max() > 5.0


def test_emt_copper_reference_constants_through_ase_calculator():
    from ase.calculators.emt import EMT
    el = ElasticConstants(bulk("Cu", "fcc", 3.5898, cubic=True), EMT(), relax_ions=False).run()
    r = el.results
    assert r.route == "finite_strain"
    n = r.symmetry["named_clamped"]
    assert n["C11"] == pytest.approx(172.6, abs=0.2)
    assert n["C12"] == pytest.approx(115.4, abs=0.2)
    assert n["C44"] == pytest.approx(89.9, abs=0.2)
    assert r.symmetry["crystal_system"] == "cubic" and r.stability["stable"]


def test_cubic_moduli_match_closed_forms():
    c11, c12, c44 = 151.42, 76.42, 56.45
    C = np.zeros((6, 6))
    C[:3, :3] = c12
    np.fill_diagonal(C[:3, :3], c11)
    C[3, 3] = C[4, 4] = C[5, 5] = c44
    m = moduli(C)
    K = (c11 + 2 * c12) / 3
    GV = (c11 - c12 + 3 * c44) / 5
    GR = 5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12))
    assert m["voigt"]["bulk"] == pytest.approx(K) and m["reuss"]["bulk"] == pytest.approx(K)
    assert m["voigt"]["shear"] == pytest.approx(GV) and m["reuss"]["shear"] == pytest.approx(GR)
    GH = 0.5 * (GV + GR)
    assert m["hill"]["young"] == pytest.approx(9 * K * GH / (3 * K + GH))


def test_isotropic_moduli_from_lame_constants():
    lam, mu = 60.0, 30.0
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[:3, :3] += np.eye(3) * 2 * mu
    C[3:, 3:] = np.eye(3) * mu
    for bound in ("voigt", "reuss", "hill"):
        m = moduli(C)[bound]
        assert m["shear"] == pytest.approx(mu)
        assert m["young"] == pytest.approx(mu * (3 * lam + 2 * mu) / (lam + mu))
        assert m["poisson"] == pytest.approx(lam / (2 * (lam + mu)))


def test_born_stability_flags_unstable_cubic_tensor():
    C = np.zeros((6, 6))
    C[:3, :3] = 120.0
    np.fill_diagonal(C[:3, :3], 100.0)  # C11 < C12: unstable to tetragonal shear
    C[3:, 3:] = np.eye(3) * 50.0
    s = born_stability(C, "cubic")
    assert not s["stable"] and not s["conditions"]["C11 - C12 > 0"]


def test_symmetry_average_restores_cubic_tensor_of_rotated_noise():
    rng = np.random.default_rng(0)
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    sym = crystal_symmetry(atoms)
    assert sym["crystal_system"] == "cubic" and len(sym["rotations"]) == 48
    C = np.zeros((6, 6))
    C[:3, :3] = 115.0
    np.fill_diagonal(C[:3, :3], 172.0)
    C[3:, 3:] = np.eye(3) * 90.0
    noisy = C + rng.normal(scale=0.5, size=(6, 6))
    Cs = symmetrize_voigt(noisy, sym["rotations"])
    assert np.abs(Cs[:3, 3:]).max() < 1e-10 and np.ptp(np.diag(Cs)[:3]) < 1e-10
    assert np.abs(Cs - C).max() < 1.0


class _NoStress(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def test_calculator_without_stress_is_a_clear_error():
    with pytest.raises(NotSupportedError, match="stress"):
        ElasticConstants(bulk("Cu", "fcc", 3.59), _NoStress()).run()


def test_strained_cell_that_fails_to_relax_raises(sw):
    atoms = bulk("Si", "diamond", 5.43095)
    with pytest.raises(RelaxationError, match="did not relax"):
        ElasticConstants(atoms, sw, method="finite_strain", fmax=1e-12, max_steps=2).run()


def test_bad_inputs_are_rejected(sw):
    with pytest.raises(StructureError):
        ElasticConstants(Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]]), sw)
    with pytest.raises(InputError, match="strains"):
        ElasticConstants(bulk("Si", "diamond", 5.43), sw, strains=[0.0, 0.01])


def test_potential_specs_give_cgkit_potentials_and_ase_calculators():
    from ase.calculators.lj import LennardJones
    from cgkit.potential import Potential
    calc = load_calculator("ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True")
    assert isinstance(calc, LennardJones)
    assert calc.parameters.sigma == 3.4 and calc.parameters.rc == 8.5 and calc.parameters.smooth
    pot = load_model("cgkit:sw")
    assert isinstance(pot, Potential) and pot.dtype == torch.float64
    with pytest.raises(InputError, match="unknown ASE calculator"):
        load_model("ase:NoSuchThing")
    with pytest.raises(CgkitError):
        load_model("/no/such/model.pt")


def test_cli_elastic_with_ase_emt(tmp_path):
    from cgkit.cli import main
    bulk("Cu", "fcc", 3.5898, cubic=True).write(tmp_path / "cu.xyz")
    out = tmp_path / "el"
    rc = main(["elastic", "--structure", str(tmp_path / "cu.xyz"), "--potential", "ase:EMT",
               "--clamped-only", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["input_frame"]["C_clamped"][0][0] == pytest.approx(172.6, abs=0.2)
    assert s["standard_setting"]["named_clamped"]["C11"] == pytest.approx(172.6, abs=0.2)
    assert s["standard_setting"]["moduli"]["clamped"]["hill"]["bulk"] == pytest.approx(
        (172.6 + 2 * 115.4) / 3, abs=0.2)
    assert (out / "stress_strain.png").is_file()
