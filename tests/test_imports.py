"""The import structure of cgkit, checked statically (no module is executed).

Every module of the ``cgkit`` package (including ``cgkit.properties``, which lives in the
top-level ``properties/`` folder) is parsed; all its imports count — at module level and
inside functions (a function-level import hides a cycle, it does not remove it). Imports under
``if TYPE_CHECKING:`` never run and are ignored.

* no import cycles between modules;
* no module outside ``cgkit/demo`` imports ``cgkit.demo`` (the ``cgkit demo`` command,
  ``cgkit/commands/demo.py``, is its one entry point) and neither do the case studies;
* the demo and the case studies import no private (``_name``) names or modules from cgkit;
* modules of cgkit never import the lazy public names of the top-level ``cgkit`` package
  (that facade imports everything; an internal import of it would hide cycles).

A failure lists every offending import with file and line.
"""
from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder → dotted package name
PACKAGE_DIRS = {ROOT / "cgkit": "cgkit", ROOT / "properties": "cgkit.properties"}
DEMO = "cgkit.demo"
DEMO_ENTRY_POINTS = {"cgkit.commands.demo"}


def _module_files() -> dict[str, Path]:
    mods = {}
    for folder, dotted in PACKAGE_DIRS.items():
        for f in sorted(folder.rglob("*.py")):
            rel = f.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([dotted, *parts])] = f
    return mods


MODULES = _module_files()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node that can run (skipping ``if TYPE_CHECKING:`` bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve_base(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    pkg = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        pkg = pkg.rpartition(".")[0]
    return f"{pkg}.{node.module}" if node.module else pkg


def _known(name: str) -> str | None:
    """The longest prefix of ``name`` that is a cgkit module (``cgkit.x.y.Class`` → ``cgkit.x.y``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path):
    """[(target module, imported name or None, line)] of one file; targets outside cgkit are
    dropped; ``from pkg import sub`` with ``sub`` a module points at ``pkg.sub``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target:
                    out.append((target, None, node.lineno))
            continue
        base = _resolve_base(module, node)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in MODULES:
                out.append((full, None, node.lineno))
            elif _known(base):
                out.append((_known(base), alias.name, node.lineno))
    return out


@functools.lru_cache(maxsize=None)
def import_graph():
    """{module: {target: [(line, name)]}} over every cgkit module (do not modify)."""
    graph = {}
    for mod, path in MODULES.items():
        edges = defaultdict(list)
        for target, name, line in imports_of(mod, path):
            if target != mod:
                edges[target].append((line, name))
        graph[mod] = dict(edges)
    return graph


def strongly_connected(graph) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        work = [(v, iter(sorted(graph.get(v, {}))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _rel(mod: str) -> str:
    return str(MODULES[mod].relative_to(ROOT))


def describe_cycles(graph, components) -> str:
    lines = []
    for comp in components:
        members = set(comp)
        lines.append("cycle among " + ", ".join(comp) + ":")
        for a in comp:
            for b, uses in sorted(graph[a].items()):
                if b in members:
                    where = ", ".join(f"line {ln}" + (f" ({nm})" if nm else "") for ln, nm in uses)
                    lines.append(f"    {_rel(a)} imports {b} at {where}")
    return "\n".join(lines)


def test_the_walker_sees_function_level_imports_and_cycles(tmp_path):
    """The checker itself: a cycle hidden in a function is found, TYPE_CHECKING is ignored."""
    a = tmp_path / "a.py"
    a.write_text("import os\nfrom typing import TYPE_CHECKING\n"
                 "if TYPE_CHECKING:\n    from cgkit.data import X\n"
                 "def f():\n    from cgkit.potential import Potential\n")
    found = imports_of("cgkit.calculator", a)
    assert [t for t, _, _ in found] == ["cgkit.potential"]
    graph = {"m.a": {"m.b": [(3, None)]}, "m.b": {"m.c": [(1, None)]}, "m.c": {"m.a": [(9, None)]},
             "m.d": {"m.a": [(1, None)]}}
    assert strongly_connected(graph) == [["m.a", "m.b", "m.c"]]


def test_every_module_is_seen():
    for name in ("cgkit", "cgkit.potential", "cgkit.io_potential", "cgkit.properties.phonons",
                 "cgkit.potentials.polyethylene", "cgkit.demo"):
        assert name in MODULES, name


def test_no_import_cycles():
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles (module-level and function-level imports):\n" + \
        describe_cycles(graph, cycles)


@pytest.mark.parametrize("pair", [("cgkit.potential", "cgkit.io_potential"),
                                  ("cgkit.potentials.trappe", "cgkit.potentials.polyethylene")])
def test_former_cycles_stay_broken(pair):
    """The two cycles of issue 12 item 8 in this area: potential ↔ io_potential and
    trappe ↔ polyethylene (the PE builders now live in pe_melt/pe_crystal/pe_topology/pe_io)."""
    graph = import_graph()
    low, high = pair
    assert high not in graph[low], f"{_rel(low)} imports {high}: {graph[low][high]}"


def test_only_the_demo_command_imports_the_demo():
    graph = import_graph()
    bad = [f"{_rel(m)} line {ln}" for m, edges in graph.items()
           if not (m == DEMO or m.startswith(DEMO + ".")) and m not in DEMO_ENTRY_POINTS
           for t, uses in edges.items() if t == DEMO or t.startswith(DEMO + ".") for ln, _ in uses]
    assert not bad, "modules outside cgkit/demo import cgkit.demo:\n    " + "\n    ".join(bad)


def _private_imports(path: Path, module: str | None) -> list[str]:
    """``from cgkit... import _name`` / ``import cgkit._mod`` in one file (absolute or relative)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            bad += [f"line {node.lineno}: import {a.name}" for a in node.names
                    if a.name.split(".")[0] == "cgkit" and any(p.startswith("_") for p in a.name.split("."))]
            continue
        base = _resolve_base(module, node) if node.level else (node.module or "")
        if base.split(".")[0] != "cgkit":
            continue
        if any(p.startswith("_") for p in base.split(".")):
            bad.append(f"line {node.lineno}: from {base} import ...")
        bad += [f"line {node.lineno}: from {base} import {a.name}" for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def _script_files():
    files = sorted((ROOT / "case_studies").rglob("*.py"))
    return [(f, None) for f in files] + [(p, m) for m, p in MODULES.items()
                                         if m == DEMO or m.startswith(DEMO + ".")]


def test_demo_and_case_studies_import_only_public_cgkit_names():
    bad = []
    for path, module in _script_files():
        bad += [f"{path.relative_to(ROOT)} {b}" for b in _private_imports(path, module)]
    assert not bad, "private cgkit names imported by the demo / case studies:\n    " + "\n    ".join(bad)


def test_case_studies_do_not_import_the_demo():
    bad = []
    for path in sorted((ROOT / "case_studies").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _import_nodes(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad += [f"{path.relative_to(ROOT)} line {node.lineno}: {n}" for n in names
                    if n == DEMO or n.startswith(DEMO + ".")]
    assert not bad, "case studies import cgkit.demo (use the public API):\n    " + "\n    ".join(bad)


def test_internal_modules_do_not_import_the_lazy_top_level_names():
    import cgkit
    lazy = set(cgkit.__all__) - {"__version__"}
    bad = [f"{_rel(m)} line {ln}: from cgkit import {nm}" for m, edges in import_graph().items()
           for t, uses in edges.items() if t == "cgkit" for ln, nm in uses if nm in lazy]
    assert not bad, "import these from their modules, not from the cgkit facade:\n    " + "\n    ".join(bad)


def test_polyethylene_pieces_have_one_home_each():
    """cgkit.potentials.polyethylene re-exports the split modules (callers keep working), and
    the LAMMPS box frame has one implementation (cgkit.io_lammps.lammps_box)."""
    import cgkit.potentials.polyethylene as pe
    from cgkit.export.lammps import lammps_box as export_box
    from cgkit.io_lammps import lammps_box
    from cgkit.potentials import pe_crystal, pe_io, pe_melt, pe_topology, trappe
    homes = {"build_pe_melt": pe_melt, "AMU_PER_A3_TO_G_CM3": pe_melt, "chain_topology": pe_topology,
             "unwrap_chains": pe_topology, "crystal_chain_topology": pe_topology,
             "write_lammps_data": pe_io, "write_psf_pdb": pe_io, "pe_crystal_unit_cell": pe_crystal,
             "build_pe_crystal": pe_crystal, "PE_CELL_ROOM_T": pe_crystal, "PE_SETTING_ANGLE": pe_crystal,
             "PECrystalTraPPEUA": trappe, "pe_crystal_potential": trappe}
    assert set(pe.__all__) == set(homes)
    for name, module in homes.items():
        assert getattr(pe, name) is getattr(module, name), name
    assert export_box is lammps_box
    graph = import_graph()
    assert "cgkit.export.lammps" not in graph["cgkit.potentials.pe_io"]  # no detour via forcematch
