"""Trajectory input with forces, and the streaming CG trajectory writer.

Every reader yields :class:`Frame` objects in cgkit units, converted at this edge:

============ ========= ====================================================================
positions    (n, 3)    Å
forces       (n, 3)    eV/Å  (GROMACS kJ/(mol·nm), LAMMPS real kcal/(mol·Å), metal eV/Å)
velocities   (n, 3)    Å/fs  (GROMACS nm/ps, LAMMPS real Å/fs, metal Å/ps)
cell         (3, 3)    Å, lattice vectors as rows (zeros when there is no box)
pbc          (3,)      bool
time         float     fs
============ ========= ====================================================================

Inputs: GROMACS (tpr/gro/pdb + trr/xtc; forces only from trr), LAMMPS (data + dump with
``fx fy fz``), extxyz (forces in the ``forces`` array or a calculator; also cgkit's own MD
output, which is extxyz), and anything else MDAnalysis reads. Frames are read one at a time,
so memory does not grow with the trajectory length.

:class:`CGTrajectoryWriter` writes mapped frames (positions, forces, box) frame by frame as
GROMACS TRR (default) or extxyz, plus a PSF CG topology (bead names, types, masses, charges,
bonds, angles, dihedrals): ``MDAnalysis.Universe("cg.psf", "cg.trr")`` reads it back, and
:func:`read_cg_atoms` yields ASE Atoms with forces.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .units import KCAL_PER_MOL_TO_EV, KJ_PER_MOL_TO_EV

__all__ = ["Frame", "Trajectory", "open_trajectory", "CGTrajectoryWriter", "write_psf",
           "read_cg_atoms", "cell_to_dimensions", "dimensions_to_cell"]

_LAMMPS_UNITS = {
    # force factor to eV/Å, velocity factor to Å/fs, time factor to fs
    "real": (KCAL_PER_MOL_TO_EV, 1.0, 1.0),
    "metal": (1.0, 1e-3, 1e3),
}


@dataclass
class Frame:
    """One atomistic frame in cgkit units (see module docstring)."""

    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    forces: np.ndarray | None = None
    velocities: np.ndarray | None = None
    time: float = 0.0
    step: int = 0


def dimensions_to_cell(dim) -> np.ndarray:
    """MDAnalysis [a, b, c, α, β, γ] (Å, degrees) → (3, 3) cell rows (zeros if no box)."""
    if dim is None or not np.any(np.asarray(dim)[:3]):
        return np.zeros((3, 3))
    from ase.geometry import cellpar_to_cell
    return cellpar_to_cell(np.asarray(dim, dtype=np.float64))


def cell_to_dimensions(cell) -> np.ndarray:
    from ase.geometry import cell_to_cellpar
    cell = np.asarray(cell, dtype=np.float64)
    if not np.any(cell):
        return np.zeros(6)
    return cell_to_cellpar(cell)


class Trajectory:
    """A streaming trajectory: iterate to get :class:`Frame` objects. ``topology`` is what
    :meth:`cgkit.mapping.Mapping.compile` accepts (an MDAnalysis Universe or ASE Atoms).
    ``start/stop/step`` select frames like a Python slice."""

    def __init__(self, topology, n_atoms, frame_iter, n_frames=None, source=""):
        self.topology = topology
        self.n_atoms = n_atoms
        self._iter = frame_iter
        self.n_frames = n_frames
        self.source = source

    def __iter__(self):
        return self._iter()

    def __len__(self):
        if self.n_frames is None:
            raise TypeError("length unknown for this trajectory format")
        return self.n_frames


def _slice_len(n, start, stop, step):
    return len(range(*slice(start, stop, step).indices(n)))


def open_trajectory(topology, trajectory=None, *, start=None, stop=None, step=None,
                    lammps_units: str = "real", format: str | None = None) -> Trajectory:
    """Open an atomistic trajectory with forces. ``topology``: tpr/gro/pdb/psf/LAMMPS data file
    (or an MDAnalysis Universe); ``trajectory``: trr/xtc/dcd/LAMMPS dump/extxyz (None: the
    topology file's own coordinates). extxyz files can be given alone as ``topology``.
    ``lammps_units``: LAMMPS units style of a dump file ('real' or 'metal')."""
    if step is not None and step <= 0:
        raise InputError("step must be a positive number of frames")
    topo_p = None if topology is None or not isinstance(topology, (str, Path)) else Path(topology)
    traj_p = None if trajectory is None else Path(trajectory)
    for p in (topo_p, traj_p):
        if p is not None and not p.exists():
            raise InputError(f"file not found: {p}")
    xyz_like = (".xyz", ".extxyz")
    if (traj_p is not None and traj_p.suffix.lower() in xyz_like) or \
            (traj_p is None and topo_p is not None and topo_p.suffix.lower() in xyz_like):
        return _open_extxyz(traj_p or topo_p, start, stop, step)
    import MDAnalysis as mda
    is_dump = format == "LAMMPSDUMP" or (traj_p is not None and (
        traj_p.suffix.lower() in (".dump", ".lammpstrj") or ".dump" in traj_p.name))
    if is_dump and lammps_units not in _LAMMPS_UNITS:
        raise InputError(f"lammps_units must be one of {', '.join(_LAMMPS_UNITS)}")
    try:
        if isinstance(topology, mda.Universe):
            u = topology
            if trajectory is not None:
                u.load_new(str(trajectory), **({"format": "LAMMPSDUMP"} if is_dump else {}))
        else:
            kw = {}
            if topo_p.suffix.lower() in (".data", ".lmp"):
                kw["topology_format"] = "DATA"
            if is_dump:
                kw["format"] = "LAMMPSDUMP"
                kw["convert_units"] = False
            args = [str(topo_p)] + ([str(traj_p)] if traj_p is not None else [])
            u = mda.Universe(*args, **kw)
    except InputError:
        raise
    except Exception as exc:  # MDAnalysis raises a zoo of exception types
        raise InputError(f"cannot read {topology} {trajectory or ''} with MDAnalysis: {exc}") from None
    n_total = len(u.trajectory)
    if is_dump:
        f_fac, v_fac, t_fac = _LAMMPS_UNITS[lammps_units]
    else:  # MDAnalysis base units: Å, Å/ps, kJ/(mol·Å), ps
        f_fac, v_fac, t_fac = KJ_PER_MOL_TO_EV, 1e-3, 1e3

    def frames():
        for ts in u.trajectory[start:stop:step]:
            f = ts.forces.astype(np.float64) * f_fac if ts.has_forces else None
            v = ts.velocities.astype(np.float64) * v_fac if ts.has_velocities else None
            cell = dimensions_to_cell(ts.dimensions)
            yield Frame(positions=ts.positions.astype(np.float64), cell=cell,
                        pbc=np.full(3, bool(np.any(cell))), forces=f, velocities=v,
                        time=float(ts.time) * t_fac, step=int(ts.data.get("step", ts.frame)))
    return Trajectory(u, u.atoms.n_atoms, frames, _slice_len(n_total, start, stop, step),
                      source=str(traj_p or topo_p))


def _open_extxyz(path: Path, start, stop, step) -> Trajectory:
    import ase.io
    try:
        first = ase.io.read(str(path), index=0)
    except Exception as exc:
        raise InputError(f"cannot read {path} as extxyz: {exc}") from None

    def frames():
        for k, at in enumerate(ase.io.iread(str(path), index=slice(start, stop, step))):
            f = None
            if "forces" in at.arrays:
                f = np.asarray(at.arrays["forces"], dtype=np.float64)
            elif at.calc is not None:
                try:
                    f = np.asarray(at.get_forces(), dtype=np.float64)
                except Exception:  # no forces stored
                    f = None
            v = None
            if "momenta" in at.arrays or "velocities" in at.arrays:
                from ase import units
                v = at.get_velocities() * units.fs   # ASE velocity units → Å/fs
            cell = np.asarray(at.cell[:], dtype=np.float64)
            yield Frame(positions=at.positions.copy(), cell=cell, pbc=np.asarray(at.pbc, bool),
                        forces=f, velocities=v, time=float(at.info.get("time", 0.0)),
                        step=int(at.info.get("step", k)))
    return Trajectory(first, len(first), frames, None, source=str(path))


# ---------------------------------------------------------------------------- writing
def write_psf(path, mapping) -> Path:
    """Write the CG topology of ``mapping`` as a (standard CHARMM) PSF file: segment CG, residue
    = template instance, atom name = bead name, type = bead type, charge e, mass amu."""
    path = Path(path)
    topo = mapping.topology
    lines = ["PSF", "", "       1 !NTITLE", f" REMARKS cgkit CG topology: {mapping.definition.name}", ""]
    lines.append(f"{mapping.n_beads:8d} !NATOM")
    for i in range(mapping.n_beads):
        lines.append(f"{i + 1:8d} {'CG':<4s} {int(mapping.resid_of_bead[i]):<4d} "
                     f"{str(mapping.template_of_bead[i])[:4]:<4s} {str(mapping.bead_names[i])[:4]:<4s} "
                     f"{str(mapping.bead_types[i])[:4]:<4s} {mapping.bead_charges[i]:<14.6f}"
                     f"{mapping.bead_masses[i]:<14.4f}{0:8d}")
    lines.append("")

    def section(arr, per_line, label):
        out = [f"{len(arr):8d} !{label}"]
        flat = np.asarray(arr, dtype=np.int64) + 1
        for k in range(0, len(flat), per_line):
            out.append("".join(f"{x:8d}" for row in flat[k:k + per_line] for x in row))
        out.append("")
        return out
    lines += section(topo.bonds, 4, "NBOND: bonds")
    lines += section(topo.angles, 3, "NTHETA: angles")
    lines += section(topo.dihedrals, 2, "NPHI: dihedrals")
    lines += section(np.zeros((0, 4), int), 2, "NIMPHI: impropers")
    lines += ["       0 !NDON: donors", "", "       0 !NACC: acceptors", "", ""]
    path.write_text("\n".join(lines) + "\n")
    return path


class CGTrajectoryWriter:
    """Stream mapped frames to disk. ``path``: ``.trr`` (GROMACS; MDAnalysis reads it with the
    PSF written next to it) or ``.xyz``/``.extxyz`` (ASE). Forces are written in the file
    format's units (TRR: kJ/(mol·nm)); positions Å → nm for TRR. Use as a context manager."""

    def __init__(self, path, mapping, psf_path=None):
        self.path = Path(path)
        self.mapping = mapping
        self.n_frames = 0
        self.format = "trr" if self.path.suffix.lower() == ".trr" else \
            "extxyz" if self.path.suffix.lower() in (".xyz", ".extxyz") else None
        if self.format is None:
            raise InputError(f"CG trajectory must end in .trr or .extxyz, got {self.path.name}")
        self.psf_path = Path(psf_path) if psf_path else self.path.with_suffix(".psf")
        write_psf(self.psf_path, mapping)
        if self.format == "trr":
            import MDAnalysis as mda
            self._u = mda.Universe.empty(mapping.n_beads, trajectory=True, velocities=True,
                                         forces=True)
            self._w = mda.Writer(str(self.path), n_atoms=mapping.n_beads)
        else:
            self.path.write_text("")

    def write(self, cgframe) -> None:
        if self.format == "trr":
            ts = self._u.trajectory.ts
            ts.positions = cgframe.positions
            ts.dimensions = cell_to_dimensions(cgframe.cell) if np.any(cgframe.cell) else None
            # MDAnalysis converts kJ/(mol·Å) → kJ/(mol·nm) and Å/ps → nm/ps itself
            ts.has_forces = cgframe.forces is not None
            if cgframe.forces is not None:
                ts.forces = cgframe.forces / KJ_PER_MOL_TO_EV
            ts.has_velocities = cgframe.velocities is not None
            if cgframe.velocities is not None:
                ts.velocities = cgframe.velocities * 1e3
            ts.time = cgframe.time * 1e-3        # fs → ps
            ts.data["step"] = cgframe.step
            ts.frame = self.n_frames
            self._w.write(self._u.atoms)
        else:
            import ase.io
            atoms = self.mapping.to_atoms(cgframe)
            atoms.info["time"] = cgframe.time
            atoms.info["step"] = cgframe.step
            ase.io.write(str(self.path), atoms, format="extxyz", append=True)
        self.n_frames += 1

    def close(self):
        if self.format == "trr" and self._w is not None:
            self._w.close()
            self._w = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_cg_atoms(psf, trajectory):
    """Yield ASE Atoms (forces in eV/Å on a SinglePointCalculator, bead types in
    ``arrays['bead_types']``) from a CG trajectory written by :class:`CGTrajectoryWriter`."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    p = Path(trajectory)
    if p.suffix.lower() in (".xyz", ".extxyz"):
        import ase.io
        yield from ase.io.iread(str(p))
        return
    import MDAnalysis as mda
    u = mda.Universe(str(psf), str(p))
    for ts in u.trajectory:
        cell = dimensions_to_cell(ts.dimensions)
        at = Atoms(["X"] * len(u.atoms), positions=ts.positions.astype(float), cell=cell,
                   pbc=bool(np.any(cell)), masses=u.atoms.masses)
        at.arrays["bead_types"] = np.asarray(u.atoms.types, dtype=str)
        at.arrays["bead_names"] = np.asarray(u.atoms.names, dtype=str)
        if ts.has_forces:
            at.calc = SinglePointCalculator(at, forces=ts.forces.astype(float) * KJ_PER_MOL_TO_EV)
        yield at


def read_cg_system(psf, *, exclude: int = 2):
    """The CG system of a PSF written by ``cgkit map``: ``(type_names (sorted), species (n,),
    masses (n,) amu, topology)``. The :class:`~cgkit.topology.Topology` holds the PSF's bonds,
    angles and dihedrals, with non-bonded pairs up to ``exclude`` bonds apart excluded (2: 1-2
    and 1-3 pairs, as a mapping's ``exclusions: bonded``)."""
    import MDAnalysis as mda

    from .topology import Topology
    with warnings.catch_warnings():  # "no coordinate reader" for a bare PSF
        warnings.simplefilter("ignore", UserWarning)
        u = mda.Universe(str(psf))
    n = len(u.atoms)
    names = [str(t) for t in u.atoms.types]
    type_names = sorted(set(names))
    bonds = u.bonds.indices if hasattr(u, "bonds") else np.zeros((0, 2), int)
    topology = Topology(n_particles=n, bonds=bonds,
                        angles=u.angles.indices if hasattr(u, "angles") else None,
                        dihedrals=u.dihedrals.indices if hasattr(u, "dihedrals") else None,
                        exclusions=Topology.from_bonds(n, bonds, exclude=exclude).exclusions)
    return (type_names, np.array([type_names.index(t) for t in names]), np.asarray(u.atoms.masses, float),
            topology)


def read_cg_reference(psf, trajectory, *, exclude: int = 2, needed_by: str = "this method"):
    """A mapped reference CG trajectory for the iterative methods (IBI, relative entropy):
    ``(type_names, species, masses, topology, positions (F, n, 3) Å, boxes (F, 3, 3) Å)``.
    The trajectory must hold frames and a periodic box."""
    type_names, species, masses, topology = read_cg_system(psf, exclude=exclude)
    frames = list(read_cg_atoms(psf, trajectory))
    if not frames:
        raise InputError(f"{trajectory} holds no frames")
    if not frames[0].pbc.all():
        raise InputError(f"{needed_by} needs a periodic box in the reference trajectory {trajectory}")
    return (type_names, species, masses, topology, np.array([a.positions for a in frames]),
            np.array([a.cell.array for a in frames]))


def read_cg_arrays(psf, trajectory, *, exclude: int = 2, start=None, stop=None, step=None):
    """A CG trajectory with mapped forces (e.g. from ``cgkit map``) as arrays for force matching.

    Returns ``(positions (F, n, 3) Å, forces (F, n, 3) eV/Å, boxes (F, 3) Å, type_names,
    species (n,), masses (n,) amu, topology)``; the :class:`~cgkit.topology.Topology` holds the
    PSF's bonds, angles and dihedrals (:func:`read_cg_system`), with non-bonded pairs up to
    ``exclude`` bonds apart excluded. Forces are converted from MDAnalysis's kJ/(mol·Å) to eV/Å
    here.
    """
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(psf), str(trajectory))
    P, F, B = [], [], []
    for ts in u.trajectory[start:stop:step]:
        if not ts.has_forces:
            raise InputError(f"{trajectory} has no forces in frame {ts.frame}; map a trajectory "
                             "that holds forces (GROMACS trr with nstfout > 0)")
        P.append(ts.positions.astype(float))
        F.append(ts.forces.astype(float) * KJ_PER_MOL_TO_EV)
        B.append(ts.dimensions[:3].astype(float))
    if not P:
        raise InputError(f"{trajectory} holds no frames in the requested range")
    type_names, species, masses, topology = read_cg_system(psf, exclude=exclude)
    return np.array(P), np.array(F), np.array(B), type_names, species, masses, topology
