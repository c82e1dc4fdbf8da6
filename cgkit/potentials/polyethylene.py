"""United-atom polyethylene (and n-alkane) melts for the TraPPE-UA force field.

:func:`build_pe_melt` grows ``n_chains`` linear chains of ``n_carbons`` united-atom sites
(``CH3``–``CH2``…``CH2``–``CH3``) as self-avoiding random walks in a cubic periodic box at the
requested density, then relaxes the overlaps with FIRE through
:class:`cgkit.calculator.CgkitCalculator` and :class:`~cgkit.potentials.trappe.TraPPEUA`, so that
MD can start. Sites are stored chain after chain, ordered along the backbone, so that a 4:1
coarse-graining mapping (4 consecutive sites per bead) can be applied by index.

Per-site arrays of the returned ASE ``Atoms`` (element ``C``, masses 15.035 / 14.027 amu):

* ``bead_types``  — ``'CH3'`` / ``'CH2'`` (the TraPPE-UA site type),
* ``chain_id``    — chain (molecule) index, 0 … n_chains−1,
* ``chain_index`` — position along the chain, 0 … n_carbons−1.

:func:`write_lammps_data` writes a LAMMPS data file (``atom_style molecular``, with image
flags), :func:`write_psf_pdb` a PSF (bonds, angles, dihedrals) plus PDB pair that MDAnalysis
reads as ``Universe(psf, pdb)``; there residues are blocks of 4 consecutive sites, named
``PE`` inside a chain, ``PEH`` at the head and ``PET`` at the tail (as
``mappings/polyethylene_ua_4to1.yaml`` expects).

Crystalline polyethylene: :func:`pe_crystal_unit_cell` gives the 4-site orthorhombic (Pnam)
unit cell, optionally relaxed with TraPPE-UA; :func:`build_pe_crystal` repeats it into a
supercell of infinite chains bonded across the periodic boundary (all sites ``CH2``);
:func:`pe_crystal_potential` builds the TraPPE-UA potential for any site order (e.g. phonopy's
supercells, which carry element symbols only).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..topology import Topology
from .trappe import (ANGLE_T0, BOND_R0, TORSION_C, TRAPPE_MASSES, TRAPPE_TYPES, TraPPEUA,
                     torsion_energy_K)

__all__ = ["build_pe_melt", "chain_topology", "unwrap_chains", "write_lammps_data",
           "write_psf_pdb", "AMU_PER_A3_TO_G_CM3"]

#: amu/Å³ → g/cm³
AMU_PER_A3_TO_G_CM3 = 1.66053906660


def _place(a, b, c, bond, theta, phi):
    """Position of d with |cd| = bond, angle b-c-d = theta, dihedral a-b-c-d = phi (rad, trans = π).

    a, b, c: (3,) or (k, 3); theta, phi scalars or (k,)."""
    bc = c - b
    bc = bc / np.linalg.norm(bc, axis=-1, keepdims=True)
    n = np.cross(b - a, bc)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    m = np.cross(n, bc)
    theta = np.asarray(theta)[..., None]
    phi = np.asarray(phi)[..., None]
    return (c - bond * np.cos(theta) * bc + bond * np.sin(theta) * np.cos(phi) * m
            + bond * np.sin(theta) * np.sin(phi) * n)


def _random_unit(rng, k=None):
    v = rng.normal(size=(3,) if k is None else (k, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _min_dist(cand, placed, L):
    """(k,) smallest minimum-image distance of candidates (k, 3) to placed sites (m, 3), cubic box L."""
    if len(placed) == 0:
        return np.full(len(cand), np.inf)
    d = cand[:, None, :] - placed[None, :, :]
    d -= L * np.round(d / L)
    return np.sqrt((d * d).sum(-1).min(1))


def _site_types(n_carbons: int) -> list[str]:
    if n_carbons == 1:
        return ["CH4"]
    return ["CH3"] + ["CH2"] * (n_carbons - 2) + ["CH3"]


def build_pe_melt(n_chains: int, n_carbons: int, density_g_cm3: float = 0.75, *, seed: int = 0,
                  temperature_K: float = 450.0, min_distance: float = 2.8, relax: bool = True,
                  relax_steps: int = 300, fmax: float = 0.5, potential_kwargs: dict | None = None,
                  max_attempts: int = 200):
    """Build an amorphous united-atom polyethylene (n-alkane) melt.

    Parameters
    ----------
    n_chains : number of chains (≥ 1)
    n_carbons : united-atom sites per chain (≥ 2); ends are CH3, the rest CH2
    density_g_cm3 : mass density, g/cm³ (0.75 ≈ polyethylene melt at 450 K; experiment
        gives ~0.76–0.78 at 400–450 K)
    seed : random seed (the result is reproducible)
    temperature_K : torsions of the growing chains are drawn with Boltzmann weights of the
        TraPPE-UA torsion energy at this temperature (trans ≈ 60 % at 450 K)
    min_distance : Å, closest non-bonded approach allowed while growing (sites closer than
        3 bonds along the same chain are not checked)
    relax : relax the overlaps with FIRE (TraPPE-UA, fixed cell) before returning
    relax_steps, fmax : FIRE step limit and force convergence criterion, eV/Å. The relaxation
        only removes overlaps so that MD can start; it does not equilibrate the melt.
    potential_kwargs : extra keyword arguments for :class:`TraPPEUA` used in the relaxation
        (e.g. ``r_on``, ``r_cut``); boxes smaller than 2 r_cut are fine (periodic images of
        a chain then interact with it, as in LAMMPS)
    max_attempts : regrowth attempts per chain before giving up

    Returns
    -------
    atoms : ASE Atoms (element C, masses 15.035/14.027 amu, cubic periodic cell, positions
        wrapped into the cell) with ``arrays['bead_types']``, ``arrays['chain_id']``,
        ``arrays['chain_index']``
    topology : :class:`cgkit.topology.Topology` (bonds, angles, dihedrals, 1-4 exclusions,
        ``molecule`` = chain id)

    Growth is O(N²) in the number of sites (fine up to ~10⁴ sites).
    """
    from ase import Atoms

    for name, v in (("n_chains", n_chains), ("n_carbons", n_carbons)):
        if isinstance(v, bool) or int(v) != v:
            raise InputError(f"{name} must be an integer, got {v!r}")
    n_chains, n_carbons = int(n_chains), int(n_carbons)
    if n_chains < 1:
        raise InputError(f"n_chains must be at least 1, got {n_chains}")
    if n_carbons < 2:
        raise InputError(f"n_carbons must be at least 2 (ethane), got {n_carbons}")
    density = float(density_g_cm3)
    if not np.isfinite(density) or density <= 0.0 or density > 1.2:
        raise InputError(f"density_g_cm3 must be in (0, 1.2] g/cm³ (PE melt ≈ 0.75), got {density_g_cm3}")
    if not np.isfinite(temperature_K) or temperature_K <= 0:
        raise InputError(f"temperature_K must be positive, got {temperature_K}")
    if not 0.0 < min_distance < 4.0:
        raise InputError(f"min_distance must be in (0, 4) Å, got {min_distance}")
    types = _site_types(n_carbons)
    masses_chain = np.array([TRAPPE_MASSES[t] for t in types])
    total_mass = masses_chain.sum() * n_chains  # amu
    L = (total_mass * AMU_PER_A3_TO_G_CM3 / density) ** (1.0 / 3.0)
    pot_kwargs = dict(potential_kwargs or {})
    if L <= 2.0 * BOND_R0 * 1.5:
        raise InputError(f"the box ({L:.2f} Å) is too small for minimum-image bonds; add chains or sites")

    rng = np.random.default_rng(seed)
    theta = np.deg2rad(ANGLE_T0["CH2"])
    beta = 1.0 / temperature_K  # torsion energies in K
    c_tors = TORSION_C[("CH2", "CH2")]
    n_trial = 12
    placed = np.zeros((0, 3))
    chains = []
    for ci in range(n_chains):
        for attempt in range(max_attempts):
            chain = _grow_chain(rng, n_carbons, placed, L, theta, beta, c_tors, min_distance, n_trial)
            if chain is not None:
                break
        else:
            raise InputError(f"could not grow chain {ci} without overlaps at {density} g/cm³ after "
                             f"{max_attempts} attempts; lower density_g_cm3 or min_distance")
        chains.append(chain)
        placed = np.concatenate([placed, chain])

    positions = np.concatenate(chains)
    n = len(positions)
    atoms = Atoms(symbols=["C"] * n, positions=positions, cell=np.eye(3) * L, pbc=True)
    atoms.set_masses(np.tile(masses_chain, n_chains))
    atoms.arrays["bead_types"] = np.array(types * n_chains)
    atoms.arrays["chain_id"] = np.repeat(np.arange(n_chains), n_carbons).astype(np.int64)
    atoms.arrays["chain_index"] = np.tile(np.arange(n_carbons), n_chains).astype(np.int64)
    atoms.wrap()
    topology = chain_topology(atoms)
    if relax:
        from ase.optimize import FIRE

        from ..calculator import CgkitCalculator
        from .trappe import TraPPEUA
        pot = TraPPEUA(atoms.arrays["bead_types"], topology, **pot_kwargs)
        atoms.calc = CgkitCalculator(pot)
        opt = FIRE(atoms, maxstep=0.1, logfile=None)
        opt.run(fmax=fmax, steps=relax_steps)
        forces = atoms.get_forces()
        if not np.all(np.isfinite(forces)):
            raise InputError("the relaxation diverged (non-finite forces); lower density_g_cm3 or "
                             "change the seed")
        atoms.calc = None
        atoms.wrap()
    return atoms, topology


def _grow_chain(rng, n_carbons, placed, L, theta, beta, c_tors, dmin, n_trial):
    """One self-avoiding chain (n_carbons, 3) or None when growth got stuck."""
    chain = np.zeros((n_carbons, 3))
    for _ in range(200):  # first site
        p = rng.uniform(0.0, L, 3)
        if _min_dist(p[None], placed, L)[0] >= dmin:
            chain[0] = p
            break
    else:
        return None
    if n_carbons == 1:
        return chain
    others = placed
    k = 1
    backtracks = 0
    while k < n_carbons:
        # sites of this chain at least 4 bonds behind are checked against overlap too
        own = chain[:max(k - 3, 0)]
        pool = np.concatenate([others, own]) if len(own) else others
        if k == 1:
            cand = chain[0] + BOND_R0 * _random_unit(rng, n_trial)
            w = np.ones(n_trial)
        elif k == 2:
            ref = chain[0] + _random_unit(rng)  # a random dummy site sets the azimuth
            phis = rng.uniform(-np.pi, np.pi, n_trial)
            cand = _place(np.broadcast_to(ref, (n_trial, 3)), np.broadcast_to(chain[0], (n_trial, 3)),
                          np.broadcast_to(chain[1], (n_trial, 3)), BOND_R0, theta, phis)
            w = np.ones(n_trial)
        else:
            # trans / gauche± with a little spread, Boltzmann weights of the torsion energy
            centres = rng.choice(np.deg2rad([180.0, 60.0, -60.0]), n_trial)
            phis = centres + rng.normal(0.0, np.deg2rad(12.0), n_trial)
            a, b, c = (np.broadcast_to(chain[k - m], (n_trial, 3)) for m in (3, 2, 1))
            cand = _place(a, b, c, BOND_R0, theta, phis)
            w = np.exp(-beta * (torsion_energy_K(phis, c_tors)))
        ok = _min_dist(cand, pool, L) >= dmin
        if not ok.any():
            backtracks += 1
            if backtracks > 50 or k <= 3:
                return None
            k = max(k - 3, 3)  # step back and regrow the last sites
            continue
        w = w * ok
        pick = rng.choice(n_trial, p=w / w.sum())
        chain[k] = cand[pick]
        k += 1
    return chain


def chain_topology(atoms) -> Topology:
    """Topology of linear chains from ``arrays['chain_id']`` and ``arrays['chain_index']``.

    Consecutive sites of a chain are bonded; angles, dihedrals and 1-2/1-3/1-4 exclusions follow
    (:meth:`Topology.from_bonds`); ``molecule`` is the chain id.
    """
    cid = atoms.arrays.get("chain_id")
    cix = atoms.arrays.get("chain_index")
    if cid is None or cix is None:
        raise InputError("atoms.arrays must hold 'chain_id' and 'chain_index' (as written by "
                         "build_pe_melt) to derive the chain topology; or pass a Topology")
    cid = np.asarray(cid, dtype=np.int64)
    cix = np.asarray(cix, dtype=np.int64)
    order = np.lexsort((cix, cid))
    same = cid[order][1:] == cid[order][:-1]
    step = cix[order][1:] - cix[order][:-1]
    if np.any(same & (step != 1)):
        raise InputError("chain_index must run 0, 1, 2, ... without gaps or repeats within a chain")
    bonds = np.stack([order[:-1][same], order[1:][same]], axis=1)
    _, mol = np.unique(cid, return_inverse=True)
    return Topology.from_bonds(len(atoms), bonds, exclude=3, molecule=mol)


def unwrap_chains(atoms, topology: Topology | None = None) -> np.ndarray:
    """(n, 3) Å positions with every chain made whole (:meth:`cgkit.topology.Topology.unwrap`;
    the first site of each chain kept in place)."""
    topology = topology if topology is not None else chain_topology(atoms)
    return topology.unwrap(atoms.get_positions(), atoms.cell.array, atoms.pbc)


def _lammps_frame(cell: np.ndarray):
    """Rotation Q and LAMMPS box (lx, ly, lz, xy, xz, yz) for a right-handed cell (rows)."""
    q, r = np.linalg.qr(cell.T)
    sign = np.sign(np.diag(r))
    q, r = q * sign, (r.T * sign).T
    lower = r.T  # rows: a = (lx,0,0), b = (xy,ly,0), c = (xz,yz,lz)
    return q, lower


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
    q, lower = _lammps_frame(cell)
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
    q, _ = _lammps_frame(atoms.cell.array)  # PDB frame: a along x, b in the xy plane
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


# ====================================================================== crystalline polyethylene
#: Orthorhombic polyethylene at room temperature: a, b, c (chain axis) in Å, the commonly
#: quoted room-temperature cell (density 0.995 g/cm³ with united-atom CH2 masses). Bunn, Trans.
#: Faraday Soc. 35, 482 (1939) reported a = 7.40, b = 4.93, c = 2.534 Å from X-ray diffraction;
#: the a and b used here are the slightly larger later room-temperature values (the a axis
#: expands fastest with temperature). Avitabile et al., J. Polym. Sci. Polym. Lett. Ed. 13, 351
#: (1975) give the low-temperature (4 K, neutron, deuterated PE) cell, a ≈ 7.12, b ≈ 4.85,
#: c ≈ 2.55 Å; pass those to :func:`pe_crystal_unit_cell` for a low-temperature start.
PE_CELL_ROOM_T = (7.42, 4.95, 2.55)
#: degrees, angle between the zig-zag (C–C–C) plane of the chain at the cell origin and the a
#: axis; the chain at (½, ½) has the opposite sign (Pnam). Literature values are 41–49° depending
#: on the reference axis; a TraPPE-UA relaxation determines its own value.
PE_SETTING_ANGLE = 42.0

__all__ += ["PE_CELL_ROOM_T", "PE_SETTING_ANGLE", "pe_crystal_unit_cell", "build_pe_crystal",
            "crystal_chain_topology", "PECrystalTraPPEUA", "pe_crystal_potential"]


def _pe_unit_cell_geometry(a, b, c, setting_angle, bond):
    """(4, 3) Å positions of the orthorhombic cell: chain 0 at (0, 0), chain 1 at (½, ½),
    each with sites at z = c/4 and 3c/4 (the mirror planes of Pnam), ordered chain by chain
    along the backbone."""
    half = 0.5 * c
    if not bond > half:
        raise InputError(f"the bond ({bond} Å) must be longer than c/2 ({half} Å): a planar "
                         "zig-zag with this repeat is impossible")
    r = 0.5 * np.sqrt(bond * bond - half * half)  # lateral distance of a site from its chain axis
    phi = np.deg2rad(setting_angle)
    u0 = r * np.array([np.cos(phi), np.sin(phi), 0.0])
    u1 = r * np.array([np.cos(-phi), np.sin(-phi), 0.0])
    c0 = np.zeros(3)
    c1 = np.array([0.5 * a, 0.5 * b, 0.0])
    z1, z3 = np.array([0, 0, 0.25 * c]), np.array([0, 0, 0.75 * c])
    return np.array([c0 + u0 + z1, c0 - u0 + z3, c1 + u1 + z1, c1 - u1 + z3])


def _pe_atoms(cell, positions, chain_id):
    from ase import Atoms
    n = len(positions)
    atoms = Atoms(symbols=["C"] * n, positions=positions, cell=cell, pbc=True)
    atoms.set_masses(np.full(n, TRAPPE_MASSES["CH2"]))
    atoms.arrays["bead_types"] = np.array(["CH2"] * n)
    atoms.arrays["chain_id"] = np.asarray(chain_id, dtype=np.int64)
    return atoms


def _tile_pe(unit, repeat):
    """Repeat the 4-site unit cell; sites ordered chain by chain, each chain along its backbone
    (z increasing). Returns (atoms, bonds)."""
    n1, n2, n3 = repeat
    cell = unit.cell.array
    up = unit.get_positions()
    pos, cid, bonds = [], [], []
    chain = 0
    for i in range(n1):
        for j in range(n2):
            for s in range(2):  # the two chains of the unit cell
                first = len(pos)
                for k in range(n3):
                    shift = i * cell[0] + j * cell[1] + k * cell[2]
                    pos += [up[2 * s] + shift, up[2 * s + 1] + shift]
                m = 2 * n3
                bonds += [(first + t, first + (t + 1) % m) for t in range(m)]
                cid += [chain] * m
                chain += 1
    atoms = _pe_atoms(cell * np.array([n1, n2, n3])[:, None], np.array(pos), cid)
    return atoms, np.array(bonds, dtype=np.int64)


def _check_repeat(repeat):
    rep = np.asarray(repeat)
    if rep.shape != (3,) or np.any(rep != np.round(rep)) or np.any(rep < 1):
        raise InputError(f"repeat must be 3 positive integers (a, b, c), got {repeat!r}")
    rep = tuple(int(x) for x in rep)
    if rep[2] < 4:
        raise InputError(f"repeat along c (the chains) must be at least 4 unit cells (10.2 Å), got "
                         f"{rep[2]}: shorter periodic chains make 1-4 pairs and dihedrals ambiguous "
                         "under minimum-image bonded terms")
    return rep


def _single_thread_blas():
    """Context limiting BLAS to one thread (threadpoolctl, an MDAnalysis dependency).

    FrechetCellFilter does many 3×3 matrix functions per step; with a multi-threaded BLAS on a
    loaded machine each costs milliseconds of thread synchronisation instead of microseconds."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        from contextlib import nullcontext
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def pe_crystal_unit_cell(a: float = PE_CELL_ROOM_T[0], b: float = PE_CELL_ROOM_T[1],
                         c: float = PE_CELL_ROOM_T[2], *, setting_angle: float = PE_SETTING_ANGLE,
                         bond: float = BOND_R0, relax: bool = False, relax_cell: bool = False,
                         fmax: float = 1e-5, relax_steps: int = 3000,
                         potential_kwargs: dict | None = None):
    """The 4-site orthorhombic unit cell of united-atom polyethylene (space group Pnam).

    Two planar zig-zag chains along c, at (0, 0) and (½, ½) of the a–b plane, with two CH2
    sites each per repeat c; consecutive sites are ``bond`` Å apart, so the C–C–C angle
    follows from c and the bond (2·atan(c / 2 / √(bond² − c²/4)): 111.8° for c = 2.55 Å and
    1.54 Å bonds; TraPPE-UA's θ₀ = 114° corresponds to c = 2.583 Å). The zig-zag planes make
    ±``setting_angle`` degrees with the a axis.

    Parameters
    ----------
    a, b, c : Å, the orthorhombic cell (default: the room-temperature cell
        :data:`PE_CELL_ROOM_T` = 7.42, 4.95, 2.55 Å; density 0.995 g/cm³)
    setting_angle : degrees, see :data:`PE_SETTING_ANGLE`
    bond : Å, C–C distance of the starting geometry (TraPPE-UA r₀ = 1.54 Å)
    relax : relax the site positions with TraPPE-UA (BFGS through
        :class:`cgkit.calculator.CgkitCalculator`) on a 1×1×4 supercell, keeping the cell
    relax_cell : also relax a, b and c (``FrechetCellFilter`` restricted to the three normal
        strains, so the cell stays orthorhombic) to zero stress
    fmax : eV/Å, convergence criterion on the forces (with ``relax_cell``, on the combined
        atom and cell gradient of ``FrechetCellFilter``)
    relax_steps : BFGS step limit
    potential_kwargs : extra :class:`~cgkit.potentials.trappe.TraPPEUA` arguments

    Returns an ASE Atoms of 4 sites (element C, 14.027 amu) with ``arrays['bead_types']``
    (all ``'CH2'``) and ``arrays['chain_id']`` (0, 0, 1, 1). This cell is the unit cell for
    phonopy (or :func:`build_pe_crystal`); a TraPPE-UA energy of it alone is not defined, since
    its chains are shorter than a dihedral (use ≥ 4 cells along c).
    """
    for name, v in (("a", a), ("b", b), ("c", c), ("bond", bond)):
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a positive length in Å, got {v}")
    cell = np.diag([float(a), float(b), float(c)])
    unit = _pe_atoms(cell, _pe_unit_cell_geometry(a, b, c, float(setting_angle), float(bond)),
                     [0, 0, 1, 1])
    if not (relax or relax_cell):
        return unit
    from ase.optimize import BFGS

    from ..calculator import CgkitCalculator
    nc = 4
    sc, bonds = _tile_pe(unit, (1, 1, nc))
    topo = Topology.from_bonds(len(sc), bonds, exclude=3)
    pot = TraPPEUA(sc.arrays["bead_types"], topo, **dict(potential_kwargs or {}))
    sc.calc = CgkitCalculator(pot)
    if relax_cell:
        from ase.filters import FrechetCellFilter
        target = FrechetCellFilter(sc, mask=[1, 1, 1, 0, 0, 0])
    else:
        target = sc
    opt = BFGS(target, logfile=None, maxstep=0.05)
    with _single_thread_blas():  # 3×3 and (3n+9)² linear algebra: threads only add waiting
        converged = opt.run(fmax=fmax, steps=relax_steps)
    forces = sc.get_forces()
    if not converged or not np.all(np.isfinite(forces)):
        raise InputError(f"the TraPPE-UA relaxation of the PE crystal did not reach fmax = {fmax} eV/Å "
                         f"in {relax_steps} steps (max force {np.abs(forces).max():.2e} eV/Å); raise "
                         "relax_steps or fmax, or start closer to the minimum (a, b, c, setting_angle)")
    sc.calc = None
    new_cell = sc.cell.array.copy()
    new_cell[2] /= nc
    pos = sc.get_positions()
    # sites 0, 1 (chain 0) and 2·nc, 2·nc + 1 (chain 1) are the unit cell at the origin
    up = pos[[0, 1, 2 * nc, 2 * nc + 1]]
    relaxed = _pe_atoms(new_cell, up, [0, 0, 1, 1])
    tiled, _ = _tile_pe(relaxed, (1, 1, nc))
    dev = np.abs(tiled.get_positions() - pos).max()
    if dev > 1e-4:
        raise InputError(f"the relaxed 1×1×{nc} supercell lost the unit-cell periodicity (deviation "
                         f"{dev:.2e} Å): the starting crystal is unstable for these parameters")
    relaxed.wrap()
    return relaxed


def crystal_chain_topology(atoms, bond_cutoff: float = 1.9) -> Topology:
    """Topology of infinite (periodic) chains in a crystal, from distances.

    Sites closer than ``bond_cutoff`` Å (minimum image) are bonded; every site must have exactly
    two bonds, and each periodic chain must be long enough (≥ 8 sites per period) that all
    1-2, 1-3 and 1-4 neighbours are distinct sites whose minimum-image vectors follow the bonds.
    Angles, dihedrals and 1-2/1-3/1-4 exclusions follow (:meth:`Topology.from_bonds`); works for
    any site order (e.g. phonopy's supercells).
    """
    from ase.neighborlist import neighbor_list
    if not atoms.pbc.all():
        raise InputError("crystal_chain_topology needs a structure periodic in all three directions")
    i, j, D = neighbor_list("ijD", atoms, float(bond_cutoff))
    keep = i < j
    pairs = np.unique(np.stack([i[keep], j[keep]], 1), axis=0)
    n = len(atoms)
    deg = np.bincount(pairs.reshape(-1), minlength=n)
    nb_count = np.bincount(i, minlength=n)  # bonded neighbours counting periodic images
    if np.any(deg != 2) or np.any(nb_count != 2):
        bad = int(np.nonzero((deg != 2) | (nb_count != 2))[0][0])
        raise InputError(f"site {bad} has {int(nb_count[bad])} neighbours within {bond_cutoff} Å "
                         f"({int(deg[bad])} distinct sites); every site of an infinite chain needs "
                         "exactly 2. Use at least 4 unit cells along the chains and a bond_cutoff "
                         "between the bond length and the 1-3 distance")
    topo = Topology.from_bonds(n, pairs, exclude=3)
    # minimum-image consistency: the 1-4 vector must be the sum of the three bond vectors
    pos, cell = atoms.get_positions(), atoms.cell.array
    inv = np.linalg.inv(cell)

    def mic(d):
        f = d @ inv
        return (f - np.round(f)) @ cell
    d = topo.dihedrals
    path = sum(mic(pos[d[:, k + 1]] - pos[d[:, k]]) for k in range(3))
    direct = mic(pos[d[:, 3]] - pos[d[:, 0]])
    if len(topo.exclusions) != 3 * n or not np.allclose(path, direct, atol=1e-6):
        raise InputError("the periodic chains are too short for unique 1-4 neighbours under minimum "
                         "image; repeat the cell at least 4 times along the chains (≥ 8 sites)")
    return topo


def build_pe_crystal(repeat=(1, 1, 4), *, unit_cell=None, **unit_cell_kwargs):
    """Orthorhombic united-atom polyethylene crystal with infinite chains for TraPPE-UA.

    ``repeat`` (n_a, n_b, n_c) copies of the 4-site Pnam unit cell of
    :func:`pe_crystal_unit_cell` (n_c ≥ 4 so that bonded terms are unique under minimum image;
    the 10 Å LJ cutoff may exceed half the cell, periodic images are in the neighbor list).
    ``unit_cell``: a 4-site cell from :func:`pe_crystal_unit_cell` (e.g. an already relaxed
    one); otherwise one is made with ``unit_cell_kwargs`` (``a``, ``b``, ``c``,
    ``setting_angle``, ``bond``, ``relax``, ``relax_cell``, ``fmax``, ...; the relaxation is
    done once on the unit cell's 1×1×4 supercell, then tiled).

    Sites (4·n_a·n_b·n_c, all ``CH2``, 14.027 amu) are ordered chain by chain, each chain along
    its backbone; every chain is bonded to itself across the periodic boundary along c, so each
    site has 2 bonds and there are as many angles and dihedrals as sites.

    Returns
    -------
    atoms : ASE Atoms (element C, Å) with ``arrays['bead_types']`` (``'CH2'``) and
        ``arrays['chain_id']`` (no ``chain_index``: the chains have no ends)
    topology : :class:`cgkit.topology.Topology` (bonds, angles, dihedrals, 1-2/1-3/1-4
        exclusions; ``molecule`` = chain id); ``TraPPEUA(atoms.arrays['bead_types'], topology)``
        is the potential
    """
    rep = _check_repeat(repeat)
    if unit_cell is None:
        unit_cell = pe_crystal_unit_cell(**unit_cell_kwargs)
    elif unit_cell_kwargs:
        raise InputError("give either unit_cell or the arguments to make one, not both")
    if len(unit_cell) != 4:
        raise InputError(f"unit_cell must be the 4-site cell of pe_crystal_unit_cell, got "
                         f"{len(unit_cell)} sites")
    atoms, bonds = _tile_pe(unit_cell, rep)
    topo = Topology.from_bonds(len(atoms), bonds, exclude=3,
                               molecule=atoms.arrays["chain_id"])
    atoms.wrap()
    return atoms, topo


class PECrystalTraPPEUA(TraPPEUA):
    """TraPPE-UA for an all-CH2 system whose structures may label sites by element only.

    Identical to :class:`~cgkit.potentials.trappe.TraPPEUA`, except that a structure without
    ``arrays['bead_types']`` whose atoms are all carbon is read as all-``CH2`` — as for the
    supercells that phonopy builds from a PE crystal unit cell (phonopy keeps only element
    symbols). Build it with :func:`pe_crystal_potential`.
    """

    def __init__(self, site_types=None, topology=None, **kwargs):
        super().__init__(site_types, topology, **kwargs)
        if set(self.site_types) != {"CH2"}:
            raise InputError("PECrystalTraPPEUA is for systems of CH2 sites only (infinite "
                             "chains); use TraPPEUA for chains with ends")

    def graph(self, atoms, *, dtype=None, cutoff=None):
        if atoms.arrays.get("bead_types") is not None:
            return super().graph(atoms, dtype=dtype, cutoff=cutoff)
        if set(atoms.get_chemical_symbols()) != {"C"}:
            raise InputError("without arrays['bead_types'] every atom must be carbon (a CH2 site)")
        from dataclasses import replace

        from ..data import AtomicGraph
        g = AtomicGraph.from_atoms(atoms, cutoff or self.cutoff, type_names=("C",),
                                   dtype=dtype or self.dtype)
        return replace(g, type_names=("CH2",))


def pe_crystal_potential(atoms, topology: Topology | None = None, *, bond_cutoff: float = 1.9,
                         **kwargs) -> PECrystalTraPPEUA:
    """TraPPE-UA potential for a PE crystal in the site order of ``atoms``.

    ``topology`` defaults to :func:`crystal_chain_topology` (bonds from distances, any site
    order), so it works for phonopy's supercells of :func:`pe_crystal_unit_cell`:
    ``pe_crystal_potential(phonopy_to_ase(phonon.supercell))``. ``kwargs`` go to
    :class:`TraPPEUA` (``r_on``, ``r_cut``, ``bond_k``).
    """
    topology = topology if topology is not None else crystal_chain_topology(atoms, bond_cutoff)
    return PECrystalTraPPEUA(["CH2"] * len(atoms), topology, **kwargs)
