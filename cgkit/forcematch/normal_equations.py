"""MS-CG normal equations: accumulators additive over frames, chunks, runs and machines.

``A = Σ GᵀG`` and ``b = Σ GᵀF`` per bead type (G: the design matrix of a frame, F: its mapped
forces), with per-block copies for jackknife error bars and per-interaction sample counts.
Files (``normal_equations.npz``) are written atomically (a temporary file renamed into place),
so a killed run never leaves a half-written file that a later ``--add`` could take; reading a
file that is not a complete cgkit normal-equations file is an :class:`~cgkit.errors.InputError`.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["NormalEquations"]

_KEYS = ("signature", "A", "b", "ff", "n_rows", "n_frames", "A_blocks", "b_blocks", "block_frames",
         "counts", "count_sizes", "outside")


class NormalEquations:
    """Accumulated MS-CG normal equations, additive over frames, chunks and runs.

    Per bead type t: ``A[t] = Σ G_tᵀG_t`` (n_coef, n_coef), ``b[t] = Σ G_tᵀF_t``,
    ``ff[t] = Σ |F_t|²`` (eV²/Å²), ``n_rows[t]`` force components; per block of frames
    ``A_blocks``/``b_blocks`` for jackknife error bars; per interaction ``counts`` of samples in
    every grid interval and ``outside`` (below, above) the grid.
    """

    def __init__(self, signature: list, n_types: int, n_coef: int, interval_sizes: list[int]):
        self.signature = signature
        self.A = np.zeros((n_types, n_coef, n_coef))
        self.b = np.zeros((n_types, n_coef))
        self.ff = np.zeros(n_types)
        self.n_rows = np.zeros(n_types, dtype=np.int64)
        self.n_frames = 0
        self.A_blocks: list[np.ndarray] = []
        self.b_blocks: list[np.ndarray] = []
        self.block_frames: list[int] = []
        self.counts = [np.zeros(n, dtype=np.int64) for n in interval_sizes]
        self.outside = np.zeros((len(interval_sizes), 2), dtype=np.int64)

    def __add__(self, other: "NormalEquations") -> "NormalEquations":
        if json.dumps(self.signature) != json.dumps(other.signature):
            raise InputError("cannot add normal equations built with different interactions or grids")
        out = NormalEquations(self.signature, self.A.shape[0], self.A.shape[1], [len(c) for c in self.counts])
        out.A, out.b, out.ff = self.A + other.A, self.b + other.b, self.ff + other.ff
        out.n_rows = self.n_rows + other.n_rows
        out.n_frames = self.n_frames + other.n_frames
        out.A_blocks = self.A_blocks + other.A_blocks
        out.b_blocks = self.b_blocks + other.b_blocks
        out.block_frames = self.block_frames + other.block_frames
        out.counts = [a + b for a, b in zip(self.counts, other.counts)]
        out.outside = self.outside + other.outside
        return out

    def save(self, path) -> Path:
        """Write to a ``.npz`` file atomically (combine runs with :meth:`load` and ``+``)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, signature=json.dumps(self.signature), A=self.A, b=self.b, ff=self.ff,
                                    n_rows=self.n_rows, n_frames=self.n_frames,
                                    A_blocks=np.array(self.A_blocks).reshape(-1, *self.A.shape[1:]),
                                    b_blocks=np.array(self.b_blocks).reshape(-1, self.A.shape[1]),
                                    block_frames=np.array(self.block_frames, dtype=np.int64),
                                    counts=np.concatenate(self.counts) if self.counts else np.zeros(0, np.int64),
                                    count_sizes=[len(c) for c in self.counts], outside=self.outside)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path) -> "NormalEquations":
        """Read a file written by :meth:`save`; anything else (a truncated file, another
        ``.npz``, a text file) is an InputError naming the file."""
        what = f"'{path}' is not a cgkit normal-equations file (normal_equations.npz of `cgkit fm`)"
        try:
            with np.load(path, allow_pickle=False) as d:
                missing = [k for k in _KEYS if k not in d.files]
                if missing:
                    raise InputError(f"{what}: it lacks {missing}")
                data = {k: d[k] for k in _KEYS}
        except InputError:
            raise
        except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, ValueError, pickle refusals
            raise InputError(f"{what}: {type(exc).__name__}: {exc}") from exc
        try:
            sizes = [int(v) for v in data["count_sizes"].tolist()]
            sig = json.loads(str(data["signature"]))
            A = np.asarray(data["A"], dtype=np.float64)
            nt, nc = A.shape[0], A.shape[1]
            ne = cls(sig, nt, nc, sizes)
            ne.A, ne.b, ne.ff = A, np.asarray(data["b"], float), np.asarray(data["ff"], float)
            ne.n_rows = np.asarray(data["n_rows"], dtype=np.int64)
            ne.n_frames = int(data["n_frames"])
            ne.A_blocks, ne.b_blocks = list(data["A_blocks"]), list(data["b_blocks"])
            ne.block_frames = data["block_frames"].tolist()
            ne.counts = np.split(data["counts"], np.cumsum(sizes)[:-1]) if sizes else []
            ne.outside = np.asarray(data["outside"], dtype=np.int64)
            ok = (A.shape == (nt, nc, nc) and ne.b.shape == (nt, nc) and ne.ff.shape == (nt,)
                  and sum(sizes) == len(data["counts"]) and ne.outside.shape == (len(sizes), 2)
                  and len(ne.A_blocks) == len(ne.b_blocks) == len(ne.block_frames)
                  and all(np.all(np.isfinite(v)) for v in (A, ne.b, ne.ff)))
        except (ValueError, TypeError, IndexError) as exc:
            raise InputError(f"{what}: {exc}") from exc
        if not ok:
            raise InputError(f"{what}: inconsistent array shapes or non-finite values")
        return ne
