"""Analytic-Hessian phonons vs phonopy finite displacements (same potential, same run).

Prints, for every structure, the wall time of the force-constant step of both routes, their
ratio (FD / analytic; > 1 means the analytic route is faster), the number of force calls of
the finite-displacement route (0.001 Å displacements) and the largest band-frequency
difference (THz).

High-symmetry: diamond Si (SW), 2×2×2 … 5×5×5 conventional supercells — phonopy needs a
single displaced supercell there — and the orthorhombic polyethylene crystal (TraPPE-UA,
infinite united-atom chains, relaxed cell and positions; phonopy supercells of the 4-site
unit cell, symmetry-reduced displacements). Low-symmetry: rattled Si cells and rattled PE
crystal supercells (no symmetry: 6N force calls, phonopy supercell 1×1×1 of the explicit
cell). Usage: ``python benchmarks/phonons.py [--big] [--only si|pe]`` (``--big`` adds
512-atom rattled Si, the 5×5×5 Si supercell, a 768-site PE supercell and 192-site rattled PE).

The PE potential is built for the site order of each phonopy supercell
(:func:`cgkit.potentials.polyethylene.pe_crystal_potential`: bonds from distances, all sites
CH2), since a TraPPE-UA potential holds the topology of one particular system and phonopy's
supercells keep element symbols only.
"""
from __future__ import annotations

import os

# one BLAS thread as well: phonopy's force-constant fit (numpy) is part of the FD timing
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time
import warnings

import numpy as np
import torch
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.potentials.polyethylene import (AMU_PER_A3_TO_G_CM3, build_pe_crystal,
                                           pe_crystal_potential, pe_crystal_unit_cell)
from cgkit.potentials.stillinger_weber import StillingerWeber
from cgkit.properties.phonons import Phonons, ase_to_phonopy, phonopy_to_ase


def run(atoms, pot, supercell, primitive, label):
    # both routes on the same supercell (a timing/consistency benchmark; some supercells are
    # narrower than 2 × the interaction reach, which Phonons refuses unless allowed explicitly)
    kw = dict(supercell=supercell, primitive_matrix=primitive, mesh=(4, 4, 4), band_npoints=11,
              temperatures=(0, 300, 300), progress=False, allow_small_supercell=True)
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
    return an, fd


def where_they_differ(an, fd):
    """(frequency THz of the band with the largest |Δν|, max |ΔΦ| eV/Å²): a small force-constant
    difference gives a large |Δν| on a near-zero mode (ν ∝ √λ)."""
    fa = np.concatenate([np.asarray(x) for x in an.results.band["frequencies"]])
    ff = np.concatenate([np.asarray(x) for x in fd.results.band["frequencies"]])
    k = np.unravel_index(np.argmax(np.abs(fa - ff)), fa.shape)
    dfc = np.abs(np.asarray(an.phonopy.force_constants) - np.asarray(fd.phonopy.force_constants)).max()
    return float(fa[k]), float(dfc)


def pe_potential(unit, supercell):
    """TraPPE-UA for the site order of phonopy's supercell of ``unit`` (float64)."""
    from phonopy import Phonopy
    ph = Phonopy(ase_to_phonopy(unit), supercell_matrix=np.diag(supercell), primitive_matrix="P",
                 log_level=0)
    return pe_crystal_potential(phonopy_to_ase(ph.supercell)).to(torch.float64)


def silicon(big):
    pot = StillingerWeber().to(torch.float64)
    # warm-up: torch's first double-backward pays a one-off set-up cost that is not per-run work
    warm = bulk("Si", "diamond", 5.43095)
    pot.hessian(pot.graph(warm))
    CgkitCalculator(pot).get_forces(warm)
    conv = bulk("Si", "diamond", 5.43095, cubic=True)
    for n in ([2, 3, 4, 5] if big else [2, 3, 4]):
        run(conv, pot, (n, n, n), "auto", f"diamond Si conv. {n}x{n}x{n} (high sym)")
    rng = np.random.default_rng(0)
    for reps in ([2, 3, 4] if big else [2, 3]):
        a = bulk("Si", "diamond", 5.43095, cubic=True).repeat(reps)
        a.rattle(0.05, rng=rng)
        run(a, pot, (1, 1, 1), None, f"rattled Si {len(a)} atoms (no sym)")


def polyethylene(big):
    t0 = time.perf_counter()
    unit = pe_crystal_unit_cell(relax=True, relax_cell=True, fmax=1e-5)
    t_relax = time.perf_counter() - t0
    warm = pe_potential(unit, (1, 1, 4))
    wa, _ = build_pe_crystal((1, 1, 4), unit_cell=unit)
    warm.hessian(warm.graph(wa), rows=[0, 1, 2])
    CgkitCalculator(warm).get_forces(wa)
    notes = []
    for sc in ([(2, 3, 4), (3, 5, 6), (4, 6, 8)] if big else [(2, 3, 4), (3, 5, 6)]):
        label = f"PE crystal TraPPE {sc[0]}x{sc[1]}x{sc[2]} (high sym)"
        an, fd = run(unit, pe_potential(unit, sc), sc, "P", label)
        notes.append((label, an.results.imaginary["min_frequency"], an.results.asr["max_change"],
                      *where_they_differ(an, fd)))
    rng = np.random.default_rng(1)
    for rep in ([(2, 2, 4), (2, 3, 4), (3, 4, 4)] if big else [(2, 2, 4), (2, 3, 4)]):
        a, _ = build_pe_crystal(rep, unit_cell=unit)
        a.rattle(0.02, rng=rng)
        label = f"rattled PE crystal {len(a)} sites (no sym)"
        an, fd = run(a, pe_potential(a, (1, 1, 1)), (1, 1, 1), "P", label)
        notes.append((label, an.results.imaginary["min_frequency"], an.results.asr["max_change"],
                      *where_they_differ(an, fd)))
    a, b, c = unit.cell.lengths()
    rho = unit.get_masses().sum() / unit.get_volume() * AMU_PER_A3_TO_G_CM3
    print(f"PE crystal relaxed with TraPPE-UA (cell + positions, {t_relax:.1f} s): a = {a:.4f}, "
          f"b = {b:.4f}, c = {c:.4f} Å, {rho:.4f} g/cm³ (experiment, room T: 7.42, 4.95, 2.55 Å, "
          f"0.995 g/cm³)")
    for label, fmin, asr, f_at, dfc in notes:
        print(f"  {label}: lowest frequency {fmin:.2e} THz (band path, mesh, Γ; analytic), ASR "
              f"correction {asr:.1e} eV/Å²; largest |Δν| on the band at {f_at:.3f} THz, "
              f"max |ΔΦ| analytic - FD = {dfc:.1e} eV/Å²")


def main():
    big = "--big" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    torch.set_num_threads(1)  # both routes single-threaded: a like-for-like comparison
    print(f"{'structure':<34s} {'atoms':>6s} {'FDcalls':>7s} {'analytic_s':>10s} {'phonopyFD_s':>10s} "
          f"{'FD/anal':>8s} {'max|Δν|THz':>10s}")
    if only in (None, "si"):
        silicon(big)
    if only in (None, "pe"):
        polyethylene(big)


if __name__ == "__main__":
    main()
