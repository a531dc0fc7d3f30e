"""The layout of ledger_sync.services, read from the source with ast (nothing is imported).

Layers, bottom to top: shared machinery (imports no domain service) → order_states → the
domain services → pipeline → sweep and job runs. Views, admin, API, tasks and commands sit
above all of them and call services; a service never imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[3] / "ledger_sync" / "services"
PACKAGE = "ledger_sync.services"

# Machinery any service may use; none of it imports a domain service.
SHARED = frozenset(
    {
        "admin_links",
        "background",
        "claims",
        "db",
        "ledger_records",
        "mirror_records",
        "normalise",
        "remote",
    }
)
# The layers above services: a service that imports one of them is upside down.
LAYERS_ABOVE = (
    "ledger_sync.admin",
    "ledger_sync.api",
    "ledger_sync.views",
    "ledger_sync.tasks",
    "ledger_sync.management",
)
# About 600 lines: a module longer than that holds more than one capability.
MAX_MODULE_LINES = 650


def _modules() -> dict[str, ast.Module]:
    return {
        path.stem: ast.parse(path.read_text(), filename=str(path))
        for path in sorted(SERVICES.glob("*.py"))
        if path.stem != "__init__"
    }


def _imported(node: ast.AST) -> list[str]:
    """The modules an import statement names (`from a import b` names a, and a.b when b is a
    module of the services package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module == PACKAGE:
            return [f"{PACKAGE}.{alias.name}" for alias in node.names]
        return [node.module]
    return []


def _service_imports(tree: ast.Module) -> set[str]:
    prefix = PACKAGE + "."
    return {
        name[len(prefix) :].split(".")[0]
        for node in ast.walk(tree)
        for name in _imported(node)
        if name.startswith(prefix)
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules of `graph`, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            found = visit(imported)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_services_import_each_other_without_a_cycle():
    graph = {name: _service_imports(tree) - {name} for name, tree in _modules().items()}

    assert _cycle(graph) is None, "import cycle: " + " -> ".join(_cycle(graph) or [])


def test_shared_machinery_imports_no_domain_service():
    modules = _modules()
    assert modules.keys() >= SHARED
    upward = {
        name: sorted(_service_imports(modules[name]) - SHARED - {name}) for name in sorted(SHARED)
    }

    assert {name: found for name, found in upward.items() if found} == {}


def test_order_states_imports_only_shared_machinery():
    assert _service_imports(_modules()["order_states"]) <= SHARED


def test_no_service_imports_a_layer_above_it():
    offending = sorted(
        f"{name}: {imported}"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        for imported in _imported(node)
        if imported.startswith(LAYERS_ABOVE)
    )

    assert offending == []


def test_imports_are_at_module_top_level():
    nested = sorted(
        f"{name}:{node.lineno}"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and node not in tree.body
    )

    assert nested == []


def test_only_public_names_cross_modules():
    app = SERVICES.parent
    private = sorted(
        f"{path.relative_to(app.parent)}:{node.lineno} {node.module}.{alias.name}"
        for path in app.rglob("*.py")
        if "migrations" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ledger_sync")
        for alias in node.names
        if alias.name.startswith("_")
    )

    assert private == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_service_module_is_over_about_600_lines(name):
    lines = len((SERVICES / f"{name}.py").read_text().splitlines())

    assert lines <= MAX_MODULE_LINES, f"services/{name}.py has {lines} lines: split it"
