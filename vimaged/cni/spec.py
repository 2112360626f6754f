"""The CNI specification as vimaged-cni reads it: versions, error codes, environment, config.

Spec text: SPEC.md of containernetworking/cni (Debian ships 1.0 in golang-github-appc-cni-dev);
1.1 adds GC (``cni.dev/valid-attachments``) and STATUS (codes 50 and 51). Every check raises
:class:`CniError` with the spec's code, so :mod:`vimaged.cni.verbs` answers the spec's error
JSON and exit status 1. The daemon runs this for the plugin (``cni_exec``): the environment and
the configuration are the caller's bytes, as hostile as the caller.
"""

from __future__ import annotations

import json
import os

from vimaged.names import IFNAMSIZ
from vimaged.protocol import nests_deeper_than

SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# Error codes of the spec ("Error" section) and our own (>= 100).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
"""STATUS: ADD cannot work now (the daemon is down); existing attachments are unaffected."""
PLUGIN_LIMITED = 51
"""STATUS: ADD cannot work and existing attachments may have lost connectivity (no parent)."""
DAEMON_REFUSED = 100
"""vimaged answered with an error; ``details`` carries its code (``not_found: ...``)."""
DAEMON_PROTOCOL = 101
"""vimaged's answer was not understood, or its socket refused us (permission)."""

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")
_HEX = frozenset("0123456789abcdefABCDEF")


def is_name(value: str) -> bool:
    """A network name or container ID, as libcni validates them: ``[A-Za-z0-9][A-Za-z0-9_.-]*``
    (plain sets, not :mod:`re`: importing it is ~5 ms of every exec)."""
    return bool(value) and value[0] in _ALNUM and all(c in _NAME_CHARS for c in value)


MAX_NAME = 255
MAX_NESTING = 32
"""Deepest ``[``/``{`` nesting of a configuration or an IPAM result (real ones nest 4 or 5):
:mod:`json` recurses, and RecursionError is no CNI error."""

KNOWN_FIELDS = frozenset(
    {
        # the spec's
        "cniVersion", "name", "type", "args", "ipMasq", "ipam", "dns", "capabilities",
        "runtimeConfig", "prevResult", "disableCheck", "disableGC",
        # ours
        "parent", "mac", "mtu", "socket",
    }
)  # fmt: skip
DEFAULT_SOCKET = "/var/run/vimaged.sock"


class CniError(Exception):
    """A failure as the spec's error result: ``{"code", "msg", "details"}``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def result(self, version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def loads(raw: bytes, what: str) -> object:
    """One JSON document, UTF-8, nesting bounded before decoding; else code 6 naming ``what``."""
    if nests_deeper_than(raw, MAX_NESTING):
        raise CniError(
            DECODING_FAILURE, f"{what} nests deeper than {MAX_NESTING} levels or is no JSON"
        )
    try:
        return json.loads(raw.decode())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise CniError(DECODING_FAILURE, f"{what} is no JSON: {exc}") from None


def dumps(value: object) -> bytes:
    """What the plugin prints: JSON as :func:`json.dumps` writes it, and a newline."""
    return json.dumps(value).encode() + b"\n"


def decode_environ(blob: bytes) -> dict[str, str]:
    """A plugin's environment from its /proc/PID/environ layout (``NAME=VALUE`` and a NUL each),
    bytes as :func:`os.fsdecode` reads them. The first of two entries of a name wins, as
    getenv(3) finds it; an entry without ``=`` or a name is dropped, as the C library ignores it."""
    environ: dict[str, str] = {}
    for entry in blob.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            environ.setdefault(os.fsdecode(name), os.fsdecode(value))
    return environ


def is_text(value: str) -> bool:
    """Whether ``value`` is text: bytes of the environment that are no UTF-8 come through
    :func:`os.fsdecode` as lone surrogates, which nothing downstream can encode."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_ifname(name: str, what: str, code: int) -> str:
    """An interface name as Linux and FreeBSD take it (1 to 15 bytes, no ``/``, ``:``, space)."""
    if (
        not name
        or not is_text(name)
        or len(name.encode()) >= IFNAMSIZ
        or name in (".", "..")
        or any(c in name for c in "/:")
        or any(c.isspace() for c in name)
    ):
        raise CniError(
            code, f"{what} {name!r} is no interface name (1 to 15 bytes, no / : or space)"
        )
    return name


def check_name(value: str, what: str, code: int) -> str:
    if not is_name(value) or len(value) > MAX_NAME:
        raise CniError(
            code, f"{what} {value!r} must be letters, digits, _ . - (a letter or digit first)"
        )
    return value


class Env:
    """The CNI_* environment of one invocation, checked for its command (code 4)."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.command = environ.get("CNI_COMMAND", "")
        if self.command not in COMMANDS:
            what = repr(self.command) if self.command else "missing"
            raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND {what}: one of {', '.join(COMMANDS)}")
        self.container_id = environ.get("CNI_CONTAINERID", "")
        self.netns = environ.get("CNI_NETNS", "")
        self.ifname = environ.get("CNI_IFNAME", "")
        self.path = [p for p in environ.get("CNI_PATH", "").split(":") if p]
        self.args = parse_args(environ.get("CNI_ARGS", ""))

    def require_attachment(self) -> None:
        """ADD, CHECK and DEL name one attachment (CNI_NETNS: ADD and CHECK only)."""
        if not self.container_id:
            raise CniError(INVALID_ENVIRONMENT, "CNI_CONTAINERID is missing")
        check_name(self.container_id, "CNI_CONTAINERID", INVALID_ENVIRONMENT)
        if not self.ifname:
            raise CniError(INVALID_ENVIRONMENT, "CNI_IFNAME is missing")
        check_ifname(self.ifname, "CNI_IFNAME", INVALID_ENVIRONMENT)
        if self.command in ("ADD", "CHECK") and not self.netns:
            raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS is missing")
        if "\0" in self.netns or len(self.netns) > 1024 or not is_text(self.netns):
            raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS is no path, jail name or jid")

    def require_path(self) -> None:
        if not self.path:
            raise CniError(
                INVALID_ENVIRONMENT, "CNI_PATH is missing (needed to find the IPAM plugin)"
            )


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS``: ``K=V;K2=V2``. Keys other than ``IgnoreUnknown`` are not ours: unless
    ``IgnoreUnknown`` is true, they are an error as in the reference plugins."""
    if not text:
        return {}
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS item {item!r} is not KEY=VALUE")
        pairs[key] = value
    ignore = pairs.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(set(pairs) - {"IgnoreUnknown"})
    if unknown and not ignore:
        raise CniError(
            INVALID_ENVIRONMENT,
            f"CNI_ARGS: unknown key(s) {', '.join(unknown)} (set IgnoreUnknown=1)",
        )
    return pairs


class NetConf:
    """The network configuration on stdin, validated (codes 1, 2, 6, 7)."""

    def __init__(self, raw: bytes, command: str) -> None:
        conf = loads(raw, "the network configuration")
        if not isinstance(conf, dict):
            raise CniError(DECODING_FAILURE, "the network configuration is no JSON object")
        self.raw = raw
        self.conf = conf
        version = conf.get("cniVersion")
        if not isinstance(version, str):
            raise CniError(INVALID_CONFIG, "cniVersion is missing or not a string")
        if version not in SUPPORTED_VERSIONS:
            raise CniError(
                INCOMPATIBLE_VERSION,
                f"cniVersion {version} is not supported",
                f"supported: {', '.join(SUPPORTED_VERSIONS)}",
            )
        self.version = version
        unknown = sorted(k for k in conf if k not in KNOWN_FIELDS and not k.startswith("cni.dev/"))
        if unknown:
            key = unknown[0]
            raise CniError(
                UNSUPPORTED_FIELD, f"unsupported field {key}: {json.dumps(conf[key])[:200]}"
            )
        self.name = check_name(_string(conf, "name", required=True) or "", "name", INVALID_CONFIG)
        self.type = _string(conf, "type", required=True)
        for key in ("args", "dns", "capabilities", "runtimeConfig", "prevResult"):
            if key in conf and not isinstance(conf[key], dict):
                raise CniError(INVALID_CONFIG, f"{key} must be an object")
        parent = _string(conf, "parent", required=command in ("ADD", "CHECK", "STATUS"))
        self.parent = None if parent is None else check_ifname(parent, "parent", INVALID_CONFIG)
        runtime = conf.get("runtimeConfig") or {}
        mac = runtime.get("mac", conf.get("mac"))  # capability "mac" overrides the config
        if mac is not None and not (isinstance(mac, str) and _is_mac(mac)):
            raise CniError(INVALID_CONFIG, f"mac {mac!r} is no xx:xx:xx:xx:xx:xx address")
        if mac is not None and int(mac[:2], 16) & 1:
            raise CniError(INVALID_CONFIG, f"mac {mac} is a multicast address")
        self.mac: str | None = None if mac is None else mac.lower()
        mtu = conf.get("mtu")
        if mtu is not None and (type(mtu) is not int or not 68 <= mtu <= 65535):
            raise CniError(INVALID_CONFIG, f"mtu {mtu!r} must be an integer from 68 to 65535")
        self.mtu: int | None = mtu
        self.socket = _string(conf, "socket") or DEFAULT_SOCKET
        if not self.socket.startswith("/"):
            raise CniError(INVALID_CONFIG, f"socket {self.socket!r} must be an absolute path")
        self.ipam_type: str | None = None
        ipam = conf.get("ipam")
        if ipam is not None:
            if not isinstance(ipam, dict):
                raise CniError(INVALID_CONFIG, "ipam must be an object")
            if ipam:  # {} means no IPAM, as in the reference plugins
                kind = ipam.get("type")
                if not isinstance(kind, str) or not is_name(kind):
                    raise CniError(INVALID_CONFIG, f"ipam.type {kind!r} is no plugin name")
                self.ipam_type = kind
        self.valid_attachments = _valid_attachments(conf) if command == "GC" else []

    @property
    def prev_result(self) -> dict[str, object]:
        prev = self.conf.get("prevResult")
        return prev if isinstance(prev, dict) else {}


def _is_mac(text: str) -> bool:
    """``xx:xx:xx:xx:xx:xx``, hex digits."""
    parts = text.split(":")
    return len(parts) == 6 and all(len(p) == 2 and p[0] in _HEX and p[1] in _HEX for p in parts)


def _string(conf: dict[str, object], key: str, *, required: bool = False) -> str | None:
    value = conf.get(key)
    if value is None:
        if required:
            raise CniError(INVALID_CONFIG, f"{key} is missing")
        return None
    if not isinstance(value, str) or not value:
        raise CniError(INVALID_CONFIG, f"{key} must be a non-empty string")
    return value


def _valid_attachments(conf: dict[str, object]) -> list[tuple[str, str]]:
    items = conf.get("cni.dev/valid-attachments", [])
    if not isinstance(items, list):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments holds objects")
        cid, ifname = item.get("containerID"), item.get("ifname")
        if not isinstance(cid, str) or not isinstance(ifname, str):
            raise CniError(INVALID_CONFIG, "each valid attachment has containerID and ifname")
        out.append(
            (
                check_name(cid, "containerID", INVALID_CONFIG),
                check_ifname(ifname, "ifname", INVALID_CONFIG),
            )
        )
    return out
