"""Independent references for the electrostatics tests: LAMMPS (Debian ``lmp``) and pymatgen."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

LMP = shutil.which("lmp") or shutil.which("lmp_serial")
BAR_PER_EV_A3 = 1.602176634e6


def have_pymatgen() -> bool:
    try:
        import pymatgen.analysis.ewald  # noqa: F401
        return True
    except Exception:
        return False


def random_ionic(rng, n_pairs: int, cell: np.ndarray, min_dist: float = 1.6):
    """n_pairs cations (+q) and anions (−q) at random positions of ``cell`` (rows, Å) with
    charges ±(0.5..1.5) so the structure is neutral, no two ions closer than min_dist."""
    n = 2 * n_pairs
    pos = []
    inv = np.linalg.inv(cell)
    while len(pos) < n:
        x = rng.random(3) @ cell
        ok = True
        for p in pos:
            d = x - p
            f = d @ inv
            f -= np.round(f)
            if np.linalg.norm(f @ cell) < min_dist:
                ok = False
                break
        if ok:
            pos.append(x)
    q = rng.uniform(0.5, 1.5, n_pairs)
    charges = np.concatenate([q, -q])
    return np.array(pos), charges


def lammps_cell(lx, ly, lz, xy=0.0, xz=0.0, yz=0.0) -> np.ndarray:
    """A cell in LAMMPS' restricted triclinic form (rows a, b, c)."""
    return np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]], dtype=float)


def run_lammps(positions, charges, cell, *, accuracy=1e-10, r_cut=12.0, kspace="ewald",
               slab=None, pbc_z=True, pair=None, bonds=(), special=None, return_alpha=False):
    """Energy (eV), forces (n, 3) eV/Å, stress (3, 3) eV/Å³ (cgkit sign: σ = (1/V) ∂E/∂ε,
    i.e. minus LAMMPS' pressure) and per-atom energies (n,) eV from LAMMPS.

    Default: ``pair_style coul/long r_cut`` + ``kspace_style {kspace} {accuracy}``; ``pair``
    replaces the pair style (e.g. ``"coul/dsf 0.2 10.0"``) and ``kspace=None`` drops k-space.
    ``bonds``: (i, j) pairs (0-based) given as bonds so that ``special`` = "coul 0 0.5 1"
    scales them (1-2) and their 1-3 neighbours (atom_style full, bond_style zero)."""
    cell = np.asarray(cell, float)
    assert abs(cell[0, 1]) < 1e-12 and abs(cell[0, 2]) < 1e-12 and abs(cell[1, 2]) < 1e-12
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    n = len(positions)
    full = bool(len(bonds))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = ["cgkit electrostatics test", "", f"{n} atoms", "1 atom types"]
        if full:
            lines += [f"{len(bonds)} bonds", "1 bond types"]
        lines += ["", f"0 {float(lx)!r} xlo xhi", f"0 {float(ly)!r} ylo yhi", f"0 {float(lz)!r} zlo zhi"]
        if any(abs(t) > 0 for t in (xy, xz, yz)):
            lines.append(f"{float(xy)!r} {float(xz)!r} {float(yz)!r} xy xz yz")
        lines += ["", "Masses", "", "1 1.0", "", "Atoms # " + ("full" if full else "charge"), ""]
        for k, (p, q) in enumerate(zip(positions, charges)):
            mol = "1 " if full else ""
            lines.append(f"{k + 1} {mol}1 {float(q)!r} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}")
        if full:
            lines += ["", "Bonds", ""]
            lines += [f"{k + 1} 1 {i + 1} {j + 1}" for k, (i, j) in enumerate(bonds)]
        (tmp / "data").write_text("\n".join(lines) + "\n")
        bnd = "p p p" if pbc_z else "p p f"
        pair = pair or f"coul/long {r_cut}"
        script = f"""units metal
atom_style {'full' if full else 'charge'}
boundary {bnd}
box tilt large
{'bond_style zero' if full else ''}
read_data data
{'bond_coeff 1 1.0' if full else ''}
{'special_bonds ' + special if special else ''}
pair_style {pair}
pair_coeff * *
{f'kspace_style {kspace} {accuracy}' if kspace else ''}
{'kspace_modify slab ' + str(slab) if slab else ''}
compute pea all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz
thermo_modify format float %.16g norm no
dump d all custom 1 forces id fx fy fz c_pea
dump_modify d sort id format float %.16g
run 0
"""
        (tmp / "in.lmp").write_text(script)
        res = subprocess.run([LMP, "-in", "in.lmp", "-log", "log.lammps", "-screen", "none"],
                             cwd=tmp, capture_output=True, text=True,
                             env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        log = (tmp / "log.lammps").read_text() if (tmp / "log.lammps").exists() else ""
        if res.returncode != 0:
            raise RuntimeError(f"lmp failed: {res.stderr}\n{log[-2000:]}")
        L = log.splitlines()
        k = next(i for i, line in enumerate(L) if line.split()[:2] == ["Step", "PotEng"])
        vals = [float(v) for v in L[k + 1].split()]
        energy = vals[1]
        pxx, pyy, pzz, pxy, pxz, pyz = vals[2:8]
        P = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]]) / BAR_PER_EV_A3
        dump = np.loadtxt(tmp / "forces", skiprows=9).reshape(n, -1)
    out = (energy, dump[:, 1:4], -P, dump[:, 4])
    if return_alpha:  # the Ewald α LAMMPS chose ("G vector (1/distance) = ...")
        g = next(float(line.split("=")[1]) for line in L if "G vector" in line)
        out = out + (g,)
    return out


def run_pymatgen(positions, charges, cell, accuracy=12.0):
    """Total energy (eV) and forces (n, 3) eV/Å of pymatgen's EwaldSummation."""
    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice(cell), ["H"] * len(positions), positions, coords_are_cartesian=True,
                  site_properties={"charge": list(charges)})
    ew = EwaldSummation(s, acc_factor=accuracy, compute_forces=True)
    return ew.total_energy, np.asarray(ew.forces)
