"""Read a mapping definition file of any supported kind into a
:class:`~cgkit.mapping.definition.MappingDefinition`.

Dependencies go one way: ``yamlio`` ← ``definition`` (schema and YAML parsing) ←
``importers`` (VOTCA XML, Martini ``.map``) ← ``loader`` (this dispatcher by file suffix).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MappingError
from .definition import MappingDefinition, parse_definition
from .importers import read_martini_map, read_votca_xml
from .yamlio import load_yaml

__all__ = ["load_definition"]


def load_definition(path) -> MappingDefinition:
    """Read a mapping definition: cgkit YAML (``.yaml``/``.yml``), VOTCA XML (``.xml``) or a
    Martini/backward ``.map`` file."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file not found: {path}; give an existing file", file=str(path))
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_votca_xml(path)
    if suffix == ".map":
        return read_martini_map(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise MappingError("not a text file; give a YAML mapping definition", file=str(path)) from None
    return parse_definition(load_yaml(text, file=str(path)), file=str(path))
