"""Imports run one way: from the wiring down to the pure core, never back (issue #17).

Every ``.py`` file of the repository's top-level packages is parsed with :mod:`ast` (imports at
any level: module top, inside functions, under ``if TYPE_CHECKING:``), giving the
package → package import graph. The allowed direction, bottom to top:

* ``stackwatch`` — the pure domain core: imports nothing of ours;
* ``simulators``, ``sinks``, ``embedded`` — the core only (``embedded``, the supervision of
  the embedded servers and of the pipeline's child processes, is wiring: only the CLI, the
  benchmarks and the tests use it);
* ``reports``, ``streams`` — the core and ``sinks`` (streams' consumers write through the
  sinks; sinks never import streams);
* ``bench`` — anything except the CLI (which imports bench: ``stackwatch bench``);
* ``commands`` — the CLI, the demo supervisor and its live view: anything.

``tests/`` sits above everything and is not part of the graph.

The helpers take the repository root, so they can be pointed at another checkout.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.python_source import parse_files

ROOT = Path(__file__).resolve().parents[2]

CORE = "stackwatch"

#: package → the packages of ours it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "stackwatch": frozenset(),
    "simulators": frozenset({"stackwatch"}),
    "sinks": frozenset({"stackwatch"}),
    "embedded": frozenset({"stackwatch"}),
    "reports": frozenset({"stackwatch", "sinks"}),
    "streams": frozenset({"stackwatch", "sinks"}),
    "bench": frozenset({"stackwatch", "simulators", "sinks", "embedded", "reports", "streams"}),
    "commands": frozenset(
        {"stackwatch", "simulators", "sinks", "embedded", "reports", "streams", "bench"}
    ),
}

#: Not part of the graph: the test suite may import anything.
OUTSIDE = frozenset({"tests"})

#: The core never talks to Kafka or the database (CONTRIBUTING.md).
CORE_FORBIDDEN_LIBRARIES = frozenset({"faust", "mode", "aiokafka", "psycopg", "psycopg_pool"})


@dataclass(frozen=True)
class Import:
    """One imported module name, where it was imported."""

    source: str  # top-level package of the importing file
    target: str  # the imported module, absolute and dotted
    where: str  # path:line

    @property
    def target_top(self) -> str:
        return self.target.split(".")[0]


def top_level_packages(root: Path) -> list[str]:
    """Directories at the root with an ``__init__.py`` (``tests/`` excluded)."""
    return sorted(
        p.name for p in root.iterdir() if (p / "__init__.py").is_file() and p.name not in OUTSIDE
    )


def _python_files(package_dir: Path) -> Iterator[Path]:
    for path in sorted(package_dir.rglob("*.py")):
        if "node_modules" not in path.parts and "__pycache__" not in path.parts:
            yield path


def _imported_modules(node: ast.AST, module_parts: tuple[str, ...], is_init: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level == 0:
            return [node.module or ""]
        package = module_parts if is_init else module_parts[:-1]
        base = package[: len(package) - (node.level - 1)]
        return [".".join((*base, node.module) if node.module else base)]
    return []


def imports(root: Path) -> list[Import]:
    """Every import statement's module in the top-level packages under ``root``."""
    found: list[Import] = []
    files = {p: list(_python_files(root / p)) for p in top_level_packages(root)}
    trees = parse_files(path for paths in files.values() for path in paths)
    for package, paths in files.items():
        for path in paths:
            rel = path.relative_to(root)
            is_init = path.name == "__init__.py"
            module_parts = rel.parent.parts if is_init else rel.with_suffix("").parts
            tree = trees[path]
            for node in ast.walk(tree):
                for target in _imported_modules(node, module_parts, is_init):
                    found.append(Import(package, target, f"{rel}:{getattr(node, 'lineno', 0)}"))
    return found


def package_graph(root: Path) -> dict[tuple[str, str], list[Import]]:
    """(importing package, imported package) → the imports, for packages of ours only."""
    ours = set(top_level_packages(root))
    graph: dict[tuple[str, str], list[Import]] = {}
    for imp in imports(root):
        if imp.target_top in ours and imp.target_top != imp.source:
            graph.setdefault((imp.source, imp.target_top), []).append(imp)
    return graph


def direction_violations(root: Path) -> list[str]:
    """Imports the direction table does not allow, one line each."""
    lines = []
    for (source, target), found in sorted(package_graph(root).items()):
        if target not in ALLOWED.get(source, frozenset()):
            where = ", ".join(f"{imp.where} {imp.target}" for imp in found)
            lines.append(f"{source} -> {target} ({len(found)}): {where}")
    return lines


def outward_from_core(root: Path) -> list[str]:
    """Packages of ours the core imports (the issue counts these)."""
    return sorted(target for source, target in package_graph(root) if source == CORE)


def cycles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan)."""
    edges: dict[str, set[str]] = {}
    for source, target in package_graph(root):
        edges.setdefault(source, set()).add(target)
        edges.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components)


def core_library_imports(root: Path) -> list[str]:
    """Imports of Kafka or database libraries anywhere in the core."""
    return [
        f"{imp.where} {imp.target}"
        for imp in imports(root)
        if imp.source == CORE and imp.target_top in CORE_FORBIDDEN_LIBRARIES
    ]


def test_every_top_level_package_has_a_place_in_the_table() -> None:
    assert top_level_packages(ROOT) == sorted(ALLOWED)


def test_the_table_itself_runs_one_way() -> None:
    assert ALLOWED[CORE] == frozenset()
    importers_of_bench = sorted(p for p, allowed in ALLOWED.items() if "bench" in allowed)
    assert importers_of_bench == ["commands"]
    assert not any("commands" in allowed for allowed in ALLOWED.values())


def test_the_core_imports_nothing_of_ours() -> None:
    outward = outward_from_core(ROOT)
    assert outward == [], f"the core imports {outward}"


def test_imports_follow_the_direction_table() -> None:
    violations = direction_violations(ROOT)
    assert violations == [], "imports against the direction table:\n" + "\n".join(violations)


def test_no_import_cycle_between_packages() -> None:
    found = cycles(ROOT)
    assert found == [], f"packages importing each other: {found}"


def test_the_core_imports_no_kafka_or_database_library() -> None:
    found = core_library_imports(ROOT)
    assert found == [], "\n".join(found)


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    """A hand-made tree: a lazy import, a TYPE_CHECKING import and a relative import."""
    (tmp_path / "low").mkdir()
    (tmp_path / "low" / "__init__.py").write_text("")
    (tmp_path / "low" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from high.x import X\n"
        "def f() -> None:\n    import high.y\n"
        "from . import b\n"
    )
    (tmp_path / "high").mkdir()
    (tmp_path / "high" / "__init__.py").write_text("from .x import X\nfrom low import a\n")
    (tmp_path / "high" / "x.py").write_text("X = 1\n")
    graph = package_graph(tmp_path)
    assert sorted(graph) == [("high", "low"), ("low", "high")]
    assert sorted(imp.target for imp in graph[("low", "high")]) == ["high.x", "high.y"]
    assert cycles(tmp_path) == [["high", "low"]]

