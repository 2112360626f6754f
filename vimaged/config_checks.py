"""Validation helpers of :mod:`vimaged.config` and the checks no single vimage can see.

:class:`Problems` collects every semantic error (a line each, naming the variable) so a user
fixes a configuration in one pass; :class:`Variables` records which variables were used, so
what is left over (a typo, a vimage missing from ``vimage_list``) is reported too.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

from vimaged import names as vnames
from vimaged.config_model import (
    GLOBAL_VARIABLES,
    RC_SUBR_VARIABLES,
    VIMAGE_SETTINGS,
    walk_dependencies,
)
from vimaged.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from vimaged.config_model import Config, VimageConfig

NEAR_MISS = 0.85
"""difflib ratio above which an unknown ``vimaged_*`` is taken for a misspelt ours."""
_ETHER_SUFFIX = re.compile(r"^(.+)_ether_(0|[1-9][0-9]*)$")
_ETHER_VARIABLE = re.compile(r"^vimage_(.+)_ether_(?:0|[1-9][0-9]*)$")


class Problems:
    """Collects semantic errors, one line each, ``variable: what is wrong``."""

    def __init__(self, origins: Mapping[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.origins = origins or {}

    def add(self, variable: str, message: str) -> None:
        self.lines.append(f"{variable}: {message}")

    def add_at(self, variable: str, message: str) -> None:
        """``add`` with the ``file:line`` that set ``variable``, when known."""
        where = self.origins.get(variable)
        self.add(variable, f"{message} (set at {where})" if where else message)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines))


class Variables:
    """The raw variables; ``take`` marks a variable used so leftovers can be reported."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw
        self.claimed: set[str] = set()
        self._ethers: dict[str, list[str]] | None = None

    def ethers(self, name: str) -> list[str]:
        """The ``vimage_NAME_ether_N`` variables set, through an index built once: a scan of
        every variable per vimage was quadratic (15 of 17 s of loading 10,000 vimages)."""
        if self._ethers is None:
            self._ethers = {}
            for variable in self.raw:
                match = _ETHER_VARIABLE.match(variable)
                if match is not None:  # greedy: the one NAME whose rest is ether_N
                    self._ethers.setdefault(match.group(1), []).append(variable)
        return self._ethers.get(name, [])

    def take(self, name: str) -> str | None:
        """The value, or ``None`` when unset or empty (``${var:-default}`` in rc.d scripts)."""
        self.claimed.add(name)
        value = self.raw.get(name, "").strip()
        return value or None


def check_across(vimages: Sequence[VimageConfig], problems: Problems) -> None:
    """What no single vimage can see: shared NICs, interface names, MACs, dependencies."""
    moved_by: dict[str, str] = {}
    for vimage in vimages:
        variable = f"vimage_{vimage.name}_vnets"
        for nic in vimage.vnets:
            if nic in moved_by:
                problems.add(variable, f"{nic} is also in {moved_by[nic]}")
            else:
                moved_by[nic] = variable
    interface_owner: dict[str, str] = {nic: variable for nic, variable in moved_by.items()}
    mac_owner: dict[str, str] = {}
    for vimage in vimages:
        variable = f"vimage_{vimage.name}_bridges"
        reported: set[str] = set()
        for bridge in vimage.bridges:
            if bridge.parent in moved_by and bridge.parent not in reported:
                reported.add(bridge.parent)
                problems.add(
                    variable,
                    f"{bridge.parent} is moved by {moved_by[bridge.parent]}, so it cannot "
                    "also be bridged",
                )
            owner = interface_owner.get(bridge.ifname)
            if owner is not None and owner != variable:
                problems.add(
                    variable,
                    f"interface name {bridge.ifname} is also used by {owner}; "
                    f"set vimage_{vimage.name}_ifname to a different alias",
                )
            interface_owner.setdefault(bridge.ifname, variable)
            if bridge.mac is not None:
                ether = f"vimage_{vimage.name}_ether_{bridge.index}"
                if bridge.mac in mac_owner:
                    problems.add(ether, f"{bridge.mac} is also set by {mac_owner[bridge.mac]}")
                else:
                    mac_owner[bridge.mac] = ether
    _check_dependencies(vimages, problems)


def _check_dependencies(vimages: Sequence[VimageConfig], problems: Problems) -> None:
    walk = walk_dependencies(vimages)
    position = {vimage.name: index for index, vimage in enumerate(vimages)}
    for name, dependency in sorted(walk.missing, key=lambda found: position[found[0]]):
        problems.add(f"vimage_{name}_depend", f"{dependency} is not in vimage_list")
    for cycle in walk.cycles:
        problems.add(f"vimage_{cycle[0]}_depend", f"dependency cycle {' -> '.join(cycle)}")


def check_leftovers(
    variables: Variables, names: Sequence[str], problems: Problems, origins: Mapping[str, str]
) -> None:
    """Every ``vimage_*`` variable not used (a typo or an unlisted vimage), and near misses
    of ``vimaged_group``; other ``vimaged_*`` variables belong to the rc.d script."""
    known = [*GLOBAL_VARIABLES, *(f"vimage_{n}_{s}" for n in names for s in VIMAGE_SETTINGS)]
    for variable in variables.raw:
        if variable in variables.claimed or variable in RC_SUBR_VARIABLES:
            continue
        if variable.startswith("vimaged_") and not difflib.get_close_matches(
            variable, ["vimaged_group"], cutoff=NEAR_MISS
        ):
            continue
        where = f" (set at {origins[variable]})" if variable in origins else ""
        owner = _unlisted_vimage(variable)
        if owner is not None and owner not in names:
            problems.add(
                variable,
                f"vimage {owner} is not in vimage_list{where}; add it there or remove "
                "its variables",
            )
            continue
        close = difflib.get_close_matches(variable, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.add(variable, f"unknown variable{where}{hint}")


def _unlisted_vimage(variable: str) -> str | None:
    """The NAME of ``vimage_NAME_<setting>`` if ``variable`` has that shape."""
    if not variable.startswith("vimage_"):
        return None
    rest = variable[len("vimage_") :]
    for setting in sorted(VIMAGE_SETTINGS, key=len, reverse=True):
        if rest.endswith(f"_{setting}"):
            name = rest[: -len(setting) - 1]
            return name if vnames.is_vimage_name(name) else None
    match = _ETHER_SUFFIX.match(rest)
    if match is not None and vnames.is_vimage_name(match.group(1)):
        return match.group(1)
    return None


def check_host_nics(cfg: Config, host_nics: Collection[str]) -> None:
    """``ConfigError`` naming each ``_vnets``/``_bridges`` variable whose NIC the host lacks.

    Called by the daemon once it knows the host's interfaces; a NIC already moved into a
    running vimage must be in ``host_nics`` for this check (the caller decides).
    """
    problems = Problems()
    available = set(host_nics)
    for vimage in cfg.vimages:
        for nic in vimage.vnets:
            if nic not in available:
                problems.add(f"vimage_{vimage.name}_vnets", f"{nic}: no such interface on the host")
        missing = sorted({b.parent for b in vimage.bridges} - available)
        for nic in missing:
            problems.add(f"vimage_{vimage.name}_bridges", f"{nic}: no such interface on the host")
    problems.raise_if_any()
