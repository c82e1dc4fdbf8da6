"""Polymer analysis against MDAnalysis where both compute the same thing, and on periodic,
atomistic, shuffled-order and multi-species universes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import MDAnalysis as mda
from cgkit.properties.polymer import PolymerAnalysis
from tests.properties.test_polymer_generators import fjc, frc, make_universe, wlc


def _brownian_chains(rng, n_frames, C, L, box, sigma=0.3):
    """Chains (frozen shape) translating by Brownian steps of std sigma (Å per component)."""
    x0 = frc(rng, C, L, 1.5, 0.5) + rng.uniform(0, box, (C, 1, 3))
    steps = rng.normal(0, sigma, (n_frames, C, 1, 3))
    steps[0] = 0
    return x0[None] + np.cumsum(steps, axis=0)


def test_chain_across_periodic_boundary_and_shuffled_atom_order_gives_unwrapped_results():
    rng = np.random.default_rng(20)
    C, L, box = 12, 30, 14.0
    x = wlc(rng, C * 3, L, 1.2, 5.0).reshape(3, C, L, 3) + 3.0   # chains longer than the box
    ref = PolymerAnalysis(make_universe(x).atoms, rdf=False, msd=None).run()
    # wrap every atom into the box and shuffle the atom order (bonds follow the atoms)
    perm = rng.permutation(C * L)
    inv = np.argsort(perm)
    flat = x.reshape(3, C * L, 3)
    wrapped = np.mod(flat[:, perm], box)
    u = make_universe(wrapped, chain_lengths=[C * L], box=[box] * 3, bonds=False)
    chains_bonds = np.stack([np.arange(C * L - 1), np.arange(1, C * L)], 1)
    chains_bonds = chains_bonds[(chains_bonds[:, 1] % L) != 0]            # no bonds between chains
    u.add_TopologyAttr("bonds", [tuple(b) for b in inv[chains_bonds].tolist()])
    pa = PolymerAnalysis(u.atoms, rdf=False, msd=None).run()
    (g,) = pa.results.groups.values()
    (gr,) = ref.results.groups.values()
    assert g["n_chains"] == C and g["n_beads"] == L
    for k in ("rg2", "ree2", "C_n", "lp_acf", "nu", "asphericity", "bond_length"):
        assert g[k]["value"] == pytest.approx(gr[k]["value"], rel=1e-4), k
    assert np.allclose(g["bond_acf"]["C"], gr["bond_acf"]["C"], atol=1e-5)
    assert np.allclose(g["internal_distances"]["R2"], gr["internal_distances"]["R2"], rtol=1e-4)


def test_radius_of_gyration_matches_mdanalysis_per_fragment_with_masses():
    """Atomistic-like chains: carbons plus two hydrogens each, mass weighted."""
    rng = np.random.default_rng(21)
    C, L = 6, 15
    back = frc(rng, C, L, 1.54, np.cos(np.radians(68)))
    h1 = back + rng.normal(0, 0.6, back.shape)
    h2 = back + rng.normal(0, 0.6, back.shape)
    atoms = np.stack([back, h1, h2], axis=2).reshape(C, 3 * L, 3)  # C H H C H H ...
    u = make_universe(atoms[None], bonds=False, masses=np.tile([12.011, 1.008, 1.008], C * L))
    u.atoms.names = np.tile(["C", "H1", "H2"], C * L)
    idx = np.arange(C * 3 * L).reshape(C, L, 3)
    bonds = np.concatenate([np.stack([idx[:, :-1, 0], idx[:, 1:, 0]], -1).reshape(-1, 2),
                            np.stack([idx[..., 0], idx[..., 1]], -1).reshape(-1, 2),
                            np.stack([idx[..., 0], idx[..., 2]], -1).reshape(-1, 2)])
    u.add_TopologyAttr("bonds", [tuple(b) for b in bonds.tolist()])
    pa = PolymerAnalysis(u.atoms, rdf=False, msd=None).run()
    (g,) = pa.results.groups.values()
    assert g["n_beads"] == L                               # backbone = carbons, not H-C…C-H
    rg_md = np.array([f.radius_of_gyration() for f in u.atoms.fragments])
    assert np.allclose(pa.results.groups["PLY:N15"]["per_chain"]["rg2"], rg_md ** 2, rtol=1e-5)
    ree_c = np.linalg.norm(back[:, -1] - back[:, 0], axis=1)
    assert g["ree2"]["value"] == pytest.approx((ree_c ** 2).mean(), rel=1e-5)


def test_persistence_length_matches_mdanalysis_and_stays_normalised_on_sliced_runs():
    rng = np.random.default_rng(22)
    nf, C, L = 6, 20, 40
    x = wlc(rng, nf * C, L, 1.0, 6.0).reshape(nf, C, L, 3)
    u = make_universe(x)
    chains = [u.atoms[i * L:(i + 1) * L] for i in range(C)]
    from MDAnalysis.analysis.polymer import PersistenceLength
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md = PersistenceLength(chains).run()
    ours = PolymerAnalysis(u.atoms, rdf=False, msd=None, acf_threshold=None).run()
    (g,) = ours.results.groups.values()
    assert np.allclose(g["bond_acf"]["C"], md.results.bond_autocorrelation, atol=2e-6)
    # MDAnalysis takes the bond length from the last frame only; compare the fit in units of n
    assert g["lp_acf"]["value"] / g["bond_length"]["value"] == pytest.approx(
        md.results.lp / md.results.lb, rel=2e-3)
    # sliced run: C(0) must stay 1 and equal MDAnalysis on a universe holding only those frames
    sl = PolymerAnalysis(u.atoms, rdf=False, msd=None, acf_threshold=None).run(start=1, stop=5, step=2)
    (gs,) = sl.results.groups.values()
    assert gs["bond_acf"]["C"][0] == pytest.approx(1.0, abs=1e-12)
    u2 = make_universe(x[1:5:2])
    md2 = PersistenceLength([u2.atoms[i * L:(i + 1) * L] for i in range(C)]).run()
    assert np.allclose(gs["bond_acf"]["C"], md2.results.bond_autocorrelation, atol=2e-6)


def test_rdf_total_and_interchain_match_mdanalysis_interrdf():
    rng = np.random.default_rng(23)
    C, L, box = 30, 10, 22.0
    x = np.mod(fjc(rng, 3 * C, L, 1.43).reshape(3, C, L, 3), box)
    u = make_universe(x, box=[box, box, box * 1.1, 90, 90, 90])
    pa = PolymerAnalysis(u.atoms, rdf_range=(0, 10.0), rdf_bins=40, msd=None).run()
    from MDAnalysis.analysis.rdf import InterRDF
    tot = InterRDF(u.atoms, u.atoms, nbins=40, range=(0, 10.0), exclusion_block=(1, 1)).run()
    inter = InterRDF(u.atoms, u.atoms, nbins=40, range=(0, 10.0), exclusion_block=(L, L)).run()
    r = pa.results.rdf
    assert np.allclose(r["r"], tot.results.bins)
    assert np.allclose(r["g_total"], tot.results.rdf, rtol=1e-6, atol=1e-9)
    assert np.allclose(r["g_inter"], inter.results.rdf, rtol=1e-6, atol=1e-9)
    # the pair-count decomposition is exact
    n = r["n_pairs"]
    assert np.allclose(n["inter"] * r["g_inter"] + n["intra"] * r["g_intra"], n["total"] * r["g_total"])


def test_msd_and_diffusion_match_mdanalysis_and_brownian_theory():
    rng = np.random.default_rng(24)
    nf, C, L, box, sigma, dt_ps = 60, 40, 8, 30.0, 0.4, 2.0
    x = _brownian_chains(rng, nf, C, L, box, sigma)
    u = make_universe(np.mod(x, box), box=[box] * 3, dt_ps=dt_ps)       # wrapped trajectory
    pa = PolymerAnalysis(u.atoms, rdf=False, msd="all", msd_fit_window=(0.0, 0.3)).run()
    m = pa.results.msd
    # reference: MDAnalysis EinsteinMSD on the unwrapped trajectory, chain centres and monomers
    from MDAnalysis.analysis.msd import EinsteinMSD
    uu = make_universe(x, dt_ps=dt_ps)
    md_mono = EinsteinMSD(uu.atoms, msd_type="xyz", fft=False).run()
    assert np.allclose(m["monomer"]["msd"], md_mono.results.timeseries, rtol=1e-4, atol=1e-6)
    com = x.mean(axis=2)
    uc = mda.Universe.empty(C, trajectory=True)
    from MDAnalysis.coordinates.memory import MemoryReader
    uc.load_new(com.astype(np.float32), format=MemoryReader, dt=dt_ps)
    md_com = EinsteinMSD(uc.atoms, msd_type="xyz", fft=False).run()
    assert np.allclose(m["com"]["msd"], md_com.results.timeseries, rtol=1e-4, atol=1e-6)
    assert np.allclose(m["time"], np.arange(nf) * dt_ps * 1000.0)
    # Brownian: MSD = 3 σ² n, D = σ² / (2 Δt)
    D_true = sigma ** 2 / (2 * dt_ps * 1000.0)
    D = m["com"]["D"]
    assert abs(D["value"] - D_true) < 4 * D["error"] + 0.05 * D_true
    assert m["com"]["D_cm2_s"]["value"] == pytest.approx(0.1 * D["value"])


def test_several_molecule_types_are_analysed_separately_and_identically():
    rng = np.random.default_rng(25)
    a = fjc(rng, 20, 12, 1.0)
    b = frc(rng, 15, 25, 1.5, 0.5)
    coords = np.concatenate([a.reshape(-1, 3), b.reshape(-1, 3)])[None]
    u = make_universe(coords, chain_lengths=[12] * 20 + [25] * 15, resnames=["AAA"] * 20 + ["BBB"] * 15)
    both = PolymerAnalysis(u.atoms, rdf=False, msd=None).run().results.groups
    only_b = PolymerAnalysis(u.select_atoms("resname BBB"), rdf=False, msd=None).run().results.groups
    assert set(both) == {"AAA:N12", "BBB:N25"}
    for k in ("rg2", "ree2", "lp_acf", "C_n"):
        assert both["BBB:N25"][k]["value"] == pytest.approx(only_b["BBB:N25"][k]["value"], rel=1e-10)
    assert both["AAA:N12"]["n_chains"] == 20
