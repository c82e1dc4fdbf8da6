"""Import existing mapping definitions: VOTCA ``<cg_molecule>`` XML and Martini/backward
``.map`` files, into a :class:`MappingDefinition` (then compiled like any cgkit YAML).

VOTCA: beads list atoms as ``RESNR:RESNAME:ATOM`` (RESNR 1-based within the molecule); the
template matches the residue-name sequence those references imply; ``<maps>`` give position
weights (VOTCA's own convention, e.g. carbon 12, hydrogen 1); ``<cg_bonded>`` bonds, angles and
dihedrals become the CG topology. VOTCA's force map (sum of bead atom forces) is ``basic``.

Martini/backward ``.map``: ``[ molecule ]`` residue names, ``[ martini ]`` bead names,
``[ atoms ]`` lines ``index name bead [bead ...]``. An atom listed under several beads is shared;
repeating a bead name increases that atom's weight (centre of geometry with multiplicities, the
Martini convention). Bead names prefixed with ``!`` are ignored. With shared atoms the force map
uses each bead's unshared atoms only (valid: M·Dᵀ = I).
"""
from __future__ import annotations

import re
from pathlib import Path
from xml.parsers import expat

from ..errors import MappingError
from .definition import (AtomRef, BeadDef, BondedRef, MappingDefinition, TemplateDef,
                         check_bonded_names)

__all__ = ["read_votca_xml", "read_martini_map", "read_tpr_constraints", "topology_constraints"]


class _Node:
    __slots__ = ("tag", "attrs", "children", "text", "line")

    def __init__(self, tag, attrs, line):
        self.tag, self.attrs, self.children, self.text, self.line = tag, attrs, [], "", line

    def find(self, tag):
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag):
        return [c for c in self.children if c.tag == tag]


def _parse_xml(path: Path) -> _Node:
    root = _Node("#doc", {}, 1)
    stack = [root]
    p = expat.ParserCreate()

    def start(tag, attrs):
        n = _Node(tag, attrs, p.CurrentLineNumber)
        stack[-1].children.append(n)
        stack.append(n)

    def end(tag):
        stack.pop()

    def data(txt):
        stack[-1].text += txt

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, data
    try:
        p.Parse(path.read_bytes(), True)
    except expat.ExpatError as exc:
        raise MappingError(f"XML syntax error: {expat.ErrorString(exc.code)}; fix the XML",
                           file=str(path), line=exc.lineno) from None
    return root


def read_votca_xml(path) -> MappingDefinition:
    """Read a VOTCA mapping file (one ``<cg_molecule>``, or several inside a root element)."""
    path = Path(path)
    f = str(path)
    doc = _parse_xml(path)
    mols = []

    def collect(n):
        for c in n.children:
            if c.tag == "cg_molecule":
                mols.append(c)
            else:
                collect(c)
    collect(doc)
    if not mols:
        raise MappingError("no <cg_molecule> element found; is this a VOTCA mapping file?", file=f,
                           line=1)
    templates = []
    for mol in mols:
        templates.append(_votca_molecule(mol, f))
    defn = MappingDefinition(templates=tuple(templates), name=path.stem,
                             description=f"imported from VOTCA mapping {path.name}",
                             force_map="basic", file=f)
    check_bonded_names(defn)
    return defn


def _text(node, tag, f, required=True):
    c = node.find(tag)
    if c is None:
        if required:
            raise MappingError(f"<{node.tag}> needs a <{tag}> element", file=f, line=node.line,
                               field=tag)
        return None
    return c.text.strip()


def _votca_molecule(mol: _Node, f) -> TemplateDef:
    name = _text(mol, "name", f)
    topo = mol.find("topology")
    if topo is None or topo.find("cg_beads") is None:
        raise MappingError("<cg_molecule> needs <topology><cg_beads>", file=f, line=mol.line,
                           field="topology")
    maps = {}
    maps_node = mol.find("maps")
    for mp in (maps_node.findall("map") if maps_node is not None else []):
        mname = _text(mp, "name", f)
        try:
            maps[mname] = ([float(x) for x in _text(mp, "weights", f).split()], mp.line)
        except ValueError:
            raise MappingError(f"map '{mname}' has non-numeric weights", file=f, line=mp.line,
                               field="weights") from None
    residues: dict[int, str] = {}
    beads = []
    for cb in topo.find("cg_beads").findall("cg_bead"):
        bname = _text(cb, "name", f)
        btype = _text(cb, "type", f, required=False) or bname
        mapname = _text(cb, "mapping", f)
        specs = _text(cb, "beads", f).split()
        if not specs:
            raise MappingError(f"bead '{bname}' has no atoms; list at least one atom", file=f,
                               line=cb.line, field="beads")
        atoms = []
        for s in specs:
            parts = s.split(":")
            if len(parts) != 3 or not parts[0].lstrip("-").isdigit():
                raise MappingError(f"bead '{bname}': atom '{s}' must be RESNR:RESNAME:ATOM", file=f,
                                   line=cb.line, field="beads")
            rnum, rname, aname = int(parts[0]), parts[1], parts[2]
            if residues.setdefault(rnum, rname) != rname:
                raise MappingError(f"residue {rnum} named both {residues[rnum]} and {rname}", file=f,
                                   line=cb.line, field="beads")
            atoms.append((rnum, rname, aname))
        if mapname not in maps:
            raise MappingError(f"bead '{bname}' uses map '{mapname}', which <maps> does not define",
                               file=f, line=cb.line, field="mapping")
        w, wline = maps[mapname]
        if len(w) != len(atoms):
            raise MappingError(f"map '{mapname}' has {len(w)} weights but bead '{bname}' has "
                               f"{len(atoms)} atoms", file=f, line=wline, field="weights")
        if any(x < 0 for x in w) or sum(w) <= 0:
            raise MappingError(f"map '{mapname}' weights must be >= 0 with a positive sum", file=f,
                               line=wline, field="weights")
        beads.append((bname, btype, atoms, tuple(w), cb.line))
    first = min(residues)
    nums = sorted(residues)
    if nums != list(range(first, first + len(nums))):
        raise MappingError(f"residue numbers {nums} of molecule '{name}' have gaps; cgkit cannot "
                           "tell which residues lie between them", file=f, line=mol.line)
    seq = tuple((residues[k],) for k in nums)
    bdefs = tuple(BeadDef(name=b, type=t, weights=w, line=ln,
                          atoms=tuple(AtomRef(name=a, offset=r - first, resname=rn) for r, rn, a in at))
                  for b, t, at, w, ln in beads)
    bonded = {"bonds": [], "angles": [], "dihedrals": []}
    blines = {}
    cgb = topo.find("cg_bonded")
    width = {"bond": 2, "angle": 3, "dihedral": 4}
    for node in (cgb.children if cgb is not None else []):
        if node.tag not in width:
            continue
        words = (_text(node, "beads", f) or "").split()
        w = width[node.tag]
        if len(words) % w:
            raise MappingError(f"<{node.tag}> lists {len(words)} bead names, not a multiple of {w}",
                               file=f, line=node.line, field="beads")
        kind = node.tag + "s"
        for k in range(0, len(words), w):
            blines[(kind, len(bonded[kind]))] = node.line
            bonded[kind].append(tuple(BondedRef(0, x) for x in words[k:k + w]))
    return TemplateDef(name=name, beads=bdefs, residues=seq, bonds=tuple(bonded["bonds"]),
                       angles=tuple(bonded["angles"]), dihedrals=tuple(bonded["dihedrals"]),
                       bonded_lines=blines, line=mol.line)


_SECTION = re.compile(r"^\s*\[\s*(\S+)\s*\]\s*$")


def read_martini_map(path) -> MappingDefinition:
    """Read a Martini/backward ``.map`` file (one molecule)."""
    path = Path(path)
    f = str(path)
    sections: dict[str, list] = {}
    cur = None
    for ln, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(";")[0].strip()
        if not line:
            continue
        m = _SECTION.match(line)
        if m:
            cur = m.group(1).lower()
            sections.setdefault(cur, [])
            continue
        if cur is None:
            raise MappingError("text before the first [ section ]", file=f, line=ln)
        sections[cur].append((ln, line))
    for need in ("molecule", "atoms"):
        if need not in sections or not sections[need]:
            raise MappingError(f"missing [ {need} ] section", file=f, line=1, field=need)
    resnames = tuple(w for _, l in sections["molecule"] for w in l.split())
    order = [w for _, l in sections.get("martini", []) for w in l.split()]
    per_bead: dict[str, dict] = {b: {} for b in order}
    bead_line = {}
    atom_beads: dict[str, set] = {}
    atom_order = []
    for ln, l in sections["atoms"]:
        parts = l.split()
        if len(parts) < 2 or not parts[0].isdigit():
            raise MappingError(f"cannot read atom line '{l}'; write INDEX NAME BEAD [BEAD ...]",
                               file=f, line=ln, field="atoms")
        aname = parts[1]
        atom_order.append(aname)
        for b in parts[2:]:
            if b.startswith("!"):
                continue
            if order and b not in per_bead:
                raise MappingError(f"atom {aname} maps to bead '{b}', which [ martini ] does not list",
                                   file=f, line=ln, field="atoms")
            per_bead.setdefault(b, {})
            per_bead[b][aname] = per_bead[b].get(aname, 0) + 1
            bead_line.setdefault(b, ln)
            atom_beads.setdefault(aname, set()).add(b)
    shared = {a for a, bs in atom_beads.items() if len(bs) > 1}
    beads = []
    for b, atoms in per_bead.items():
        if not atoms:
            raise MappingError(f"bead '{b}' has no atoms; list at least one atom", file=f,
                               line=sections["martini"][0][0] if "martini" in sections else None,
                               field="martini")
        names = [a for a in atom_order if a in atoms]
        w = tuple(float(atoms[a]) for a in names)
        fw = tuple(0.0 if a in shared else 1.0 for a in names) if shared else None
        if fw is not None and sum(fw) == 0:
            raise MappingError(f"bead '{b}' has only shared atoms; no valid force map exists",
                               file=f, line=bead_line.get(b), field="atoms")
        beads.append(BeadDef(name=b, type=b, atoms=tuple(AtomRef(name=a) for a in names),
                             weights=w, force_weights=fw, line=bead_line.get(b)))
    t = TemplateDef(name=resnames[0], beads=tuple(beads), residues=(resnames,), line=1)
    return MappingDefinition(templates=(t,), name=path.stem,
                             description=f"imported from Martini/backward map {path.name}",
                             force_map="weights" if shared else "basic", shared_atoms=bool(shared),
                             file=f)


# ---------------------------------------------------------------------- constraints of a topology
def read_tpr_constraints(path):
    """Constrained atom pairs of a GROMACS ``.tpr``: (nc, 2) int64 array of 0-based global atom
    indices, from the ``[ constraints ]`` (F_CONSTR, F_CONSTRNC — including bonds that grompp
    turned into constraints with ``constraints = h-bonds``/``all-bonds``) and ``[ settles ]``
    (SETTLE: O–H1, O–H2 and H1–H2) interaction lists of every molecule type, repeated over the
    molecule blocks. Flexible bonds are not included (MDAnalysis merges bonds and constraints in
    ``Universe.bonds``; this reads its tpr parser's interaction lists separately).

    Raises :class:`~cgkit.errors.MappingError` when the file cannot be read as a tpr."""
    import numpy as np
    from MDAnalysis.topology import TPRParser
    from MDAnalysis.topology.tpr import obj as tpr_obj
    from MDAnalysis.topology.tpr import utils as tpr_utils

    moltypes: list = []          # per molecule type: list of local constrained pairs
    natoms: list = []            # per molecule type: atom count
    blocks: list = []            # (molb_type, molb_nmol)
    orig = (tpr_utils.do_ilists, tpr_utils.do_moltype, tpr_utils.do_molblock)

    def do_ilists(data, fver):
        ilists = orig[0](data, fver)
        pairs = []
        for il in ilists:
            if il.nr <= 0:
                continue
            ik = tpr_obj.InteractionKind(*il.ik)
            if ik.name in ("CONSTR", "CONSTRNC"):
                pairs += [(int(a), int(b)) for a, b in ik.process(il.iatoms)]
            elif ik.name == "SETTLE":
                ias = il.iatoms
                if len(ias) == 2:  # old format: oxygen only, hydrogens follow
                    o = int(ias[1])
                    trip = [(o, o + 1, o + 2)]
                else:
                    trip = [tuple(int(x) for x in t) for t in ik.process(ias)]
                for o, h1, h2 in trip:
                    pairs += [(o, h1), (o, h2), (h1, h2)]
        moltypes.append(pairs)
        return ilists

    def do_moltype(data, symtab, fver):
        mt = orig[1](data, symtab, fver)
        natoms.append(mt.number_of_atoms())
        return mt

    def do_molblock(data):
        mb = orig[2](data)
        blocks.append((int(mb.molb_type), int(mb.molb_nmol)))
        return mb

    tpr_utils.do_ilists, tpr_utils.do_moltype, tpr_utils.do_molblock = do_ilists, do_moltype, do_molblock
    try:
        TPRParser.TPRParser(str(path)).parse()
    except Exception as exc:  # MDAnalysis raises many types for unreadable files
        raise MappingError(f"cannot read the constraints of {path} as a GROMACS tpr: {exc}",
                           file=str(path)) from None
    finally:
        tpr_utils.do_ilists, tpr_utils.do_moltype, tpr_utils.do_molblock = orig
    out = []
    offset = 0
    for mtype, nmol in blocks:
        local = np.asarray(moltypes[mtype], dtype=np.int64).reshape(-1, 2)
        n = natoms[mtype]
        if len(local):
            out.append((local[None, :, :] + offset + n * np.arange(nmol)[:, None, None]).reshape(-1, 2))
        offset += n * nmol
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def topology_constraints(table):
    """Constrained atom pairs (nc, 2) of an :class:`~cgkit.mapping.atoms.AtomTable`, or None when
    its topology format does not record constraints (only GROMACS ``.tpr`` does; gro/pdb/psf/
    LAMMPS data files do not say which bonds the run constrained)."""
    src = getattr(table, "source", "") or ""
    if not src:
        src = getattr(getattr(table, "universe", None), "filename", None) or ""
    if str(src).lower().endswith(".tpr"):
        return read_tpr_constraints(src)
    return None
