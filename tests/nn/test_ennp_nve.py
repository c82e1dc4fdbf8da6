"""NVE molecular dynamics with a trained ENNP conserves energy (float64 and float32)."""
import numpy as np
import pytest
import torch
from ase.build import bulk

from cgkit.md import MolecularDynamics
from tests.conftest import train_small_si_ennp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_si_ennp(tmp_path_factory.mktemp("ennp_nve"))


# float32 (what MD runs in, and the harder case for round-off drift) in the default suite;
# float64 (43 s) in the slow suite, to keep `make test` within its 10-minute budget
@pytest.mark.parametrize("dtype", [pytest.param(torch.float64, marks=pytest.mark.slow), torch.float32])
def test_trained_ennp_nve_drift_below_1e_4_ev_per_atom_per_ps_over_10_ps(trained, dtype):
    """64-atom Si from 600 K, velocity Verlet, 1 fs, 10 ps: linear drift of the total energy."""
    atoms = bulk("Si", "diamond", 5.43095, cubic=True).repeat(2)
    md = MolecularDynamics(trained.to(dtype), atoms, timestep=1.0, integrator="verlet",
                           temperature=600.0, seed=1, log_every=50, write_every=0,
                           progress=False, dtype=dtype, n_threads=1)
    md.run(10_000)
    t_ps = np.asarray(md.results.time) * 1e-3
    # one replica: (n_log,) or (n_log, 1) → (n_log,)
    e = np.asarray(md.results.total_energy).reshape(len(t_ps), -1)[:, 0] / len(atoms)
    slope = np.polyfit(t_ps, e, 1)[0]
    print(f"{dtype}: NVE drift {slope:.2e} eV/atom/ps, fluctuation {np.ptp(e):.2e} eV/atom")
    assert abs(slope) < 1e-4, f"{dtype}: drift {slope:.2e} eV/atom/ps"
    assert np.ptp(np.asarray(md.results.kinetic_energy)) > 0.05  # atoms really moved
