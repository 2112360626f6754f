"""The binding is a leaf: ``vimaged.netgraph`` imports nothing of vimaged outside itself,
except :mod:`vimaged.names` (every name rule and ``IFNAMSIZ``, defined once), itself a leaf
of the standard library that every layer may use.

Every import is read from the source with ``ast``, wherever it stands (module level, inside
a function, under ``if TYPE_CHECKING:``): a lazy or typing-only import of the platforms, the
sim host or the domain still points the binding back up (issue 12: ``netgraph/bridges.py``
imported ``platforms`` and ``netgraph/sim_transport.py`` imported ``simhost.wire``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BINDING = ROOT / "vimaged" / "netgraph"


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, relative ones resolved; for
    ``from X import name`` both ``X`` and ``X.name`` (``name`` may be a module)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = ".".join(package[: len(package) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


LEAVES = ("vimaged.names",)
"""Modules of vimaged the binding may import: they import nothing of vimaged (tested)."""


def outside_binding(module: str) -> bool:
    """A vimaged module other than the binding's or a leaf's (the bare package, whose
    ``__init__`` is ``__version__`` only, is reached by every ``from vimaged.x import``)."""
    if module.startswith(tuple(f"{leaf}." for leaf in LEAVES)) or module in LEAVES:
        return False
    return module.startswith("vimaged.") and not module.startswith("vimaged.netgraph")


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_leaves_the_binding_may_use_import_nothing_of_vimaged(leaf: str) -> None:
    path = ROOT / (leaf.replace(".", "/") + ".py")
    assert [m for _, m in imported(path) if m.startswith("vimaged")] == []


def test_the_binding_imports_nothing_of_vimaged_outside_itself() -> None:
    sources = sorted(BINDING.rglob("*.py"))
    assert len(sources) >= 5  # the walk found the binding
    leaks = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sources
        for line, module in imported(path)
        if outside_binding(module)
    ]
    assert leaks == []


def test_the_walk_sees_lazy_typing_only_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "vimaged" / "netgraph" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from vimaged.platforms import Platform\n"
        "def f():\n    from vimaged.simhost import wire\n"
        "from .. import config\n"
        "from . import abi\n"
    )
    modules = {m for _, m in imported(probe, tmp_path)}
    assert {"vimaged.platforms", "vimaged.simhost.wire", "vimaged.config"} <= modules
    assert sorted(m for m in modules if outside_binding(m)) == [
        "vimaged.config",
        "vimaged.platforms",
        "vimaged.platforms.Platform",
        "vimaged.simhost",
        "vimaged.simhost.wire",
    ]
