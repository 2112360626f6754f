"""The CNI verbs of vimaged-cni, run in the daemon for the plugin's ``cni_exec`` request.

The plugin is a pipe (vimaged_cni/, and its C twin): it hands over its environment and stdin and
prints what :func:`cni_exec` answers. Exit 0 with the result (ADD), the version info (VERSION)
or nothing; on failure the spec's error JSON and exit 1. Every failure becomes a CNI error
result here, never an exception: the attachments owner's errors as code 100 with their wire
code in ``details`` (11 for ``shutting_down``), a bug as 100 ``internal``, logged once. ADD
undoes its IPAM allocation when the daemon's part fails.
"""

from __future__ import annotations

from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog
import trio

from vimaged.cni import ipam
from vimaged.cni.spec import (
    DAEMON_REFUSED,
    LATEST,
    PLUGIN_LIMITED,
    PLUGIN_NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    CniError,
    Env,
    NetConf,
    decode_environ,
    dumps,
    loads,
)
from vimaged.errors import VimagedError, describe_oserror, errno_name
from vimaged.protocol import CniAdd, CniCheck, CniDel, CniGc, CniResult, CniStatus

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from vimaged.attachments import Attachments
    from vimaged.peercred import Peer
    from vimaged.protocol import CniExec

log = structlog.get_logger()

RETRY_CODES = frozenset({"shutting_down", "busy"})
"""The daemon's error codes that mean "try again later" (CNI code 11)."""
R = TypeVar("R", bound=msgspec.Struct)


async def cni_exec(attachments: Attachments | None, request: CniExec, peer: Peer) -> CniResult:
    """Answer one plugin exec (dispatch.py's one call into this package).

    Cancellation: an IPAM plugin running is killed; an ADD's IPAM allocation is undone.
    """
    environ = decode_environ(request.environ)
    status, out = await run(attachments, environ, request.stdin, peer)
    return CniResult(exit=status, stdout=b"" if out is None else dumps(out))


async def run(
    attachments: Attachments | None, environ: dict[str, str], stdin: bytes, peer: Peer
) -> tuple[int, dict[str, object] | None]:
    """One invocation: (exit status, JSON for stdout or None)."""
    version = LATEST
    command = environ.get("CNI_COMMAND", "")
    try:
        try:
            env = Env(environ)
            if env.command == "VERSION":
                return 0, version_info(stdin)
            conf = NetConf(stdin, env.command)
            version = conf.version
            verb = Verb(attachments, conf, env, ipam.Caller(peer, environ, env.path))
            return 0, await VERBS[env.command](verb)
        except CniError:
            raise
        except Exception:
            log.exception("request.crashed", cni_command=command)
            raise CniError(
                DAEMON_REFUSED, "internal error; see the daemon's log", "internal"
            ) from None
    except CniError as exc:
        log.info("cni.failed", cni_command=command, code=exc.code, msg=exc.msg)
        return 1, exc.result(version)


def version_info(stdin: bytes) -> dict[str, object]:
    """VERSION: the version asked for (the latest when stdin names none we know)."""
    try:
        conf = loads(stdin, "stdin")
    except CniError:
        conf = None
    asked = conf.get("cniVersion") if isinstance(conf, dict) else None
    version = asked if asked in SUPPORTED_VERSIONS else LATEST
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


class Verb:
    """What one verb works with: the checked config and environment, the IPAM caller."""

    def __init__(
        self, attachments: Attachments | None, conf: NetConf, env: Env, caller: ipam.Caller
    ) -> None:
        self._attachments = attachments
        self.conf = conf
        self.env = env
        self.caller = caller

    @property
    def attachments(self) -> Attachments:
        if self._attachments is None:
            raise CniError(DAEMON_REFUSED, "this daemon has no CNI attachments", "failed")
        return self._attachments

    def key(self) -> dict[str, object]:
        return {
            "network": self.conf.name,
            "container_id": self.env.container_id,
            "ifname": self.env.ifname,
        }

    async def ipam(self, command: str) -> dict[str, object]:
        assert self.conf.ipam_type is not None
        self.env.require_path()
        return await ipam.run(self.caller, self.conf.ipam_type, self.conf.raw, command)


@contextmanager
def daemon_errors() -> Iterator[None]:
    """The attachments owner's errors as the plugin reported the daemon's error replies:
    code 100 (11 for shutting_down, busy), ``details`` the wire code (and errno name)."""
    try:
        yield
    except VimagedError as exc:
        raise refused(exc.code, str(exc)) from None
    except OSError as exc:
        name = errno_name(exc) or (None if exc.errno is None else str(exc.errno))
        raise refused("os_error", describe_oserror(exc), name) from None
    except msgspec.ValidationError as exc:  # what the wire's decoder refused before
        raise refused("invalid_request", str(exc)) from None


def refused(code: str, message: str, errno_name: str | None = None) -> CniError:
    details = code if errno_name is None else f"{code} ({errno_name})"
    return CniError(TRY_AGAIN_LATER if code in RETRY_CODES else DAEMON_REFUSED, message, details)


def _request(fields: dict[str, Any], kind: type[R]) -> R:
    """``kind`` from ``fields``, checked as the wire's decoder checks a request."""
    return msgspec.convert(fields, kind)


def _routes(ipam_result: dict[str, object]) -> list[dict[str, object]]:
    """IPAM routes for the daemon; a route without gw takes the gateway of its family."""
    gateways: dict[int, str] = {}
    for ip in _list(ipam_result.get("ips")):
        if isinstance(ip.get("gateway"), str):
            gateways.setdefault(_family(str(ip.get("address"))), str(ip["gateway"]))
    routes: list[dict[str, object]] = []
    for route in _list(ipam_result.get("routes")):
        dst = str(route.get("dst"))
        gw = route.get("gw")
        if not isinstance(gw, str):
            gw = gateways.get(_family(dst))
        routes.append({"dst": dst, "gw": gw})
    return routes


def _family(address: str) -> int:
    """4 or 6 (an IPv6 address has a colon, an IPv4 one never); attachments.py parses them."""
    return 6 if ":" in address else 4


def _list(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


async def add(v: Verb) -> dict[str, object]:
    conf, env = v.conf, v.env
    env.require_attachment()
    result: dict[str, object] = {}
    if conf.ipam_type is not None:
        result = await v.ipam("ADD")
    try:
        ips = _list(result.get("ips"))
        with daemon_errors():
            request = _request({
                **v.key(), "sandbox": env.netns, "parent": conf.parent, "mac": conf.mac,
                "mtu": conf.mtu, "addresses": [str(ip.get("address")) for ip in ips],
                "routes": _routes(result),
            }, CniAdd)  # fmt: skip
            att = await v.attachments.add(request)
    except BaseException:
        if conf.ipam_type is not None:
            with trio.move_on_after(ipam.TIMEOUT, shield=True):
                with suppress(CniError):  # the daemon's error is the one to report
                    await v.ipam("DEL")
        raise
    prev = conf.prev_result
    interfaces = _list(prev.get("interfaces"))
    index = len(interfaces)
    interfaces.append({"name": env.ifname, "mac": att.mac, "sandbox": env.netns})
    out_ips = [*_list(prev.get("ips"))]
    for ip in ips:
        entry = {"address": ip.get("address"), "interface": index}
        if "gateway" in ip:
            entry["gateway"] = ip["gateway"]
        out_ips.append(entry)
    out: dict[str, object] = {"cniVersion": conf.version, "interfaces": interfaces, "ips": out_ips}
    routes = [*_list(prev.get("routes")), *_list(result.get("routes"))]
    if routes:
        out["routes"] = routes
    dns = result.get("dns") or conf.conf.get("dns") or prev.get("dns")
    if isinstance(dns, dict) and dns:
        out["dns"] = dns
    return out


async def delete(v: Verb) -> None:
    v.env.require_attachment()
    with daemon_errors():
        await v.attachments.delete(_request(v.key(), CniDel))
    if v.conf.ipam_type is not None:
        await v.ipam("DEL")


def check_request(conf: NetConf, env: Env) -> CniCheck:
    """What CHECK compares: the addresses ``prevResult`` gave our interface, its routes (each
    without ``gw`` taking the gateway of its family, as ADD's), the ``mtu``."""
    prev = conf.prev_result
    ours = [i for i, iface in enumerate(_list(prev.get("interfaces")))
            if iface.get("name") == env.ifname and iface.get("sandbox")]  # fmt: skip
    addresses = [
        str(ip.get("address")) for ip in _list(prev.get("ips")) if ip.get("interface") in ours
    ]
    fields = {"network": conf.name, "container_id": env.container_id, "ifname": env.ifname,
              "addresses": addresses, "routes": _routes(prev), "mtu": conf.mtu}  # fmt: skip
    return _request(fields, CniCheck)


async def check(v: Verb) -> None:
    v.env.require_attachment()
    with daemon_errors():
        await v.attachments.check(check_request(v.conf, v.env))
    if v.conf.ipam_type is not None:
        await v.ipam("CHECK")


async def gc(v: Verb) -> None:
    valid = [{"container_id": cid, "ifname": ifname} for cid, ifname in v.conf.valid_attachments]
    with daemon_errors():
        await v.attachments.gc(_request({"network": v.conf.name, "valid": valid}, CniGc))
    await _ipam_optional(v, "GC")


async def status(v: Verb) -> None:
    try:
        with daemon_errors():
            request = _request({"network": v.conf.name, "parent": v.conf.parent}, CniStatus)
            await v.attachments.status(request)
    except CniError as exc:
        if exc.code == DAEMON_REFUSED and exc.details.startswith("not_found"):
            raise CniError(PLUGIN_LIMITED, exc.msg, exc.details) from None
        if exc.code == TRY_AGAIN_LATER:
            raise CniError(PLUGIN_NOT_AVAILABLE, exc.msg, exc.details) from None
        raise
    await _ipam_optional(v, "STATUS")


async def _ipam_optional(v: Verb, command: str) -> None:
    """GC and STATUS of the IPAM plugin, if it is of CNI 1.1 (older ones know neither verb)."""
    kind = v.conf.ipam_type
    if kind is None or not v.env.path:
        return
    if await ipam.supports(v.caller, kind, "1.1.0"):
        await v.ipam(command)


VERBS: dict[str, Callable[[Verb], Awaitable[dict[str, object] | None]]] = {
    "ADD": add,
    "DEL": delete,
    "CHECK": check,
    "GC": gc,
    "STATUS": status,
}
