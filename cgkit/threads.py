"""Torch thread limits for a block of work.

Small per-step tensors (MD of a few thousand particles, per-frame force-matching designs) run
slower with several intra-op threads than with one; callers that parallelise elsewhere (several
processes, replicas) want one thread too. :func:`torch_threads` sets the limit for a block and
restores the previous one afterwards, even on errors.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch intra-op threads (``None``: leave the setting alone)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
