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
``fx fy fz``; a dump alone through :func:`read_lammps_dump`), extxyz (forces in the ``forces``
array or a calculator; also cgkit's own MD output, which is extxyz), and anything else
MDAnalysis reads. Frames are read one at a time, so memory does not grow with the trajectory
length.

Every reader checks its input at this edge (the same checks for every command):

* a frame with NaN/inf positions, forces, velocities or box is a
  :class:`~cgkit.errors.StructureError` naming the file, the 0-based frame index and the atoms;
* a topology and trajectory with different atom counts (or an extxyz file whose atom count
  changes) is an :class:`~cgkit.errors.InputError`;
* a file that ends in an incomplete frame (a killed run, a copy cut short) is read up to its
  last complete frame, with a :class:`TruncatedTrajectoryWarning` that names that frame;
* a frame without forces has ``forces=None`` (never zeros).

:class:`CGTrajectoryWriter` writes mapped frames (positions, forces, box) frame by frame as
GROMACS TRR (default) or extxyz, plus a PSF CG topology (bead names, types, masses, charges,
bonds, angles, dihedrals): ``MDAnalysis.Universe("cg.psf", "cg.trr")`` reads it back, and
:func:`read_cg_atoms` yields ASE Atoms with forces.
"""
from __future__ import annotations

from .errors import CgkitWarning

import re
import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, StructureError
from .units import KCAL_PER_MOL_TO_EV, KJ_PER_MOL_TO_EV

__all__ = ["Frame", "Trajectory", "open_trajectory", "CGTrajectoryWriter", "write_psf",
           "read_cg_atoms", "read_cg_arrays", "read_cg_system", "read_cg_reference",
           "read_lammps_dump", "LammpsDump", "TruncatedTrajectoryWarning", "check_frame_finite",
           "complete_frames", "load_universe", "recording_truncation", "universe_from_frames", "check_trajectory_file", "is_lammps_dump", "cell_to_dimensions",
           "dimensions_to_cell"]


class TruncatedTrajectoryWarning(CgkitWarning):
    """A trajectory file ends in an incomplete frame; only its complete frames are read."""

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
    #: 0-based index of the frame in its file (-1: not from a file)
    index: int = -1


def check_frame_finite(source, index: int, what: str = "atom", **arrays) -> None:
    """Raise :class:`~cgkit.errors.StructureError` when any of ``arrays`` (name → (n, 3) array
    or None; ``box`` → (3, 3)) holds NaN or inf, naming ``source``, the 0-based frame
    ``index`` and the first offending atoms (0-based)."""
    for name, a in arrays.items():
        if a is None:
            continue
        a = np.asarray(a)
        ok = np.isfinite(a)
        if ok.all():
            continue
        if name == "box":
            raise StructureError(f"frame {index} of {source}: the box holds NaN or inf ({a.tolist()}); "
                                 "the file is corrupt: stop before this frame or repair the file")
        bad = np.flatnonzero(~ok.reshape(len(a), -1).all(axis=1))
        shown = ", ".join(str(int(i)) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise StructureError(
            f"frame {index} of {source}: {name} of {len(bad)} {what}(s) are NaN or inf "
            f"({what}s {shown}, 0-based); the simulation blew up or the file is corrupt: "
            f"use the frames before it (e.g. --stop {index}) or repair the file")


def _warn_truncated(source, n_complete: int, detail: str = "") -> None:
    last = (f"the last complete frame is frame {n_complete - 1}" if n_complete
            else "it holds no complete frame")
    warnings.warn(f"{source} ends in an incomplete frame{detail}: reading its {n_complete} complete "
                  f"frame(s) only ({last}); the file was cut short (killed run or partial copy)",
                  TruncatedTrajectoryWarning, stacklevel=3)


_READ_ERRORS = (OSError, EOFError, ValueError, IndexError, RuntimeError)


def _dump_complete_frames(path: Path, n_atoms: int, n_listed: int) -> int:
    """Complete frames of a LAMMPS text dump (9 header lines + one line per atom per frame, as
    MDAnalysis assumes); warns when the file ends in an incomplete frame."""
    per = n_atoms + 9
    n_lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            n_lines += chunk.count(b"\n")
            last = chunk[-1:]
    complete = n_lines // per
    if n_lines % per or last != b"\n":
        _warn_truncated(path, complete, f" (frame {complete} has {n_lines % per} of {per} lines)")
    return min(complete, n_listed) if n_listed else complete


def complete_frames(universe, source=None) -> int:
    """Number of frames of an MDAnalysis Universe's trajectory that can be read completely.

    MDAnalysis indexes a TRR/XTC whose last frame was cut short as if it were whole, then
    fails (or stops silently) on it, and silently drops the cut last frame of a LAMMPS dump.
    This reads the last frame (or counts dump lines): when it is incomplete a
    :class:`TruncatedTrajectoryWarning` names the last complete frame and the count excludes
    it; an unreadable earlier frame is an :class:`~cgkit.errors.InputError`."""
    reader = universe.trajectory
    src = source or getattr(reader, "filename", None) or "the trajectory"
    n = len(reader)
    fname = getattr(reader, "filename", None)
    if type(reader).__name__ == "DumpReader" and fname and Path(fname).is_file():
        return _dump_complete_frames(Path(fname), universe.atoms.n_atoms, n)
    if n == 0:
        return 0
    try:
        reader[n - 1]
    except _READ_ERRORS as exc:
        if n >= 2:
            try:
                reader[n - 2]
            except _READ_ERRORS as exc2:
                raise InputError(f"cannot read frame {n - 2} of {src}: {exc2}; the file is corrupt "
                                 "(not only cut short): repair or regenerate it") from None
        _warn_truncated(src, n - 1, f" (frame {n - 1}: {type(exc).__name__}: {_mda_message(exc)})")
        n -= 1
    finally:
        try:
            reader.rewind()
        except _READ_ERRORS:
            pass
    return n


def _iter_universe(u, source, indices, *, forces_factor=1.0, what="atom"):
    """(index, ts) over ``indices`` with read errors turned into InputError naming the frame
    and every frame checked for NaN/inf."""
    reader = u.trajectory
    for i in indices:
        try:
            ts = reader[int(i)]
        except _READ_ERRORS as exc:
            raise InputError(f"cannot read frame {i} of {source}: {type(exc).__name__}: "
                             f"{_mda_message(exc)}; the file is corrupt: repair it or stop before "
                             "this frame") from None
        check_frame_finite(source, int(i), what, positions=ts.positions,
                           forces=ts.forces if ts.has_forces else None,
                           velocities=ts.velocities if ts.has_velocities else None,
                           box=ts.dimensions if ts.dimensions is not None else None)
        yield int(i), ts


def _mda_message(exc) -> str:
    """The first line of an MDAnalysis exception (its long format lists stay out of one-line errors)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _atom_count_error(exc, topology, trajectory):
    """A clear InputError for MDAnalysis's atom-count mismatch, else None."""
    msg = str(exc)
    if "number of atoms" not in msg.lower():
        return None
    nums = re.findall(r"atoms\s*:?\s*(\d+)", msg)
    detail = (f"the topology {topology} has {nums[0]} atoms but the trajectory {trajectory} has "
              f"{nums[1]} per frame" if len(nums) >= 2 else
              f"the topology {topology} and the trajectory {trajectory} have different numbers of atoms")
    return InputError(f"{detail}; give the topology that belongs to this trajectory")


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


def is_lammps_dump(path, format=None) -> bool:
    """Whether ``path`` names a LAMMPS text dump (``*.dump``, ``*.lammpstrj``, ``*.dump.*``),
    which MDAnalysis reads only when told ``format="LAMMPSDUMP"``."""
    return format == "LAMMPSDUMP" or (path is not None and (
        Path(path).suffix.lower() in (".dump", ".lammpstrj") or ".dump" in Path(path).name))


def open_trajectory(topology, trajectory=None, *, start=None, stop=None, step=None,
                    lammps_units: str = "real", format: str | None = None) -> Trajectory:
    """Open an atomistic trajectory with forces. ``topology``: tpr/gro/pdb/psf/LAMMPS data file
    (or an MDAnalysis Universe); ``trajectory``: trr/xtc/dcd/LAMMPS dump/extxyz (None: the
    topology file's own coordinates). extxyz files and LAMMPS dumps can be given alone as
    ``topology``. ``lammps_units``: LAMMPS units style of a dump file ('real' or 'metal').

    Checked here (see the module docstring): NaN/inf in a frame → StructureError when the frame
    is read; atom-count mismatch → InputError; a file ending in an incomplete frame → a
    :class:`TruncatedTrajectoryWarning` now, and only the complete frames are iterated.
    Frames carry their 0-based index in the file (``Frame.index``)."""
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
    dump_alone = traj_p is None and is_lammps_dump(topo_p, format)
    is_dump = is_lammps_dump(traj_p, format) or dump_alone
    if is_dump and lammps_units not in _LAMMPS_UNITS:
        raise InputError(f"lammps_units must be one of {', '.join(_LAMMPS_UNITS)}")
    try:
        with warnings.catch_warnings():
            # a dump read as its own topology: "Guessed all Masses to 1.0", "Set all atom types to 1"
            warnings.filterwarnings("ignore", message=".*(Guessed all Masses|Set all atom types).*")
            if isinstance(topology, mda.Universe):
                u = topology
                if trajectory is not None:
                    check_trajectory_file(trajectory)
                    u.load_new(str(trajectory), **({"format": "LAMMPSDUMP"} if is_dump else {}))
            else:
                kw = {}
                if topo_p.suffix.lower() in (".data", ".lmp"):
                    kw["topology_format"] = "DATA"
                if dump_alone:
                    kw["topology_format"] = "LAMMPSDUMP"
                if is_dump:
                    kw["format"] = "LAMMPSDUMP"
                    kw["convert_units"] = False
                args = [str(topo_p)] + ([str(traj_p)] if traj_p is not None else [])
                if traj_p is not None:
                    check_trajectory_file(traj_p)
                u = mda.Universe(*args, **kw)
    except InputError:
        raise
    except Exception as exc:  # MDAnalysis raises a zoo of exception types
        err = _atom_count_error(exc, topology, trajectory)
        if err is not None:
            raise err from None
        raise InputError(f"cannot read {topology} {trajectory or ''} with MDAnalysis: {_mda_message(exc)} "
                         "(topology: tpr/gro/pdb/psf/LAMMPS data/extxyz; trajectory: trr/xtc/dcd/"
                         "LAMMPS dump/extxyz)") from None
    source = str(traj_p or topo_p or getattr(u.trajectory, "filename", None) or "the trajectory")
    n_total = complete_frames(u, source)
    if is_dump:
        f_fac, v_fac, t_fac = _LAMMPS_UNITS[lammps_units]
    else:  # MDAnalysis base units: Å, Å/ps, kJ/(mol·Å), ps
        f_fac, v_fac, t_fac = KJ_PER_MOL_TO_EV, 1e-3, 1e3
    indices = range(n_total)[slice(start, stop, step)]

    def frames():
        for i, ts in _iter_universe(u, source, indices):
            f = ts.forces.astype(np.float64) * f_fac if ts.has_forces else None
            v = ts.velocities.astype(np.float64) * v_fac if ts.has_velocities else None
            cell = dimensions_to_cell(ts.dimensions)
            yield Frame(positions=ts.positions.astype(np.float64), cell=cell,
                        pbc=np.full(3, bool(np.any(cell))), forces=f, velocities=v,
                        time=float(ts.time) * t_fac, step=int(ts.data.get("step", ts.frame)),
                        index=i)
    return Trajectory(u, u.atoms.n_atoms, frames, len(indices), source=source)


def _scan_extxyz(path: Path) -> tuple[int, int]:
    """(complete frames, atoms per frame) of an (ext)xyz file, read line by line without
    parsing: warns when the file ends in an incomplete frame; a changing atom count or a bad
    count line is an InputError."""
    n_complete, n_atoms = 0, None
    with open(path, "rb") as fh:
        while True:
            head = fh.readline()
            if not head:
                break
            if not head.strip():
                if not fh.read().strip():      # trailing blank lines
                    break
                raise InputError(f"frame {n_complete} of {path}: blank line where the atom count "
                                 "should be; the file is not a valid (ext)xyz file")
            try:
                n = int(head.split()[0])
            except ValueError:
                raise InputError(f"frame {n_complete} of {path}: expected the number of atoms, found "
                                 f"{head[:40]!r}; the file is not a valid (ext)xyz file") from None
            if n_atoms is None:
                n_atoms = n
            elif n != n_atoms:
                raise InputError(f"frame {n_complete} of {path} has {n} atoms, frame 0 has {n_atoms}; "
                                 "cgkit needs the same atoms in every frame")
            lines = [fh.readline() for _ in range(n + 1)]
            if not lines[-1].endswith(b"\n") or (n and len(lines[-1].split()) < len(lines[1].split())):
                _warn_truncated(path, n_complete)
                break
            n_complete += 1
    return n_complete, (n_atoms or 0)


def _open_extxyz(path: Path, start, stop, step) -> Trajectory:
    import ase.io
    n_complete, _ = _scan_extxyz(path)
    if n_complete == 0:
        raise InputError(f"{path} holds no complete frame")
    try:
        first = ase.io.read(str(path), index=0)
    except Exception as exc:
        raise InputError(f"cannot read {path} as extxyz: {exc}") from None
    indices = range(n_complete)[slice(start, stop, step)]

    def frames():
        if not len(indices):
            return
        it = ase.io.iread(str(path), index=slice(indices.start, indices.stop, indices.step))
        for i in indices:
            try:
                at = next(it)
            except StopIteration:
                raise InputError(f"{path} ends before frame {i}") from None
            except Exception as exc:  # ASE's parsers raise many types on a bad frame
                raise InputError(f"cannot read frame {i} of {path}: {type(exc).__name__}: {exc}") from None
            f = None
            if "forces" in at.arrays:
                f = np.asarray(at.arrays["forces"], dtype=np.float64)
            elif at.calc is not None and "forces" in getattr(at.calc, "results", {}):
                f = np.asarray(at.calc.results["forces"], dtype=np.float64)
            v = None
            if "momenta" in at.arrays or "velocities" in at.arrays:
                from ase import units
                v = at.get_velocities() * units.fs   # ASE velocity units → Å/fs
            cell = np.asarray(at.cell[:], dtype=np.float64)
            check_frame_finite(path, i, positions=at.positions, forces=f, velocities=v, box=cell)
            yield Frame(positions=at.positions.copy(), cell=cell, pbc=np.asarray(at.pbc, bool),
                        forces=f, velocities=v, time=float(at.info.get("time", 0.0)),
                        step=int(at.info.get("step", i)), index=i)
    return Trajectory(first, len(first), frames, len(indices), source=str(path))


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
    ``arrays['bead_types']``) from a CG trajectory written by :class:`CGTrajectoryWriter`.
    Checked like every reader here: NaN/inf → StructureError naming the frame and beads; a
    file ending in an incomplete frame → :class:`TruncatedTrajectoryWarning`, complete frames
    only. ``atoms.info['frame']`` is the 0-based frame index in the file."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    p = Path(trajectory)
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    if p.suffix.lower() in (".xyz", ".extxyz"):
        import ase.io
        n_complete, _ = _scan_extxyz(p)
        if n_complete == 0:
            return
        for i, at in enumerate(ase.io.iread(str(p), index=slice(0, n_complete))):
            f = at.calc.results.get("forces") if at.calc is not None else at.arrays.get("forces")
            check_frame_finite(p, i, "bead", positions=at.positions, forces=f, box=at.cell[:])
            at.info["frame"] = i
            yield at
        return
    u = _cg_universe(psf, p)
    n = complete_frames(u, str(p))
    for i, ts in _iter_universe(u, str(p), range(n), what="bead"):
        cell = dimensions_to_cell(ts.dimensions)
        at = Atoms(["X"] * len(u.atoms), positions=ts.positions.astype(float), cell=cell,
                   pbc=bool(np.any(cell)), masses=u.atoms.masses)
        at.arrays["bead_types"] = np.asarray(u.atoms.types, dtype=str)
        at.arrays["bead_names"] = np.asarray(u.atoms.names, dtype=str)
        at.info["frame"] = i
        if ts.has_forces:
            at.calc = SinglePointCalculator(at, forces=ts.forces.astype(float) * KJ_PER_MOL_TO_EV)
        yield at


_XDR_MAGIC = {".trr": 1993, ".xtc": 1995}


def check_trajectory_file(path) -> None:
    """Refuse (InputError) a missing or empty trajectory file, and a .trr/.xtc file whose header
    is not GROMACS's, before MDAnalysis opens it (its XDR readers fail with "XDR read error"
    and then raise again while being garbage-collected)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {p}")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{p} is empty: give a trajectory with at least one frame")
    magic = _XDR_MAGIC.get(p.suffix.lower())
    if magic is not None and p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(4)
        if len(head) < 4 or int.from_bytes(head, "big", signed=True) != magic:
            raise InputError(f"{p} is not a GROMACS {p.suffix.lower()[1:].upper()} file (wrong header); "
                             "check the file name and format")


def load_universe(topology, *trajectories, quiet: bool = False, **kwargs):
    """``MDAnalysis.Universe(topology, *trajectories, **kwargs)`` with unreadable input turned
    into :class:`~cgkit.errors.InputError` (a missing file, a topology/trajectory atom-count
    mismatch said plainly, anything else MDAnalysis cannot read). ``quiet`` silences
    MDAnalysis's reading notes. Check the frames with :func:`complete_frames`."""
    import MDAnalysis as mda
    for f in (topology, *trajectories):
        if not Path(f).exists():
            raise InputError(f"file not found: {f}")
    for f in trajectories:
        check_trajectory_file(f)
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            return mda.Universe(str(topology), *map(str, trajectories), **kwargs)
    except Exception as exc:  # MDAnalysis raises many types for unreadable input
        err = _atom_count_error(exc, topology, " ".join(map(str, trajectories)))
        if err is not None:
            raise err from None
        raise InputError(f"MDAnalysis cannot read {topology} {' '.join(map(str, trajectories))}: "
                         f"{_mda_message(exc)}") from None


def _cg_universe(psf, trajectory):
    return load_universe(psf, trajectory, quiet=True)


def read_cg_system(psf, *, exclude: int = 2):
    """The CG system of a PSF written by ``cgkit map``: ``(type_names (sorted), species (n,),
    masses (n,) amu, topology)``. The :class:`~cgkit.topology.Topology` holds the PSF's bonds,
    angles and dihedrals, with non-bonded pairs up to ``exclude`` bonds apart excluded (2: 1-2
    and 1-3 pairs, as a mapping's ``exclusions: bonded``)."""
    import MDAnalysis as mda

    from .topology import Topology
    if not Path(psf).is_file():
        raise InputError(f"CG topology file not found: {psf} (the cg.psf written by cgkit map)")
    try:
        with warnings.catch_warnings():  # "no coordinate reader" for a bare PSF
            warnings.simplefilter("ignore", UserWarning)
            u = mda.Universe(str(psf))
    except Exception as exc:  # MDAnalysis raises many types for unreadable input
        raise InputError(f"cannot read the CG topology {psf}: {_mda_message(exc)}") from None
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
    u = _cg_universe(psf, trajectory)
    n = complete_frames(u, str(trajectory))
    P, F, B = [], [], []
    for i, ts in _iter_universe(u, str(trajectory), range(n)[slice(start, stop, step)], what="bead"):
        if not ts.has_forces:
            raise InputError(f"{trajectory} has no forces in frame {i}; map a trajectory "
                             "that holds forces (GROMACS trr with nstfout > 0)")
        P.append(ts.positions.astype(float))
        F.append(ts.forces.astype(float) * KJ_PER_MOL_TO_EV)
        B.append(ts.dimensions[:3].astype(float))
    if not P:
        raise InputError(f"{trajectory} holds no frames in the requested range")
    type_names, species, masses, topology = read_cg_system(psf, exclude=exclude)
    return np.array(P), np.array(F), np.array(B), type_names, species, masses, topology


# ---------------------------------------------------------------------------- LAMMPS dumps
@dataclass
class LammpsDump:
    """Frames of a LAMMPS text dump as arrays (cgkit units).

    positions (F, n, 3) Å — the coordinate columns as written (``x`` wrapped, ``xu``
    unwrapped, ``xs``/``xsu`` scaled → Cartesian), shifted with the box so that the box's lower
    corner is the origin (cgkit's cell convention); forces (F, n, 3) eV/Å or None when the dump
    has no ``fx fy fz``; velocities (F, n, 3) Å/fs or None; cells (F, 3, 3) Å (rows); steps (F,)
    MD steps; frames (F,) 0-based frame indices in the file. Atoms are sorted by ``id``."""

    positions: np.ndarray
    forces: np.ndarray | None
    velocities: np.ndarray | None
    cells: np.ndarray
    steps: np.ndarray
    frames: np.ndarray

    @property
    def box_lengths(self) -> np.ndarray:
        """(F, 3) Å: the diagonal of each (orthorhombic) cell."""
        return np.array([np.diag(c) for c in self.cells])

    @property
    def n_frames(self) -> int:
        return len(self.positions)


def read_lammps_dump(path, *, units: str = "real", coordinates: str = "auto", start=None, stop=None,
                     step=None) -> LammpsDump:
    """Read a LAMMPS text dump (``dump custom ... id [type] x|xu|xs|xsu ... [vx vy vz] [fx fy
    fz]``) through MDAnalysis's LAMMPSDUMP reader into a :class:`LammpsDump`.

    ``units``: the run's LAMMPS units style, ``'real'`` (forces kcal/(mol·Å)) or ``'metal'``
    (eV/Å); positions are Å in both. ``coordinates``: MDAnalysis's
    ``lammps_coordinate_convention`` ('auto' takes the first of x, xs, xu, xsu present;
    'unwrapped' forces ``xu yu zu``). ``start/stop/step`` select frames like a slice.
    Checked like every reader here: NaN/inf → StructureError naming the frame and atoms; a dump
    cut short → :class:`TruncatedTrajectoryWarning` and complete frames only."""
    import MDAnalysis as mda
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    if units not in _LAMMPS_UNITS:
        raise InputError(f"units must be one of {', '.join(_LAMMPS_UNITS)}, not {units!r}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(Guessed all Masses|Set all atom types).*")
            warnings.filterwarnings("ignore", message="Reader has no dt information")
            u = mda.Universe(str(path), topology_format="LAMMPSDUMP", format="LAMMPSDUMP",
                             convert_units=False, lammps_coordinate_convention=coordinates)
    except Exception as exc:  # MDAnalysis raises many types for unreadable input
        raise InputError(f"cannot read {path} as a LAMMPS text dump (needs an 'id' column and "
                         f"coordinates): {_mda_message(exc)}") from None
    f_fac, v_fac, _ = _LAMMPS_UNITS[units]
    P, F, V, C, S, I = [], [], [], [], [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Reader has no dt information")
        n = complete_frames(u, str(path))
        for i, ts in _iter_universe(u, str(path), range(n)[slice(start, stop, step)]):
            P.append(ts.positions.astype(np.float64))
            F.append(ts.forces.astype(np.float64) * f_fac if ts.has_forces else None)
            V.append(ts.velocities.astype(np.float64) * v_fac if ts.has_velocities else None)
            C.append(dimensions_to_cell(ts.dimensions))
            S.append(int(ts.data.get("step", i)))
            I.append(i)
    if not P:
        raise InputError(f"{path} holds no frames in the requested range")

    def stack(items, name):
        have = [x is not None for x in items]
        if not any(have):
            return None
        if not all(have):
            raise InputError(f"{path}: {name} are missing in frame {I[have.index(False)]} but present "
                             "in others")
        return np.array(items)
    return LammpsDump(positions=np.array(P), forces=stack(F, "forces"), velocities=stack(V, "velocities"),
                      cells=np.array(C), steps=np.array(S), frames=np.array(I))


def universe_from_frames(positions, cell, masses, bonds, molecule, resname: str = "PE"):
    """An MDAnalysis Universe of bead frames (F, B, 3) Å in an orthorhombic/triclinic ``cell``:
    one residue per chain (``molecule`` (B,) index), bonds (nb, 2), masses (B,) amu, chains made
    whole (:class:`cgkit.topology.UnwrapPlan`), held in memory — ready for
    :class:`cgkit.properties.polymer.PolymerAnalysis`."""
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    from .topology import Topology
    pos = np.asarray(positions, dtype=np.float64)
    molecule = np.asarray(molecule)
    pos = Topology(len(molecule), bonds=bonds, molecule=molecule).unwrap(pos, cell)
    n = pos.shape[1]
    n_res = int(molecule.max()) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe.empty(n, n_residues=n_res, atom_resindex=molecule, trajectory=False)
        u.add_TopologyAttr("names", ["B"] * n)
        u.add_TopologyAttr("types", ["B"] * n)
        u.add_TopologyAttr("resnames", [resname] * n_res)
        u.add_TopologyAttr("masses", np.asarray(masses, dtype=float))
        u.add_TopologyAttr("bonds", [tuple(map(int, b)) for b in bonds])
        dims = np.tile(cell_to_dimensions(cell), (len(pos), 1))
        u.load_new(pos.astype(np.float32), format=MemoryReader, dimensions=dims)
    return u


@contextlib.contextmanager
def recording_truncation(notes: list):
    """Inside the block, :class:`TruncatedTrajectoryWarning` messages are appended to ``notes``
    (for a command's summary.json) and every warning caught is shown again on leaving, so the
    user still sees it (the CLI prints cgkit warnings as one line ``cgkit <cmd>: warning: ...``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedTrajectoryWarning)
        yield notes
    for w in caught:
        if issubclass(w.category, TruncatedTrajectoryWarning):
            notes.append(str(w.message))
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)

