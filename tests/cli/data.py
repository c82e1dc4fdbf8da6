"""Small real inputs for command-line tests (README examples, fuzzing, strict summary.json).

Everything is written into a folder the caller gives (a pytest tmp dir); nothing is written
into the repository (MDAnalysis offset caches included: the committed data is copied first).

* crystals: ``Si.cif`` (ASE's primitive diamond cell, 2 atoms), ``Si8.extxyz`` (cubic, 8
  atoms), ``Cu.cif`` (ASE's primitive fcc cell, 1 atom), ``Cu4.extxyz`` (cubic, 4 atoms);
* atomistic hexane (real GROMACS OPLS-AA data from ``case_studies/hexane/data``: 20 molecules,
  400 atoms, positions and forces): ``conf.gro`` + ``traj.trr`` (the first few frames);
* CG hexane: ``cg.psf`` + ``cg.trr``: the first molecules of the committed mapped trajectory
  ``hexane_cg.trr`` (3 beads A-B-A per molecule, mapped forces, 36.7 Å box) — made without
  running ``cgkit map``, so CG commands are tested even when ``map`` is broken;
* ``cg_start.extxyz``: one CG frame with a ``bead_types`` column (``cgkit md --structure``).
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HEXDATA = ROOT / "case_studies" / "hexane" / "data"
MAPPINGS = ROOT / "mappings"


def _universe(*files):
    import MDAnalysis as mda
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(*[str(f) for f in files])


# --------------------------------------------------------------------------- crystals
def write_crystals(d: Path) -> dict:
    """Si.cif, Cu.cif (primitive, as ASE builds them, written by ase.io.write) and cubic
    Si8.extxyz / Cu4.extxyz. Returns {name: path}."""
    import ase.io
    from ase.build import bulk
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "Si.cif": bulk("Si", "diamond", a=5.43095),
        "Cu.cif": bulk("Cu", "fcc", a=3.61),
        "Si8.extxyz": bulk("Si", "diamond", a=5.43095, cubic=True),
        "Cu4.extxyz": bulk("Cu", "fcc", a=3.61, cubic=True),
    }
    out = {}
    for name, atoms in files.items():
        ase.io.write(str(d / name), atoms)
        out[name] = d / name
    return out


# --------------------------------------------------------------------------- atomistic hexane
def write_aa_hexane(d: Path, n_frames: int = 4, *, forces: bool = True, gro="conf.gro",
                    trr="traj.trr") -> tuple[Path, Path]:
    """conf.gro (400 atoms, 20 OPLS-AA hexanes) and traj.trr with the first ``n_frames`` frames
    of the committed GROMACS trajectory (positions, forces unless ``forces=False``, box)."""
    import MDAnalysis as mda
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    src = d / "_src"
    src.mkdir(exist_ok=True)
    for f in ("aa_subset.gro", "aa_subset.trr"):
        if not (src / f).exists():
            shutil.copy(HEXDATA / f, src / f)
    u = _universe(src / "aa_subset.gro", src / "aa_subset.trr")
    shutil.copy(src / "aa_subset.gro", d / gro)
    with mda.Writer(str(d / trr), n_atoms=u.atoms.n_atoms) as w:
        for ts in u.trajectory[:n_frames]:
            if not forces:
                ts.has_forces = False
            w.write(u.atoms)
    return d / gro, d / trr


def aa_frames(gro: Path, trr: Path):
    """(positions (F,n,3) Å, forces (F,n,3) kJ/(mol·Å) as MDAnalysis reads them, boxes (F,6))."""
    u = _universe(gro, trr)
    P, Fo, B = [], [], []
    for ts in u.trajectory:
        P.append(ts.positions.copy())
        Fo.append(ts.forces.copy() if ts.has_forces else None)
        B.append(ts.dimensions.copy())
    return np.array(P), Fo, np.array(B)


def write_trr(path: Path, positions, boxes, forces=None, times=None):
    """A TRR with MDAnalysis' writer; positions Å (F,n,3); forces kJ/(mol·Å) (F,n,3) or None;
    boxes (F,6) Å/degrees. Values are written as given (NaN/inf included)."""
    import MDAnalysis as mda
    positions = np.asarray(positions, float)
    n = positions.shape[1]
    u = mda.Universe.empty(n, trajectory=True, forces=forces is not None)
    with mda.Writer(str(path), n_atoms=n) as w:
        for k, x in enumerate(positions):
            u.atoms.positions = x
            if forces is not None:
                u.atoms.forces = forces[k]
            u.dimensions = boxes[k]
            u.trajectory.ts.time = float(times[k]) if times is not None else float(k)
            w.write(u.atoms)
    return Path(path)


# --------------------------------------------------------------------------- CG hexane
def write_cg_hexane(d: Path, n_molecules: int = 20, n_frames: int = 6, *, psf="cg.psf",
                    trr="cg.trr", extxyz="cg_start.extxyz") -> dict:
    """The first ``n_molecules`` 3-bead hexanes of the committed mapped trajectory (bead types
    A-B-A, masses, bonds and angle from its PSF), the first ``n_frames`` frames with mapped
    forces. Writes cg.psf (cgkit.trajectory.write_psf), cg.trr and cg_start.extxyz (last frame,
    bead_types column). Returns the paths and the arrays."""
    import ase.io
    from ase import Atoms
    from cgkit.topology import Topology
    from cgkit.trajectory import write_psf
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    src = d / "_cgsrc"
    src.mkdir(exist_ok=True)
    for f in ("hexane_cg.psf", "hexane_cg.trr"):
        if not (src / f).exists():
            shutil.copy(HEXDATA / f, src / f)
    u = _universe(src / "hexane_cg.psf", src / "hexane_cg.trr")
    n = 3 * n_molecules
    sel = u.atoms[:n]
    bonds = [(b.atoms[0].index, b.atoms[1].index) for b in u.bonds if b.atoms[1].index < n and b.atoms[0].index < n]
    angles = [tuple(a.atoms.indices) for a in u.angles if max(a.atoms.indices) < n]
    top = Topology(n_particles=n, bonds=np.array(bonds, int).reshape(-1, 2),
                   angles=np.array(angles, int).reshape(-1, 3))
    m = SimpleNamespace(topology=top, n_beads=n, resid_of_bead=sel.resids,
                        template_of_bead=list(sel.resnames), bead_names=list(sel.names),
                        bead_types=list(sel.types), bead_charges=np.zeros(n), bead_masses=sel.masses,
                        definition=SimpleNamespace(name="hexane_3bead (test subset)"))
    write_psf(d / psf, m)
    P, F, B = [], [], []
    for ts in u.trajectory[:n_frames]:
        P.append(sel.positions.copy())
        F.append(sel.forces.copy())
        B.append(ts.dimensions.copy())
    P, F, B = np.array(P), np.array(F), np.array(B)
    write_trr(d / trr, P, B, F)
    a = Atoms(numbers=np.full(n, 6), positions=P[-1], cell=B[-1][:3], pbc=True, masses=sel.masses)
    a.arrays["bead_types"] = np.array(list(sel.types))
    ase.io.write(str(d / extxyz), a, format="extxyz")
    return {"psf": d / psf, "trr": d / trr, "extxyz": d / extxyz, "positions": P, "forces": F,
            "boxes": B, "types": list(sel.types), "n": n}


def write_cg_polymer(d: Path, n_chains: int = 4, n_beads: int = 12, n_frames: int = 6, seed: int = 0,
                     box: float = 30.0, types=("CG1", "CG2"), psf="sys.psf", xtc="traj.xtc") -> dict:
    """Bead-spring chains (bond 4 Å, bond angles about 110°) with alternating bead types
    ``types``; PSF (cgkit.trajectory.write_psf) + XTC (MDAnalysis). Positions wrapped in the box."""
    import MDAnalysis as mda
    from cgkit.topology import Topology
    from cgkit.trajectory import write_psf
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = n_chains * n_beads
    X = np.zeros((n_frames, n, 3))
    for f in range(n_frames):
        for c in range(n_chains):
            x = [rng.uniform(0, box, 3)]
            prev = None
            for _ in range(n_beads - 1):
                while True:
                    v = rng.normal(size=3)
                    v /= np.linalg.norm(v)
                    if prev is None or np.dot(v, prev) < -0.1:
                        break
                x.append(x[-1] + 4.0 * v)
                prev = -v
            X[f, c * n_beads:(c + 1) * n_beads] = x
    X %= box
    bonds = [(c * n_beads + i, c * n_beads + i + 1) for c in range(n_chains) for i in range(n_beads - 1)]
    top = Topology(n_particles=n, bonds=np.array(bonds))
    names = [types[i % len(types)] for i in range(n_beads)] * n_chains
    m = SimpleNamespace(topology=top, n_beads=n, resid_of_bead=np.repeat(np.arange(1, n_chains + 1), n_beads),
                        template_of_bead=["PE"] * n, bead_names=names, bead_types=names,
                        bead_charges=np.zeros(n), bead_masses=np.full(n, 56.1),
                        definition=SimpleNamespace(name="bead-spring test chains"))
    write_psf(d / psf, m)
    u = mda.Universe.empty(n, trajectory=True)
    with mda.Writer(str(d / xtc), n_atoms=n) as w:
        for k in range(n_frames):
            u.atoms.positions = X[k]
            u.dimensions = [box, box, box, 90, 90, 90]
            u.trajectory.ts.time = float(k)
            w.write(u.atoms)
    return {"psf": d / psf, "xtc": d / xtc, "positions": X, "n": n}


# --------------------------------------------------------------------------- small configs
TRAIN_CONFIG = """\
# tiny training run: 6 SW-labelled 8-atom Si cells, 2 epochs
output: {out}
seed: 0
model: {{species: [Si], r_cut: 4.0, channels: 4, l_max: 1, n_layers: 1, n_radial: 4, radial_hidden: 8}}
data: {{train: {data}, val_fraction: 0.34}}
loss: {{energy: 1.0, forces: 10.0, stress: 0.0}}
batch_size: 2
max_epochs: 2
threads: 1
"""


def write_train_config(d: Path, name="config.yaml", out="run") -> Path:
    """config.yaml + sw.xyz (6 rattled 8-atom Si cells labelled with cgkit's SW)."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from cgkit.calculator import CgkitCalculator
    from cgkit.potentials import StillingerWeber
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    calc = CgkitCalculator(StillingerWeber())
    rng = np.random.default_rng(5)
    frames = []
    for _ in range(6):
        a = bulk("Si", "diamond", 5.43095, cubic=True)
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.calc = calc
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        frames.append(a)
    ase.io.write(str(d / "sw.xyz"), frames)
    (d / name).write_text(TRAIN_CONFIG.format(out=out, data="sw.xyz"))
    return d / name


def hexane_votca_xml() -> str:
    """A VOTCA cg_molecule XML for the 3-bead hexane map (VOTCA's own file when installed)."""
    f = Path("/usr/share/votca/csg-tutorials/hexane/atomistic/hexane.xml")
    if f.exists():
        return f.read_text()
    return """<cg_molecule><name>HEX</name><ident>x</ident><topology><cg_beads>
<cg_bead><name>A1</name><type>A</type><mapping>A</mapping>
<beads>1:CHL:C 2:CH2:C 1:CHL:H1 1:CHL:H2 1:CHL:H3 2:CH2:H1 2:CH2:H2</beads></cg_bead>
<cg_bead><name>B</name><type>B</type><mapping>B</mapping>
<beads>3:CH2:C 4:CH2:C 3:CH2:H1 3:CH2:H2 4:CH2:H1 4:CH2:H2</beads></cg_bead>
<cg_bead><name>A2</name><type>A</type><mapping>A</mapping>
<beads>6:CHR:C 5:CH2:C 6:CHR:H1 6:CHR:H2 6:CHR:H3 5:CH2:H1 5:CH2:H2</beads></cg_bead>
</cg_beads><cg_bonded><bond><name>bond</name><beads>A1 B
A2 B</beads></bond><angle><name>angle</name><beads>A1 B A2</beads></angle></cg_bonded></topology>
<maps><map><name>A</name><weights>12 12 1 1 1 1 1</weights></map>
<map><name>B</name><weights>12 12 1 1 1 1</weights></map></maps></cg_molecule>
"""
