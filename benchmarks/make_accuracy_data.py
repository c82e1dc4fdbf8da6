"""Data for benchmarks/accuracy.py: thymine (C5H6N2O2, 15 atoms, no cell) labelled by GFN2-xTB.

    python benchmarks/make_accuracy_data.py                 # ~6 min on one thread (tblite)
    python benchmarks/make_accuracy_data.py --train 500 --val 100 --test 400 --stride 20

Molecule: thymine, the second monomer of S22's adenine–thymine Watson–Crick complex (ASE's
``ase.data.s22``); no test, example or case study uses it (they use H2O, CH4, methanol,
ethanol; the speed benchmark uses the pyrazine dimer). Labels: GFN2-xTB (``tblite``)
energy (eV) and forces (eV/Å) of every frame.

MD: ASE Langevin at 500 K driven by GFN2-xTB itself, time step 0.5 fs, friction 0.01/fs,
Maxwell–Boltzmann start, 1 ps of equilibration, then one frame every ``--stride`` steps
(default 20 = 10 fs). Two independent trajectories (different seeds): the first gives the
training and validation frames (a random split), the second the test frames, so test
frames are not correlated with any training frame. Every frame's bonded topology (ASE
natural cutoffs × 1.2) must equal the start's: a broken or formed bond stops the script
with an error (none occurs at 500 K for thymine).

Writes (extxyz, energy in the frame's info, forces per atom):
``benchmarks/data/accuracy_thymine_{train,val,test}.xyz`` (~1.6 MB together).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PREFIX = "accuracy_thymine"


def thymine():
    """Thymine (C5H6N2O2) from S22's adenine–thymine Watson–Crick complex (atoms 15..29)."""
    from ase.data.s22 import create_s22_system
    dimer = create_s22_system("Adenine-thymine_Watson-Crick_complex")
    mol = dimer[15:]
    assert mol.get_chemical_formula() == "C5H6N2O2", mol.get_chemical_formula()
    mol.center()
    mol.pbc = False
    mol.cell = None
    return mol


def _bonds(atoms) -> set:
    from ase.neighborlist import natural_cutoffs, neighbor_list
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist()) if a < b}


def trajectory(n_frames: int, stride: int, seed: int, temperature: float, equil_steps: int,
               timestep_fs: float, friction_per_fs: float) -> list:
    """``n_frames`` labelled frames of Langevin MD (GFN2-xTB), one every ``stride`` steps."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from tblite.ase import TBLite

    atoms = thymine()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    ref_bonds = _bonds(atoms)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    md = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature,
                  friction=friction_per_fs / units.fs, fixcm=False, rng=np.random.default_rng(seed + 1))
    md.run(equil_steps)
    frames, t0 = [], time.time()
    for k in range(n_frames):
        md.run(stride)
        if _bonds(atoms) != ref_bonds:
            raise SystemExit(f"seed {seed}, frame {k}: the bonded topology changed (a bond broke or "
                             "formed); lower --temperature")
        a = atoms.copy()
        a.set_momenta(None)
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        if not (np.isfinite(e) and np.isfinite(f).all()):
            raise SystemExit(f"seed {seed}, frame {k}: non-finite GFN2-xTB labels")
        a.calc = SinglePointCalculator(a, energy=float(e), forces=np.array(f))
        frames.append(a)
        if (k + 1) % 100 == 0:
            print(f"  seed {seed}: {k + 1}/{n_frames} frames, {time.time() - t0:.0f} s, "
                  f"T = {atoms.get_temperature():.0f} K", flush=True)
    return frames


def main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=500, help="training frames")
    p.add_argument("--val", type=int, default=100, help="validation frames (same trajectory as train)")
    p.add_argument("--test", type=int, default=400, help="test frames (independent trajectory)")
    p.add_argument("--stride", type=int, default=20, help="MD steps between frames")
    p.add_argument("--temperature", type=float, default=500.0, help="K")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--friction", type=float, default=0.01, help="1/fs")
    p.add_argument("--equilibration", type=int, default=2000, help="MD steps before the first frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "data"), help="output folder")
    args = p.parse_args(argv)
    if min(args.train, args.val, args.test) < 1 or args.stride < 1:
        raise SystemExit("--train, --val, --test and --stride must be >= 1")
    from ase.io import write
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = dict(stride=args.stride, temperature=args.temperature, equil_steps=args.equilibration,
              timestep_fs=args.timestep, friction_per_fs=args.friction)
    first = trajectory(args.train + args.val, seed=args.seed, **md)
    order = np.random.default_rng(args.seed + 2).permutation(len(first))
    sets = {"train": [first[i] for i in sorted(order[:args.train])],
            "val": [first[i] for i in sorted(order[args.train:])],
            "test": trajectory(args.test, seed=args.seed + 1000, **md)}
    paths = []
    for name, frames in sets.items():
        path = out / f"{PREFIX}_{name}.xyz"
        tmp = path.with_suffix(".tmp.xyz")
        write(tmp, frames, format="extxyz")
        tmp.replace(path)
        print(f"wrote {path}: {len(frames)} frames", flush=True)
        paths.append(path)
    return paths


if __name__ == "__main__":
    main()
