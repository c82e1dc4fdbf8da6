"""Teacher sampling: build training sets by labelling configurations with a teacher.

A teacher is any ASE calculator or cgkit :class:`~cgkit.potential.Potential`. Configurations
come from Langevin MD at several temperatures (crystals and, above melting, liquids),
rattled copies and strained cells; every sampled frame carries the teacher's energy (eV),
forces (eV/Å) and stress (eV/Å³) and is written as extxyz, ready for ``cgkit train``.
A sparse set of high-fidelity labels is made with :func:`label` and mixed in with its own
weight in the training config (``data.train: [{path, weight}, ...]``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import InputError

__all__ = ["as_calculator", "label", "sample_configurations", "thermalize", "write_extxyz"]


def as_calculator(teacher):
    """An ASE calculator for ``teacher`` (ASE calculator, cgkit Potential or model file path)."""
    from .potential import Potential
    if isinstance(teacher, (str, bytes)) or hasattr(teacher, "__fspath__"):
        from .io_potential import load_potential
        teacher = load_potential(teacher)
    if isinstance(teacher, Potential):
        from .calculator import CgkitCalculator
        return CgkitCalculator(teacher)
    if hasattr(teacher, "get_potential_energy") or hasattr(teacher, "calculate"):
        return teacher
    raise InputError(f"a teacher must be an ASE calculator or a cgkit Potential, got {type(teacher).__name__}")


def label(frames: Iterable, teacher, *, stress: bool = True) -> list:
    """Copies of ``frames`` carrying the teacher's energy, forces (and stress if periodic)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    calc = as_calculator(teacher)
    out = []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        res = {"energy": a.get_potential_energy(), "forces": a.get_forces()}
        if stress and a.pbc.all():
            res["stress"] = a.get_stress()
        b = atoms.copy()
        b.calc = SinglePointCalculator(b, **res)
        out.append(b)
    return out


def thermalize(atoms, temperature_K: float, rng) -> None:
    """Maxwell–Boltzmann momenta at ``temperature_K`` (K) for ASE ``atoms`` from the numpy
    Generator ``rng``: ASE's ``thermalize_momenta`` (ASE ≥ 3.29), else the older
    ``MaxwellBoltzmannDistribution`` (the same draw, deprecated in 3.29)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
        return
    thermalize_momenta(atoms, temperature_K, rng=rng)


def sample_configurations(structures: Sequence, teacher, *, temperatures: Sequence[float] = (300.0,),
                          frames_per_temperature: int = 10, md_steps_between: int = 20,
                          equilibration_steps: int = 100, timestep_fs: float = 2.0,
                          friction_per_fs: float = 0.02, rattle: float = 0.0, n_rattled: int = 0,
                          strains: Sequence[float] = (), seed: int = 0, progress: bool = True) -> list:
    """Sample labelled configurations around ``structures`` with ``teacher``.

    For every structure and temperature T (K): Langevin MD (time step fs, friction 1/fs) for
    ``equilibration_steps``, then ``frames_per_temperature`` frames every ``md_steps_between``
    steps. Plus ``n_rattled`` copies with Gaussian displacements of std ``rattle`` (Å) and, for
    every isotropic/shear strain value ε in ``strains``, cells deformed by (1+ε) along a random
    axis pair. Liquids: give a temperature above the teacher's melting point.
    Returns ASE Atoms with SinglePointCalculator results (energy, forces, stress).
    """
    from ase import units
    from ase.md.langevin import Langevin
    from .progress import progress_bar

    if frames_per_temperature < 0 or md_steps_between < 1 or timestep_fs <= 0:
        raise InputError("need frames_per_temperature >= 0, md_steps_between >= 1 and timestep_fs > 0")
    if any(t < 0 for t in temperatures):
        raise InputError(f"temperatures must be >= 0 K, got {list(temperatures)}")
    rng = np.random.default_rng(seed)
    calc = as_calculator(teacher)
    frames = []
    jobs = [(s, T) for s in structures for T in temperatures]
    for k, (struct, T) in enumerate(progress_bar(jobs, desc="teacher MD", unit="run", disable=None if progress else True)):
        atoms = struct.copy()
        atoms.calc = calc
        thermalize(atoms, T, np.random.default_rng(seed + 7 * k))
        md = Langevin(atoms, timestep_fs * units.fs, temperature_K=T, friction=friction_per_fs / units.fs, fixcm=False,
                      rng=np.random.default_rng(seed + 7 * k + 1))
        md.run(equilibration_steps)
        for _ in range(frames_per_temperature):
            md.run(md_steps_between)
            a = atoms.copy()
            a.calc = None
            frames.append(a)
    for struct in structures:
        for _ in range(n_rattled):
            a = struct.copy()
            a.positions += rng.normal(scale=rattle, size=a.positions.shape)
            frames.append(a)
        for eps in strains:
            a = struct.copy()
            if not a.pbc.all():
                continue
            i, j = rng.choice(3, size=2, replace=False)
            D = np.eye(3)
            D[i, i] += eps
            D[i, j] += 0.5 * eps
            D[j, i] += 0.5 * eps
            a.set_cell(a.cell.array @ D, scale_atoms=True)
            a.positions += rng.normal(scale=max(rattle, 0.01), size=a.positions.shape)
            frames.append(a)
    return label(frames, calc)


def write_extxyz(frames, path) -> None:
    """Write labelled frames (energy, forces, stress) as extended XYZ."""
    from ase.io import write
    write(str(path), list(frames), format="extxyz")
