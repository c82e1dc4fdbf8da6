"""Benchmark: cgkit PolymerAnalysis vs the equivalent MDAnalysis analyses, same run.

System: 200 chains × 100 beads (20 000 atoms), periodic box, chains wrapped atom by atom,
N_FRAMES frames in memory. Prints frames/s for each route and the ratio cgkit / MDAnalysis.
MDAnalysis route (what a user would otherwise run): per frame unwrap(compound='fragments') +
radius_of_gyration per fragment, PersistenceLength (200 ordered chains), InterRDF (same range),
EinsteinMSD (FFT) on the monomers. cgkit computes all of these and more in one pass.

Run:  python benchmarks/polymer.py [n_frames]
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, ".")


def build(n_frames, C=200, L=100, b=1.5, box=62.0, seed=0):
    from tests.properties.test_polymer_generators import frc, make_universe
    rng = np.random.default_rng(seed)
    x0 = frc(rng, C, L, b, 0.5) + rng.uniform(0, box, (C, 1, 3))
    steps = rng.normal(0, 0.3, (n_frames, C, L, 3))
    steps[0] = 0
    x = x0[None] + np.cumsum(steps, axis=0) * 0.2
    return make_universe(np.mod(x, box), box=[box] * 3, dt_ps=1.0, masses=np.full(C * L, 14.027))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    nf = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    u = build(nf)
    C, L = 200, 100
    print(f"system: {u.atoms.n_atoms} atoms, {C} chains x {L} beads, {nf} frames, box 62 Å")
    from cgkit.properties.polymer import PolymerAnalysis

    t_ours_norDF, _ = timed(lambda: PolymerAnalysis(u.atoms, rdf=False, msd="all").run())
    t_ours_all, pa = timed(lambda: PolymerAnalysis(u.atoms, rdf_range=(0, 10.0), msd="all").run())

    from MDAnalysis.analysis.msd import EinsteinMSD
    from MDAnalysis.analysis.polymer import PersistenceLength
    from MDAnalysis.analysis.rdf import InterRDF
    frags = u.atoms.fragments

    def md_rg():
        out = []
        for _ in u.trajectory:
            u.atoms.unwrap(compound="fragments")
            out.append([f.radius_of_gyration() for f in frags])
        return np.array(out)
    t_rg, rg = timed(md_rg)
    chains = [u.atoms[i * L:(i + 1) * L] for i in range(C)]
    t_lp, _ = timed(lambda: PersistenceLength(chains).run())   # timing only (it does not unwrap)
    t_rdf, _ = timed(lambda: InterRDF(u.atoms, u.atoms, nbins=75, range=(0, 10.0), exclusion_block=(1, 1)).run())
    try:
        import tidynamics  # noqa: F401
        fft = True
    except ImportError:
        fft = False
    t_msd, _ = timed(lambda: EinsteinMSD(u.atoms, msd_type="xyz", fft=fft).run())
    t_md_norDF = t_rg + t_lp + t_msd
    t_md_all = t_md_norDF + t_rdf

    (g,) = pa.results.groups.values()
    rg_ours = np.sqrt(g["per_chain"]["rg2"])
    print(f"check: max |R_g(cgkit) - R_g(MDAnalysis)| (time-averaged per chain) = "
          f"{np.abs(rg_ours - np.sqrt((rg ** 2).mean(0))).max():.2e} Å")
    print(f"{'route':58s} {'time/s':>8s} {'frames/s':>9s}")
    rows = [("cgkit PolymerAnalysis, all quantities except RDF", t_ours_norDF),
            ("cgkit PolymerAnalysis, all quantities incl. RDF (10 Å)", t_ours_all),
            ("MDAnalysis unwrap + R_g per fragment", t_rg),
            ("MDAnalysis PersistenceLength (200 chains)", t_lp),
            (f"MDAnalysis EinsteinMSD (fft={fft})", t_msd),
            ("MDAnalysis InterRDF (10 Å)", t_rdf),
            ("MDAnalysis sum: R_g + l_p + MSD", t_md_norDF),
            ("MDAnalysis sum: R_g + l_p + MSD + RDF", t_md_all)]
    for name, t in rows:
        print(f"{name:58s} {t:8.2f} {nf / t:9.2f}")
    print(f"speed ratio cgkit / MDAnalysis (without RDF): {t_md_norDF / t_ours_norDF:.1f}x faster")
    print(f"speed ratio cgkit / MDAnalysis (with RDF):    {t_md_all / t_ours_all:.1f}x faster")


if __name__ == "__main__":
    main()
