"""Charged CG beads (issue 15 item 5): bead charges from the mapping, Coulomb between beads as a
fixed force-matching term, the fitted model (tables + Coulomb) saved/reloaded and run, and its
LAMMPS export (``table`` + ``coul/long`` + ``pppm``) against LAMMPS itself.

The teacher: +q/−q Lennard-Jones ions (different σ, ε per type, Lorentz–Berthelot) plus Ewald
Coulomb, labelled in random periodic configurations. Mapped one ion per bead with the bead charge
summed from the topology's atom charges, force matching with the Coulomb term fixed must give
back the LJ pair forces (the mean force is exactly pair-additive here); without it the tables
cannot (the check can fail).
"""
import shutil
import subprocess

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from cgkit.cli import main
from cgkit.data import AtomicGraph
from cgkit.electrostatics import Electrostatics, Exclusions
from cgkit.errors import InputError, MappingError
from cgkit.export import write_lammps
from cgkit.forcematch.coulomb import BeadCoulombPotential
from cgkit.forcematch.mscg import SplineForceMatching
from cgkit.forcematch.tabulated import Table, TabulatedPotential
from cgkit.io_potential import load_potential
from cgkit.jsonutil import loads_strict
from cgkit.mapping import Mapping
from cgkit.potential import SumPotential
from cgkit.potentials.coulomb import CoulombPotential
from cgkit.potentials.lennard_jones import LennardJones
from cgkit.topology import Topology
from cgkit.testing import random_liquid

TYPES = ("A", "B")
Q = 0.6          # e: A = +Q, B = -Q
RC = 8.0         # Å, LJ cutoff (switched from 6 Å) = pair grid end
L = 16.0         # Å, cubic box
N = 64
R_MIN = 2.7      # Å, closest approach in the random configurations
N_FRAMES = 30

needs_lmp = pytest.mark.skipif(shutil.which("lmp") is None, reason="LAMMPS executable 'lmp' not found "
                               "(Debian package lammps, with KSPACE); the LAMMPS cross-check needs it")


def _lj():
    return LennardJones([3.0, 3.5], [0.02, 0.01], cutoff=RC, r_on=6.0, type_names=TYPES)


@pytest.fixture(scope="module")
def ions():
    """Random ±Q LJ ion configurations with teacher forces (LJ + Ewald at accuracy 1e-9)."""
    rng = np.random.default_rng(7)
    species = np.repeat([0, 1], N // 2)
    q = np.where(species == 0, Q, -Q)
    teacher = SumPotential([_lj(), CoulombPotential(method="ewald", accuracy=1e-9)])
    cell = np.eye(3) * L
    pos, frc = [], []
    for _ in range(N_FRAMES):
        x = random_liquid(rng, N, L, R_MIN)
        g = AtomicGraph.from_arrays(x, cell, True, RC, species=species, type_names=TYPES, charges=q)
        pos.append(x)
        frc.append(teacher.compute(g)["forces"].numpy())
    return {"positions": np.array(pos), "forces": np.array(frc), "species": species, "charges": q,
            "cell": cell}


def _lj_pair_force(a: int, b: int, r: np.ndarray) -> np.ndarray:
    """-dφ/dr (eV/Å) of the teacher's LJ pair (a, b), by autograd of its pair energy."""
    lj = _lj()
    rr = torch.tensor(r, requires_grad=True)
    e = lj.pair_energy(rr, lj.sigma[a, b], lj.epsilon[a, b])
    return -torch.autograd.grad(e.sum(), rr)[0].numpy()


def _pair_errors(tables, ranges):
    """{label: max |f_fit − f_LJ| / (max f_LJ − min f_LJ)} over the sampled (table) range."""
    out = {}
    for t in tables:
        if t.kind != "pair":
            continue
        lo = ranges[t.label][0]
        r = np.linspace(lo, RC - 0.05, 400)
        f_ref = _lj_pair_force(TYPES.index(t.types[0]), TYPES.index(t.types[1]), r)
        out[t.label] = float(np.abs(t(r)[1] - f_ref).max() / np.ptp(f_ref))
    return out


def _fit(ions, fixed_terms):
    top = Topology(n_particles=N)
    fm = SplineForceMatching(TYPES, ions["species"], top, pair=(0.0, RC, 0.1), bond=None, angle=None,
                             dihedral=None, fixed_terms=fixed_terms)
    fm.accumulate(ions["positions"], ions["forces"], ions["cell"], progress=False)
    with pytest.warns(Warning):   # nothing sampled below R_MIN: trimmed, walls
        res = fm.solve()
    ranges = {i["interaction"]: i["table_range"] for i in res.interactions if i["kind"] == "pair"}
    return res, ranges


# ---------------------------------------------------------------------------- (a) recovery
def test_fixed_coulomb_recovers_the_lj_pair_forces_and_without_it_they_are_wrong(ions):
    coul = BeadCoulombPotential(ions["charges"], None, method="ewald", accuracy=1e-6, type_names=TYPES)
    res, ranges = _fit(ions, [coul])
    err = _pair_errors(res.tables, ranges)
    assert set(err) == {"pair A-A", "pair A-B", "pair B-B"}
    assert all(ranges[k][0] <= R_MIN + 0.1 for k in ranges)          # the whole sampled interval
    assert max(err.values()) < 0.01, err                               # measured ~1e-4
    assert isinstance(res.potential, SumPotential)
    assert any(i["kind"] == "coulomb" and i["fixed"] for i in res.interactions)
    # the model (tables + Coulomb) reproduces the teacher's forces
    g = AtomicGraph.from_arrays(ions["positions"][0], ions["cell"], True, RC, species=ions["species"],
                                type_names=TYPES)
    f = res.potential.compute(g)["forces"].numpy()
    assert np.abs(f - ions["forces"][0]).max() < 1e-3 * np.abs(ions["forces"][0]).max()

    res_bare, ranges_bare = _fit(ions, [])
    err_bare = _pair_errors(res_bare.tables, ranges_bare)
    assert min(err_bare.values()) > 0.1, err_bare                     # measured 0.2-0.7


# ---------------------------------------------------------------------------- mapping charges
def _dimers(n=4, box=12.0):
    """CO-like dimers (C +0.8 e, O −0.3 e): ASE bonds them (1.13 Å), molecules = residues."""
    rng = np.random.default_rng(1)
    pos, sym = [], []
    for k in range(n):
        c = np.array([2.5 + 3.0 * k, 2.0 + rng.uniform(0, 1), 3.0])
        pos += [c, c + [0.0, 0.0, 1.13]]
        sym += ["C", "O"]
    at = Atoms(sym, positions=pos, cell=np.eye(3) * box, pbc=True)
    at.set_initial_charges(np.tile([0.8, -0.3], n))
    return at


def _co_yaml(bead_extra="", options=""):
    return ("version: 1\nname: co\n" + options + "molecules:\n  - name: CO\n    resname: CO\n    beads:\n"
            "      - {name: M, type: M, atoms: [C1, O1]" + bead_extra + "}\n")


def test_bead_charges_are_summed_from_the_topology_or_given_in_the_yaml(tmp_path):
    at = _dimers()
    cases = {"": 0.5, ", charge: 0.25": 0.25, ", atom_charges: [0.1, 0.2]": 0.3}
    for extra, expected in cases.items():
        p = tmp_path / "m.yaml"
        p.write_text(_co_yaml(extra))
        m = Mapping.from_yaml(p, at)
        np.testing.assert_allclose(m.bead_charges, expected, atol=1e-12)
        assert m.net_charge == pytest.approx(4 * expected)
    p.write_text(_co_yaml(options="options: {bead_charges: none}\n"))
    assert np.all(Mapping.from_yaml(p, at).bead_charges == 0)
    # mapped structures carry the charges (ASE initial_charges), and so does the PSF
    p.write_text(_co_yaml())
    m = Mapping.from_yaml(p, at)
    frame = m.map_frame(type("F", (), {"positions": at.positions, "cell": at.cell.array, "pbc": at.pbc,
                                       "forces": np.zeros((8, 3))})())
    np.testing.assert_allclose(m.to_atoms(frame).get_initial_charges(), 0.5)
    import warnings

    import MDAnalysis as mda
    from cgkit.trajectory import write_psf
    write_psf(tmp_path / "cg.psf", m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # "no coordinate reader" for a bare PSF
        np.testing.assert_allclose(mda.Universe(str(tmp_path / "cg.psf")).atoms.charges, 0.5, rtol=1e-7)


_TRI_TOP = """[ defaults ]
1 2 yes 0.5 0.8333
[ atomtypes ]
CX 12.011 0.0 A 0.3 0.4
OX 15.999 0.0 A 0.3 0.4
[ moleculetype ]
TRI 1
[ atoms ]
1 CX 1 TRI A1 1  0.7 12.011
2 OX 1 TRI A2 2 -0.2 15.999
3 OX 1 TRI A3 3 -0.5 15.999
[ bonds ]
1 2 1 0.15 200000
2 3 1 0.15 200000
[ system ]
tri
[ molecules ]
TRI 4
"""


@pytest.mark.skipif(shutil.which("gmx") is None, reason="GROMACS 'gmx' not found (Debian package gromacs); "
                    "needed to write a tpr with partial charges")
def test_bead_charges_are_summed_from_a_gromacs_tpr(tmp_path):
    """4 three-atom molecules (+0.7, −0.2, −0.5 e) mapped to beads P = A1+A2 and M = A3."""
    (tmp_path / "topol.top").write_text(_TRI_TOP)
    gro = ["tri", "12"] + [f"{m + 1:5d}{'TRI':<5s}{name:>5s}{3 * m + j + 1:5d}{0.5 + 0.7 * m:8.3f}"
                           f"{0.5 + 0.15 * j:8.3f}{0.5:8.3f}" for m in range(4) for j, name in enumerate(["A1", "A2", "A3"])]
    (tmp_path / "conf.gro").write_text("\n".join(gro + ["   3.00000   3.00000   3.00000"]) + "\n")
    (tmp_path / "grompp.mdp").write_text("integrator = md\nnsteps = 0\ncutoff-scheme = Verlet\n"
                                         "coulombtype = PME\nrcoulomb = 1.0\nrvdw = 1.0\n")
    r = subprocess.run(["gmx", "grompp", "-f", "grompp.mdp", "-c", "conf.gro", "-p", "topol.top", "-o",
                        "topol.tpr", "-maxwarn", "5"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path / "tri.yaml").write_text(
        "version: 1\nmolecules:\n  - name: TRI\n    resname: TRI\n    beads:\n"
        "      - {name: P, type: P, atoms: [A1, A2]}\n      - {name: M, type: M, atoms: [A3]}\n"
        "    bonds: [[P, M]]\n")
    m = Mapping.from_yaml(tmp_path / "tri.yaml", tmp_path / "topol.tpr")
    np.testing.assert_allclose(m.bead_charges, np.tile([0.5, -0.5], 4), atol=1e-6)   # tpr: float32
    assert abs(m.net_charge) < 1e-6
    # the bonded P-M pair is excluded from the pair tables, and so from the Coulomb term
    coul = BeadCoulombPotential.from_topology(m.bead_charges, m.topology)
    assert sorted(map(tuple, coul.exclusions.tolist())) == [(0, 1), (2, 3), (4, 5), (6, 7)]


# ---------------------------------------------------------------------------- (c) bad input
@pytest.mark.parametrize("value, field", [('"plus"', "charge"), (".nan", "charge"), ("true", "charge")])
def test_a_bead_charge_that_is_not_a_number_is_refused_naming_file_bead_and_field(tmp_path, value, field):
    p = tmp_path / "bad.yaml"
    p.write_text(_co_yaml(f", charge: {value}"))
    with pytest.raises(MappingError) as e:
        Mapping.from_yaml(p, _dimers())
    msg = str(e.value)
    assert "bad.yaml" in msg and "line" in msg and f"beads[0].{field}" in msg and "'M'" in msg


def test_atom_charges_must_be_numbers_one_per_atom(tmp_path):
    p = tmp_path / "bad.yaml"
    for extra, expect in ((", atom_charges: [0.1]", "2 numbers"), (", atom_charges: [0.1, x]", "atom charge 1"),
                          (", charge: 0.1, atom_charges: [0.1, 0.2]", "both")):
        p.write_text(_co_yaml(extra))
        with pytest.raises(MappingError, match=expect):
            Mapping.from_yaml(p, _dimers())


def test_a_non_neutral_periodic_system_needs_an_explicit_background():
    q = np.array([0.6, -0.6, 0.5])
    with pytest.raises(InputError, match="net charge of 0.5 e.*background"):
        BeadCoulombPotential(q, method="ewald")
    auto = BeadCoulombPotential(q, method="auto")          # refused when evaluated periodic
    pos = np.array([[0.0, 0, 0], [3.0, 0, 0], [0, 3.0, 0]])
    g = AtomicGraph.from_arrays(pos, np.eye(3) * 10, True, 1.0)
    with pytest.raises(InputError, match="net charge"):
        auto.compute(g)
    # open boundaries (direct sum) have no such restriction; with background=True it is Ewald's
    g_open = AtomicGraph.from_arrays(pos, None, False, 1.0)
    assert np.isfinite(auto.compute(g_open)["energy"].item())
    e_bg = BeadCoulombPotential(q, method="ewald", background=True, accuracy=1e-10).compute(g)["energy"].item()
    ref = Electrostatics(method="ewald", background=True, accuracy=1e-10).energy(
        torch.tensor(pos), torch.tensor(q), torch.eye(3, dtype=torch.float64) * 10, [True] * 3).item()
    assert e_bg == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------------------- CLI end to end
def _write_ion_inputs(d, ions, cation_charge=None):
    """Topology (first frame with initial charges), trajectory with forces, mapping YAML."""
    sym = np.where(ions["species"] == 0, "He", "Ne")
    frames = []
    for x, f in zip(ions["positions"], ions["forces"]):
        a = Atoms(list(sym), positions=x, cell=ions["cell"], pbc=True)
        a.set_initial_charges(ions["charges"])
        a.calc = SinglePointCalculator(a, forces=f)
        frames.append(a)
    ase.io.write(d / "topology.extxyz", frames[0])
    ase.io.write(d / "traj.extxyz", frames)
    extra = "" if cation_charge is None else f", charge: {cation_charge}"
    (d / "ions.yaml").write_text(
        "version: 1\nname: ions\nmolecules:\n"
        "  - name: cation\n    resname: He\n    beads:\n      - {name: A, type: A, atoms: [He1]" + extra + "}\n"
        "  - name: anion\n    resname: Ne\n    beads:\n      - {name: B, type: B, atoms: [Ne1]}\n")
    return ["--mapping", str(d / "ions.yaml"), "--topology", str(d / "topology.extxyz"),
            "--trajectory", str(d / "traj.extxyz")]


@pytest.fixture(scope="module")
def fm_run(ions, tmp_path_factory):
    """``cgkit map`` (bead charges summed from the topology into the PSF), then ``cgkit fm
    --coulomb ewald`` on the CG trajectory (charges read back from the PSF)."""
    d = tmp_path_factory.mktemp("charged_fm")
    args = _write_ion_inputs(d, ions)
    assert main(["map", *args, "--format", "extxyz", "--out", str(d / "cg")]) == 0
    psf, traj = d / "cg" / "cg.psf", next((d / "cg").glob("cg.*xyz"))
    rc = main(["fm", "--cg-trajectory", str(traj), "--cg-topology", str(psf), "--coulomb", "ewald",
               "--pair-cutoff", str(RC), "--export", "lammps,gromacs", "--out", str(d / "fm")])
    assert rc == 0
    return d


def test_cgkit_fm_coulomb_fits_saves_and_exports_the_charged_model(fm_run, ions):
    out = fm_run / "fm"
    s = loads_strict((out / "summary.json").read_text())
    assert s["coulomb"]["method"] == "ewald" and s["coulomb"]["n_charged_beads"] == N
    assert abs(s["coulomb"]["net_charge_e"]) < 1e-12
    model = load_potential(out / "cg_potential.pt")           # reloads with its Coulomb term
    coul = [t for t in model.terms if isinstance(t, BeadCoulombPotential)]
    assert len(coul) == 1
    # bead charges summed from the topology's atom charges (ASE initial_charges), in bead order
    np.testing.assert_allclose(coul[0].charges, ions["charges"])
    tabs = [t for t in model.terms if isinstance(t, TabulatedPotential)][0].tables
    ranges = {i["interaction"]: i["table_range"] for i in s["interactions"] if i["kind"] == "pair"}
    assert max(_pair_errors(tabs, ranges).values()) < 0.01
    # exports: LAMMPS input with coul/long + pppm and charges in the data file; GROMACS PME note
    script = (out / "lammps" / "in.cg").read_text()
    assert "coul/long" in script and "kspace_style pppm 1e-06" in script and "atom_style full" in script
    mdp = (out / "gromacs" / "coulomb.mdp").read_text()
    assert "coulombtype      = PME" in mdp
    itp = (out / "gromacs" / "charges.itp").read_text().splitlines()
    assert sum(1 for line in itp if line.strip().endswith(("0.60000000", "-0.60000000"))) == N


def test_cg_md_with_the_charged_model_conserves_energy(fm_run, ions):
    """NVE from a random (unrelaxed) configuration: the total energy error of velocity Verlet
    falls as dt² (×4 for half the step) — energies and forces (tables + Ewald) are consistent."""
    from cgkit.md import MolecularDynamics
    model = load_potential(fm_run / "fm" / "cg_potential.pt")
    spread = {}
    for dt in (1.0, 0.5):
        at = Atoms(numbers=np.zeros(N, int), positions=ions["positions"][0], cell=ions["cell"], pbc=True,
                   masses=np.full(N, 20.0))
        at.arrays["bead_types"] = np.array([TYPES[s] for s in ions["species"]])
        md = MolecularDynamics(model, at, timestep=dt, integrator="verlet", temperature=100.0, progress=False,
                               log_every=1, seed=3, dtype=torch.float64)
        md.run(int(round(20 / dt)))
        e_pot = md.results["potential_energy"][:, 0]
        e = e_pot + md.results["kinetic_energy"][:, 0]
        assert np.all(np.isfinite(e)) and np.ptp(e_pot) > 1.0      # eV: the structure relaxes
        spread[dt] = np.ptp(e)
    assert spread[0.5] < 1e-4 * N                                # eV (measured 2e-4 eV in total)
    assert 3.0 < spread[1.0] / spread[0.5] < 5.5, spread


@needs_lmp
def test_lammps_table_coul_long_pppm_gives_cgkits_forces(fm_run, ions):
    d = fm_run / "fm" / "lammps"
    lines = (d / "in.cg").read_text().splitlines()
    setup = lines[:next(k for k, line in enumerate(lines) if line.startswith("velocity"))]  # no thermostat
    (d / "in.check").write_text("\n".join(setup + ["dump f all custom 1 forces.dump id type x y z fx fy fz",
                                                  "dump_modify f sort id format float %.12g", "run 0"]) + "\n")
    r = subprocess.run(["lmp", "-in", "in.check", "-log", "log.lammps", "-screen", "none"], cwd=d,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (d / "log.lammps").read_text()[-2000:]
    rows = np.loadtxt(d / "forces.dump", skiprows=9)
    rows = rows[np.argsort(rows[:, 0])]
    model = load_potential(fm_run / "fm" / "cg_potential.pt")
    g = AtomicGraph.from_arrays(ions["positions"][0], ions["cell"], True, RC, species=ions["species"],
                                type_names=TYPES)
    f_cg = model.compute(g)["forces"].numpy()
    assert np.abs(rows[:, 5:8] - f_cg).max() < 1e-4 * np.abs(f_cg).max()


def test_cgkit_fm_refuses_a_non_neutral_system_without_background(ions, tmp_path, capsys):
    args = _write_ion_inputs(tmp_path, ions, cation_charge=0.7)
    rc = main(["fm", *args, "--coulomb", "ewald", "--pair-cutoff", str(RC), "--out", str(tmp_path / "fm")])
    err = capsys.readouterr().err
    assert rc == 1 and "net charge of 3.2 e" in err and "--coulomb-background" in err
    assert not (tmp_path / "fm").exists()


def test_cgkit_fm_refuses_a_bead_charge_that_is_not_a_number(ions, tmp_path, capsys):
    args = _write_ion_inputs(tmp_path, ions, cation_charge='"plus"')
    rc = main(["fm", *args, "--coulomb", "ewald", "--out", str(tmp_path / "fm")])
    err = capsys.readouterr().err
    assert rc == 1 and "ions.yaml" in err and "field 'molecules[0].beads[0].charge'" in err
    assert not (tmp_path / "fm").exists()


def test_cgkit_fm_coulomb_without_any_bead_charge_is_refused(ions, tmp_path, capsys):
    args = _write_ion_inputs(tmp_path, {**ions, "charges": np.zeros(N)})
    rc = main(["fm", *args, "--coulomb", "auto", "--out", str(tmp_path / "fm")])
    assert rc == 1 and "every bead charge" in capsys.readouterr().err


# ---------------------------------------------------------------------------- (b) exclusions
def _dimer_model():
    """16 A(+0.5)-B(−0.5) dimers bonded (2.0 Å): tables (LJ-like pairs, harmonic bond) + Coulomb
    with the bonded pairs excluded (exclude=1)."""
    rng = np.random.default_rng(3)
    box, n_mol = 13.0, 16
    pos = []
    while len(pos) < 2 * n_mol:
        a = rng.uniform(0, box, 3)
        v = rng.normal(size=3)
        b = a + 2.0 * v / np.linalg.norm(v)
        new = np.array([a, b])
        if pos:
            d = np.asarray(pos)[:, None, :] - new[None]
            d -= box * np.round(d / box)
            if np.linalg.norm(d, axis=2).min() < 2.8:
                continue
        pos += [a, b]
    pos = np.asarray(pos)
    species = np.tile([0, 1], n_mol)
    bonds = np.arange(2 * n_mol).reshape(-1, 2)
    top = Topology.from_bonds(2 * n_mol, bonds, exclude=1, molecule=np.repeat(np.arange(n_mol), 2))
    r = np.linspace(2.0, 7.0, 501)

    def lj(sig, eps):
        s6 = (sig / r) ** 6
        return 4 * eps * (s6 * s6 - s6), 4 * eps * (-12 * s6 * s6 + 6 * s6) / r
    tables = []
    for (a, b), (sig, eps) in {("A", "A"): (3.0, 0.02), ("A", "B"): (3.2, 0.015), ("B", "B"): (3.4, 0.01)}.items():
        U, dU = lj(sig, eps)
        tables.append(Table("pair", (a, b), r[0], r[1] - r[0], U - U[-1], dU))
    x = np.linspace(1.0, 3.0, 201)
    tables.append(Table("bond", ("A", "B"), x[0], x[1] - x[0], 5.0 * (x - 2.0) ** 2, 10.0 * (x - 2.0)))
    q = np.where(species == 0, 0.5, -0.5)
    coul = BeadCoulombPotential.from_topology(q, top, method="ewald", accuracy=1e-6, type_names=TYPES)
    return SumPotential([TabulatedPotential(TYPES, top, tables), coul]), pos, species, box, top


@needs_lmp
def test_lammps_with_special_bonds_lj_coul_equals_cgkit_with_excluded_bonded_pairs(tmp_path):
    model, pos, species, box, top = _dimer_model()
    w = write_lammps(model, tmp_path, positions=pos, box=[box] * 3, masses=np.full(len(pos), 20.0),
                     species=species, n_points=4000, run_forces_only=True)
    script = w["input"].read_text()
    assert "special_bonds lj/coul 0.0 1.0 1.0" in script and "atom_style full" in script
    r = subprocess.run(["lmp", "-in", "in.cg", "-log", "log.lammps", "-screen", "none"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (tmp_path / "log.lammps").read_text()[-2000:]
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    f_lmp = rows[np.argsort(rows[:, 0])][:, 5:8]
    g = AtomicGraph.from_arrays(pos, np.eye(3) * box, True, model.cutoff, species=species, type_names=TYPES)
    out = model.compute(g)
    f_cg = out["forces"].numpy()
    tol = 1e-4 * np.abs(f_cg).max()
    assert np.abs(f_lmp - f_cg).max() < tol
    # the exclusions matter: Coulomb of the bonded pairs kept would differ far beyond the tolerance
    tab, coul = model.terms
    wrong = SumPotential([tab, BeadCoulombPotential(coul.charges, None, method="ewald", accuracy=1e-6)])
    assert np.abs(f_lmp - wrong.compute(g)["forces"].numpy()).max() > 100 * tol
    # energies: LAMMPS pe = evdwl + ebond + ecoul + elong
    log = (tmp_path / "log.lammps").read_text().splitlines()
    k = next(i for i, line in enumerate(log) if line.split()[:2] == ["Step", "PotEng"])
    pe = float(log[k + 1].split()[1])
    assert abs(pe - out["energy"].item()) < 1e-4 * len(pos)


needs_gmx = pytest.mark.skipif(shutil.which("gmx") is None, reason="GROMACS 'gmx' not found (Debian package "
                               "gromacs); the GROMACS cross-check of the exported PME settings needs it")


@needs_gmx
def test_gromacs_pme_with_the_exported_mdp_and_charges_equals_cgkits_coulomb(tmp_path):
    """coulomb.mdp + charges.itp (charges, [ exclusions ]) in a GROMACS run without LJ: its PME
    forces equal the model's Coulomb forces (the pair tables need GROMACS <= 2019)."""
    import warnings

    import MDAnalysis as mda
    from cgkit.export import write_gromacs
    from cgkit.units import KJ_PER_MOL_TO_EV
    model, pos, species, box, top = _dimer_model()
    info = write_gromacs(model, tmp_path, species=species, rcoulomb_nm=0.6)["coulomb"]
    assert info["coulombtype"] == "PME"
    pos = np.round(pos / 10.0, 3) * 10.0                    # the .gro precision (0.001 nm)
    (tmp_path / "topol.top").write_text(
        "[ defaults ]\n1 1 no 1.0 1.0\n[ atomtypes ]\nA 20.0 0.0 A 0.0 0.0\nB 20.0 0.0 A 0.0 0.0\n"
        '#include "charges.itp"\n[ system ]\ncg\n[ molecules ]\nCG 1\n')
    gro = ["cg", str(len(pos))] + [f"{1:5d}{'CG':<5s}{'B' + str(i + 1):>5s}{i + 1:5d}{x / 10:8.3f}{y / 10:8.3f}"
                                   f"{z / 10:8.3f}" for i, (x, y, z) in enumerate(pos)]
    (tmp_path / "conf.gro").write_text("\n".join(gro + [f"{box / 10:10.5f}" * 3]) + "\n")
    (tmp_path / "run.mdp").write_text((tmp_path / "coulomb.mdp").read_text() + "integrator = md\nnsteps = 0\n"
                                      "nstfout = 1\ncutoff-scheme = Verlet\nrvdw = 0.6\n")
    for cmd in (["gmx", "grompp", "-f", "run.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "run.tpr",
                 "-maxwarn", "5"], ["gmx", "mdrun", "-s", "run.tpr", "-nt", "1", "-deffnm", "run"]):
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(tmp_path / "conf.gro"), str(tmp_path / "run.trr"))
        f_gmx = u.trajectory[0].forces * KJ_PER_MOL_TO_EV
    g = AtomicGraph.from_arrays(pos, np.eye(3) * box, True, 1.0)
    f_cg = model.terms[1].compute(g)["forces"].numpy()
    assert np.abs(f_gmx - f_cg).max() < 1e-4 * np.abs(f_cg).max()        # measured 4e-6
    bare = BeadCoulombPotential(model.terms[1].charges, None, method="ewald").compute(g)["forces"].numpy()
    assert np.abs(f_gmx - bare).max() > 0.1 * np.abs(f_cg).max()         # the exclusions were applied


def test_bead_coulomb_equals_electrostatics_with_exclusions_and_repeats_for_system_copies():
    model, pos, species, box, top = _dimer_model()
    coul = model.terms[1]
    g = AtomicGraph.from_arrays(pos, np.eye(3) * box, True, 1.0, species=species, type_names=TYPES)
    e = coul.compute(g)["energy"].item()
    ref = Electrostatics(method="ewald", accuracy=1e-6).energy(
        torch.tensor(pos), torch.tensor(coul.charges), torch.eye(3, dtype=torch.float64) * box, [True] * 3,
        Exclusions(top.exclusions)).item()
    assert e == pytest.approx(ref, rel=1e-12, abs=1e-12)
    # two replicas in one graph (R·n beads): charges and exclusions repeat
    big = AtomicGraph.from_arrays(np.vstack([pos, pos + [0, 0, box]]), np.diag([box, box, 2 * box]), True, 1.0)
    e2 = BeadCoulombPotential(coul.charges, top.exclusions, method="ewald", accuracy=1e-10).compute(big)["energy"]
    e1 = BeadCoulombPotential(coul.charges, top.exclusions, method="ewald", accuracy=1e-10).compute(g)["energy"]
    assert e2.item() == pytest.approx(2 * e1.item(), rel=1e-8)


def test_write_lammps_without_positions_warns_that_the_coulomb_term_is_not_written(fm_run, tmp_path):
    """Without positions (no data file / input script) LAMMPS gets only the short-range tables of a
    charged model: the export says so instead of dropping the Coulomb term silently."""
    from cgkit.errors import CgkitWarning
    from cgkit.export import write_lammps
    model = load_potential(fm_run / "fm" / "cg_potential.pt")
    with pytest.warns(CgkitWarning, match="bead Coulomb term is not written"):
        written = write_lammps(model, tmp_path / "lmp")
    assert "pair" in written and "input" not in written
