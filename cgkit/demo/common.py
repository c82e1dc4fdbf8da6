"""Helpers shared by the demo stages: budgeted MD, plotting set-up, chain unwrapping."""
from __future__ import annotations

import time

import numpy as np

__all__ = ["run_md_budget", "plt", "unwrap_consecutive", "savefig"]


def run_md_budget(md, n_steps: int, chunk: int, deadline: float) -> int:
    """Advance ``md`` (a :class:`cgkit.md.MolecularDynamics`) by up to ``n_steps`` steps in chunks
    of ``chunk`` steps, stopping early when ``time.time()`` passes ``deadline``. Returns the steps
    done. ``md.run`` is called per chunk, so stored frames and logs follow the usual intervals."""
    done = 0
    chunk = max(1, int(chunk))
    while done < n_steps:
        k = min(chunk, n_steps - done)
        md.run(k)
        done += k
        if time.time() > deadline:
            break
    return done


def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def savefig(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt().close(fig)


def unwrap_consecutive(positions: np.ndarray, cell: np.ndarray, chain_starts) -> np.ndarray:
    """Make chains whole: every particle is placed at the minimum image of its predecessor
    along the chain (chains are runs of consecutive particles starting at ``chain_starts``).
    positions (..., n, 3) Å; cell (3, 3) Å rows. Returns a new array."""
    x = np.array(positions, dtype=np.float64, copy=True)
    inv = np.linalg.inv(cell)
    starts = set(int(s) for s in chain_starts)
    for i in range(1, x.shape[-2]):
        if i in starts:
            continue
        d = x[..., i, :] - x[..., i - 1, :]
        f = d @ inv
        d = (f - np.round(f)) @ cell
        x[..., i, :] = x[..., i - 1, :] + d
    return x
