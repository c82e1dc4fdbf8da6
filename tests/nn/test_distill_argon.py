"""LJ argon distillation (slow, ~18 minutes): the run of ``benchmarks/distill.py --system ar``.

Teacher: cgkit's LennardJones with argon parameters (σ 3.405 Å, ε 0.0104 eV, cutoff 8.5 Å with
its C² switch from 5.61 Å); fcc crystal MD 20–80 K, rattled and strained cells, liquid at
1.40 g/cm³ and 90–150 K (420 frames, 10 % validation). Student: a one-layer scalar ENNP
(l_max 0, r_cut 8.5 Å = the teacher's), trained for at most 14 minutes on one thread.

Issue 3: validation force error < 1 % of the teacher's force RMS. Measured on this 2-core
machine under a load average of ~10 (the trainer got ~20 % of a core; 30 epochs, best
at epoch 28; a second run gave the same model):
force MAE 0.335 meV/Å, RMSE 0.769 meV/Å, teacher force RMS 54.7 meV/Å, so
MAE/RMS = 0.61 % (target met, asserted < 1 %) and RMSE/RMS = 1.40 % (the stricter ratio is
NOT below 1 % within this budget: the RMSE is dominated by close contacts r < 3.3 Å in the
150 K liquid; asserted < 2 % as a regression bound). Learning curve of that run (epoch, wall
time, validation force MAE / RMSE in meV/Å): 0, 42 s, 11.6 / 20.4; 4, 167 s, 0.78 / 1.79;
8, 277 s, 0.52 / 1.07; 12, 383 s, 0.43 / 0.91; 16, 501 s, 0.41 / 0.85; 20, 611 s,
0.37 / 0.83; 24, 721 s, 0.35 / 0.80; 28, 821 s, 0.335 / 0.769.

Run with ``pytest -m slow tests/nn/test_distill_argon.py -s``; prints the figures and the
learning curve (validation force MAE/RMSE per epoch).
"""
import importlib.util
import json
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distill.py"


def _distill():
    spec = importlib.util.spec_from_file_location("cgkit_bench_distill", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_lj_argon_distillation_force_mae_below_one_percent_of_force_rms(tmp_path):
    res = _distill().run_one("ar", tmp_path / "ar", minutes=14.0, threads=1)
    print(json.dumps(res, indent=1))
    assert res["teacher_force_rms_meV_per_A"] > 20.0  # crystal and liquid forces, not a quiet set
    assert res["force_mae_over_rms"] < 0.01, res  # issue 3 (measured 0.61 %)
    assert res["force_rmse_over_rms"] < 0.02, res  # stricter ratio, regression bound (measured 1.40 %)
