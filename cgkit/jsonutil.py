"""Strict JSON output shared by every results object and command (``summary.json`` files).

JSON has no NaN or infinity; Python's ``json`` writes bare ``NaN``/``Infinity`` by default,
which strict parsers (JavaScript, jq, ``json.loads(..., parse_constant=...)``) reject. Here
NaN becomes ``null`` and ±inf the strings ``"inf"``/``"-inf"``, and the encoder runs with
``allow_nan=False`` so that nothing non-finite can slip through.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["jsonable", "dumps", "write_json", "loads_strict", "write_text_atomic"]


def jsonable(obj):
    """A JSON-serialisable copy of ``obj``: numpy/torch arrays become lists, numpy scalars
    Python numbers, NaN becomes ``null`` and ±inf the strings ``"inf"``/``"-inf"`` (JSON has
    no infinities; e.g. the persistence length of a rigid rod). Objects with a ``summary()``
    method (cgkit results) are replaced by their summary."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor, without importing torch
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, complex):
        return {"real": jsonable(obj.real), "imag": jsonable(obj.imag)}
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "summary") and callable(obj.summary):
        return jsonable(obj.summary())
    if hasattr(obj, "item") and callable(obj.item):  # 0-d numpy/torch scalars of other kinds
        return jsonable(obj.item())
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    """Strict JSON text of ``jsonable(obj)`` (raises ValueError on anything non-finite left)."""
    return json.dumps(jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name!r}")


def loads_strict(text: str):
    """Parse JSON rejecting ``NaN``/``Infinity`` (what strict parsers do)."""
    return json.loads(text, parse_constant=_reject_constant)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so
    that an interrupted write never leaves a partial file (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj, indent: int = 2) -> Path:
    """Write strict JSON of ``obj`` to ``path`` atomically (parents created); returns the path."""
    return write_text_atomic(path, dumps(obj, indent=indent) + "\n")
