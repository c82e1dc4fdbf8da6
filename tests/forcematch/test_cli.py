"""`cgkit fm` and `cgkit md` end to end on a small CG data set (PSF + extxyz with forces)."""
import json
from types import SimpleNamespace

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from cgkit.cli import main
from cgkit.trajectory import write_psf

from .conftest import L


@pytest.fixture(scope="module")
def cg_files(dimer_liquid, tmp_path_factory):
    d = tmp_path_factory.mktemp("cg")
    top = dimer_liquid["topology"]
    n = top.n_particles
    m = SimpleNamespace(topology=top, n_beads=n, resid_of_bead=top.molecule + 1,
                        template_of_bead=["DIM"] * n, bead_names=["A"] * n, bead_types=["A"] * n,
                        bead_charges=np.zeros(n), bead_masses=np.full(n, 39.95),
                        definition=SimpleNamespace(name="dimers"))
    write_psf(d / "cg.psf", m)
    frames = []
    for x, f in zip(dimer_liquid["positions"], dimer_liquid["forces"]):
        a = Atoms(numbers=np.zeros(n, int), positions=x, cell=np.eye(3) * L, pbc=True,
                  masses=np.full(n, 39.95))
        a.arrays["bead_types"] = np.array(["A"] * n)
        a.calc = SinglePointCalculator(a, forces=f)
        frames.append(a)
    ase.io.write(d / "cg.extxyz", frames)
    return d


def test_cgkit_fm_then_md_with_validation(cg_files, tmp_path, capsys):
    out = tmp_path / "fm"
    rc = main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--pair-cutoff", "6", "--export", "lammps,gromacs", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert {i["interaction"] for i in s["interactions"]} == {"pair A-A", "bond A-A"}
    r = s["residual_per_bead_type"]["A"]
    assert r["rms_residual_eV_per_A"] < 0.02 * r["rms_force_eV_per_A"]
    assert s["timing"]["frames"] == 100 and s["timing"]["frames_per_second"] > 0
    for f in ("cg_potential.pt", "fm.png", "normal_equations.npz", "tables/pair_A-A.dat",
              "lammps/pair.table", "lammps/bond.table", "gromacs/table_A_A.xvg", "gromacs/table_b0.xvg"):
        assert (out / f).is_file(), f
    md_out = tmp_path / "md"
    rc = main(["md", "--potential", str(out / "cg_potential.pt"), "--structure", str(cg_files / "cg.psf"),
               "--frames", str(cg_files / "cg.extxyz"), "--steps", "400", "--timestep", "4",
               "--temperature", "150", "--write-every", "20", "--reference", str(cg_files / "cg.extxyz"),
               "--out", str(md_out)])
    assert rc == 0
    s = json.loads((md_out / "summary.json").read_text())
    assert s["md"]["n_steps"] == 400 and s["md"]["steps_per_second"] > 0
    v = s["validation"]
    assert v["distributions"]["bond A-A"]["js_divergence"] < 0.2
    assert v["rdf"]["pair A-A"]["js_divergence_r2g"] < 0.1
    assert (md_out / "rdf.png").is_file() and (md_out / "traj.dcd").is_file()


def test_cgkit_fm_reports_missing_forces_clearly(cg_files, tmp_path, capsys):
    frames = ase.io.read(cg_files / "cg.extxyz", ":5")
    for a in frames:
        a.calc = None
        a.arrays.pop("forces", None)
    ase.io.write(tmp_path / "noforces.extxyz", frames)
    rc = main(["fm", "--cg-trajectory", str(tmp_path / "noforces.extxyz"), "--cg-topology",
               str(cg_files / "cg.psf"), "--out", str(tmp_path / "x")])
    assert rc == 1
    assert "has no forces" in capsys.readouterr().err


def test_cgkit_ibi_one_iteration(cg_files, tmp_path):
    out = tmp_path / "ibi"
    rc = main(["ibi", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--temperature", "150", "--iterations", "1", "--kinds", "pair,bond",
               "--pair-cutoff", "5.5", "--bins", "55", "--md-steps", "200", "--equilibration", "20",
               "--timestep", "4", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert len(s["iterations"]) == 1 and set(s["iterations"][0]["scores"]) == {"pair A-A", "bond A-A"}
    assert (out / "cg_potential.pt").is_file() and (out / "tables" / "pair_A-A.dat").is_file()


def test_cgkit_fm_model_nn_trains_on_top_of_the_spline_prior(cg_files, tmp_path):
    out = tmp_path / "fmnn"
    rc = main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--pair-cutoff", "6", "--stop", "30", "--model", "nn", "--nn-frames", "5",
               "--nn-epochs", "1", "--nn-channels", "4", "--nn-lmax", "0", "--nn-rcut", "5", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["neural"]["frames"] == 5
    assert (out / "nn" / "cg_nn_potential.pt").is_file()


def test_cgkit_fm_maps_an_atomistic_trajectory_on_the_fly(tmp_path):
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    data = root / "case_studies" / "hexane" / "data"
    if not (data / "aa_subset.trr").exists():
        pytest.skip("case_studies/hexane/data/aa_subset.trr absent (made by make_aa_trajectory.py)")
    out = tmp_path / "fm"
    rc = main(["fm", "--mapping", str(root / "mappings" / "hexane_3bead.yaml"), "--topology",
               str(data / "aa_subset.gro"), "--trajectory", str(data / "aa_subset.trr"), "--no-pairs",
               "--stop", "8", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert [i["interaction"] for i in s["interactions"]] == ["bond A-B", "angle A-B-A"]
    assert s["timing"]["frames"] == 8
