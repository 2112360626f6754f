"""Configuration layer: rc.conf(5) variables into :class:`Config`, validated in full.

vimaged has no configuration file of its own: it reads what rc.subr(8) reads for it
(:data:`DEFAULT_PATHS`, later files override earlier ones) with the subset of sh(1) that
rc.conf files use, keeps the ``vimage_*`` and ``vimaged_*`` variables and turns them into
frozen Structs. Per-vimage variable names are built from ``vimage_list``
(``f"vimage_{name}_vnets"``), never split on ``_``; what is left over is a typo or a vimage
missing from ``vimage_list`` and is refused.

Every semantic problem is collected and reported in one :class:`~vimaged.errors.ConfigError`,
one per line, each naming the variable, so a user fixes a configuration in one pass. Syntax
errors name ``file:line`` and stop at the first one (what follows cannot be trusted).
"""

from __future__ import annotations

import difflib
import grp
import math
import os
import re
import shlex
from typing import TYPE_CHECKING, Literal

import msgspec

from vimaged import config_limits as limits
from vimaged import macs
from vimaged.errors import ConfigError, NotFoundError
from vimaged.protocol import VIMAGE_NAME_PATTERN

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

DEFAULT_PATHS = (
    "/etc/rc.conf",
    "/etc/rc.conf.local",
    "/etc/rc.conf.d/vimaged",
    "/usr/local/etc/rc.conf.d/vimaged",
)
"""Read in this order, as rc.subr's ``load_rc_config vimaged`` does; missing ones skipped."""

IFNAMSIZ_VISIBLE = 15
"""``IF_NAMESIZE`` (16) less the NUL: the longest interface name the kernel accepts."""

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
        by_name = {vimage.name: vimage for vimage in self.vimages}
        wanted: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name in wanted:
                continue
            vimage = by_name.get(name)
            if vimage is None:
                raise NotFoundError(f"vimage {name} is not configured (not in vimage_list)")
            wanted.add(name)
            pending.extend(vimage.depend)
        levels: dict[str, int] = {}
        for name in by_name:  # vimage_list order, so each level comes out in that order
            if name in wanted:
                _dependency_level(name, by_name, levels, ())
        order: list[list[str]] = [[] for _ in range(max(levels.values(), default=-1) + 1)]
        for name in by_name:
            if name in wanted:
                order[levels[name]].append(name)
        return order


def _dependency_level(
    name: str, by_name: Mapping[str, VimageConfig], levels: dict[str, int], path: tuple[str, ...]
) -> int:
    if name in levels:
        return levels[name]
    if name in path:  # validation refuses cycles; this guards a Config built by hand
        raise ConfigError(f"dependency cycle: {' -> '.join((*path, name))}")
    depends = by_name[name].depend
    level = 1 + max(
        (_dependency_level(dep, by_name, levels, (*path, name)) for dep in depends), default=-1
    )
    levels[name] = level
    return level


_VIMAGE_DEFAULTS = {field.name: field.default for field in msgspec.structs.fields(VimageConfig)}


# --------------------------------------------------------------------------- sh subset


class _Assignment(msgspec.Struct, frozen=True):
    name: str
    value: str
    where: str
    """``file:line`` of the assignment."""


_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_BLANKS = " \t"
_OPERATORS = "|&<>()"
_SPECIAL_PARAMETERS = "@*#?$!-0123456789"


def _kept(name: str) -> bool:
    return name.startswith(("vimage_", "vimaged_"))


class _ShReader:
    """A cursor over one file's text; every method leaves ``pos`` after what it consumed."""

    def __init__(self, text: str, filename: str, env: dict[str, str]) -> None:
        self.text = text
        self.filename = filename
        self.env = env
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(f"{self.filename}:{self.line if line is None else line}: {message}")

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + count)
        self.pos += count

    def assignments(self) -> list[_Assignment]:
        found: list[_Assignment] = []
        while self.pos < len(self.text):
            self.skip_separators()
            if self.pos >= len(self.text):
                break
            found.extend(self.simple_command())
        return found

    def skip_separators(self) -> None:
        """Blanks, newlines, ``;``, comments and line continuations between commands."""
        while self.pos < len(self.text):
            char = self.peek()
            if char in _BLANKS or char in "\n;":
                self.advance()
            elif char == "#":
                self.skip_comment()
            elif char == "\\" and self.peek(1) == "\n":
                self.advance(2)
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.advance((len(self.text) if end < 0 else end) - self.pos)

    def skip_blanks(self) -> None:
        while True:
            char = self.peek()
            if char and char in _BLANKS:
                self.advance()
            elif char == "\\" and self.peek(1) == "\n":
                self.advance(2)
            else:
                return

    def at_command_end(self) -> bool:
        char = self.peek()
        return char in ("", "\n", ";", "#")

    def simple_command(self) -> list[_Assignment]:
        """``NAME=value ...`` or ``export NAME[=value] ...``; anything else is an error."""
        found: list[_Assignment] = []
        exporting = False
        first = True
        while not self.at_command_end():
            match = _ASSIGNMENT_START.match(self.text, self.pos)
            if match is not None:
                found.append(self.assignment(match))
            elif first and self.word_is("export"):
                self.advance(len("export"))
                exporting = True
            elif exporting and (exported := _NAME.match(self.text, self.pos)) is not None:
                self.advance(exported.end() - self.pos)
                if not (self.at_command_end() or self.peek() in _BLANKS):
                    raise self.error("export takes variable names: only NAME or NAME=value")
            else:
                raise self.unsupported_command(after_assignment=bool(found))
            first = False
            self.skip_blanks()
        return found

    def word_is(self, word: str) -> bool:
        end = self.pos + len(word)
        return self.text.startswith(word, self.pos) and (
            end >= len(self.text) or self.text[end] in _BLANKS + "\n;"
        )

    def unsupported_command(self, *, after_assignment: bool) -> ConfigError:
        end = self.pos
        while end < len(self.text) and self.text[end] not in _BLANKS + "\n;" + _OPERATORS:
            end += 1
        word = self.text[self.pos : end]
        if word in (".", "source"):
            return self.error(f"'{word}' (reading another file) is not supported")
        if end < len(self.text) and self.text[end] == "(" and _NAME.fullmatch(word):
            return self.error(f"function definition '{word}()' is not supported")
        if not word:
            return self.error(f"'{self.peek()}' is not supported: only NAME=value assignments")
        if after_assignment:
            return self.error(f"command '{word}' is not supported: only NAME=value assignments")
        return self.error(f"'{word}' is not supported: only NAME=value assignments")

    def assignment(self, match: re.Match[str]) -> _Assignment:
        name = match.group(1)
        line = self.line
        self.advance(match.end() - self.pos)
        value = self.word()
        self.env[name] = value
        return _Assignment(name, value, f"{self.filename}:{line}")

    def word(self) -> str:
        """The value of one word: quotes removed, escapes and ``$var`` expanded."""
        parts: list[str] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char in _BLANKS or char in "\n;":
                break
            if char in _OPERATORS:
                raise self.error(f"unquoted '{char}' is not supported (quote the value)")
            if char == "\\":
                following = self.peek(1)
                if following == "":
                    raise self.error("backslash at end of file")
                self.advance(2)
                if following != "\n":  # backslash-newline is a line continuation
                    parts.append(following)
            elif char == "'":
                parts.append(self.single_quoted())
            elif char == '"':
                parts.append(self.double_quoted())
            elif char == "$":
                parts.append(self.expansion())
            elif char == "`":
                raise self.error("command substitution is not supported")
            else:
                parts.append(char)
                self.advance()
        return "".join(parts)

    def single_quoted(self) -> str:
        start_line = self.line
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise self.error("unterminated single quote", start_line)
        value = self.text[self.pos + 1 : end]
        self.advance(end + 1 - self.pos)
        return value

    def double_quoted(self) -> str:
        start_line = self.line
        self.advance()
        parts: list[str] = []
        while True:
            char = self.peek()
            if char == "":
                raise self.error("unterminated double quote", start_line)
            if char == '"':
                self.advance()
                return "".join(parts)
            if char == "\\":
                following = self.peek(1)
                if following in ("$", "`", '"', "\\"):
                    parts.append(following)
                elif following != "\n":  # other escapes keep their backslash, as in sh
                    parts.append("\\")
                    self.advance()
                    continue
                self.advance(2)
            elif char == "$":
                parts.append(self.expansion())
            elif char == "`":
                raise self.error("command substitution is not supported")
            else:
                parts.append(char)
                self.advance()

    def expansion(self) -> str:
        """``$NAME`` or ``${NAME}``; a lone ``$`` is literal, as in sh."""
        following = self.peek(1)
        if following == "(":
            if self.peek(2) == "(":
                raise self.error("arithmetic expansion $((...)) is not supported")
            raise self.error("command substitution is not supported")
        if following == "{":
            close = self.text.find("}", self.pos + 2)
            inner = self.text[self.pos + 2 : close] if close >= 0 else ""
            if close < 0 or "\n" in inner:
                raise self.error("unterminated ${")
            if not _NAME.fullmatch(inner):
                raise self.error(
                    f"${{{inner}}} is not supported: only ${{NAME}} and $NAME expansions"
                )
            self.advance(close + 1 - self.pos)
            return self.env.get(inner, "")
        if following and _NAME_START.match(following):
            match = _NAME.match(self.text, self.pos + 1)
            assert match is not None  # the first character matched _NAME_START
            self.advance(match.end() - self.pos)
            return self.env.get(match.group(), "")
        if following and following in _SPECIAL_PARAMETERS:
            raise self.error(f"${following} is not supported: only ${{NAME}} and $NAME")
        self.advance()
        return "$"


def parse(text: str, filename: str, env: dict[str, str]) -> dict[str, str]:
    """The ``vimage_*`` and ``vimaged_*`` assignments of one rc.conf(5) file, expanded.

    ``env`` holds the variables set so far (earlier files): ``${var}`` and ``$var`` expand
    from it, unset ones to the empty string, as in sh. Every assignment of ``text`` is added
    to ``env``, so the next file sees it. Supported: ``NAME=value`` (several per line),
    ``export NAME[=value]``, single and double quotes, backslash escapes, line
    continuations, comments. Anything else raises ``ConfigError("file:line: ...")``.
    """
    return {found.name: found.value for found in _parse(text, filename, env) if _kept(found.name)}


def _parse(text: str, filename: str, env: dict[str, str]) -> list[_Assignment]:
    return _ShReader(text, filename, env).assignments()


# --------------------------------------------------------------------------- files


def load(paths: Sequence[str] | None = None) -> Config:
    """Read ``paths`` (default :data:`DEFAULT_PATHS`, missing ones skipped) into a Config.

    An explicitly given path that does not exist is a ``ConfigError``. A directory stands
    for the files in it, in name order (rc.subr reads ``rc.conf.d/vimaged/*`` that way).
    Later files override earlier ones.
    """
    explicit = paths is not None
    env: dict[str, str] = {}
    found: dict[str, _Assignment] = {}
    sources: list[str] = []
    for path in DEFAULT_PATHS if paths is None else paths:
        for filename in _files_of(path, explicit=explicit):
            try:
                with open(filename, encoding="utf-8", errors="surrogateescape") as file:
                    text = file.read()
            except OSError as exc:
                raise ConfigError(f"{filename}: cannot read: {exc.strerror}") from None
            sources.append(filename)
            for assignment in _parse(text, filename, env):
                if _kept(assignment.name):
                    found[assignment.name] = assignment
    return build(
        {name: item.value for name, item in found.items()},
        sources=tuple(sources),
        origins={name: item.where for name, item in found.items()},
        check_host=True,
    )


def _files_of(path: str, *, explicit: bool) -> list[str]:
    if os.path.isdir(path):
        return sorted(
            entry.path
            for entry in os.scandir(path)
            if entry.is_file() and not entry.name.startswith(".")
        )
    if os.path.exists(path):
        return [path]
    if explicit:
        raise ConfigError(f"{path}: no such file")
    return []


# --------------------------------------------------------------------------- semantics

_VIMAGE_NAME = re.compile(VIMAGE_NAME_PATTERN)
_NIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
_GROUP = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_INTEGER = re.compile(r"^[0-9]+$")
_ETHER_INDEX = re.compile(r"^ether_(0|[1-9][0-9]*)$")
_ETHER_VARIABLE = re.compile(r"^vimage_(.+)_ether_(?:0|[1-9][0-9]*)$")
_JAIL_PARAMETER = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*(=.*)?$", re.DOTALL)
_NEAR_MISS = 0.85
"""difflib ratio above which an unknown ``vimaged_*`` is taken for a misspelt ours."""
_YES = ("yes", "true", "on", "1")
_NO = ("no", "false", "off", "0")

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


class _Problems:
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


class _Variables:
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
    problems = _Problems(origins)
    variables = _Variables(_passable_values(raw, problems))
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
    _check_across(vimages, problems)
    _check_leftovers(variables, names, problems, origins or {})
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


def _passable_values(raw: Mapping[str, str], problems: _Problems) -> dict[str, str]:
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


def _yes_no(variables: _Variables, problems: _Problems, name: str) -> bool:
    """rc.subr's checkyesno: yes/true/on/1 and no/false/off/0, any case."""
    value = variables.take(name)
    if value is None or value.lower() in _NO:
        return False
    if value.lower() in _YES:
        return True
    problems.add(name, f"{value!r} is neither YES (yes/true/on/1) nor NO (no/false/off/0)")
    return False


def _vimage_names(variables: _Variables, problems: _Problems) -> list[str]:
    names: list[str] = []
    listed: set[str] = set()  # `name in names` made 100,000 vimages take 52 s
    for name in (variables.take("vimage_list") or "").split():
        if not _VIMAGE_NAME.match(name):
            problems.add(
                "vimage_list",
                f"{name!r} is not a vimage name (letters, digits and _, not only digits, "
                "at most 64 characters)",
            )
            # its own variables would only repeat this problem
            variables.claimed.update(v for v in variables.raw if v.startswith(f"vimage_{name}_"))
        elif name in listed:
            problems.add("vimage_list", f"{name} is listed twice")
        else:
            names.append(name)
            listed.add(name)
    return names


def _vimage(name: str, variables: _Variables, problems: _Problems) -> VimageConfig:
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
        default = _VIMAGE_DEFAULTS[setting]
        assert isinstance(default, float)
        return _seconds(variables, problems, var(setting), default, limits.SECONDS_RANGES[setting])

    def integer(setting: str) -> int:
        default = _VIMAGE_DEFAULTS[setting]
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
    if take("ifname") is not None and not _VIMAGE_NAME.match(alias):
        problems.add(
            var("ifname"), f"{alias!r} is not valid (letters, digits and _, not only digits)"
        )

    vnets: list[str] = []
    for nic in (take("vnets") or "").split():
        if not _NIC.match(nic):
            problems.add(var("vnets"), f"{nic!r} is not an interface name")
        elif nic in vnets:
            problems.add(var("vnets"), f"{nic} is listed twice")
        else:
            vnets.append(nic)

    parents = (take("bridges") or "").split()
    for nic in parents:
        if not _NIC.match(nic):
            problems.add(var("bridges"), f"{nic!r} is not an interface name")
    explicit_macs = _explicit_macs(name, len(parents), variables, problems)
    bridges = tuple(
        Bridge(
            index=index, parent=parent, ifname=f"ng{index}_{alias}", mac=explicit_macs.get(index)
        )
        for index, parent in enumerate(parents)
    )
    if bridges and len(bridges[-1].ifname) > IFNAMSIZ_VISIBLE:
        longest = bridges[-1].ifname
        problems.add(
            var("bridges"),
            f"interface name {longest} is {len(longest)} characters, more than "
            f"{IFNAMSIZ_VISIBLE}; set vimage_{name}_ifname to a shorter alias "
            f"(at most {IFNAMSIZ_VISIBLE - len(longest) + len(alias)} characters)",
        )

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
    name: str, bridge_count: int, variables: _Variables, problems: _Problems
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
    variables: _Variables, problems: _Problems, name: str, bounds: tuple[int, int]
) -> int | None:
    """A whole number within ``bounds`` (inclusive), or ``None`` when unset or refused."""
    value = variables.take(name)
    if value is None:
        return None
    minimum, maximum = bounds
    if not _INTEGER.match(value):
        problems.add_at(name, f"{value!r} is not a whole number (from {minimum} to {maximum})")
        return None
    number = int(value) if len(value) <= limits.NUMBER_DIGITS_MAX else maximum + 1
    if not minimum <= number <= maximum:
        shown = value if len(value) <= limits.NUMBER_DIGITS_MAX else f"a {len(value)}-digit number"
        problems.add_at(name, f"{shown} is out of range (from {minimum} to {maximum})")
        return None
    return number


def _seconds(
    variables: _Variables,
    problems: _Problems,
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
    if not minimum <= seconds <= maximum:
        shown = value if len(value) <= limits.NUMBER_DIGITS_MAX else f"a {len(value)}-digit number"
        problems.add_at(name, f"{shown} is out of range (from {minimum:g} to {maximum:g} seconds)")
        return default
    return seconds


def _jail_parameters(name: str, value: str | None, problems: _Problems) -> tuple[str, ...]:
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


def _check_across(vimages: Sequence[VimageConfig], problems: _Problems) -> None:
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


def _check_dependencies(vimages: Sequence[VimageConfig], problems: _Problems) -> None:
    by_name = {vimage.name: vimage for vimage in vimages}
    for vimage in vimages:
        for dependency in vimage.depend:
            if dependency not in by_name:
                problems.add(f"vimage_{vimage.name}_depend", f"{dependency} is not in vimage_list")
    finished: set[str] = set()
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in finished:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                problems.add(f"vimage_{cycle[0]}_depend", f"dependency cycle {' -> '.join(cycle)}")
            return
        path.append(name)
        for dependency in by_name[name].depend:
            if dependency in by_name:
                visit(dependency, path)
        path.pop()
        finished.add(name)

    for vimage in vimages:
        visit(vimage.name, [])


def _check_leftovers(
    variables: _Variables, names: Sequence[str], problems: _Problems, origins: Mapping[str, str]
) -> None:
    """Every ``vimage_*`` variable not used (a typo or an unlisted vimage), and near misses
    of ``vimaged_group``; other ``vimaged_*`` variables belong to the rc.d script."""
    known = [*GLOBAL_VARIABLES, *(f"vimage_{n}_{s}" for n in names for s in VIMAGE_SETTINGS)]
    for variable in variables.raw:
        if variable in variables.claimed or variable in RC_SUBR_VARIABLES:
            continue
        if variable.startswith("vimaged_") and not difflib.get_close_matches(
            variable, ["vimaged_group"], cutoff=_NEAR_MISS
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
            return name if _VIMAGE_NAME.match(name) else None
    match = re.match(r"^(.+)_ether_(0|[1-9][0-9]*)$", rest)
    if match is not None and _VIMAGE_NAME.match(match.group(1)):
        return match.group(1)
    return None


def check_host_nics(cfg: Config, host_nics: Collection[str]) -> None:
    """``ConfigError`` naming each ``_vnets``/``_bridges`` variable whose NIC the host lacks.

    Called by the daemon once it knows the host's interfaces; a NIC already moved into a
    running vimage must be in ``host_nics`` for this check (the caller decides).
    """
    problems = _Problems()
    available = set(host_nics)
    for vimage in cfg.vimages:
        for nic in vimage.vnets:
            if nic not in available:
                problems.add(f"vimage_{vimage.name}_vnets", f"{nic}: no such interface on the host")
        missing = sorted({b.parent for b in vimage.bridges} - available)
        for nic in missing:
            problems.add(f"vimage_{vimage.name}_bridges", f"{nic}: no such interface on the host")
    problems.raise_if_any()
