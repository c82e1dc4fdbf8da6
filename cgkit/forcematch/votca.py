"""Reproducing VOTCA ``csg_fmatch`` runs: its settings files, its conventions, its tables.

:func:`read_votca_settings` reads the interaction grids of a VOTCA options file (the
``fmatch.xml`` of ``csg_fmatch --options`` or an iterative-workflow ``settings.xml``) into cgkit
grids (Å, deg) keyed by cgkit interaction labels, together with the block size and solver choice.
:func:`votca_options` turns them into the keyword arguments that make
:class:`~cgkit.forcematch.SplineForceMatching` compute what ``csg_fmatch`` computes:

* the same function space — VOTCA fits natural cubic splines (f'' = 0 at both grid ends) with
  knots on the grid; cgkit's uniform cubic B-splines on the same knots with the two
  natural-boundary constraints span exactly that space (``solve(natural=True)``);
* the same treatment of samples outside a grid — VOTCA evaluates them on the end polynomial
  pieces and keeps them in the fit (``outside="extrapolate"``); cgkit's default drops them;
* the same averaging — VOTCA solves every block of ``frames_per_block`` frames on its own and
  reports the mean of the block solutions with the error √((⟨x²⟩ - ⟨x⟩²)/n_blocks)
  (``solve(errors="blocks")``), where cgkit's default fits all frames at once with jackknife errors;
* no regularisation (``method="lstsq"``) and untrimmed tables over the full grid.

Units: VOTCA files are in nm, kJ/mol and rad; cgkit grids are in Å and deg, forces in eV/Å and
eV/rad. :func:`read_votca_table` reads a ``csg_fmatch`` ``.force`` table into cgkit units.

Bonded interactions are named freely in VOTCA (``<name>bond</name>``); their bead types come
from the mapping file. Give that file (``mapping=``, the ``--cg`` XML of ``csg_fmatch``), or let
the name be matched to the system's only interaction of that kind (a name starting with
"bond", "angle" or "dihedral").
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .interaction import Interaction

__all__ = ["VotcaSettings", "read_votca_settings", "votca_options", "read_votca_table",
           "votca_2022_angle_gradient", "votca_angle_gradient",
           "KJ_PER_MOL_NM_PER_EV_PER_A", "KJ_PER_MOL_PER_EV"]

#: 1 eV/Å in kJ/mol/nm and 1 eV in kJ/mol (CODATA 2018: e·N_A = 96485.332 C/mol)
KJ_PER_MOL_PER_EV = 96.485332
KJ_PER_MOL_NM_PER_EV_PER_A = 964.85332

_KINDS = ("bond", "angle", "dihedral")


@dataclass
class VotcaSettings:
    """Grids and solver settings of a VOTCA force-matching options file.

    grids : {cgkit label: (min, max, spacing)} in Å (pairs, bonds) or deg (angles), or a
        spacing in deg (dihedrals: cgkit's periodic grid spans [-180, 180))
    out_grids : {label: (min, max, out_step)} — VOTCA's output grid (where its tables are written)
    names : {label: VOTCA interaction name} (the ``<name>`` of the XML entry, the stem of its
        ``.force`` file)
    frames_per_block : VOTCA's block size (None when the file has no ``<fmatch>`` section)
    constrained : ``constrainedLS`` (VOTCA's exact constraints; cgkit always imposes them
        exactly, so both settings give the same tables up to round-off)
    threebody : three-body entries {"types": (centre, neighbour, neighbour), "a": cutoff a·σ in Å,
        "gamma": γ·σ in Å (cgkit's :class:`~cgkit.forcematch.threebody.ThreeBody` parameters),
        "grid": VOTCA's θ grid (min, max, spacing) deg, "name": str}; VOTCA fits f as a spline in
        θ, cgkit in cos θ (smooth at 0° and 180° by construction)
    """
    grids: dict = field(default_factory=dict)
    out_grids: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    frames_per_block: int | None = None
    constrained: bool = True
    threebody: list = field(default_factory=list)


def _text(el, path, what, file, default=None):
    node = el.find(path)
    if node is None or node.text is None or not node.text.strip():
        if default is not None:
            return default
        raise InputError(f"{file}: {what} has no <{path}>; a VOTCA force-matching entry needs "
                         "<fmatch><min>, <max>, <step> (or <min>, <max>, <step> directly)")
    return node.text.strip()


def _float(el, path, what, file, default=None):
    s = _text(el, path, what, file, None if default is None else str(default))
    try:
        v = float(s)
    except ValueError:
        raise InputError(f"{file}: {what}: <{path}> is '{s}', not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{file}: {what}: <{path}> is not finite")
    return v


def _parse_xml(path) -> ET.Element:
    p = Path(path)
    try:
        return ET.parse(p).getroot()
    except OSError as exc:
        raise InputError(f"cannot read the VOTCA file '{p}': {exc}") from exc
    except ET.ParseError as exc:
        raise InputError(f"'{p}' is not well-formed XML ({exc}); give VOTCA's fmatch.xml / settings.xml") from exc


def _mapping_bonded(mapping) -> dict:
    """{VOTCA bonded name: (kind, [bead-type tuples])} from a VOTCA mapping XML (cg_molecule)."""
    root = _parse_xml(mapping)
    mols = [root] if root.tag == "cg_molecule" else root.findall(".//cg_molecule")
    out: dict = {}
    for mol in mols:
        types = {}
        for bead in mol.findall("./topology/cg_beads/cg_bead"):
            name, typ = bead.findtext("name"), bead.findtext("type")
            if name and typ:
                types[name.strip()] = typ.strip()
        for kind in _KINDS:
            for b in mol.findall(f"./topology/cg_bonded/{kind}"):
                name = (b.findtext("name") or "").strip()
                words = (b.findtext("beads") or "").split()
                k = {"bond": 2, "angle": 3, "dihedral": 4}[kind]
                if not name or len(words) % k:
                    raise InputError(f"{mapping}: <{kind}> '{name}' lists {len(words)} beads, not a multiple of {k}")
                missing = sorted({w for w in words if w not in types})
                if missing:
                    raise InputError(f"{mapping}: <{kind}> '{name}' names beads {missing} that are not cg_beads")
                tuples = {tuple(types[w] for w in words[i:i + k]) for i in range(0, len(words), k)}
                out.setdefault(name, (kind, set()))[1].update(tuples)
    return out


def _resolve_bonded(name, kind_hint, mapped, interactions, file):
    """The cgkit Interaction(s) of a VOTCA bonded entry."""
    if name in mapped:
        kind, tuples = mapped[name]
        found = {Interaction(kind, t) for t in tuples}
        if len(found) != 1:
            raise InputError(f"{file}: VOTCA interaction '{name}' covers several cgkit interaction types "
                             f"{sorted(map(str, found))}; cgkit fits one table per bead-type tuple — split "
                             "it into one VOTCA entry per type tuple")
        return found.pop()
    kind = next((k for k in _KINDS if name.lower().startswith(k)), kind_hint)
    if interactions is not None and kind is not None:
        cands = [Interaction.parse(i) for i in interactions]
        cands = [i for i in cands if i.kind == kind]
        if len(cands) == 1:
            return cands[0]
        raise InputError(f"{file}: cannot tell which {kind} the VOTCA interaction '{name}' is (the system has "
                         f"{[str(c) for c in cands] or 'none'}); give the VOTCA mapping file (the --cg XML of "
                         "csg_fmatch) that defines it")
    raise InputError(f"{file}: cannot tell the kind and bead types of the VOTCA bonded interaction '{name}'; "
                     "give the VOTCA mapping file (the --cg XML of csg_fmatch) that defines it")


def read_votca_settings(path, *, interactions=None, mapping=None) -> VotcaSettings:
    """Grids (Å, deg) and solver settings from a VOTCA options file.

    path : ``fmatch.xml`` (``csg_fmatch --options``) or ``settings.xml``; a ``<fmatch>`` block
        inside an interaction entry is used when present, else its own ``<min>/<max>/<step>``
    interactions : the labels of the CG system's interactions (to match bonded names when no
        mapping is given)
    mapping : VOTCA mapping XML (``--cg``) defining the bonded interactions by name
    """
    root = _parse_xml(path)
    if root.tag != "cg":
        raise InputError(f"{path}: the root element is <{root.tag}>, not <cg>; give VOTCA's fmatch.xml or settings.xml")
    mapped = _mapping_bonded(mapping) if mapping is not None else {}
    st = VotcaSettings()
    fmb = root.find("fmatch")
    if fmb is not None:
        if fmb.find("frames_per_block") is not None:
            n = _float(fmb, "frames_per_block", "<fmatch>", path)
            if n < 1 or n != int(n):
                raise InputError(f"{path}: <frames_per_block> must be a positive integer, got {n}")
            st.frames_per_block = int(n)
        c = (fmb.findtext("constrainedLS") or "true").strip().lower()
        st.constrained = c in ("true", "1", "yes")

    def grid_of(el, what):
        src = el.find("fmatch") if el.find("fmatch/min") is not None else el
        lo, hi = _float(src, "min", what, path), _float(src, "max", what, path)
        step = _float(src, "step", what, path)
        out = _float(src, "out_step", what, path, default=step) if src is not el else step
        if not (hi > lo and step > 0 and out > 0):
            raise InputError(f"{path}: {what}: need min < max and step > 0, got min {lo}, max {hi}, step {step}")
        return lo, hi, step, out, src

    for el in root.findall("bonded"):
        name = (el.findtext("name") or "").strip()
        if not name:
            raise InputError(f"{path}: a <bonded> entry has no <name>")
        inter = _resolve_bonded(name, None, mapped, interactions, path)
        lo, hi, step, out, src = grid_of(el, f"bonded '{name}'")
        if inter.kind == "bond":
            st.grids[inter.label] = (10 * lo, 10 * hi, 10 * step)
            st.out_grids[inter.label] = (10 * lo, 10 * hi, 10 * out)
        elif inter.kind == "angle":
            st.grids[inter.label] = tuple(math.degrees(v) for v in (lo, hi, step))
            st.out_grids[inter.label] = tuple(math.degrees(v) for v in (lo, hi, out))
            if lo < -1e-9 or hi > math.pi + 1e-3:
                raise InputError(f"{path}: angle '{name}': VOTCA angles are in rad within [0, π], got [{lo}, {hi}]")
            lo_d, hi_d = max(math.degrees(lo), 0.0), min(math.degrees(hi), 180.0)
            st.grids[inter.label] = (lo_d, hi_d, math.degrees(step))
        else:
            st.grids[inter.label] = math.degrees(step)
            st.out_grids[inter.label] = tuple(math.degrees(v) for v in (lo, hi, out))
        st.names[inter.label] = name
    for el in root.findall("non-bonded"):
        name = (el.findtext("name") or "").strip() or "?"
        tb = (el.findtext("threebody") or "false").strip().lower() in ("true", "1", "yes")
        t1, t2 = (el.findtext("type1") or "").strip(), (el.findtext("type2") or "").strip()
        if not (t1 and t2):
            raise InputError(f"{path}: non-bonded '{name}' needs <type1> and <type2>")
        lo, hi, step, out, src = grid_of(el, f"non-bonded '{name}'")
        if tb:
            t3 = (el.findtext("type3") or "").strip()
            if not t3:
                raise InputError(f"{path}: three-body '{name}' needs <type3>")
            sig = _float(src, "sigma", name, path, 1.0)
            st.threebody.append({"name": name, "types": (t1, t2, t3),
                                 "a": 10 * _float(src, "a", name, path, 0.37) * sig,
                                 "gamma": 10 * _float(src, "gamma", name, path, 0.12) * sig,
                                 "grid": tuple(math.degrees(v) for v in (lo, hi, step))})
            continue
        if "*" in (t1, t2):  # VOTCA's wildcard: the system's matching pair (one only)
            fixed = [t for t in (t1, t2) if t != "*"]
            cands = [Interaction.parse(i) for i in (interactions or [])]
            cands = [i for i in cands if i.kind == "pair" and all(t in i.types for t in fixed)]
            if len(cands) != 1:
                raise InputError(f"{path}: non-bonded '{name}' uses the wildcard type '*', which cgkit maps only "
                                 f"onto a system with exactly one matching pair type (found "
                                 f"{[str(c) for c in cands] or 'none'}); write the bead types out")
            t1, t2 = cands[0].types
        inter = Interaction("pair", (t1, t2))
        st.grids[inter.label] = (10 * lo, 10 * hi, 10 * step)
        st.out_grids[inter.label] = (10 * lo, 10 * hi, 10 * out)
        st.names[inter.label] = name
    if not st.grids and not st.threebody:
        raise InputError(f"{path}: no <bonded> or <non-bonded> entries; nothing to fit")
    return st


def votca_options(settings: VotcaSettings) -> tuple[dict, dict]:
    """(SplineForceMatching keyword arguments, solve() keyword arguments) that reproduce
    ``csg_fmatch`` with these settings (see the module docstring)."""
    fm = {"pair": None, "bond": None, "angle": None, "dihedral": None, "grids": dict(settings.grids),
          "outside": "extrapolate", "block_size": settings.frames_per_block or 10}
    solve = {"natural": True, "errors": "blocks", "method": "lstsq", "trim": False}
    return fm, solve


def read_votca_table(path, kind: str):
    """A ``csg_fmatch`` ``.force`` table → (x, f, err) in cgkit units: x in Å (pairs, bonds) or
    rad (angles, dihedrals), f and its block error in eV/Å or eV/rad."""
    try:
        data = np.loadtxt(path, usecols=(0, 1, 2), comments=("#", "@"), ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the VOTCA table '{path}': {exc}") from exc
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise InputError(f"the VOTCA table '{path}' is empty or holds NaN/inf")
    x, f, e = data.T
    if kind in ("angle", "dihedral"):
        return x, f / KJ_PER_MOL_PER_EV, e / KJ_PER_MOL_PER_EV
    return 10 * x, f / KJ_PER_MOL_NM_PER_EV_PER_A, e / KJ_PER_MOL_NM_PER_EV_PER_A


def votca_2022_angle_gradient(kind, pos, idx, cell, pbc, shifts=None):
    """∂x/∂r of bonded instances as VOTCA 2022.1's ``IAngle::Grad`` computes it for angles
    (votca/csg/interaction.h; v1 = r0 - r1, v2 = r2 - r1, acos' = 1/sin θ):

    * bead 0: acos'·(-v2/(|v1||v2|) + (v1·v2) v1/(|v1|²|v2|²)), where the correct projection
      term is (v1·v2) v1/(|v1|³|v2|); the two agree only when |v1| = |v2|;
    * bead 2: acos'·(-v1/(|v1||v2|)) + (v1·v2) v2/(|v1||v2|³) — the 1/sin θ factor multiplies
      only the first term (an operator-precedence slip), so the gradient is wrong at every θ
      and the three gradients no longer sum to zero.

    A diagnostic, not a model: it lets cgkit reproduce ``csg_fmatch`` tables to round-off (see
    :func:`votca_angle_gradient`) and so shows that the differences between the two tools on
    angle-containing systems come from this gradient. Other kinds: cgkit's gradients.
    """
    import torch

    from .geometry import instance_gradients, minimum_image
    x, g = instance_gradients(kind, pos, idx, cell, pbc, shifts)
    if kind != "angle" or len(idx) == 0:
        return x, g
    v1 = minimum_image(pos[idx[:, 0]] - pos[idx[:, 1]], cell, pbc)
    v2 = minimum_image(pos[idx[:, 2]] - pos[idx[:, 1]], cell, pbc)
    n1, n2 = v1.norm(dim=1, keepdim=True), v2.norm(dim=1, keepdim=True)
    d = (v1 * v2).sum(1, keepdim=True)
    ap = 1.0 / torch.sqrt((1 - d ** 2 / (n1 ** 2 * n2 ** 2)).clamp_min(1e-300))
    g0 = ap * (-v2 / (n1 * n2) + d * v1 / (n1 ** 2 * n2 ** 2))
    g1 = ap * ((v1 + v2) / (n1 * n2) - d * (n2 ** 2 * v1 + n1 ** 2 * v2) / (n1 ** 3 * n2 ** 3))
    g2 = ap * (-v1 / (n1 * n2)) + d * v2 / (n1 * n2 ** 3)
    return x, torch.stack([g0, g1, g2], 1)


class votca_angle_gradient:
    """Context manager: :class:`SplineForceMatching` accumulations inside it use
    :func:`votca_2022_angle_gradient` (to reproduce ``csg_fmatch`` 2022 exactly)::

        with votca_angle_gradient():
            fm.accumulate(positions, forces, boxes)
    """

    def __enter__(self):
        from . import mscg
        self._orig = mscg.instance_gradients
        mscg.instance_gradients = votca_2022_angle_gradient
        return self

    def __exit__(self, *exc):
        from . import mscg
        mscg.instance_gradients = self._orig
        return False
