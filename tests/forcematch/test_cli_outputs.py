"""`cgkit fm` / `ibi` / `relent`: output folders written whole or refused, strict JSON, shared
options, clear errors for bad --add files and non-finite frames, IBI progress lines."""
import argparse

import ase.io
import numpy as np
import pytest

from cgkit.cli import main
from cgkit.jsonutil import loads_strict

from .test_cli import cg_files  # noqa: F401  (fixture)

FM = ["fm", "--exclude", "1", "--pair-cutoff", "6", "--stop", "30"]


def _fm(cg_files, *extra):  # noqa: F811
    return main(FM + ["--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
                      *extra])


def test_fm_no_pairs_into_an_old_folder_is_refused_or_replaces_the_old_tables(cg_files, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "fm"
    assert _fm(cg_files, "--out", str(out)) == 0
    assert (out / "tables" / "pair_A-A.dat").is_file()
    loads_strict((out / "summary.json").read_text())
    capsys.readouterr()
    assert _fm(cg_files, "--no-pairs", "--out", str(out)) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "tables" / "pair_A-A.dat").is_file()  # the refused run changed nothing
    assert _fm(cg_files, "--no-pairs", "--overwrite", "--out", str(out)) == 0
    assert not (out / "tables" / "pair_A-A.dat").exists() and (out / "tables" / "bond_A-A.dat").is_file()
    s = loads_strict((out / "summary.json").read_text())
    assert [i["interaction"] for i in s["interactions"]] == ["bond A-A"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_fm_add_refuses_files_that_are_not_normal_equations(cg_files, tmp_path, capsys):  # noqa: F811
    good = tmp_path / "a"
    assert _fm(cg_files, "--out", str(good)) == 0
    data = (good / "normal_equations.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 3])  # a killed writer's half file
    capsys.readouterr()
    rc = _fm(cg_files, "--add", str(tmp_path / "cut.npz"), "--grids-from", str(good), "--out", str(tmp_path / "b"))
    err = capsys.readouterr().err
    assert rc == 1 and "not a cgkit normal-equations file" in err and "cut.npz" in err
    assert "Traceback" not in err and not (tmp_path / "b").exists()
    # a valid file adds up: twice the frames
    assert _fm(cg_files, "--add", str(good / "normal_equations.npz"), "--grids-from", str(good),
               "--out", str(tmp_path / "c")) == 0
    s = loads_strict((tmp_path / "c" / "summary.json").read_text())
    assert s["n_frames"] == 60


def test_fm_names_the_frame_and_beads_of_non_finite_positions(cg_files, tmp_path, capsys):  # noqa: F811
    frames = ase.io.read(cg_files / "cg.extxyz", ":30")
    frames[27].positions[15] = np.nan
    ase.io.write(tmp_path / "bad.extxyz", frames)
    rc = main(FM + ["--cg-trajectory", str(tmp_path / "bad.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
                    "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 1 and "frame 27" in err and "15" in err and "atoms [15]" not in err, err
    assert not (tmp_path / "x").exists()


def test_ibi_prints_iteration_progress_and_writes_strict_json(cg_files, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "ibi"
    rc = main(["ibi", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--temperature", "150", "--iterations", "2", "--kinds", "pair,bond",
               "--pair-cutoff", "5.5", "--bins", "55", "--md-steps", "100", "--equilibration", "10",
               "--timestep", "4", "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "IBI iteration 1/2" in err and "IBI iteration 2/2" in err
    s = loads_strict((out / "summary.json").read_text())
    assert len(s["iterations"]) == 2 and s["alpha"] == 1.0 and s["md_steps"] == 100
    assert (out / "ibi_history.png").is_file()


def _defaults(command):
    from cgkit.cli import build_parser
    parser = build_parser()
    args = parser.parse_args([command, "--cg-trajectory", "x", "--cg-topology", "y"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return vars(args), {s for a in sub.choices[command]._actions for s in a.option_strings}


def test_fm_bonded_ibi_and_ibi_share_option_names_and_defaults():
    from cgkit.forcematch import IBI_DEFAULTS
    from cgkit.options import CG_MD_DEFAULTS
    for key in ("md_steps", "equilibration", "timestep", "alpha", "bins"):
        assert CG_MD_DEFAULTS[key] == IBI_DEFAULTS[key]
    assert CG_MD_DEFAULTS["friction_per_ps"] / 1000.0 == IBI_DEFAULTS["friction"]
    fm, fm_opts = _defaults("fm")
    ibi, ibi_opts = _defaults("ibi")
    for dest in ("md_steps", "equilibration", "timestep", "friction", "alpha", "bins", "temperature", "seed"):
        assert fm[dest] == ibi[dest], dest
    assert {"--md-steps", "--equilibration", "--alpha", "--friction", "--out", "--overwrite"} <= fm_opts & ibi_opts
    assert "--ibi-steps" in fm_opts  # the old name still works (hidden alias)


def test_fm_old_ibi_option_names_still_work(cg_files, tmp_path):  # noqa: F811
    from cgkit.cli import build_parser
    args = build_parser().parse_args(["fm", "--cg-trajectory", "x", "--cg-topology", "y", "--ibi-steps", "123",
                                      "--ibi-equilibration", "7"])
    assert args.md_steps == 123 and args.equilibration == 7


@pytest.mark.parametrize("opt", ["--alpha", "--bins"])
def test_fm_bad_ibi_settings_are_refused_before_any_work(cg_files, tmp_path, capsys, opt):  # noqa: F811
    rc = _fm(cg_files, "--bonded", "ibi", opt, "0", "--out", str(tmp_path / "x"))
    assert rc == 1 and opt in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_fm_table_files_hold_no_nan(cg_files, tmp_path):  # noqa: F811
    """The error column is -1 where there is no estimate (the fixed Boltzmann-inverted bond,
    walls beyond the sampled range), never NaN."""
    out = tmp_path / "hyb"
    assert _fm(cg_files, "--bonded", "boltzmann", "--temperature", "150", "--out", str(out)) == 0
    for f in (out / "tables").glob("*.dat"):
        assert "nan" not in f.read_text().lower(), f.name
        data = np.loadtxt(f)
        assert np.all(np.isfinite(data)) and np.all((data[:, 3] >= 0) | (data[:, 3] == -1.0))
    bond = np.loadtxt(out / "tables" / "bond_A-A.dat")
    assert np.all(bond[:, 3] == -1.0)  # fixed table: no jackknife estimate
    pair = np.loadtxt(out / "tables" / "pair_A-A.dat")
    assert np.any(pair[:, 3] > 0)
