"""Right or refused at the trajectory edge (issue 13 items 4, 8, 10, 14; issue 12 items 3, 5, 8).

Real, small inputs are written here with MDAnalysis (GROMACS TRR + GRO), ASE (extxyz) and as
LAMMPS text dumps, then corrupted the way real files are: NaN/inf frames, no forces, bytes cut
off the end (a killed run), a topology of another system. Every reader in cgkit.trajectory and
the ``cgkit map`` / ``cgkit fm`` paths that use it either give the right frames or refuse with a
cgkit error that names the file, the 0-based frame and the atoms.
"""
from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cgkit.cli import main
from cgkit.errors import InputError, StructureError
from cgkit.jsonutil import loads_strict
from cgkit.trajectory import (TruncatedTrajectoryWarning, open_trajectory, read_cg_arrays,
                              read_lammps_dump)

from .conftest import ROOT

KJMOL = 0.010364269656262174      # kJ/mol in eV
N_MOL, N_FRAMES = 3, 4
YAML = ("version: 1\nmolecules:\n  - {name: W, resname: SOL, beads: [{name: W, type: W, "
        "atoms: [OW, HW1, HW2], weights: mass}]}\n")


def _water_universe(n_mol=N_MOL):
    import MDAnalysis as mda
    n = 3 * n_mol
    u = mda.Universe.empty(n, n_residues=n_mol, atom_resindex=np.repeat(np.arange(n_mol), 3),
                           trajectory=True, forces=True)
    u.add_TopologyAttr("names", ["OW", "HW1", "HW2"] * n_mol)
    u.add_TopologyAttr("resnames", ["SOL"] * n_mol)
    u.add_TopologyAttr("resids", np.arange(1, n_mol + 1))
    u.add_TopologyAttr("masses", [15.9994, 1.008, 1.008] * n_mol)
    u.dimensions = [20.0, 20.0, 20.0, 90.0, 90.0, 90.0]
    return u


def write_water(tmp_path, *, forces=True, nan=None, n_frames=N_FRAMES, seed=0, name="w"):
    """GRO + TRR of N_MOL waters. ``nan``: (frame, atoms, 'positions'|'forces'|'inf').
    Returns (gro, trr, positions (F, n, 3) Å, forces (F, n, 3) kJ/(mol·Å))."""
    import MDAnalysis as mda
    rng = np.random.default_rng(seed)
    u = _water_universe()
    n = u.atoms.n_atoms
    base = np.concatenate([np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]) + c
                           for c in ([2, 2, 2], [8, 8, 8], [14, 4, 10])])
    X = base + rng.normal(0, 0.02, (n_frames, n, 3))
    F = rng.normal(0, 50.0, (n_frames, n, 3))
    if nan is not None:
        k, atoms, what = nan
        (F if what == "forces" else X)[k, atoms] = np.inf if what == "inf" else np.nan
    gro, trr = tmp_path / f"{name}.gro", tmp_path / f"{name}.trr"
    u.atoms.positions = base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u.atoms.write(str(gro))
        with mda.Writer(str(trr), n_atoms=n) as w:
            for k in range(n_frames):
                ts = u.trajectory.ts
                ts.positions = X[k]
                ts.has_forces = forces
                if forces:
                    ts.forces = F[k]
                ts.time = float(k)
                w.write(u.atoms)
    return gro, trr, X, F


def cut(path: Path, n_bytes: int) -> Path:
    """Drop the last ``n_bytes`` of a file (a killed writer / a partial copy)."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - n_bytes])
    for p in path.parent.glob(f".{path.name}_offsets*"):   # MDAnalysis offset cache of the whole file
        p.unlink()
    return path


def run_map(tmp_path, gro, trr, out="out", extra=()):
    yml = tmp_path / "w.yaml"
    yml.write_text(YAML)
    args = ["map", "--mapping", str(yml), "--topology", str(gro), "--out", str(tmp_path / out), *extra]
    if trr is not None:
        args += ["--trajectory", str(trr)]
    return main(args)


# ------------------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("what", ["positions", "forces", "inf"])
def test_map_refuses_non_finite_frames_naming_file_frame_and_atoms(tmp_path, capsys, what):
    gro, trr, _, _ = write_water(tmp_path, nan=(2, [1, 4], what))
    assert run_map(tmp_path, gro, trr) == 1
    err = capsys.readouterr().err
    assert err.startswith("cgkit map: error:") and "Traceback" not in err
    assert f"frame 2 of {trr}" in err
    assert "atoms 1, 4" in err and ("forces" in err if what == "forces" else "positions" in err)
    assert not (tmp_path / "out").exists()            # no partial output folder


def test_reader_checks_every_frame_and_stops_at_the_bad_one(tmp_path):
    gro, trr, X, _ = write_water(tmp_path, nan=(3, [7], "positions"))
    traj = open_trajectory(gro, trr)
    seen = []
    with pytest.raises(StructureError, match=r"frame 3 of .*w\.trr.*atoms 7"):
        for fr in traj:
            seen.append(fr.index)
            np.testing.assert_allclose(fr.positions, X[fr.index], atol=2e-3)   # TRR is float32 nm
    assert seen == [0, 1, 2]


def test_extxyz_nan_positions_are_refused(tmp_path):
    import ase.io
    from ase import Atoms
    frames = [Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]) for _ in range(3)]
    frames[1].positions[2] = np.nan
    ase.io.write(str(tmp_path / "w.xyz"), frames, format="extxyz")
    with pytest.raises(StructureError, match=r"frame 1 of .*w\.xyz.*atoms 2"):
        list(open_trajectory(tmp_path / "w.xyz"))


# ------------------------------------------------------------------------- no forces
def test_map_without_forces_writes_positions_only_and_says_so(tmp_path, capsys):
    import MDAnalysis as mda
    gro, trr, X, _ = write_water(tmp_path, forces=False)
    assert run_map(tmp_path, gro, trr) == 0
    err = capsys.readouterr().err
    assert "cgkit map: warning:" in err and "no forces" in err
    s = loads_strict((tmp_path / "out" / "summary.json").read_text())
    assert s["forces"] is None and s["mapped_force_second_moment"] is None    # never 0.0
    assert any("no forces" in w for w in s["warnings"]) and s["frames"] == N_FRAMES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(tmp_path / "out" / "cg.psf"), str(tmp_path / "out" / "cg.trr"))
    assert len(u.trajectory) == N_FRAMES
    for k, ts in enumerate(u.trajectory):
        assert not ts.has_forces
        # bead 0 = centre of mass of water 0 (independent of cgkit's matrices)
        m = np.array([15.9994, 1.008, 1.008])
        np.testing.assert_allclose(ts.positions[0], m @ X[k, :3] / m.sum(), atol=2e-3)


def test_map_with_forces_reports_the_mapped_force_second_moment(tmp_path):
    gro, trr, _, F = write_water(tmp_path)
    assert run_map(tmp_path, gro, trr) == 0
    s = loads_strict((tmp_path / "out" / "summary.json").read_text())
    assert s["forces"]["frames_with_forces"] == N_FRAMES and s["warnings"] == []
    # basic force map of a whole molecule: the bead force is the sum of its atoms' forces
    ref = np.mean([(F[k].reshape(N_MOL, 3, 3).sum(1) ** 2).sum(1) for k in range(N_FRAMES)]) * KJMOL ** 2
    assert s["mapped_force_second_moment"]["W"] == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("option", [["--noise"], ["--force-map", "optimized"]])
def test_force_options_without_forces_name_the_file_before_any_output(tmp_path, capsys, option):
    gro, trr, _, _ = write_water(tmp_path, forces=False)
    assert run_map(tmp_path, gro, trr, extra=option) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cgkit map: error:")
    assert f"frame 0 of {trr} has none" in err[0]
    assert not (tmp_path / "out").exists()


def test_unreadable_trajectory_is_one_error_line(tmp_path, capsys):
    gro, _, _, _ = write_water(tmp_path)
    (tmp_path / "notes.txt").write_text("not a trajectory\n")
    assert run_map(tmp_path, gro, tmp_path / "notes.txt") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cgkit map: error: cannot read")
    assert "notes.txt" in err[0] and "trr/xtc/dcd" in err[0]


# ------------------------------------------------------------------------- truncated files
@pytest.mark.parametrize("n_bytes", [4, 60, 150])
def test_truncated_trr_maps_its_complete_frames_with_a_warning(tmp_path, capsys, n_bytes):
    gro, trr, X, _ = write_water(tmp_path)
    cut(trr, n_bytes)
    assert run_map(tmp_path, gro, trr) == 0
    err = capsys.readouterr().err
    assert "cgkit map: warning:" in err and "incomplete frame" in err
    assert f"last complete frame is frame {N_FRAMES - 2}" in err
    s = loads_strict((tmp_path / "out" / "summary.json").read_text())
    assert s["frames"] == N_FRAMES - 1 and any("incomplete" in w for w in s["warnings"])


def test_truncated_trr_warning_from_the_shared_reader_and_fm_path(tmp_path):
    gro, trr, _, _ = write_water(tmp_path)
    assert run_map(tmp_path, gro, trr) == 0
    cg = cut(tmp_path / "out" / "cg.trr", 100)
    with pytest.warns(TruncatedTrajectoryWarning, match=f"frame {N_FRAMES - 2}"):
        P, F, *_ = read_cg_arrays(tmp_path / "out" / "cg.psf", cg)
    assert len(P) == len(F) == N_FRAMES - 1 and np.isfinite(F).all()
    with pytest.warns(TruncatedTrajectoryWarning):
        assert len(list(open_trajectory(gro, cut(trr, 100)))) == N_FRAMES - 1


def test_truncated_extxyz_and_changing_atom_count(tmp_path, capsys):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    frames = []
    for k in range(3):
        a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=[10] * 3, pbc=True)
        a.calc = SinglePointCalculator(a, forces=np.full((3, 3), float(k)))
        frames.append(a)
    ase.io.write(str(tmp_path / "w.xyz"), frames, format="extxyz")
    cut(tmp_path / "w.xyz", 12)
    with pytest.warns(TruncatedTrajectoryWarning, match="last complete frame is frame 1"):
        got = list(open_trajectory(tmp_path / "w.xyz"))
    assert [f.index for f in got] == [0, 1] and got[1].forces[0, 0] == 1.0
    ase.io.write(str(tmp_path / "v.xyz"), [frames[0], frames[0] + Atoms("H", positions=[[5, 5, 5]])],
                 format="extxyz")
    with pytest.raises(InputError, match="frame 1 of .*v.xyz has 4 atoms, frame 0 has 3"):
        open_trajectory(tmp_path / "v.xyz")


# ------------------------------------------------------------------------- atom counts
def test_topology_of_another_system_is_a_clear_error(tmp_path, capsys):
    gro, trr, _, _ = write_water(tmp_path)
    u = _water_universe(n_mol=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u.atoms.write(str(tmp_path / "small.gro"))
    assert run_map(tmp_path, tmp_path / "small.gro", trr) == 1
    err = capsys.readouterr().err
    assert "has 6 atoms but the trajectory" in err and "has 9 per frame" in err
    with pytest.raises(InputError, match="has 6 atoms but the trajectory"):
        open_trajectory(tmp_path / "small.gro", trr)


# ------------------------------------------------------------------------- output folder
def test_map_into_an_old_folder_is_refused_and_overwrite_leaves_no_stale_trr(tmp_path, capsys):
    gro, trr, _, _ = write_water(tmp_path)
    assert run_map(tmp_path, gro, trr) == 0
    assert (tmp_path / "out" / "cg.trr").exists()
    capsys.readouterr()
    assert run_map(tmp_path, gro, trr, extra=["--format", "extxyz"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "cg.trr").exists() and not (tmp_path / "out" / "cg.extxyz").exists()
    assert run_map(tmp_path, gro, trr, extra=["--format", "extxyz", "--overwrite"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "cg.trr" not in names and "cg.extxyz" in names and "summary.json" in names
    s = loads_strict((tmp_path / "out" / "summary.json").read_text())
    assert s["trajectory"] == "cg.extxyz" and s["format"] == "extxyz"


def test_noise_report_is_strict_json_and_follows_the_results_protocol(tmp_path):
    from cgkit.mapping import Mapping
    from cgkit.mapping.forcemap import MappedForceNoise
    from cgkit.results import Analysis
    gro, trr, _, _ = write_water(tmp_path)
    assert run_map(tmp_path, gro, trr, extra=["--noise"]) == 0
    loads_strict((tmp_path / "out" / "force_noise.json").read_text())
    loads_strict((tmp_path / "out" / "summary.json").read_text())
    (tmp_path / "w.yaml").write_text(YAML)
    traj = open_trajectory(gro, trr)
    m = Mapping.from_yaml(tmp_path / "w.yaml", traj.topology)
    rep = MappedForceNoise({"basic": m}, list(traj)).run()
    assert isinstance(rep, Analysis) and rep.results.frames == N_FRAMES
    paths = rep.plot(tmp_path / "plots")
    assert paths == [tmp_path / "plots" / "force_noise.png"] and paths[0].stat().st_size > 1000
    # NaN forces handed to the library directly are refused, not written as bare NaN
    bad = [np.full((m.n_atoms, 3), np.nan)]
    with pytest.raises(StructureError, match="frame 0"):
        MappedForceNoise({"basic": m}, bad).run()


def test_optimized_map_and_noise_report_progress_with_eta_off_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CGKIT_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("CGKIT_PROGRESS", raising=False)
    gro, trr, _, _ = write_water(tmp_path)
    assert run_map(tmp_path, gro, trr, extra=["--noise"]) == 0
    err = capsys.readouterr().err                        # stderr is not a terminal under pytest
    for what in ("force-map statistics", "mapping", "force noise"):
        assert f"{what}: 1/{N_FRAMES} frame" in err and f"{what}: {N_FRAMES}/{N_FRAMES} frame" in err
    assert "ETA" in err


# ------------------------------------------------------------------------- map check
def _check_files(tmp_path):
    gro, _, _, _ = write_water(tmp_path)
    good = tmp_path / "w.yaml"
    good.write_text(YAML)
    partial = tmp_path / "p.yaml"
    partial.write_text(YAML.replace("atoms: [OW, HW1, HW2]", "atoms: [OW, HW1]"))
    return gro, good, partial


def test_map_check_takes_mapping_like_map_and_keeps_the_positional_form(tmp_path, capsys):
    gro, good, _ = _check_files(tmp_path)
    assert main(["map", "check", "--mapping", str(good), "--topology", str(gro)]) == 0
    assert "9 atoms -> 3 beads" in capsys.readouterr().out
    assert main(["map", "check", str(good), "--topology", str(gro)]) == 0
    capsys.readouterr()
    assert main(["map", "check", "--mapping", str(good), "--topology", str(gro), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_beads"] == 3
    assert main(["map", "check", "--topology", str(gro)]) == 1
    assert "cgkit map: error: give the mapping definition" in capsys.readouterr().err


def test_map_check_unmapped_atoms_print_an_error_line(tmp_path, capsys):
    gro, _, partial = _check_files(tmp_path)
    assert main(["map", "check", "--mapping", str(partial), "--topology", str(gro)]) == 1
    cap = capsys.readouterr()
    assert "unmapped atoms: 3" in cap.out                 # the report is still printed
    assert cap.err.startswith("cgkit map: error:") and "3 of 9 atoms" in cap.err
    assert "in no bead" in cap.err and "2, 5, 8" in cap.err and "unmapped_atoms" in cap.err


def test_map_help_states_the_truncation_policy(capsys):
    with pytest.raises(SystemExit):
        main(["map", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "last complete frame, with a WARNING" in text and "--overwrite" in text


# ------------------------------------------------------------------------- LAMMPS dumps
def _write_dump(path, X, F, box, *, columns="id xu yu zu fx fy fz", lo=0.0, order=None):
    blocks = []
    for k in range(len(X)):
        idx = np.arange(len(X[k])) if order is None else order
        rows = []
        for i in idx:
            vals = {"id": str(i + 1), "type": "1", **{c: f"{v:.10g}" for c, v in
                    zip(("xu", "yu", "zu", "fx", "fy", "fz"), (*X[k, i], *F[k, i]))}}
            rows.append(" ".join(vals[c] for c in columns.split()))
        blocks.append(f"ITEM: TIMESTEP\n{100 * k}\nITEM: NUMBER OF ATOMS\n{len(X[k])}\n"
                      f"ITEM: BOX BOUNDS pp pp pp\n{lo} {lo + box}\n{lo} {lo + box}\n{lo} {lo + box}\n"
                      f"ITEM: ATOMS {columns}\n" + "\n".join(rows) + "\n")
    path.write_text("".join(blocks))
    return path


def test_lammps_dump_reader_matches_written_arrays_and_ase(tmp_path):
    import ase.io
    rng = np.random.default_rng(5)
    X = rng.uniform(-5, 25, (3, 7, 3))          # unwrapped: outside the box too
    F = rng.normal(0, 1, (3, 7, 3))
    order = rng.permutation(7)                   # LAMMPS writes atoms in any order
    p = _write_dump(tmp_path / "t.dump", X, F, 20.0, columns="id type xu yu zu fx fy fz", order=order)
    d = read_lammps_dump(p, units="metal")
    np.testing.assert_allclose(d.positions, X, atol=1e-5)        # MDAnalysis reads float32
    np.testing.assert_allclose(d.forces, F, atol=1e-6)
    np.testing.assert_allclose(d.box_lengths, 20.0)
    assert list(d.steps) == [0, 100, 200] and list(d.frames) == [0, 1, 2]
    ref = ase.io.read(str(p), format="lammps-dump-text", index=":", units="metal")   # independent
    for k, a in enumerate(ref):
        np.testing.assert_allclose(d.positions[k], a.positions, atol=1e-5)
        np.testing.assert_allclose(d.forces[k], a.get_forces(), atol=1e-6)
    real = read_lammps_dump(p, units="real", start=1)
    np.testing.assert_allclose(real.forces, F[1:] * 0.04336410390059322, rtol=1e-5, atol=1e-9)


def test_lammps_dump_reader_checks_truncation_and_nan(tmp_path):
    rng = np.random.default_rng(6)
    X, F = rng.uniform(0, 10, (3, 4, 3)), rng.normal(size=(3, 4, 3))
    p = _write_dump(tmp_path / "t.dump", X, F, 10.0)
    cut(p, 10)
    with pytest.warns(TruncatedTrajectoryWarning, match="last complete frame is frame 1"):
        d = read_lammps_dump(p, units="metal")
    assert d.n_frames == 2
    X[1, 2] = np.nan
    p = _write_dump(tmp_path / "n.dump", X, F, 10.0)
    with pytest.raises(StructureError, match=r"frame 1 of .*n\.dump.*atoms 2"):
        read_lammps_dump(p, units="metal")


def test_polyethylene_case_study_reads_its_dump_through_the_library(tmp_path):
    """case_studies/polyethylene/run.py:read_dump keeps its contract (positions Å, forces eV/Å,
    box lengths Å per frame) on the dump layout its LAMMPS input writes (id xu yu zu fx fy fz,
    box moved off the origin by NPT), now through cgkit.trajectory.read_lammps_dump."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("pe_run", ROOT / "case_studies" / "polyethylene" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(7)
    X, F = rng.uniform(-3, 30, (4, 6, 3)), rng.normal(size=(4, 6, 3))
    p = _write_dump(tmp_path / "traj.dump", X, F, 25.0, lo=1.5)
    cut(p, 7)                                               # LAMMPS killed while writing
    with pytest.warns(TruncatedTrajectoryWarning):
        pos, frc, box = mod.read_dump(p)
    assert pos.shape == frc.shape == (3, 6, 3) and box.shape == (3, 3)
    np.testing.assert_allclose(frc, F[:3], atol=1e-6)
    np.testing.assert_allclose(box, 25.0)
    # the box corner is the origin (cgkit's cell convention): a constant shift of -lo
    np.testing.assert_allclose(pos, X[:3] - 1.5, atol=1e-5)


# ------------------------------------------------------------------------- import cycle
def _local_imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` imported anywhere in ``path`` (module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
            out.add(node.module[len(package) + 1:].split(".")[0])
    return out


def test_mapping_package_has_no_import_cycle():
    folder = ROOT / "cgkit" / "mapping"
    mods = {p.stem: p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {m: _local_imports(p, "cgkit.mapping") & set(mods) for m, p in mods.items()}
    assert "importers" not in graph["definition"]            # the reported cycle
    state: dict = {}

    def visit(m, stack):
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(stack + [m, d])}")
            if d not in state:
                visit(d, stack + [m])
        state[m] = "done"
    for m in graph:
        if m not in state:
            visit(m, [])


def test_load_definition_reads_every_kind_through_the_public_path(tmp_path):
    from cgkit.mapping import load_definition
    from cgkit.mapping.loader import load_definition as direct
    assert load_definition is direct
    y = tmp_path / "w.yaml"
    y.write_text(YAML)
    assert load_definition(y).templates[0].name == "W"
    xml = tmp_path / "w.xml"
    xml.write_text("<cg_molecule><name>SOL</name><ident>SOL</ident><topology><cg_beads>"
                   "<cg_bead><name>W</name><type>W</type><mapping>A</mapping><beads>1:SOL:OW 1:SOL:HW1 "
                   "1:SOL:HW2</beads></cg_bead></cg_beads></topology><maps><map><name>A</name>"
                   "<weights>16 1 1</weights></map></maps></cg_molecule>\n")
    assert [b.name for b in load_definition(xml).templates[0].beads] == ["W"]
