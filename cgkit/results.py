"""One results protocol for every analysis, fit and command.

Every object that computes something follows the shape of MDAnalysis's ``AnalysisBase``:

* ``run(...)`` computes and returns ``self``;
* ``.results`` is a :class:`Results` (a dict with attribute access) holding what was computed;
* ``summary() -> dict`` gives the JSON-ready digest (what a ``summary.json`` holds);
* ``to_json(path=None) -> str`` writes it as **strict** JSON (no NaN/inf: NaN → ``null``,
  ±inf → ``"inf"``/``"-inf"``), atomically, and returns the text;
* ``plot(directory) -> list[Path]`` writes the figures and returns their paths.

:class:`Analysis` provides the shared parts; subclasses implement ``run`` and, where the
default (all of ``.results``) is not the right digest, ``summary``; and ``plot`` where there is
something to look at.
"""
from __future__ import annotations

from pathlib import Path

from .jsonutil import dumps, write_text_atomic

__all__ = ["Results", "Analysis", "figure_path"]


class Results(dict):
    """A dict with attribute access (MDAnalysis-style ``.results.key``)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(key) from exc

    def __setattr__(self, key, value):
        self[key] = value

    def summary(self) -> dict:
        return dict(self)

    def to_json(self, path=None, keys=None) -> str:
        """Strict JSON of the (selected) entries; written atomically to ``path`` if given."""
        data = {k: v for k, v in self.items() if keys is None or k in keys}
        text = dumps(data)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text


class Analysis:
    """Base class of cgkit's results-producing objects (see the module docstring)."""

    #: set by ``run``; a :class:`Results`
    results: Results

    def run(self, *args, **kwargs) -> "Analysis":  # pragma: no cover - abstract
        raise NotImplementedError

    def summary(self) -> dict:
        """JSON-ready digest of the results (default: all of ``.results``)."""
        return dict(getattr(self, "results", None) or {})

    def to_json(self, path=None) -> str:
        """Strict JSON of :meth:`summary`; written atomically to ``path`` if given."""
        text = dumps(self.summary())
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def plot(self, directory) -> list[Path]:
        """Write figures into ``directory``; returns their paths (none by default)."""
        return []


def figure_path(directory, default_name: str):
    """``directory/default_name``, or ``directory`` itself when it names an image file."""
    p = Path(directory)
    if p.suffix.lower() in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        p.parent.mkdir(parents=True, exist_ok=True)
        return p
    p.mkdir(parents=True, exist_ok=True)
    return p / default_name
