"""Corrupted inputs for the CLI fuzz test ("right or refused", issue 13).

A *case* is: a command line template, a function that writes the (corrupted) input files into a
folder, and what is acceptable:

* ``"refuse"``: exit 1 with one ``cgkit <cmd>: error: ...`` line (input that cannot give a
  correct result: NaN/inf, no atoms in common, overlapping atoms, a supercell narrower than the
  potential's reach, ...);
* ``"ok"``: exit 0 with a correct result (clean inputs, duplicated frames, ...);
* ``"either"``: exit 0 with a correct result (checked by ``check``) or exit 1 with a cgkit error.

Reproduce one case by hand (writes the inputs and prints the command to run)::

    .venv/bin/python -m tests.cli.corpus CASE_ID /tmp/somewhere

``CASE_ID`` as in the pytest id (``python -m tests.cli.corpus --list`` lists them).
"""
from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import data

HEXMAP = str(data.MAPPINGS / "hexane_3bead.yaml")
N_AA_FRAMES = 4
N_CG_FRAMES = 6
N_CG_MOLECULES = 20


@dataclass
class Case:
    id: str
    argv: list            # with "{d}" for the case folder; output always "{d}/out"
    prepare: Callable     # prepare(d: Path) writes the inputs
    expect: str           # "ok" | "refuse" | "either"
    check: Callable | None = None   # check(d: Path, summary: dict, text: str) on exit 0
    needs: tuple = ()     # "potential": the fitted CG potential {d}/cg_potential.pt
    error_check: Callable | None = None   # error_check(error_line, info) on exit 1
    note: str = ""
    marks: list = field(default_factory=list)

    @property
    def command(self) -> str:
        return self.argv[0]

    def args(self, d: Path) -> list[str]:
        return [a.replace("{d}", str(d)) for a in self.argv]


# ----------------------------------------------------------------------------- trajectory edits
def _aa(d: Path, n_frames=N_AA_FRAMES):
    """(gro, clean positions (F,n,3) Å, forces kJ/(mol·Å), boxes)."""
    gro, trr = data.write_aa_hexane(d, n_frames, gro="conf.gro", trr="_clean.trr")
    P, Fo, B = data.aa_frames(gro, trr)
    return gro, P, np.array(Fo), B


def _cg(d: Path):
    r = data.write_cg_hexane(d, N_CG_MOLECULES, N_CG_FRAMES, psf="cg.psf", trr="_clean_cg.trr",
                             extxyz="cg_start.extxyz")
    return r


def _edit(kind: str, P, Fo, B, rng, frame=None, atom=None):
    """Return (P, Fo or None, B, extra) after the corruption ``kind``."""
    P, B = P.copy(), B.copy()
    Fo = None if Fo is None else Fo.copy()
    nf, n = P.shape[:2]
    f = int(rng.integers(nf)) if frame is None else frame
    a = int(rng.integers(n)) if atom is None else atom
    if kind == "nan_position":
        P[f, a, int(rng.integers(3))] = np.nan
    elif kind == "inf_position":
        P[f, a, int(rng.integers(3))] = np.inf
    elif kind == "nan_force":
        Fo[f, a, int(rng.integers(3))] = np.nan
    elif kind == "inf_force":
        Fo[f, a, int(rng.integers(3))] = -np.inf
    elif kind == "no_forces":
        Fo = None
    elif kind == "fewer_atoms":
        P, Fo = P[:, :-1], (None if Fo is None else Fo[:, :-1])
    elif kind == "more_atoms":
        P = np.concatenate([P, P[:, :2] + 1.5], axis=1)
        Fo = None if Fo is None else np.concatenate([Fo, Fo[:, :2]], axis=1)
    elif kind == "duplicated_frame":
        idx = list(range(nf))
        idx.insert(f + 1, f)
        P, B = P[idx], B[idx]
        Fo = None if Fo is None else Fo[idx]
    elif kind == "zero_box":
        B[:, :3] = 0.0
    elif kind in ("clean", "truncated", "empty", "garbage"):
        pass
    else:
        raise ValueError(kind)
    info = {}
    if kind in ("nan_position", "inf_position", "nan_force", "inf_force"):
        info = dict(frame=f, atom=a)
    elif kind == "duplicated_frame":
        info = dict(frame=f)
    return P, Fo, B, info


def write_corrupt_trr(path: Path, kind: str, P, Fo, B, rng, frame=None, atom=None, frac=None):
    P2, F2, B2, info = _edit(kind, P, Fo, B, rng, frame, atom)
    data.write_trr(path, P2, B2, F2)
    if kind == "truncated":
        size = path.stat().st_size
        frac = float(rng.uniform(0.3, 0.95)) if frac is None else frac
        cut = int(size * frac)
        # not on a frame boundary: the cut falls inside a frame
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        info["bytes"] = (cut, size)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return info


# ----------------------------------------------------------------------------- structure edits
def write_structure(path: Path, kind: str, atoms, rng=None):
    """Corrupt an ASE Atoms and write it as extxyz (handedness survives; CIF would not)."""
    import ase.io
    a = atoms.copy()
    if kind == "overlap":
        a.positions[1] = a.positions[0]
    elif kind == "near_overlap":
        a.positions[1] = a.positions[0] + [0.2, 0.0, 0.0]
    elif kind == "zero_volume":
        c = a.cell.array.copy()
        c[2] = c[0] + c[1]
        a.set_cell(c, scale_atoms=False)
    elif kind == "flat_cell":
        c = a.cell.array.copy()
        c[2] = 0.0
        a.set_cell(c, scale_atoms=False)
    elif kind == "left_handed":
        c = a.cell.array.copy()
        a.set_cell(c[[1, 0, 2]], scale_atoms=False)        # same lattice, det < 0
        assert np.linalg.det(a.cell.array) < 0
    elif kind == "nan_position":
        a.positions[0, 1] = np.nan
    elif kind == "no_pbc":
        a.pbc = False
    elif kind in ("clean", "truncated"):
        pass
    else:
        raise ValueError(kind)
    ase.io.write(str(path), a, format="extxyz")
    if kind == "truncated":                     # cut inside the atom lines
        text = path.read_bytes()
        path.write_bytes(text[: int(len(text) * 0.8)])
    return path


def _si2():
    from ase.build import bulk
    return bulk("Si", "diamond", a=5.43095)


def _si8():
    from ase.build import bulk
    return bulk("Si", "diamond", a=5.43095, cubic=True)


def _cu1():
    from ase.build import bulk
    return bulk("Cu", "fcc", a=3.61)


def _cu4():
    from ase.build import bulk
    return bulk("Cu", "fcc", a=3.61, cubic=True)


def _cu4_compressed():
    a = _cu4()
    a.set_cell(a.cell.array * 0.96, scale_atoms=True)
    return a


# ----------------------------------------------------------------------------- result checks
def reports_temperature(d, summary, text):
    """check(): summary.json reports an achieved mean temperature (issue 13.5)."""
    t = find_dict_with(summary, ("mean_K", "target_K"))
    assert t is not None, "summary.json reports no achieved mean temperature beside the target (mean_K, target_K)"


def find_dict_with(obj, keys):
    """First nested dict holding all ``keys`` (depth-first), or None."""
    if isinstance(obj, dict):
        if all(k in obj for k in keys):
            return obj
        for v in obj.values():
            r = find_dict_with(v, keys)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_dict_with(v, keys)
            if r is not None:
                return r
    return None


def _voigt_invariants(C):
    """Voigt bulk and shear moduli: rotation invariants of the elastic tensor (GPa)."""
    C = np.asarray(C, float)
    K = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9
    G = (C[0, 0] + C[1, 1] + C[2, 2] - (C[0, 1] + C[1, 2] + C[0, 2]) + 3 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15
    return K, G


def elastic_matches(reference: dict, tol_gpa: float = 1.0):
    """check(): the tensor's Voigt invariants (and named cubic constants, where both runs give
    them) equal those of the reference run (the clean structure)."""
    def check(d, summary, text):
        for key in ("C_relaxed", "C_clamped"):
            if key in summary and key in reference:
                K, G = _voigt_invariants(summary[key])
                K0, G0 = _voigt_invariants(reference[key])
                assert abs(K - K0) < tol_gpa and abs(G - G0) < tol_gpa, \
                    f"{key}: K_V, G_V = {K:.2f}, {G:.2f} GPa; clean structure: {K0:.2f}, {G0:.2f} GPa"
        named, named0 = find_dict_with(summary, ("C11", "C12", "C44")), find_dict_with(reference, ("C11", "C12", "C44"))
        if named is not None and named0 is not None:
            for k in ("C11", "C12", "C44"):
                v, v0 = named[k], named0[k]
                v = v["value"] if isinstance(v, dict) else v
                v0 = v0["value"] if isinstance(v0, dict) else v0
                assert abs(float(v) - float(v0)) < tol_gpa, f"{k} = {v} GPa; clean structure: {v0} GPa"
    return check


def phonons_match(reference: dict, tol_thz: float = 0.05):
    """check(): maximum frequency and the sorted frequencies at every labelled q-point equal
    those of the reference run (clean cell, wide supercell)."""
    def check(d, summary, text):
        assert abs(summary["max_frequency"] - reference["max_frequency"]) < tol_thz, \
            (f"max frequency {summary['max_frequency']:.3f} THz; reference {reference['max_frequency']:.3f} THz")
        lf, lf0 = summary.get("labels_frequencies") or {}, reference.get("labels_frequencies") or {}
        for lab in set(lf) & set(lf0):
            a, b = np.sort(lf[lab]), np.sort(lf0[lab])
            assert a.shape == b.shape and np.abs(a - b).max() < tol_thz, \
                f"frequencies at {lab}: {np.round(a, 3)} THz; reference {np.round(b, 3)} THz"
    return check


def map_matches_clean(clean_positions, rows):
    """check(): the CG frames written equal the clean run's frames ``rows`` (Å)."""
    def check(d, summary, text):
        import MDAnalysis as mda
        u = mda.Universe(str(d / "out" / "cg.psf"), str(d / "out" / "cg.trr"))
        X = np.array([ts.positions.copy() for ts in u.trajectory])
        assert len(X) == len(rows), f"{len(X)} CG frames written; expected {len(rows)} ({rows})"
        np.testing.assert_allclose(X, clean_positions[rows], atol=2e-3)
    return check


def says(*words):
    """check(): the run's terminal output or warnings mention one of ``words``."""
    def check(d, summary, text):
        assert any(w.lower() in text.lower() for w in words), \
            f"exit 0 without saying any of {words} on the terminal or as a warning"
    return check


def no_zero_forces_as_data(d, summary, text):
    """check(): a trajectory without forces does not come out with forces presented as data."""
    import MDAnalysis as mda
    u = mda.Universe(str(d / "out" / "cg.psf"), str(d / "out" / "cg.trr"))
    for ts in u.trajectory:
        if ts.has_forces:
            assert np.abs(ts.forces).max() > 0, "cg.trr holds all-zero forces for an input without forces"
    assert "force" in text.lower(), "no warning that the input has no forces"
    for k, v in summary.items():
        if "second_moment" in k and not isinstance(v, str) and v is not None:
            vals = list(v.values()) if isinstance(v, dict) else [v]
            assert all(x is None for x in vals), f"summary {k} = {v} for a trajectory without forces"


def all_of(*checks):
    def check(d, summary, text):
        for c in checks:
            if c is not None:
                c(d, summary, text)
    return check


def names_frame_and_atom(line: str, info: dict):
    """error_check(): a NaN/inf refusal names the 0-based frame index in the file and the atom
    (issue 13.4: "error naming the frame index and atoms")."""
    f, a = info.get("frame"), info.get("atom")
    assert re.search(rf"\bframe {f}\b", line), f"the error does not name frame {f}: {line}"
    assert re.search(rf"\b{a}\b", line), f"the error does not name atom {a}: {line}"


NAN_KINDS = ("nan_position", "inf_position", "nan_force", "inf_force")


def _then_remove(prep, name):
    def p(d):
        info = prep(d)
        (d / name).unlink()
        return info
    return p


def _names_file(name):
    def check(line, info):
        assert name in line, f"the error does not name the missing file {name}: {line}"
    return check


# ----------------------------------------------------------------------------- the corpus
def _map_argv(extra=()):
    return ["map", "--mapping", HEXMAP, "--topology", "{d}/conf.gro", "--trajectory", "{d}/traj.trr",
            *extra, "--out", "{d}/out"]


def _fm_aa_argv():
    return ["fm", "--mapping", HEXMAP, "--topology", "{d}/conf.gro", "--trajectory", "{d}/traj.trr",
            "--no-pairs", "--out", "{d}/out"]


def _fm_cg_argv(extra=()):
    return ["fm", "--cg-trajectory", "{d}/cg.trr", "--cg-topology", "{d}/cg.psf", "--pair-cutoff", "8",
            *extra, "--out", "{d}/out"]


def _md_argv(structure=("--structure", "{d}/cg.psf", "--frames", "{d}/cg.trr"), extra=()):
    return ["md", "--potential", "{d}/cg_potential.pt", *structure, "--steps", "40", "--timestep", "2",
            "--write-every", "10", "--log-every", "10", "--seed", "1", *extra, "--out", "{d}/out"]


def _polymer_argv():
    return ["polymer", "--topology", "{d}/cg.psf", "--trajectory", "{d}/cg.trr", "--blocks", "2",
            "--no-plots", "--out", "{d}/out"]


def _phonons_argv(structure="{d}/Si.extxyz", potential="cgkit:sw", supercell=("3", "3", "3")):
    return ["phonons", "--structure", structure, "--potential", potential, "--supercell", *supercell,
            "--mesh", "4", "4", "4", "--tmax", "300", "--tstep", "100", "--out", "{d}/out"]


def _elastic_argv(structure="{d}/Cu.extxyz", potential="ase:EMT", extra=()):
    return ["elastic", "--structure", structure, "--potential", potential, *extra, "--out", "{d}/out"]


TRAJ_KINDS_REFUSE = ["nan_position", "inf_position", "fewer_atoms", "more_atoms", "empty", "garbage"]
FORCE_KINDS = ["nan_force", "inf_force"]


def aa_prep(kind, frame=None, atom=None, frac=None, seed=0):
    def prep(d):
        gro, P, Fo, B = _aa(d)
        return write_corrupt_trr(d / "traj.trr", kind, P, Fo, B, np.random.default_rng(seed), frame, atom, frac)
    return prep


def cg_prep(kind, frame=None, atom=None, frac=None, seed=0):
    def prep(d):
        r = _cg(d)
        return write_corrupt_trr(d / "cg.trr", kind, r["positions"], r["forces"], r["boxes"],
                                 np.random.default_rng(seed), frame, atom, frac)
    return prep


def struct_prep(name, factory, kind):
    def prep(d):
        write_structure(d / name, kind, factory())
    return prep


def cg_start_prep(kind):
    """cg.psf + clean cg.trr and a corrupted start structure cg_start.extxyz."""
    def prep(d):
        import ase.io
        _cg(d)
        shutil.copy(d / "_clean_cg.trr", d / "cg.trr")
        a = ase.io.read(str(d / "cg_start.extxyz"))
        if kind == "overlap":
            a.positions[1] = a.positions[0]
        elif kind == "nan_position":
            a.positions[3, 2] = np.nan
        ase.io.write(str(d / "cg_start.extxyz"), a, format="extxyz")
    return prep


def build_cases(refs: dict | None = None) -> list[Case]:
    """The deterministic corpus. ``refs``: results of the clean reference runs
    (``clean_map_positions``, ``phonons``, ``elastic_cu``, ``elastic_si``) used by the checks;
    without them (listing, reproduction) the checks are left out."""
    refs = refs or {}
    cases: list[Case] = []
    clean_cg = refs.get("clean_map_positions")

    def cmp_map(rows):
        return map_matches_clean(clean_cg, rows) if clean_cg is not None else None

    # --- missing input files (every command) ----------------------------------------------
    for cid, argv, prep, missing, needs in (
            ("map-missing-trajectory", _map_argv(), aa_prep("clean"), "traj.trr", ()),
            ("fm-cg-missing-topology", _fm_cg_argv(), cg_prep("clean"), "cg.psf", ()),
            ("fm-cg-missing-trajectory", _fm_cg_argv(), cg_prep("clean"), "cg.trr", ()),
            ("md-missing-frames", _md_argv(), cg_prep("clean"), "cg.trr", ("potential",)),
            ("polymer-missing-trajectory", _polymer_argv(), cg_prep("clean"), "cg.trr", ()),
            ("phonons-missing-structure", _phonons_argv(), struct_prep("Si.extxyz", _si2, "clean"), "Si.extxyz", ()),
            ("elastic-missing-structure", _elastic_argv(), struct_prep("Cu.extxyz", _cu4, "clean"), "Cu.extxyz", ())):
        cases.append(Case(cid, argv, _then_remove(prep, missing), "refuse", needs=needs,
                          error_check=_names_file(missing)))
    # --- map ------------------------------------------------------------------------------
    cases.append(Case("map-clean", _map_argv(), aa_prep("clean"), "ok", cmp_map(list(range(N_AA_FRAMES)))))
    for k in TRAJ_KINDS_REFUSE + FORCE_KINDS:
        cases.append(Case(f"map-{k}", _map_argv(), aa_prep(k, frame=2, atom=17), "refuse",
                          error_check=names_frame_and_atom if k in NAN_KINDS else None))
    cases.append(Case("map-no_forces", _map_argv(), aa_prep("no_forces"), "ok", no_zero_forces_as_data,
                      note="issue 13.4: positions-only output that says so"))
    cases.append(Case("map-duplicated_frame", _map_argv(), aa_prep("duplicated_frame", frame=1), "ok",
                      cmp_map([0, 1, 1, 2, 3])))
    cases.append(Case("map-truncated", _map_argv(), aa_prep("truncated", frac=0.6), "either",
                      all_of(says("truncat", "incomplete", "last complete"), cmp_map([0, 1])),
                      note="issue 13.4: warning naming the last complete frame, or an error"))
    # --- fm -------------------------------------------------------------------------------
    cases.append(Case("fm-cg-clean", _fm_cg_argv(), cg_prep("clean"), "ok"))
    for k in ["nan_position", "inf_force", "nan_force", "no_forces", "fewer_atoms", "garbage"]:
        cases.append(Case(f"fm-cg-{k}", _fm_cg_argv(), cg_prep(k, frame=3, atom=7), "refuse",
                          error_check=names_frame_and_atom if k in NAN_KINDS else None))
    cases.append(Case("fm-cg-truncated", _fm_cg_argv(), cg_prep("truncated", frac=0.7), "either",
                      says("truncat", "incomplete", "last complete")))
    cases.append(Case("fm-cg-duplicated_frame", _fm_cg_argv(), cg_prep("duplicated_frame", frame=2), "ok"))
    cases.append(Case("fm-aa-nan_force", _fm_aa_argv(), aa_prep("nan_force", frame=1, atom=5), "refuse",
                      error_check=names_frame_and_atom))
    cases.append(Case("fm-aa-truncated", _fm_aa_argv(), aa_prep("truncated", frac=0.6), "either",
                      says("truncat", "incomplete", "last complete")))
    cases.append(Case("fm-aa-no_forces", _fm_aa_argv(), aa_prep("no_forces"), "refuse"))
    # --- md -------------------------------------------------------------------------------
    cases.append(Case("md-clean", _md_argv(), cg_prep("clean"), "ok", needs=("potential",)))
    for k in ["nan_position", "fewer_atoms", "garbage", "empty"]:
        cases.append(Case(f"md-frames-{k}", _md_argv(), cg_prep(k, frame=N_CG_FRAMES - 1, atom=4), "refuse",
                          needs=("potential",), error_check=names_frame_and_atom if k in NAN_KINDS else None))
    cases.append(Case("md-frames-no_forces", _md_argv(), cg_prep("no_forces"), "ok", needs=("potential",),
                      note="md starts from positions; forces are not needed"))
    cases.append(Case("md-frames-truncated", _md_argv(), cg_prep("truncated", frac=0.75), "either",
                      needs=("potential",)))
    xyz = ("--structure", "{d}/cg_start.extxyz")
    for k in ["overlap", "nan_position"]:
        cases.append(Case(f"md-structure-{k}", _md_argv(structure=xyz), cg_start_prep(k), "refuse",
                          needs=("potential",)))
    cases.append(Case("md-sw-si8-overlap", ["md", "--potential", "cgkit:sw", "--structure", "{d}/Si8.extxyz",
                                            "--steps", "20", "--timestep", "1", "--out", "{d}/out"],
                      struct_prep("Si8.extxyz", _si8, "overlap"), "refuse"))
    cases.append(Case("md-sw-si8-dt15", ["md", "--potential", "cgkit:sw", "--structure", "{d}/Si8.extxyz",
                                         "--steps", "300", "--timestep", "15", "--temperature", "300",
                                         "--log-every", "10", "--write-every", "100", "--seed", "0",
                                         "--out", "{d}/out"],
                      struct_prep("Si8.extxyz", _si8, "clean"), "either",
                      all_of(says("timestep", "time step", "dt_max"), reports_temperature),
                      note="issue 13.5: 15 fs > SW's stable step: warn or refuse, report <T>"))
    # --- polymer --------------------------------------------------------------------------
    cases.append(Case("polymer-clean", _polymer_argv(), cg_prep("clean"), "ok"))
    for k in ["nan_position", "inf_position", "fewer_atoms", "garbage"]:
        cases.append(Case(f"polymer-{k}", _polymer_argv(), cg_prep(k, frame=2, atom=10), "refuse",
                          error_check=names_frame_and_atom if k in NAN_KINDS else None))
    cases.append(Case("polymer-truncated", _polymer_argv(), cg_prep("truncated", frac=0.6), "either",
                      says("truncat", "incomplete", "last complete")))
    cases.append(Case("polymer-duplicated_frame", _polymer_argv(), cg_prep("duplicated_frame", frame=1), "ok"))
    cases.append(Case("polymer-no_forces", _polymer_argv(), cg_prep("no_forces"), "ok"))
    # --- phonons --------------------------------------------------------------------------
    ph_ref = refs.get("phonons")
    ph_check = phonons_match(ph_ref) if ph_ref else None
    cases.append(Case("phonons-clean", _phonons_argv(), struct_prep("Si.extxyz", _si2, "clean"), "ok", ph_check))
    cases.append(Case("phonons-left_handed", _phonons_argv(), struct_prep("Si.extxyz", _si2, "left_handed"),
                      "either", ph_check))
    for k in ["overlap", "zero_volume", "flat_cell", "nan_position", "no_pbc", "truncated"]:
        cases.append(Case(f"phonons-{k}", _phonons_argv(), struct_prep("Si.extxyz", _si2, k), "refuse"))
    cases.append(Case("phonons-supercell_1", _phonons_argv(supercell=("1", "1", "1")),
                      struct_prep("Si.extxyz", _si2, "clean"), "refuse",
                      note="issue 13.2: supercell narrower than SW's reach"))
    cases.append(Case("phonons-supercell_2", _phonons_argv(supercell=("2", "2", "2")),
                      struct_prep("Si.extxyz", _si2, "clean"), "either", ph_check,
                      note="2x2x2 primitive cells (widths 6.3 Å) < twice SW's 3.77 Å cutoff"))
    cases.append(Case("phonons-cu_emt_supercell_1", _phonons_argv("{d}/Cu.extxyz", "ase:EMT", ("1", "1", "1")),
                      struct_prep("Cu.extxyz", _cu1, "clean"), "refuse",
                      note="issue 13.9: primitive Cu EMT 1x1x1 (ValueError: arange)"))
    # --- elastic --------------------------------------------------------------------------
    el_cu, el_si = refs.get("elastic_cu"), refs.get("elastic_si")
    cu_check = elastic_matches(el_cu) if el_cu else None
    si_check = elastic_matches(el_si) if el_si else None
    cases.append(Case("elastic-cu-clean", _elastic_argv(), struct_prep("Cu.extxyz", _cu4, "clean"), "ok", cu_check))
    cases.append(Case("elastic-cu-left_handed", _elastic_argv(), struct_prep("Cu.extxyz", _cu4, "left_handed"),
                      "either", cu_check))
    for k in ["overlap", "zero_volume", "flat_cell", "nan_position", "no_pbc", "truncated"]:
        cases.append(Case(f"elastic-cu-{k}", _elastic_argv(), struct_prep("Cu.extxyz", _cu4, k), "refuse"))
    cases.append(Case("elastic-cu-compressed-no-relax", _elastic_argv(),
                      struct_prep("Cu.extxyz", _cu4_compressed, "clean"), "either", says("stress"),
                      note="issue 13.6: 4 % compressed Cu (tens of GPa residual stress) without --relax: warn"))
    si = ("{d}/Si.extxyz", "cgkit:sw")
    cases.append(Case("elastic-si-clean", _elastic_argv(*si), struct_prep("Si.extxyz", _si8, "clean"), "ok", si_check))
    cases.append(Case("elastic-si-left_handed", _elastic_argv(*si), struct_prep("Si.extxyz", _si8, "left_handed"),
                      "either", si_check))
    cases.append(Case("elastic-si-overlap", _elastic_argv(*si), struct_prep("Si.extxyz", _si8, "overlap"), "refuse"))
    return cases


# ----------------------------------------------------------------------------- seeded random layer
RANDOM_TRAJ_KINDS = ["nan_position", "inf_position", "nan_force", "inf_force", "no_forces", "fewer_atoms",
                     "more_atoms", "duplicated_frame", "truncated", "empty", "garbage", "zero_box"]
#: kinds a command must refuse (anything else: right or refused)
MUST_REFUSE = {
    "map": {"nan_position", "inf_position", "nan_force", "inf_force", "fewer_atoms", "more_atoms", "empty", "garbage"},
    "fm": {"nan_position", "inf_position", "nan_force", "inf_force", "no_forces", "fewer_atoms", "more_atoms",
           "empty", "garbage"},
    "polymer": {"nan_position", "inf_position", "fewer_atoms", "more_atoms", "empty", "garbage"},
    "md": {"fewer_atoms", "more_atoms", "empty", "garbage"},
}


RANDOM_STRUCT_KINDS = ["clean", "left_handed", "overlap", "near_overlap", "zero_volume", "flat_cell",
                       "nan_position", "no_pbc"]


def random_structure_case(seed: int, refs: dict | None = None) -> Case:
    """phonons or elastic on a randomly corrupted crystal (random supercell for phonons)."""
    refs = refs or {}
    rng = np.random.default_rng(5000 + seed)
    kind = RANDOM_STRUCT_KINDS[int(rng.integers(len(RANDOM_STRUCT_KINDS)))]
    expect = "either" if kind in ("clean", "left_handed", "near_overlap") else "refuse"
    if rng.uniform() < 0.5:
        sc = [str(int(x)) for x in rng.integers(1, 4, 3)]
        ref = refs.get("phonons")
        return Case(f"random{seed}-phonons-{kind}-{'x'.join(sc)}", _phonons_argv(supercell=sc),
                    struct_prep("Si.extxyz", _si2, kind), expect,
                    phonons_match(ref) if ref and kind != "near_overlap" else None)
    if rng.uniform() < 0.5:
        ref = refs.get("elastic_cu")
        return Case(f"random{seed}-elastic-cu-{kind}", _elastic_argv(), struct_prep("Cu.extxyz", _cu4, kind),
                    expect, elastic_matches(ref) if ref and kind != "near_overlap" else None)
    ref = refs.get("elastic_si")
    return Case(f"random{seed}-elastic-si-{kind}", _elastic_argv("{d}/Si.extxyz", "cgkit:sw"),
                struct_prep("Si.extxyz", _si8, kind), expect,
                elastic_matches(ref) if ref and kind != "near_overlap" else None)


def random_case(seed: int, refs: dict | None = None) -> Case:
    """One random corruption drawn from ``seed``: one draw in three is a crystal for phonons or
    elastic (:func:`random_structure_case`), the others a trajectory (command, kind, frame,
    atom, truncation point)."""
    if seed % 3 == 2:
        return random_structure_case(seed, refs)
    rng = np.random.default_rng(1000 + seed)
    cmd = ["map", "fm", "polymer", "md"][int(rng.integers(4))]
    kind = RANDOM_TRAJ_KINDS[int(rng.integers(len(RANDOM_TRAJ_KINDS)))]
    frac = float(rng.uniform(0.05, 0.98))
    s = int(rng.integers(1 << 30))
    if cmd == "map":
        argv, prep = _map_argv(), aa_prep(kind, frac=frac, seed=s)
    elif cmd == "fm":
        argv, prep = _fm_cg_argv(), cg_prep(kind, frac=frac, seed=s)
    elif cmd == "polymer":
        argv, prep = _polymer_argv(), cg_prep(kind, frac=frac, seed=s)
    else:
        argv, prep = _md_argv(), cg_prep(kind, frac=frac, seed=s)
    expect = "refuse" if kind in MUST_REFUSE[cmd] else "either"
    if cmd == "md" and kind in ("nan_position", "inf_position"):
        expect = "either"     # md starts from the last frame: a NaN elsewhere may be harmless
    return Case(f"random{seed}-{cmd}-{kind}", argv, prep, expect, needs=("potential",) if cmd == "md" else (),
                error_check=names_frame_and_atom if kind in NAN_KINDS and expect == "refuse" else None)


# ----------------------------------------------------------------------------- shared set-up
def fit_potential(d: Path) -> Path:
    """The CG potential md cases run with: ``cgkit fm`` on the clean CG hexane subset."""
    from cgkit.cli import main
    src = d / "_fit"
    r = data.write_cg_hexane(src, N_CG_MOLECULES, N_CG_FRAMES)
    rc = main(["fm", "--cg-trajectory", str(r["trr"]), "--cg-topology", str(r["psf"]), "--pair-cutoff", "8",
               "--out", str(src / "fm")])
    if rc != 0:
        raise RuntimeError(f"cgkit fm on the clean CG data exited {rc}: the md cases cannot run")
    return src / "fm" / "cg_potential.pt"


def prepare_case(case: Case, d: Path, potential: Path | None = None):
    d.mkdir(parents=True, exist_ok=True)
    info = case.prepare(d)
    if "potential" in case.needs:
        if potential is None:
            potential = fit_potential(d)
        shutil.copy(potential, d / "cg_potential.pt")
    return info


def _main(argv):
    if argv[:1] == ["--list"]:
        for c in build_cases():
            print(c.id)
        return 0
    case_id, d = argv[0], Path(argv[1])
    m = re.match(r"random(\d+)", case_id)
    case = random_case(int(m.group(1))) if m else {c.id: c for c in build_cases()}[case_id]
    prepare_case(case, d)
    print("cgkit " + " ".join(case.args(d)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
