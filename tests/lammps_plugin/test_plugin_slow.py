"""Long LAMMPS runs with pair_style cgkit (marked slow: `make test-slow`).

* 1000 NVE steps on 1 and 2 MPI ranks stay on the same trajectory (float64, round-off growth);
* energy drift of a 1000-atom Si NVE run with the SW-distilled Si ENNP of the silicon case study
  (case_studies/silicon/results/ennp_sw/model.pt, float32) < 1e-4 eV/atom/ps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from cgkit.nn.export import export_lammps

from ._lmp import plugin_or_skip, run_input, write_data
from .test_plugin import NAMES, _model, _structures

ROOT = Path(__file__).resolve().parents[2]
SI_MODEL = ROOT / "case_studies" / "silicon" / "results" / "ennp_sw" / "model.pt"


def _thermo(stdout, cols):
    rows = []
    for ln in stdout.splitlines():
        parts = ln.split()
        if len(parts) == cols and parts[0].isdigit():
            try:
                rows.append([float(v) for v in parts])
            except ValueError:
                pass
    return np.array(rows)


@pytest.mark.slow
def test_nve_1000_steps_one_vs_two_ranks(tmp_path):
    plugin_or_skip()
    export_lammps(_model("float64"), tmp_path / "f64.pt", check=False)
    write_data(tmp_path / "a.data", _structures()["tric"][0], NAMES)
    text = f"""
units metal
atom_style atomic
atom_modify map array
plugin load ${{cgkit_plugin}}
read_data a.data
replicate 2 2 2
neighbor 0.5 bin
pair_style cgkit
pair_coeff * * f64.pt {' '.join(NAMES)}
velocity all create 600 7 loop geom
fix 1 all nve
timestep 0.0005
thermo 100
thermo_style custom step pe ke etotal
thermo_modify format float %.15g
dump d all custom 1000 traj${{n}}.dump id x y z
dump_modify d format float %.17g sort id
run 1000
"""
    res = {}
    for n in (1, 2):
        proc = run_input(text.replace("${n}", str(n)), tmp_path, ranks=n, timeout=3000)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        th = _thermo(proc.stdout, 4)
        frames = (tmp_path / f"traj{n}.dump").read_text().split("ITEM: TIMESTEP")[1:]
        res[n] = (th, np.loadtxt(frames[-1].splitlines()[9:], ndmin=2))
    (t1, x1), (t2, x2) = res[1], res[2]
    assert len(t1) == len(t2) == 11
    # round-off growth over 1000 steps of a chaotic system: far below thermal motion (~0.1 Å)
    dx = np.abs(x1[:, 1:] - x2[:, 1:]).max()
    print(f"1 vs 2 ranks after 1000 steps: max |Δx| = {dx:.2e} Å, "
          f"max |ΔE_tot| = {np.abs(t1[:, 3] - t2[:, 3]).max():.2e} eV")
    assert dx < 1e-6
    assert np.abs(t1[:, 3] - t2[:, 3]).max() < 1e-8 * np.abs(t1[:, 3]).max()


@pytest.mark.slow
def test_nve_drift_si_ennp_1000_atoms(tmp_path):
    plugin_or_skip()
    if not SI_MODEL.exists():
        pytest.skip(f"{SI_MODEL} is absent (run case_studies/silicon/run.py)")
    from cgkit.io_potential import load_potential
    model = load_potential(SI_MODEL)
    export_lammps(model, tmp_path / "si.pt")
    atoms = bulk("Si", "diamond", 5.431, cubic=True) * (5, 5, 5)  # 1000 atoms
    write_data(tmp_path / "si.data", atoms, ["Si"])
    text = """
units metal
atom_style atomic
plugin load ${cgkit_plugin}
read_data si.data
pair_style cgkit
pair_coeff * * si.pt Si
velocity all create 600 11 loop geom
fix 1 all nve
timestep 0.001
thermo 50
thermo_style custom step pe ke etotal
thermo_modify format float %.15g
run 1000
"""
    proc = run_input(text, tmp_path, timeout=6000)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    th = _thermo(proc.stdout, 4)
    assert len(th) == 21
    t_ps = th[:, 0] * 1e-3
    e = th[:, 3] / len(atoms)
    slope = np.polyfit(t_ps, e, 1)[0]
    print(f"Si1000 NVE 1 ps (dt 1 fs, 600 K start): drift {slope:.2e} eV/atom/ps, "
          f"max |E - E0| {np.abs(e - e[0]).max():.2e} eV/atom, T_end {th[-1, 2] / (1.5 * 8.617333e-5 * len(atoms)):.0f} K")
    assert abs(slope) < 1e-4
