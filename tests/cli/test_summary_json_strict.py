"""Every JSON file every CLI command writes is strict JSON (issue 12, acceptance: "Every
summary.json written by every CLI command in the test suite parses with
json.loads(..., parse_constant=<raise>)").

Each command runs once on small real inputs (tests/cli/data.py) and every ``*.json`` below its
output folder (summary.json, md.json, comparison.json, the manifest, ...) is parsed with
``cgkit.jsonutil.loads_strict``, which rejects ``NaN``, ``Infinity`` and ``-Infinity``. A
command that fails to run at all is reported as such (exit code and stderr).
``test_every_command_is_covered`` keeps the list complete when a command is added.
"""
from __future__ import annotations

import argparse

import pytest

from cgkit.jsonutil import loads_strict

from . import data
from .conftest import run_cli

HEXMAP = str(data.MAPPINGS / "hexane_3bead.yaml")

#: commands (or sub-actions) that write no JSON file, and why
NO_JSON = {
    "model": "init/export write a model file, info prints to the terminal",
    "lammps": "runs LAMMPS on the user's input script; LAMMPS writes its own log and dumps, no JSON",
}

#: commands whose CLI runs are checked the same way (every *.json parsed strictly) elsewhere,
#: because one run is the slow part of their own test
CHECKED_ELSEWHERE = {
    "learn": "tests/learn/test_loop.py::test_learn_cli_runs_the_loop_and_a_rerun_changes_nothing",
}

# (id, argv with {d} = the shared input folder and {o} = this run's output folder, prerequisites)
CASES = [
    ("map", ["map", "--mapping", HEXMAP, "--topology", "{d}/conf.gro", "--trajectory", "{d}/traj.trr",
             "--noise", "--out", "{o}"], ()),
    ("map-extxyz", ["map", "--mapping", HEXMAP, "--topology", "{d}/conf.gro", "--trajectory", "{d}/traj.trr",
                    "--format", "extxyz", "--force-map", "optimized", "--out", "{o}"], ()),
    ("map-no-forces", ["map", "--mapping", HEXMAP, "--topology", "{d}/conf.gro", "--trajectory",
                       "{d}/noforces.trr", "--out", "{o}"], ()),
    ("fm", ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "10",
            "--export", "lammps,gromacs", "--out", "{o}"], ()),
    ("fm-few-frames", ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff",
                       "10", "--stop", "2", "--out", "{o}"], ()),
    ("fm-on-the-fly", ["fm", "--mapping", HEXMAP, "--topology", "{d}/conf.gro", "--trajectory", "{d}/traj.trr",
                       "--no-pairs", "--out", "{o}"], ()),
    ("fm-pressure", ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "10",
                     "--pressure-target", "1", "--temperature", "300", "--out", "{o}"], ()),
    ("fm-boltzmann", ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "10",
                      "--bonded", "boltzmann", "--out", "{o}"], ()),
    ("fm-ibi", ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "10",
                "--bonded", "ibi", "--ibi-iterations", "1", "--ibi-steps", "100", "--ibi-equilibration", "20",
                "--out", "{o}"], ()),
    ("fm-nn", ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "10",
               "--model", "nn", "--nn-frames", "4", "--nn-epochs", "1", "--nn-channels", "4", "--nn-lmax", "0",
               "--nn-rcut", "5", "--out", "{o}"], ()),
    ("ibi", ["ibi", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--iterations", "1",
             "--kinds", "bond,angle", "--md-steps", "100", "--equilibration", "20", "--out", "{o}"], ()),
    ("relent", ["relent", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--iterations", "1",
                "--kinds", "bond,angle", "--md-steps", "100", "--equilibration", "20", "--out", "{o}"], ()),
    ("md", ["md", "--potential", "{d}/fm/cg_potential.pt", "--structure", "{d}/cg.psf", "--frames", "{d}/cg.trr",
            "--steps", "60", "--timestep", "2", "--write-every", "20", "--log-every", "20",
            "--reference", "{d}/cg.trr", "--out", "{o}"], ("fm",)),
    ("md-verlet-extxyz", ["md", "--potential", "cgkit:sw", "--structure", "{d}/Si8.extxyz", "--integrator",
                          "verlet", "--steps", "40", "--timestep", "1", "--write-every", "10", "--log-every", "10",
                          "--trajectory", "traj.extxyz", "--out", "{o}"], ()),
    ("polymer", ["polymer", "--topology", "{d}/sys.psf", "--trajectory", "{d}/traj.xtc", "--blocks", "2",
                 "--out", "{o}"], ()),
    ("polymer-compare", ["polymer", "--topology", "{d}/sys.psf", "--trajectory", "{d}/traj.xtc", "--blocks", "2",
                         "--no-plots", "--compare", "{d}/polyref/summary.json", "--out", "{o}"], ("polyref",)),
    ("polymer-one-frame", ["polymer", "--topology", "{d}/cg.psf", "--trajectory", "{d}/cg.trr", "--stop", "1",
                           "--no-plots", "--out", "{o}"], ()),
    ("phonons", ["phonons", "--structure", "{d}/Si.cif", "--potential", "cgkit:sw", "--supercell", "3", "3", "3",
                 "--mesh", "6", "6", "6", "--out", "{o}"], ()),
    ("phonons-ase", ["phonons", "--structure", "{d}/Cu.cif", "--potential", "ase:EMT", "--supercell", "6", "6", "6",
                     "--mesh", "6", "6", "6", "--out", "{o}"], ()),
    ("elastic", ["elastic", "--structure", "{d}/Cu.cif", "--potential", "ase:EMT", "--relax", "--out", "{o}"], ()),
    ("elastic-analytic", ["elastic", "--structure", "{d}/Si8.extxyz", "--potential", "cgkit:sw", "--out", "{o}"], ()),
    ("train", ["train", "{d}/config.yaml", "--output", "{o}"], ()),
    ("train-ensemble", ["train", "{d}/config.yaml", "--ensemble", "2", "--output", "{o}"], ()),
    ("imc", ["imc", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--iterations", "1",
             "--kinds", "bond,angle", "--md-steps", "100", "--sample-every", "5", "--equilibration", "20",
             "--out", "{o}"], ()),
    ("evaluate", ["evaluate", "cgkit:sw", "{d}/sw.xyz", "--out", "{o}"], ()),
    ("pareto", ["pareto", "{d}/config.yaml", "--held-out", "{d}/sw.xyz", "--energy-weights", "1",
                "--forces-weights", "1,10", "--max-epochs", "2", "--out", "{o}"], ()),
]
SLOW_CASES = [
    ("demo", ["demo", "--size", "small", "--out", "{o}"], ()),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("json_inputs")
    data.write_crystals(d)
    data.write_aa_hexane(d, n_frames=6, gro="conf.gro", trr="traj.trr")
    data.write_aa_hexane(d, n_frames=3, forces=False, gro="conf.gro", trr="noforces.trr")
    data.write_cg_hexane(d, n_molecules=20, n_frames=20)
    data.write_cg_polymer(d, psf="sys.psf", xtc="traj.xtc")
    data.write_train_config(d, "config.yaml", out=str(d / "unused_run"))
    return d


_PREREQ = {
    "fm": ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "10",
           "--out", "{d}/fm"],
    "polyref": ["polymer", "--topology", "{d}/sys.psf", "--trajectory", "{d}/traj.xtc", "--blocks", "2",
                "--no-plots", "--out", "{d}/polyref"],
}


def _fill(argv, d, o):
    return [a.replace("{d}", str(d)).replace("{o}", str(o)) for a in argv]


def _prerequisite(name, inputs):
    if not (inputs / name).exists():
        pre = run_cli(_fill(_PREREQ[name], inputs, inputs / name))
        assert pre.rc == 0, "the prerequisite run failed: " + pre.describe()


def _run_and_check(argv, needs, inputs, tmp_path):
    for name in needs:
        _prerequisite(name, inputs)
    out = tmp_path / "out"
    res = run_cli(_fill(argv, inputs, out))
    assert res.rc == 0, res.describe()
    files = sorted(out.rglob("*.json"))
    assert out / "summary.json" in files, f"no summary.json in {out}: {[str(f) for f in files]}"
    bad = []
    for f in files:
        try:
            loads_strict(f.read_text())
        except ValueError as exc:
            bad.append(f"{f.relative_to(out)}: {exc}")
    assert not bad, "not strict JSON:\n  " + "\n  ".join(bad) + "\n  " + res.describe()


@pytest.mark.parametrize("argv,needs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_json_the_command_writes_is_strict(argv, needs, inputs, tmp_path):
    _run_and_check(argv, needs, inputs, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("argv,needs", [c[1:] for c in SLOW_CASES], ids=[c[0] for c in SLOW_CASES])
def test_every_json_the_slow_commands_write_is_strict(argv, needs, inputs, tmp_path):
    _run_and_check(argv, needs, inputs, tmp_path)


def test_every_command_is_covered():
    from cgkit.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    covered = {c[1][0] for c in CASES + SLOW_CASES} | set(NO_JSON) | set(CHECKED_ELSEWHERE)
    missing = sorted(set(sub.choices) - covered)
    assert not missing, f"commands with no strict-JSON check here (add a case or a NO_JSON reason): {missing}"
