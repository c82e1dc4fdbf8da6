import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

from cgkit.sampling import sample_configurations, write_extxyz



@pytest.fixture(scope="session")
def cu_data(tmp_path_factory):
    """18 EMT-labelled Cu configurations (MD at 300/900 K, rattled, strained), 8 atoms each."""
    path = tmp_path_factory.mktemp("data") / "cu.xyz"
    cu = bulk("Cu", "fcc", 3.61, cubic=True) * (2, 1, 1)
    frames = sample_configurations([cu], EMT(), temperatures=(300, 900), frames_per_temperature=6,
                                   md_steps_between=5, equilibration_steps=20, rattle=0.05,
                                   n_rattled=4, strains=(0.02, -0.02), seed=0, progress=False)
    write_extxyz(frames, path)
    return path


def tiny_config(data, out, **over):
    cfg = {"output": str(out), "seed": 3,
           "model": {"species": ["Cu"], "r_cut": 4.0, "channels": 4, "l_max": 1, "n_layers": 2,
                     "n_radial": 4, "radial_hidden": 8, "radial_layers": 1, "readout_hidden": 4,
                     "dtype": "float64"},
           "data": {"train": str(data), "val_fraction": 0.2},
           "loss": {"energy": 1.0, "forces": 10.0, "stress": 1.0},
           "batch_size": 4, "max_epochs": 3, "checkpoint_every": 2, "threads": 1}
    cfg.update(over)
    return cfg


def write_config(cfg, path):
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    return path
