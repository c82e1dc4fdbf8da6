"""ENNP speed on CPU, single thread: ms per call and atoms·calls/s, plus Hessian timings.

    python benchmarks/ennp_speed.py [--quick] [--hessian-216]

Systems: Si diamond supercells of 64, 216, 512 atoms and 500-atom fcc Cu; models: 'small'
(32x0e+32x1o+32x2e, 2 layers, r_cut 5 Å) and 'medium' (64 channels, 3 layers, body order
products), float32. Reference in the same run: ASE's EMT calculator on the same Cu cell (a
classical potential, C code paths in numpy) — printed as the ratio ENNP time / EMT time.
Comparisons with MACE and NequIP in their own virtual environments are not implemented yet.
"""
from __future__ import annotations

import argparse
import time

import torch
from ase.build import bulk


def _timeit(fn, repeat: int) -> float:
    fn()  # warm-up (code generation, allocator)
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    t.sort()
    return t[len(t) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip 'medium' on 512 atoms")
    ap.add_argument("--hessian-216", action="store_true", help="also time the 216-atom Hessian")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from cgkit.nn import ENNP

    systems = {"Si64": bulk("Si", "diamond", 5.43, cubic=True) * (2, 2, 2),
               "Si216": bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3),
               "Si512": bulk("Si", "diamond", 5.43, cubic=True) * (4, 4, 4),
               "Cu500": bulk("Cu", "fcc", 3.61, cubic=True) * (5, 5, 5)}
    for a in systems.values():
        a.rattle(0.03, seed=0)
    repeat = 3 if args.quick else 7

    from ase.calculators.emt import EMT
    cu = systems["Cu500"].copy()

    def emt_call():
        cu.calc = EMT()
        cu.get_forces()
        cu.get_stress()
    t_emt = _timeit(emt_call, repeat)
    print(f"reference: ASE EMT Cu500 energy+forces+stress {1e3 * t_emt:.1f} ms/call")
    print(f"{'model':8s} {'system':7s} {'edges':>7s} {'E+F ms':>9s} {'E+F+S ms':>9s} "
          f"{'atoms·calls/s':>14s} {'vs EMT':>7s}")
    for preset in ("small", "medium"):
        for name, atoms in systems.items():
            if args.quick and preset == "medium" and name == "Si512":
                continue
            sp = sorted(set(atoms.get_chemical_symbols()))
            model = ENNP.from_preset(preset, sp, 5.0, dtype="float32")
            g = model.graph(atoms)
            t_ef = _timeit(lambda: model.compute(g, forces=True), repeat)
            t_efs = _timeit(lambda: model.compute(g, forces=True, stress=True), repeat)
            ratio = f"{t_efs / t_emt:7.1f}" if name == "Cu500" else ""
            print(f"{preset:8s} {name:7s} {g.n_edges:7d} {1e3 * t_ef:9.1f} {1e3 * t_efs:9.1f} "
                  f"{len(atoms) / t_ef:14.0f} {ratio}")
    for name in ("Si64",) + (("Si216",) if args.hessian_216 else ()):
        model = ENNP.from_preset("small", ["Si"], 5.0, dtype="float64")
        g = model.graph(systems[name])
        t0 = time.perf_counter()
        H = model.hessian(g)
        print(f"Hessian small float64 {name}: {time.perf_counter() - t0:.1f} s ({H.shape[0]}x{H.shape[1]})")


if __name__ == "__main__":
    main()
