"""Write a :class:`MappingDefinition` as cgkit YAML (used by ``cgkit map convert``)."""
from __future__ import annotations

from pathlib import Path

import yaml

from .definition import MappingDefinition

__all__ = ["definition_to_yaml", "dump_yaml"]


class _Dumper(yaml.SafeDumper):
    pass


def _flow_list(dumper, data):
    # short lists of scalars (atoms, weights, bonded terms) on one line
    flow = all(not isinstance(x, (dict, list)) for x in data) or \
        all(isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x) for x in data) \
        and len(data) <= 8
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=bool(flow))


_Dumper.add_representer(list, _flow_list)


def definition_to_yaml(defn: MappingDefinition, header: str = "") -> str:
    text = yaml.dump(defn.to_dict(), Dumper=_Dumper, sort_keys=False, width=100,
                     default_flow_style=False, allow_unicode=True)
    if header:
        text = "".join(f"# {ln}\n" for ln in header.splitlines()) + text
    return text


def dump_yaml(defn: MappingDefinition, path, header: str = "") -> Path:
    path = Path(path)
    path.write_text(definition_to_yaml(defn, header))
    return path
