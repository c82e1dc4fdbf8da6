"""Polyethylene melt builder: geometry, density, connectivity, relaxation, MD start, file export."""
from __future__ import annotations

import numpy as np
import pytest
from ase.units import fs, kB

from cgkit.errors import InputError
from cgkit.potentials.polyethylene import (build_pe_melt, chain_topology, unwrap_chains,
                                           write_lammps_data, write_psf_pdb)

N_CHAINS, N_C = 3, 20


@pytest.fixture(scope="module")
def raw():
    return build_pe_melt(N_CHAINS, N_C, 0.75, seed=4, relax=False, min_distance=2.8)


@pytest.fixture(scope="module")
def relaxed():
    return build_pe_melt(N_CHAINS, N_C, 0.75, seed=4, fmax=0.5)


def _nonbonded_mask(atoms):
    """Pairs in different chains or more than 3 bonds apart (independent of the Topology code)."""
    cid, cix = atoms.arrays["chain_id"], atoms.arrays["chain_index"]
    far = (cid[:, None] != cid[None, :]) | (np.abs(cix[:, None] - cix[None, :]) > 3)
    np.fill_diagonal(far, False)
    return far


def test_grown_chains_have_no_overlaps_and_ideal_bonded_geometry(raw):
    atoms, topo = raw
    d = atoms.get_all_distances(mic=True)
    assert d[_nonbonded_mask(atoms)].min() >= 2.8 - 1e-9
    pos = unwrap_chains(atoms, topo)
    for a, b in topo.bonds:
        assert abs(atoms.get_distance(a, b, mic=True) - 1.54) < 1e-9
    for i, j, k in topo.angles[:20]:
        assert abs(atoms.get_angle(i, j, k, mic=True) - 114.0) < 1e-6
    # chains are whole after unwrapping: consecutive sites 1.54 Å apart without minimum image
    assert np.allclose(np.linalg.norm(pos[topo.bonds[:, 1]] - pos[topo.bonds[:, 0]], axis=1), 1.54)


def test_density_masses_and_site_types(raw):
    atoms, _ = raw
    mass_g = atoms.get_masses().sum() / 6.02214076e23
    vol_cm3 = atoms.get_volume() * 1e-24
    assert abs(mass_g / vol_cm3 - 0.75) < 1e-6
    types = atoms.arrays["bead_types"].reshape(N_CHAINS, N_C)
    assert (types[:, [0, -1]] == "CH3").all() and (types[:, 1:-1] == "CH2").all()
    m = atoms.get_masses().reshape(N_CHAINS, N_C)
    assert np.allclose(m[:, [0, -1]], 15.035) and np.allclose(m[:, 1:-1], 14.027)
    assert (atoms.get_chemical_symbols() == np.array(["C"] * len(atoms))).all()
    assert atoms.pbc.all()
    assert np.all(atoms.get_scaled_positions(wrap=False) >= -1e-12)  # wrapped into the cell
    assert np.all(atoms.get_scaled_positions(wrap=False) < 1 + 1e-12)


def test_chain_connectivity_and_ordering(raw):
    atoms, topo = raw
    cid, cix = atoms.arrays["chain_id"], atoms.arrays["chain_index"]
    assert (cid == np.repeat(np.arange(N_CHAINS), N_C)).all()
    assert (cix == np.tile(np.arange(N_C), N_CHAINS)).all()
    bonds = {tuple(sorted(b)) for b in topo.bonds.tolist()}
    expect = {(c * N_C + i, c * N_C + i + 1) for c in range(N_CHAINS) for i in range(N_C - 1)}
    assert bonds == expect
    assert len(topo.angles) == N_CHAINS * (N_C - 2)
    assert len(topo.dihedrals) == N_CHAINS * (N_C - 3)
    assert (topo.molecule == cid).all()
    # 1-2, 1-3, 1-4 excluded within a chain, nothing between chains
    excl = topo.exclusions
    assert len(excl) == N_CHAINS * ((N_C - 1) + (N_C - 2) + (N_C - 3))
    assert (cid[excl[:, 0]] == cid[excl[:, 1]]).all()


def test_torsions_are_boltzmann_weighted_mostly_trans(raw):
    atoms, topo = raw
    phi = np.array([atoms.get_dihedral(*d, mic=True) for d in topo.dihedrals])
    trans = np.mean(np.abs(phi - 180.0) < 60.0)
    assert 0.4 < trans < 0.85, trans  # ≈ 0.6 at 450 K for TraPPE-UA
    assert np.all(np.abs(phi - 180.0) < 180.0)


def test_same_seed_same_melt():
    a, _ = build_pe_melt(2, 12, 0.7, seed=9, relax=False)
    b, _ = build_pe_melt(2, 12, 0.7, seed=9, relax=False)
    c, _ = build_pe_melt(2, 12, 0.7, seed=10, relax=False)
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)


def test_relaxed_melt_has_small_finite_forces_and_can_start_md(relaxed, raw):
    from ase.md.verlet import VelocityVerlet

    from cgkit.calculator import CgkitCalculator
    from cgkit.potentials.trappe import TraPPEUA
    atoms, topo = relaxed
    atoms = atoms.copy()
    pot = TraPPEUA.from_atoms(atoms, topo)
    atoms.calc = CgkitCalculator(pot)
    f = atoms.get_forces()
    assert np.all(np.isfinite(f))
    raw_atoms = raw[0].copy()
    raw_atoms.calc = CgkitCalculator(pot)
    assert np.abs(f).max() < np.abs(raw_atoms.get_forces()).max()
    assert np.linalg.norm(f, axis=1).max() < 1.0  # eV/Å (FIRE fmax 0.5, or 300 steps)
    d = atoms.get_all_distances(mic=True)
    assert d[_nonbonded_mask(atoms)].min() > 3.0
    # 40 fs of NVE at 450 K: no blow-up, energy conserved
    m = atoms.get_masses()[:, None]
    v = np.random.default_rng(0).normal(size=(len(atoms), 3)) * np.sqrt(450.0 * kB / m)
    atoms.set_momenta(m * (v - (m * v).sum(0) / m.sum()))
    md = VelocityVerlet(atoms, 1.0 * fs)
    e0 = atoms.get_total_energy()
    md.run(40)
    e1 = atoms.get_total_energy()
    print(f"NVE 40 fs: |ΔE| = {abs(e1 - e0) / len(atoms):.1e} eV/site")
    assert np.isfinite(e1)
    assert abs(e1 - e0) / len(atoms) < 2e-3  # eV/site
    assert atoms.get_temperature() < 2000


def test_mdanalysis_reads_psf_pdb_with_residue_blocks(tmp_path, relaxed):
    import MDAnalysis as mda
    atoms, topo = relaxed
    psf, pdb = write_psf_pdb(tmp_path / "melt", atoms, topo)
    u = mda.Universe(str(psf), str(pdb))
    assert len(u.atoms) == len(atoms)
    assert len(u.bonds) == len(topo.bonds) and len(u.angles) == len(topo.angles)
    assert len(u.dihedrals) == len(topo.dihedrals)
    assert len(u.atoms.fragments) == N_CHAINS
    assert len(u.residues) == N_CHAINS * N_C // 4
    names = u.residues.resnames.reshape(N_CHAINS, N_C // 4)
    assert (names[:, 0] == "PEH").all() and (names[:, -1] == "PET").all()
    assert (names[:, 1:-1] == "PE").all()
    assert (u.atoms.types == atoms.arrays["bead_types"]).all()
    assert np.allclose(u.atoms.masses, atoms.get_masses())
    assert all(len(r.atoms) == 4 for r in u.residues)
    assert np.allclose(u.dimensions[:3], atoms.cell.lengths(), atol=1e-3)
    # coordinates are the unwrapped chains (PDB precision 1e-3 Å)
    assert np.abs(u.atoms.positions - unwrap_chains(atoms, topo)).max() < 2e-3
    # residue = 4 consecutive sites of one chain
    for r in u.residues[:6]:
        idx = r.atoms.indices
        assert (np.diff(idx) == 1).all() and len(set(atoms.arrays["chain_id"][idx])) == 1


def test_shipped_4to1_mapping_compiles_on_the_written_melt_with_every_cg_bond(tmp_path, relaxed):
    """The PSF's head/tail residue names are the ones mappings/polyethylene_ua_4to1.yaml expects."""
    import MDAnalysis as mda

    from cgkit.mapping import Mapping, shipped_mapping
    atoms, topo = relaxed
    psf, pdb = write_psf_pdb(tmp_path / "melt", atoms, topo)
    u = mda.Universe(str(psf), str(pdb))
    m = Mapping.from_yaml(shipped_mapping("polyethylene_ua_4to1"), u)
    n_beads_per_chain = N_C // 4
    assert m.n_beads == N_CHAINS * n_beads_per_chain
    assert len(m.topology.bonds) == N_CHAINS * (n_beads_per_chain - 1)
    assert len(m.topology.angles) == N_CHAINS * (n_beads_per_chain - 2)


def test_mdanalysis_reads_lammps_data(tmp_path, relaxed):
    import MDAnalysis as mda
    atoms, topo = relaxed
    path = write_lammps_data(tmp_path / "melt.data", atoms, topo)
    u = mda.Universe(str(path), atom_style="id resid type x y z")
    assert len(u.atoms) == len(atoms) and len(u.bonds) == len(topo.bonds)
    assert len(u.dihedrals) == len(topo.dihedrals)
    assert len(u.residues) == N_CHAINS  # resid = molecule (chain) id
    # bonds are joined directly (image flags 0, unwrapped positions)
    b = u.atoms.positions[topo.bonds[:, 1]] - u.atoms.positions[topo.bonds[:, 0]]
    assert np.allclose(np.linalg.norm(b, axis=1), [atoms.get_distance(*p, mic=True) for p in topo.bonds],
                       atol=1e-4)


def test_bad_builder_inputs_raise_cgkit_errors():
    with pytest.raises(InputError, match="n_chains"):
        build_pe_melt(0, 10)
    with pytest.raises(InputError, match="n_carbons"):
        build_pe_melt(2, 1)
    with pytest.raises(InputError, match="integer"):
        build_pe_melt(2.5, 10)
    for bad in (-0.5, 0.0, 2.0, float("nan")):
        with pytest.raises(InputError, match="density"):
            build_pe_melt(2, 10, bad)
    with pytest.raises(InputError, match="lower density"):
        build_pe_melt(8, 30, 1.2, min_distance=3.9, relax=False, max_attempts=2)
    from ase import Atoms
    with pytest.raises(InputError, match="chain_id"):
        chain_topology(Atoms("C2", positions=[[0, 0, 0], [1.5, 0, 0]]))
