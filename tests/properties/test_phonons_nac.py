"""Polar-crystal phonons with the non-analytic correction (issue 15), rigid-ion NaCl:

* cgkit's analytic-Hessian phonons with NAC equal phonopy finite displacements with LAMMPS
  forces (born/coul/long + ewald, same parameters) and the same NAC parameters, 1e-3 THz;
* the Γ LO–TO splitting equals the analytic rigid-ion value
  ω_LO² − ω_TO² = Z*² e² / (ε∞ ε0 μ V) = 4π k_e Z*² / (ε∞ μ V)  (k_e = e²/4πε0);
* the Γ TO frequency equals the zone-centre eigenvalue of the Ewald Hessian (no phonopy);
* elastic constants (analytic) equal LAMMPS finite-strain values to 0.1 GPa;
* CLI: bands with LO–TO, refusals.

The fast variants use a 5 Å short-range cutoff (a 2×2×2 conventional supercell, 64 ions, is
then wide enough: 11.3 Å ≥ 2 × 5 Å); the slow ones the default 8 Å cutoff (3×3×3, 216 ions).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import write

from cgkit.jsonutil import loads_strict
from cgkit.properties.phonons import K_E, Phonons, SupercellTooSmallError, ase_to_phonopy, phonopy_to_ase
from tests.potentials.test_charged_lammps import (nacl_charges, nacl_lammps_setup, needs_lammps,
                                                  run_lammps)

A0 = 5.64
KW = dict(mesh=(4, 4, 4), band_npoints=11, progress=False)
# sqrt(eV / (Å² amu)) in THz (ν = ω / 2π), from CODATA constants
EV, AMU = 1.602176634e-19, 1.66053906660e-27
TO_THZ = np.sqrt(EV / (1e-20 * AMU)) / (2 * np.pi) / 1e12


def _nacl_pot(cutoff):
    from cgkit.potentials import NaClBMH
    return NaClBMH(cutoff=cutoff, accuracy=1e-10)


def _nacl():
    return bulk("NaCl", "rocksalt", a=A0, cubic=True)


@pytest.fixture(scope="module")
def fast_phonons():
    return Phonons(_nacl(), _nacl_pot(5.0), supercell=(2, 2, 2), nac=True, **KW).run()


def _lammps_reference(tmp_path, ph, cutoff, supercell, displacement=0.003):
    """phonopy finite displacements (±) with LAMMPS forces and the NAC parameters of ``ph``."""
    from phonopy import Phonopy
    ref = Phonopy(ase_to_phonopy(_nacl()), supercell_matrix=np.diag(supercell),
                  primitive_matrix="auto", log_level=0)
    ref.generate_displacements(distance=displacement, is_plusminus=True)
    cells = [phonopy_to_ase(sc) for sc in ref.supercells_with_displacements]
    out = run_lammps(tmp_path, cells, nacl_lammps_setup(cutoff, accuracy=1e-12),
                     types={"Na": 1, "Cl": 2}, charges=nacl_charges)
    ref.forces = np.array([o["forces"] for o in out])
    ref.produce_force_constants()
    ref.symmetrize_force_constants()
    ref.nac_params = {"born": np.asarray(ph.results.nac["born_charges"]),
                      "dielectric": np.asarray(ph.results.nac["epsilon_inf"]),
                      "factor": K_E, "method": "gonze"}
    return ref


def _compare_with_lammps(tmp_path, ph, cutoff, supercell):
    ref = _lammps_reference(tmp_path, ph, cutoff, supercell)
    band = ph.results.band
    paths = [np.asarray(q) for q in band["qpoints"]]
    ref.run_band_structure(paths, path_connections=band["connections"])
    f_ref = np.concatenate([np.asarray(f) for f in ref.band_structure.frequencies])
    f_cg = np.concatenate([np.asarray(f) for f in band["frequencies"]])
    diff = np.abs(f_cg - f_ref).max()
    # Γ with and without the non-analytic term, and generic q-points
    cell = np.asarray(ref.primitive.cell)
    for name, d in zip("xyz", np.eye(3)):
        ref.run_qpoints([[0, 0, 0]], nac_q_direction=d @ cell.T)
        diff = max(diff, np.abs(ref.qpoints.frequencies[0] - ph.results.lo_to["frequencies_nac"][name]).max())
    qs = [[0.1, 0.2, 0.3], [0.37, 0.12, 0.0], [0.5, 0.5, 0.5], [0.02, 0.0, 0.01]]
    ref.run_qpoints(qs)
    ph.phonopy.run_qpoints(qs)
    diff = max(diff, np.abs(ref.qpoints.frequencies - ph.phonopy.qpoints.frequencies).max())
    print(f"max |ν_cgkit − ν_LAMMPS+phonopy| = {diff:.2e} THz over {f_cg.size} band values + Γ + 4 q")
    assert diff < 1e-3
    return diff


@needs_lammps
def test_nac_phonons_equal_phonopy_with_lammps_forces(tmp_path, fast_phonons):
    assert fast_phonons.results.supercell_check["ok"]
    assert fast_phonons.results.supercell_check["reach"] == 5.0
    _compare_with_lammps(tmp_path, fast_phonons, 5.0, (2, 2, 2))


@pytest.mark.slow
@needs_lammps
def test_nac_phonons_equal_phonopy_with_lammps_forces_default_cutoff(tmp_path):
    ph = Phonons(_nacl(), _nacl_pot(8.0), supercell=(3, 3, 3), nac=True, **KW).run()
    _compare_with_lammps(tmp_path, ph, 8.0, (3, 3, 3))


def _lo_to(ph):
    lt = ph.results.lo_to
    to = np.sort(lt["frequencies_without"])[3:]        # three TO (degenerate) without NAC
    out = []
    for name in "xyz":
        f = np.sort(lt["frequencies_nac"][name])
        out.append((f[3:5], f[5]))                     # 2 TO, 1 LO along the direction
    return to, out


@pytest.mark.parametrize("eps", [1.0, 2.5])
def test_lo_to_splitting_equals_the_analytic_rigid_ion_value(eps, fast_phonons):
    ph = fast_phonons if eps == 1.0 else Phonons(_nacl(), _nacl_pot(5.0), supercell=(2, 2, 2),
                                                 nac=True, epsilon_inf=eps, **KW).run()
    from ase.data import atomic_masses, atomic_numbers
    m1, m2 = atomic_masses[atomic_numbers["Na"]], atomic_masses[atomic_numbers["Cl"]]
    mu = m1 * m2 / (m1 + m2)
    V = A0 ** 3 / 4                                    # primitive cell, Å³
    d_omega2 = 4 * np.pi * K_E * 1.0 ** 2 / (eps * mu * V)   # eV/(Å² amu)
    expected = d_omega2 * TO_THZ ** 2                 # THz²
    to, dirs = _lo_to(ph)
    assert np.ptp(to) < 1e-6
    for tos, lo in dirs:
        assert np.abs(tos - to[0]).max() < 1e-6
        got = lo ** 2 - to[0] ** 2
        print(f"ε∞={eps}: ν_TO {to[0]:.5f} THz, ν_LO {lo:.5f} THz, ν_LO²−ν_TO² {got:.6f} vs "
              f"analytic {expected:.6f} THz²")
        assert abs(got - expected) < 1e-6 * expected
    assert ph.results.lo_to["max_splitting"] > 1.0


def test_gamma_to_frequency_equals_the_ewald_hessian_eigenvalue(fast_phonons):
    """The TO frequency at Γ (no NAC term) is the optical eigenvalue of the mass-weighted
    Hessian of the 8-ion cell (Ewald, tin-foil: no macroscopic field) — without phonopy."""
    pot = _nacl_pot(5.0)
    atoms = _nacl()
    H = pot.hessian(pot.graph(atoms)).numpy()
    m = np.repeat(atoms.get_masses(), 3)
    w2 = np.linalg.eigvalsh(H / np.sqrt(np.outer(m, m)))
    nu = np.sqrt(np.abs(w2)) * np.sign(w2) * TO_THZ
    # the 8-ion cell's Γ holds Γ and X of the primitive cell; TO(Γ) is the 3-fold mode with
    # the Na and Cl sublattices moving against each other
    to, _ = _lo_to(fast_phonons)
    assert np.min(np.abs(nu - to[0])) < 1e-6, (nu, to)


@pytest.mark.slow
def test_md_timestep_of_the_ionic_crystal_is_that_of_the_supercell_hessian(fast_phonons):
    """dt_max through the same route: StableTimestep's full Ewald Hessian of the 64-ion cell
    equals the phonon run's supercell Γ point (force constants as computed, no NAC term)."""
    from cgkit.properties.timestep import StableTimestep
    st = StableTimestep(_nacl(), _nacl_pot(5.0), supercell=(2, 2, 2)).run()
    ts = fast_phonons.results.timestep
    assert abs(st.results["lambda_max"] - ts["lambda_max"]) < 1e-9 * ts["lambda_max"]
    assert abs(st.results["dt_max"] - ts["dt_max"]) < 1e-9 * ts["dt_max"]


@needs_lammps
@pytest.mark.parametrize("cutoff", [5.0, 8.0])
def test_elastic_constants_equal_lammps_finite_strain(tmp_path, cutoff):
    from cgkit.properties.elastic import ElasticConstants, strain_matrix
    from cgkit.units import EV_PER_A3_TO_GPA
    atoms = _nacl()
    ec = ElasticConstants(atoms, _nacl_pot(cutoff), method="analytic").run()
    C = np.asarray(ec.results["C_relaxed"])
    h = 2e-3
    cells = []
    for J in range(6):
        for s in (-2, -1, 1, 2):
            a = atoms.copy()
            a.set_cell(atoms.cell.array @ (np.eye(3) + strain_matrix(J, s * h)), scale_atoms=True)
            cells.append(a)
    out = run_lammps(tmp_path, cells, nacl_lammps_setup(cutoff, accuracy=1e-12),
                     types={"Na": 1, "Cl": 2}, charges=nacl_charges)
    voigt = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
    sig = np.array([[o["stress"][a, b] for a, b in voigt] for o in out]).reshape(6, 4, 6)
    C_lmp = ((sig[:, 0] - 8 * sig[:, 1] + 8 * sig[:, 2] - sig[:, 3]) / (12 * h)).T * EV_PER_A3_TO_GPA
    print("C (GPa) cgkit analytic:\n", np.round(C, 3), "\nLAMMPS finite strain:\n", np.round(C_lmp, 3),
          f"\nmax difference {np.abs(C - C_lmp).max():.2e} GPa")
    assert np.abs(C - C_lmp).max() < 0.1
    assert np.abs(C[0, 0]) > 10  # a real, non-trivial tensor


# ------------------------------------------------------------------ CLI
def test_cli_nac_bands_and_refusals(tmp_path, capsys):
    from cgkit.cli import main
    write(tmp_path / "NaCl.cif", _nacl())
    base = ["phonons", "--structure", str(tmp_path / "NaCl.cif"), "--mesh", "2", "2", "2",
            "--supercell", "2", "2", "2"]
    nacl = ["--potential", "cgkit:nacl-bmh:cutoff=5"]
    assert main(base + nacl + ["--nac", "--out", str(tmp_path / "ph")]) == 0
    assert "LO–TO splitting" in capsys.readouterr().out
    s = loads_strict((tmp_path / "ph" / "summary.json").read_text())
    assert s["lo_to"]["max_splitting"] > 1.0 and s["nac"]["epsilon_inf"][0][0] == 1.0
    band = np.loadtxt(tmp_path / "ph" / "band.dat")
    assert band.shape[1] == 7 and np.isfinite(band).all()
    # the band path starts at Γ: there the highest band is the LO mode, above the TO
    gamma_rows = band[np.isclose(band[:, 0], 0.0)]
    lo = s["lo_to"]["frequencies_nac"]["x"]
    assert abs(gamma_rows[0, 1:].max() - max(lo)) < 1e-3
    assert gamma_rows[0, 1:].max() - np.sort(s["lo_to"]["frequencies_without"])[-1] > 1.0

    def refused(argv, *needles):
        assert main([str(a) for a in argv]) == 1
        err = capsys.readouterr().err
        assert "cgkit phonons: error:" in err and all(n in err for n in needles), err

    # without --nac a Coulomb potential is refused, naming --nac
    refused(base + nacl + ["--out", tmp_path / "x1"], "--nac")
    # --nac with a potential without Born charges
    write(tmp_path / "Si.cif", bulk("Si", "diamond", 5.431))
    refused(["phonons", "--structure", tmp_path / "Si.cif", "--potential", "cgkit:sw", "--nac",
             "--out", tmp_path / "x2"], "Born effective charges")
    # cgkit:coulomb with a non-neutral structure
    a = _nacl()
    a.set_initial_charges([1.0] * 4 + [-0.5] * 4)
    write(tmp_path / "charged.extxyz", a)
    refused(["phonons", "--structure", tmp_path / "charged.extxyz", "--potential", "cgkit:coulomb",
             "--nac", "--supercell", "1", "1", "1", "--out", tmp_path / "x3"], "charge")
    # ... and through another command, where cgkit.electrostatics refuses the net charge
    assert main(["elastic", "--structure", str(tmp_path / "charged.extxyz"), "--potential",
                 "cgkit:coulomb", "--out", str(tmp_path / "x6")]) == 1
    err = capsys.readouterr().err
    assert "cgkit elastic: error:" in err and "net charge" in err, err
    # SPC/Fw on something that is not water
    write(tmp_path / "notwater.extxyz", _nacl())
    assert main(["md", "--structure", str(tmp_path / "notwater.extxyz"), "--potential", "cgkit:spcfw",
                 "--steps", "2", "--out", str(tmp_path / "x7")]) == 1
    err = capsys.readouterr().err
    assert "cgkit md: error:" in err and "not known" in err, err
    # --epsilon-inf without --nac, and a tensor below 1
    refused(base + nacl + ["--epsilon-inf", "2", "--out", tmp_path / "x4"], "--nac")
    refused(base + nacl + ["--nac", "--epsilon-inf", "0.5", "--out", tmp_path / "x5"], "epsilon_inf")
    for k in range(1, 8):
        assert not (tmp_path / f"x{k}").exists()


def test_coulomb_potential_needs_nac_and_charges_reach_the_supercell(fast_phonons):
    """cgkit:coulomb reads initial charges: they must reach the phonopy supercell (analytic and
    finite-displacement routes agree); the reach with NAC is 0 (no short-range part)."""
    from cgkit.calculator import CgkitCalculator
    from cgkit.potentials import CoulombPotential, NaClBMH
    # rigid-ion NaCl = BMH (charges switched off) + bare Coulomb with initial charges
    a = _nacl()
    a.set_initial_charges(nacl_charges(a))
    bmh_only = NaClBMH(cutoff=5.0, accuracy=1e-10)
    bmh_only.q_species.zero_()
    pot = bmh_only + CoulombPotential(accuracy=1e-10)
    with pytest.raises(SupercellTooSmallError, match="--nac"):
        Phonons(a, pot, supercell=(2, 2, 2), **KW).run()
    ph = Phonons(a, pot, supercell=(2, 2, 2), nac=True, **KW).run()
    ref = fast_phonons
    assert ph.results.supercell_check["reach"] == 5.0
    fa = np.concatenate([np.asarray(f) for f in ph.results.band["frequencies"]])
    fb = np.concatenate([np.asarray(f) for f in ref.results.band["frequencies"]])
    assert np.abs(fa - fb).max() < 1e-6
    fd = Phonons(a, CgkitCalculator(pot), supercell=(2, 2, 2), nac=True, method="finite_displacement",
                 displacement=0.003, born_charges=nacl_charges(a), **KW).run()
    fc = np.concatenate([np.asarray(f) for f in fd.results.band["frequencies"]])
    assert np.abs(fc - fb).max() < 2e-3
