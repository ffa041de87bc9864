"""The codebase's shape: what import-linter's contracts (pyproject.toml) cannot say.

No module imports another in a cycle, not even inside a function or under
``TYPE_CHECKING``; the example graphs see only the model-factory interface; no two modules
share a name; every package says what it owns and what it may import; no file is over
400 lines.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent_runtime", "graphs")
GRAPH_INTERFACE = "agent_runtime.execution.graph_registry"
SIZED = ("agent_runtime", "graphs", "loadtests", "observability", "tests")
MAX_LINES = 400


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [{"a", "b", "c"}]


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = strongly_connected(edges)
    described = []
    for cycle in cycles:
        lines = []
        for importer in sorted(cycle):
            for imported in sorted(edges[importer] & cycle):
                details = graph.get_import_details(importer=importer, imported=imported)
                where = ", ".join(str(d["line_number"]) for d in details)
                lines.append(f"  {importer} -> {imported} (line {where})")
        described.append("\n".join(lines))
    assert not cycles, "import cycles:\n" + "\n\n".join(described)


def test_graphs_see_only_the_model_factory_interface(graph: grimp.ImportGraph) -> None:
    seen = {
        (module, imported)
        for module in graph.find_children("graphs") | {"graphs"}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("agent_runtime")
    }
    assert seen, "the graphs should import the model-factory interface"
    assert {imported for _, imported in seen} == {GRAPH_INTERFACE}, sorted(seen)


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_two_modules_share_a_name() -> None:
    stems = Counter(
        p.stem
        for p in modules()
        if p.stem != "__init__" and "migrations" not in p.relative_to(ROOT).parts
    )
    packages = Counter(p.parent.name for p in modules() if p.stem == "__init__")
    clashes = {name for name, n in (stems + packages).items() if n > 1}
    assert not clashes, sorted(clashes)


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for init in (ROOT / "agent_runtime").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        if init.parent.name not in ("agent_runtime", "routes", "migrations"):
            assert "import" in doc, f"{init.relative_to(ROOT)} does not say what it may import"


def test_no_file_is_over_400_lines() -> None:
    lines = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for package in SIZED
        for path in (ROOT / package).rglob("*.py")
    }
    over = {path: n for path, n in sorted(lines.items()) if n > MAX_LINES}
    assert not over, f"files over {MAX_LINES} lines (split them by concern): {over}"
