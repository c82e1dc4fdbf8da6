"""Amorphous united-atom polyethylene (and n-alkane) melts for the TraPPE-UA force field.

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
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..units import AMU_PER_A3_TO_G_PER_CM3
from .pe_topology import chain_topology
from .trappe import ANGLE_T0, BOND_R0, TORSION_C, TRAPPE_MASSES, TraPPEUA, torsion_energy_K

__all__ = ["build_pe_melt", "AMU_PER_A3_TO_G_CM3"]

#: amu/Å³ → g/cm³
AMU_PER_A3_TO_G_CM3 = AMU_PER_A3_TO_G_PER_CM3  # cgkit.units


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
