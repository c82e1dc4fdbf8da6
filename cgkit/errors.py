"""Errors raised by cgkit.

Every error subclasses :class:`CgkitError`; its message says what the user must change.
"""
from __future__ import annotations


class CgkitError(Exception):
    """Base class of every error cgkit raises on purpose."""


class InputError(CgkitError, ValueError):
    """Bad user input: coordinates, cells, cutoffs, options."""


class StructureError(InputError):
    """A structure that cannot be simulated as given (NaN coordinates, degenerate cell, ...)."""


class UnknownSpeciesError(InputError):
    """An element or bead type the potential or model was not built for."""


class NotSupportedError(CgkitError):
    """A quantity that a potential or structure cannot provide (e.g. stress of a molecule in vacuum)."""


class MappingError(InputError):
    """A malformed coarse-graining mapping definition (names the file, line and field)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        where = []
        if file:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        self.file, self.line, self.field = file, line, field
        super().__init__((": ".join([", ".join(where), message]) if where else message))


class TrainingError(CgkitError):
    """Training cannot proceed (no data, diverged loss, incompatible checkpoint)."""


class CgkitWarning(UserWarning):
    """Base class of cgkit's warnings: a result is given but something about it needs the
    user's attention (a truncated file, a large time step, an overridden check). The command line
    prints them as one line ``cgkit <command>: warning: ...``."""


class RelaxationError(CgkitError):
    """A structure did not relax within the allowed steps (e.g. a strained cell for elastic constants)."""
