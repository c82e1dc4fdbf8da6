"""`cgkit md --uncertainty LO HI` with a committee: σ per check in summary.json, candidates written,
the run stopped at the first frame above HI; a single model is refused."""
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import read, write

from cgkit.cli import main
from cgkit.ensemble import EnsemblePotential
from cgkit.jsonutil import loads_strict
from cgkit.nn import ENNP


@pytest.fixture(scope="module")
def committee_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("committee")
    ms = []
    for seed in range(2):
        torch.manual_seed(seed)
        m = ENNP(["Cu"], 3.0, channels=4, l_max=1, n_layers=1, n_radial=4, radial_hidden=4, radial_layers=1,
                 readout_hidden=4, dtype="float64", init_seed=seed)
        m.set_statistics(shift=[-3.5], scale=0.05, avg_num_neighbors=12.0)
        ms.append(m)
    EnsemblePotential(ms).save(d / "committee.pt")
    ms[0].save(d / "single.pt")
    write(str(d / "cu.extxyz"), bulk("Cu", "fcc", 3.61, cubic=True))
    return d


def run(d, out, *extra):
    return main(["md", "--potential", str(d / "committee.pt"), "--structure", str(d / "cu.extxyz"),
                 "--steps", "20", "--timestep", "1", "--write-every", "0", "--log-every", "5",
                 "--allow-unstable-timestep", "--out", str(out), *extra])


def test_md_reports_sigma_and_writes_candidates(committee_file, tmp_path):
    assert run(committee_file, tmp_path / "all", "--uncertainty", "0", "1000", "--uncertainty-every", "5") == 0
    s = loads_strict((tmp_path / "all" / "summary.json").read_text())["uncertainty"]
    assert s["steps"] == [5, 10, 15, 20] and s["stopped"] is None
    assert s["counts"]["candidate"] == 4
    sig = np.array(s["sigma_max_eV_per_A"])[:, 0]
    assert np.all(np.isfinite(sig)) and np.all(sig > 0)
    cands = read(str(tmp_path / "all" / "uncertain.extxyz"), ":")
    assert [c.info["md_step"] for c in cands] == [5, 10, 15, 20]
    # HI below the first sigma: the run stops at the first check
    hi = 0.5 * sig[0]
    assert run(committee_file, tmp_path / "stop", "--uncertainty", str(hi / 2), str(hi), "--uncertainty-every", "5") == 0
    out = loads_strict((tmp_path / "stop" / "summary.json").read_text())
    assert out["uncertainty"]["stopped"].startswith("uncertainty") and out["md"]["n_steps"] == 5


def test_md_uncertainty_needs_a_committee_and_sane_levels(committee_file, tmp_path, capsys):
    rc = main(["md", "--potential", str(committee_file / "single.pt"), "--structure", str(committee_file / "cu.extxyz"),
               "--steps", "5", "--timestep", "1", "--allow-unstable-timestep", "--uncertainty", "0.1", "0.5",
               "--out", str(tmp_path / "x")])
    assert rc == 1 and "committee" in capsys.readouterr().err
    assert run(committee_file, tmp_path / "y", "--uncertainty", "0.5", "0.1") == 1
    assert "lo < hi" in capsys.readouterr().err
