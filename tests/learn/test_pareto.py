"""The loss-weight front: non-domination against a brute-force definition, and a real front of
short SW-silicon runs in which the config's weights are on the front or dominated by a named run."""
import itertools

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from cgkit.calculator import CgkitCalculator
from cgkit.errors import InputError
from cgkit.learn.pareto import LossWeightFront, non_dominated
from cgkit.potentials import StillingerWeber


def test_non_dominated_equals_the_definition():
    rng = np.random.default_rng(0)
    P = np.round(rng.random((60, 2)), 1)  # many ties and duplicates
    front = non_dominated(P)
    for i in range(len(P)):
        beaten = any(np.all(P[j] <= P[i]) and np.any(P[j] < P[i]) for j in range(len(P)))
        assert (i in front) == (not beaten)
    assert non_dominated([[1, 2], [2, 1], [2, 2], [1, 2]]) == [0, 1, 3]


def si_frames(n, seed):
    calc = CgkitCalculator(StillingerWeber())
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Si", "diamond", 5.43095, cubic=True)
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.calc = calc
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


@pytest.mark.slow
def test_front_of_short_runs_reports_the_configs_weights(tmp_path):
    from ase.io import write
    write(str(tmp_path / "train.xyz"), si_frames(6, 1))
    cfg = {"model": {"preset": "small", "species": ["Si"], "r_cut": 3.8, "channels": 4, "l_max": 1, "n_layers": 1},
           "data": {"train": str(tmp_path / "train.xyz")}, "max_epochs": 2, "batch_size": 3}
    front = LossWeightFront(cfg, si_frames(3, 2), tmp_path / "front", energy_weights=[1.0],
                            forces_weights=[1.0, 100.0]).run()
    r = front.results
    assert len(r.runs) == 3  # 1:1, 1:100 and the config's default 1:10
    assert r.reference["forces_weight"] == 10.0
    pts = np.array([[q["energy_mae_eV_per_atom"], q["forces_mae_eV_per_A"]] for q in r.runs])
    assert np.all(np.isfinite(pts)) and np.all(pts > 0)
    assert r.front == non_dominated(pts)
    ref = r.reference
    assert ref["on_front"] == (ref["index"] in r.front)
    assert ref["on_front"] or ref["dominated_by"]
    assert (tmp_path / "front" / "w_00" / "model.pt").is_file()
    assert front.plot(tmp_path)[0].stat().st_size > 1000
    with pytest.raises(InputError, match="weights must be numbers >= 0"):
        LossWeightFront(cfg, si_frames(1, 3), tmp_path / "x", energy_weights=[-1.0])
