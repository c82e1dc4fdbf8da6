"""Saving and loading potentials: one file holds class, config, weights and metadata.

File layout (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    {"format": "cgkit-potential", "format_version": 1, "cgkit_version": "...",
     "model": {"module": "...", "class": "...", "config": {...}},
     "state_dict": {...}, "metadata": {"type_names": [...], "cutoff": Å, "units": {...}, ...}}

Loading needs only cgkit, never code from the training run.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from .errors import InputError

FORMAT = "cgkit-potential"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Å", "force": "eV/Å", "stress": "eV/Å³", "mass": "amu"}

#: built-in potentials addressable as ``cgkit:<name>[:key=value,...]``
BUILTINS = {
    "sw": ("cgkit.potentials.stillinger_weber", "StillingerWeber"),
    "stillinger_weber": ("cgkit.potentials.stillinger_weber", "StillingerWeber"),
    "lj": ("cgkit.potentials.lennard_jones", "LennardJones"),
    "lennard_jones": ("cgkit.potentials.lennard_jones", "LennardJones"),
    "trappe_ua": ("cgkit.potentials.trappe", "TraPPEUA"),
}


def describe(potential) -> dict:
    """{module, class, config} of a potential (config from its ``get_config``)."""
    cls = type(potential)
    return {"module": cls.__module__, "class": cls.__name__, "config": potential.get_config()}


def build(description: dict):
    """Instantiate a potential from :func:`describe` output (weights not loaded)."""
    try:
        cls = getattr(importlib.import_module(description["module"]), description["class"])
    except (ImportError, AttributeError, KeyError) as exc:
        raise InputError(f"cannot rebuild potential {description!r}: {exc}") from exc
    return cls.from_config(description["config"])


def save_potential(potential, path, metadata: dict | None = None) -> None:
    from . import __version__
    meta = {"type_names": list(potential.type_names) if potential.type_names else None,
            "cutoff": float(potential.cutoff), "units": UNITS,
            "dtype": str(potential.dtype).replace("torch.", "")}
    meta.update(metadata or {})
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "cgkit_version": __version__,
               "model": describe(potential), "state_dict": potential.state_dict(), "metadata": meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written model


def load_potential(spec, *, dtype: torch.dtype | None = None):
    """A Potential from a saved model file or a built-in spec ``cgkit:sw``,
    ``cgkit:lj:sigma=3.4,epsilon=0.0104,cutoff=8.5``."""
    spec_s = str(spec)
    if spec_s.startswith("cgkit:"):
        parts = spec_s.split(":", 2)
        name = parts[1].lower()
        if name not in BUILTINS:
            raise InputError(f"unknown built-in potential '{name}'; choose from {sorted(BUILTINS)}")
        kwargs = parse_kwargs(parts[2]) if len(parts) > 2 else {}
        mod, cls = BUILTINS[name]
        pot = getattr(importlib.import_module(mod), cls)(**kwargs)
    else:
        path = Path(spec_s)
        if not path.is_file():
            raise InputError(f"no potential file '{path}' (give a saved cgkit model or cgkit:<builtin>)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
            raise InputError(f"'{path}' is not a readable cgkit potential file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise InputError(f"'{path}' is not a cgkit potential file (format key missing)")
        if payload.get("format_version", 0) > FORMAT_VERSION:
            raise InputError(f"'{path}' was written by a newer cgkit (format "
                             f"{payload['format_version']}); upgrade cgkit")
        pot = build(payload["model"])
        state = payload["state_dict"]
        if state:
            pot = pot.to(next(iter(state.values())).dtype) if any(
                v.is_floating_point() for v in state.values()) else pot
            pot.load_state_dict(state)
        pot.metadata = payload.get("metadata", {})
    if dtype is not None:
        pot = pot.to(dtype)
    return pot


def parse_kwargs(text: str) -> dict:
    """``"a=1,b=2.5,c=True,d=name"`` → {'a': 1, 'b': 2.5, 'c': True, 'd': 'name'}."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise InputError(f"expected key=value in '{text}', got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v.strip())
    return out


def _parse_value(v: str):
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v
