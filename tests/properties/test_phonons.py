"""Phonons: analytic-Hessian force constants against phonopy finite displacements and
known physics (SW silicon, LJ argon, EMT copper)."""
import json
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.errors import InputError, StructureError
from cgkit.properties.phonons import ImaginaryModeWarning, Phonons, SmallSupercellWarning

SW_A = 5.43095


@pytest.fixture(scope="module")
def sw():
    from cgkit.potentials.stillinger_weber import StillingerWeber
    return StillingerWeber().to(torch.float64)


@pytest.fixture(scope="module")
def lj_argon():
    from cgkit.potentials.lennard_jones import LennardJones
    return LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.5).to(torch.float64)


@pytest.fixture(scope="module")
def si_analytic(sw):
    return Phonons(bulk("Si", "diamond", SW_A), sw, supercell=(3, 3, 3), mesh=(8, 8, 8),
                   temperatures=(0, 3000, 1000), progress=False).run()


def _band_max_diff(a, b):
    return max(np.abs(np.asarray(x) - np.asarray(y)).max()
               for x, y in zip(a.results.band["frequencies"], b.results.band["frequencies"]))


def test_sw_silicon_analytic_bands_match_phonopy_finite_displacements(sw, si_analytic):
    fd = Phonons(bulk("Si", "diamond", SW_A), CgkitCalculator(sw, dtype=torch.float64),
                 supercell=(3, 3, 3), method="finite_displacement", displacement=0.001,
                 mesh=(8, 8, 8), temperatures=(0, 3000, 1000), progress=False).run()
    assert si_analytic.results.method == "analytic" and fd.results.n_force_calls >= 1
    assert _band_max_diff(si_analytic, fd) < 1e-3  # THz, every frequency on the path


def test_lj_argon_analytic_bands_match_phonopy_finite_displacements(lj_argon):
    # both routes on the same (too narrow for the 8.5 Å cutoff, hence allowed explicitly)
    # supercell: they must give the same folded force constants
    atoms = bulk("Ar", "fcc", 5.26)
    with pytest.warns(SmallSupercellWarning):
        an = Phonons(atoms, lj_argon, supercell=(3, 3, 3), mesh=(4, 4, 4), progress=False,
                     allow_small_supercell=True).run()
        fd = Phonons(atoms, CgkitCalculator(lj_argon, dtype=torch.float64), supercell=(3, 3, 3),
                     method="finite_displacement", displacement=0.001, mesh=(4, 4, 4),
                     progress=False, allow_small_supercell=True).run()
    assert _band_max_diff(an, fd) < 1e-3
    assert an.results.max_frequency > 1.0


def test_sw_max_frequency_is_17_833_thz_at_gamma(si_analytic):
    r = si_analytic.results
    assert r.max_frequency == pytest.approx(17.833, abs=1e-3)
    assert np.allclose(r.max_frequency_qpoint, 0.0)
    # Γ: three acoustic zeros (ASR), triply degenerate optical mode
    g = np.sort(r.gamma["frequencies"])
    assert np.abs(g[:3]).max() < 1e-4
    assert np.ptp(g[3:]) < 1e-8 and g[3] == pytest.approx(17.833, abs=1e-3)
    # the supercell Γ point contains Γ of the primitive cell: same ω_max (phonopy's and ASE's
    # unit constants differ in the 7th digit)
    assert r.timestep["nu_max"] == pytest.approx(r.max_frequency, rel=1e-6)


def test_gamma_irreps_of_diamond_are_t1u_acoustic_and_t2g_raman(si_analytic):
    irreps = si_analytic.results.gamma["irreps"]
    labels = [d["irrep"] for d in irreps]
    assert labels == ["T1u", "T2g"]


def test_heat_capacity_reaches_dulong_petit_and_asr_is_reported(si_analytic):
    r = si_analytic.results
    R = 8.314462618
    cv = np.asarray(r.thermal["heat_capacity"])
    T = np.asarray(r.thermal["temperatures"])
    assert cv[T == 0][0] == pytest.approx(0.0, abs=1e-8)
    assert cv[-1] == pytest.approx(3 * 2 * R, rel=0.01)  # 3000 K ≫ Θ_D: 3 n_prim R
    assert r.asr["drift_before"] < 1e-8  # autograd Hessian obeys the sum rule by itself
    assert r.asr["drift_after"] < 1e-10


def test_phonopy_files_reload_in_phonopy_and_plot_written(si_analytic, tmp_path):
    import phonopy
    files = si_analytic.write_phonopy(tmp_path)
    assert {p.split("/")[-1] for p in files} == {"phonopy_params.yaml", "FORCE_CONSTANTS"}
    ph = phonopy.load(str(tmp_path / "phonopy_params.yaml"), log_level=0)
    ph.run_qpoints([[0.5, 0.0, 0.5]])
    x = np.asarray(si_analytic.results.labels_frequencies["X"])
    assert np.allclose(np.sort(ph.qpoints.frequencies[0]), np.sort(x), atol=1e-8)
    si_analytic.plot(tmp_path / "band.png")
    assert (tmp_path / "band.png").stat().st_size > 10_000
    summary = json.loads(si_analytic.to_json())
    assert summary["units"]["frequency"] == "THz" and "G" in summary["labels_frequencies"]


def test_any_ase_calculator_route_for_emt_copper():
    from ase.calculators.emt import EMT
    # 6×6×6: the smallest diagonal supercell of the primitive cell wider than 2 × EMT's rc_list
    ph = Phonons(bulk("Cu", "fcc", 3.5898), EMT(), supercell=(6, 6, 6), mesh=(4, 4, 4),
                 progress=False).run()
    r = ph.results
    assert r.method == "finite_displacement" and r.n_force_calls == 1  # fcc: one displacement
    # EMT copper: zone-boundary LA at X near experiment (≈7.2 THz); acoustic zeros at Γ
    assert 6.0 < max(r.labels_frequencies["X"]) < 8.5
    assert np.abs(r.gamma["frequencies"]).max() < 1e-3


def test_imaginary_frequencies_are_reported_negative_with_a_warning(lj_argon):
    # simple cubic LJ is mechanically unstable to shear: imaginary modes
    atoms = Atoms("Ar", cell=np.eye(3) * 3.82, pbc=True)
    with pytest.warns(ImaginaryModeWarning):
        ph = Phonons(atoms, lj_argon, supercell=(2, 2, 2), mesh=(4, 4, 4), progress=False,
                     allow_small_supercell=True).run()
    assert ph.results.imaginary["min_frequency"] < -0.1
    assert ph.results.imaginary["count_on_band_path"] > 0


def test_non_periodic_structure_is_rejected(sw):
    mol = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]])
    with pytest.raises(StructureError, match="periodic"):
        Phonons(mol, sw, supercell=(2, 2, 2))


def test_bad_supercell_and_method_are_rejected(sw):
    with pytest.raises(InputError, match="supercell"):
        Phonons(bulk("Si", "diamond", SW_A), sw, supercell=(0, 1, 1))
    from ase.calculators.emt import EMT
    with pytest.raises(InputError, match="analytic"):
        Phonons(bulk("Cu", "fcc", 3.59), EMT(), supercell=(2, 2, 2), method="analytic").run()


def test_cli_phonons_writes_summary_plot_and_phonopy_files(tmp_path):
    from cgkit.cli import main
    bulk("Si", "diamond", SW_A).write(tmp_path / "si.xyz")
    out = tmp_path / "out"
    rc = main(["phonons", "--structure", str(tmp_path / "si.xyz"), "--potential", "cgkit:sw",
               "--supercell", "3", "3", "3", "--mesh", "4", "4", "4", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["timestep"]["dt_max"] > 0 and s["max_frequency"] > 17.0
    for name in ("band_dos.png", "phonopy_params.yaml", "FORCE_CONSTANTS", "band.dat", "dos.dat"):
        assert (out / name).is_file()
    assert main(["phonons", "--structure", str(tmp_path / "nope.xyz"), "--potential", "cgkit:sw",
                 "--out", str(out)]) == 1


def test_symmetry_reduced_analytic_force_constants_equal_the_translation_only_ones():
    """Rows of the symmetry-independent atoms + phonopy's distribution by the space group
    give the force constants of the primitive-row route (SW diamond Si, 3×3×3)."""
    from phonopy import Phonopy

    from cgkit.potentials.stillinger_weber import StillingerWeber
    from cgkit.properties.phonons import analytic_force_constants, ase_to_phonopy
    pot = StillingerWeber().to(torch.float64)
    ph = Phonopy(ase_to_phonopy(bulk("Si", "diamond", 5.43095)), supercell_matrix=np.eye(3) * 3,
                 primitive_matrix="auto")
    assert len(ph.symmetry.get_independent_atoms()) == 1  # one row block instead of two
    full = analytic_force_constants(pot, ph, use_symmetry=False)
    sym = analytic_force_constants(pot, ph, use_symmetry=True)
    assert np.abs(full - sym).max() < 1e-12 * np.abs(full).max()
