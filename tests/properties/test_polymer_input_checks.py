"""``cgkit polymer`` on messy real files (issue 13 items 8, 9, 13; issue 12 item 5): NaN frames and
truncated trajectories give cgkit errors/warnings naming file and frame, progress is reported off
a terminal, the output folder is written whole or refused, and PolymerAnalysis follows the
results protocol."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import MDAnalysis as mda
from cgkit.cli import main
from cgkit.errors import StructureError
from cgkit.jsonutil import loads_strict
from cgkit.properties.polymer import PolymerAnalysis
from tests.properties.test_polymer_generators import frc, make_universe

BOX = 30.0
N_FRAMES = 6


def _chains(seed=0):
    rng = np.random.default_rng(seed)
    return np.mod(frc(rng, N_FRAMES * 8, 12, 1.5, 0.4).reshape(N_FRAMES, 8, 12, 3), BOX)


def write_chains(tmp_path, x, name="pe"):
    """PDB (with CONECT bonds) + TRR of the chains x (F, C, L, 3) Å."""
    u = make_universe(x, box=[BOX] * 3)
    top, trj = tmp_path / f"{name}.pdb", tmp_path / f"{name}.trr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mda.Writer(str(top), bonds="all") as w:
            w.write(u.atoms)
        with mda.Writer(str(trj), n_atoms=u.atoms.n_atoms) as w:
            for _ in u.trajectory:
                w.write(u.atoms)
    return top, trj


def polymer(top, trj, out, *extra):
    return main(["polymer", "--topology", str(top), "--trajectory", str(trj), "--out", str(out),
                 "--no-plots", "--blocks", "2", *extra])


def test_nan_positions_are_a_cgkit_error_naming_file_frame_and_atoms(tmp_path, capsys):
    x = _chains()
    x[3, 1, 4] = np.nan                                   # chain 1, bead 4 → atom 16
    top, trj = write_chains(tmp_path, x)
    assert polymer(top, trj, tmp_path / "out") == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]                  # MDAnalysis's own reading notes come first
    assert line.startswith("cgkit polymer: error:") and "internal error" not in err
    assert f"frame 3 of {trj}" in line and "atoms 16" in line
    assert not (tmp_path / "out").exists()
    u = make_universe(x, box=[BOX] * 3)
    with pytest.raises(StructureError, match="frame 3 .*atoms 16"):
        PolymerAnalysis(u.atoms, rdf=False).run()


@pytest.mark.parametrize("n_bytes", [8, 200])
def test_truncated_trr_is_analysed_up_to_its_last_complete_frame_with_a_warning(tmp_path, capsys, n_bytes):
    x = _chains(1)
    top, trj = write_chains(tmp_path, x)
    data = trj.read_bytes()
    trj.write_bytes(data[:len(data) - n_bytes])
    assert polymer(top, trj, tmp_path / "cut") == 0
    err = capsys.readouterr().err
    assert "cgkit polymer: warning:" in err and f"last complete frame is frame {N_FRAMES - 2}" in err
    s = loads_strict((tmp_path / "cut" / "summary.json").read_text())
    assert s["n_frames"] == N_FRAMES - 1 and any("incomplete" in w for w in s["warnings"])
    # the same numbers as the intact frames 0..F-2 analysed directly
    full = tmp_path / "full"
    full.mkdir()
    top2, trj2 = write_chains(full, x[:N_FRAMES - 1])
    assert polymer(top2, trj2, tmp_path / "ref") == 0
    ref = loads_strict((tmp_path / "ref" / "summary.json").read_text())
    (g,), (r,) = s["groups"].values(), ref["groups"].values()
    assert g["rg"]["value"] == pytest.approx(r["rg"]["value"], rel=1e-9)


def test_progress_lines_with_eta_off_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CGKIT_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("CGKIT_PROGRESS", raising=False)
    top, trj = write_chains(tmp_path, _chains(2))
    assert polymer(top, trj, tmp_path / "out") == 0
    err = capsys.readouterr().err                       # stderr is not a TTY under pytest
    assert f"polymer analysis: 1/{N_FRAMES} frame" in err and "ETA" in err
    assert f"{N_FRAMES}/{N_FRAMES} frame (100%)" in err and "done" in err
    assert polymer(top, trj, tmp_path / "quiet", "--no-progress") == 0
    assert "polymer analysis" not in capsys.readouterr().err


def test_output_folder_is_refused_unless_overwrite(tmp_path, capsys):
    top, trj = write_chains(tmp_path, _chains(3))
    out = tmp_path / "out"
    assert polymer(top, trj, out) == 0
    first = (out / "summary.json").read_text()
    assert polymer(top, trj, out, "--stop", "3") == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == first             # untouched
    assert polymer(top, trj, out, "--stop", "3", "--overwrite") == 0
    assert loads_strict((out / "summary.json").read_text())["n_frames"] == 3


def test_polymer_analysis_follows_the_results_protocol(tmp_path):
    from cgkit.results import Analysis
    u = make_universe(_chains(4)[:, :, :3], box=[BOX] * 3)       # 3-bead chains: ν undefined (NaN)
    pa = PolymerAnalysis(u.atoms, rdf=False, n_blocks=2).run(progress=False)
    assert isinstance(pa, Analysis)
    s = loads_strict(pa.to_json(tmp_path / "s.json"))           # strict: NaN became null
    (g,) = s["groups"].values()
    assert g["nu"]["value"] is None
    assert loads_strict((tmp_path / "s.json").read_text()) == s
    paths = pa.plot(tmp_path / "plots")
    assert paths and all(p.parent == tmp_path / "plots" and p.stat().st_size > 1000 for p in paths)


def test_topology_of_another_system_is_one_clear_error_line(tmp_path, capsys):
    top, trj = write_chains(tmp_path, _chains(5))
    other, _ = write_chains(tmp_path, _chains(5)[:, :7], name="small")      # 7 chains, not 8
    assert polymer(other, trj, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cgkit polymer: error: the topology") and "has 84 atoms" in err[-1]
    assert "has 96 per frame" in err[-1]


def test_lammps_dump_trajectory_gives_the_same_numbers_as_trr(tmp_path):
    x = _chains(6)
    top, trj = write_chains(tmp_path, x)
    flat = x.reshape(N_FRAMES, -1, 3)
    blocks = [f"ITEM: TIMESTEP\n{10 * k}\nITEM: NUMBER OF ATOMS\n{flat.shape[1]}\nITEM: BOX BOUNDS pp pp pp\n"
              f"0 {BOX}\n0 {BOX}\n0 {BOX}\nITEM: ATOMS id type x y z\n"
              + "".join(f"{i + 1} 1 {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for i, p in enumerate(flat[k]))
              for k in range(N_FRAMES)]
    (tmp_path / "pe.dump").write_text("".join(blocks))
    assert polymer(top, trj, tmp_path / "trr", "--msd", "none") == 0
    assert polymer(top, tmp_path / "pe.dump", tmp_path / "dump", "--msd", "none") == 0
    a, b = (loads_strict((tmp_path / d / "summary.json").read_text()) for d in ("trr", "dump"))
    (ga,), (gb,) = a["groups"].values(), b["groups"].values()
    assert b["n_frames"] == N_FRAMES
    assert gb["rg"]["value"] == pytest.approx(ga["rg"]["value"], rel=1e-4)
    assert gb["C_n"]["value"] == pytest.approx(ga["C_n"]["value"], rel=1e-4)


def test_compare_with_a_file_that_is_not_a_summary_is_refused_before_any_output(tmp_path, capsys):
    top, trj = write_chains(tmp_path, _chains(7))
    (tmp_path / "notes.json").write_text('{"rg": NaN}\n')
    assert polymer(top, trj, tmp_path / "out", "--compare", str(tmp_path / "notes.json")) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cgkit polymer: error: --compare") and "summary.json" in err
    assert not (tmp_path / "out").exists()
