"""Export to LAMMPS and GROMACS: tables read back reproduce the forces; LAMMPS itself agrees."""
import math
import shutil
import subprocess

import numpy as np
import pytest

from cgkit.data import AtomicGraph
from cgkit.errors import NotSupportedError
from cgkit.export import lammps_special_bonds, read_lammps_table, read_xvg, write_gromacs, write_lammps
from cgkit.forcematch import Table, TabulatedPotential
from cgkit.topology import Topology
from cgkit.units import KJ_PER_MOL_TO_EV

from .test_tabulated import _tables

BOX = 16.0


def _sane_system(seed=1):
    """4 chains A-B-B-A, non-bonded beads ≥ 2.3 Å apart, bond lengths 1.2–1.8 Å."""
    rng = np.random.default_rng(seed)
    pos = []
    bonds, angles, dih = [], [], []
    m = 0
    while m < 4:
        x = [rng.uniform(2, BOX - 2, 3)]
        for _ in range(3):
            v = rng.normal(size=3)
            x.append(x[-1] + rng.uniform(1.2, 1.8) * v / np.linalg.norm(v))
        x = np.array(x)
        ok = all(np.linalg.norm(x[a] - x[b]) > 2.3 for a in range(4) for b in range(a + 2, 4))
        if pos:
            P = np.array(pos)
            dd = P[None] - x[:, None]
            dd -= BOX * np.round(dd / BOX)
            ok &= np.linalg.norm(dd, axis=-1).min() > 2.3
        if not ok:
            continue
        o = 4 * m
        bonds += [(o, o + 1), (o + 1, o + 2), (o + 2, o + 3)]
        angles += [(o, o + 1, o + 2), (o + 1, o + 2, o + 3)]
        dih += [(o, o + 1, o + 2, o + 3)]
        pos += list(x)
        m += 1
    excl = Topology.from_bonds(16, bonds, exclude=1).exclusions
    top = Topology(n_particles=16, bonds=bonds, angles=angles, dihedrals=dih, exclusions=excl)
    return np.array(pos), top, np.tile([0, 1, 1, 0], 4)


def _forces(pot, pos, species, cell=None):
    cell = np.eye(3) * BOX if cell is None else cell
    g = AtomicGraph.from_arrays(pos, cell, True, pot.cutoff, species=species, type_names=("A", "B"))
    out = pot.compute(g)
    return out["forces"].numpy(), float(out["energy"][0])


def test_lammps_tables_read_back_reproduce_the_forces(tmp_path):
    pos, top, species = _sane_system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    write_lammps(pot, tmp_path, n_points=3000)
    back = []
    for t in pot.tables:
        key = {"pair": "PAIR", "bond": "BOND", "angle": "ANGLE", "dihedral": "DIH"}[t.kind] + "_" + "_".join(t.types)
        x, e, f = read_lammps_table(tmp_path / f"{t.kind}.table", key)
        if t.kind in ("angle", "dihedral"):
            x, f = np.radians(x), f * 180.0 / math.pi
        if t.kind == "dihedral":  # close the period for cgkit's table
            x, e, f = np.append(x, x[0] + 2 * math.pi), np.append(e, e[0]), np.append(f, f[0])
        assert np.allclose(np.diff(x), x[1] - x[0])
        back.append(Table(t.kind, t.types, x[0], x[1] - x[0], e, -f))
    pot2 = TabulatedPotential(["A", "B"], top, back)
    f1, e1 = _forces(pot, pos, species)
    f2, e2 = _forces(pot2, pos, species)
    assert np.abs(f1 - f2).max() < 1e-4 * np.abs(f1).max()
    assert abs(e1 - e2) < 1e-5


def test_gromacs_tables_have_gromacs_units_names_and_read_back(tmp_path):
    pos, top, species = _sane_system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    index = write_gromacs(pot, tmp_path)
    assert index["bond A-B"]["file"] == "table_b0.xvg"
    assert index["angle A-B-B"]["file"] == "table_a0.xvg"
    assert index["dihedral A-B-B-A"]["file"] == "table_d0.xvg"
    assert index["pair A-B"]["file"] == "table_A_B.xvg" and "2020" in index["pair A-B"]["note"]
    nb = read_xvg(tmp_path / "table_A_A.xvg")
    assert nb.shape[1] == 7 and nb[0, 0] == 0.0 and np.allclose(np.diff(nb[:, 0]), 0.002)
    # column h is the potential in kJ/mol at r in nm; -h' its force in kJ/mol/nm
    t = pot.table("pair", ("A", "A"))
    sel = (nb[:, 0] * 10 > t.x0) & (nb[:, 0] * 10 < t.x_max)
    U, f = t(nb[sel, 0] * 10)
    assert np.allclose(nb[sel, 5] * KJ_PER_MOL_TO_EV, U, atol=1e-9)
    assert np.allclose(nb[sel, 6] * KJ_PER_MOL_TO_EV / 10, f, atol=1e-9)
    # read back the bonded tables and the pair tables → same forces
    back = []
    for tb in pot.tables:
        a = read_xvg(tmp_path / index[tb.label]["file"])
        if tb.kind == "pair":
            x, e, f = a[1:, 0] * 10, a[1:, 5] * KJ_PER_MOL_TO_EV, a[1:, 6] * KJ_PER_MOL_TO_EV / 10
            keep = x <= tb.x_max + 1e-9
            x, e, f = x[keep], e[keep], f[keep]
        elif tb.kind == "bond":
            x, e, f = a[:, 0] * 10, a[:, 1] * KJ_PER_MOL_TO_EV, a[:, 2] * KJ_PER_MOL_TO_EV / 10
        else:
            x, e, f = np.radians(a[:, 0]), a[:, 1] * KJ_PER_MOL_TO_EV, a[:, 2] * KJ_PER_MOL_TO_EV * 180 / math.pi
        back.append(Table(tb.kind, tb.types, x[0], x[1] - x[0], e, -f))
    f1, _ = _forces(pot, pos, species)
    f2, _ = _forces(TabulatedPotential(["A", "B"], top, back), pos, species)
    assert np.abs(f1 - f2).max() < 2e-3 * np.abs(f1).max()


def test_exclusions_that_lammps_cannot_express_are_refused():
    top = Topology.from_bonds(4, [(0, 1), (1, 2), (2, 3)], exclude=2)
    assert lammps_special_bonds(top) == "special_bonds lj 0.0 0.0 1.0"
    odd = Topology(n_particles=4, bonds=[(0, 1), (1, 2), (2, 3)], exclusions=[(0, 3)])
    with pytest.raises(NotSupportedError, match="exclusions"):
        lammps_special_bonds(odd)


@pytest.mark.skipif(shutil.which("lmp") is None, reason="LAMMPS executable 'lmp' not found "
                    "(Debian package lammps); the LAMMPS cross-check needs it")
def test_lammps_forces_with_exported_tables_equal_cgkit_forces(tmp_path):
    pos, top, species = _sane_system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    write_lammps(pot, tmp_path, positions=pos, box=[BOX] * 3, masses=np.full(16, 30.0),
                 species=species, n_points=4000, run_forces_only=True)
    r = subprocess.run(["lmp", "-in", "in.cg", "-log", "log.lammps", "-screen", "none"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (tmp_path / "log.lammps").read_text()[-2000:]
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    rows = rows[np.argsort(rows[:, 0])]
    f_lmp = rows[:, 5:8]
    f_cg, e_cg = _forces(pot, pos, species)
    assert np.abs(f_lmp - f_cg).max() < 1e-4 * np.abs(f_cg).max() + 1e-6
    log = (tmp_path / "log.lammps").read_text().splitlines()
    k = next(i for i, line in enumerate(log) if line.split()[:2] == ["Step", "PotEng"])
    pe, e_bond, e_angle, e_dih, e_vdw = map(float, log[k + 1].split()[1:6])
    assert abs(pe - e_cg) < 1e-5
    assert min(abs(e_bond), abs(e_angle), abs(e_dih), abs(e_vdw)) > 1e-3  # every table is exercised


def _triclinic_system():
    """The sane system sheared into a tilted cell and then rotated by a random rotation, so
    that LAMMPS's lower-triangular frame differs from cgkit's by a real rotation."""
    from scipy.spatial.transform import Rotation
    pos, top, species = _sane_system()
    sheared = np.array([[BOX, 0, 0], [3.0, BOX, 0], [-2.5, 2.0, BOX]])
    R = Rotation.random(random_state=5).as_matrix()
    cell = sheared @ R
    return (pos / BOX) @ cell, cell, top, species


def test_lammps_box_rotates_a_cell_into_lower_triangular_form():
    _, cell, _, _ = _triclinic_system()
    from cgkit.export import lammps_box
    Q, lower = lammps_box(cell)
    assert np.allclose(Q @ Q.T, np.eye(3), atol=1e-12) and np.linalg.det(Q) > 0
    assert np.allclose(cell @ Q, lower, atol=1e-12)
    assert np.allclose(np.triu(lower, 1), 0, atol=1e-12) and np.all(np.diag(lower) > 0)
    assert np.allclose(lower, [[BOX, 0, 0], [3.0, BOX, 0], [-2.5, 2.0, BOX]], atol=1e-9)


def test_lammps_export_refuses_tilts_beyond_lammps_limits(tmp_path):
    pos, top, species = _sane_system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    with pytest.raises(NotSupportedError, match="niggli_reduce"):
        write_lammps(pot, tmp_path, positions=pos, box=[[BOX, 0, 0], [0.8 * BOX, BOX, 0], [0, 0, BOX]],
                     masses=np.full(16, 30.0), species=species)


@pytest.mark.skipif(shutil.which("lmp") is None, reason="LAMMPS executable 'lmp' not found "
                    "(Debian package lammps); the LAMMPS cross-check needs it")
def test_lammps_forces_in_a_rotated_triclinic_cell_equal_cgkit_forces(tmp_path):
    pos, cell, top, species = _triclinic_system()
    pot = TabulatedPotential(["A", "B"], top, _tables())
    w = write_lammps(pot, tmp_path, positions=pos, box=cell, masses=np.full(16, 30.0),
                     species=species, n_points=3000, run_forces_only=True)
    assert "xy xz yz" in (tmp_path / "cg.data").read_text()
    r = subprocess.run(["lmp", "-in", "in.cg", "-log", "log.lammps", "-screen", "none"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (tmp_path / "log.lammps").read_text()[-2000:]
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    rows = rows[np.argsort(rows[:, 0])]
    f_lmp = rows[:, 5:8] @ w["rotation"].T  # back from LAMMPS's frame
    f_cg, e_cg = _forces(pot, pos, species, cell)
    assert np.abs(f_lmp - f_cg).max() < 1e-4 * np.abs(f_cg).max() + 1e-6
    log = (tmp_path / "log.lammps").read_text().splitlines()
    k = next(i for i, line in enumerate(log) if line.split()[:2] == ["Step", "PotEng"])
    assert abs(float(log[k + 1].split()[1]) - e_cg) < 1e-5
