"""Crystalline united-atom polyethylene for TraPPE-UA.

:func:`pe_crystal_unit_cell` gives the 4-site orthorhombic (Pnam) unit cell, optionally relaxed
with TraPPE-UA; :func:`build_pe_crystal` repeats it into a supercell of infinite chains bonded
across the periodic boundary (all sites ``CH2``). The potential for any site order (e.g.
phonopy's supercells, which carry element symbols only) is
:func:`cgkit.potentials.trappe.pe_crystal_potential`. Lengths in Å, angles in degrees.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..topology import Topology
from .trappe import BOND_R0, TRAPPE_MASSES, TraPPEUA

__all__ = ["PE_CELL_ROOM_T", "PE_SETTING_ANGLE", "pe_crystal_unit_cell", "build_pe_crystal"]

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
