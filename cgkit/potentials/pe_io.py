"""Files of united-atom polyethylene systems for other programs.

:func:`write_lammps_data` writes a LAMMPS data file (``atom_style molecular``, with image
flags), :func:`write_psf_pdb` a PSF (bonds, angles, dihedrals) plus PDB pair that MDAnalysis
reads as ``Universe(psf, pdb)``; there residues are blocks of 4 consecutive sites, named
``PE`` inside a chain, ``PEH`` at the head and ``PET`` at the tail (as
``mappings/polyethylene_ua_4to1.yaml`` expects). The cell is rotated into LAMMPS' (and PDB's)
frame by :func:`cgkit.io_lammps.lammps_box`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io_lammps import lammps_box
from ..topology import Topology
from .pe_topology import chain_topology, unwrap_chains
from .trappe import TRAPPE_TYPES

__all__ = ["write_lammps_data", "write_psf_pdb"]


def write_lammps_data(path, atoms, topology: Topology | None = None) -> Path:
    """Write ``atoms`` as a LAMMPS data file (``atom_style molecular``: id mol type x y z ix iy iz).

    Atom types are numbered in TraPPE order of the types present (the order of
    ``TRAPPE_TYPES`` restricted to those present, listed in the Masses section comments);
    bond/angle/dihedral types are numbered by their canonical type tuples, listed as comments
    in the file header. A general triclinic cell is rotated into LAMMPS' restricted form
    (a along x, b in the xy plane); positions are written unwrapped with image flags of 0 so
    that bonds join the listed atoms directly. Returns the path.
    """
    path = Path(path)
    topology = topology if topology is not None else chain_topology(atoms)
    names = [str(s) for s in atoms.arrays["bead_types"]]
    present = [t for t in TRAPPE_TYPES if t in set(names)]
    tidx = {t: k + 1 for k, t in enumerate(present)}
    cell = atoms.cell.array
    if not atoms.pbc.all() or np.linalg.det(cell) <= 0:
        raise InputError("write_lammps_data needs a fully periodic, right-handed cell")
    q, lower = lammps_box(cell)
    pos = unwrap_chains(atoms, topology) @ q
    mol = np.asarray(topology.molecule) + 1
    lines = ["LAMMPS data file written by cgkit (TraPPE-UA united atoms)", ""]
    bt = sorted(set(topology.bond_types(names)))
    at = sorted(set(topology.angle_types(names)))
    dt = sorted(set(topology.dihedral_types(names)))
    lines += [f"{len(pos)} atoms", f"{len(topology.bonds)} bonds", f"{len(topology.angles)} angles",
              f"{len(topology.dihedrals)} dihedrals", "",
              f"{len(present)} atom types", f"{max(len(bt), 1)} bond types",
              f"{max(len(at), 1)} angle types", f"{max(len(dt), 1)} dihedral types", ""]
    lx, ly, lz = lower[0, 0], lower[1, 1], lower[2, 2]
    xy, xz, yz = lower[1, 0], lower[2, 0], lower[2, 1]
    lines += [f"0.0 {lx:.12f} xlo xhi", f"0.0 {ly:.12f} ylo yhi", f"0.0 {lz:.12f} zlo zhi"]
    if max(abs(xy), abs(xz), abs(yz)) > 1e-12:
        lines.append(f"{xy:.12f} {xz:.12f} {yz:.12f} xy xz yz")
    lines += ["", "Masses", ""]
    masses = atoms.get_masses()
    for t in present:
        m = masses[names.index(t)]
        lines.append(f"{tidx[t]} {m:.6f}  # {t}")
    lines += ["", "Atoms  # molecular", ""]
    for k in range(len(pos)):
        x, y, z = pos[k]
        lines.append(f"{k + 1} {mol[k]} {tidx[names[k]]} {x:.12f} {y:.12f} {z:.12f} 0 0 0")
    for title, idx, types, table in (("Bonds", topology.bonds, topology.bond_types(names), bt),
                                     ("Angles", topology.angles, topology.angle_types(names), at),
                                     ("Dihedrals", topology.dihedrals, topology.dihedral_types(names), dt)):
        if len(idx) == 0:
            continue
        tid = {t: k + 1 for k, t in enumerate(table)}
        lines += ["", f"{title}  # types: " + "; ".join(f"{tid[t]}={'-'.join(t)}" for t in table), ""]
        for k, (row, t) in enumerate(zip(idx, types)):
            lines.append(f"{k + 1} {tid[t]} " + " ".join(str(int(a) + 1) for a in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _residues(atoms, block: int):
    """Per-site (resid, resname, atom name): 4-site blocks per chain, 'PEH' head, 'PET' tail."""
    cid = np.asarray(atoms.arrays["chain_id"], dtype=np.int64)
    cix = np.asarray(atoms.arrays["chain_index"], dtype=np.int64)
    n = len(cid)
    chain_len = {c: int(cix[cid == c].max()) + 1 for c in np.unique(cid)}
    # residues numbered consecutively, chain by chain
    first_res, r = {}, 1
    for c in sorted(chain_len):
        first_res[c] = r
        r += -(-chain_len[c] // block)
    resid = np.empty(n, np.int64)
    resname = np.empty(n, object)
    name = np.empty(n, object)
    for k in range(n):
        c, i = int(cid[k]), int(cix[k])
        b = i // block
        nb = -(-chain_len[c] // block)
        resid[k] = first_res[c] + b
        resname[k] = "PEH" if b == 0 else ("PET" if b == nb - 1 else "PE")
        name[k] = f"C{i % block + 1}"
    return resid, resname, name


def write_psf_pdb(prefix, atoms, topology: Topology | None = None, *, block: int = 4):
    """Write ``prefix.psf`` (NAMD-style PSF with bonds, angles, dihedrals) and ``prefix.pdb``.

    ``MDAnalysis.Universe(prefix + '.psf', prefix + '.pdb')`` then holds: one residue per block of
    ``block`` consecutive sites of a chain (resname ``PE``; ``PEH`` for the first and ``PET`` for the last
    block of a chain), atom names ``C1``…``C4`` (position in the block), atom types ``CH3``/``CH2``,
    masses in amu, segment ``PE``; ``u.atoms.fragments`` are the chains. Coordinates are written
    with chains made whole (unwrapped) and the cell in the PDB CRYST1 record.
    Returns (psf_path, pdb_path).
    """
    topology = topology if topology is not None else chain_topology(atoms)
    if int(block) < 1:
        raise InputError(f"block must be a positive number of sites per residue, got {block}")
    resid, resname, name = _residues(atoms, int(block))
    types = [str(s) for s in atoms.arrays["bead_types"]]
    masses = atoms.get_masses()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    psf = ["PSF NAMD", "", "       1 !NTITLE", " REMARKS united-atom polyethylene written by cgkit", "",
           f"{len(atoms):8d} !NATOM"]
    for k in range(len(atoms)):
        psf.append(f"{k + 1:8d} PE {resid[k]:d} {resname[k]} {name[k]} {types[k]} "
                   f"{0.0:10.6f} {masses[k]:13.4f} 0")
    for title, idx, per in (("NBOND: bonds", topology.bonds, 4), ("NTHETA: angles", topology.angles, 3),
                            ("NPHI: dihedrals", topology.dihedrals, 2)):
        psf += ["", f"{len(idx):8d} !{title}"]
        flat = [int(a) + 1 for row in idx for a in row]
        w = idx.shape[1] * per
        for s in range(0, len(flat), w):
            psf.append("".join(f"{a:10d}" for a in flat[s:s + w]))
    psf += ["", f"{0:8d} !NIMPHI: impropers", "", ""]
    psf_path = prefix.with_suffix(".psf")
    psf_path.write_text("\n".join(psf) + "\n")

    from ase.geometry import cell_to_cellpar
    a, b, c, al, be, ga = cell_to_cellpar(atoms.cell.array)
    q, _ = lammps_box(atoms.cell.array)  # PDB frame: a along x, b in the xy plane
    pos = unwrap_chains(atoms, topology) @ q
    pdb = [f"CRYST1{a:9.3f}{b:9.3f}{c:9.3f}{al:7.2f}{be:7.2f}{ga:7.2f} P 1           1"]
    for k in range(len(atoms)):
        x, y, z = pos[k]
        pdb.append(f"ATOM  {(k + 1) % 100000:5d} {name[k]:<4s} {resname[k]:<4s}{'A'}{resid[k] % 10000:4d}    "
                   f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{0.0:6.2f}      PE   C")
    pdb.append("END")
    pdb_path = prefix.with_suffix(".pdb")
    pdb_path.write_text("\n".join(pdb) + "\n")
    return psf_path, pdb_path
