"""Constraint-aware optimized force maps (Noid 2008; Krämer et al. 2023).

Rigid water: the trajectory forces lack the constraint (SETTLE) forces. The optimized map without
constraint handling then is not a mean-force estimator; with the constraints read from the
topology it is (for one bead per rigid molecule it is the basic map). The reference is the
exact identity ⟨F·G(R)⟩ = −kT⟨∇·G(R)⟩ of mean forces, on exactly sampled configurations."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cgkit.mapping import Mapping
from cgkit.mapping.forcemap import optimized_force_map, resolve_constraints

KB = 8.617333262e-5  # eV/K
T = 300.0
L = 12.0             # Å, period of the external field
K = 2 * np.pi / L
A_O, A_H = 0.5 * KB * T, 2.0 * KB * T      # field amplitudes on O and on each H, eV
MASS = {"O": 15.9994, "H": 1.008}


def _rigid_water_samples(n_mol=40, n_frames=300, seed=1):
    """Rigid SPC/E-like molecules (O–H 1 Å, H–O–H 109.47°) in U = Σ_atoms a cos(k x), sampled
    exactly (uniform COM and orientation, rejection on exp(−U/kT)). Returns atom positions
    (F, 3n, 3), the atoms' field forces (F, 3n, 3) — no constraint forces, as a GROMACS
    trajectory — and the molecular COM x (F, n)."""
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(seed)
    th = np.deg2rad(109.47) / 2
    body = np.array([[0, 0, 0], [np.sin(th), np.cos(th), 0], [-np.sin(th), np.cos(th), 0]])
    m = np.array([MASS["O"], MASS["H"], MASS["H"]])
    body -= (m[:, None] * body).sum(0) / m.sum()
    amp = np.array([A_O, A_H, A_H])
    need = n_mol * n_frames
    got = []
    while sum(len(g) for g in got) < need:
        nprop = 4 * need
        com = rng.uniform(0, L, (nprop, 3))
        rot = Rotation.random(nprop, random_state=rng).as_matrix()
        x = com[:, None, :] + np.einsum("nab,kb->nka", rot, body)
        U = (amp * np.cos(K * x[..., 0])).sum(1)
        keep = rng.random(nprop) < np.exp(-(U + amp.sum()) / (KB * T))
        got.append(x[keep])
    x = np.concatenate(got)[:need]
    f = np.zeros_like(x)
    f[..., 0] = amp * K * np.sin(K * x[..., 0])            # −dU/dx per atom
    x = x.reshape(n_frames, n_mol * 3, 3)
    f = f.reshape(n_frames, n_mol * 3, 3)
    return x, f


def _mapping(tmp_path, n_mol):
    from ase import Atoms
    pos = np.concatenate([np.array([[0, 0, 0], [0.6, 0.6, 0], [-0.6, 0.6, 0]]) + [5.0 * k, 0, 0]
                          for k in range(n_mol)])
    atoms = Atoms("OH2" * n_mol, positions=pos)
    yml = tmp_path / "w.yaml"
    yml.write_text("version: 1\nforce_map: basic\nmolecules:\n  - name: W\n    resname: H2O\n"
                   "    beads:\n      - {name: W, type: W, atoms: [O1, H1, H2], weights: mass}\n")
    return Mapping.from_yaml(yml, atoms)


def _identity_z(D, M, x, f):
    """z-score of ⟨F_x sin(kX)⟩ + kT k ⟨cos(kX)⟩ (zero for the mean force) over frames."""
    X = np.einsum("bn,fna->fba", M.toarray(), x)[..., 0]
    F = np.einsum("bn,fna->fba", D.toarray(), f)[..., 0]
    per_frame = (F * np.sin(K * X) + KB * T * K * np.cos(K * X)).mean(1)
    return per_frame.mean() / (per_frame.std(ddof=1) / np.sqrt(len(per_frame)))


def test_rigid_water_unaware_optimized_map_is_biased_constraint_aware_map_is_not(tmp_path):
    n_mol = 40
    x, f = _rigid_water_samples(n_mol=n_mol)
    m = _mapping(tmp_path, n_mol)
    pairs = np.array([[3 * k + a, 3 * k + b] for k in range(n_mol) for a, b in ((0, 1), (0, 2), (1, 2))])
    fit = f[:150]                                  # fit the maps on half, test on the other half
    d_none = optimized_force_map(m, fit, constraints="none")
    d_aware = optimized_force_map(m, fit, constraints=pairs)
    d_basic = m.D
    test_x, test_f = x[150:], f[150:]
    z_none = _identity_z(d_none, m.M, test_x, test_f)
    z_aware = _identity_z(d_aware, m.M, test_x, test_f)
    z_basic = _identity_z(d_basic, m.M, test_x, test_f)
    assert abs(z_basic) < 3.5, z_basic             # the reference identity holds for the basic map
    assert abs(z_aware) < 3.5, z_aware             # constraint-aware: unbiased within its error
    assert abs(z_none) > 8, z_none                 # unaware: biased (drops the H forces)
    # without constraints the optimizer puts the weight on the oxygen (the H forces look like noise)
    w = d_none[0].toarray().ravel()[:3]
    assert w[0] > 1.05 and abs(w[1]) < 0.3 and abs(w[2]) < 0.3, w      # basic: 1, 1, 1
    # with SETTLE constraints one bead per rigid molecule admits one valid map: the basic one
    np.testing.assert_allclose(d_aware.toarray(), d_basic.toarray(), atol=1e-8)
    # mapped-force second moment: aware = basic (the minimum among unbiased maps); the biased map
    # looks "better" (lower) — the trap the constraint handling avoids
    sm = {k: float(np.mean(np.einsum("bn,fna->fba", D.toarray(), test_f) ** 2))
          for k, D in (("none", d_none), ("aware", d_aware), ("basic", d_basic))}
    assert sm["aware"] <= sm["basic"] * (1 + 1e-9)
    assert sm["none"] < 0.5 * sm["basic"]


def _two_unit_samples(n_mol=40, n_frames=300, ks=0.005, seed=3):
    """Molecules of two rigid water units (A: strong field on its H; B: weak field) joined by a
    harmonic spring between the unit centres of mass (ks eV/Å²), sampled exactly: COM of A
    uniform, the spring vector Gaussian, orientations uniform, rejection on the field."""
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(seed)
    th = np.deg2rad(109.47) / 2
    body = np.array([[0, 0, 0], [np.sin(th), np.cos(th), 0], [-np.sin(th), np.cos(th), 0]])
    m = np.array([MASS["O"], MASS["H"], MASS["H"]])
    body -= (m[:, None] * body).sum(0) / m.sum()
    kT = KB * T
    amp = np.array([0.5, 3.0, 3.0, 0.3, 0.3, 0.3]) * kT
    need = n_mol * n_frames
    xs, ds = [], []
    while sum(len(v) for v in xs) < need:
        n = 6 * need
        ra = rng.uniform(0, L, (n, 3))
        delta = rng.normal(0, np.sqrt(kT / ks), (n, 3))
        rot = Rotation.random(2 * n, random_state=rng).as_matrix().reshape(n, 2, 3, 3)
        xa = ra[:, None] + np.einsum("nab,kb->nka", rot[:, 0], body)
        xb = (ra + delta)[:, None] + np.einsum("nab,kb->nka", rot[:, 1], body)
        x = np.concatenate([xa, xb], 1)
        U = (amp * np.cos(K * x[..., 0])).sum(1)
        keep = rng.random(n) < np.exp(-(U + amp.sum()) / kT)
        xs.append(x[keep])
        ds.append(delta[keep])
    x = np.concatenate(xs)[:need]
    delta = np.concatenate(ds)[:need]
    f = np.zeros_like(x)
    f[..., 0] = amp * K * np.sin(K * x[..., 0])
    w = np.r_[m, m] / m.sum()
    sign = np.r_[1, 1, 1, -1, -1, -1]
    f += ks * delta[:, None, :] * (w * sign)[None, :, None]     # spring, mass-distributed
    return x.reshape(n_frames, 6 * n_mol, 3), f.reshape(n_frames, 6 * n_mol, 3)


def test_bead_of_two_rigid_units_aware_map_is_unbiased_with_lower_noise_than_basic():
    """One bead over a molecule of two rigid units: the constraint-aware optimized map keeps
    equal weights within each unit but weights the quieter unit more — lower mapped-force
    second moment than the basic map, and unbiased (the identity holds); without constraint
    handling it is biased."""
    from ase import Atoms
    n_mol = 40
    x, f = _two_unit_samples(n_mol=n_mol)
    unit = np.array([[0, 0, 0], [0.6, 0.6, 0], [-0.6, 0.6, 0]])
    pos = np.concatenate([np.r_[unit, unit + [0, 0, 1.2]] + [6.0 * k, 0, 0] for k in range(n_mol)])
    atoms = Atoms("OH2OH2" * n_mol, positions=pos)
    import tempfile
    with tempfile.TemporaryDirectory() as td:
        yml = Path(td) / "d.yaml"
        yml.write_text("version: 1\nforce_map: basic\nmolecules:\n  - name: D\n    resname: H4O2\n"
                       "    beads:\n      - {name: D, type: D, atoms: [O1, H1, H2, O2, H3, H4], "
                       "weights: mass}\n")
        m = Mapping.from_yaml(yml, atoms)
    assert m.n_beads == n_mol
    pairs = np.array([[6 * k + 3 * u + a, 6 * k + 3 * u + b] for k in range(n_mol) for u in (0, 1)
                      for a, b in ((0, 1), (0, 2), (1, 2))])
    d_aware = optimized_force_map(m, f[:150], constraints=pairs)
    d_none = optimized_force_map(m, f[:150], constraints="none")
    w = d_aware[0].toarray().ravel()[:6]
    np.testing.assert_allclose(w[:3], w[0], atol=1e-9)           # equal within unit A
    np.testing.assert_allclose(w[3:], w[3], atol=1e-9)           # equal within unit B
    assert w[3] > w[0] + 0.2                                     # the quiet unit weighs more
    tx, tf = x[150:], f[150:]
    sm = {k: float(np.mean(np.einsum("bn,fna->fba", D.toarray(), tf) ** 2))
          for k, D in (("aware", d_aware), ("basic", m.D))}
    assert sm["aware"] < 0.8 * sm["basic"], sm            # measured 0.70
    assert abs(_identity_z(m.D, m.M, tx, tf)) < 3.5
    assert abs(_identity_z(d_aware, m.M, tx, tf)) < 3.5
    assert abs(_identity_z(d_none, m.M, tx, tf)) > 8


def test_resolve_constraints_options(tmp_path):
    from cgkit.errors import InputError, MappingError
    m = _mapping(tmp_path, 2)
    assert resolve_constraints(m, "none")[0] is None
    assert resolve_constraints(m, "auto")[0] is None           # ASE topology: no constraint record
    with pytest.raises(MappingError, match="does not record constraints"):
        resolve_constraints(m, "topology")
    with pytest.raises(InputError, match="constraints="):
        resolve_constraints(m, "settles")
    with pytest.raises(InputError, match="below 6"):
        resolve_constraints(m, [[0, 6]])


GMX = shutil.which("gmx")
SPC216 = Path("/usr/share/gromacs/top/spc216.gro")


@pytest.fixture(scope="module")
def spce_run(tmp_path_factory):
    """216 SPC/E molecules (SETTLE), 20 steps of GROMACS with forces every 2 steps."""
    if GMX is None or not SPC216.is_file():
        pytest.skip("GROMACS (gmx) with its spc216.gro is not installed")
    d = tmp_path_factory.mktemp("spce")
    (d / "topol.top").write_text('#include "oplsaa.ff/forcefield.itp"\n#include "oplsaa.ff/spce.itp"\n'
                                 "[ system ]\nspce\n[ molecules ]\nSOL 216\n")
    (d / "md.mdp").write_text("integrator = md\ndt = 0.002\nnsteps = 20\nnstxout = 2\nnstfout = 2\n"
                              "cutoff-scheme = Verlet\ncoulombtype = reaction-field\nrcoulomb = 0.8\n"
                              "rvdw = 0.8\ntcoupl = v-rescale\ntc-grps = System\ntau_t = 0.1\n"
                              "ref_t = 300\ngen-vel = yes\ngen-temp = 300\n")
    run = dict(cwd=d, capture_output=True, text=True, timeout=120)
    r = subprocess.run([GMX, "grompp", "-f", "md.mdp", "-c", str(SPC216), "-p", "topol.top", "-o",
                        "topol.tpr", "-maxwarn", "2"], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([GMX, "mdrun", "-nt", "1", "-s", "topol.tpr", "-o", "traj.trr"], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    return d


def test_tpr_settles_read_as_gmx_dump_lists_them(spce_run):
    from cgkit.mapping.importers import read_tpr_constraints
    pairs = read_tpr_constraints(spce_run / "topol.tpr")
    dump = subprocess.run([GMX, "dump", "-s", str(spce_run / "topol.tpr")], capture_output=True,
                          text=True, timeout=60).stdout
    # gmx dump lists the molecule type's SETTLE (O, H1, H2) once; the block repeats it 216 times
    import re
    settle = [tuple(map(int, t)) for t in re.findall(r"\(SETTLE\)\s+(\d+)\s+(\d+)\s+(\d+)", dump)]
    assert settle == [(0, 1, 2)]
    nmol = int(re.search(r"#molecules\s*=\s*(\d+)", dump).group(1))
    assert nmol == 216
    expect = {(3 * k + a, 3 * k + b) for k in range(nmol) for a, b in ((0, 1), (0, 2), (1, 2))}
    assert {tuple(p) for p in pairs.tolist()} == expect


def test_cli_optimized_map_on_settle_water_respects_constraints(spce_run, tmp_path):
    from cgkit.cli import main
    d = spce_run
    mp = Path(__file__).resolve().parents[2] / "mappings" / "spce_water_1bead.yaml"
    base = ["map", "--mapping", str(mp), "--topology", str(d / "topol.tpr"), "--trajectory",
            str(d / "traj.trr"), "--force-map", "optimized"]
    assert main(base + ["--out", str(tmp_path / "aware")]) == 0
    s = json.loads((tmp_path / "aware" / "summary.json").read_text())
    assert s["force_map_constraints"] == "topology (648 constrained pairs)"
    # the only valid constraint-respecting map of one bead per rigid molecule is the basic map:
    # no excess noise between the two
    noise = s["force_noise"]["excess_noise_vs_optimized"]["basic"]["W"]
    assert noise < 1e-12 * s["force_noise"]["second_moment"]["basic"]["W"]
    assert main(base + ["--constraints", "none", "--out", str(tmp_path / "none")]) == 0
    s2 = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert s2["force_map_constraints"] == "none"
    # without constraint handling the map departs from the basic (the only valid) one: weights
    # on O/H differ (on SPC/E the O and H-pair forces are anticorrelated, -0.96, so it stays
    # close to basic, with a lower — biased — second moment)
    sm = s2["force_noise"]["second_moment"]
    assert sm["optimized"]["W"] < sm["basic"]["W"]
    assert s2["force_noise"]["excess_noise_vs_optimized"]["basic"]["W"] > 1e-4 * sm["basic"]["W"]
