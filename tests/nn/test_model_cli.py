"""``cgkit model init`` writes a model that cgkit.load_potential and the ASE calculator run."""
import numpy as np
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
