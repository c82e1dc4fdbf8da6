"""Periodic DFT labels of small silicon cells with PySCF (the sparse high-fidelity source).

Settings (``SETTINGS``; every label in ``data/dft_labels.extxyz`` was computed with them):
Kohn–Sham DFT with k-points (``pyscf.pbc.dft.KRKS``), LDA (Slater + VWN), Goedecker–
Teter–Hutter pseudopotentials (``gth-pade``) with the matching minimal GTH basis
(``gth-szv``: one s and one p shell per atom), plane-wave (FFTDF) density with a kinetic
energy cutoff of 15 Hartree, a Γ-centred 2×2×2 Monkhorst–Pack mesh on the 8-atom cubic cell
(equivalent to 64 atoms at Γ), no smearing, SCF converged to 1e-9 Hartree. Forces from
``pyscf.pbc.grad.KRKS`` (analytic nuclear gradients), stress from its ``get_stress``
(analytic strain derivative). This is a deliberately cheap level of theory (minimal basis):
it runs in about half a minute of CPU per 8-atom label, and it is a *different* model of
silicon from Stillinger–Weber — the point of the case study is how a few such labels move a
distilled potential, not the accuracy of LDA/SZV itself.

Units on output: energies eV, forces eV/Å, stress eV/Å³ (ASE sign convention, checked
against a finite difference of the energy by :func:`finite_difference_check`).

    python case_studies/silicon/dft.py      # regenerate data/ (≈ 30 min on a busy 2-core machine)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # PySCF's OpenMP: one thread (before numpy/pyscf load)

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cgkit.errors import NotSupportedError  # noqa: E402

SETTINGS = {"program": "PySCF", "method": "pyscf.pbc.dft.KRKS (k-point restricted Kohn-Sham)",
            "xc": "lda,vwn", "pseudopotential": "gth-pade", "basis": "gth-szv",
            "ke_cutoff_hartree": 15.0, "kmesh": [2, 2, 2], "conv_tol_hartree": 1e-9,
            "density": "FFTDF (plane waves)", "smearing": None,
            "forces": "pyscf.pbc.grad.KRKS analytic nuclear gradients",
            "stress": "pyscf.pbc.grad.KRKS.get_stress (analytic)"}
A_REF = 5.43095    # Å, SW's lattice constant: the DFT cells are strained around it
N_TRAIN, N_TEST = 5, 3
EOS_A = (5.30, 5.38, 5.46, 5.54, 5.62)   # Å, cubic lattice constants of the DFT E(V) scan


def require_pyscf():
    """The pyscf module, or an error telling the user to install it."""
    try:
        import pyscf
    except ImportError as exc:
        raise NotSupportedError("the DFT labels need PySCF: `pip install pyscf` (or run without "
                                "--regenerate-dft to use the committed labels in "
                                "case_studies/silicon/data/)") from exc
    return pyscf


def _cell(atoms, settings=SETTINGS):
    from pyscf.pbc import gto
    from pyscf.pbc.tools.pyscf_ase import ase_atoms_to_pyscf
    cell = gto.Cell()
    cell.atom = ase_atoms_to_pyscf(atoms)
    cell.a = np.asarray(atoms.cell.array)
    cell.unit = "A"
    cell.basis = settings["basis"]
    cell.pseudo = settings["pseudopotential"]
    cell.ke_cutoff = settings["ke_cutoff_hartree"]
    cell.verbose = 0
    cell.build()
    return cell


def dft_calculation(atoms, *, forces: bool = True, stress: bool = True, settings=SETTINGS) -> dict:
    """Energy (eV), forces (n, 3) eV/Å and stress (3, 3) eV/Å³ of a periodic Si cell, with
    the wall times (s) of the SCF and the derivatives."""
    require_pyscf()
    from ase.units import Bohr, Hartree
    from pyscf.pbc import dft
    cell = _cell(atoms, settings)
    kpts = cell.make_kpts(settings["kmesh"])
    mf = dft.KRKS(cell, kpts)
    mf.xc = settings["xc"]
    mf.conv_tol = settings["conv_tol_hartree"]
    t0 = time.perf_counter()
    e = mf.kernel()
    if not mf.converged:
        raise RuntimeError("PySCF SCF did not converge for a silicon label")
    out = {"energy": float(e) * Hartree, "mesh": [int(m) for m in cell.mesh],
           "time_scf_s": time.perf_counter() - t0}
    if forces or stress:
        g = mf.nuc_grad_method()
        if forces:
            t1 = time.perf_counter()
            out["forces"] = -np.asarray(g.kernel()) * Hartree / Bohr
            out["time_forces_s"] = time.perf_counter() - t1
        if stress:
            t1 = time.perf_counter()
            out["stress"] = np.asarray(g.get_stress()) * Hartree / Bohr ** 3
            out["time_stress_s"] = time.perf_counter() - t1
    return out


def configurations(seed: int = 7):
    """The 8-atom cubic cells to label: N_TRAIN + N_TEST random homogeneous strains (every
    Voigt component uniform in ±1.5 %) with Gaussian displacements of std 0.03–0.10 Å
    (thermal amplitudes of ≈ 300–2000 K). Returns (frames, kinds) — kinds 'train'/'test'."""
    from ase.build import bulk
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    sigmas = np.linspace(0.03, 0.10, n)[rng.permutation(n)]
    frames, kinds = [], []
    for k in range(n):
        a = bulk("Si", "diamond", A_REF, cubic=True)
        e = rng.uniform(-0.015, 0.015, size=6)
        E = np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]])
        a.set_cell(a.cell.array @ (np.eye(3) + E), scale_atoms=True)
        a.positions += rng.normal(scale=sigmas[k], size=a.positions.shape)
        a.wrap()
        a.info["rattle_A"] = float(sigmas[k])
        frames.append(a)
        kinds.append("train" if k < N_TRAIN else "test")
    return frames, kinds


def finite_difference_check(atoms, analytic: dict, h: float = 0.01, eps: float = 0.005) -> dict:
    """Central differences of the DFT energy against the analytic forces and stress of one
    configuration: two force components (atom 0 x, atom 3 z; step ``h`` Å) and the xx stress
    (strain ``eps``; σ_xx = (1/V) dE/dε_xx). Returns both values and the differences."""
    out = {"step_A": h, "strain": eps, "components": []}
    for i, c in ((0, 0), (3, 2)):
        e = []
        for s in (1, -1):
            b = atoms.copy()
            b.positions[i, c] += s * h
            e.append(dft_calculation(b, forces=False, stress=False)["energy"])
        fd = -(e[0] - e[1]) / (2 * h)
        out["components"].append({"what": f"force atom {i} {'xyz'[c]} (eV/Å)", "finite_difference": fd,
                                  "analytic": float(analytic["forces"][i, c]),
                                  "difference": float(analytic["forces"][i, c] - fd)})
    e = []
    for s in (1, -1):
        b = atoms.copy()
        D = np.eye(3)
        D[0, 0] += s * eps
        b.set_cell(b.cell.array @ D, scale_atoms=True)
        e.append(dft_calculation(b, forces=False, stress=False)["energy"])
    fd = (e[0] - e[1]) / (2 * eps) / atoms.get_volume()
    out["components"].append({"what": "stress xx (eV/Å³)", "finite_difference": fd,
                              "analytic": float(analytic["stress"][0, 0]),
                              "difference": float(analytic["stress"][0, 0] - fd)})
    return out


def equation_of_state(lattice_constants=EOS_A) -> dict:
    """DFT energy of the perfect cubic cell at ``lattice_constants`` (Å), fitted with a
    Birch–Murnaghan EOS (ASE): lattice constant (Å), bulk modulus (GPa), energies (eV/atom)."""
    from ase.build import bulk
    from ase.eos import EquationOfState
    from ase.units import GPa
    E, V = [], []
    for a0 in lattice_constants:
        at = bulk("Si", "diamond", a0, cubic=True)
        E.append(dft_calculation(at, forces=False, stress=False)["energy"])
        V.append(at.get_volume())
    eos = EquationOfState(V, E, eos="birchmurnaghan")
    v0, e0, B = eos.fit()
    return {"lattice_constants_A": list(lattice_constants), "energies_eV_per_atom": [e / 8 for e in E],
            "a0_A": float((v0) ** (1 / 3)), "bulk_modulus_GPa": float(B / GPa), "e0_eV_per_atom": float(e0 / 8)}


def generate(data: Path = DATA, progress: bool = True) -> dict:
    """Label the configurations, run the finite-difference check and the E(V) scan; write
    ``dft_labels.extxyz`` (energy, forces, stress in eV, eV/Å, eV/Å³; info: split, rattle)
    and ``dft_summary.json`` (settings, timings, checks) into ``data``."""
    pyscf = require_pyscf()
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from cgkit.progress import progress_bar
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    frames, kinds = configurations()
    labelled, timings = [], []
    for a, kind in progress_bar(list(zip(frames, kinds)), desc="PySCF labels", unit="cell",
                                disable=None if progress else True):
        r = dft_calculation(a)
        b = a.copy()
        b.info["split"] = kind
        b.calc = SinglePointCalculator(b, energy=r["energy"], forces=r["forces"], stress=r["stress"])
        labelled.append(b)
        timings.append({k: v for k, v in r.items() if k.startswith("time")})
        print(f"  DFT label {len(labelled)}/{len(frames)} ({kind}): E = {r['energy']:.4f} eV, "
              f"{sum(timings[-1].values()):.0f} s", flush=True)
    write(str(data / "dft_labels.extxyz"), labelled, format="extxyz")
    t_labels = time.perf_counter() - t_all
    t = time.perf_counter()
    first = labelled[0]
    fd = finite_difference_check(frames[0], {"forces": first.get_forces(),
                                             "stress": first.get_stress(voigt=False)})
    t_fd = time.perf_counter() - t
    t = time.perf_counter()
    eos = equation_of_state()
    t_eos = time.perf_counter() - t
    summary = {"settings": SETTINGS, "pyscf_version": pyscf.__version__, "mesh": None,
               "n_labels": len(labelled), "splits": {k: kinds.count(k) for k in ("train", "test")},
               "atoms_per_cell": len(frames[0]), "timings_s_per_label": timings,
               "mean_time_per_label_s": float(np.mean([sum(t.values()) for t in timings])),
               "labels_wall_s": t_labels, "finite_difference_check": fd, "fd_check_wall_s": t_fd,
               "eos": eos, "eos_wall_s": t_eos, "total_wall_s": time.perf_counter() - t_all,
               "threads": 1, "note": "wall times on a 2-core machine shared with other jobs"}
    summary["mesh"] = _cell(frames[0]).mesh.tolist()
    (data / "dft_summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def load(data: Path = DATA):
    """(train, test) labelled frames and the summary from ``data``."""
    from ase.io import read
    data = Path(data)
    frames = read(str(data / "dft_labels.extxyz"), index=":")
    summary = json.loads((data / "dft_summary.json").read_text())
    return ([a for a in frames if a.info["split"] == "train"],
            [a for a in frames if a.info["split"] == "test"], summary)


if __name__ == "__main__":
    s = generate()
    print(json.dumps({k: s[k] for k in ("mean_time_per_label_s", "total_wall_s", "eos")}, indent=1))
    print(json.dumps(s["finite_difference_check"], indent=1))
