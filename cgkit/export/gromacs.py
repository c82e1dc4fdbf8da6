"""Export a :class:`~cgkit.forcematch.TabulatedPotential` to GROMACS tables (nm, kJ/mol, degrees).

File names and layouts are GROMACS's own:

* bonded tables (``[ bonds ]`` function type 8/9, ``[ angles ]`` type 8, ``[ dihedrals ]``
  type 8, table number n given as the first parameter): ``table_b<n>.xvg`` (x in nm, V in
  kJ/mol, -dV/dx in kJ/mol/nm), ``table_a<n>.xvg`` (0…180 degrees, -dV/dθ in kJ/mol/deg),
  ``table_d<n>.xvg`` (-180…180 degrees, -dV/dφ in kJ/mol/deg). Supported by every current
  GROMACS version (2018–2025) with ``mdrun -tableb table_b0.xvg table_a0.xvg ...``.
* non-bonded tables ``table_<T1>_<T2>.xvg`` with the seven columns r, f, -f', g, -g', h, -h'
  (r in nm from 0 to the cutoff + 1 nm, spacing 0.002 nm); the CG potential is put in the
  repulsion column h (use C6 = 0, C12 = 1 for those type pairs, ``vdwtype = user``,
  ``energygrp_table``). **GROMACS 2020 and later removed the group cut-off scheme, and the
  Verlet scheme does not support user tables for non-bonded interactions**: these files work
  with GROMACS ≤ 2019 (``cutoff-scheme = group``) only. With GROMACS 2020+, run the
  non-bonded part in LAMMPS (:func:`cgkit.export.write_lammps`) or cgkit MD, or fit analytic
  forms; the bonded tables remain usable.

:func:`write_gromacs` also writes ``tables.json`` mapping every interaction to its file and
table number.

Charged CG models (tables + :class:`~cgkit.forcematch.coulomb.BeadCoulombPotential`, from
``cgkit fm --coulomb``): ``coulomb.mdp`` holds the PME settings (``coulombtype = PME``,
``rcoulomb`` in nm, ``ewald-rtol`` from the term's accuracy, tin-foil ``epsilon-surface = 0``) and
``charges.itp`` a ``[ moleculetype ]`` of the whole CG system with the bead charges (e) in
``[ atoms ]`` and the non-bonded exclusions in ``[ exclusions ]`` (GROMACS removes both the
real- and reciprocal-space Coulomb of excluded pairs, as cgkit does). PME itself runs with the
Verlet scheme of every current GROMACS version.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..units import KJ_PER_MOL_TO_EV, NM_TO_A

__all__ = ["write_gromacs", "read_xvg", "GROMACS_NOTE"]

GROMACS_NOTE = ("GROMACS 2020+ (Verlet cut-off scheme) does not accept tabulated non-bonded "
                "potentials; table_<T1>_<T2>.xvg files work with GROMACS <= 2019 and "
                "cutoff-scheme = group only. Bonded tables (table_b/a/d<n>.xvg) work with all "
                "current versions via mdrun -tableb.")

_EV_TO_KJ = 1.0 / KJ_PER_MOL_TO_EV


def _write_xvg(path: Path, title: str, cols: np.ndarray) -> None:
    head = [f"# {title}", "# written by cgkit (units: nm, kJ/mol, degrees)"]
    body = "\n".join(" ".join(f"{v:.10e}" for v in row) for row in cols)
    path.write_text("\n".join(head) + "\n" + body + "\n")


def read_xvg(path) -> np.ndarray:
    """Numeric columns of an .xvg file (comments '#', '@' skipped)."""
    rows = [list(map(float, line.split())) for line in Path(path).read_text().splitlines()
            if line.strip() and line.lstrip()[0] not in "#@"]
    if not rows:
        raise InputError(f"{path} holds no data rows")
    return np.array(rows)


def write_gromacs(potential, directory, *, nonbonded_spacing_nm: float = 0.002,
                  table_extension_nm: float = 1.0, bonded_points: int = 1001,
                  rcoulomb_nm: float = 1.0, species=None) -> dict:
    """Write GROMACS tables for every table of ``potential`` into ``directory``
    (``rcoulomb_nm``: real-space Coulomb cutoff written to ``coulomb.mdp`` for a charged model;
    ``species``: (n_beads,) type indices, naming the bead types in its ``charges.itp``).

    Returns {interaction label: {"file": name, "table_number": n or None}} (also in tables.json).
    """
    from ..forcematch.coulomb import split_coulomb
    from .lammps import _refuse_damped_dihedrals
    potential, coul = split_coulomb(potential)
    if potential is None:
        raise InputError("the model is a bare Coulomb term without tables; export a fitted CG model")
    _refuse_damped_dihedrals(potential, "GROMACS")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    index = {}
    counters = {"bond": 0, "angle": 0, "dihedral": 0}
    for t in potential.tables:
        if t.kind == "pair":
            rc_nm = t.x_max / NM_TO_A
            r_nm = np.arange(0.0, rc_nm + table_extension_nm + 0.5 * nonbonded_spacing_nm, nonbonded_spacing_nm)
            r = r_nm * NM_TO_A
            # r = 0: GROMACS never uses it, but it must be finite
            U, f = t(np.maximum(r, 1e-6))
            V = U * _EV_TO_KJ
            F = f * _EV_TO_KJ * NM_TO_A
            z = np.zeros_like(r_nm)
            name = f"table_{t.types[0]}_{t.types[1]}.xvg"
            _write_xvg(d / name, f"{t.label}: r f -f' g -g' h -h' (CG potential in h)",
                       np.column_stack([r_nm, z, z, z, z, V, F]))
            index[t.label] = {"file": name, "table_number": None, "note": GROMACS_NOTE}
            continue
        n = counters[t.kind]
        counters[t.kind] += 1
        if t.kind == "bond":
            lo = max(0.0, t.x0 - 1.0)
            x = np.linspace(lo, t.x_max + 2.0, bonded_points)
            U, f = t(np.maximum(x, 1e-6))
            cols = np.column_stack([x / NM_TO_A, U * _EV_TO_KJ, f * _EV_TO_KJ * NM_TO_A])
            name = f"table_b{n}.xvg"
        elif t.kind == "angle":
            deg = np.linspace(0.0, 180.0, bonded_points)
            U, f = t(np.radians(deg))
            cols = np.column_stack([deg, U * _EV_TO_KJ, f * _EV_TO_KJ * math.pi / 180.0])
            name = f"table_a{n}.xvg"
        else:
            deg = np.linspace(-180.0, 180.0, bonded_points)
            U, f = t(np.radians(deg))
            cols = np.column_stack([deg, U * _EV_TO_KJ, f * _EV_TO_KJ * math.pi / 180.0])
            name = f"table_d{n}.xvg"
        _write_xvg(d / name, f"{t.label}: x V -dV/dx", cols)
        index[t.label] = {"file": name, "table_number": n}
    if coul is not None:
        index["coulomb"] = _write_coulomb(coul, potential, d, rcoulomb_nm, species)
    (d / "tables.json").write_text(json.dumps({"tables": index, "note": GROMACS_NOTE}, indent=1))
    return index


def _write_coulomb(coul, potential, d: Path, rcoulomb_nm: float, species=None) -> dict:
    """``coulomb.mdp`` (PME settings) and ``charges.itp`` (bead charges and exclusions).

    Settings from the term's accuracy with cgkit's own rules: real-space threshold
    erfc(β·rcoulomb) = 0.1 × accuracy (``ewald-rtol``), and the PME grid spacing of cgkit's
    B-spline aliasing estimate for ``pme-order = 6`` at that β (the spacing ∝ accuracy^(1/6)/β)."""
    from scipy.special import erfcinv
    rtol = 0.1 * coul.accuracy
    beta = float(erfcinv(rtol)) / rcoulomb_nm                      # 1/nm
    order = 6
    ah = (2.0 * math.pi / math.sqrt(2.0 * order)) * (rtol * math.exp(order / 2.0) / 8.0) ** (1.0 / order)
    spacing = math.floor(1000.0 * ah / beta) / 1000.0              # nm, rounded down
    mdp = ["; Coulomb between CG beads (cgkit fm --coulomb): particle-mesh Ewald, tin-foil boundary",
           "; units: nm, kJ/mol, e; bead charges and exclusions: charges.itp",
           "coulombtype      = PME",
           f"rcoulomb         = {rcoulomb_nm:.6g}",
           f"ewald-rtol       = {rtol:.3g}  ; erfc(beta*rcoulomb), from cgkit's accuracy {coul.accuracy:g}",
           f"fourier-spacing  = {spacing:.3f}  ; nm, cgkit's PME grid rule for this accuracy",
           f"pme-order        = {order}",
           "epsilon-r        = 1",
           "epsilon-surface  = 0",
           "; a non-neutral system gets GROMACS's uniform neutralising background (cgkit: background=True)"]
    (d / "coulomb.mdp").write_text("\n".join(mdp) + "\n")
    tn = potential.type_names
    top = potential.topology
    lines = ["; CG system written by cgkit: bead charges (e) and non-bonded exclusions (1-based)",
             "[ moleculetype ]", "; name  nrexcl", "CG  0", "", "[ atoms ]",
             "; nr  type  resnr  residue  atom  cgnr  charge"]
    for i, q in enumerate(coul.charges):
        typ = tn[int(species[i])] if species is not None else "CG"
        lines.append(f"{i + 1:6d}  {typ}  {int(top.molecule[i]) + 1:6d}  CG  B{i + 1}  {i + 1:6d}  {q:.8f}")
    if len(coul.exclusions):
        # grompp accepts [ exclusions ] only after a bonded directive
        lines += ["", "[ bonds ]", "; the CG bonds of your topology (tabulated: type 8 with table_b<n>.xvg)",
                  "", "[ exclusions ]"]
        lines += [f"{int(a) + 1} {int(b) + 1}" for a, b in coul.exclusions]
    (d / "charges.itp").write_text("\n".join(lines) + "\n")
    return {"file": "coulomb.mdp", "atoms": "charges.itp", "coulombtype": "PME", "rcoulomb_nm": rcoulomb_nm,
            "ewald_rtol": rtol, "fourier_spacing_nm": spacing, "pme_order": order, "net_charge_e": coul.net_charge,
            "note": "merge the charges into your CG topology's [ atoms ] (bead types are 'CG' unless "
                    "species were given)"}
