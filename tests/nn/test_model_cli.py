"""``cgkit model init`` writes a model that cgkit.load_potential and the ASE calculator run."""
import numpy as np
import pytest
import torch
from ase.build import bulk

import cgkit
from cgkit.cli import main
from cgkit.nn import ENNP


def test_model_init_cli_writes_loadable_model(tmp_path, capsys):
    out = tmp_path / "model.pt"
    rc = main(["model", "init", "--preset", "small", "--species", "Si", "Cu", "--r-cut", "4.0",
               "--dtype", "float64", "--out", str(out)])
    assert rc == 0 and out.is_file()
    pot = cgkit.load_potential(out)
    assert isinstance(pot, ENNP)
    assert pot.type_names == ("Si", "Cu") and pot.cutoff == 4.0 and pot.dtype == torch.float64
    assert str(pot.irreps_hidden) == "32x0e+32x1o+32x2e"
    assert pot.metadata["preset"] == "small" and pot.metadata["trained"] is False
    a = bulk("Si", "diamond", 5.43)
    a.calc = cgkit.CgkitCalculator(pot)
    f = a.get_forces()
    assert np.isfinite(a.get_potential_energy()) and np.allclose(f.sum(0), 0.0, atol=1e-10)


def test_model_init_cli_rejects_bad_cutoff(tmp_path, capsys):
    rc = main(["model", "init", "--species", "Si", "--r-cut", "-2", "--out", str(tmp_path / "m.pt")])
    assert rc == 1
    assert "r_cut" in capsys.readouterr().err


def _export(tmp_path, dtype):
    from tests.nn.conftest import tiny_model
    model = tiny_model(dtype=dtype)  # Si/C, r_cut 3.5 Å, non-trivial energy shift and scale
    src, out = tmp_path / f"m_{dtype}.pt", tmp_path / f"ts_{dtype}.pt"
    model.save(src)
    assert main(["model", "export", "--format", "torchscript", str(src), str(out)]) == 0
    return model, out


def _sic(n_rep, seed):
    a = bulk("Si", "diamond", 4.6, cubic=True) * n_rep
    a.symbols[np.random.default_rng(seed).permutation(len(a))[: len(a) // 3]] = "C"
    a.rattle(0.1, seed=seed)
    return a


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-6)])
def test_model_export_torchscript_matches_eager_energy_forces_stress(tmp_path, dtype, tol):
    model, out = _export(tmp_path, dtype)
    exported = torch.jit.load(str(out))
    assert exported.cutoff == model.cutoff and list(exported.type_names) == ["Si", "C"]
    for n_rep, seed in (((1, 1, 1), 1), ((2, 2, 1), 2)):  # sizes other than the traced one
        g = model.graph(_sic(n_rep, seed))
        ref = model.compute(g, forces=True, stress=True)
        e, f, s = exported(g.positions, g.cell[0], g.species, g.edge_index, g.cell_shifts, True)
        assert f.dtype == model.dtype
        assert abs(float(e - ref["energy"][0])) <= tol * abs(float(ref["energy"][0]))
        assert float((f - ref["forces"]).abs().max()) <= tol * float(ref["forces"].abs().max())
        # stress: a sum of cancelling virial terms, in float32 accumulated to ~1e-6 relative in
        # either route (3×3 strain here, Voigt strain in cgkit): 10x the energy/force tolerance
        assert float((s - ref["stress"][0]).abs().max()) <= 10 * tol * float(ref["stress"].abs().max())
        _, _, s0 = exported(g.positions, g.cell[0], g.species, g.edge_index, g.cell_shifts, False)
        assert not s0.any()


def test_exported_model_runs_with_torch_alone(tmp_path):
    import json
    import subprocess
    import sys
    model, out = _export(tmp_path, "float64")
    g = model.graph(_sic((1, 1, 1), 3))
    ref = model.compute(g, forces=True)
    torch.save({k: getattr(g, k) for k in ("positions", "cell", "species", "edge_index", "cell_shifts")},
               tmp_path / "inputs.pt")
    code = ("import json, sys, torch\n"
            f"m = torch.jit.load({str(out)!r})\n"
            f"x = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
            "e, f, _ = m(x['positions'], x['cell'][0], x['species'], x['edge_index'], x['cell_shifts'], False)\n"
            "mods = [k for k in sys.modules if k.split('.')[0] in ('cgkit', 'e3nn')]\n"
            "print(json.dumps({'e': float(e), 'f': f.tolist(), 'mods': mods}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["mods"] == []
    assert abs(res["e"] - float(ref["energy"][0])) < 1e-12 * abs(float(ref["energy"][0]))
    assert np.abs(np.array(res["f"]) - ref["forces"].numpy()).max() < 1e-12


def test_model_export_rejects_non_ennp_potentials(tmp_path, capsys):
    rc = main(["model", "export", "cgkit:lj", str(tmp_path / "lj.pt")])
    assert rc == 1
    assert "ENNP" in capsys.readouterr().err


def test_model_init_exposes_model_options_and_protects_the_output_file(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["model", "init", "--species", "Cu", "--r-cut", "3.0", "--channels", "4", "--l-max", "1",
                 "--full-parity", "--radial-hidden", "8", "--radial-layers", "1", "--n-radial", "4",
                 "--readout-hidden", "4", "--envelope-p", "5", "--out", str(out)]) == 0
    cfg = cgkit.load_potential(out).get_config()
    assert cfg["full_parity"] is True and cfg["radial_hidden"] == 8 and cfg["radial_layers"] == 1
    assert cfg["n_radial"] == 4 and cfg["readout_hidden"] == 4 and cfg["envelope_p"] == 5
    before = out.read_bytes()
    assert main(["model", "init", "--species", "Si", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["model", "init", "--species", "Si", "--channels", "4", "--l-max", "1", "--out", str(out),
                 "--overwrite"]) == 0
    assert cgkit.load_potential(out).type_names == ("Si",)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["model", "init", "--species", "Si", "--out", str(blocker / "m.pt")]) == 1
    err = capsys.readouterr().err
    assert "cgkit model: error:" in err and "internal error" not in err
    with pytest.raises(SystemExit):
        main(["model", "init", "--help"])
    text = capsys.readouterr().out
    for opt in ("--full-parity", "--radial-hidden", "--radial-layers", "--n-radial", "--readout-hidden",
                "--envelope-p", "--vector-head", "--tensor-head", "--overwrite"):
        assert opt in text
