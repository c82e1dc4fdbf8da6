"""Neighbor-list speed: cgkit (vesin cell lists) vs ase.neighborlist.neighbor_list, same run.

Systems: liquid-density LJ argon (0.0213 atoms/Å³, cutoff 2.5σ = 8.51 Å) and diamond Si
(cutoff 5 Å) at ~1e3, 1e4 and 1e5 atoms. Both single-threaded. Prints time per call, the
ratio ASE/cgkit, cgkit's time per atom (flat = linear scaling) and checks the pair counts agree.

Usage: python benchmarks/neighbors.py [--max-atoms 100000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_nl

from cgkit.neighbors import neighbor_list


def argon(n: int, rng) -> Atoms:
    m = int(round(n ** (1 / 3)))
    L = (m ** 3 / 0.0213) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3) / m
    frac = (grid + rng.normal(0, 0.05, grid.shape)) % 1.0
    return Atoms(f"Ar{len(frac)}", scaled_positions=frac, cell=[L, L, L], pbc=True)


def silicon(n: int) -> Atoms:
    rep = max(1, int(round((n / 8) ** (1 / 3))))
    return bulk("Si", "diamond", a=5.431, cubic=True).repeat(rep)


def best_time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-atoms", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'system':<10}{'atoms':>9}{'pairs':>11}{'cgkit ms':>11}{'ASE ms':>11}{'ASE/cgkit':>11}{'cgkit µs/atom':>15}")
    for name, make, rc in (("LJ Ar", lambda n: argon(n, rng), 8.51), ("Si", silicon, 5.0)):
        for n in (1_000, 10_000, 100_000):
            if n > args.max_atoms:
                continue
            atoms = make(n)
            pos, cell = atoms.positions, atoms.cell.array
            t_c = best_time(lambda: neighbor_list(pos, cell, True, rc), args.repeats)
            reps_ase = args.repeats if len(atoms) < 50_000 else 1
            t_a = best_time(lambda: ase_nl("ij", atoms, rc), reps_ase)
            n_c = neighbor_list(pos, cell, True, rc)[0].shape[1]
            n_a = len(ase_nl("i", atoms, rc))
            assert n_c == n_a, (n_c, n_a)
            print(f"{name:<10}{len(atoms):>9}{n_c:>11}{t_c * 1e3:>11.2f}{t_a * 1e3:>11.1f}"
                  f"{t_a / t_c:>11.1f}{t_c / len(atoms) * 1e6:>15.3f}")


if __name__ == "__main__":
    main()
