"""Compile a :class:`MappingDefinition` against a topology into an immutable :class:`Mapping`.

Shapes and units (N atoms, B beads):
    M (B, N) sparse position map, rows sum to 1 (dimensionless)
    D (B, N) sparse force map, M·Dᵀ = I (B, B)
    positions (N, 3) Å → bead positions (B, 3) Å
    forces (N, 3) eV/Å → mapped forces (B, 3) eV/Å
    velocities (N, 3) Å/fs → bead velocities (B, 3) Å/fs;  momenta amu·Å/fs
    bead_masses (B,) amu, bead_charges (B,) e
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InputError, MappingError
from ..topology import Topology
from .atoms import AtomTable, atom_table
from .definition import AtomRef, MappingDefinition, TemplateDef
from .loader import load_definition

__all__ = ["Mapping", "Instance", "CGFrame", "MappingCheck"]


@dataclass(frozen=True)
class Instance:
    """One match of a template: its residues (global indices, in order) and atoms."""

    template: int
    residues: tuple[int, ...]
    atoms: np.ndarray
    molecule: int


@dataclass
class CGFrame:
    """One mapped frame. positions (B, 3) Å; forces (B, 3) eV/Å or None; velocities (B, 3)
    Å/fs or None; cell (3, 3) Å rows; pbc (3,) bool; time fs; step int."""

    positions: np.ndarray
    forces: np.ndarray | None
    velocities: np.ndarray | None
    cell: np.ndarray
    pbc: np.ndarray
    time: float = 0.0
    step: int = 0


@dataclass
class MappingCheck:
    """Outcome of validating a definition against a topology (``cgkit map check``)."""

    n_atoms: int
    n_beads: int
    unmapped: np.ndarray          # atom indices in no bead
    shared: np.ndarray            # atom indices in more than one bead
    unmatched_residues: list      # (resindex, resname) matched by no template
    beads_per_type: dict
    consistency_error: float      # max |M·Dᵀ - I|

    def to_dict(self):
        return {"n_atoms": self.n_atoms, "n_beads": self.n_beads,
                "unmapped_atoms": [int(i) for i in self.unmapped],
                "shared_atoms": [int(i) for i in self.shared],
                "unmatched_residues": [[int(r), str(n)] for r, n in self.unmatched_residues],
                "beads_per_type": self.beads_per_type,
                "consistency_error": float(self.consistency_error)}


def _ro(a):
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


class Mapping:
    """An atom→bead mapping compiled from a definition and a topology. Immutable.

    Build with :meth:`Mapping.from_yaml` / :meth:`Mapping.compile`. ``M`` and ``D`` are scipy
    CSR matrices (copies are returned). See the module docstring for shapes and units.
    """

    _frozen = False

    def __init__(self, *, M, D, bead_names, bead_types, bead_masses, bead_charges, topology,
                 atom_masses, instances, definition, force_map, template_of_bead, resid_of_bead,
                 unmatched_residues=(), table=None):
        self._M = sp.csr_matrix(M, dtype=np.float64)
        self._M.sort_indices()
        self._D = sp.csr_matrix(D, dtype=np.float64)
        self._D.sort_indices()
        self.bead_names = _ro(np.asarray(bead_names, dtype=object))
        self.bead_types = _ro(np.asarray(bead_types, dtype=object))
        self.type_names = tuple(sorted(set(self.bead_types.tolist())))
        lookup = {t: k for k, t in enumerate(self.type_names)}
        self.species = _ro(np.array([lookup[t] for t in self.bead_types], dtype=np.int64))
        self.bead_masses = _ro(np.asarray(bead_masses, dtype=np.float64))
        self.bead_charges = _ro(np.asarray(bead_charges, dtype=np.float64))
        self.topology: Topology = topology
        self.atom_masses = _ro(np.asarray(atom_masses, dtype=np.float64))
        self.instances = tuple(instances)
        self.definition: MappingDefinition = definition
        self.force_map = force_map
        self.template_of_bead = _ro(np.asarray(template_of_bead, dtype=object))
        self.resid_of_bead = _ro(np.asarray(resid_of_bead, dtype=np.int64))
        self.unmatched_residues = tuple(unmatched_residues)
        self._table = table
        M = self._M
        rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
        # reference atom of each bead (largest position weight, first on ties) for unwrapping
        order = np.lexsort((M.indices, -M.data, rows))
        first = np.searchsorted(rows[order], np.arange(M.shape[0]))
        self._ref = _ro(M.indices[order][first])
        self._ref_rows = self._ref[rows]
        nnz = M.nnz
        self._Mflat = sp.csr_matrix((M.data, np.arange(nnz), M.indptr), shape=(M.shape[0], nnz))
        self._frozen = True

    def __setattr__(self, key, value):
        if self._frozen:
            raise AttributeError("Mapping is immutable; build a new one (e.g. with_force_map)")
        object.__setattr__(self, key, value)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, path, topology, *, unmapped: str | None = None) -> "Mapping":
        """Load a definition file (YAML, VOTCA XML or Martini .map) and compile it."""
        return cls.compile(load_definition(path), topology, unmapped=unmapped)

    @classmethod
    def compile(cls, definition: MappingDefinition, topology, *, unmapped: str | None = None) -> "Mapping":
        """Compile ``definition`` against ``topology`` (MDAnalysis Universe, ASE Atoms, file path
        or AtomTable). ``unmapped`` overrides the definition's ``unmapped_atoms`` option."""
        return _compile(definition, atom_table(topology), unmapped=unmapped)

    def with_force_map(self, D, method: str) -> "Mapping":
        """A copy with force map ``D`` (B, N); checks M·Dᵀ = I."""
        D = sp.csr_matrix(D, dtype=np.float64)
        if D.shape != self._M.shape:
            raise InputError(f"force map has shape {D.shape}, expected {self._M.shape}")
        err = consistency_error(self._M, D)
        if err > 1e-8:
            raise MappingError(f"force map violates M·Dᵀ = I (max error {err:.2e}); it would not "
                               "give the mean force")
        return Mapping(M=self._M, D=D, bead_names=self.bead_names, bead_types=self.bead_types,
                       bead_masses=self.bead_masses, bead_charges=self.bead_charges,
                       topology=self.topology, atom_masses=self.atom_masses, instances=self.instances,
                       definition=self.definition, force_map=method,
                       template_of_bead=self.template_of_bead, resid_of_bead=self.resid_of_bead,
                       unmatched_residues=self.unmatched_residues, table=self._table)

    def optimize_force_map(self, frames, **kw) -> "Mapping":
        """A copy with the statistically optimal force map (Krämer et al. 2023) estimated from
        ``frames`` (iterable of objects with ``.forces`` (N, 3) eV/Å, or of (N, 3) arrays).
        Options: see :func:`cgkit.mapping.forcemap.optimized_force_map`."""
        from .forcemap import optimized_force_map
        opts = dict(self.definition.force_map_options)
        opts.update(kw)
        return self.with_force_map(optimized_force_map(self, frames, **opts), "optimized")

    # ------------------------------------------------------------------ properties
    @property
    def M(self) -> sp.csr_matrix:
        return self._M.copy()

    @property
    def D(self) -> sp.csr_matrix:
        return self._D.copy()

    @property
    def n_atoms(self) -> int:
        return self._M.shape[1]

    @property
    def n_beads(self) -> int:
        return self._M.shape[0]

    @property
    def reference_atoms(self) -> np.ndarray:
        return self._ref

    @property
    def atom_table(self) -> AtomTable | None:
        return self._table

    @property
    def net_charge(self) -> float:
        """Σ bead charges (e) of the whole CG system."""
        return float(np.sum(self.bead_charges))

    def beads_per_type(self) -> dict:
        t, c = np.unique(self.bead_types.astype(str), return_counts=True)
        return {str(a): int(b) for a, b in zip(t, c)}

    def consistency_error(self) -> float:
        """max |M·Dᵀ − I| (0 for a valid force map)."""
        return consistency_error(self._M, self._D)

    def check(self) -> MappingCheck:
        counts = np.diff(self._M.tocsc().indptr)
        return MappingCheck(n_atoms=self.n_atoms, n_beads=self.n_beads,
                            unmapped=np.where(counts == 0)[0], shared=np.where(counts > 1)[0],
                            unmatched_residues=list(self.unmatched_residues),
                            beads_per_type=self.beads_per_type(),
                            consistency_error=self.consistency_error())

    def __repr__(self):
        return (f"Mapping({self.definition.name!r}: {self.n_atoms} atoms -> {self.n_beads} beads, "
                f"types {self.beads_per_type()}, force map {self.force_map})")

    # ------------------------------------------------------------------ applying
    def _check_shape(self, a, what):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (self.n_atoms, 3):
            raise InputError(f"{what} must have shape ({self.n_atoms}, 3), got {a.shape}; the "
                             "trajectory does not match the mapping's topology")
        return a

    def map_positions(self, positions, cell=None, pbc=None) -> np.ndarray:
        """Bead positions (B, 3) Å. With a periodic ``cell`` (3, 3) Å (rows = lattice vectors),
        each bead's atoms are first unwrapped around the bead's reference atom by minimum image
        (fractional rounding; exact while a bead spans less than half a cell width), so beads
        straddling the box edge (also in triclinic cells) map correctly. Output is not wrapped."""
        x = self._check_shape(positions, "positions")
        M = self._M
        if cell is None:
            return M @ x
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = np.broadcast_to(np.asarray(True if pbc is None else pbc, dtype=bool), (3,))
        if not pbc.any():
            return M @ x
        try:
            inv = np.linalg.inv(cell)
        except np.linalg.LinAlgError:
            raise InputError("periodic cell is singular; give a cell with three independent "
                             "lattice vectors or pbc=False") from None
        d = x[M.indices] - x[self._ref_rows]
        if pbc.all() and not np.any(cell - np.diag(np.diag(cell))):   # orthorhombic fast path
            L = np.diag(cell)
            d -= L * np.round(d / L)
        else:
            frac = d @ inv
            frac[:, pbc] -= np.round(frac[:, pbc])
            d = frac @ cell
        return x[self._ref] + self._Mflat @ d

    def map_forces(self, forces) -> np.ndarray:
        """Mapped forces D·f (B, 3), same units as ``forces`` (eV/Å)."""
        return self._D @ self._check_shape(forces, "forces")

    def map_velocities(self, velocities) -> np.ndarray:
        """Bead velocities M·v (B, 3), same units as ``velocities``."""
        return self._M @ self._check_shape(velocities, "velocities")

    def map_momenta(self, momenta) -> np.ndarray:
        """Bead momenta P_I = m_I Σ_i M_Ii p_i/m_i (B, 3) (Noid et al. 2008), amu·Å/fs."""
        p = self._check_shape(momenta, "momenta")
        m = self.atom_masses
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(m[:, None] > 0, p / m[:, None], 0.0)
        return self.bead_masses[:, None] * (self._M @ v)

    def map_frame(self, frame) -> CGFrame:
        """Map a :class:`cgkit.trajectory.Frame` (or anything with positions/forces/velocities/
        cell/pbc attributes)."""
        cell = getattr(frame, "cell", None)
        pbc = getattr(frame, "pbc", None)
        pos = self.map_positions(frame.positions, cell, pbc)
        f = getattr(frame, "forces", None)
        v = getattr(frame, "velocities", None)
        return CGFrame(positions=pos, forces=None if f is None else self.map_forces(f),
                       velocities=None if v is None else self.map_velocities(v),
                       cell=np.zeros((3, 3)) if cell is None else np.asarray(cell, float),
                       pbc=np.zeros(3, bool) if pbc is None else np.broadcast_to(pbc, (3,)).copy(),
                       time=float(getattr(frame, "time", 0.0) or 0.0),
                       step=int(getattr(frame, "step", 0) or 0))

    def iter_map(self, frames):
        """Stream: yield a CGFrame for every frame (memory independent of the number of frames)."""
        for fr in frames:
            yield self.map_frame(fr)

    def to_atoms(self, cgframe: CGFrame):
        """ASE Atoms of a mapped frame: symbols 'X', bead masses, arrays ``bead_types`` /
        ``bead_names``, bead charges (e) as ``initial_charges`` when any is non-zero, forces on
        a SinglePointCalculator (eV/Å)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        atoms = Atoms(["X"] * self.n_beads, positions=cgframe.positions, cell=cgframe.cell,
                      pbc=cgframe.pbc, masses=self.bead_masses)
        atoms.arrays["bead_types"] = np.asarray(self.bead_types, dtype=str)
        atoms.arrays["bead_names"] = np.asarray(self.bead_names, dtype=str)
        if np.any(self.bead_charges != 0):
            atoms.set_initial_charges(self.bead_charges)
        if cgframe.velocities is not None:
            from ase import units
            atoms.set_velocities(cgframe.velocities / units.fs)  # Å/fs → ASE velocity units
        if cgframe.forces is not None:
            atoms.calc = SinglePointCalculator(atoms, forces=cgframe.forces)
        return atoms


def consistency_error(M, D) -> float:
    P = (sp.csr_matrix(M) @ sp.csr_matrix(D).T).tocoo()
    P = P.tocsr()
    diff = P - sp.identity(P.shape[0], format="csr")
    return float(np.abs(diff.data).max()) if diff.nnz else 0.0


# ---------------------------------------------------------------------------- compilation
def _match(defn: MappingDefinition, tab: AtomTable):
    """Find template instances. Returns (instances, unmatched_residues)."""
    res_atoms = tab.residue_atoms()
    nres = tab.n_residues
    claimed = np.zeros(tab.n_atoms, dtype=bool)
    res_claimed = np.zeros(nres, dtype=bool)
    instances = []
    for ti, t in enumerate(defn.templates):
        if t.selection is None:
            continue
        if tab.universe is None:
            raise defn.err(f"template '{t.name}' uses a selection, which needs an MDAnalysis "
                           "topology (not ASE Atoms); match by resname/residues instead",
                           t.line, f"{t.name}.selection")
        try:
            ag = tab.universe.select_atoms(t.selection)
        except Exception as exc:
            raise defn.err(f"invalid MDAnalysis selection '{t.selection}': {exc}", t.line,
                           f"{t.name}.selection") from None
        idx = np.asarray(ag.indices, dtype=np.int64)
        idx = idx[~claimed[idx]]
        if len(idx) == 0:
            continue
        ridx = tab.resindex[idx]
        mol = tab.res_molecule[ridx]
        key = np.where((mol >= 0) & (t.group_by == "molecule"), mol, -1 - ridx)
        _, first = np.unique(key, return_index=True)
        for k in np.sort(first):
            atoms = idx[key == key[k]]
            residues = tuple(int(r) for r in dict.fromkeys(tab.resindex[atoms].tolist()))
            instances.append(Instance(ti, residues, atoms, int(tab.res_molecule[residues[0]])))
            claimed[atoms] = True
        res_claimed[np.unique(ridx)] = True

    seq_templates = [(ti, t) for ti, t in enumerate(defn.templates) if t.residues is not None]
    resnames = tab.resnames
    unmatched = []
    r = 0
    while r < nres:
        if res_claimed[r]:
            r += 1
            continue
        hit = None
        for ti, t in seq_templates:
            L = len(t.residues)
            if r + L > nres:
                continue
            ok = True
            for k in range(L):
                rr = r + k
                if (str(resnames[rr]) not in t.residues[k] or res_claimed[rr]
                        or tab.res_molecule[rr] != tab.res_molecule[r]):
                    ok = False
                    break
            if ok:
                hit = (ti, L)
                break
        if hit is None:
            unmatched.append((r, str(resnames[r])))
            r += 1
            continue
        ti, L = hit
        residues = tuple(range(r, r + L))
        atoms = np.concatenate([res_atoms[q] for q in residues])
        instances.append(Instance(ti, residues, atoms, int(tab.res_molecule[r])))
        res_claimed[list(residues)] = True
        r += L
    instances.sort(key=lambda ins: (ins.residues[0], int(ins.atoms.min()) if len(ins.atoms) else 0))
    return instances, unmatched, res_atoms


def _compile(defn: MappingDefinition, tab: AtomTable, unmapped: str | None = None) -> Mapping:
    unmapped = unmapped or defn.unmapped_atoms
    if unmapped not in ("error", "warn", "ignore"):
        raise InputError("unmapped must be error, warn or ignore")
    instances, unmatched, res_atoms = _match(defn, tab)
    if not instances:
        names = sorted(set(map(str, tab.resnames)))[:20]
        raise defn.err(f"no template matches the topology (residue names there: {', '.join(names)}); "
                       "fix resname/residues/selection", defn.templates[0].line, "molecules")
    name_maps: dict = {}

    def res_lookup(r):
        m = name_maps.get(r)
        if m is None:
            m = {}
            for a in res_atoms[r]:
                m.setdefault(str(tab.names[a]), []).append(int(a))
            name_maps[r] = m
        return m

    masses = tab.masses
    rows, cols, vals, frows, fvals = [], [], [], [], []
    bead_names, bead_types, bead_mass_override, bead_charge, tmpl_of_bead, resid_of_bead = \
        [], [], [], [], [], []
    bead_index = []   # per instance: {bead name: global bead index}
    single_pos = []   # per bead: atom index for single-atom weights or -1
    b = 0
    for ii, ins in enumerate(instances):
        t = defn.templates[ins.template]
        local = {}
        for bd in t.beads:
            atoms = [_resolve(defn, t, ins, ref, bd, tab, res_lookup) for ref in bd.atoms]
            if bd.weights == "mass":
                w = masses[atoms]
                if not np.all(np.isfinite(w)) or w.sum() <= 0:
                    raise defn.err(f"bead '{bd.name}' has mass-weighted atoms whose masses sum to "
                                   f"{w.sum():g}; give weights: geometry or explicit weights",
                                   bd.line, f"{t.name}.{bd.name}.weights")
            elif bd.weights == "geometry":
                w = np.ones(len(atoms))
            elif bd.weights == "single":
                w = np.array([1.0 if ref == bd.single_atom else 0.0 for ref in bd.atoms])
            else:
                w = np.asarray(bd.weights, dtype=np.float64)
            w = w / w.sum()
            if bd.force_weights is not None:
                fw = np.asarray(bd.force_weights, float)
            else:
                fw = np.ones(len(atoms))
            for a, wi, fwi in zip(atoms, w, fw):
                rows.append(b)
                cols.append(a)
                vals.append(wi)
                fvals.append(fwi)
            local[bd.name] = b
            bead_names.append(bd.name)
            bead_types.append(bd.type)
            bead_mass_override.append(bd.mass)
            bead_charge.append(("q", float(bd.charge)) if bd.charge is not None else
                               ("q", float(np.sum(bd.atom_charges))) if bd.atom_charges is not None
                               else ("atoms", atoms))
            tmpl_of_bead.append(t.name)
            resid_of_bead.append(ii + 1)
            b += 1
        bead_index.append(local)
    n_beads, n_atoms = b, tab.n_atoms
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    M = sp.csr_matrix((np.asarray(vals), (rows, cols)), shape=(n_beads, n_atoms))
    # atoms in several beads
    count = np.bincount(cols, minlength=n_atoms)
    shared = np.where(count > 1)[0]
    if len(shared) and not defn.shared_atoms:
        a = int(shared[0])
        beads_with = rows[cols == a]
        bl = _bead_line(defn, instances, tmpl_of_bead, bead_names, int(beads_with[1]))
        raise defn.err(f"atom {a} ({tab.names[a]}, residue {tab.resnames[tab.resindex[a]]} "
                       f"#{tab.resindex[a] + 1}) is in beads '{bead_names[beads_with[0]]}' and "
                       f"'{bead_names[beads_with[1]]}' ({len(shared)} shared atoms in all); set "
                       "options.shared_atoms: true to allow shared atoms", bl, "atoms")
    missing = np.where(count == 0)[0]
    if len(missing) and unmapped != "ignore":
        desc = ", ".join(f"{i} ({tab.names[i]} in {tab.resnames[tab.resindex[i]]} "
                         f"#{tab.resindex[i] + 1})" for i in missing[:5])
        msg = (f"{len(missing)} atoms belong to no bead, e.g. {desc}; add them to beads, add a "
               "template for their residues, or set options.unmapped_atoms: warn/ignore")
        if unmapped == "error":
            raise defn.err(msg, defn.templates[0].line, "molecules")
        warnings.warn(msg, stacklevel=3)

    # bead masses
    frac = np.zeros(n_atoms)
    frac[count > 0] = 1.0 / count[count > 0]
    if defn.bead_masses == "sum":
        bm = np.asarray(sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=M.shape) @
                        (masses * frac)).ravel()
    else:  # Noid: 1/M_I = sum_i c_Ii^2 / m_i
        Mc = M.tocoo()
        with np.errstate(divide="ignore"):
            inv = np.bincount(Mc.row, weights=Mc.data ** 2 / masses[Mc.col], minlength=n_beads)
        bad = ~np.isfinite(inv) | (inv <= 0)
        if bad.any():
            raise defn.err("Noid bead masses need positive masses for every weighted atom; use "
                           "options.bead_masses: sum", None, "options.bead_masses")
        bm = 1.0 / inv
    for k, mo in enumerate(bead_mass_override):
        if mo is not None:
            bm[k] = mo
    charges = _bead_charges(defn, tab, bead_charge, frac, bead_names, tmpl_of_bead)

    # force map
    fm = defn.force_map
    Fraw = sp.csr_matrix((np.asarray(fvals), (rows, cols)), shape=M.shape)
    if fm in ("basic", "optimized") and len(shared):
        raise defn.err(f"force_map '{fm}' starts from the basic map (sum of forces), which is "
                       "invalid when atoms are shared between beads; use force_map: weights "
                       "with force_weights that satisfy M·Dᵀ = I", None, "force_map")
    if fm == "weights":
        norm = np.asarray(M.multiply(Fraw).sum(axis=1)).ravel()
        if np.any(np.abs(norm) < 1e-12):
            raise defn.err("force_weights of a bead are orthogonal to its position weights; "
                           "they cannot give M·Dᵀ = I", None, "force_weights")
        D = sp.diags(1.0 / norm) @ Fraw
    else:
        D = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=M.shape)
    err = consistency_error(M, D)
    if err > 1e-8:
        raise defn.err(f"the force map violates M·Dᵀ = I (max error {err:.2e}); with shared atoms "
                       "give force_weights that vanish on atoms shared with other beads", None,
                       "force_weights")

    # CG bonded topology
    topo = _cg_topology(defn, instances, bead_index, n_beads)
    return Mapping(M=M, D=D, bead_names=bead_names, bead_types=bead_types, bead_masses=bm,
                   bead_charges=charges, topology=topo, atom_masses=masses, instances=instances,
                   definition=defn, force_map="basic" if fm == "optimized" else fm,
                   template_of_bead=tmpl_of_bead, resid_of_bead=resid_of_bead,
                   unmatched_residues=unmatched, table=tab)


def _bead_charges(defn, tab, given, frac, bead_names, tmpl_of_bead) -> np.ndarray:
    """(B,) e: a bead's ``charge`` or summed ``atom_charges`` from the definition, otherwise
    (``options.bead_charges: sum``) the sum of its atoms' topology charges — an atom shared by
    k beads contributes q/k, as for masses — or 0 (``none``, or a topology without charges)."""
    q_top = tab.charges if defn.bead_charges == "sum" else None
    if q_top is not None:
        q_top = np.asarray(q_top, dtype=np.float64)
        bad = np.nonzero(~np.isfinite(q_top))[0]
        if len(bad):
            a = int(bad[0])
            raise defn.err(f"the topology {tab.source or ''} gives atom {a} ({tab.names[a]}) the charge "
                           f"{q_top[a]!r}; fix the topology, give the beads' charges in the mapping, or "
                           "set options.bead_charges: none", None, "options.bead_charges")
    out = np.zeros(len(given))
    for k, (how, c) in enumerate(given):
        if how == "q":
            out[k] = c
        elif q_top is not None:
            out[k] = float(np.sum(q_top[c] * frac[c]))
    return out


def _bead_line(defn, instances, tmpl_of_bead, bead_names, k):
    for t in defn.templates:
        if t.name == tmpl_of_bead[k]:
            for bd in t.beads:
                if bd.name == bead_names[k]:
                    return bd.line
    return None


def _resolve(defn, t: TemplateDef, ins: Instance, ref: AtomRef, bd, tab, res_lookup) -> int:
    fld = f"{t.name}.{bd.name}.atoms"
    if ref.index is not None:
        if ref.index >= len(ins.atoms):
            raise defn.err(f"atom index {ref.index} in bead '{bd.name}' is beyond the {len(ins.atoms)} "
                           f"atoms of template '{t.name}'", bd.line, fld)
        return int(ins.atoms[ref.index])
    if ref.offset < len(ins.residues) and ref.offset >= 0:
        r = ins.residues[ref.offset]
    else:
        r = ins.residues[0] + ref.offset
        if not (0 <= r < tab.n_residues) or tab.res_molecule[r] != tab.res_molecule[ins.residues[0]]:
            raise defn.err(f"atom '{ref}' of bead '{bd.name}' refers to residue offset {ref.offset}, "
                           f"which does not exist in the molecule at residue #{ins.residues[0] + 1}",
                           bd.line, fld)
    if ref.resname is not None and str(tab.resnames[r]) != ref.resname:
        raise defn.err(f"atom '{ref}' of bead '{bd.name}' expects residue {ref.resname} but residue "
                       f"#{r + 1} is {tab.resnames[r]}", bd.line, fld)
    hits = res_lookup(r).get(ref.name)
    if ins.template is not None and t.selection is not None and hits:
        allowed = set(ins.atoms.tolist())
        hits = [h for h in hits if h in allowed]
    if not hits:
        have = sorted(res_lookup(r))
        raise defn.err(f"unknown atom name '{ref.name}' in bead '{bd.name}': residue "
                       f"{tab.resnames[r]} #{r + 1} has atoms {', '.join(have[:30])}", bd.line, fld)
    if len(hits) > 1:
        raise defn.err(f"atom name '{ref.name}' is not unique in residue {tab.resnames[r]} #{r + 1}; "
                       "refer to it by index", bd.line, fld)
    return hits[0]


def _cg_topology(defn, instances, bead_index, n_beads) -> Topology:
    # neighbours along each molecule
    by_mol: dict = {}
    for ii, ins in enumerate(instances):
        by_mol.setdefault(ins.molecule, []).append(ii)
    pos_in_mol = {}
    for mol, lst in by_mol.items():
        for k, ii in enumerate(lst):
            pos_in_mol[ii] = (mol, k)
    terms = {"bonds": set(), "angles": set(), "dihedrals": set(), "exclusions": set()}
    out = {"bonds": [], "angles": [], "dihedrals": [], "exclusions": []}
    excl_mode = {}
    for ii, ins in enumerate(instances):
        t = defn.templates[ins.template]
        mol, k = pos_in_mol[ii]
        lst = by_mol[mol]
        kinds = ["bonds", "angles", "dihedrals"]
        if isinstance(t.exclusions, tuple):
            kinds.append("exclusions")
        for kind in kinds:
            src = getattr(t, kind)
            for ti, term in enumerate(src):
                idx = []
                for r in term:
                    j = k + r.offset
                    if not (0 <= j < len(lst)):
                        idx = None      # chain end: the linked instance does not exist
                        break
                    beads = bead_index[lst[j]]
                    if r.bead not in beads:
                        other = defn.templates[instances[lst[j]].template].name
                        raise defn.err(f"{kind} entry {[str(x) for x in term]}: the instance at "
                                       f"offset {r.offset:+d} is template '{other}', which has no "
                                       f"bead '{r.bead}'", t.bonded_lines.get((kind, ti)),
                                       f"{t.name}.{kind}[{ti}]")
                    idx.append(beads[r.bead])
                if idx is None:
                    continue
                key = tuple(idx) if tuple(idx) <= tuple(idx[::-1]) else tuple(idx[::-1])
                if kind == "exclusions":
                    key = tuple(sorted(idx))
                if key not in terms[kind]:
                    terms[kind].add(key)
                    out[kind].append(idx)
        excl_mode[ii] = t.exclusions
    bonds = np.array(out["bonds"], dtype=np.int64).reshape(-1, 2)
    angles = np.array(out["angles"], dtype=np.int64).reshape(-1, 3)
    dihedrals = np.array(out["dihedrals"], dtype=np.int64).reshape(-1, 4)
    # molecules: connected components over CG bonds + beads of the same instance / known molecule
    from scipy.sparse.csgraph import connected_components
    links = [bonds]
    for ii, ins in enumerate(instances):
        bl = list(bead_index[ii].values())
        if len(bl) > 1:
            links.append(np.stack([bl[:-1], bl[1:]], 1))
    for mol, lst in by_mol.items():
        if mol >= 0 and len(lst) > 1:
            firsts = [next(iter(bead_index[ii].values())) for ii in lst]
            links.append(np.stack([firsts[:-1], firsts[1:]], 1))
    L = np.concatenate([np.asarray(x, np.int64).reshape(-1, 2) for x in links])
    g = sp.coo_matrix((np.ones(len(L)), (L[:, 0], L[:, 1])), shape=(n_beads, n_beads))
    molecule = connected_components(g, directed=False)[1]
    # exclusions
    excl = [np.array(out["exclusions"], dtype=np.int64).reshape(-1, 2)]
    modes = {m for m in excl_mode.values() if not isinstance(m, tuple)}
    bead_tmpl_mode = np.empty(n_beads, dtype=object)
    for ii in range(len(instances)):
        for bidx in bead_index[ii].values():
            bead_tmpl_mode[bidx] = excl_mode[ii]
    if "bonded" in modes:
        for arr in (bonds, angles, dihedrals):
            for a in range(arr.shape[1]):
                for c in range(a + 1, arr.shape[1]):
                    pr = arr[:, [a, c]]
                    keep = np.array([bead_tmpl_mode[p[0]] == "bonded" for p in pr], bool)
                    excl.append(pr[keep] if len(pr) else pr)
    nmodes = {m for m in modes if isinstance(m, int)}
    for n in nmodes:
        within = Topology.from_bonds(n_beads, bonds, angles=False, dihedrals=False, exclude=n).exclusions
        keep = np.array([bead_tmpl_mode[p[0]] == n for p in within], bool)
        excl.append(within[keep] if len(within) else within)
    E = np.concatenate([e.reshape(-1, 2) for e in excl])
    return Topology(n_particles=n_beads, bonds=bonds, angles=angles, dihedrals=dihedrals,
                    molecule=molecule, exclusions=E)
