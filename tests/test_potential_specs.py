"""``--potential`` specs are resolved in one place (cgkit.io_potential) and wrong specs are
refused with a message that names the parameter and lists the accepted ones; property
calculations never change the caller's potential."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones as AseLJ
from ase.io import write

from cgkit.calculator import CgkitCalculator
from cgkit.cli import main
from cgkit.errors import CgkitError, InputError
from cgkit.io_potential import load_calculator, load_model, load_potential
from cgkit.potentials import LennardJones, StillingerWeber


# ---------------------------------------------------------------------- every spec kind
@pytest.mark.parametrize("spec, kind", [
    ("cgkit:sw", StillingerWeber),
    ("cgkit:stillinger_weber:epsilon=2.0", StillingerWeber),
    ("cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5", LennardJones),
    ("ase:EMT", EMT),
    ("ase:emt", EMT),
    ("ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True", AseLJ),
    ("ase:ase.calculators.emt.EMT", EMT),
])
def test_every_spec_kind_resolves(spec, kind):
    model = load_model(spec)
    assert isinstance(model, kind)
    if isinstance(model, torch.nn.Module):
        assert model.dtype == torch.float64  # second derivatives need float64


def test_spec_values_reach_the_model():
    lj = load_model("cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5")
    assert lj.cutoff == 8.5 and float(lj.sigma.max()) == 3.4 and float(lj.epsilon.max()) == 0.0104
    sw = load_model("cgkit:sw:epsilon=2")  # an integer where a float is expected is fine
    assert sw.params["epsilon"] == 2.0
    ase_lj = load_model("ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True")
    assert ase_lj.parameters.sigma == 3.4 and ase_lj.parameters.rc == 8.5 and ase_lj.parameters.smooth is True


def test_model_files_and_builtins_give_the_same_energies_through_every_entry(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43095, cubic=True)
    atoms.rattle(0.05, seed=1)
    path = tmp_path / "sw.pt"
    StillingerWeber().save(path)
    energies = []
    for spec in ("cgkit:sw", str(path), path):
        for calc in (load_calculator(spec), CgkitCalculator(load_potential(spec)),
                     CgkitCalculator(load_model(spec))):
            a = atoms.copy()
            a.calc = calc
            energies.append(a.get_potential_energy())
    assert np.ptp(energies) < 1e-9


def test_ase_calculator_from_load_calculator_is_the_calculator_itself():
    calc = load_calculator("ase:EMT")
    assert isinstance(calc, EMT)
    assert isinstance(load_calculator("cgkit:sw"), CgkitCalculator)


# ---------------------------------------------------------------------- wrong specs
@pytest.mark.parametrize("spec, must_contain", [
    ("cgkit:sw:bogus=1", ["cgkit:sw", "'bogus'", "epsilon (float", "sigma (float", "species (str"]),
    ("cgkit:lj:sigma=abc", ["cgkit:lj", "'sigma'", "must be a number", "'abc'", "epsilon (float",
                            "cutoff (float"]),
    ("cgkit:lj:sigma=nan", ["'sigma'", "finite"]),
    ("cgkit:lj:cutoff=inf", ["'cutoff'", "finite"]),
    ("cgkit:lj:sigma", ["key=value"]),
    ("cgkit:lj:sigma=1,sigma=2", ["'sigma'", "twice"]),
    ("cgkit:nope", ["unknown built-in", "cgkit:sw", "cgkit:lj"]),
    ("ase:EMT:bogus=1", ["ase:EMT", "unknown parameter 'bogus'", "asap_cutoff (bool"]),
    ("ase:LennardJones:sigma=x", ["ase:LennardJones", "'sigma'", "must be a number", "rc ("]),
    ("ase:EMT:asap_cutoff=3", ["'asap_cutoff'", "true or false"]),
    ("ase:NoSuchCalc", ["unknown ASE calculator", "EMT"]),
    ("ase:", ["give an ASE calculator name"]),
])
def test_wrong_specs_are_refused_with_the_accepted_parameters(spec, must_contain):
    with pytest.raises(InputError) as exc:
        load_model(spec)
    msg = str(exc.value)
    for piece in must_contain:
        assert piece in msg, (piece, msg)
    assert "does not compute stress" not in msg


def test_load_potential_refuses_ase_specs_clearly():
    with pytest.raises(InputError, match="ASE calculator.*needs a cgkit potential"):
        load_potential("ase:EMT")


def _non_model_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a model\n")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # a pickled object: needs weights_only=False
    return [text, noise, plain, module]


def test_non_model_files_are_refused_without_unsafe_advice(tmp_path):
    for path in _non_model_files(tmp_path):
        for loader in (load_model, load_potential):
            with pytest.raises(InputError) as exc:
                loader(path)
            msg = str(exc.value)
            assert "not a cgkit model file" in msg and str(path) in msg, msg
            assert "weights_only" not in msg, msg  # never pass on torch's unsafe advice
            assert "cgkit:sw" in msg, msg  # says what is accepted
            assert ("ase:EMT" in msg) == (loader is load_model), msg  # ASE only where it works
            assert exc.value.__cause__ is None or "weights_only" not in str(exc.value.__cause__)
    with pytest.raises(InputError, match="no potential file"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="folder"):
        load_model(tmp_path)


def test_damaged_model_file_is_refused(tmp_path):
    path = tmp_path / "sw.pt"
    StillingerWeber().save(path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(InputError, match="newer cgkit"):
        load_potential(path)


# ---------------------------------------------------------------------- through the CLI
@pytest.fixture
def si_cif(tmp_path):
    path = tmp_path / "Si.cif"
    write(path, bulk("Si", "diamond", a=5.43095, cubic=True))
    return path


def _cli(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


@pytest.mark.parametrize("command, spec, expect", [
    ("phonons", "cgkit:sw:bogus=1", "unknown parameter 'bogus'"),
    ("phonons", "cgkit:lj:sigma=abc", "'sigma' must be a number"),
    ("elastic", "ase:EMT:bogus=1", "ase:EMT: unknown parameter 'bogus'"),
    ("elastic", "cgkit:sw:bogus=1", "unknown parameter 'bogus'"),
])
def test_cli_refuses_bad_specs_in_one_line(command, spec, expect, si_cif, tmp_path, capsys):
    out = tmp_path / "out"
    rc, text = _cli([command, "--structure", si_cif, "--potential", spec, "--out", out], capsys)
    assert rc == 1, text
    assert expect in text and "Traceback" not in text and "internal error" not in text, text
    assert "does not compute stress" not in text
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", ["phonons", "elastic"])
def test_cli_refuses_non_model_files_without_unsafe_advice(command, si_cif, tmp_path, capsys):
    for path in _non_model_files(tmp_path):
        rc, text = _cli([command, "--structure", si_cif, "--potential", path,
                         "--out", tmp_path / f"out_{path.stem}"], capsys)
        assert rc == 1, text
        assert "not a cgkit model file" in text and "weights_only" not in text, text


# ---------------------------------------------------------------------- no silent mutation
def _float32_ennp():
    from cgkit.nn import ENNP
    torch.manual_seed(0)
    model = ENNP(["Si"], 3.0, channels=4, l_max=1, n_layers=1, n_radial=4, radial_hidden=8,
                 radial_layers=1, readout_hidden=4, dtype="float32", init_seed=0)
    model.set_statistics(shift=[-4.3], scale=0.5, avg_num_neighbors=4.0)
    return model


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before):
    assert model.dtype == torch.float32
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert after[k].dtype == v.dtype, k
        assert torch.equal(after[k], v), k


@pytest.mark.parametrize("use_calculator", [False, True])
def test_property_calculations_do_not_change_the_callers_potential(use_calculator):
    """Phonons, StableTimestep and ElasticConstants compute in float64 on a copy: a float32
    ENNP passed in comes back float32 with the same weights (it used to come back float64)."""
    from cgkit.properties.calculators import resolve_model
    from cgkit.properties.elastic import ElasticConstants
    from cgkit.properties.phonons import Phonons
    from cgkit.properties.timestep import StableTimestep

    model = _float32_ennp()
    before = _snapshot(model)
    given = CgkitCalculator(model) if use_calculator else model
    atoms = bulk("Si", "diamond", a=5.43095, cubic=True)

    pot, calc = resolve_model(given)
    _assert_unchanged(model, before)
    assert pot is not model and pot.dtype == torch.float64 and calc.dtype == torch.float64

    runs = [lambda: StableTimestep(atoms, given),
            lambda: ElasticConstants(atoms, given, method="analytic", relax_ions=False),
            lambda: Phonons(atoms, given, supercell=(2, 2, 2), primitive_matrix="P", mesh=(2, 2, 2),
                            progress=False)]
    for make in runs:
        analysis = make()
        try:
            analysis.run()
        except CgkitError:
            pass  # a refusal (e.g. of an unstable random model) is fine: only the model matters
        _assert_unchanged(model, before)


def test_resolve_model_does_not_copy_a_float64_potential():
    from cgkit.properties.calculators import resolve_model
    sw = StillingerWeber()
    pot, _ = resolve_model(sw)
    assert pot is sw  # nothing to cast: no copy
