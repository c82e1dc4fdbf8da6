"""The hybrid CG recipe, in one place: Boltzmann-inverted bonded terms → force matching of the
rest with those fixed → optional IBI refinement of the bonded terms.

1. Bonds and angles: :func:`~cgkit.forcematch.boltzmann.boltzmann_bonded_tables` of the mapped
   reference (the one Boltzmann inversion; ``bins`` histogram bins, the same as IBI's).
2. Everything else (pairs, dihedrals): spline MS-CG on the mapped forces minus the forces of the
   fixed bonded tables (:class:`~cgkit.forcematch.SplineForceMatching` with ``fixed=``; VOTCA's
   hybrid scheme, Rühle & Junghans, Macromol. Theory Simul. 20, 472 (2011)). Frames are streamed
   (``chunks``) and normal equations of other systems or runs can be added. Alternatively
   ``rest_tables`` supplies these tables (e.g. those of an all-MS-CG fit) and step 2 is skipped.
3. Optional: ``ibi.iterations`` of :class:`~cgkit.forcematch.ibi.IterativeBoltzmannInversion`
   on the bonded tables against the mapped reference, the other tables kept.

Defaults are those of :data:`cgkit.forcematch.ibi.IBI_DEFAULTS` (α = 1.0: bonded terms are weakly
coupled, the undamped update of Reith et al. converges in a few iterations; 5000 + 1000 CG MD
steps of 5 fs per iteration, friction 0.01/fs) and :data:`cgkit.forcematch.boltzmann.BINS`
(100 bins). ``cgkit fm --bonded boltzmann|ibi``, the demo and the case studies call this.

Units: Å, eV, eV/Å, K, fs, amu; angle grids in degrees.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from ..results import Analysis, Results
from .boltzmann import BINS, SparseSamplingWarning, boltzmann_bonded_tables
from .ibi import IBI_DEFAULTS, IterativeBoltzmannInversion
from .tabulated import TabulatedPotential

__all__ = ["hybrid_fit", "HybridFit", "IBISettings"]

BONDED = ("bond", "angle")


@dataclass(frozen=True)
class IBISettings:
    """IBI refinement of the bonded tables (``iterations = 0``: none). Defaults: IBI_DEFAULTS."""
    iterations: int = 4
    alpha: float = IBI_DEFAULTS["alpha"]
    md_steps: int = IBI_DEFAULTS["md_steps"]
    equilibration: int = IBI_DEFAULTS["equilibration"]
    sample_every: int = IBI_DEFAULTS["sample_every"]
    timestep: float = IBI_DEFAULTS["timestep"]
    friction: float = IBI_DEFAULTS["friction"]
    seed: int = 0


class HybridFit(Analysis):
    """Result of :func:`hybrid_fit`.

    ``bonded_tables``: the Boltzmann-inverted bond/angle tables; ``fit``: the
    :class:`~cgkit.forcematch.mscg.ForceMatchResult` of step 2 (None with ``rest_tables``);
    ``ibi``: the :class:`IterativeBoltzmannInversion` (None without refinement); ``potential``:
    the final :class:`TabulatedPotential`; ``warnings``: sparse-sampling warnings of the fit;
    ``normal_equations``: those of this system's frames (save them to add to other runs).
    """

    def __init__(self, bonded_tables, fit, ibi, potential, warnings_, settings, normal_equations=None):
        self.bonded_tables, self.fit, self.ibi, self.potential = bonded_tables, fit, ibi, potential
        #: normal equations of the frames given to this fit (not those added), for saving/combining
        self.normal_equations = normal_equations
        self.warnings = list(warnings_)
        self.settings = settings
        #: wall seconds of the steps (``boltzmann_and_force_matching``, ``ibi``)
        self.timing: dict = {}
        self.results = Results(bonded_tables=bonded_tables, fit=fit, ibi=ibi, potential=potential)

    @property
    def history(self) -> list:
        """IBI iteration records (empty without refinement)."""
        return self.ibi.history if self.ibi is not None else []

    def summary(self) -> dict:
        from ..jsonutil import jsonable
        return jsonable({"recipe": "Boltzmann-inverted bonds/angles (fixed) + force matching of the rest"
                                   + (" + IBI of bonds/angles" if self.ibi is not None else ""),
                         "settings": self.settings,
                         "bonded_tables": [t.label for t in self.bonded_tables],
                         "force_matching": self.fit.summary() if self.fit is not None else None,
                         "ibi": self.ibi.summary() if self.ibi is not None else None,
                         "interactions": [t.label for t in getattr(self.potential, "tables", None) or
                                          [t for p in getattr(self.potential, "terms", [])
                                           for t in getattr(p, "tables", [])]],
                         "warnings": self.warnings, "timing_s": self.timing})

    def plot(self, directory) -> list:
        out = []
        if self.fit is not None:
            out += self.fit.plot(directory)
        if self.ibi is not None:
            out += self.ibi.plot(directory)
        return out


def _chunk(c):
    if len(c) == 3:
        return c[0], c[1], c[2], None
    return c[0], c[1], c[2], c[3]


def hybrid_fit(type_names, species, topology, reference_positions, reference_boxes=None, *,
               temperature: float = 300.0, positions=None, forces=None, boxes=None, chunks=None,
               source: str = "the trajectory", more_systems=(), normal_equations=(), fm=None,
               solve=None, rest_tables=None, bins: int = BINS, ibi: IBISettings | None = None,
               masses=None, start_positions=None, box=None, pair_cutoff: float | None = None,
               progress: bool = False, callback=None) -> HybridFit:
    """Run the hybrid recipe (module docstring) and return a :class:`HybridFit`.

    Parameters
    ----------
    type_names, species, topology : the CG system (bead type names, per-bead type indices or
        names, :class:`~cgkit.topology.Topology`)
    reference_positions : (n_frames, n_beads, 3) Å mapped frames for the Boltzmann inversion and
        the IBI targets; reference_boxes : None, one box or one per frame (Å)
    temperature : K of the reference
    positions, forces, boxes : in-memory frames to force-match (Å, eV/Å); or ``chunks``: an
        iterable of (positions, forces, boxes[, frame_indices]) chunks streamed into the fit
        (``frame_indices``: 0-based indices in the file ``source`` for error messages)
    more_systems : other systems fitted together with this one (normal equations added), each
        (species, topology, positions, forces, boxes) — e.g. melts of other chain lengths
    normal_equations : :class:`~cgkit.forcematch.NormalEquations` of other runs to add
    fm : keyword arguments of :class:`~cgkit.forcematch.SplineForceMatching` (pair, dihedral,
        grids, block_size, on_empty, ...); bond/angle grids are not used (those are fixed).
        ``fixed_terms`` (e.g. the bead Coulomb term) are subtracted in step 2 and the final
        potential is ``SumPotential([tables, *fixed_terms])`` (IBI refinement is then refused: its
        CG MD runs tables only)
    solve : keyword arguments of :meth:`SplineForceMatching.solve`
    rest_tables : tables for everything but bonds/angles, instead of step 2
    bins : histogram bins of the Boltzmann inversion and of IBI
    ibi : :class:`IBISettings` (None: no refinement); needs ``masses`` (amu per bead) and a
        periodic box; CG MD starts from ``start_positions`` in ``box`` (default: the last
        reference frame and its box)
    pair_cutoff : Å, the RDF range IBI scores pairs on (default: the pair tables' cutoff, at
        most half the shortest box width)
    callback : ``callback(record)`` after every IBI iteration; returning False stops
    """
    kT_temperature = float(temperature)
    ref = np.asarray(reference_positions, dtype=np.float64)
    if ref.ndim == 2:
        ref = ref[None]
    sp = np.asarray(species)
    if sp.dtype.kind in "US" or sp.dtype == object:
        lookup = {t: k for k, t in enumerate(type_names)}
        sp = np.array([lookup[str(s)] for s in sp], dtype=np.int64)
    settings = {"temperature_K": kT_temperature, "bins": int(bins),
                "ibi": asdict(ibi) if ibi is not None else None}
    timing = {}
    fixed_terms = tuple((fm or {}).get("fixed_terms") or ())
    if fixed_terms and ibi is not None and ibi.iterations > 0:
        raise InputError("IBI refinement of the bonded tables runs CG MD with tables only and cannot keep "
                         "a fixed Coulomb (or other non-table) term; use Boltzmann-inverted bonded terms "
                         "without IBI (cgkit fm --bonded boltzmann) or force-match everything (--bonded fm)")
    t0 = time.perf_counter()
    # 1. Boltzmann inversion of the bonded distributions
    bonded = boltzmann_bonded_tables(type_names, sp, topology, ref, reference_boxes,
                                     temperature=kT_temperature, bins=bins)
    keys = {(t.kind, t.types) for t in bonded}
    # 2. force matching of the rest
    fit, msgs, own = None, [], None
    if rest_tables is None:
        from .mscg import SplineForceMatching
        kw = dict(fm or {})
        kw.update(bond=None, angle=None, fixed=bonded)
        main = SplineForceMatching(type_names, sp, topology, **kw)
        if chunks is not None:
            for c in chunks:
                p, f, b, idx = _chunk(c)
                main.accumulate(p, f, b, progress=progress, frame_indices=idx, source=source)
        if positions is not None:
            main.accumulate(positions, forces, boxes, progress=progress, source=source)
        own = main.normal_equations  # this system's frames only (``+`` below makes new objects)
        for s_sp, s_top, s_pos, s_frc, s_box in more_systems:
            other = SplineForceMatching(type_names, s_sp, s_top, **kw)
            other.accumulate(s_pos, s_frc, s_box, progress=progress)
            main.add(other.normal_equations)
        for ne in normal_equations:
            main.add(ne)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SparseSamplingWarning)
            fit = main.solve(**(solve or {}))
        msgs = list(dict.fromkeys(str(w.message) for w in caught
                                  if issubclass(w.category, SparseSamplingWarning)))
        for w in caught:
            if not issubclass(w.category, SparseSamplingWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        rest = [t for t in fit.tables if (t.kind, t.types) not in keys]
    else:
        from .tabulated import Table
        rest = [t if isinstance(t, Table) else Table.from_dict(t)
                for t in (rest_tables.tables if isinstance(rest_tables, TabulatedPotential) else rest_tables)]
        rest = [t for t in rest if (t.kind, t.types) not in keys and t.kind not in BONDED]
    timing["boltzmann_and_force_matching"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # 3. IBI of the bonded tables
    run = None
    if ibi is not None and ibi.iterations > 0:
        if masses is None:
            raise InputError("IBI refinement runs CG MD and needs the bead masses (masses=...)")
        if reference_boxes is None and box is None:
            raise InputError("IBI refinement runs CG MD and needs a periodic box (reference_boxes)")
        rb = np.asarray(reference_boxes if box is None else box, dtype=float)
        b_md = rb if (rb.ndim == 1 or rb.shape == (3, 3)) else rb[-1]
        cell = np.diag(b_md) if b_md.shape == (3,) else b_md.reshape(3, 3)
        half = 0.5 * float(np.min(np.linalg.norm(cell, axis=1)))
        if pair_cutoff is None:
            pair_cutoff = max([t.x_max for t in rest if t.kind == "pair"], default=half)
        rc = min(float(pair_cutoff), half - 1e-6)
        run = IterativeBoltzmannInversion(
            type_names, sp, topology, masses, ref, reference_boxes if reference_boxes is not None else box,
            ref[-1] if start_positions is None else start_positions, b_md, temperature=kT_temperature,
            pair_cutoff=rc, bins=bins, kinds=BONDED, alpha=ibi.alpha, md_steps=ibi.md_steps,
            equilibration=ibi.equilibration, sample_every=ibi.sample_every, timestep=ibi.timestep,
            friction=ibi.friction, seed=ibi.seed, progress=progress, start_tables=rest + bonded)
        run.run(ibi.iterations, callback=callback)
        potential = run.potential
    else:
        potential = TabulatedPotential(tuple(type_names), topology, rest + bonded)
        if fixed_terms:
            from ..potential import SumPotential
            potential = SumPotential([potential, *fixed_terms])
    timing["ibi"] = time.perf_counter() - t0
    out = HybridFit(bonded, fit, run, potential, msgs, settings, own)
    out.timing = timing
    return out
