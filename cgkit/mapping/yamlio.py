"""YAML reading that remembers line numbers, so mapping errors can name file, line and field.

:func:`load_yaml` returns plain Python containers whose dicts are :class:`LDict` and lists
:class:`LList`; both carry ``.line`` (1-based line of the container) and the line of every
key / item (``.line_of(key)``). Scalars are ordinary Python objects.
"""
from __future__ import annotations

import yaml

from ..errors import MappingError

__all__ = ["LDict", "LList", "load_yaml", "line_of"]


class LDict(dict):
    """A dict that knows the line of each key (1-based)."""

    line: int | None = None

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.key_lines: dict = {}

    def line_of(self, key) -> int | None:
        return self.key_lines.get(key, self.line)


class LList(list):
    """A list that knows the line of each item (1-based)."""

    line: int | None = None

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.item_lines: list = []

    def line_of(self, i) -> int | None:
        if 0 <= i < len(self.item_lines):
            return self.item_lines[i]
        return self.line


def line_of(obj, key=None) -> int | None:
    """Line of ``obj`` (or of ``obj[key]``) when known, else None."""
    if key is not None and hasattr(obj, "line_of"):
        return obj.line_of(key)
    return getattr(obj, "line", None)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    out = LDict()
    out.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise MappingError("a mapping key must be a plain value (name or number)",
                               line=key_node.start_mark.line + 1) from None
        if key in out:
            raise MappingError(f"duplicate key '{key}'", line=key_node.start_mark.line + 1,
                               field=str(key))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader, node):
    out = LList()
    out.line = node.start_mark.line + 1
    for child in node.value:
        out.append(loader.construct_object(child, deep=True))
        out.item_lines.append(child.start_mark.line + 1)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, file: str | None = None):
    """Parse YAML text into line-aware containers; syntax errors become :class:`MappingError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except MappingError as exc:
        if file and not exc.file:
            raise MappingError(str(exc), file=file) from None
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError(f"YAML syntax error: {problem}; fix the YAML syntax",
                           file=file, line=line) from None
    except (ValueError, TypeError, RecursionError) as exc:  # odd scalars, deep nesting
        raise MappingError(f"cannot read YAML: {exc}", file=file) from None
