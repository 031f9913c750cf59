"""The layering of the framework, read from the source with ``ast`` (nothing is imported).

* ``nastk`` (the framework) never imports ``search_spaces`` (the concrete spaces), not even inside a
  function: it reaches a space through the registry's ``"module:Class"`` strings and the public
  :class:`~nastk.space.SearchSpace` API, and a space's fixed facts through its benchmark.
* There is no import cycle among ``nastk``'s modules, counting the imports a module runs when it is
  loaded (module level, ``try`` and ``if`` blocks included). Imports inside functions run later, when
  a cycle is harmless, and are left out, as are ``if TYPE_CHECKING:`` blocks. ``from nastk.pkg import
  name`` is an edge to ``nastk.pkg`` (its ``__init__``, where re-exports live) unless ``name`` is a
  submodule.
* No benchmark module imports an evaluator: an evaluator reads a benchmark, never the other way round.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nastk"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str, known: Set[str]) -> Iterator[Tuple[str, bool]]:
    """(imported module, whether the import runs at load time) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    load_time = _load_time_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in load_time
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in known else base), id(node) in load_time


def _load_time_nodes(tree: ast.Module) -> Set[int]:
    """ids of the statements that run when the module is imported (not inside a def or lambda)."""
    found: Set[int] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            for child in node.orelse:
                visit(child)
            return
        found.add(id(node))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@lru_cache(maxsize=None)
def import_graph() -> Tuple[nx.DiGraph, List[Tuple[str, str]]]:
    """The load-time import graph among nastk modules, and every (module, imported) pair reaching
    ``search_spaces`` anywhere in a module."""
    known = modules()
    graph, to_spaces = nx.DiGraph(), []
    graph.add_nodes_from(known)
    for name, path in known.items():
        for target, load_time in imports(path, name, set(known)):
            if target == "search_spaces" or target.startswith("search_spaces."):
                to_spaces.append((name, target))
            elif load_time and target in known and target != name:
                graph.add_edge(name, target)
    return graph, to_spaces


def test_the_parser_sees_imports_inside_functions_and_relative_ones(tmp_path):
    source = tmp_path / "nastk" / "pkg" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text("from . import sibling\nfrom .sibling import thing\n"
                      "def f():\n    from search_spaces.nb201 import OPS\n    import search_spaces.darts\n")
    found = list(imports(source, "nastk.pkg.mod", {"nastk.pkg", "nastk.pkg.sibling"}))
    assert found == [("nastk.pkg.sibling", True), ("nastk.pkg.sibling", True),
                     ("search_spaces.nb201", False), ("search_spaces.darts", False)]


def test_the_framework_imports_no_concrete_space():
    _, to_spaces = import_graph()
    assert to_spaces == [], "nastk modules importing search_spaces: " + ", ".join(f"{m} -> {t}" for m, t in to_spaces)


def test_no_import_cycle_among_framework_modules():
    graph, _ = import_graph()
    assert graph.number_of_edges() > 100  # the graph is really built, package re-exports included:
    assert graph.has_edge("nastk.evaluators", "nastk.evaluators.benchmark")
    cycles = sorted(sorted(cycle) for cycle in nx.simple_cycles(graph))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:10])


def test_benchmarks_never_build_evaluators():
    """An evaluator reads a benchmark, never the other way round (imports inside functions included)."""
    known = modules()
    backwards = [(name, target) for name, path in known.items() if name.startswith("nastk.benchmarks")
                 for target, _ in imports(path, name, set(known)) if target.startswith("nastk.evaluators")]
    assert backwards == []
