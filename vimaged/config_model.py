"""The configuration model: what rc.conf(5) says, as frozen Structs, and its rc.conf names.

:mod:`vimaged.config` builds these from the variables :mod:`vimaged.rcconf` reads and
validates them; everything else only reads them. The dependency graph (``vimage_NAME_depend``)
is walked by :func:`walk_dependencies` alone, for validation and for the start order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from vimaged import macs  # noqa: TC001 (msgspec resolves the Struct annotations at run time)
from vimaged.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

DEFAULT_EXEC_START = "/bin/sh /etc/rc"
DEFAULT_EXEC_STOP = "/bin/sh /etc/rc.shutdown jail"

RestartPolicy = Literal["no", "on-failure", "always"]
BridgeMode = Literal["classic", "uplink"]
_BRIDGE_MODES: dict[str, BridgeMode] = {"classic": "classic", "uplink": "uplink"}
_RESTART_POLICIES: dict[str, RestartPolicy] = {
    "no": "no",
    "on-failure": "on-failure",
    "always": "always",
}


class Bridge(msgspec.Struct, frozen=True, kw_only=True):
    """One ``vimage_NAME_bridges`` entry: an interface in the vimage bridged to a host NIC."""

    index: int
    """``i`` in ``ng<i>_<alias>``; counts from 0 per vimage, in ``_bridges`` order."""
    parent: str
    """The host NIC it is bridged to."""
    ifname: str
    """``ng{index}_{alias}``, at most 15 characters (never truncated)."""
    mac: str | None = None
    """Explicit ``vimage_NAME_ether_<index>``, ``xx:xx:xx:xx:xx:xx`` lower case; ``None``:
    the daemon derives one with :func:`vimaged.macs.choose_mac`."""


class VimageConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything rc.conf says about one vimage, defaults filled in."""

    name: str
    hostname: str
    rootdir: str = "/"
    vnets: tuple[str, ...] = ()
    """Host NICs moved into the vimage (``ifconfig IF vnet``) and back on stop."""
    bridges: tuple[Bridge, ...] = ()
    ifname: str
    """The alias in interface names (``ng0_<ifname>``); the vimage name unless overridden."""
    devfs_ruleset: int | None = None
    exec_start: str = DEFAULT_EXEC_START
    exec_stop: str = DEFAULT_EXEC_STOP
    exec_timeout: float = 0.0
    """Seconds ``exec_start`` may run before the start fails and is rolled back; 0: no limit,
    as jail(8)'s ``exec.timeout``."""
    exec_prestart: str | None = None
    """Host commands around the vimage (jail(8)'s ``exec.prestart`` family), ``sh -c`` with
    ``VIMAGE_NAME``, ``VIMAGE_JID``, ``VIMAGE_PATH`` and ``VIMAGE_INTERFACES`` set:
    ``exec_prestart`` before the jail exists, ``exec_poststart`` after ``exec_start``,
    ``exec_prestop`` before ``exec_stop``, ``exec_poststop`` once the jail is gone."""
    exec_poststart: str | None = None
    exec_prestop: str | None = None
    exec_poststop: str | None = None
    exec_consolelog: str | None = None
    """File that ``exec_start`` and ``exec_stop`` append their output to (jail(8)'s
    ``exec.consolelog``); ``None``: the daemon's own output."""
    stop_timeout: float = 10.0
    parameters: tuple[str, ...] = ()
    """Extra jail(8) parameters, ``key=value`` or a bare boolean ``key``, split as sh words."""
    depend: tuple[str, ...] = ()
    health_cmd: str | None = None
    health_interval: float = 30.0
    health_timeout: float = 10.0
    health_retries: int = 3
    health_start_period: float = 0.0
    restart: RestartPolicy = "no"
    restart_limit: int = 5
    """Circuit breaker: this many failures ..."""
    restart_window: float = 600.0
    """... within this many seconds and the vimage stays failed."""


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The whole configuration, as read by :func:`load`."""

    enable: bool = False
    vimages: tuple[VimageConfig, ...] = ()
    """In ``vimage_list`` order."""
    parallel_start: bool = False
    mac_scheme: macs.MacScheme = "host"
    bridge_mode: BridgeMode = "classic"
    """``vimage_bridge_mode``: how a parent NIC is wired into its ng_bridge; ``classic``
    puts ``lower`` and ``upper`` on ``link`` hooks, ``uplink`` on ``uplink``/``link`` hooks
    (restrictive mode, see vimage.conf(5))."""
    group: str | None = None
    """``vimaged_group``: group owning the control socket (mode 0660)."""
    sources: tuple[str, ...] = ()
    """The files actually read, in order."""

    def get(self, name: str) -> VimageConfig | None:
        for vimage in self.vimages:
            if vimage.name == name:
                return vimage
        return None

    def start_order(self, names: Iterable[str]) -> list[list[str]]:
        """Dependency levels for starting ``names`` and everything they depend on.

        Each level's vimages depend only on vimages of earlier levels, so a level can start
        in parallel once the previous one is up; within a level, ``vimage_list`` order.
        Stopping uses the levels reversed. ``NotFoundError`` for a name not configured.
        """
        names = list(names)
        walk = walk_dependencies(self.vimages, names)
        configured = {vimage.name for vimage in self.vimages}
        for name in [*names, *(dependency for _, dependency in walk.missing)]:
            if name not in configured:
                raise NotFoundError(f"vimage {name} is not configured (not in vimage_list)")
        if walk.cycles:  # validation refuses cycles; this guards a Config built by hand
            raise ConfigError(f"dependency cycle: {' -> '.join(walk.cycles[0])}")
        order: list[list[str]] = [[] for _ in range(max(walk.levels.values(), default=-1) + 1)]
        for vimage in self.vimages:  # vimage_list order, so each level comes out in that order
            if vimage.name in walk.levels:
                order[walk.levels[vimage.name]].append(vimage.name)
        return order


class DependencyWalk(msgspec.Struct, frozen=True, kw_only=True):
    """What one walk of the ``depend`` graph found."""

    levels: dict[str, int]
    """Each vimage reached: 0 without dependencies, else one more than its deepest one."""
    cycles: list[list[str]]
    """Each cycle once, as a path that ends where it starts (``a -> b -> a``)."""
    missing: list[tuple[str, str]]
    """``(vimage, dependency)`` for each dependency not configured, in the order found."""


def walk_dependencies(
    vimages: Sequence[VimageConfig], roots: Iterable[str] | None = None
) -> DependencyWalk:
    """Walk the dependency graph from ``roots`` (default: every vimage), once, depth first.

    Roots that are not configured are skipped (the caller decides what that means).
    """
    by_name = {vimage.name: vimage for vimage in vimages}
    levels: dict[str, int] = {}
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    missing: list[tuple[str, str]] = []
    path: list[str] = []

    def visit(name: str) -> int:
        if name in levels:
            return levels[name]
        if name in path:
            cycle = [*path[path.index(name) :], name]
            if frozenset(cycle) not in seen_cycles:
                seen_cycles.add(frozenset(cycle))
                cycles.append(cycle)
            return -1
        path.append(name)
        level = 0
        for dependency in by_name[name].depend:
            if dependency in by_name:
                level = max(level, visit(dependency) + 1)
            elif (name, dependency) not in missing:
                missing.append((name, dependency))
        path.pop()
        levels[name] = level
        return level

    for root in by_name if roots is None else roots:
        if root in by_name:
            visit(root)
    return DependencyWalk(levels=levels, cycles=cycles, missing=missing)


VIMAGE_DEFAULTS = {field.name: field.default for field in msgspec.structs.fields(VimageConfig)}

GLOBAL_VARIABLES = (
    "vimage_enable",
    "vimage_list",
    "vimage_parallel_start",
    "vimage_mac_scheme",
    "vimage_bridge_mode",
    "vimaged_group",
)
VIMAGE_SETTINGS = (
    "rootdir",
    "hostname",
    "vnets",
    "bridges",
    "ifname",
    "devfs_ruleset",
    "exec_start",
    "exec_stop",
    "exec_timeout",
    "exec_prestart",
    "exec_poststart",
    "exec_prestop",
    "exec_poststop",
    "exec_consolelog",
    "stop_timeout",
    "parameters",
    "depend",
    "health_cmd",
    "health_interval",
    "health_timeout",
    "health_retries",
    "health_start_period",
    "restart",
    "restart_limit",
    "restart_window",
)
"""Per-vimage suffixes of ``vimage_NAME_``; ``ether_N`` comes on top, one per bridge."""

_RC_SUBR_SUFFIXES = (
    "flags",
    "program",
    "pidfile",
    "user",
    "group",
    "chroot",
    "chdir",
    "nice",
    "env",
    "env_file",
    "fib",
    "setfib",
    "limits",
    "login_class",
    "oomprotect",
    "prepend",
    "umask",
    "svcj",
    "svcj_options",
    "svcj_ipaddrs",
)
RC_SUBR_VARIABLES = frozenset(f"vimage_{suffix}" for suffix in _RC_SUBR_SUFFIXES)
"""Variables rc.subr(8) reads for the ``vimage`` rc.d script: allowed, not used here.

Every other ``vimage_*`` variable must be one of ours. ``vimaged_*`` variables belong to the
``vimaged`` rc.d script and rc.subr(8) (``vimaged_enable``, ``vimaged_flags``,
``vimaged_socket``, ...) and are ignored, except ``vimaged_group`` and near misses of it."""
