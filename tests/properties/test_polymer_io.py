"""Bad input, JSON/plots, the atomistic-vs-CG comparison helper and the ``cgkit polymer`` CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

import MDAnalysis as mda
from cgkit.cli import main
from cgkit.errors import InputError
from cgkit.properties.compare import Comparison, Curve, Distribution, js_divergence, ratio
from cgkit.properties.polymer import PolymerAnalysis
from tests.properties.test_polymer_generators import fjc, frc, make_universe


# ----------------------------------------------------------------------------- bad input
def test_selection_without_atoms_is_rejected_with_a_hint():
    u = make_universe(fjc(np.random.default_rng(0), 3, 5)[None])
    with pytest.raises(InputError, match="matched no atoms"):
        PolymerAnalysis(u.select_atoms("name XX"))


def test_trajectory_without_bonds_suggests_guess_bonds_or_topology():
    u = make_universe(fjc(np.random.default_rng(0), 3, 5)[None], bonds=False)
    with pytest.raises(InputError, match="guess_TopologyAttrs|topology file"):
        PolymerAnalysis(u.atoms)


def test_chains_of_one_bead_are_rejected():
    u = make_universe(fjc(np.random.default_rng(0), 3, 6)[None])
    with pytest.raises(InputError, match="one bead"):
        PolymerAnalysis(u.atoms[::2])          # every second bead: no two selected atoms bonded


def test_bad_options_are_rejected():
    u = make_universe(fjc(np.random.default_rng(0), 3, 6)[None])
    for kw in (dict(error_method="bootstrap"), dict(msd="beads"), dict(n_blocks=1), dict(weights="charge")):
        with pytest.raises(InputError):
            PolymerAnalysis(u.atoms, **kw)
    box = 12.0
    u = make_universe(np.mod(fjc(np.random.default_rng(0), 3, 6), box)[None], box=[box] * 3)
    with pytest.raises(InputError, match="half the box"):
        PolymerAnalysis(u.atoms, rdf_range=(0, 10.0)).run()


# ----------------------------------------------------------------------------- comparison helper
def test_js_divergence_matches_scipy_and_limits():
    from scipy.spatial.distance import jensenshannon
    rng = np.random.default_rng(1)
    p = Distribution.from_samples(rng.normal(0, 1, 20000), bins=60, range=(-5, 5))
    q = Distribution.from_samples(rng.normal(0.7, 1.2, 20000), bins=60, range=(-5, 5))
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p.probabilities, q.probabilities, base=2) ** 2)
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    a = Distribution([0, 1, 2], [1, 0])
    b = Distribution([0, 1, 2], [0, 1])
    assert js_divergence(a, b) == pytest.approx(1.0)
    # different grids: rebinning is exact for piecewise-constant densities
    fine = Distribution(np.linspace(-5, 5, 121), np.repeat(p.density, 2))
    assert js_divergence(fine, q) == pytest.approx(js_divergence(p, q), abs=1e-12)


def test_comparison_of_scalars_curves_and_distributions():
    r, e = ratio(2.0, 0.1, 3.0, 0.3)
    assert r == pytest.approx(1.5) and e == pytest.approx(1.5 * np.hypot(0.05, 0.1))
    ref = dict(rg={"value": 2.0, "error": 0.1, "unit": "Å"}, d=Distribution([0, 1, 2], [1, 1]),
               c=Curve([0, 1, 2], [0, 1, 4]))
    cand = dict(rg={"value": 3.0, "error": 0.3, "unit": "Å"}, d=Distribution([0, 1, 2], [3, 1]),
                c=Curve([0, 1, 2], [0, 2, 4]))
    res = Comparison(ref, cand).run().results
    assert res["scalars"]["rg"]["ratio"] == pytest.approx(1.5)
    assert res["scalars"]["rg"]["z_score"] == pytest.approx(1.0 / np.hypot(0.1, 0.3))
    assert res["curves"]["c"]["max_abs_difference"] == pytest.approx(1.0)
    assert 0 < res["distributions"]["d"]["js_divergence"] < 1
    with pytest.raises(InputError, match="share no quantity"):
        Comparison(dict(a=1.0), dict(b=1.0)).run()


# ----------------------------------------------------------------------------- JSON, plots, CLI
def test_summary_json_gives_every_quantity_with_unit_and_error_and_plots(tmp_path):
    rng = np.random.default_rng(2)
    box = 25.0
    x = np.mod(frc(rng, 8 * 20, 12, 1.5, 0.4).reshape(8, 20, 12, 3), box)
    pa = PolymerAnalysis(make_universe(x, box=[box] * 3).atoms, n_blocks=4).run()
    s = json.loads(pa.to_json(tmp_path / "s.json"))
    (g,) = s["groups"].values()
    for k in PolymerAnalysis.UNITS:
        assert set(g[k]) == {"value", "error", "unit"}, k
    assert g["error_method"] == "time"
    assert s["rdf"] is not None and s["msd"]["com"]["D"]["unit"] == "Å^2/fs"
    figs = pa.plot(tmp_path / "plots")          # results protocol: list of the written paths
    for name in ("distributions", "scaling", "bond_acf", "timeseries", "msd", "rdf"):
        path = tmp_path / "plots" / f"{name}.png"
        assert path in figs and path.stat().st_size > 1000


def _write_files(tmp_path, x, box, name):
    u = make_universe(x, box=[box] * 3)
    top = tmp_path / f"{name}.pdb"
    trj = tmp_path / f"{name}.dcd"
    with mda.Writer(str(top), bonds="all") as w:
        w.write(u.atoms)
    with mda.Writer(str(trj), n_atoms=u.atoms.n_atoms) as w:
        for _ in u.trajectory:
            w.write(u.atoms)
    return top, trj


def test_cli_writes_summary_plots_and_comparison(tmp_path, capsys):
    rng = np.random.default_rng(3)
    box = 30.0
    xa = np.mod(frc(rng, 6 * 10, 16, 1.5, 0.4).reshape(6, 10, 16, 3), box)
    xb = np.mod(frc(rng, 6 * 10, 16, 1.5, 0.6).reshape(6, 10, 16, 3), box)
    ta, ja = _write_files(tmp_path, xa, box, "aa")
    tb, jb = _write_files(tmp_path, xb, box, "cg")
    assert main(["polymer", "--topology", str(ta), "--trajectory", str(ja), "--select", "all",
                 "--out", str(tmp_path / "aa"), "--blocks", "3"]) == 0
    s = json.loads((tmp_path / "aa" / "summary.json").read_text())
    (g,) = s["groups"].values()
    assert g["n_chains"] == 10 and g["n_beads"] == 16
    assert (tmp_path / "aa" / "scaling.png").exists()
    assert main(["polymer", "--topology", str(tb), "--trajectory", str(jb), "--out", str(tmp_path / "cg"),
                 "--compare", str(tmp_path / "aa" / "summary.json"), "--no-plots", "--msd", "none"]) == 0
    c = json.loads((tmp_path / "cg" / "comparison.json").read_text())
    # the stiffer candidate (cos 0.6 vs 0.4) has a larger C_n: (1+c)/(1−c) ratio ≈ 4/2.33
    assert c["scalars"]["C_n"]["ratio"] > 1.3
    assert c["distributions"]["bond_angle"]["js_divergence"] > 0.5
    out = capsys.readouterr().out
    assert "C_n" in out and "summary.json" in out


def test_cli_reports_missing_bonds_as_a_clear_error(tmp_path, capsys):
    u = make_universe(fjc(np.random.default_rng(4), 4, 6)[None], bonds=False)
    top = tmp_path / "nobonds.pdb"
    with mda.Writer(str(top)) as w:
        w.write(u.atoms)
    assert main(["polymer", "--topology", str(top), "--out", str(tmp_path / "o")]) == 1
    assert "--guess-bonds" in capsys.readouterr().err
