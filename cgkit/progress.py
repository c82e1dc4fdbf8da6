"""Progress bars that stay quiet when output is not a terminal (CI, logs, pipes)."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, desc: str = "", total=None, unit: str = "it", disable=None, **kw):
    """A tqdm bar; disabled unless stderr is a terminal (or CGKIT_PROGRESS=1 forces it)."""
    if disable is None:
        forced = os.environ.get("CGKIT_PROGRESS")
        disable = (forced == "0") if forced is not None else not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True, **kw)
