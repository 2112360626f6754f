"""``vimaged-cni``: the CNI verbs, each one request to vimaged (entry point ``main``).

Exit 0 with the result (ADD), the version info (VERSION) or nothing on stdout; on failure the
spec's error JSON on stdout and exit 1. ADD undoes its IPAM allocation when the daemon fails.
"""

from __future__ import annotations

import os
import sys

from vimaged_cni import client, ipam, jsonc
from vimaged_cni.spec import (
    DAEMON_REFUSED,
    LATEST,
    PLUGIN_LIMITED,
    PLUGIN_NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    CniError,
    Env,
    NetConf,
)


def version_info(stdin: bytes) -> dict[str, object]:
    """VERSION: the version asked for (the latest when stdin names none we know)."""
    try:
        asked = jsonc.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError, UnicodeDecodeError):
        asked = None
    version = asked if asked in SUPPORTED_VERSIONS else LATEST
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def _attachment_key(conf: NetConf, env: Env) -> dict[str, object]:
    return {"network": conf.name, "container_id": env.container_id, "ifname": env.ifname}


def _routes(ipam_result: dict[str, object]) -> list[dict[str, object]]:
    """IPAM routes for the daemon; a route without gw takes the gateway of its family."""
    gateways: dict[int, str] = {}
    for ip in _list(ipam_result.get("ips")):
        if isinstance(ip.get("gateway"), str):
            gateways.setdefault(_family(str(ip["address"])), str(ip["gateway"]))
    routes: list[dict[str, object]] = []
    for route in _list(ipam_result.get("routes")):
        dst = str(route.get("dst"))
        gw = route.get("gw")
        if not isinstance(gw, str):
            gw = gateways.get(_family(dst))
        routes.append({"dst": dst, "gw": gw})
    return routes


def _family(address: str) -> int:
    """4 or 6 (an IPv6 address has a colon, an IPv4 one never): the daemon parses the
    addresses themselves; :mod:`ipaddress` would cost ~3 ms of every exec."""
    return 6 if ":" in address else 4


def _list(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def add(conf: NetConf, env: Env) -> dict[str, object]:
    env.require_attachment()
    result: dict[str, object] = {}
    if conf.ipam_type is not None:
        env.require_path()
        result = ipam.run(conf.ipam_type, env.path, conf.raw, "ADD")
    try:
        ips = _list(result.get("ips"))
        reply = client.request(conf.socket, {
            "op": "cni_add", **_attachment_key(conf, env), "sandbox": env.netns,
            "parent": conf.parent, "mac": conf.mac, "mtu": conf.mtu,
            "addresses": [str(ip["address"]) for ip in ips], "routes": _routes(result),
        })  # fmt: skip
    except BaseException:
        if conf.ipam_type is not None:
            try:  # noqa: SIM105 - contextlib costs ~3 ms of every exec
                ipam.run(conf.ipam_type, env.path, conf.raw, "DEL")
            except CniError:  # the daemon's error is the one to report
                pass
        raise
    att = reply[0] if reply else {}
    prev = conf.prev_result
    interfaces = _list(prev.get("interfaces"))
    index = len(interfaces)
    interfaces.append({"name": env.ifname, "mac": att.get("mac"), "sandbox": env.netns})
    out_ips = [*_list(prev.get("ips"))]
    for ip in ips:
        entry = {"address": ip["address"], "interface": index}
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


def delete(conf: NetConf, env: Env) -> None:
    env.require_attachment()
    client.request(conf.socket, {"op": "cni_del", **_attachment_key(conf, env)})
    if conf.ipam_type is not None:
        env.require_path()
        ipam.run(conf.ipam_type, env.path, conf.raw, "DEL")


def check(conf: NetConf, env: Env) -> None:
    env.require_attachment()
    prev = conf.prev_result
    ours = [i for i, iface in enumerate(_list(prev.get("interfaces")))
            if iface.get("name") == env.ifname and iface.get("sandbox")]  # fmt: skip
    addresses = [str(ip["address"]) for ip in _list(prev.get("ips")) if ip.get("interface") in ours]
    client.request(
        conf.socket,
        {"op": "cni_check", **_attachment_key(conf, env), "addresses": addresses, "mtu": conf.mtu},
    )
    if conf.ipam_type is not None:
        env.require_path()
        ipam.run(conf.ipam_type, env.path, conf.raw, "CHECK")


def gc(conf: NetConf, env: Env) -> None:
    valid = [{"container_id": cid, "ifname": ifname} for cid, ifname in conf.valid_attachments]
    client.request(conf.socket, {"op": "cni_gc", "network": conf.name, "valid": valid})
    _ipam_optional(conf, env, "GC")


def status(conf: NetConf, env: Env) -> None:
    try:
        client.request(
            conf.socket, {"op": "cni_status", "network": conf.name, "parent": conf.parent}
        )
    except client.UnreachableError as exc:
        raise CniError(PLUGIN_NOT_AVAILABLE, exc.msg, exc.details) from None
    except CniError as exc:
        if exc.code == DAEMON_REFUSED and exc.details.startswith("not_found"):
            raise CniError(PLUGIN_LIMITED, exc.msg, exc.details) from None
        if exc.code == TRY_AGAIN_LATER:
            raise CniError(PLUGIN_NOT_AVAILABLE, exc.msg, exc.details) from None
        raise
    _ipam_optional(conf, env, "STATUS")


def _ipam_optional(conf: NetConf, env: Env, command: str) -> None:
    """GC and STATUS of the IPAM plugin, if it is of CNI 1.1 (older ones know neither verb)."""
    if conf.ipam_type is None or not env.path:
        return
    if ipam.supports(conf.ipam_type, env.path, "1.1.0"):
        ipam.run(conf.ipam_type, env.path, conf.raw, command)


VERBS = {"ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}


def run(environ: dict[str, str], stdin: bytes) -> tuple[int, dict[str, object] | None]:
    """One invocation: (exit status, JSON for stdout or None)."""
    version = LATEST
    try:
        env = Env(environ)
        if env.command == "VERSION":
            return 0, version_info(stdin)
        conf = NetConf(stdin, env.command)
        version = conf.version
        out = VERBS[env.command](conf, env)
        return 0, out if isinstance(out, dict) else None
    except CniError as exc:
        return 1, exc.result(version)


def main() -> None:
    stdin = sys.stdin.buffer.read()
    status_code, out = run(dict(os.environ), stdin)
    if out is not None:
        sys.stdout.write(jsonc.dumps(out) + "\n")
    sys.exit(status_code)
