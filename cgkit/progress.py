"""Progress for long work: a tqdm bar on a terminal, periodic one-line reports otherwise.

Under ``nohup``, batch schedulers, CI or ``| tee`` a bar is useless (one carriage-return line
that never ends), so when stderr is not a terminal :func:`progress_bar` prints a plain line
every ``CGKIT_PROGRESS_INTERVAL`` seconds (default 30) and once at the end::

    training: 120/1000 step (12%), elapsed 1m02s, ETA 8m10s, loss=0.0123

``CGKIT_PROGRESS=0`` silences both kinds, ``CGKIT_PROGRESS=1`` forces the tqdm bar.
"""
from __future__ import annotations

import os
import sys
import time

__all__ = ["progress_bar", "LineProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``3h02m``, ``4m05s`` or ``12s`` (seconds rounded)."""
    s = int(round(max(0.0, float(seconds))))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class LineProgress:
    """A tqdm-compatible subset (iteration, ``update``, ``set_postfix``, ``set_description``,
    ``close``, context manager) that writes one line per ``interval`` seconds with the rate-based
    ETA, plus a final line. Used when stderr is not a terminal."""

    def __init__(self, iterable=None, *, desc: str = "", total=None, unit: str = "it",
                 initial: int = 0, interval: float | None = None, file=None, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start = int(initial)
        if interval is None:
            interval = float(os.environ.get("CGKIT_PROGRESS_INTERVAL", "30"))
        self.interval = interval
        self.file = file
        self._t0 = self._last = time.monotonic()
        self._postfix = ""
        self._closed = False

    # -- tqdm interface ---------------------------------------------------------------
    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh=True):
        self._postfix = str(s)

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or ""

    def refresh(self):
        pass

    def update(self, n: int = 1):
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit(now)

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self.n > self._start:
            self._emit(time.monotonic(), final=True)

    # -- formatting -------------------------------------------------------------------
    def line(self, now: float | None = None, final: bool = False) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self._t0
        done = self.n - self._start
        parts = []
        if self.total:
            parts.append(f"{self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)")
        else:
            parts.append(f"{self.n} {self.unit}")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if final:
            parts.append("done")
        elif self.total and done > 0:
            eta = elapsed / done * max(0, self.total - self.n)
            parts.append(f"ETA {format_duration(eta)}")
        if self._postfix:
            parts.append(self._postfix)
        return f"{self.desc + ': ' if self.desc else ''}{', '.join(parts)}"

    def _emit(self, now: float, final: bool = False):
        out = self.file or sys.stderr
        try:
            print(self.line(now, final), file=out, flush=True)
        except (BrokenPipeError, ValueError):  # closed pipe or file: progress is optional
            pass


class _Silent(LineProgress):
    def _emit(self, now, final=False):
        pass


def progress_bar(iterable=None, *, desc: str = "", total=None, unit: str = "it", disable=None, **kw):
    """Progress over ``iterable`` (or manual ``update`` with ``total``).

    ``disable=True`` shows nothing; ``disable=None`` (default) chooses: a tqdm bar when stderr
    is a terminal, periodic one-line reports with an ETA otherwise (see the module docstring;
    ``CGKIT_PROGRESS=0`` silences, ``=1`` forces the bar)."""
    forced = os.environ.get("CGKIT_PROGRESS")
    if disable is True or forced == "0":
        return _Silent(iterable, desc=desc, total=total, unit=unit, **kw)
    if forced == "1" or (disable is None and sys.stderr.isatty()):
        from tqdm.auto import tqdm
        return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, **kw)
    return LineProgress(iterable, desc=desc, total=total, unit=unit, **kw)
