"""Who depends on whom among the daemon's vimages, for a dependency-aware stop (issue 13.3).

Pure: it reads each vimage's ``depend`` in the configuration it runs with (a running vimage
keeps its own until restarted; one a reload removed keeps it too), which config_model's walk
of the configured graph cannot see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from vimaged.vimage import Vimage

__all__ = ["UP", "dependents_of", "stop_levels"]

UP = frozenset({"starting", "running", "stopping"})
"""States in which a vimage uses what it depends on."""


def dependents_of(vimages: Iterable[Vimage], names: Iterable[str]) -> dict[str, list[str]]:
    """Every vimage depending on ``names``, directly or not, with its own direct dependents
    (in the configuration each runs with): ``{name: [dependent, ...]}``."""
    names = list(names)
    direct: dict[str, list[str]] = {}
    for v in vimages:
        for dependency in v.cfg.depend:
            direct.setdefault(dependency, []).append(v.name)
    found: dict[str, list[str]] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = direct.get(name, [])
            todo.extend(found[name])
    return {n: ds for n, ds in found.items() if n not in names or ds}


def stop_levels(vimages: dict[str, Vimage], order: list[str], chosen: set[str]) -> list[list[str]]:
    """``chosen`` in stop order: a level's vimages have no dependent left in ``chosen``."""
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            depth[name] = 0  # the configuration refuses cycles; this ends one built by hand
            users = [u for u in chosen if name in vimages[u].cfg.depend]
            depth[name] = max((visit(u) + 1 for u in users), default=0)
        return depth[name]

    levels: list[list[str]] = []
    for name in dict.fromkeys(order):
        level = visit(name)
        levels.extend([] for _ in range(level + 1 - len(levels)))
        levels[level].append(name)
    return levels
