"""Configuration layer: rc.conf(5) variables into :class:`Config`, validated in full.

vimaged has no configuration file of its own: it reads what rc.subr(8) reads for it
(:data:`DEFAULT_PATHS`, later files override earlier ones) with :mod:`vimaged.rcconf`, keeps
the ``vimage_*`` and ``vimaged_*`` variables and turns them into the frozen Structs of
:mod:`vimaged.config_model`. Per-vimage variable names are built from ``vimage_list``
(``f"vimage_{name}_vnets"``), never split on ``_``; what is left over is a typo or a vimage
missing from ``vimage_list`` and is refused.

Every semantic problem is collected and reported in one :class:`~vimaged.errors.ConfigError`,
one per line, each naming the variable, so a user fixes a configuration in one pass. Syntax
errors name ``file:line`` and stop at the first one (what follows cannot be trusted).
"""

from __future__ import annotations

import grp
import math
import re
import shlex
from typing import TYPE_CHECKING

from vimaged import config_limits as limits
from vimaged import macs, rcconf
from vimaged import names as vnames
from vimaged.config_checks import Problems, Variables, check_across, check_leftovers
from vimaged.config_checks import check_host_nics as check_host_nics
from vimaged.config_model import (
    DEFAULT_EXEC_START,
    DEFAULT_EXEC_STOP,
    GLOBAL_VARIABLES,
    RC_SUBR_VARIABLES,
    VIMAGE_DEFAULTS,
    VIMAGE_SETTINGS,
    Bridge,
    BridgeMode,
    Config,
    RestartPolicy,
    VimageConfig,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_PATHS",
    "GLOBAL_VARIABLES",
    "RC_SUBR_VARIABLES",
    "VIMAGE_SETTINGS",
    "Bridge",
    "BridgeMode",
    "Config",
    "RestartPolicy",
    "VimageConfig",
    "build",
    "check_host_nics",
    "load",
    "parse",
]

DEFAULT_PATHS = (
    "/etc/rc.conf",
    "/etc/rc.conf.local",
    "/etc/rc.conf.d/vimaged",
    "/usr/local/etc/rc.conf.d/vimaged",
)
"""Read in this order, as rc.subr's ``load_rc_config vimaged`` does; missing ones skipped."""

_BRIDGE_MODES: dict[str, BridgeMode] = {"classic": "classic", "uplink": "uplink"}
_RESTART_POLICIES: dict[str, RestartPolicy] = {
    "no": "no",
    "on-failure": "on-failure",
    "always": "always",
}


def _kept(name: str) -> bool:
    return name.startswith(("vimage_", "vimaged_"))


def parse(text: str, filename: str, env: dict[str, str]) -> dict[str, str]:
    """The ``vimage_*`` and ``vimaged_*`` assignments of one rc.conf(5) file, expanded.

    ``env`` holds the variables set so far (earlier files): ``${var}`` and ``$var`` expand
    from it, unset ones to the empty string, as in sh. Every assignment of ``text`` is added
    to ``env``, so the next file sees it. What is supported: :mod:`vimaged.rcconf`; anything
    else raises ``ConfigError("file:line: ...")``.
    """
    found = rcconf.assignments(text, filename, env)
    return {item.name: item.value for item in found if _kept(item.name)}


def load(paths: Sequence[str] | None = None) -> Config:
    """Read ``paths`` (default :data:`DEFAULT_PATHS`, missing ones skipped) into a Config.

    An explicitly given path that does not exist is a ``ConfigError``. A directory stands
    for the files in it, in name order (rc.subr reads ``rc.conf.d/vimaged/*`` that way).
    Later files override earlier ones.
    """
    found, sources = rcconf.read_files(
        DEFAULT_PATHS if paths is None else paths, explicit=paths is not None, keep=_kept
    )
    return build(
        {name: item.value for name, item in found.items()},
        sources=sources,
        origins={name: item.where for name, item in found.items()},
        check_host=True,
    )


# --------------------------------------------------------------------------- semantics

_GROUP = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_INTEGER = re.compile(r"^[0-9]+$")
_ETHER_INDEX = re.compile(r"^ether_(0|[1-9][0-9]*)$")
_JAIL_PARAMETER = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*(=.*)?$", re.DOTALL)
_YES = ("yes", "true", "on", "1")
_NO = ("no", "false", "off", "0")

_RESERVED_PARAMETERS = {
    "name": "the vimage name",
    "jid": "vimaged",
    "path": "vimage_NAME_rootdir",
    "host.hostname": "vimage_NAME_hostname",
    "vnet": "vimaged (always a new vnet)",
    "vnet.interface": "vimage_NAME_vnets",
    "persist": "vimaged",
    "devfs_ruleset": "vimage_NAME_devfs_ruleset",
    "depend": "vimage_NAME_depend",
    "stop.timeout": "vimage_NAME_stop_timeout",
    "exec.start": "vimage_NAME_exec_start",
    "exec.stop": "vimage_NAME_exec_stop",
    "exec.timeout": "vimage_NAME_exec_timeout",
    "exec.consolelog": "vimage_NAME_exec_consolelog",
    "exec.prestart": "vimage_NAME_exec_prestart",
    "exec.poststart": "vimage_NAME_exec_poststart",
    "exec.prestop": "vimage_NAME_exec_prestop",
    "exec.poststop": "vimage_NAME_exec_poststop",
}


def build(
    raw: Mapping[str, str],
    *,
    sources: tuple[str, ...] = (),
    origins: Mapping[str, str] | None = None,
    check_host: bool = False,
) -> Config:
    """Validate ``vimage_*``/``vimaged_*`` variables (as :func:`parse` returns them) into a
    Config; every problem goes into one ConfigError, a line per problem.

    ``check_host`` also looks up what the daemon will look up (``vimaged_group``), so that a
    configuration that passed configtest cannot fail at start.
    """
    problems = Problems(origins)
    variables = Variables(_passable_values(raw, problems))
    enable = _yes_no(variables, problems, "vimage_enable")
    parallel_start = _yes_no(variables, problems, "vimage_parallel_start")
    mac_scheme: macs.MacScheme = "host"
    scheme = variables.take("vimage_mac_scheme")
    if scheme == "jng":
        mac_scheme = "jng"
    elif scheme not in (None, "host"):
        problems.add("vimage_mac_scheme", f"{scheme!r} is not one of host, jng")
    bridge_mode: BridgeMode = "classic"
    mode = variables.take("vimage_bridge_mode")
    if mode in _BRIDGE_MODES:
        bridge_mode = _BRIDGE_MODES[mode]
    elif mode is not None:
        problems.add("vimage_bridge_mode", f"{mode!r} is not one of {', '.join(_BRIDGE_MODES)}")
    group = variables.take("vimaged_group")
    if group is not None and not _GROUP.match(group):
        problems.add("vimaged_group", f"{group!r} is not a group name or number")
    elif group is not None and check_host:
        try:
            grp.getgrnam(group)  # as server.admin_gid will at start
        except KeyError:
            problems.add_at("vimaged_group", f"no group named {group!r} on this host")

    names = _vimage_names(variables, problems)
    vimages = [_vimage(name, variables, problems) for name in names]
    check_across(vimages, problems)
    check_leftovers(variables, names, problems, origins or {})
    problems.raise_if_any()
    return Config(
        enable=enable,
        vimages=tuple(vimages),
        parallel_start=parallel_start,
        mac_scheme=mac_scheme,
        bridge_mode=bridge_mode,
        group=group,
        sources=sources,
    )


def _passable_values(raw: Mapping[str, str], problems: Problems) -> dict[str, str]:
    """``raw`` with every value vimaged uses checked for NUL, invalid UTF-8 and size.

    A refused value is recorded and stands in cleaned (or empty when too long), so the
    checks that follow do not repeat its problem; the ConfigError is raised anyway.
    """
    values: dict[str, str] = {}
    for variable, value in raw.items():
        used = variable.startswith("vimage_") and variable not in RC_SUBR_VARIABLES
        if not (used or variable == "vimaged_group"):
            values[variable] = value
            continue
        problem = limits.text_problem(value)
        if problem is not None:
            problems.add_at(variable, problem)
            value = "".join(c for c in value if c != "\0" and not "\ud800" <= c <= "\udfff")
        problem = limits.size_problem(value, limits.value_maximum(variable))
        if problem is not None:
            problems.add_at(variable, problem)
            value = ""
        values[variable] = value
    return values


def _yes_no(variables: Variables, problems: Problems, name: str) -> bool:
    """rc.subr's checkyesno: yes/true/on/1 and no/false/off/0, any case."""
    value = variables.take(name)
    if value is None or value.lower() in _NO:
        return False
    if value.lower() in _YES:
        return True
    problems.add(name, f"{value!r} is neither YES (yes/true/on/1) nor NO (no/false/off/0)")
    return False


def _vimage_names(variables: Variables, problems: Problems) -> list[str]:
    names: list[str] = []
    listed: set[str] = set()  # `name in names` made 100,000 vimages take 52 s
    for name in (variables.take("vimage_list") or "").split():
        if not vnames.is_vimage_name(name):
            problems.add(
                "vimage_list",
                f"{name!r} is not a vimage name (a letter, then letters, digits and _, "
                f"at most {vnames.VIMAGE_NAME_MAX} characters)",
            )
            # its own variables would only repeat this problem
            variables.claimed.update(v for v in variables.raw if v.startswith(f"vimage_{name}_"))
        elif name in listed:
            problems.add("vimage_list", f"{name} is listed twice")
        else:
            names.append(name)
            listed.add(name)
    return names


def _vimage(name: str, variables: Variables, problems: Problems) -> VimageConfig:
    """One vimage's settings with defaults; problems are recorded, defaults stand in."""

    def var(setting: str) -> str:
        return f"vimage_{name}_{setting}"

    def take(setting: str) -> str | None:
        value = variables.take(var(setting))
        maximum = limits.SETTING_MAX.get(setting)
        too_long = None if value is None or maximum is None else limits.size_problem(value, maximum)
        if too_long is not None:
            problems.add_at(var(setting), too_long)
            return None
        return value

    def seconds(setting: str) -> float:
        default = VIMAGE_DEFAULTS[setting]
        assert isinstance(default, float)
        return _seconds(variables, problems, var(setting), default, limits.SECONDS_RANGES[setting])

    def integer(setting: str) -> int:
        default = VIMAGE_DEFAULTS[setting]
        assert isinstance(default, int)
        number = _optional_integer(
            variables, problems, var(setting), limits.INTEGER_RANGES[setting]
        )
        return default if number is None else number

    rootdir = take("rootdir") or "/"
    if not rootdir.startswith("/"):
        problems.add(var("rootdir"), f"{rootdir!r} is not an absolute path")
    elif limits.has_control(rootdir):
        problems.add_at(var("rootdir"), "contains a control character")
    consolelog = take("exec_consolelog") or None
    if consolelog is not None and not consolelog.startswith("/"):
        problems.add(var("exec_consolelog"), f"{consolelog!r} is not an absolute path")
    elif consolelog is not None and limits.has_control(consolelog):
        problems.add_at(var("exec_consolelog"), "contains a control character")
    hostname = take("hostname") or name
    if any(char.isspace() for char in hostname) or limits.has_control(hostname):
        problems.add_at(var("hostname"), "must not contain blanks or control characters")

    alias = take("ifname") or name
    if take("ifname") is not None and not vnames.is_alias(alias):
        problems.add(
            var("ifname"), f"{alias!r} is not valid (letters, digits and _, not only digits)"
        )

    vnets: list[str] = []
    for nic in (take("vnets") or "").split():
        if not vnames.is_ifname(nic):
            problems.add(var("vnets"), f"{nic!r} is not an interface name")
        elif nic in vnets:
            problems.add(var("vnets"), f"{nic} is listed twice")
        else:
            vnets.append(nic)

    parents = (take("bridges") or "").split()
    for nic in parents:
        if not vnames.is_ifname(nic):
            problems.add(var("bridges"), f"{nic!r} is not an interface name")
    explicit_macs = _explicit_macs(name, len(parents), variables, problems)
    bridges = tuple(
        Bridge(
            index=index,
            parent=parent,
            ifname=vnames.bridged_ifname(index, alias),
            mac=explicit_macs.get(index),
        )
        for index, parent in enumerate(parents)
    )
    too_long = vnames.bridged_ifname_problem(len(bridges), alias, setting=var("ifname"))
    if too_long is not None:
        problems.add(var("bridges"), too_long)

    devfs_ruleset = _optional_integer(
        variables, problems, var("devfs_ruleset"), limits.INTEGER_RANGES["devfs_ruleset"]
    )
    parameters = _jail_parameters(var("parameters"), take("parameters"), problems)
    depend: list[str] = []
    for dependency in (take("depend") or "").split():
        if dependency not in depend:
            depend.append(dependency)

    restart: RestartPolicy = "no"
    policy = take("restart")
    if policy in _RESTART_POLICIES:
        restart = _RESTART_POLICIES[policy]
    elif policy is not None:
        problems.add(var("restart"), f"{policy!r} is not one of {', '.join(_RESTART_POLICIES)}")

    return VimageConfig(
        name=name,
        hostname=hostname,
        rootdir=rootdir,
        vnets=tuple(vnets),
        bridges=bridges,
        ifname=alias,
        devfs_ruleset=devfs_ruleset,
        exec_start=take("exec_start") or DEFAULT_EXEC_START,
        exec_stop=take("exec_stop") or DEFAULT_EXEC_STOP,
        exec_timeout=seconds("exec_timeout"),
        exec_prestart=take("exec_prestart") or None,
        exec_poststart=take("exec_poststart") or None,
        exec_prestop=take("exec_prestop") or None,
        exec_poststop=take("exec_poststop") or None,
        exec_consolelog=consolelog,
        stop_timeout=seconds("stop_timeout"),
        parameters=parameters,
        depend=tuple(depend),
        health_cmd=take("health_cmd"),
        health_interval=seconds("health_interval"),
        health_timeout=seconds("health_timeout"),
        health_retries=integer("health_retries"),
        health_start_period=seconds("health_start_period"),
        restart=restart,
        restart_limit=integer("restart_limit"),
        restart_window=seconds("restart_window"),
    )


def _explicit_macs(
    name: str, bridge_count: int, variables: Variables, problems: Problems
) -> dict[int, str]:
    """``vimage_NAME_ether_N`` for every N set, validated; N must name a bridge."""
    prefix = f"vimage_{name}_"
    found: dict[int, str] = {}
    for variable in variables.ethers(name):
        match = _ETHER_INDEX.match(variable[len(prefix) :])
        if match is None:
            continue
        value = variables.take(variable)
        index = int(match.group(1))
        if value is None:
            continue
        if index >= bridge_count:
            problems.add(
                variable,
                f"vimage {name} has {bridge_count} bridge(s) (ng0..), so there is no ng{index}"
                if bridge_count
                else f"vimage {name} has no vimage_{name}_bridges",
            )
            continue
        try:
            found[index] = macs.parse_mac(value)
        except ValueError as exc:
            problems.add(variable, str(exc))
    return found


def _optional_integer(
    variables: Variables, problems: Problems, name: str, bounds: tuple[int, int]
) -> int | None:
    """A whole number within ``bounds`` (inclusive), or ``None`` when unset or refused."""
    value = variables.take(name)
    if value is None:
        return None
    minimum, maximum = bounds
    span = f"from {minimum} to {maximum}"
    if not _INTEGER.match(value):
        problems.add_at(name, f"{value!r} is not a whole number ({span})")
        return None
    number = int(value) if len(value) <= limits.NUMBER_DIGITS_MAX else maximum + 1
    return number if _in_range(problems, name, value, number, bounds, span) else None


def _seconds(
    variables: Variables,
    problems: Problems,
    name: str,
    default: float,
    bounds: tuple[float, float],
) -> float:
    """A duration in seconds, ``10`` or ``2.5``, within ``bounds`` (inclusive)."""
    value = variables.take(name)
    if value is None:
        return default
    minimum, maximum = bounds
    if not _SECONDS.match(value):
        problems.add_at(name, f"{value!r} is not a number of seconds (such as 10 or 2.5)")
        return default
    whole = value.partition(".")[0]
    seconds = float(value) if len(whole) <= limits.NUMBER_DIGITS_MAX else math.inf
    span = f"from {minimum:g} to {maximum:g} seconds"
    return seconds if _in_range(problems, name, value, seconds, bounds, span) else default


def _in_range(
    problems: Problems,
    name: str,
    value: str,
    number: float,
    bounds: tuple[float, float],
    span: str,
) -> bool:
    """Whether ``number`` (read from ``value``) is within ``bounds``; if not, say so."""
    if bounds[0] <= number <= bounds[1]:
        return True
    shown = value if len(value) <= limits.NUMBER_DIGITS_MAX else f"a {len(value)}-digit number"
    problems.add_at(name, f"{shown} is out of range ({span})")
    return False


def _jail_parameters(name: str, value: str | None, problems: Problems) -> tuple[str, ...]:
    """sh words, each ``key=value`` or a boolean ``key``; keys vimaged sets are refused."""
    if value is None:
        return ()
    try:
        words = shlex.split(value)
    except ValueError as exc:
        problems.add(name, f"cannot split into words: {exc}")
        return ()
    for word in words:
        key = word.partition("=")[0]
        if not _JAIL_PARAMETER.match(word):
            problems.add(name, f"{word!r} is not a jail(8) parameter (key=value or key)")
        elif key in _RESERVED_PARAMETERS or key.startswith(("exec.", "mount.")):
            # vimage_NAME_exec_stop, spelled with this vimage's name
            instead = _RESERVED_PARAMETERS.get(key, "vimaged")
            instead = instead.replace("vimage_NAME_", name.removesuffix("parameters"))
            problems.add(name, f"{key} is set by {instead}, not here")
    return tuple(words)
