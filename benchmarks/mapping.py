"""Mapping throughput: cgkit vs MDAnalysis's own centre-of-mass per residue, same run.

System: ~20 000-atom SPC/E-like water (6 667 residues OW HW1 HW2, one bead per molecule), or
with ``--hexane`` the real VOTCA all-atom hexane box (20 000 atoms, 3 beads per molecule; the
baseline then loops MDAnalysis ``AtomGroup.center_of_mass`` over the bead atom groups).
Frames are generated on the fly (positions jittered, random forces), so memory is constant;
``--frames`` sets their number (the issue's figure is 10 000 frames; default 200 for a quick
run). Prints frames/s and the ratio to the baseline, plus the peak traced memory of the
streaming loop at two frame counts (it must not grow with the number of frames).

    python benchmarks/mapping.py --frames 200
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def water_universe(n_mol=6667, seed=0):
    import MDAnalysis as mda
    rng = np.random.default_rng(seed)
    n = 3 * n_mol
    u = mda.Universe.empty(n, n_residues=n_mol, atom_resindex=np.repeat(np.arange(n_mol), 3),
                           trajectory=True)
    u.add_TopologyAttr("names", ["OW", "HW1", "HW2"] * n_mol)
    u.add_TopologyAttr("resnames", ["SOL"] * n_mol)
    u.add_TopologyAttr("masses", [15.9994, 1.008, 1.008] * n_mol)
    L = (n_mol * 30.0) ** (1 / 3)
    c = rng.uniform(0, L, (n_mol, 3))
    x = np.repeat(c, 3, axis=0) + rng.normal(0, 0.6, (n, 3))
    u.atoms.positions = x
    u.dimensions = [L, L, L, 90, 90, 90]
    return u


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--hexane", action="store_true", help="use VOTCA's real hexane conf.gro")
    args = ap.parse_args(argv)
    import MDAnalysis as mda

    from cgkit.mapping import Mapping
    from cgkit.trajectory import CGTrajectoryWriter, Frame

    if args.hexane:
        u = mda.Universe("/usr/share/votca/csg-tutorials/hexane/atomistic/conf.gro")
        m = Mapping.from_yaml(ROOT / "mappings" / "hexane_3bead.yaml", u)
        groups = [u.atoms[m.M[b].indices] for b in range(m.n_beads)]

        def baseline():
            return np.array([g.center_of_mass() for g in groups])
        label = "MDAnalysis AtomGroup.center_of_mass loop over beads"
    else:
        u = water_universe()
        m = Mapping.from_yaml(ROOT / "mappings" / "spce_water_1bead.yaml", u)

        def baseline():
            return u.atoms.center_of_mass(compound="residues")
        label = "MDAnalysis atoms.center_of_mass(compound='residues')"
    x0 = u.atoms.positions.astype(np.float64)
    cell = np.diag(u.dimensions[:3].astype(float))
    rng = np.random.default_rng(1)
    jit = [rng.normal(0, 0.01, x0.shape) for _ in range(4)]
    forces = rng.normal(size=x0.shape)
    print(f"system: {m.n_atoms} atoms -> {m.n_beads} beads, {args.frames} frames")
    # agreement check (no PBC split: baseline does not unwrap)
    np.testing.assert_allclose(m.map_positions(x0), baseline(), atol=2e-3)

    t = time.perf_counter()
    for k in range(args.frames):
        u.atoms.positions = x0 + jit[k % 4]
        baseline()
    t_base = time.perf_counter() - t

    t = time.perf_counter()
    for k in range(args.frames):
        m.map_positions(x0 + jit[k % 4])
    t_nopbc = time.perf_counter() - t

    t = time.perf_counter()
    for k in range(args.frames):
        m.map_positions(x0 + jit[k % 4], cell)
        m.map_forces(forces)
    t_full = time.perf_counter() - t
    fps = lambda dt: args.frames / dt  # noqa: E731
    print(f"baseline ({label}): {fps(t_base):9.1f} frames/s")
    print(f"cgkit map_positions (no PBC):               {fps(t_nopbc):9.1f} frames/s  "
          f"x{t_base / t_nopbc:.1f} vs baseline")
    print(f"cgkit map_positions (PBC unwrap) + forces:  {fps(t_full):9.1f} frames/s  "
          f"x{t_base / t_full:.1f} vs baseline")

    # streaming: write CG TRR; peak memory at two frame counts
    import tempfile

    def frames(n):
        for k in range(n):
            yield Frame(positions=x0 + jit[k % 4], cell=cell, pbc=np.ones(3, bool), forces=forces,
                        time=float(k))
    with tempfile.TemporaryDirectory() as tmp:
        peaks = []
        for n in (max(args.frames // 4, 10), args.frames):
            tracemalloc.start()
            t = time.perf_counter()
            with CGTrajectoryWriter(Path(tmp) / f"cg{n}.trr", m) as w:
                for cg in m.iter_map(frames(n)):
                    w.write(cg)
            dt = time.perf_counter() - t
            peaks.append((n, tracemalloc.get_traced_memory()[1] / 2**20, n / dt))
            tracemalloc.stop()
    for n, peak, f in peaks:
        print(f"stream map+write TRR, {n:6d} frames: peak traced memory {peak:7.1f} MiB, {f:7.1f} frames/s")
    print(f"memory ratio (more frames / fewer frames): {peaks[1][1] / peaks[0][1]:.2f}")


if __name__ == "__main__":
    main()
