"""Potential files and ``--potential`` specs: the one place where a spec becomes a model.

Saving and loading potentials: one file holds class, config, weights and metadata.

File layout (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    {"format": "cgkit-potential", "format_version": 1, "cgkit_version": "...",
     "model": {"module": "...", "class": "...", "config": {...}},
     "state_dict": {...}, "metadata": {"type_names": [...], "cutoff": Å, "units": {...}, ...}}

Loading needs only cgkit, never code from the training run.

Every command resolves ``--potential`` here (:func:`load_model`, :func:`load_potential`,
:func:`load_calculator`):

=========================================================== =====================================
``model.pt`` (a saved cgkit model file)                      cgkit Potential
``cgkit:sw``, ``cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5`` built-in cgkit Potential
``cgkit:coulomb``, ``cgkit:nacl-bmh``, ``cgkit:spcfw``       charged built-ins (Ewald; see
                                                             docs/charged_potentials.md)
``ase:EMT``, ``ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True``
                                                             ASE calculator by class name
``ase:some.module.Class:key=value``                          any importable ASE calculator class
=========================================================== =====================================

A wrong spec raises :class:`~cgkit.errors.InputError` naming the parameter and listing the
accepted ones with their types.
"""
from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path

import torch

from .errors import InputError
from .potential import FORMAT, FORMAT_VERSION, UNITS, Potential, build, describe, save_potential

__all__ = ["load_potential", "load_model", "load_calculator", "ase_calculator", "save_potential",
           "parse_kwargs", "describe", "build", "BUILTINS", "ASE_CALCULATORS", "FORMAT",
           "FORMAT_VERSION", "UNITS"]

#: built-in potentials addressable as ``cgkit:<name>[:key=value,...]``
BUILTINS = {
    "sw": ("cgkit.potentials.stillinger_weber", "StillingerWeber"),
    "stillinger_weber": ("cgkit.potentials.stillinger_weber", "StillingerWeber"),
    "lj": ("cgkit.potentials.lennard_jones", "LennardJones"),
    "lennard_jones": ("cgkit.potentials.lennard_jones", "LennardJones"),
    "trappe_ua": ("cgkit.potentials.trappe", "TraPPEUA"),
    "coulomb": ("cgkit.potentials.coulomb", "CoulombPotential"),
    "nacl-bmh": ("cgkit.potentials.nacl", "NaClBMH"),
    "spcfw": ("cgkit.potentials.spcfw", "SPCFw"),
}


#: ASE calculators addressable as ``ase:<Name>`` (case-insensitive)
ASE_CALCULATORS = {
    "emt": ("ase.calculators.emt", "EMT"),
    "lennardjones": ("ase.calculators.lj", "LennardJones"),
    "lj": ("ase.calculators.lj", "LennardJones"),
    "morse": ("ase.calculators.morse", "MorsePotential"),
    "morsepotential": ("ase.calculators.morse", "MorsePotential"),
    "tersoff": ("ase.calculators.tersoff", "Tersoff"),
    "eam": ("ase.calculators.eam", "EAM"),
}

#: what ``--potential`` accepts, for error messages
ACCEPTED_CGKIT = ("a model file saved by cgkit (cgkit train, cgkit model init, Potential.save) or a "
                  "built-in cgkit:<name>[:key=value,...] (cgkit:sw, cgkit:lj:sigma=3.4,"
                  "epsilon=0.0104,cutoff=8.5)")
ACCEPTED = (ACCEPTED_CGKIT.replace(" or a built-in", ", a built-in") + ", or an ASE calculator "
            "ase:<Name>[:key=value,...] (ase:EMT, ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5)")


def load_potential(spec, *, dtype: torch.dtype | None = None) -> Potential:
    """A cgkit :class:`~cgkit.potential.Potential` from a saved model file or a built-in spec
    (``cgkit:sw``, ``cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5``), cast to ``dtype`` if given.

    ``ase:`` specs are refused with a message saying a cgkit potential is needed here (use
    :func:`load_model` or :func:`load_calculator` where ASE calculators are fine)."""
    spec_s = str(spec)
    if spec_s.startswith("ase:"):
        raise InputError(f"'{spec_s}' is an ASE calculator, but this needs a cgkit potential (it runs "
                         "autograd forces/Hessians through cgkit): give a model file saved by cgkit "
                         "or a built-in such as cgkit:sw or cgkit:lj:sigma=3.4,epsilon=0.0104")
    return _cgkit_potential(spec_s, dtype, ACCEPTED_CGKIT)


def _cgkit_potential(spec: str, dtype, accepted: str) -> Potential:
    pot = _builtin(spec) if spec.startswith("cgkit:") else _read_model_file(Path(spec), accepted)
    return pot.to(dtype) if dtype is not None else pot


def load_model(spec, *, dtype: torch.dtype = torch.float64):
    """Any ``--potential`` spec → a cgkit Potential (cast to ``dtype``, float64 by default:
    second derivatives need it) for model files and ``cgkit:`` specs, or an ASE calculator
    for ``ase:`` specs. Objects that already are potentials or calculators pass through
    unchanged."""
    if not isinstance(spec, (str, bytes)) and not hasattr(spec, "__fspath__"):
        return spec
    spec = spec.decode() if isinstance(spec, bytes) else str(spec)
    if spec.startswith("ase:"):
        return ase_calculator(spec)
    return _cgkit_potential(spec, dtype, ACCEPTED)


def load_calculator(spec, *, dtype: torch.dtype = torch.float64):
    """An ASE calculator for any ``--potential`` spec (a cgkit potential is wrapped in a
    :class:`~cgkit.calculator.CgkitCalculator` of ``dtype``)."""
    model = load_model(spec, dtype=dtype)
    from .calculator import CgkitCalculator
    if isinstance(model, Potential):
        return CgkitCalculator(model, dtype=dtype)
    return model


# ---------------------------------------------------------------------------- model files
def _read_model_file(path: Path, accepted: str) -> Potential:
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, not a potential file; give {accepted}")
    if not path.is_file():
        raise InputError(f"no potential file '{path}'; give {accepted}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means: not a cgkit model
        # never echo torch's message: it advises weights_only=False, which runs arbitrary code
        raise InputError(f"'{path}' is not a cgkit model file (it is not a torch file of plain "
                         f"tensors and settings as cgkit writes; {type(exc).__name__}); "
                         f"give {accepted}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"'{path}' is a torch file but not a cgkit model file (no "
                         f"'format: {FORMAT}' entry); give {accepted}")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"'{path}' was written by a newer cgkit (format {version!r}, this cgkit reads "
                         f"up to {FORMAT_VERSION}); upgrade cgkit")
    for key in ("model", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise InputError(f"'{path}' is a damaged cgkit model file (entry '{key}' missing)")
    pot = build(payload["model"])
    state = payload["state_dict"]
    if state:
        floats = [v for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
        if floats:
            pot = pot.to(floats[0].dtype)
        try:
            pot.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(f"'{path}': the stored weights do not fit the stored model "
                             f"configuration ({str(exc).splitlines()[0]})") from None
    pot.metadata = payload.get("metadata", {})
    return pot


# ---------------------------------------------------------------------------- built-ins
def _builtin(spec: str) -> Potential:
    parts = spec.split(":", 2)
    name = parts[1].lower()
    if name not in BUILTINS:
        raise InputError(f"unknown built-in potential '{parts[1]}' in '{spec}'; choose from "
                         f"{', '.join('cgkit:' + n for n in sorted(BUILTINS))}")
    mod, cls_name = BUILTINS[name]
    cls = getattr(importlib.import_module(mod), cls_name)
    kwargs = parse_kwargs(parts[2]) if len(parts) > 2 else {}
    params = {k: p for k, p in _signature_params(cls.__init__).items() if _kind(p) not in (None, "any")}
    kwargs = _check_kwargs(f"cgkit:{name}", params, kwargs)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a parameter combination the table above could not check
        raise InputError(f"bad parameters for cgkit:{name}: {exc}") from None


# ---------------------------------------------------------------------------- ASE calculators
def ase_calculator(spec: str):
    """An ASE calculator instance for ``ase:<Name>[:key=value,...]`` or
    ``ase:<module.Class>[:key=value,...]``; keywords are checked against the class's
    parameters before it is built."""
    parts = spec.split(":", 2)
    name = parts[1] if len(parts) > 1 else ""
    if not name:
        raise InputError(f"'{spec}': give an ASE calculator name, e.g. ase:EMT or "
                         "ase:LennardJones:sigma=3.4,epsilon=0.0104")
    kwargs = parse_kwargs(parts[2]) if len(parts) > 2 else {}
    if name.lower() in ASE_CALCULATORS:
        module, cls = ASE_CALCULATORS[name.lower()]
    elif "." in name:
        module, cls = name.rsplit(".", 1)
    else:
        raise InputError(f"unknown ASE calculator '{name}'; choose from "
                         f"{sorted(set(v[1] for v in ASE_CALCULATORS.values()))} "
                         "or give a full class path, e.g. ase:ase.calculators.emt.EMT")
    try:
        klass = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot import ASE calculator {module}.{cls}: {exc}") from None
    if not isinstance(klass, type):
        raise InputError(f"ase:{name} is not a calculator class")
    params = _ase_params(klass)
    if params is not None:
        kwargs = _check_kwargs(f"ase:{cls}", params, kwargs)
    try:
        return klass(**kwargs)
    except TypeError as exc:
        raise InputError(f"bad keyword arguments for ase:{cls}: {exc}") from None


#: constructor arguments of every ASE Calculator that are not physics parameters
_ASE_BASE_ARGS = {"restart", "ignore_bad_restart_file", "label", "atoms", "directory", "command",
                  "profile", "comm", "txt", "neighbor_list"}


def _ase_params(klass):
    """{name: default} of the keywords an ASE calculator class accepts, or None when it
    cannot be told (a ``**kwargs`` constructor without ``default_parameters``)."""
    params, var_kw = {}, False
    for k, p in _init_signature(klass).items():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in _ASE_BASE_ARGS:
            params[k] = p
    defaults = getattr(klass, "default_parameters", None) or {}
    for k, v in defaults.items():
        params.setdefault(k, inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v))
    if var_kw and not defaults:
        return None
    return params


def _init_signature(klass) -> dict:
    try:
        return dict(inspect.signature(klass.__init__).parameters)
    except (TypeError, ValueError):
        return {}


def _signature_params(init) -> dict:
    return {k: p for k, p in inspect.signature(init).parameters.items()
            if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


# ---------------------------------------------------------------------------- key=value parsing
def _kind(p: inspect.Parameter) -> str | None:
    """'bool' | 'float' | 'int' | 'number' | 'str' | 'any' for a parameter settable from a
    spec, None for one that is not (lists, matrices, objects)."""
    ann = p.annotation
    ann = "" if ann is p.empty else ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    choices = [a.strip() for a in ann.split("|") if a.strip() and a.strip() != "None"]
    if len(choices) == 1 and choices[0] in ("bool", "float", "int", "str"):
        return choices[0]
    if ann:
        return None
    d = p.default
    if isinstance(d, bool):
        return "bool"
    if isinstance(d, float):
        return "float"
    if isinstance(d, int):
        return "number"
    if isinstance(d, str):
        return "str"
    if d is None:
        return "any"
    return None


def _describe_params(params: dict) -> str:
    items = []
    for k, p in params.items():
        kind = _kind(p)
        if kind is None:
            continue
        default = "" if p.default is p.empty else f", default {p.default!r}"
        items.append(f"{k} ({'value' if kind == 'any' else kind}{default})")
    return "; ".join(items) if items else "none"


def _check_kwargs(what: str, params: dict, kwargs: dict) -> dict:
    """``kwargs`` checked against ``params`` (names and types); ints become floats where a
    float is expected. Raises InputError naming the parameter and listing the valid ones."""
    out = {}
    for k, v in kwargs.items():
        p = params.get(k)
        kind = _kind(p) if p is not None else None
        if p is None or kind is None:
            raise InputError(f"{what}: unknown parameter '{k}'; {what} accepts: "
                             f"{_describe_params(params)}")
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"{what}: parameter '{k}' must be a number, got '{v}'; {what} "
                                 f"accepts: {_describe_params(params)}")
            v = float(v)
        elif kind == "number":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"{what}: parameter '{k}' must be a number, got '{v}'; {what} "
                                 f"accepts: {_describe_params(params)}")
        elif kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(f"{what}: parameter '{k}' must be an integer, got '{v}'; {what} "
                                 f"accepts: {_describe_params(params)}")
        elif kind == "bool" and not isinstance(v, bool):
            raise InputError(f"{what}: parameter '{k}' must be true or false, got '{v}'")
        elif kind == "str" and not isinstance(v, str):
            v = str(v)
        out[k] = v
    return out


def parse_kwargs(text: str) -> dict:
    """``"a=1,b=2.5,c=True,d=name"`` → {'a': 1, 'b': 2.5, 'c': True, 'd': 'name'}.

    Numbers must be finite (``nan``/``inf`` are refused)."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise InputError(f"expected key=value in '{text}', got '{item}'")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise InputError(f"missing parameter name in '{item}' (expected key=value)")
        if k in out:
            raise InputError(f"parameter '{k}' given twice in '{text}'")
        out[k] = _parse_value(v.strip(), k)
    return out


def _parse_value(v: str, key: str = ""):
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for conv in (int, float):
        try:
            x = conv(v)
        except ValueError:
            continue
        if isinstance(x, float) and not math.isfinite(x):
            raise InputError(f"parameter '{key}' must be a finite number, got '{v}'")
        return x
    return v
