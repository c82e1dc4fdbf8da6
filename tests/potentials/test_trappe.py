"""TraPPE-UA: hand-computed butane, finite differences in a triclinic cell, LAMMPS on a melt."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.units import kB

from cgkit.errors import CgkitError, InputError, UnknownSpeciesError
from cgkit.io_potential import load_potential
from cgkit.potentials.polyethylene import build_pe_melt, write_lammps_data
from cgkit.potentials.trappe import TraPPEUA
from cgkit.topology import Topology

# published TraPPE-UA numbers, typed in independently of the module under test (K, Å)
C1, C2, C3 = 355.03, -68.19, 791.32
EPS = {"CH3": 98.0, "CH2": 46.0, "CH4": 148.0}
SIG = {"CH3": 3.75, "CH2": 3.95, "CH4": 3.73}
KB_BOND, R0 = 452_900.0, 1.54
KB_ANGLE, THETA0 = 62_500.0, 114.0


def butane(phi_deg, r=(R0, R0, R0), theta=(THETA0, THETA0)):
    """Butane (CH3-CH2-CH2-CH3) with given bonds (Å), angles and dihedral (degrees), in vacuum."""
    t1, t2 = np.deg2rad(theta)
    p0 = np.zeros(3)
    p1 = np.array([r[0], 0.0, 0.0])
    p2 = p1 + r[1] * np.array([-np.cos(t1), np.sin(t1), 0.0])
    bc = (p2 - p1) / np.linalg.norm(p2 - p1)
    n = np.cross(p1 - p0, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    ph = np.deg2rad(phi_deg)
    p3 = p2 + r[2] * (-np.cos(t2) * bc + np.sin(t2) * np.cos(ph) * m + np.sin(t2) * np.sin(ph) * n)
    atoms = Atoms("C4", positions=[p0, p1, p2, p3], pbc=False)
    atoms.arrays["bead_types"] = np.array(["CH3", "CH2", "CH2", "CH3"])
    return atoms


def butane_potential(**kw):
    return TraPPEUA(["CH3", "CH2", "CH2", "CH3"], Topology.from_bonds(4, [(0, 1), (1, 2), (2, 3)]), **kw)


def energy(pot, atoms):
    return float(pot.energy(pot.graph(atoms))[0])


def torsion_K(phi_deg):
    p = np.deg2rad(phi_deg)
    return C1 * (1 + np.cos(p)) + C2 * (1 - np.cos(2 * p)) + C3 * (1 + np.cos(3 * p))


# ---------------------------------------------------------------------------------- (a) butane
def test_butane_torsion_profile_matches_hand_computed_opls():
    pot = butane_potential()
    phis = np.arange(-180.0, 181.0, 7.5)
    e = np.array([energy(pot, butane(p)) for p in phis])
    # the geometry itself, measured independently by ASE (0..360°, trans = 180°)
    measured = np.array([butane(p).get_dihedral(0, 1, 2, 3) for p in phis])
    assert np.allclose(np.cos(np.deg2rad(measured)), np.cos(np.deg2rad(phis)), atol=1e-12)
    ref = torsion_K(measured) * kB  # bonds/angles at equilibrium, 1-4 LJ excluded
    assert np.max(np.abs(e - ref)) < 1e-10
    assert abs(e[phis == 180.0][0]) < 1e-12  # trans is the zero of the TraPPE torsion


def test_butane_trans_gauche_energy_difference():
    from scipy.optimize import minimize_scalar
    pot = butane_potential()
    res = minimize_scalar(lambda p: energy(pot, butane(p)), bounds=(40.0, 90.0), method="bounded",
                          options={"xatol": 1e-6})
    ref = minimize_scalar(torsion_K, bounds=(40.0, 90.0), method="bounded", options={"xatol": 1e-6})
    assert abs(res.x - ref.x) < 1e-3
    dE = res.fun - energy(pot, butane(180.0))
    assert abs(dE - ref.fun * kB) < 1e-9
    # the TraPPE trans-gauche difference is ≈ 0.85 kcal/mol (≈ 0.037 eV, ≈ 430 K)
    assert 0.030 < dE < 0.040
    # barriers: cis (0°) and the trans–gauche barrier at 120°
    assert abs(energy(pot, butane(0.0)) - torsion_K(0.0) * kB) < 1e-10
    assert abs(energy(pot, butane(120.0)) - torsion_K(120.0) * kB) < 1e-10


def test_butane_all_bonded_terms_hand_computed():
    r, th, phi = (1.49, 1.61, 1.57), (108.0, 121.0), 73.0
    atoms = butane(phi, r=r, theta=th)
    hand = (0.5 * KB_BOND * sum((x - R0) ** 2 for x in r)
            + 0.5 * KB_ANGLE * sum((np.deg2rad(t) - np.deg2rad(THETA0)) ** 2 for t in th)
            + torsion_K(atoms.get_dihedral(0, 1, 2, 3))) * kB
    pot = butane_potential()
    assert abs(energy(pot, atoms) - hand) < 1e-10
    # per-site energies sum to the total
    out = pot.compute(pot.graph(atoms), atomic=True)
    assert abs(float(out["energies"].sum()) - hand) < 1e-10


def test_lennard_jones_switch_between_molecules_hand_computed():
    """Two methanes (and CH3–CH2 in two ethanes): 12-6 LJ with Lorentz–Berthelot and the C2 switch."""
    r_on, r_cut = 6.0, 9.0
    pot = TraPPEUA(["CH4", "CH4"], Topology.from_bonds(2, np.zeros((0, 2))), r_on=r_on, r_cut=r_cut)

    def lj(r, a, b):
        eps = np.sqrt(EPS[a] * EPS[b]) * kB
        sig = 0.5 * (SIG[a] + SIG[b])
        x = np.clip((r - r_on) / (r_cut - r_on), 0, 1)
        return 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6) * (1 - 10 * x ** 3 + 15 * x ** 4 - 6 * x ** 5)

    for r in (3.3, 4.2, 6.0, 7.1, 8.9, 9.5):
        a = Atoms("C2", positions=[[0, 0, 0], [r, 0, 0]])
        a.arrays["bead_types"] = np.array(["CH4", "CH4"])
        assert abs(energy(pot, a) - lj(r, "CH4", "CH4")) < 1e-13
    # two ethanes: only inter-molecular CH3–CH3 pairs; the bonded pair is excluded
    pot2 = TraPPEUA(["CH3"] * 4, Topology.from_bonds(4, [(0, 1), (2, 3)]), r_on=r_on, r_cut=r_cut)
    pos = np.array([[0, 0, 0], [1.54, 0, 0], [0.3, 4.0, 0.2], [1.7, 4.6, -0.4]])
    a = Atoms("C4", positions=pos)
    a.arrays["bead_types"] = np.array(["CH3"] * 4)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    hand = sum(lj(d[i, j], "CH3", "CH3") for i in (0, 1) for j in (2, 3))
    hand += 0.5 * KB_BOND * kB * ((d[0, 1] - R0) ** 2 + (d[2, 3] - R0) ** 2)
    assert abs(energy(pot2, a) - hand) < 1e-12


# ---------------------------------------------------------------------------------- (b) derivatives
@pytest.fixture(scope="module")
def triclinic_melt():
    """3 hexane-like chains (18 sites) in a sheared periodic cell thinner than 2 r_cut."""
    atoms, topo = build_pe_melt(3, 6, 0.7, seed=3, relax=False, min_distance=3.1)
    rng = np.random.default_rng(7)
    cell = atoms.cell.array @ (np.eye(3) + 0.12 * rng.uniform(-1, 1, (3, 3)))
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
    pot = TraPPEUA.from_atoms(atoms, topo, r_on=6.0, r_cut=8.0)
    return atoms, pot


def test_forces_match_central_finite_differences_triclinic(triclinic_melt):
    atoms, pot = triclinic_melt
    f = pot.compute(pot.graph(atoms))["forces"].numpy()
    h = 1e-5
    fd = np.zeros_like(f)
    for i in range(len(atoms)):
        for a in range(3):
            e = []
            for s in (h, -h):
                b = atoms.copy()
                b.positions[i, a] += s
                e.append(energy(pot, b))
            fd[i, a] = -(e[0] - e[1]) / (2 * h)
    err = np.abs(fd - f).max() / np.abs(f).max()
    print(f"force FD rel. error {err:.2e}")
    assert err < 1e-6, err


def test_stress_matches_strain_finite_differences_triclinic(triclinic_melt):
    atoms, pot = triclinic_melt
    s = pot.compute(pot.graph(atoms), stress=True)["stress"][0].numpy()
    h = 1e-6
    V = atoms.get_volume()
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = []
            for sgn in (h, -h):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sgn
                eps[b, a] += 0.5 * sgn
                t = atoms.copy()
                t.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
                e.append(energy(pot, t))
            fd[a, b] = (e[0] - e[1]) / (2 * h) / V
    err = np.abs(fd - s).max() / np.abs(s).max()
    print(f"stress FD rel. error {err:.2e}")
    assert err < 1e-6, err


def test_hessian_matches_force_differences_symmetric_and_translation_invariant(triclinic_melt):
    atoms, pot = triclinic_melt
    H = pot.hessian(pot.graph(atoms)).numpy()
    n = len(atoms)
    h = 1e-5
    fd = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for a in range(3):
            fs = []
            for s in (h, -h):
                b = atoms.copy()
                b.positions[i, a] += s
                fs.append(pot.compute(pot.graph(b))["forces"].numpy().reshape(-1))
            fd[3 * i + a] = -(fs[0] - fs[1]) / (2 * h)
    err = np.abs(fd - H).max() / np.abs(H).max()
    print(f"Hessian FD rel. error {err:.2e}, acoustic sum "
          f"{np.abs(H.reshape(n, 3, n, 3).sum(axis=2)).max():.1e} eV/Å²")
    assert err < 1e-6
    assert np.abs(fd - fd.T).max() / np.abs(H).max() < 1e-6  # the FD route is symmetric too
    asr = H.reshape(n, 3, n, 3).sum(axis=2)
    assert np.abs(asr).max() < 1e-8


def test_batch_of_copies_gives_the_same_energies(triclinic_melt):
    from cgkit.data import batch_graphs
    atoms, pot = triclinic_melt
    g1 = pot.graph(atoms)
    b = atoms.copy()
    b.positions += 0.02
    g2 = pot.graph(b)
    out = pot.compute(batch_graphs([g1, g2]), stress=True)
    o1, o2 = pot.compute(g1, stress=True), pot.compute(g2, stress=True)
    assert torch.allclose(out["energy"], torch.cat([o1["energy"], o2["energy"]]), atol=1e-12)
    assert torch.allclose(out["forces"], torch.cat([o1["forces"], o2["forces"]]), atol=1e-12)


# ---------------------------------------------------------------------------------- persistence
def test_save_and_load_roundtrip(tmp_path, triclinic_melt):
    atoms, pot = triclinic_melt
    pot.save(tmp_path / "trappe.pt")
    back = load_potential(tmp_path / "trappe.pt")
    assert isinstance(back, TraPPEUA)
    assert back.r_on == 6.0 and back.r_cut == 8.0
    assert abs(energy(back, atoms) - energy(pot, atoms)) < 1e-12


def test_builtin_spec_without_topology_explains_what_to_do():
    with pytest.raises(InputError, match="from_atoms"):
        load_potential("cgkit:trappe_ua")


# ---------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_cgkit_errors():
    topo = Topology.from_bonds(4, [(0, 1), (1, 2), (2, 3)])
    with pytest.raises(UnknownSpeciesError):
        TraPPEUA(["CH3", "CH2", "CH2", "OH"], topo)
    with pytest.raises(InputError, match="same sites"):
        TraPPEUA(["CH3", "CH2", "CH3"], topo)
    with pytest.raises(InputError, match="has 2 bonds"):
        TraPPEUA(["CH3", "CH3", "CH2", "CH3"], topo)
    with pytest.raises(InputError, match="r_on < r_cut"):
        TraPPEUA(["CH3", "CH2", "CH2", "CH3"], topo, r_on=10.0, r_cut=9.0)
    pot = butane_potential()
    pentane = Atoms("C5", positions=np.arange(15.0).reshape(5, 3))
    pentane.arrays["bead_types"] = np.array(["CH3", "CH2", "CH2", "CH2", "CH3"])
    with pytest.raises(InputError, match="built for 4 sites"):
        pot.graph(pentane) and pot.compute(pot.graph(pentane))
    swapped = butane(180.0)
    swapped.arrays["bead_types"] = np.array(["CH2", "CH3", "CH2", "CH3"])
    with pytest.raises(CgkitError, match="different site type"):
        pot.compute(pot.graph(swapped))


# ---------------------------------------------------------------------------------- (c) LAMMPS
LMP = shutil.which("lmp") or shutil.which("lmp_serial")


def _lammps_input(types, r_on, r_cut):
    K = kB  # K → eV
    lines = ["units metal", "atom_style molecular", "boundary p p p", "read_data melt.data",
             f"pair_style lj/mdf {r_on} {r_cut}"]
    for a, ta in enumerate(types, 1):
        for b, tb in enumerate(types, 1):
            if b < a:
                continue
            eps = np.sqrt(EPS[ta] * EPS[tb]) * K
            lines.append(f"pair_coeff {a} {b} {eps:.16e} {0.5 * (SIG[ta] + SIG[tb]):.16e}")
    lines += ["special_bonds lj 0.0 0.0 0.0", "bond_style harmonic",
              f"bond_coeff * {0.5 * KB_BOND * K:.16e} {R0}", "angle_style harmonic",
              f"angle_coeff * {0.5 * KB_ANGLE * K:.16e} {THETA0}", "dihedral_style opls",
              f"dihedral_coeff * {2 * C1 * K:.16e} {2 * C2 * K:.16e} {2 * C3 * K:.16e} 0.0",
              "neighbor 2.0 bin", "thermo_style custom step pe ebond eangle edihed evdwl",
              "run 0", 'print "CGKIT_PE $(pe:%.16e)"',
              "write_dump all custom forces.dump id fx fy fz modify format float %.16e sort id"]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(LMP is None, reason="LAMMPS binary 'lmp' not found (Debian package 'lammps'); "
                                         "the cross-check against LAMMPS needs it")
@pytest.mark.parametrize("n_chains,shear", [(5, 0.0), (5, 0.1), (2, 0.0)],
                         ids=["orthorhombic", "triclinic", "box-below-cutoff"])
def test_energy_and_forces_match_lammps(tmp_path, n_chains, shear):
    """Same melt in LAMMPS (lj/mdf, harmonic, opls, special_bonds 0 0 0). With 2 chains the
    box (11.4 Å) is shorter than r_cut + bond length, so periodic images of excluded 1-2/1-3/1-4
    pairs interact (LAMMPS excludes only the minimum-image copy, as cgkit does)."""
    atoms, topo = build_pe_melt(n_chains, 24, 0.75, seed=11, relax=False, min_distance=3.0)
    atoms.positions += np.random.default_rng(5).normal(0.0, 0.03, atoms.positions.shape)
    if shear:
        cell = atoms.cell.array.copy()
        cell[1, 0] += shear * cell[1, 1]
        cell[2, 0] += 0.5 * shear * cell[2, 2]
        cell[2, 1] -= shear * cell[2, 2]
        atoms.set_cell(cell, scale_atoms=True)
    r_on, r_cut = 8.5, 10.0
    pot = TraPPEUA.from_atoms(atoms, topo, r_on=r_on, r_cut=r_cut)
    out = pot.compute(pot.graph(atoms))
    write_lammps_data(tmp_path / "melt.data", atoms, topo)
    (tmp_path / "in.lmp").write_text(_lammps_input(["CH3", "CH2"], r_on, r_cut))
    run = subprocess.run([LMP, "-in", "in.lmp", "-log", "log.lammps", "-screen", "none"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "log.lammps").read_text()
    assert run.returncode == 0, log[-2000:]
    e_lmp = float(next(l.split()[1] for l in log.splitlines() if l.startswith("CGKIT_PE")))
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    f_lmp = rows[np.argsort(rows[:, 0]), 1:4]
    # LAMMPS works in its rotated frame (a along x, b in xy): rotate back
    q, _ = np.linalg.qr(atoms.cell.array.T)
    q = q * np.sign(np.diag(np.linalg.qr(atoms.cell.array.T)[1]))
    f_lmp = f_lmp @ q.T
    e = float(out["energy"][0])
    print(f"LAMMPS: E rel. diff {abs(e - e_lmp) / abs(e_lmp):.1e}, "
          f"max |ΔF| {np.abs(out['forces'].numpy() - f_lmp).max():.1e} eV/Å")
    assert abs(e - e_lmp) / abs(e_lmp) < 1e-8, (e, e_lmp)
    assert np.abs(out["forces"].numpy() - f_lmp).max() < 1e-6


def test_branched_2_methylbutane_hand_computed():
    """CH branch point: 112° angles at CH, CHx–CH–CH2–CHy torsion with c0 (Martin & Siepmann 1999)."""
    types = ["CH3", "CH", "CH3", "CH2", "CH3"]
    bonds = [(0, 1), (1, 2), (1, 3), (3, 4)]
    pos = np.array([[0.0, 0.0, 0.0], [1.52, 0.1, 0.0], [2.1, 1.5, 0.1], [2.05, -0.9, 1.0],
                    [3.55, -0.8, 1.3]])
    pos += np.random.default_rng(2).normal(0, 0.05, pos.shape)
    atoms = Atoms("C5", positions=pos)
    atoms.arrays["bead_types"] = np.array(types)
    pot = TraPPEUA(types, Topology.from_bonds(5, bonds))
    c = (-251.06, 428.73, -111.85, 441.27)
    hand = sum(0.5 * KB_BOND * (atoms.get_distance(a, b) - R0) ** 2 for a, b in bonds)
    for i, j, k in [(0, 1, 2), (0, 1, 3), (2, 1, 3)]:
        hand += 0.5 * KB_ANGLE * np.deg2rad(atoms.get_angle(i, j, k) - 112.0) ** 2
    hand += 0.5 * KB_ANGLE * np.deg2rad(atoms.get_angle(1, 3, 4) - 114.0) ** 2
    for d in [(0, 1, 3, 4), (2, 1, 3, 4)]:
        p = np.deg2rad(atoms.get_dihedral(*d))
        hand += c[0] + c[1] * (1 + np.cos(p)) + c[2] * (1 - np.cos(2 * p)) + c[3] * (1 + np.cos(3 * p))
    assert abs(energy(pot, atoms) - hand * kB) < 1e-10  # no pair is more than 3 bonds apart


def test_float32_calculator_and_strain_hessian_run(triclinic_melt):
    import copy

    from cgkit.calculator import CgkitCalculator
    atoms, pot = triclinic_melt
    a = atoms.copy()
    # (deepcopy: the calculator casts the potential module in place)
    a.calc = CgkitCalculator(copy.deepcopy(pot), dtype=torch.float32)
    f32 = a.get_forces()
    f64 = pot.compute(pot.graph(atoms))["forces"].numpy()
    assert np.abs(f32 - f64).max() < 1e-3 * np.abs(f64).max()
    H = pot.hessian(pot.graph(atoms), include_strain=True)
    assert H.shape == (3 * len(atoms) + 6,) * 2 and torch.isfinite(H).all()
    assert H.dtype == torch.float64
