"""Charged potentials against LAMMPS (issue 15): rigid-ion NaCl (``pair_style born/coul/long``
+ ``kspace_style ewald``) and SPC/Fw water (``lj/cut/coul/long``, harmonic bonds and angles,
``special_bonds lj/coul 0 0 0``) — energies, forces and stress of the same structures.

Also the LAMMPS driver the phonon/elastic NAC tests use (:func:`run_lammps`): many
structures in one ``lmp`` process (``clear`` between them), triclinic boxes rotated into
LAMMPS's frame and results rotated back."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from cgkit.io_lammps import lammps_box

LMP = shutil.which("lmp") or shutil.which("lmp_serial")
needs_lammps = pytest.mark.skipif(
    LMP is None, reason="LAMMPS binary 'lmp' not found (Debian package 'lammps', with KSPACE); "
                        "the cross-check against LAMMPS needs it")

BAR_TO_EV_A3 = 1e-4 / 160.21766208  # 1 bar = 1e-4 GPa


def _data_file(path, atoms, types, charges, mol=None, bonds=(), angles=()):
    """A LAMMPS ``atom_style full`` data file of ``atoms`` in LAMMPS's rotated frame."""
    Q, L = lammps_box(atoms.cell.array)
    frac = atoms.get_scaled_positions(wrap=True)
    x = frac @ L
    n_types = len(set(types.values()))
    lines = ["cgkit charged test", "", f"{len(atoms)} atoms", f"{len(bonds)} bonds",
             f"{len(angles)} angles", f"{n_types} atom types",
             f"{1 if bonds else 0} bond types", f"{1 if angles else 0} angle types", "",
             f"0 {L[0, 0]:.16e} xlo xhi", f"0 {L[1, 1]:.16e} ylo yhi", f"0 {L[2, 2]:.16e} zlo zhi",
             f"{L[1, 0]:.16e} {L[2, 0]:.16e} {L[2, 1]:.16e} xy xz yz", "", "Masses", ""]
    masses = {}
    for s, m in zip(atoms.get_chemical_symbols(), atoms.get_masses()):
        masses[types[s]] = m
    lines += [f"{t} {masses[t]:.10f}" for t in sorted(masses)] + ["", "Atoms # full", ""]
    syms = atoms.get_chemical_symbols()
    for k in range(len(atoms)):
        m = 1 if mol is None else mol[k]
        lines.append(f"{k + 1} {m} {types[syms[k]]} {charges[k]:.16e} {x[k, 0]:.16e} "
                     f"{x[k, 1]:.16e} {x[k, 2]:.16e}")
    if bonds:
        lines += ["", "Bonds", ""] + [f"{k + 1} 1 {a + 1} {b + 1}" for k, (a, b) in enumerate(bonds)]
    if angles:
        lines += ["", "Angles", ""] + [f"{k + 1} 1 {a + 1} {b + 1} {c + 1}"
                                       for k, (a, b, c) in enumerate(angles)]
    path.write_text("\n".join(lines) + "\n")
    return Q


def run_lammps(workdir, structures, setup: str, *, types, charges, molecules=None) -> list[dict]:
    """Energy (eV), forces (n, 3) eV/Å and stress (3, 3) eV/Å³ (ASE sign: positive tensile)
    of every ASE structure, in the frame of the input, by one ``lmp`` run.

    ``setup``: LAMMPS commands after ``read_data`` (pair/kspace/bond styles);
    ``types`` {symbol: type}; ``charges`` a function atoms → (n,) e; ``molecules``: None or
    (mol ids, bonds, angles) with 0-based atom indices."""
    script = []
    qs = []
    for k, atoms in enumerate(structures):
        mol, bonds, angles = molecules if molecules is not None else (None, (), ())
        qs.append(_data_file(workdir / f"s{k}.data", atoms, types, charges(atoms), mol, bonds, angles))
        script += ["clear", "units metal", "atom_style full", "boundary p p p",
                   f"read_data s{k}.data", setup, "thermo_style custom step pe pxx pyy pzz pyz pxz pxy",
                   "thermo_modify format float %.16e", "run 0",
                   f'print "CGKIT {k} $(pe:%.16e) $(pxx:%.16e) $(pyy:%.16e) $(pzz:%.16e) '
                   f'$(pyz:%.16e) $(pxz:%.16e) $(pxy:%.16e) $(ecoul+elong:%.16e)"',
                   f"write_dump all custom f{k}.dump id fx fy fz modify format float %.16e sort id"]
    (workdir / "in.lmp").write_text("\n".join(script) + "\n")
    run = subprocess.run([LMP, "-in", "in.lmp", "-log", "log.lammps", "-screen", "none"],
                         cwd=workdir, capture_output=True, text=True, timeout=600,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    log = (workdir / "log.lammps").read_text() if (workdir / "log.lammps").exists() else run.stderr
    assert run.returncode == 0, log[-3000:]
    vals = {}
    for line in log.splitlines():
        if line.startswith("CGKIT "):
            p = line.split()
            vals[int(p[1])] = np.array([float(v) for v in p[2:]])
    out = []
    for k, Q in enumerate(qs):
        e, pxx, pyy, pzz, pyz, pxz, pxy, ecoul = vals[k]
        p = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
        rows = np.loadtxt(workdir / f"f{k}.dump", skiprows=9).reshape(-1, 4)
        f = rows[np.argsort(rows[:, 0]), 1:4]
        out.append({"energy": e, "forces": f @ Q.T, "coulomb": ecoul,
                    "stress": Q @ (-p * BAR_TO_EV_A3) @ Q.T})
    return out


# ------------------------------------------------------------------------ NaCl set-up
def nacl_lammps_setup(cutoff: float, accuracy: float = 1e-10, coul_cutoff: float = 12.0) -> str:
    """LAMMPS commands reproducing :class:`cgkit.potentials.NaClBMH` (mode "shift")."""
    from cgkit.potentials.nacl import FUMI_TOSI as F
    lines = [f"pair_style born/coul/long {cutoff} {coul_cutoff}"]
    for a in range(2):
        for b in range(a, 2):
            lines.append(f"pair_coeff {a + 1} {b + 1} {F['A'][a][b]:.16e} {F['rho']} "
                         f"{F['sigma'][a][b]} {F['C'][a][b]:.16e} {-F['D'][a][b]:.16e}")
    lines += ["pair_modify shift yes table 0", f"kspace_style ewald {accuracy}"]
    return "\n".join(lines)


def nacl_charges(atoms):
    return np.where(np.array(atoms.get_chemical_symbols()) == "Na", 1.0, -1.0)


def rattled_nacl(seed=0, a=5.64, repeat=(1, 1, 1), rattle=0.1, shear=0.0):
    rng = np.random.default_rng(seed)
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(repeat)
    if shear:
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + shear * rng.uniform(-1, 1, (3, 3))),
                       scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    return atoms


# ------------------------------------------------------------------------ water set-up
def water_box(n_side=2, spacing=3.1, seed=1, shear=0.0):
    """n_side³ SPC/Fw-like molecules on a jittered lattice (random orientations)."""
    rng = np.random.default_rng(seed)
    pos, syms = [], []
    theta = np.radians(109.0)
    for ijk in np.ndindex(n_side, n_side, n_side):
        o = (np.array(ijk) + 0.5) * spacing + rng.normal(0, 0.15, 3)
        R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        h1 = np.array([1.0, 0.0, 0.0]) * rng.uniform(0.98, 1.05)
        h2 = np.array([np.cos(theta), np.sin(theta), 0.0]) * rng.uniform(0.98, 1.05)
        pos += [o, o + R @ h1, o + R @ h2]
        syms += ["O", "H", "H"]
    cell = np.eye(3) * n_side * spacing
    if shear:
        cell = cell @ (np.eye(3) + shear * rng.uniform(-1, 1, (3, 3)))
        frac = np.linalg.solve((np.eye(3) * n_side * spacing).T, np.array(pos).T).T
        pos = frac @ cell
    return Atoms(syms, positions=pos, cell=cell, pbc=True)


def water_topology(atoms):
    mol = [k // 3 + 1 for k in range(len(atoms))]
    bonds = [(3 * m, 3 * m + h) for m in range(len(atoms) // 3) for h in (1, 2)]
    angles = [(3 * m + 1, 3 * m, 3 * m + 2) for m in range(len(atoms) // 3)]
    return mol, bonds, angles


def spcfw_lammps_setup(cutoff: float, accuracy: float = 1e-10, coul_cutoff: float = 9.0) -> str:
    from cgkit.potentials.spcfw import KCAL_PER_MOL as K, SPCFW_PARAMETERS as P
    return "\n".join([
        f"pair_style lj/cut/coul/long {cutoff} {coul_cutoff}",
        f"pair_coeff 1 1 {P['epsilon'] * K:.16e} {P['sigma']}",      # O–O
        "pair_coeff 1 2 0.0 1.0", "pair_coeff 2 2 0.0 1.0",
        "pair_modify shift yes table 0",
        "bond_style harmonic", f"bond_coeff 1 {0.5 * P['k_bond'] * K:.16e} {P['r0']}",
        "angle_style harmonic", f"angle_coeff 1 {0.5 * P['k_angle'] * K:.16e} {P['theta0']}",
        "special_bonds lj/coul 0.0 0.0 0.0",
        f"kspace_style ewald {accuracy}"])


# ------------------------------------------------------------------------ tests
def _compare(pot, atoms, ref, *, e_tol=3e-6, f_tol=3e-6, s_tol=1e-6, extra_scale=0.0):
    """LAMMPS's coul/long evaluates erfc by the Abramowitz–Stegun 7.1.26 polynomial (relative
    error up to 1.5e-7 per pair term), so its energies are good to ~1e-6 relative, whatever the
    kspace accuracy (cgkit's Ewald gives the exact Madelung constants to 1e-10, see
    tests/electrostatics): tolerances ``e_tol`` × the energy scale max(|E|, |E_Coulomb|,
    ``extra_scale``; e.g. the size of the excluded intramolecular Coulomb terms LAMMPS
    subtracts from its k-space sum with the same approximate erf),
    ``f_tol`` × max |F|, and ``s_tol`` × scale/V for the stress (a near-equilibrium stress is
    itself tiny)."""
    out = pot.compute(pot.graph(atoms), forces=True, stress=True)
    e, f, s = float(out["energy"][0]), out["forces"].numpy(), out["stress"][0].numpy()
    fscale = np.abs(ref["forces"]).max()
    escale = max(abs(ref["energy"]), abs(ref["coulomb"]), extra_scale)
    sscale = escale / atoms.get_volume()
    print(f"E {e:.10f} vs LAMMPS {ref['energy']:.10f} (|ΔE|/{escale:.3g} eV {abs(e - ref['energy']) / escale:.1e}); "
          f"max|ΔF|/max|F| {np.abs(f - ref['forces']).max() / fscale:.1e}; "
          f"max|Δσ|/(scale/V) {np.abs(s - ref['stress']).max() / sscale:.1e} (max|σ| "
          f"{np.abs(ref['stress']).max():.1e} eV/Å³)")
    assert abs(e - ref["energy"]) < e_tol * escale
    assert np.abs(f - ref["forces"]).max() < f_tol * fscale
    assert np.abs(s - ref["stress"]).max() < s_tol * sscale


@needs_lammps
def test_nacl_bmh_matches_lammps_born_coul_long_ewald(tmp_path):
    """Rattled NaCl (orthorhombic 64 ions and a sheared triclinic 8-ion cell smaller than the
    cutoffs): energy, forces and stress equal LAMMPS born/coul/long + ewald."""
    from cgkit.potentials import NaClBMH
    cutoff = 7.0
    pot = NaClBMH(cutoff=cutoff, accuracy=1e-10)
    structures = [rattled_nacl(0, repeat=(2, 2, 2)), rattled_nacl(1, shear=0.12)]
    refs = run_lammps(tmp_path, structures, nacl_lammps_setup(cutoff), types={"Na": 1, "Cl": 2},
                      charges=nacl_charges)
    for atoms, ref in zip(structures, refs):
        _compare(pot, atoms, ref)


@needs_lammps
def test_spcfw_matches_lammps(tmp_path):
    """8 SPC/Fw molecules in a 6.2 Å box (orthorhombic and sheared): energy, forces and stress
    equal LAMMPS lj/cut/coul/long + harmonic bonds/angles + special_bonds 0 0 0 + ewald. The box
    is smaller than the LJ cutoff, so molecules see several images of each other."""
    from cgkit.potentials import SPCFw
    cutoff = 7.0
    pot = SPCFw(cutoff=cutoff, accuracy=1e-10)
    for shear in (0.0, 0.1):
        atoms = water_box(2, 3.1, seed=3, shear=shear)
        ref = run_lammps(tmp_path, [atoms], spcfw_lammps_setup(cutoff), types={"O": 1, "H": 2},
                         charges=pot.charges_of, molecules=water_topology(atoms))[0]
        q = pot.charges_of(atoms)
        d = atoms.get_all_distances(mic=True)
        excluded = sum(14.399645 * abs(q[i] * q[j]) / d[i, j] for m in range(len(atoms) // 3)
                       for i, j in ((3 * m, 3 * m + 1), (3 * m, 3 * m + 2), (3 * m + 1, 3 * m + 2)))
        _compare(pot, atoms, ref, extra_scale=excluded)
