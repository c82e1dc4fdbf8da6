"""`cgkit fm` and `cgkit md` end to end on a small CG data set (PSF + extxyz with forces)."""
from types import SimpleNamespace

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from cgkit.cli import main
from cgkit.jsonutil import loads_strict
from cgkit.trajectory import write_psf

from .conftest import L
from .reference import lj_force


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
    s = loads_strict((out / "summary.json").read_text())
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
    s = loads_strict((md_out / "summary.json").read_text())
    assert s["md"]["n_steps"] == 400 and s["md"]["steps_per_second"] > 0
    from cgkit.forcematch import pair_kernel
    loop, prec = s["md"]["md_loop"], s["md"]["pair_precision"]
    assert prec == ("mixed" if loop == "fused" else "double" if pair_kernel.available() else "float64")
    assert f"({loop} loop, {prec} pair forces)" in capsys.readouterr().out
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
    s = loads_strict((out / "summary.json").read_text())
    assert len(s["iterations"]) == 1 and set(s["iterations"][0]["scores"]) == {"pair A-A", "bond A-A"}
    assert (out / "cg_potential.pt").is_file() and (out / "tables" / "pair_A-A.dat").is_file()


def test_cgkit_fm_model_nn_trains_on_top_of_the_spline_prior(cg_files, tmp_path):
    out = tmp_path / "fmnn"
    rc = main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--pair-cutoff", "6", "--stop", "30", "--model", "nn", "--nn-frames", "5",
               "--nn-epochs", "1", "--nn-channels", "4", "--nn-lmax", "0", "--nn-rcut", "5", "--out", str(out)])
    assert rc == 0
    s = loads_strict((out / "summary.json").read_text())
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
    s = loads_strict((out / "summary.json").read_text())
    assert [i["interaction"] for i in s["interactions"]] == ["bond A-B", "angle A-B-A"]
    assert s["timing"]["frames"] == 8


def test_cgkit_fm_bonded_boltzmann_fixes_the_inverted_bond_and_fits_pairs(cg_files, dimer_liquid, tmp_path):
    out = tmp_path / "hyb"
    rc = main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--pair-cutoff", "6", "--bonded", "boltzmann", "--temperature", "150",
               "--out", str(out)])
    assert rc == 0
    s = loads_strict((out / "summary.json").read_text())
    assert s["bonded"]["method"] == "boltzmann" and s["bonded"]["fixed_tables"] == ["bond A-A"]
    assert s["bonded"]["reference_frames"] == 100
    fixed = {i["interaction"]: i.get("fixed", False) for i in s["interactions"]}
    assert fixed == {"pair A-A": False, "bond A-A": True}
    # the reference bond is harmonic, kb = 10 eV/Å², r0 = 1.5 Å (tests/forcematch/reference.py):
    # its Boltzmann inverse at 150 K recovers both within sampling error
    x, U, f = np.loadtxt(out / "tables" / "bond_A-A.dat", unpack=True)[:3]
    core = U < 2 * 8.617e-5 * 150  # within 2 kT of the minimum: the well-sampled range
    c2, c1, _ = np.polyfit(x[core], U[core], 2)
    assert abs(-c1 / (2 * c2) - 1.5) < 0.01
    assert abs(2 * c2 - 10.0) < 2.5
    # the pairs were fitted on the forces the bond leaves: still the LJ pair of the reference
    r, Up, fp = np.loadtxt(out / "tables" / "pair_A-A.dat", unpack=True)[:3]
    p = dimer_liquid["ref"].p
    sel = (r > 3.2) & (r < 5.5)
    fr = lj_force(r[sel], p["sigma"], p["eps"], p["rc"])
    assert np.abs(fp[sel] - fr).max() < 0.1 * np.abs(fr).max()


def test_cgkit_fm_bonded_ibi_iterates_the_bond_with_pairs_kept(cg_files, tmp_path):
    out = tmp_path / "hybibi"
    rc = main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
               "--exclude", "1", "--pair-cutoff", "5.5", "--bonded", "ibi", "--temperature", "150",
               "--ibi-iterations", "1", "--ibi-steps", "200", "--ibi-equilibration", "20", "--timestep", "4",
               "--export", "lammps", "--out", str(out)])
    assert rc == 0
    s = loads_strict((out / "summary.json").read_text())
    it = s["ibi"]["iterations"]
    assert len(it) == 1 and set(it[0]["scores"]) == {"pair A-A", "bond A-A"}
    assert all(np.isfinite(v["js"]) for v in it[0]["scores"].values())
    from cgkit import load_potential
    pot = load_potential(out / "cg_potential.pt")
    assert {t.label for t in pot.tables} == {"pair A-A", "bond A-A"}
    assert (out / "lammps" / "bond.table").is_file() and (out / "tables" / "bond_A-A.dat").is_file()


def test_cgkit_md_validates_a_sum_potential_with_its_tables_topology(cg_files, tmp_path):
    """A CG model that is a sum (tables + Coulomb, prior + network) has no topology of its own:
    the validation uses its tables' CG topology (bond distributions reported, the bonded pair
    excluded from the RDF), as for the tables alone."""
    from cgkit.io_potential import load_potential
    from cgkit.potential import SumPotential
    from cgkit.potentials.lennard_jones import LennardJones
    out = tmp_path / "fm"
    assert main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
                 "--exclude", "1", "--pair-cutoff", "6", "--out", str(out)]) == 0
    tables = load_potential(out / "cg_potential.pt")
    SumPotential([tables, LennardJones([3.0], [0.0], cutoff=3.0, type_names=("A",))]).save(tmp_path / "sum.pt")
    md_out = tmp_path / "md"
    assert main(["md", "--potential", str(tmp_path / "sum.pt"), "--structure", str(cg_files / "cg.psf"),
                 "--frames", str(cg_files / "cg.extxyz"), "--steps", "100", "--timestep", "4",
                 "--temperature", "150", "--write-every", "20", "--reference", str(cg_files / "cg.extxyz"),
                 "--out", str(md_out)]) == 0
    v = loads_strict((md_out / "summary.json").read_text())["validation"]
    assert "bond A-A" in v["distributions"]


def test_cgkit_fm_explicit_joint_prior_with_incompatible_options_is_refused(cg_files, tmp_path, capsys):
    """--nn-prior joint refits the spline on this run's frames: with --bonded ibi or the ENNP bead
    model it is refused before any frame is read (the default falls back to the fixed prior)."""
    for extra, what in ((["--bonded", "ibi"], "--bonded fm"), (["--nn-kind", "ennp"], "--nn-kind descriptor")):
        rc = main(["fm", "--cg-trajectory", str(cg_files / "cg.extxyz"), "--cg-topology", str(cg_files / "cg.psf"),
                   "--model", "nn", "--nn-prior", "joint", *extra, "--out", str(tmp_path / "j")])
        assert rc == 1
        err = capsys.readouterr().err
        assert "--nn-prior joint needs" in err and what in err and "--nn-prior fixed" in err
        assert not (tmp_path / "j").exists()
