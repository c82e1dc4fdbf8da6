"""`cgkit evaluate` and the training test set against an independent evaluation through the
ASE calculator (cgkit.CgkitCalculator, one structure at a time, metrics in numpy)."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import cgkit
from cgkit.cli import main
from cgkit.jsonutil import loads_strict
from cgkit.nn import ENNP
from cgkit.train import Trainer

from .conftest import tiny_config

GPA = 160.21766208  # eV/Å³ → GPa


@pytest.fixture(scope="module")
def cuau_data(tmp_path_factory):
    """EMT-labelled CuAu: 5 periodic cells (energy, forces, stress) and 3 clusters (energy,
    forces, no stress), interleaved, so that batches mix label sets."""
    path = tmp_path_factory.mktemp("cuau") / "cuau.xyz"
    rng = np.random.default_rng(1)
    frames = []
    for k in range(8):
        if k % 3 == 2:
            a = Atoms("Cu3Au2", positions=rng.uniform(0, 4.5, (5, 3)))
            while min(np.linalg.norm(a.positions[i] - a.positions[j])
                      for i in range(5) for j in range(i)) < 2.2:
                a.positions = rng.uniform(0, 4.5, (5, 3))
            props = ("energy", "forces")
        else:
            a = bulk("Cu", "fcc", 3.7, cubic=True)
            a.symbols[[0, 3]] = "Au"
            a.rattle(0.08, seed=k)
            props = ("energy", "forces", "stress")
        a.calc = EMT()
        res = {p: (a.get_potential_energy() if p == "energy" else a.get_forces() if p == "forces"
                   else a.get_stress()) for p in props}
        a.calc = SinglePointCalculator(a, **res)
        frames.append(a)
    write(path, frames)
    return path


@pytest.fixture(scope="module")
def cuau_model(tmp_path_factory):
    model = ENNP(["Cu", "Au"], 4.0, channels=4, l_max=1, n_layers=1, n_radial=4, radial_hidden=8,
                 radial_layers=1, readout_hidden=4, dtype="float64", init_seed=2)
    model.set_statistics(shift=[4.0, 4.5], scale=0.5, avg_num_neighbors=8.0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    model.save(path)
    return path


def _reference_metrics(model_path, data_path):
    """The metrics, one frame at a time through the ASE calculator, in numpy."""
    calc = cgkit.CgkitCalculator(cgkit.load_potential(model_path))
    de, n, df, spec, ds = [], [], [], [], []
    for a in read(data_path, ":"):
        ref_e, ref_f = a.get_potential_energy(), a.get_forces()
        ref_s = a.calc.results.get("stress")
        b = a.copy()
        b.calc = calc
        de.append(b.get_potential_energy() - ref_e)
        n.append(len(a))
        df.append(b.get_forces() - ref_f)
        spec += a.get_chemical_symbols()
        if ref_s is not None:
            ds.append((b.get_stress(voigt=False) - _full(ref_s)) * GPA)
    de, n, df, spec, ds = np.array(de), np.array(n), np.concatenate(df), np.array(spec), np.array(ds)
    e_at = de / n
    res = {"energy.mae_eV_per_atom": np.abs(e_at).mean(),
            "energy.rmse_eV_per_atom": np.sqrt((e_at ** 2).mean()),
            "energy.mae_eV": np.abs(de).mean(),
            "energy.rmse_eV": np.sqrt((de ** 2).mean()),
            "energy.mean_offset_eV_per_atom": e_at.mean(),
            "energy.centered_mae_eV_per_atom": np.abs(e_at - e_at.mean()).mean(),
            "energy.centered_rmse_eV": np.sqrt(((de - de.mean()) ** 2).mean()),
            "forces.mae_eV_per_A": np.abs(df).mean(),
            "forces.rmse_eV_per_A": np.sqrt((df ** 2).mean()),
            "forces.max_abs_error_eV_per_A": np.abs(df).max(),
            "forces.per_species.Cu.mae_eV_per_A": np.abs(df[spec == "Cu"]).mean(),
            "stress.mae_GPa": np.abs(ds).mean(),
            "stress.rmse_GPa": np.sqrt((ds ** 2).mean()),
            "stress.n_structures": len(ds)}
    if (spec == "Au").any():
        res["forces.per_species.Au.rmse_eV_per_A"] = np.sqrt((df[spec == "Au"] ** 2).mean())
    return res


def _full(s):
    from ase.stress import voigt_6_to_full_3x3_stress
    s = np.asarray(s)
    return voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s


def _get(d, dotted):
    for k in dotted.split("."):
        d = d[k]
    return d


def test_evaluate_cli_equals_the_ase_calculator_frame_by_frame(cuau_data, cuau_model, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["evaluate", str(cuau_model), str(cuau_data), "--out", str(out), "--batch-size", "3"]) == 0
    s = loads_strict((out / "summary.json").read_text())
    ref = _reference_metrics(cuau_model, cuau_data)
    for key, val in ref.items():
        assert _get(s, key) == pytest.approx(val, abs=1e-6, rel=1e-9), key
    assert s["n_structures"] == 8 and s["n_atoms"] == 6 * 4 + 2 * 5
    assert abs(ref["energy.mean_offset_eV_per_atom"]) > 2 * ref["energy.centered_mae_eV_per_atom"]
    assert s["charges"] is None and s["dipole"] is None and s["vectors"] is None
    assert sorted(p.name for p in out.glob("*.png")) == ["parity_energy.png", "parity_forces.png",
                                                         "parity_stress.png"]
    assert len((out / "energies.csv").read_text().splitlines()) == 9
    assert "per species: Cu" in capsys.readouterr().out
    # a second run into the same folder is refused; data without energies are refused before
    # anything is written
    assert main(["evaluate", str(cuau_model), str(cuau_data), "--out", str(out)]) == 1
    bad = tmp_path / "noenergy.xyz"
    write(bad, [Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]])])
    assert main(["evaluate", str(cuau_model), str(bad), "--out", str(tmp_path / "ev2")]) == 1
    assert "frame 0" in capsys.readouterr().err and not (tmp_path / "ev2").exists()


def test_training_test_set_has_the_metrics_of_cgkit_evaluate_on_the_best_model(cu_data, tmp_path):
    frames = read(cu_data, ":")
    write(tmp_path / "train.xyz", frames[:14])
    write(tmp_path / "test.xyz", frames[14:])
    cfg = tiny_config(tmp_path / "train.xyz", tmp_path / "run", max_epochs=2)
    cfg["data"]["test"] = str(tmp_path / "test.xyz")
    tr = Trainer(cfg, progress=False).run()
    s = loads_strict((tmp_path / "run" / "summary.json").read_text())
    assert s["n_test"] == 4 and s["n_train"] + s["n_val"] == 14
    ref = _reference_metrics(tmp_path / "run" / "model.pt", tmp_path / "test.xyz")
    for key, val in ref.items():
        assert _get(s["test"], key) == pytest.approx(val, abs=1e-6, rel=1e-9), key
    assert s["test"] == dict(tr.results["test"])


def test_test_fraction_keeps_the_validation_split_and_holds_out_disjoint_frames():
    from cgkit.train.dataset import split_indices, split_three
    tr0, va0 = split_indices(40, 0.1, 7)
    tr, va, te = split_three(40, 0.1, 0.2, 7)
    assert np.array_equal(va, va0) and len(te) == 8 and len(tr) == 28
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(40))
