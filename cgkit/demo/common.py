"""Helpers shared by the demo stages: budgeted MD, plotting set-up, chain unwrapping."""
from __future__ import annotations

import time

import numpy as np

__all__ = ["run_md_budget", "plt", "savefig"]


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
