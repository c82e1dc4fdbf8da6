"""`cgkit md` right or refused (issue 13 items 5, 8, 10, 13, 14): the time step against the
system's own dt_max, the achieved temperature, overlapping atoms, blow-ups, ASE specs, output
folders that are written whole or not at all, progress off a terminal, --help defaults."""
import json
import re

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from cgkit.cli import main
from cgkit.jsonutil import loads_strict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("md_inputs")
    si8 = bulk("Si", "diamond", a=5.431, cubic=True)
    ase.io.write(d / "si8.extxyz", si8)
    ase.io.write(d / "si64.extxyz", si8.repeat(2))
    bad = si8.copy()
    bad.positions[1] = bad.positions[0] + [0.1, 0.1, 0.0]
    ase.io.write(d / "overlap.extxyz", bad)
    return d


def _md(files, structure, out, *extra):
    return main(["md", "--potential", "cgkit:sw", "--structure", str(files / structure), "--out", str(out),
                 *map(str, extra)])


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_timestep_above_dt_max_is_refused_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "md"
    assert _md(files, "si8.extxyz", out, "--timestep", 20, "--steps", 10) == 1
    err = capsys.readouterr().err
    assert err.startswith("cgkit md: error: timestep 20 fs is above the stability limit")
    assert "dt_max = 2/ω_max = 17.9 fs" in err and "--allow-unstable-timestep" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_langevin_at_15_fs_warns_and_reports_the_achieved_temperature(files, tmp_path, capsys):
    out = tmp_path / "md"
    assert _md(files, "si64.extxyz", out, "--timestep", 15, "--steps", 1200, "--log-every", 10,
               "--write-every", 400) == 0
    err = capsys.readouterr().err
    assert "cgkit md: warning: timestep 15 fs is 5.3× the recommended step" in err
    assert "cgkit md: warning: the achieved mean temperature" in err
    s = loads_strict((out / "summary.json").read_text())
    tc = s["timestep_check"]
    assert tc["status"] == "above_recommended" and 17 < tc["dt_max_fs"] < 18.5 and 2.6 < tc["dt_recommended_fs"] < 3
    t = s["temperature"]
    assert t["target_K"] == 300 and t["mean_K"] < 240 and t["consistent"] is False
    assert t["window"]["from_step"] == 600 and len(s["warnings"]) == 2
    loads_strict((out / "md.json").read_text())


def test_override_is_recorded(files, tmp_path, capsys):
    out = tmp_path / "md"
    assert _md(files, "si8.extxyz", out, "--timestep", 18.5, "--steps", 2, "--allow-unstable-timestep",
               "--log-every", 1) == 0
    assert "running anyway because the override was given" in capsys.readouterr().err
    tc = json.loads((out / "summary.json").read_text())["timestep_check"]
    assert tc["allow_unstable"] is True and tc["status"] == "above_dt_max_allowed_by_override"


def test_overlapping_atoms_are_named_not_blamed_on_the_timestep(files, tmp_path, capsys):
    out = tmp_path / "md"
    assert _md(files, "overlap.extxyz", out, "--timestep", 1, "--steps", 10) == 1
    err = capsys.readouterr().err
    assert "overlapping atoms in the start structure: atoms 0 and 1 at 0.141 Å" in err
    assert "timestep" not in err and not out.exists()


def test_failed_run_keeps_the_earlier_good_output(files, tmp_path, capsys):
    out = tmp_path / "md"
    assert _md(files, "si64.extxyz", out, "--timestep", 1, "--steps", 20, "--write-every", 5) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"summary.json", "traj.dcd", "md.json", "md.png", "final.extxyz"} <= set(before)
    capsys.readouterr()
    # without --overwrite: refused before any work
    assert _md(files, "si64.extxyz", out, "--timestep", 1, "--steps", 20) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    # a run that blows up: an error naming the MD step and the atom; nothing of it is kept
    assert _md(files, "si64.extxyz", out, "--timestep", 30, "--allow-unstable-timestep", "--steps", 200,
               "--write-every", 1, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "cgkit md: error: the simulation diverged at MD step" in err and " moved " in err
    assert "frame" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_ase_calculator_spec_says_md_needs_a_cgkit_potential(files, tmp_path, capsys):
    rc = main(["md", "--potential", "ase:EMT", "--structure", str(files / "si8.extxyz"),
               "--out", str(tmp_path / "md")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "cgkit md: error: --potential ase:EMT is an ASE calculator" in err
    assert "cgkit:sw" in err and "no potential file" not in err


def test_progress_lines_off_a_terminal(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CGKIT_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("CGKIT_PROGRESS", raising=False)
    assert _md(files, "si8.extxyz", tmp_path / "md", "--timestep", 1, "--steps", 20, "--log-every", 5) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("MD (langevin): ")]
    assert any("/20 step" in ln and "ETA" in ln and "T=" in ln for ln in lines)
    assert lines[-1].startswith("MD (langevin): 20/20 step (100%)") and "done" in lines[-1]


def test_help_gives_every_default_with_units(capsys):
    with pytest.raises(SystemExit):
        main(["md", "--help"])
    text = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())  # after the usage line
    # one entry per option: "--name METAVAR help text ..."
    entries = {" ".join(e.split()[:2]): e for e in re.split(r" (?=--[a-z][a-z-]* [A-Z_]+ )", text)}
    for option, default in (("--skin", "1.0"), ("--write-every", "100"), ("--log-every", "100"),
                            ("--replicas", "1"), ("--seed", "0"), ("--equilibration", "0"),
                            ("--timestep", "5.0"), ("--min-distance", "0.5"), ("--out", "md_out")):
        entry = entries[f"{option} {option.lstrip('-').replace('-', '_').upper()}"]
        assert f"(default: {default}" in entry, option
    assert "neighbor-list skin, Å" in text and "time step, fs" in text and "MD steps between" in text


def test_missing_start_frame_is_an_input_error(files, tmp_path, capsys):
    assert _md(files, "si8.extxyz", tmp_path / "md", "--frame", 5, "--steps", 5) == 1  # was exit 3
    assert "cgkit md: error: --frame 5: " in capsys.readouterr().err
    assert not (tmp_path / "md").exists()


@pytest.mark.parametrize("precision", [None, "double"])
def test_pair_table_runs_the_fused_loop_in_the_precision_asked_for(tmp_path, capsys, precision):
    """A pair table on a periodic box runs the fused C loop; the CLI's default is the mixed-precision
    pair loop, ``--pair-precision double`` the float64 one; summary.json and the printed line say
    which ran (mixed vs double physics: tests/md/test_md_fused_mixed.py)."""
    from ase import Atoms
    from cgkit.forcematch import Table, TabulatedPotential, pair_kernel
    from cgkit.topology import Topology
    if not pair_kernel.available():
        pytest.skip(f"no compiled pair kernel: {pair_kernel.unavailable_reason()}")
    r = np.arange(2.5, 9.0 + 1e-9, 0.01)
    lj = lambda x: 4 * 0.0067 * ((3.166 / x) ** 12 - (3.166 / x) ** 6)  # noqa: E731
    dlj = lambda x: 4 * 0.0067 * (-12 * 3.166 ** 12 / x ** 13 + 6 * 3.166 ** 6 / x ** 7)  # noqa: E731
    table = Table("pair", ("W", "W"), r[0], 0.01, lj(r) - lj(9.0) - dlj(9.0) * (r - 9.0), dlj(r) - dlj(9.0))
    TabulatedPotential(["W"], Topology(n_particles=1000), [table]).save(tmp_path / "w.pt")
    grid = np.stack(np.meshgrid(*[np.arange(10)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = (grid + 0.5 + np.random.default_rng(0).uniform(-0.1, 0.1, grid.shape)) * 3.1
    beads = Atoms(["H"] * 1000, positions=pos, cell=np.eye(3) * 31.0, pbc=True, masses=np.full(1000, 18.0))
    beads.arrays["bead_types"] = np.array(["W"] * 1000)
    ase.io.write(tmp_path / "w.extxyz", beads)
    extra = [] if precision is None else ["--pair-precision", precision]
    rc = main(["md", "--potential", str(tmp_path / "w.pt"), "--structure", str(tmp_path / "w.extxyz"),
               "--steps", "300", "--timestep", "2", "--write-every", "0", "--out", str(tmp_path / "o"), *extra])
    assert rc == 0
    s = loads_strict((tmp_path / "o" / "summary.json").read_text())
    want = precision or "mixed"
    assert (s["md"]["md_loop"], s["md"]["pair_precision"]) == ("fused", want)
    assert f"(fused loop, {want} pair forces)" in capsys.readouterr().out
