"""Analytic-Hessian phonons vs phonopy finite displacements (same potential, same run).

Prints, for every structure, the wall time of the force-constant step of both routes, their
ratio (FD / analytic; > 1 means the analytic route is faster), the number of force calls of
the finite-displacement route and the largest band-frequency difference (THz).

High-symmetry: diamond Si (SW), 2×2×2 … 5×5×5 conventional supercells — phonopy needs a
single displaced supercell there. Low-symmetry: rattled Si cells (no symmetry: 6N force
calls). Usage: ``python benchmarks/phonons.py [--big]`` (``--big`` adds 512-atom rattled Si
and the 5×5×5 supercell).
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import torch
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.potentials.stillinger_weber import StillingerWeber
from properties.phonons import Phonons


def run(atoms, pot, supercell, primitive, label):
    kw = dict(supercell=supercell, primitive_matrix=primitive, mesh=(4, 4, 4), band_npoints=11,
              temperatures=(0, 300, 300), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Phonons(atoms, pot, **kw).run()
        fd = Phonons(atoms, CgkitCalculator(pot, dtype=torch.float64), method="finite_displacement",
                     displacement=0.001, **kw).run()
    ta = an.results.timings["force_constants"]
    tf = fd.results.timings["force_constants"]
    diff = max(np.abs(np.asarray(a) - np.asarray(b)).max()
               for a, b in zip(an.results.band["frequencies"], fd.results.band["frequencies"]))
    print(f"{label:<34s} {an.results.n_atoms_supercell:>6d} {fd.results.n_force_calls:>7d} "
          f"{ta:>10.3f} {tf:>10.3f} {tf / ta:>8.2f} {diff:>10.2e}", flush=True)


def main():
    big = "--big" in sys.argv
    torch.set_num_threads(1)  # both routes single-threaded: a like-for-like comparison
    pot = StillingerWeber().to(torch.float64)
    # warm-up: torch's first double-backward pays a one-off set-up cost that is not per-run work
    warm = bulk("Si", "diamond", 5.43095)
    pot.hessian(pot.graph(warm))
    CgkitCalculator(pot).get_forces(warm)
    print(f"{'structure':<34s} {'atoms':>6s} {'FDcalls':>7s} {'analytic_s':>10s} {'phonopyFD_s':>10s} "
          f"{'FD/anal':>8s} {'max|Δν|THz':>10s}")
    conv = bulk("Si", "diamond", 5.43095, cubic=True)
    for n in ([2, 3, 4, 5] if big else [2, 3, 4]):
        run(conv, pot, (n, n, n), "auto", f"diamond Si conv. {n}x{n}x{n} (high sym)")
    rng = np.random.default_rng(0)
    for reps in ([2, 3, 4] if big else [2, 3]):
        a = bulk("Si", "diamond", 5.43095, cubic=True).repeat(reps)
        a.rattle(0.05, rng=rng)
        run(a, pot, (1, 1, 1), None, f"rattled Si {len(a)} atoms (no sym)")
    print("polymer crystal: not benchmarked (no polymer-crystal potential in cgkit yet)")


if __name__ == "__main__":
    main()
