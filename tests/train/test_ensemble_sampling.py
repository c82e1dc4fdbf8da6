"""Ensembles (mean/std), `cgkit train --ensemble`, teacher sampling and labelling."""
import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

import cgkit
from cgkit.cli import main
from cgkit.ensemble import EnsembleCalculator, EnsemblePotential
from cgkit.errors import InputError
from cgkit.nn import ENNP
from cgkit.sampling import label, sample_configurations

from .conftest import tiny_config, write_config

SMALL = dict(channels=4, l_max=1, n_layers=1, n_radial=4, radial_hidden=8, radial_layers=1,
             readout_hidden=4, dtype="float64")


def test_ensemble_mean_and_std_match_members_computed_separately(tmp_path):
    members = [ENNP(["Cu"], 4.0, init_seed=s, **SMALL) for s in range(3)]
    ens = EnsemblePotential(members)
    a = bulk("Cu", "fcc", 3.61, cubic=True)
    a.rattle(0.05, seed=2)
    outs = [m.compute(m.graph(a)) for m in members]
    E = np.array([float(o["energy"][0]) for o in outs])
    F = np.stack([o["forces"].numpy() for o in outs])
    res = ens.compute_with_uncertainty(ens.graph(a))
    assert abs(float(res["energy"][0]) - E.mean()) < 1e-12
    assert abs(float(res["energy_std"][0]) - E.std()) < 1e-12
    assert np.allclose(res["forces"].numpy(), F.mean(0), atol=1e-12)
    assert np.allclose(res["forces_std"].numpy(), np.sqrt(F.var(0).sum(-1)), atol=1e-12)
    # the ensemble is a Potential: its forces are the mean forces; save/load round trip
    assert np.allclose(ens.compute(ens.graph(a))["forces"].numpy(), F.mean(0), atol=1e-12)
    ens.save(tmp_path / "ens.pt")
    loaded = cgkit.load_potential(tmp_path / "ens.pt")
    a.calc = EnsembleCalculator(loaded)
    assert abs(a.get_potential_energy() - E.mean()) < 1e-12
    assert abs(a.calc.results["energy_std"] - E.std()) < 1e-12
    with pytest.raises(InputError, match="at least 2"):
        EnsemblePotential(members[:1])


def test_train_cli_ensemble_writes_k_members_and_ensemble_file(cu_data, tmp_path):
    cfg = write_config(tiny_config(cu_data, tmp_path / "ens", max_epochs=1), tmp_path / "c.yaml")
    assert main(["train", str(cfg), "--ensemble", "2"]) == 0
    ens = cgkit.load_potential(tmp_path / "ens" / "ensemble.pt")
    assert isinstance(ens, EnsemblePotential) and len(ens.members) == 2
    w0 = dict(ens.members[0].named_parameters())
    w1 = dict(ens.members[1].named_parameters())
    assert not torch.equal(w0["embedding.weight"], w1["embedding.weight"])  # different seeds
    s = json.loads((tmp_path / "ens" / "summary.json").read_text())
    assert len(s["members"]) == 2


def test_teacher_sampling_labels_match_the_teacher_and_cover_md_rattle_strain():
    cu = bulk("Cu", "fcc", 3.61, cubic=True)
    frames = sample_configurations([cu], EMT(), temperatures=(100, 1500), frames_per_temperature=2,
                                   md_steps_between=3, equilibration_steps=5, rattle=0.05, n_rattled=2,
                                   strains=(0.03,), seed=1, progress=False)
    assert len(frames) == 2 * 2 + 2 + 1
    for f in frames:
        ref = f.copy()
        ref.calc = EMT()
        assert abs(f.get_potential_energy() - ref.get_potential_energy()) < 1e-12
        assert np.allclose(f.get_forces(), ref.get_forces(), atol=1e-12)
        assert np.allclose(f.get_stress(), ref.get_stress(), atol=1e-12)
    # the strained frame has a different cell, the MD frames moved
    assert not np.allclose(frames[-1].cell.array, cu.cell.array)
    assert np.abs(frames[0].positions - cu.positions).max() > 1e-3
    # a cgkit Potential is a valid teacher too
    model = ENNP(["Cu"], 4.0, **SMALL)
    lab = label(frames[:2], model)
    g = model.graph(frames[0])
    assert abs(lab[0].get_potential_energy() - float(model.compute(g)["energy"][0])) < 1e-12
    with pytest.raises(InputError, match="teacher"):
        label(frames[:1], object())
