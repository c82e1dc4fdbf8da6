"""The mapping *definition*: what a YAML file (or an imported VOTCA/Martini map) says.

A :class:`MappingDefinition` is topology-independent: molecule templates, beads given by atom
references, weights, the force-map choice and the CG bonded topology by bead names. It is
compiled against a concrete atomistic topology into a :class:`cgkit.mapping.Mapping`.

The YAML schema (version 1) is documented in ``mappings/README.md``. Reading files (YAML,
VOTCA XML, Martini ``.map``) is :func:`cgkit.mapping.loader.load_definition`; this module
imports neither the loader nor the importers, which build on it.

Atom references inside a template
    ``"C1"``        atom named C1 in the template's first residue (offset 0)
    ``"2:C"``       atom named C in residue offset 2 of the instance (0-based)
    ``"2:CH2:C"``   the same, also checking that residue's name is CH2
    ``7``           (integer) the 8th atom of the instance, in topology order
Bead references in bonded terms
    ``"B1"``        bead B1 of this instance; ``"+1:B1"`` / ``"-1:B1"`` bead B1 of the
                    next / previous instance of the same molecule (polymer links).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MappingError
from .yamlio import LDict, line_of

__all__ = ["AtomRef", "BeadDef", "TemplateDef", "MappingDefinition", "parse_definition",
           "check_bonded_names", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
FORCE_MAPS = ("basic", "weights", "optimized")
_ATOM_RE = re.compile(r"^(?:(-?\d+):)?(?:([^:\s]+):)?([^:\s]+)$")
_BEAD_RE = re.compile(r"^(?:([+-]\d+):)?([^:\s]+)$")


@dataclass(frozen=True)
class AtomRef:
    """One atom of a template: by (residue offset, [residue name], atom name) or by index."""

    name: str | None = None
    offset: int = 0
    resname: str | None = None
    index: int | None = None

    def __str__(self):
        if self.index is not None:
            return str(self.index)
        return f"{self.offset}:{self.resname + ':' if self.resname else ''}{self.name}"


@dataclass(frozen=True)
class BeadDef:
    name: str
    type: str
    atoms: tuple[AtomRef, ...]
    weights: str | tuple[float, ...] = "mass"   # "mass" | "geometry" | per-atom tuple
    single_atom: AtomRef | None = None           # position from this atom only
    force_weights: tuple[float, ...] | None = None
    mass: float | None = None
    charge: float | None = None                  # bead charge (e), given directly
    atom_charges: tuple[float, ...] | None = None  # per-atom charges (e), summed into the bead's
    line: int | None = None


@dataclass(frozen=True)
class BondedRef:
    offset: int
    bead: str

    def __str__(self):
        return f"{self.offset:+d}:{self.bead}" if self.offset else self.bead


@dataclass(frozen=True)
class TemplateDef:
    """A molecule / residue template; matched by ``residues`` (a sequence of residue names,
    each entry may list alternatives) or by an MDAnalysis ``selection``."""

    name: str
    beads: tuple[BeadDef, ...]
    residues: tuple[tuple[str, ...], ...] | None = None
    selection: str | None = None
    group_by: str = "molecule"
    bonds: tuple[tuple[BondedRef, ...], ...] = ()
    angles: tuple[tuple[BondedRef, ...], ...] = ()
    dihedrals: tuple[tuple[BondedRef, ...], ...] = ()
    exclusions: str | int | tuple = "bonded"
    bonded_lines: dict = field(default_factory=dict, compare=False)
    line: int | None = None


@dataclass(frozen=True)
class MappingDefinition:
    templates: tuple[TemplateDef, ...]
    name: str = "mapping"
    description: str = ""
    force_map: str = "basic"
    force_map_options: dict = field(default_factory=dict, compare=False)
    shared_atoms: bool = False
    unmapped_atoms: str = "error"     # error | warn | ignore
    bead_masses: str = "sum"          # sum | noid
    bead_charges: str = "sum"         # sum (of the topology's atom charges) | none
    version: int = SCHEMA_VERSION
    file: str | None = field(default=None, compare=False)

    def err(self, message, line=None, fld=None) -> MappingError:
        return MappingError(message, file=self.file, line=line, field=fld)

    def bead_names(self) -> set[str]:
        return {b.name for t in self.templates for b in t.beads}

    def to_dict(self) -> dict:
        """Plain dict in the YAML schema (what :func:`cgkit.mapping.dump_yaml` writes)."""
        out = {"version": SCHEMA_VERSION, "name": self.name}
        if self.description:
            out["description"] = self.description
        fm = self.force_map
        out["force_map"] = ({"method": fm, **self.force_map_options} if self.force_map_options else fm)
        out["options"] = {"shared_atoms": self.shared_atoms, "unmapped_atoms": self.unmapped_atoms,
                          "bead_masses": self.bead_masses, "bead_charges": self.bead_charges}
        mols = []
        for t in self.templates:
            m = {"name": t.name}
            if t.selection is not None:
                m["selection"] = t.selection
                m["group_by"] = t.group_by
            elif t.residues is not None:
                res = [r[0] if len(r) == 1 else list(r) for r in t.residues]
                if len(res) == 1:
                    m["resname"] = res[0]
                else:
                    m["residues"] = res
            beads = []
            for b in t.beads:
                bd = {"name": b.name, "type": b.type, "atoms": [_atom_str(a) for a in b.atoms]}
                if b.single_atom is not None:
                    bd["weights"] = {"atom": _atom_str(b.single_atom)}
                elif isinstance(b.weights, str):
                    bd["weights"] = b.weights
                else:
                    bd["weights"] = [_num(w) for w in b.weights]
                if b.force_weights is not None:
                    bd["force_weights"] = [_num(w) for w in b.force_weights]
                if b.mass is not None:
                    bd["mass"] = b.mass
                if b.charge is not None:
                    bd["charge"] = b.charge
                if b.atom_charges is not None:
                    bd["atom_charges"] = [_num(q) for q in b.atom_charges]
                beads.append(bd)
            m["beads"] = beads
            for kind in ("bonds", "angles", "dihedrals"):
                terms = getattr(t, kind)
                if terms:
                    m[kind] = [[str(r) for r in term] for term in terms]
            if t.exclusions != "bonded":
                ex = t.exclusions
                m["exclusions"] = [[str(r) for r in p] for p in ex] if isinstance(ex, tuple) else ex
            mols.append(m)
        out["molecules"] = mols
        return out


def _num(w):
    w = float(w)
    return int(w) if w.is_integer() else w


def _atom_str(a: AtomRef):
    if a.index is not None:
        return a.index
    if a.offset == 0 and a.resname is None:
        return a.name
    return str(a)


# ---------------------------------------------------------------------------- parsing
def _expect(cond, defn_file, msg, line, fld):
    if not cond:
        raise MappingError(msg, file=defn_file, line=line, field=fld)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_atom_ref(spec, file, line, fld) -> AtomRef:
    if isinstance(spec, bool) or spec is None:
        raise MappingError(f"atom reference {spec!r} must be a name like 'C1', '2:C' or an index",
                           file=file, line=line, field=fld)
    if isinstance(spec, int):
        _expect(spec >= 0, file, f"atom index {spec} must be >= 0", line, fld)
        return AtomRef(index=int(spec))
    if not isinstance(spec, str):
        raise MappingError(f"atom reference {spec!r} must be a name like 'C1', '2:C' or an index",
                           file=file, line=line, field=fld)
    m = _ATOM_RE.match(spec.strip())
    if not m:
        raise MappingError(f"cannot read atom reference '{spec}'; write NAME, OFFSET:NAME or "
                           "OFFSET:RESNAME:NAME", file=file, line=line, field=fld)
    off, res, name = m.groups()
    if off is None and res is not None:
        raise MappingError(f"cannot read atom reference '{spec}'; write NAME, OFFSET:NAME or "
                           "OFFSET:RESNAME:NAME", file=file, line=line, field=fld)
    return AtomRef(name=name, offset=int(off) if off else 0, resname=res)


def _parse_bead_ref(spec, file, line, fld) -> BondedRef:
    if not isinstance(spec, str) or not _BEAD_RE.match(spec.strip()):
        raise MappingError(f"bead reference {spec!r} must be a bead name, optionally with a "
                           "molecule-instance offset like '+1:B'", file=file, line=line, field=fld)
    off, name = _BEAD_RE.match(spec.strip()).groups()
    return BondedRef(offset=int(off) if off else 0, bead=name)


def _weights_list(val, n, file, line, fld):
    _expect(isinstance(val, list) and all(_is_num(w) for w in val), file,
            "weights must be 'mass', 'geometry', a list of numbers (one per atom) or {atom: NAME}",
            line, fld)
    _expect(len(val) == n, file, f"{len(val)} weights given for {n} atoms; give one weight per atom",
            line, fld)
    _expect(all(w >= 0 for w in val), file, "weights must not be negative", line, fld)
    _expect(sum(val) > 0, file, "weights sum to zero; give at least one positive weight", line, fld)
    return tuple(float(w) for w in val)


_KNOWN_TOP = {"version", "name", "description", "force_map", "options", "molecules"}
_KNOWN_MOL = {"name", "resname", "residues", "selection", "group_by", "beads", "bonds", "angles",
              "dihedrals", "exclusions"}
_KNOWN_BEAD = {"name", "type", "atoms", "weights", "force_weights", "mass", "charge", "atom_charges"}


def _check_keys(d: LDict, known, file, where):
    for k in d:
        if k not in known:
            raise MappingError(f"unknown key '{k}' in {where}; allowed: {', '.join(sorted(known))}",
                               file=file, line=d.line_of(k), field=str(k))


def parse_definition(data, file: str | None = None) -> MappingDefinition:
    """Validate parsed YAML (line-aware or plain containers) and build a MappingDefinition."""
    if not isinstance(data, dict):
        raise MappingError("a mapping definition must be a YAML mapping with keys version, "
                           "molecules, ...", file=file, line=line_of(data))
    if not isinstance(data, LDict):
        data = _to_ldict(data)
    _check_keys(data, _KNOWN_TOP, file, "the top level")
    version = data.get("version")
    if version is None:
        raise MappingError(f"missing 'version'; add 'version: {SCHEMA_VERSION}'", file=file,
                           line=data.line, field="version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise MappingError(f"unsupported version {version!r}; this cgkit reads version "
                           f"{SCHEMA_VERSION}", file=file, line=data.line_of("version"), field="version")
    name = data.get("name", Path(file).stem if file else "mapping")
    desc = data.get("description", "") or ""
    _expect(isinstance(name, str) and isinstance(desc, str), file,
            "name and description must be text", data.line_of("name"), "name")

    fm = data.get("force_map", "basic")
    fm_opts = {}
    if isinstance(fm, dict):
        fm = LDict(fm) if not isinstance(fm, LDict) else fm
        fm_opts = {k: v for k, v in fm.items() if k != "method"}
        fm = fm.get("method", "basic")
        for k, v in fm_opts.items():
            ok = {"constraints": lambda v: v in ("auto", "topology", "none", "hbonds", "all-bonds"),
                  "support": lambda v: v in ("molecule", "bead"),
                  "regularization": lambda v: _is_num(v) and v >= 0}.get(k)
            _expect(ok is not None and ok(v), file,
                    f"bad force_map option {k}={v!r}; allowed: constraints (auto|topology|none|hbonds|all-bonds), "
                    "support (molecule|bead), regularization (number >= 0)",
                    data.line_of("force_map"), f"force_map.{k}")
    _expect(fm in FORCE_MAPS, file, f"force_map must be one of {', '.join(FORCE_MAPS)}, got {fm!r}",
            data.line_of("force_map"), "force_map")

    opts = data.get("options", LDict()) or LDict()
    _expect(isinstance(opts, dict), file, "options must be a mapping", data.line_of("options"), "options")
    opts = opts if isinstance(opts, LDict) else _to_ldict(opts)
    _check_keys(opts, {"shared_atoms", "unmapped_atoms", "bead_masses", "bead_charges"}, file, "options")
    shared = opts.get("shared_atoms", False)
    _expect(isinstance(shared, bool), file, "options.shared_atoms must be true or false",
            opts.line_of("shared_atoms"), "options.shared_atoms")
    unmapped = opts.get("unmapped_atoms", "error")
    _expect(unmapped in ("error", "warn", "ignore"), file,
            "options.unmapped_atoms must be error, warn or ignore", opts.line_of("unmapped_atoms"),
            "options.unmapped_atoms")
    bmass = opts.get("bead_masses", "sum")
    _expect(bmass in ("sum", "noid"), file, "options.bead_masses must be sum or noid",
            opts.line_of("bead_masses"), "options.bead_masses")
    bcharge = opts.get("bead_charges", "sum")
    _expect(bcharge in ("sum", "none"), file,
            "options.bead_charges must be sum (bead charge = sum of the topology's atom charges) or none",
            opts.line_of("bead_charges"), "options.bead_charges")

    mols = data.get("molecules")
    _expect(isinstance(mols, list) and len(mols) > 0, file,
            "'molecules' must be a non-empty list of molecule templates", data.line_of("molecules"),
            "molecules")
    templates = []
    seen_t = set()
    for ti, mol in enumerate(mols):
        mline = line_of(mols, ti)
        _expect(isinstance(mol, dict), file, "each molecule template must be a mapping", mline,
                f"molecules[{ti}]")
        mol = mol if isinstance(mol, LDict) else _to_ldict(mol)
        t = _parse_template(mol, ti, file, fm)
        _expect(t.name not in seen_t, file, f"two molecule templates are named '{t.name}'; "
                "give each a distinct name", mol.line_of("name"), f"molecules[{ti}].name")
        seen_t.add(t.name)
        templates.append(t)
    defn = MappingDefinition(templates=tuple(templates), name=name, description=desc, force_map=fm,
                             force_map_options=fm_opts, shared_atoms=shared, unmapped_atoms=unmapped,
                             bead_masses=bmass, bead_charges=bcharge, file=file)
    check_bonded_names(defn)
    return defn


def _to_ldict(d) -> LDict:
    out = LDict(d)
    return out


def _parse_template(mol: LDict, ti: int, file, force_map) -> TemplateDef:
    where = f"molecules[{ti}]"
    _check_keys(mol, _KNOWN_MOL, file, f"molecule template {ti}")
    name = mol.get("name")
    _expect(isinstance(name, str) and name.strip() != "", file,
            "each molecule template needs a 'name'", mol.line, f"{where}.name")
    keys = [k for k in ("resname", "residues", "selection") if k in mol]
    _expect(len(keys) == 1, file, f"template '{name}' must say what it matches with exactly one of "
            "resname, residues or selection", mol.line, where)
    residues = selection = None
    group_by = mol.get("group_by", "molecule")
    _expect(group_by in ("molecule", "residue"), file, "group_by must be molecule or residue",
            mol.line_of("group_by"), f"{where}.group_by")
    if "selection" in mol:
        selection = mol["selection"]
        _expect(isinstance(selection, str) and selection.strip(), file,
                "selection must be an MDAnalysis selection string", mol.line_of("selection"),
                f"{where}.selection")
    else:
        raw = mol[keys[0]]
        if keys[0] == "resname":
            raw = [raw]
        _expect(isinstance(raw, list) and len(raw) > 0, file,
                "residues must be a non-empty list of residue names", mol.line_of(keys[0]),
                f"{where}.{keys[0]}")
        res = []
        for r in raw:
            alts = r if isinstance(r, list) else [r]
            _expect(len(alts) > 0 and all(isinstance(a, (str, int)) and not isinstance(a, bool)
                                          for a in alts), file,
                    "residue names must be text (or a list of alternative names)",
                    mol.line_of(keys[0]), f"{where}.{keys[0]}")
            res.append(tuple(str(a) for a in alts))
        residues = tuple(res)

    beads_raw = mol.get("beads")
    _expect(isinstance(beads_raw, list) and len(beads_raw) > 0, file,
            f"template '{name}' needs a non-empty list of beads", mol.line_of("beads"), f"{where}.beads")
    beads = []
    names = set()
    for bi, b in enumerate(beads_raw):
        bline = line_of(beads_raw, bi)
        bw = f"{where}.beads[{bi}]"
        _expect(isinstance(b, dict), file, "each bead must be a mapping with name, type, atoms", bline, bw)
        b = b if isinstance(b, LDict) else _to_ldict(b)
        _check_keys(b, _KNOWN_BEAD, file, f"bead {bi} of '{name}'")
        bname = b.get("name")
        _expect(isinstance(bname, str) and _BEAD_RE.match(bname) and ":" not in bname, file,
                "each bead needs a 'name' (text without ':' or spaces)", bline, f"{bw}.name")
        _expect(bname not in names, file, f"bead name '{bname}' used twice in template '{name}'",
                b.line_of("name"), f"{bw}.name")
        names.add(bname)
        btype = b.get("type", bname)
        _expect(isinstance(btype, (str, int)) and not isinstance(btype, bool), file,
                "bead type must be text", b.line_of("type"), f"{bw}.type")
        atoms_raw = b.get("atoms")
        _expect(isinstance(atoms_raw, list), file, f"bead '{bname}' needs a list of atoms",
                b.line_of("atoms") if "atoms" in b else bline, f"{bw}.atoms")
        _expect(len(atoms_raw) > 0, file, f"bead '{bname}' has no atoms; list at least one atom",
                b.line_of("atoms"), f"{bw}.atoms")
        atoms = tuple(parse_atom_ref(a, file, line_of(atoms_raw, k), f"{bw}.atoms[{k}]")
                      for k, a in enumerate(atoms_raw))
        if len(set(atoms)) != len(atoms):
            dup = next(a for a in atoms if atoms.count(a) > 1)
            raise MappingError(f"atom '{dup}' listed twice in bead '{bname}'", file=file,
                               line=b.line_of("atoms"), field=f"{bw}.atoms")
        w = b.get("weights", "mass")
        single = None
        if isinstance(w, str):
            _expect(w in ("mass", "geometry"), file,
                    "weights must be 'mass', 'geometry', a list of numbers or {atom: NAME}",
                    b.line_of("weights"), f"{bw}.weights")
        elif isinstance(w, dict):
            _expect(set(w) == {"atom"}, file, "single-atom weights are written {atom: NAME}",
                    b.line_of("weights"), f"{bw}.weights")
            single = parse_atom_ref(w["atom"], file, b.line_of("weights"), f"{bw}.weights.atom")
            _expect(single in atoms, file, f"weights.atom '{w['atom']}' is not one of the bead's atoms",
                    b.line_of("weights"), f"{bw}.weights.atom")
            w = "single"
        else:
            w = _weights_list(w, len(atoms), file, b.line_of("weights"), f"{bw}.weights")
        fw = b.get("force_weights")
        if fw is not None:
            _expect(isinstance(fw, list) and all(_is_num(x) for x in fw) and len(fw) == len(atoms),
                    file, "force_weights must be a list of numbers, one per atom",
                    b.line_of("force_weights"), f"{bw}.force_weights")
            _expect(force_map == "weights", file,
                    "force_weights are only used with 'force_map: weights'; set it or remove them",
                    b.line_of("force_weights"), f"{bw}.force_weights")
            fw = tuple(float(x) for x in fw)
        mass = b.get("mass")
        _expect(mass is None or (_is_num(mass) and mass > 0), file, "bead mass must be > 0 (amu)",
                b.line_of("mass"), f"{bw}.mass")
        charge = b.get("charge")
        _expect(charge is None or (_is_num(charge) and math.isfinite(charge)), file,
                f"bead '{bname}': charge must be a finite number (e), got {charge!r}",
                b.line_of("charge"), f"{bw}.charge")
        qa = b.get("atom_charges")
        if qa is not None:
            _expect(charge is None, file, f"bead '{bname}' gives both charge and atom_charges; give one "
                    "(charge: the bead's charge, atom_charges: one per atom, summed)",
                    b.line_of("atom_charges"), f"{bw}.atom_charges")
            _expect(isinstance(qa, list) and len(qa) == len(atoms), file,
                    f"bead '{bname}': atom_charges must be a list of {len(atoms)} numbers (e), one per atom",
                    b.line_of("atom_charges"), f"{bw}.atom_charges")
            for k, q in enumerate(qa):
                _expect(_is_num(q) and math.isfinite(q), file,
                        f"bead '{bname}': atom charge {k} must be a finite number (e), got {q!r}",
                        b.line_of("atom_charges"), f"{bw}.atom_charges[{k}]")
            qa = tuple(float(q) for q in qa)
        beads.append(BeadDef(name=bname, type=str(btype), atoms=atoms, weights=w, single_atom=single,
                             force_weights=fw, mass=None if mass is None else float(mass),
                             charge=None if charge is None else float(charge), atom_charges=qa,
                             line=bline))

    bonded = {}
    blines = {}
    for kind, width in (("bonds", 2), ("angles", 3), ("dihedrals", 4)):
        raw = mol.get(kind, []) or []
        _expect(isinstance(raw, list), file, f"{kind} must be a list of bead-name lists",
                mol.line_of(kind), f"{where}.{kind}")
        terms = []
        for k, term in enumerate(raw):
            ln = line_of(raw, k)
            if isinstance(term, str):
                term = term.split()
            _expect(isinstance(term, list) and len(term) == width, file,
                    f"each entry of {kind} names {width} beads", ln, f"{where}.{kind}[{k}]")
            refs = tuple(_parse_bead_ref(x, file, ln, f"{where}.{kind}[{k}]") for x in term)
            _expect(len(set(refs)) == width, file, f"{kind} entry {term} repeats a bead", ln,
                    f"{where}.{kind}[{k}]")
            _expect(any(r.offset == 0 for r in refs), file,
                    f"{kind} entry {term} must involve at least one bead of this instance (offset 0)",
                    ln, f"{where}.{kind}[{k}]")
            terms.append(refs)
            blines[(kind, k)] = ln
        bonded[kind] = tuple(terms)
    excl = mol.get("exclusions", "bonded")
    if isinstance(excl, list):
        pairs = []
        for k, p in enumerate(excl):
            ln = line_of(excl, k)
            if isinstance(p, str):
                p = p.split()
            _expect(isinstance(p, list) and len(p) == 2, file, "each exclusion names 2 beads", ln,
                    f"{where}.exclusions[{k}]")
            pairs.append(tuple(_parse_bead_ref(x, file, ln, f"{where}.exclusions[{k}]") for x in p))
            blines[("exclusions", k)] = ln
        excl = tuple(pairs)
    else:
        _expect(excl in ("bonded", "none") or (isinstance(excl, int) and not isinstance(excl, bool)
                                                 and excl >= 0), file,
                "exclusions must be 'bonded', 'none', a number of bonds, or a list of bead pairs",
                mol.line_of("exclusions"), f"{where}.exclusions")
    blines["_mol"] = mol.line
    for kind in ("bonds", "angles", "dihedrals"):
        blines[kind] = mol.line_of(kind)
    return TemplateDef(name=str(name), beads=tuple(beads), residues=residues, selection=selection,
                       group_by=group_by, exclusions=excl, bonded_lines=blines, line=mol.line,
                       **bonded)


def check_bonded_names(defn: MappingDefinition):
    all_names = defn.bead_names()
    for t in defn.templates:
        own = {b.name for b in t.beads}
        items = [(k, i, term) for k in ("bonds", "angles", "dihedrals") for i, term in
                 enumerate(getattr(t, k))]
        if isinstance(t.exclusions, tuple):
            items += [("exclusions", i, p) for i, p in enumerate(t.exclusions)]
        for kind, i, term in items:
            for r in term:
                pool = own if r.offset == 0 else all_names
                if r.bead not in pool:
                    raise defn.err(f"{kind} entry {[str(x) for x in term]} names bead '{r.bead}', "
                                   f"which template '{t.name}' does not define"
                                   if r.offset == 0 else
                                   f"{kind} entry {[str(x) for x in term]} names bead '{r.bead}', "
                                   "which no template defines",
                                   t.bonded_lines.get((kind, i)), f"{t.name}.{kind}[{i}]")
