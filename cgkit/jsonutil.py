"""JSON output shared by every results object and command (``summary.json`` files)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["jsonable", "write_json"]


def jsonable(obj):
    """A JSON-serialisable copy of ``obj``: numpy/torch arrays become lists, numpy scalars
    Python numbers, NaN becomes ``null`` and ±inf the strings ``"inf"``/``"-inf"`` (JSON has
    no infinities; e.g. the persistence length of a rigid rod)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
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
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path, obj, indent: int = 2) -> Path:
    """Write ``jsonable(obj)`` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(obj), indent=indent) + "\n")
    return path
