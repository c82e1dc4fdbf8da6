import numpy as np
import pytest

from cgkit.md import MolecularDynamics
from cgkit.topology import Topology

from .reference import MoleculeReference, reference_forces

L = 11.0
RC = 6.0


@pytest.fixture(scope="session")
def dimer_liquid():
    """16 LJ dimers (harmonic bond, intramolecular LJ excluded) sampled by Langevin MD at 150 K."""
    rng = np.random.default_rng(3)
    pos = []
    while len(pos) < 32:  # random insertion, non-bonded beads ≥ 3.1 Å apart
        c = rng.uniform(0, L, 3)
        d = rng.normal(size=3)
        pair = [c - 0.75 * d / np.linalg.norm(d), c + 0.75 * d / np.linalg.norm(d)]
        if pos:
            diff = np.array(pos)[None] - np.array(pair)[:, None]
            diff -= L * np.round(diff / L)
            if np.linalg.norm(diff, axis=-1).min() < 3.1:
                continue
        pos += pair
    pos = np.array(pos)
    bonds = np.stack([np.arange(0, 32, 2), np.arange(1, 32, 2)], 1)
    molecule = np.repeat(np.arange(16), 2)
    ref = MoleculeReference(molecule, bonds, rc=RC)
    cell = np.eye(3) * L
    md = MolecularDynamics(ref, positions=pos, cell=cell, pbc=True, masses=np.full(32, 39.95),
                           species=np.zeros(32, int), type_names=("A",), timestep=4.0,
                           temperature=150.0, friction=0.02, store_every=16, log_every=0,
                           progress=False, seed=1)
    md.run(200)  # equilibrate
    md.results._data["positions"].clear()
    md.run(1600)
    P = md.results.positions[:, 0]
    F = reference_forces(ref, P, cell)
    top = Topology.from_bonds(32, bonds, exclude=1)
    return {"positions": P, "forces": F, "cell": cell, "topology": top, "ref": ref}


@pytest.fixture(scope="session")
def chains():
    """Random (non-Boltzmann) conformations of 4-bead chains A-B-B-A with exact bonded forces."""
    rng = np.random.default_rng(7)
    n_mol, n_frames = 6, 40
    bonds, angles, dih = [], [], []
    for m in range(n_mol):
        o = 4 * m
        bonds += [(o, o + 1), (o + 1, o + 2), (o + 2, o + 3)]
        angles += [(o, o + 1, o + 2), (o + 1, o + 2, o + 3)]
        dih += [(o, o + 1, o + 2, o + 3)]
    P = np.zeros((n_frames, 4 * n_mol, 3))
    for f in range(n_frames):
        for m in range(n_mol):
            x = [rng.uniform(0, 30, 3)]
            prev = None
            for k in range(3):
                while True:
                    v = rng.normal(size=3)
                    v /= np.linalg.norm(v)
                    if prev is None or np.dot(v, prev) < 0.7:  # angle > ~45 deg
                        break
                x.append(x[-1] + v * rng.uniform(1.2, 1.8))
                prev = -v
            P[f, 4 * m:4 * m + 4] = x
    ref = MoleculeReference(np.repeat(np.arange(n_mol), 4), bonds, angles, dih, lj=False)
    F = reference_forces(ref, P, np.zeros((3, 3)), pbc=False)
    top = Topology(n_particles=4 * n_mol, bonds=bonds, angles=angles, dihedrals=dih)
    species = np.tile([0, 1, 1, 0], n_mol)
    return {"positions": P, "forces": F, "topology": top, "species": species, "ref": ref}
