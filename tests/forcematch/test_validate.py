"""Structural validation: RDF against MDAnalysis, distributions against NumPy, JS limits."""
import numpy as np

from cgkit.forcematch.validate import StructuralValidation, bonded_samples, rdf
from cgkit.topology import Topology


def test_rdf_matches_mdanalysis_interrdf():
    import MDAnalysis as mda
    from MDAnalysis.analysis.rdf import InterRDF
    rng = np.random.default_rng(0)
    n, L = 60, 12.0
    frames = rng.uniform(0, L, size=(5, n, 3))
    names = np.array(["A"] * 30 + ["B"] * 30)
    g, edges, rho = rdf(frames, [L, L, L], names, None, r_max=5.0, n_bins=25)
    u = mda.Universe.empty(n, trajectory=True)
    u.add_TopologyAttr("types", names)
    u.load_new(frames.astype(np.float32), order="fac")
    for ts in u.trajectory:
        ts.dimensions = [L, L, L, 90, 90, 90]
    a, b = u.select_atoms("type A"), u.select_atoms("type B")
    ref = InterRDF(a, b, nbins=25, range=(0.0, 5.0)).run()
    assert np.allclose(g[("A", "B")], ref.results.rdf, rtol=1e-4, atol=1e-6)
    # A-A: MDAnalysis with the self-pair excluded normalises by N_A(N_A-1), as cgkit does
    refaa = InterRDF(a, a, nbins=25, range=(0.0, 5.0), exclusion_block=(1, 1)).run()
    assert np.allclose(g[("A", "A")], refaa.results.rdf, rtol=1e-4, atol=1e-6)
    assert np.isclose(rho, n / L ** 3)


def test_bonded_distributions_and_js_divergence_limits():
    rng = np.random.default_rng(1)
    top = Topology(n_particles=3, bonds=[(0, 1), (1, 2)], angles=[(0, 1, 2)])
    base = np.array([[0, 0, 0], [1.5, 0, 0], [1.5, 1.5, 0]], float)
    P = base + rng.normal(scale=0.05, size=(200, 3, 3))
    s = bonded_samples("bond", P, None, np.array(["A", "B", "A"]), top)
    # every bond of a type in every frame (frame by frame, bonds in topology order): both A-B
    # bonds of the 200 frames, 400 samples (Å)
    b01 = np.linalg.norm(P[:, 1] - P[:, 0], axis=1)
    b12 = np.linalg.norm(P[:, 2] - P[:, 1], axis=1)
    assert set(s) == {("A", "B")} and s[("A", "B")].shape == (400,)
    assert np.allclose(s[("A", "B")], np.stack([b01, b12], axis=1).reshape(-1), rtol=1e-12, atol=1e-12)
    a = bonded_samples("angle", P, None, np.array(["A", "B", "A"]), top)[("A", "B", "A")]
    u, v = P[:, 0] - P[:, 1], P[:, 2] - P[:, 1]
    ref_deg = np.degrees(np.arccos((u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)))
    assert np.allclose(a, ref_deg, atol=1e-9)  # degrees
    same = StructuralValidation(P, P, ["A", "B"], [0, 1, 0], top).run()
    assert all(v["js"] < 1e-12 for v in same.results["distributions"].values())
    far = P.copy()
    far[:, 2] += [5.0, 0, 0]  # completely different bond and angle
    diff = StructuralValidation(P, far, ["A", "B"], [0, 1, 0], top, bins=50).run()
    assert diff.results["distributions"]["angle A-B-A"]["js"] > 0.99
    assert set(diff.summary()["distributions"]) == {"bond A-B", "angle A-B-A"}


def test_validation_plots_and_json(tmp_path):
    rng = np.random.default_rng(2)
    L = 10.0
    P = rng.uniform(0, L, size=(3, 20, 3))
    top = Topology.from_bonds(20, [(2 * k, 2 * k + 1) for k in range(10)], exclude=1)
    v = StructuralValidation(P, P[::-1], ["A"], np.zeros(20, int), top, reference_boxes=[L] * 3,
                             test_boxes=[L] * 3, rdf_max=4.0, bins=20).run()
    paths = v.plot(tmp_path)
    assert [p.name for p in paths] == ["distributions.png", "rdf.png"] and all(p.stat().st_size > 1000 for p in paths)
    js = v.to_json(tmp_path / "v.json")
    assert '"rdf"' in js and v.summary()["rdf"]["pair A-A"]["js_divergence_r2g"] < 1e-12
