"""The `cgkit learn` configuration: defaults, validation and the structures it explores from.

A minimal complete config (everything else has the defaults of :data:`DEFAULT_CONFIG`)::

    teacher: ase:EMT
    species: [Cu]
    structures:
      - {bulk: Cu, crystalstructure: fcc, a: 3.61, cubic: true, repeat: [2, 2, 2]}

Every key with its default (units: K, fs, eV/Å)::

    teacher: null                 # any --potential/ASE spec: ase:EMT, cgkit:sw, model.pt,
                                  #   ase:tblite.ase.TBLite:method=GFN2-xTB
    species: null                 # element symbols the committee is built for
    structures: []                # exploration starting points: file names (every frame is one),
                                  #   {bulk: El, crystalstructure, a, cubic, repeat, vacancies: n},
                                  #   {surface: fcc111, symbol, size, vacuum, a},
                                  #   {molecule: CH3CH2OH, vacuum: 6.0} (open boundaries)
    seed: 0
    seed_set: {file: null, n_rattled: 4, rattle: 0.1}   # start labels: a labelled file, or rattled
                                  #   copies (std Å) of every structure labelled by the teacher
    committee:
      size: 3                     # members (different seeds)
      model: {preset: small, r_cut: 4.0}          # any `cgkit train` model options
      train: {max_epochs: 40}     # any `cgkit train` keys (loss, optimizer, batch_size, ...); a
                                  #   mapping given here replaces this default whole (keys it
                                  #   leaves out take `cgkit train`'s defaults), and
                                  #   data.val_fraction defaults to 0: every label trains (the
                                  #   next iteration's fresh labels are the held-out set)
      warm_start: true            # later iterations start from the previous members' weights
      warm_start_train: {max_epochs: 20}   # `cgkit train` keys replacing train's in a warm start;
                                  #   a mapping given here replaces this default whole, so
                                  #   {max_steps: 400} is not also capped at 20 epochs (null for
                                  #   either: no keys of its own)
    exploration: {temperatures: [300.0], strains: [0.0], steps: 200, sample_every: 10,
                  timestep_fs: 2.0, friction_per_fs: 0.02, min_distance_fraction: 0.7}
                                  # frames with two atoms closer than min_distance_fraction × the
                                  #   start structure's shortest distance are unphysical: never
                                  #   selected (whatever the method)
    trust: {lo: 0.05, hi: 0.5}    # calibrated per-atom force sigma (eV/Å), DP-GEN style
    selection: {max_per_iteration: 8, method: sigma, score: rms, exclusion_quantile: 0.1,
                random_share: 0.0}
                                  # sigma: over every explored frame below hi, the largest σ
                                  #   first (score rms: RMS over atoms of the calibrated σ_F; max:
                                  #   the largest atom's), skipping frames closer in descriptor
                                  #   space to one already chosen than the exclusion_quantile
                                  #   quantile of the pool's pairwise distances;
                                  #   fps: farthest-point sampling among the candidates (lo..hi);
                                  #   uniform: uniform among the candidates (DP-GEN's choice);
                                  #   random: uniform from every explored frame below hi (the
                                  #   baseline active learning is compared with);
                                  #   random_share: this fraction of every batch (rounded) is drawn
                                  #   uniformly from every explored frame below hi instead, and the
                                  #   σ calibration is fitted on those frames only (an unbiased
                                  #   sample of the pool, not its largest-σ tail)
    calibration: {method: scale}  # fitted on fresh labels the committee had not seen
    labelling: {backend: serial, workers: 2, address: null, jobqueue: null}
    stop: {max_iterations: 4, label_budget: 200, candidate_fraction: 0.05}
    test: {file: null}            # labelled test set: error vs number of labels in the report
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["DEFAULT_CONFIG", "merge_config", "validate_config", "build_structures"]

DEFAULT_CONFIG = {
    "teacher": None,
    "species": None,
    "structures": [],
    "seed": 0,
    "seed_set": {"file": None, "n_rattled": 4, "rattle": 0.1},
    "committee": {"size": 3, "model": {"preset": "small", "r_cut": 4.0}, "train": {"max_epochs": 40},
                  "warm_start": True, "warm_start_train": {"max_epochs": 20}},
    "exploration": {"temperatures": [300.0], "strains": [0.0], "steps": 200, "sample_every": 10,
                    "timestep_fs": 2.0, "friction_per_fs": 0.02, "min_distance_fraction": 0.7},
    "trust": {"lo": 0.05, "hi": 0.5},
    "selection": {"max_per_iteration": 8, "method": "sigma", "score": "rms", "exclusion_quantile": 0.1,
                  "random_share": 0.0},
    "calibration": {"method": "scale"},
    "labelling": {"backend": "serial", "workers": 2, "address": None, "jobqueue": None},
    "stop": {"max_iterations": 4, "label_budget": 200, "candidate_fraction": 0.05},
    "test": {"file": None},
}

_FREE = {("committee", "model"), ("committee", "train"), ("committee", "warm_start_train"),
         ("labelling", "jobqueue")}
# free mappings whose default is a budget: the user's mapping replaces it whole instead of being
# merged into it (a default max_epochs must not cap a user's max_steps unseen)
_REPLACE = {("committee", "train"), ("committee", "warm_start_train")}


def merge_config(user: dict, *, where: str = "the learn config") -> dict:
    """Defaults overlaid by ``user``; unknown keys refused with the allowed ones named."""
    if not isinstance(user, dict):
        raise InputError(f"{where} must be a mapping of keys to values, got {type(user).__name__}")
    cfg = copy.deepcopy(DEFAULT_CONFIG)

    def merge(base, new, path):
        for k, v in new.items():
            if k not in base:
                raise InputError(f"unknown key '{'.'.join(path + (k,))}' in {where}; allowed here: "
                                 f"{', '.join(sorted(base))}")
            if isinstance(base[k], dict) and path + (k,) not in _FREE:
                if not isinstance(v, dict):
                    raise InputError(f"'{'.'.join(path + (k,))}' in {where} must be a mapping")
                merge(base[k], v, path + (k,))
            elif path + (k,) in _REPLACE and v is None:
                base[k] = {}  # null: no keys of its own (`cgkit train`'s defaults; train's in a warm start)
            elif path + (k,) in _FREE and v is not None:
                if not isinstance(v, dict):
                    raise InputError(f"'{'.'.join(path + (k,))}' in {where} must be a mapping")
                base[k] = dict(v) if path + (k,) in _REPLACE else {**(base[k] or {}), **v}
            else:
                base[k] = v
    merge(cfg, user, ())
    return cfg


def _num(v, name, *, integer=False, minimum=None, above=None):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
    if integer:
        ok = ok and float(v).is_integer()
    if ok and minimum is not None:
        ok = v >= minimum
    if ok and above is not None:
        ok = v > above
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f" >= {minimum}" if minimum is not None else (f" > {above}" if above is not None else "")
        raise InputError(f"'{name}' must be {kind}{bound}, got {v!r}")
    return int(v) if integer else float(v)


def validate_config(cfg: dict) -> dict:
    if not cfg["teacher"] or not isinstance(cfg["teacher"], str):
        raise InputError("'teacher' is required: a spec such as ase:EMT, cgkit:sw, model.pt or "
                         "ase:tblite.ase.TBLite:method=GFN2-xTB")
    sp = cfg["species"]
    if not isinstance(sp, list) or not sp or not all(isinstance(s, str) for s in sp):
        raise InputError("'species' is required: a list of element symbols, e.g. [Cu]")
    if not isinstance(cfg["structures"], list) or not cfg["structures"]:
        raise InputError("'structures' is required: exploration starting points (files or builders)")
    _num(cfg["seed"], "seed", integer=True, minimum=0)
    c = cfg["committee"]
    _num(c["size"], "committee.size", integer=True, minimum=2)
    e = cfg["exploration"]
    for T in e["temperatures"]:
        _num(T, "exploration.temperatures", minimum=0)
    for s in e["strains"]:
        _num(s, "exploration.strains", above=-0.5)
    _num(e["steps"], "exploration.steps", integer=True, minimum=1)
    _num(e["sample_every"], "exploration.sample_every", integer=True, minimum=1)
    _num(e["timestep_fs"], "exploration.timestep_fs", above=0)
    _num(e["friction_per_fs"], "exploration.friction_per_fs", minimum=0)
    lo = _num(cfg["trust"]["lo"], "trust.lo", minimum=0)
    hi = _num(cfg["trust"]["hi"], "trust.hi", above=0)
    if not lo < hi:
        raise InputError(f"trust.lo must be below trust.hi (eV/Å), got lo={lo}, hi={hi}")
    _num(cfg["selection"]["max_per_iteration"], "selection.max_per_iteration", integer=True, minimum=1)
    if cfg["selection"]["method"] not in ("sigma", "fps", "uniform", "random"):
        raise InputError(f"selection.method must be sigma, fps, uniform or random, got {cfg['selection']['method']!r}")
    if cfg["selection"]["score"] not in ("rms", "max"):
        raise InputError(f"selection.score must be rms or max, got {cfg['selection']['score']!r}")
    rs = _num(cfg["selection"]["random_share"], "selection.random_share", minimum=0)
    if rs > 1:
        raise InputError(f"selection.random_share must be in [0, 1] (the fraction of each batch drawn "
                         f"uniformly from the explored frames), got {rs}")
    q = _num(cfg["selection"]["exclusion_quantile"], "selection.exclusion_quantile", minimum=0)
    if q >= 1:
        raise InputError(f"selection.exclusion_quantile must be below 1, got {q}")
    f = _num(e["min_distance_fraction"], "exploration.min_distance_fraction", minimum=0)
    if f >= 1:
        raise InputError(f"exploration.min_distance_fraction must be below 1, got {f}")
    st = cfg["stop"]
    _num(st["max_iterations"], "stop.max_iterations", integer=True, minimum=1)
    _num(st["label_budget"], "stop.label_budget", integer=True, minimum=1)
    _num(st["candidate_fraction"], "stop.candidate_fraction", minimum=0)
    ss = cfg["seed_set"]
    _num(ss["n_rattled"], "seed_set.n_rattled", integer=True, minimum=0)
    _num(ss["rattle"], "seed_set.rattle", minimum=0)
    if not ss["file"] and ss["n_rattled"] == 0:
        raise InputError("the seed set is empty: give seed_set.file or seed_set.n_rattled >= 1")
    return cfg


def _build_one(spec: dict, k: int):
    from ase.build import bulk
    import ase.build
    spec = dict(spec)
    try:
        if "bulk" in spec:
            name = spec.pop("bulk")
            repeat = spec.pop("repeat", None)
            vac = int(spec.pop("vacancies", 0))
            a = bulk(name, **spec)
            if repeat:
                a = a.repeat(tuple(repeat))
            if vac:
                if vac >= len(a):
                    raise InputError(f"structures[{k}]: {vac} vacancies in a cell of {len(a)} atoms")
                del a[list(range(vac))]
            return [a]
        if "molecule" in spec:
            from ase.build import molecule
            name = spec.pop("molecule")
            vacuum = float(spec.pop("vacuum", 0.0))
            try:
                a = molecule(name, **spec)
            except KeyError:
                raise InputError(f"structures[{k}]: unknown molecule '{name}' (ase.build.molecule names)") from None
            if vacuum:
                a.center(vacuum=vacuum)
            return [a]
        if "surface" in spec:
            kind = spec.pop("surface")
            fn = getattr(ase.build, kind, None)
            if fn is None or not callable(fn):
                raise InputError(f"structures[{k}]: unknown surface builder '{kind}' (ase.build.{kind})")
            return [fn(**spec)]
    except TypeError as exc:
        raise InputError(f"structures[{k}]: {exc}") from None
    raise InputError(f"structures[{k}] must be a file name or a mapping with 'bulk', 'surface' or "
                     f"'molecule', got {spec!r}")


def build_structures(specs, base: Path | None = None) -> list:
    """ASE Atoms of every ``structures`` entry (files: every frame)."""
    from ase.io import read
    out = []
    for k, spec in enumerate(specs):
        if isinstance(spec, str):
            p = Path(spec) if base is None or Path(spec).is_absolute() else base / spec
            if not p.is_file():
                raise InputError(f"structures[{k}]: no file '{p}'")
            try:
                out.extend(read(str(p), ":"))
            except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
                raise InputError(f"structures[{k}]: cannot read '{p}': {exc}") from None
        elif isinstance(spec, dict):
            out.extend(_build_one(spec, k))
        else:
            raise InputError(f"structures[{k}] must be a file name or a builder mapping, got {spec!r}")
    for k, a in enumerate(out):
        a.calc = None
    return out
