"""Trajectory readers (units at the edge), the streaming CG writer, the `cgkit map` CLI and the
optimized force map (on GROMACS hexane data when present)."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cgkit.cli import main
from cgkit.errors import InputError
from cgkit.mapping import Mapping
from cgkit.mapping.forcemap import MappedForceNoise
from cgkit.trajectory import CGTrajectoryWriter, Frame, open_trajectory, read_cg_atoms

from .conftest import MAPPINGS, ROOT

HEXDATA = ROOT / "case_studies" / "hexane" / "data"
KJMOL = 0.010364269656262174      # kJ/mol in eV (CODATA: 1000 / (N_A e))
KCALMOL = 0.04336410390059322      # kcal/mol in eV


def _water_xyz(path, nframes=3, seed=0):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    rng = np.random.default_rng(seed)
    frames = []
    base = np.array([[0, 0, 0], [0.9, 0, 0], [-0.22, 0.87, 0]])
    for k in range(nframes):
        pos = np.concatenate([base + c for c in ([1, 1, 1], [5, 5, 5], [8.5, 2, 6])])
        pos += rng.normal(0, 0.02, pos.shape)
        a = Atoms("OH2OH2OH2", positions=pos, cell=[10, 10, 10], pbc=True)
        a.calc = SinglePointCalculator(a, forces=rng.normal(size=(9, 3)))
        frames.append(a)
    ase.io.write(str(path), frames, format="extxyz")
    return frames


def test_extxyz_read_map_and_write_trr_read_back_by_mdanalysis_and_ase(tmp_path):
    import MDAnalysis as mda
    frames = _water_xyz(tmp_path / "w.xyz")
    yml = tmp_path / "w.yaml"
    # ASE Atoms: residues are molecules named by formula, atoms element+running number
    yml.write_text("version: 1\nmolecules:\n  - name: W\n    resname: H2O\n    beads:\n"
                   "      - {name: W, type: W, atoms: [O1, H1, H2], weights: mass}\n")
    traj = open_trajectory(tmp_path / "w.xyz")
    m = Mapping.from_yaml(yml, traj.topology)
    assert m.n_beads == 3
    with CGTrajectoryWriter(tmp_path / "cg.trr", m) as w:
        for cg in m.iter_map(traj):
            w.write(cg)
    u = mda.Universe(str(tmp_path / "cg.psf"), str(tmp_path / "cg.trr"))
    assert len(u.trajectory) == 3 and list(u.atoms.types) == ["W"] * 3
    for ts, a, at in zip(u.trajectory, frames, read_cg_atoms(tmp_path / "cg.psf", tmp_path / "cg.trr")):
        ref_f = m.map_forces(a.get_forces())
        np.testing.assert_allclose(ts.forces * KJMOL, ref_f, atol=1e-5)       # kJ/(mol·Å) in MDA
        np.testing.assert_allclose(at.get_forces(), ref_f, atol=1e-5)
        ref_x = [a[3 * k:3 * k + 3].get_center_of_mass() for k in range(3)]
        np.testing.assert_allclose(ts.positions, ref_x, atol=1e-4)
        np.testing.assert_allclose(u.dimensions[:3], 10.0, atol=1e-4)


def test_gromacs_trr_forces_are_converted_from_kj_mol_nm(tmp_path):
    import MDAnalysis as mda
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile
    u = mda.Universe.empty(3, trajectory=True)
    u.add_TopologyAttr("names", ["OW", "HW1", "HW2"])
    u.add_TopologyAttr("resnames", ["SOL"])
    u.atoms.positions = np.zeros((3, 3))
    u.dimensions = [20, 20, 20, 90, 90, 90]
    u.atoms.write(str(tmp_path / "w.gro"))
    f_gmx = np.array([[100.0, -50.0, 25.0], [1.0, 2.0, 3.0], [0.0, 0.0, -7.0]])  # kJ/mol/nm
    x_nm = np.array([[1.0, 1.0, 1.0], [1.1, 1.0, 1.0], [1.0, 1.1, 1.0]])
    with TRRFile(str(tmp_path / "w.trr"), "w") as t:   # raw GROMACS units, written directly
        t.write(x_nm, None, f_gmx, np.eye(3) * 2.0, 0, 0.5, 1.0, 3)
    fr = next(iter(open_trajectory(tmp_path / "w.gro", tmp_path / "w.trr")))
    np.testing.assert_allclose(fr.forces, f_gmx * KJMOL / 10.0, rtol=1e-6)
    np.testing.assert_allclose(fr.positions, x_nm * 10.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(fr.cell), 20.0)
    assert fr.time == pytest.approx(500.0)          # 0.5 ps in fs


def test_lammps_data_and_dump_real_units(tmp_path):
    (tmp_path / "w.data").write_text("""LAMMPS data

3 atoms
2 atom types

0 10 xlo xhi
0 10 ylo yhi
0 10 zlo zhi

Masses

1 15.9994
2 1.008

Atoms # full

1 1 1 -0.8 1.0 1.0 1.0
2 1 2 0.4 1.9 1.0 1.0
3 1 2 0.4 1.0 1.9 1.0
""")
    (tmp_path / "w.dump").write_text("""ITEM: TIMESTEP
10
ITEM: NUMBER OF ATOMS
3
ITEM: BOX BOUNDS pp pp pp
0 10
0 10
0 10
ITEM: ATOMS id type x y z fx fy fz
2 2 1.9 1.0 1.0 0.5 0.0 0.0
1 1 1.0 1.0 1.0 1.0 2.0 3.0
3 2 1.0 1.9 1.0 0.0 -1.0 0.0
""")
    traj = open_trajectory(tmp_path / "w.data", tmp_path / "w.dump", lammps_units="real")
    fr = next(iter(traj))
    np.testing.assert_allclose(fr.forces, np.array([[1, 2, 3], [0.5, 0, 0], [0, -1, 0]]) * KCALMOL,
                               rtol=1e-6)
    np.testing.assert_allclose(fr.positions[1], [1.9, 1.0, 1.0], atol=1e-5)
    fr_metal = next(iter(open_trajectory(tmp_path / "w.data", tmp_path / "w.dump", lammps_units="metal")))
    np.testing.assert_allclose(fr_metal.forces[0], [1, 2, 3], rtol=1e-6)
    # LAMMPS data: residues are molecule ids, names are type numbers
    yml = tmp_path / "m.yaml"
    yml.write_text("version: 1\nmolecules:\n  - name: W\n    selection: all\n    beads:\n"
                   "      - {name: W, atoms: [0, 1, 2], weights: mass}\n")
    m = Mapping.from_yaml(yml, traj.topology)
    np.testing.assert_allclose(m.map_forces(fr.forces)[0], np.array([1.5, 1, 3]) * KCALMOL, rtol=1e-6)


def test_missing_files_and_bad_shapes_give_cgkit_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_trajectory(tmp_path / "nope.gro", tmp_path / "nope.trr")
    _water_xyz(tmp_path / "w.xyz", 1)
    traj = open_trajectory(tmp_path / "w.xyz")
    yml = tmp_path / "w.yaml"
    yml.write_text("version: 1\nmolecules:\n  - {name: W, resname: H2O, beads: [{name: W, atoms: [O1, H1, H2]}]}\n")
    m = Mapping.from_yaml(yml, traj.topology)
    with pytest.raises(InputError, match="shape"):
        m.map_positions(np.zeros((4, 3)))


def test_streaming_writer_memory_does_not_grow_with_frames(tmp_path):
    _water_xyz(tmp_path / "w.xyz", 1)
    traj = open_trajectory(tmp_path / "w.xyz")
    yml = tmp_path / "w.yaml"
    yml.write_text("version: 1\nmolecules:\n  - {name: W, resname: H2O, beads: [{name: W, atoms: [O1, H1, H2]}]}\n")
    m = Mapping.from_yaml(yml, traj.topology)
    base = next(iter(traj))

    def gen(n):
        rng = np.random.default_rng(0)
        for k in range(n):
            yield Frame(positions=base.positions + rng.normal(0, 0.01, (9, 3)), cell=base.cell,
                        pbc=base.pbc, forces=rng.normal(size=(9, 3)), time=k)

    peaks = []
    for n in (100, 800):
        tracemalloc.start()
        with CGTrajectoryWriter(tmp_path / f"cg{n}.trr", m) as w:
            for cg in m.iter_map(gen(n)):
                w.write(cg)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0] + 200_000, peaks


def test_cli_map_check_and_summary(tmp_path, capsys):
    _water_xyz(tmp_path / "w.xyz", 4)
    yml = tmp_path / "w.yaml"
    yml.write_text("version: 1\nmolecules:\n  - {name: W, resname: H2O, beads: [{name: W, type: W, "
                   "atoms: [O1, H1, H2]}]}\n")
    out = tmp_path / "out"
    rc = main(["map", "--mapping", str(yml), "--topology", str(tmp_path / "w.xyz"), "--step", "2",
               "--out", str(out), "--noise"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert (out / s["topology"]).exists() and (out / s["trajectory"]).exists()
    assert s["frames"] == 2 and s["beads_per_type"] == {"W": 3}
    assert "force_noise" in s and s["force_consistency_error"] < 1e-12
    capsys.readouterr()
    partial = tmp_path / "p.yaml"
    partial.write_text(yml.read_text().replace("atoms: [O1, H1, H2]", "atoms: [O1, H1]"))
    assert main(["map", "check", str(partial), "--topology", str(tmp_path / "w.xyz")]) == 1
    txt = capsys.readouterr().out
    assert "unmapped atoms: 3" in txt
    assert main(["map", "check", str(yml), "--topology", str(tmp_path / "w.xyz")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 3\nmolecules: []\n")
    assert main(["map", "check", str(bad), "--topology", str(tmp_path / "w.xyz")]) == 1
    assert "line 1" in capsys.readouterr().err


def test_optimized_force_map_reduces_noise_on_synthetic_molecules():
    """Forces = mean force of a bead potential + internal noise that cancels in the CG force
    only for smart maps: atom forces f = -Mᵀ∇V + internal pair forces (Newton's third law within
    a molecule, large on the hydrogens)."""
    from .conftest import build_universe
    u = build_universe([[("MeO", ["C", "HA", "HB", "HC", "O", "H"])]] * 20, seed=11)
    m = Mapping.from_yaml(MAPPINGS / "methanol_2bead.yaml", u)
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(40):
        f = np.zeros((m.n_atoms, 3))
        for mol in range(20):
            a = 6 * mol
            for i, j, s in ((a, a + 4, 3.0), (a + 1, a + 4, 1.0), (a + 5, a, 2.0)):  # C-O, HA-O, H-C
                g = rng.normal(size=3) * s
                f[i] += g
                f[j] -= g
        f += 0.05 * rng.normal(size=f.shape)
        frames.append(f)
    mo = m.optimize_force_map(frames[:20])
    assert mo.consistency_error() < 1e-10
    rep = MappedForceNoise({"basic": m, "optimized": mo}, frames[20:]).run().results
    assert rep["second_moment_total"]["optimized"] < 0.2 * rep["second_moment_total"]["basic"]


def test_constraint_groups_get_equal_force_weights():
    from cgkit.errors import MappingError

    from .conftest import build_universe
    u = build_universe([[("MeO", ["C", "HA", "HB", "HC", "O", "H"])]] * 3, seed=12)
    u.add_TopologyAttr("bonds", [(6 * k + i, 6 * k + j) for k in range(3)
                                 for i, j in ((0, 1), (0, 2), (0, 3), (0, 4), (4, 5))])
    m = Mapping.from_yaml(MAPPINGS / "methanol_2bead.yaml", u)
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(18, 3)) for _ in range(10)]
    mo = m.optimize_force_map(frames, constraints="hbonds")
    D = mo.D.toarray()
    for b in range(mo.n_beads):
        mol = 6 * (b // 2)
        np.testing.assert_allclose(D[b, mol:mol + 4], D[b, mol], atol=1e-12)       # C, HA, HB, HC
        np.testing.assert_allclose(D[b, mol + 5], D[b, mol + 4], atol=1e-12)       # O, H
    assert mo.consistency_error() < 1e-10
    free = m.optimize_force_map(frames)
    assert not np.allclose(free.D.toarray()[0, 0:4], free.D.toarray()[0, 0])
    # constraining C-O too joins both beads: no valid force map exists -> clear error
    with pytest.raises(MappingError, match="constraint"):
        m.optimize_force_map(frames, constraints="all-bonds")


@pytest.mark.skipif(not (HEXDATA / "aa_subset.trr").exists(),
                    reason="run case_studies/hexane/make_aa_trajectory.py to make the GROMACS data")
def test_optimized_force_map_reduces_mapped_force_variance_on_real_gromacs_hexane():
    traj = open_trajectory(HEXDATA / "aa_subset.gro", HEXDATA / "aa_subset.trr")
    m = Mapping.from_yaml(MAPPINGS / "hexane_3bead.yaml", traj.topology)
    frames = list(traj)
    assert frames[0].forces is not None and len(frames) >= 10
    half = len(frames) // 2
    mo = m.optimize_force_map(frames[:half])          # fit on the first half
    rep = MappedForceNoise({"basic": m, "optimized": mo}, frames[half:], reference="optimized").run()
    r = rep.results
    # held-out frames: the optimized map has a clearly smaller mapped-force second moment
    for t in ("A", "B"):
        assert r["second_moment"]["optimized"][t] < 0.9 * r["second_moment"]["basic"][t], r
    assert mo.consistency_error() < 1e-10
