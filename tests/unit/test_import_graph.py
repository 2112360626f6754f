"""No import circle in vimaged/ or vimagectl/, and domain modules of a readable size.

The graph is read from the source with ``ast``: every import at module level, typing-only
ones (``if TYPE_CHECKING:``) included, since a circle there is still two modules that each
need the other to be understood (health.py importing the Supervisor back was one, issue 12).
An import inside a function is a deliberate lazy one (``platforms.load``'s factories, the
one selection point, import their platform on first use) and is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vimaged", "vimagectl")

DOMAIN = (
    "supervisor",
    "vimage",
    "lifecycle",
    "resources",
    "reconcile",
    "hooks",
    "views",
    "health",
    "restarts",
    "dependents",
    "vnets",
    "state",
    "errors",
    "dispatch",
    "daemon",
)
"""The domain layer of docs/design.md's module map."""

MAX_LINES = 500


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in _module_level(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}  # a submodule
    return {m for m in out if m in known and m != name}


def _module_level(tree: ast.Module) -> list[ast.stmt]:
    """Every statement outside function bodies (inside ``if``, ``try``, ``with``, classes)."""
    found: list[ast.stmt] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                todo.append(child)
            elif isinstance(child, ast.ExceptHandler):
                todo.extend(child.body)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_circle() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_health_and_restarts_do_not_import_the_supervisor() -> None:
    found = modules()
    for name in ("vimaged.health", "vimaged.restarts"):
        assert "vimaged.supervisor" not in imports(name, found[name], set(found))


@pytest.mark.parametrize("name", DOMAIN)
def test_domain_modules_are_of_a_readable_size(name: str) -> None:
    lines = (ROOT / "vimaged" / f"{name}.py").read_text().count("\n")
    assert lines <= MAX_LINES, f"vimaged/{name}.py has {lines} lines"
