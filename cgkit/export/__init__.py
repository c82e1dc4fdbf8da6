"""Export fitted CG potentials to other engines: LAMMPS tables + data + input script, GROMACS
xvg tables (see :mod:`cgkit.export.lammps` and :mod:`cgkit.export.gromacs`)."""
from .gromacs import GROMACS_NOTE, read_xvg, write_gromacs  # noqa: F401
from .lammps import lammps_box, lammps_special_bonds, read_lammps_table, write_lammps  # noqa: F401

__all__ = ["write_lammps", "read_lammps_table", "lammps_special_bonds", "lammps_box", "write_gromacs", "read_xvg",
           "GROMACS_NOTE"]
