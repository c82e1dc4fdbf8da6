"""Coarse-graining maps: YAML definitions → :class:`Mapping` (position map M, force map D).

Quick use::

    from cgkit.mapping import Mapping
    m = Mapping.from_yaml("mappings/hexane_3bead.yaml", "conf.gro")
    beads = m.map_positions(x, cell)          # (B, 3) Å, PBC-aware
    fcg = m.map_forces(f)                     # (B, 3) eV/Å, D·f with M·Dᵀ = I

The YAML schema is documented in ``mappings/README.md``; VOTCA XML and Martini ``.map``
files are read by :func:`load_definition` as well.
"""
from .atoms import AtomTable, atom_table
from .core import CGFrame, Mapping, MappingCheck, consistency_error
from .definition import MappingDefinition, parse_definition, SCHEMA_VERSION
from .loader import load_definition
from .writer import dump_yaml, definition_to_yaml

__all__ = ["Mapping", "MappingDefinition", "MappingCheck", "CGFrame", "AtomTable", "atom_table",
           "load_definition", "parse_definition", "dump_yaml", "definition_to_yaml",
           "consistency_error", "shipped_mapping", "SCHEMA_VERSION"]


def shipped_mapping(name: str):
    """Path of a definition shipped in the repository's ``mappings/`` folder (e.g. 'hexane_3bead')."""
    from pathlib import Path
    from ..errors import InputError
    root = Path(__file__).resolve().parents[2] / "mappings"
    p = root / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not p.is_file():
        avail = sorted(q.stem for q in root.glob("*.yaml"))
        raise InputError(f"no shipped mapping '{name}'; available: {', '.join(avail)}")
    return p
