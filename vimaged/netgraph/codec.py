"""Netgraph binding, codec layer: argument and reply payloads <-> typed records.

Pure bytes <-> records over the ``structs`` layouts; no syscalls. Names are encoded as ASCII
and must fit their fixed-size fields with a NUL (31 characters), so a name is never truncated
silently: too long is a ``ValueError`` naming the field.
"""

from __future__ import annotations

import ctypes
from typing import TypeVar

import msgspec

from vimaged.netgraph.structs import (
    ETHER_ADDR_LEN,
    Hooklist,
    Linkinfo,
    Namelist,
    NgBridgeConfig,
    NgBridgeConfigOld,
    NgBridgeHostAry,
    NgBridgeHostent,
    NgBridgeHostOld,
    NgBridgeLinkStats,
    NgBridgeMoveHost,
    NgEifaceIfname,
    NgEifacePar,
    NgmConnect,
    NgMesgHeader,
    NgmMkpeer,
    NgmName,
    NgmRmhook,
    Nodeinfo,
    Typeinfo,
    Typelist,
)

_S = TypeVar("_S", bound=ctypes.Structure)


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """``struct nodeinfo``: name is ``""`` for an unnamed node."""

    name: str
    type: str
    id: int
    hooks: int

    @property
    def address(self) -> str:
        """The node's absolute address, ``"[id]:"``, valid whatever its name."""
        return f"[{self.id:x}]:"


class LinkInfo(msgspec.Struct, frozen=True, kw_only=True):
    """``struct linkinfo``: one hook and the node across it."""

    ourhook: str
    peerhook: str
    peer: NodeInfo


class HookList(msgspec.Struct, frozen=True, kw_only=True):
    """``struct hooklist``: a node and its links, newest hook first as the kernel lists them."""

    node: NodeInfo
    links: tuple[LinkInfo, ...]


class TypeInfo(msgspec.Struct, frozen=True, kw_only=True):
    type_name: str
    numnodes: int


class BridgeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``struct ng_bridge_config`` (both ABIs; the old one's ``ipfw`` bits are kept as given)."""

    debugLevel: int = 1  # noqa: N815 -- C spelling, so one grep finds both sides
    loopTimeout: int = 60  # noqa: N815
    maxStaleness: int = 900  # noqa: N815
    minStableAge: int = 1  # noqa: N815
    ipfw: tuple[int, ...] = ()


class LinkStats(msgspec.Struct, frozen=True, kw_only=True):
    """``struct ng_bridge_link_stats``: the getstats reply."""

    recvOctets: int = 0  # noqa: N815
    recvPackets: int = 0  # noqa: N815
    recvMulticasts: int = 0  # noqa: N815
    recvBroadcasts: int = 0  # noqa: N815
    recvUnknown: int = 0  # noqa: N815
    recvRunts: int = 0  # noqa: N815
    recvInvalid: int = 0  # noqa: N815
    xmitOctets: int = 0  # noqa: N815
    xmitPackets: int = 0  # noqa: N815
    xmitMulticasts: int = 0  # noqa: N815
    xmitBroadcasts: int = 0  # noqa: N815
    loopDrops: int = 0  # noqa: N815
    loopDetects: int = 0  # noqa: N815
    memoryFailures: int = 0  # noqa: N815


class HostEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One learned MAC of ``gettable``: ``hook`` in the new ABI, ``link_num`` in the old."""

    addr: str
    age: int
    staleness: int
    hook: str | None = None
    link_num: int | None = None


def name_field(value: str, what: str, size: int = 32) -> bytes:
    """``value`` for a ``char[size]`` field: ASCII, no NUL, room for the terminating NUL."""
    raw = value.encode("ascii")
    if len(raw) >= size or b"\0" in raw:
        raise ValueError(f"{what} {value!r} must be at most {size - 1} characters without NUL")
    return raw


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _fixed(struct_type: type[_S], data: bytes, what: str, offset: int = 0) -> _S:
    size = ctypes.sizeof(struct_type)
    if len(data) < offset + size:
        raise ValueError(f"{what}: {len(data) - offset} bytes, need {size}")
    return struct_type.from_buffer_copy(data, offset)


def _exact(struct_type: type[_S], data: bytes, what: str) -> _S:
    if len(data) != ctypes.sizeof(struct_type):
        raise ValueError(f"{what}: {len(data)} bytes, need {ctypes.sizeof(struct_type)}")
    return struct_type.from_buffer_copy(data)


def mac_bytes(mac: str) -> bytes:
    """``"02:00:27:e7:1b:18"`` -> 6 bytes; ``ValueError`` naming the MAC otherwise."""
    parts = mac.split(":")
    try:
        if len(parts) != ETHER_ADDR_LEN or any(len(p) != 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"MAC {mac!r} is not six colon-separated hex octets") from None


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# Generic arguments.


def encode_mkpeer(type_: str, ourhook: str, peerhook: str) -> bytes:
    return bytes(
        NgmMkpeer(
            type=name_field(type_, "type"),
            ourhook=name_field(ourhook, "ourhook"),
            peerhook=name_field(peerhook, "peerhook"),
        )
    )


def decode_mkpeer(data: bytes) -> tuple[str, str, str]:
    s = _exact(NgmMkpeer, data, "ngm_mkpeer")
    return _text(s.type), _text(s.ourhook), _text(s.peerhook)


def encode_connect(path: str, ourhook: str, peerhook: str) -> bytes:
    return bytes(
        NgmConnect(
            path=name_field(path, "path", 512),
            ourhook=name_field(ourhook, "ourhook"),
            peerhook=name_field(peerhook, "peerhook"),
        )
    )


def decode_connect(data: bytes) -> tuple[str, str, str]:
    s = _exact(NgmConnect, data, "ngm_connect")
    return _text(s.path), _text(s.ourhook), _text(s.peerhook)


def encode_name(name: str) -> bytes:
    return bytes(NgmName(name=name_field(name, "name")))


def decode_name(data: bytes) -> str:
    return _text(_exact(NgmName, data, "ngm_name").name)


def encode_rmhook(ourhook: str) -> bytes:
    return bytes(NgmRmhook(ourhook=name_field(ourhook, "ourhook")))


def decode_rmhook(data: bytes) -> str:
    return _text(_exact(NgmRmhook, data, "ngm_rmhook").ourhook)


# Generic replies.


def _nodeinfo(s: Nodeinfo) -> NodeInfo:
    return NodeInfo(name=_text(s.name), type=_text(s.type), id=s.id, hooks=s.hooks)


def encode_nodeinfo(info: NodeInfo) -> bytes:
    return bytes(_c_nodeinfo(info))


def _c_nodeinfo(info: NodeInfo) -> Nodeinfo:
    return Nodeinfo(
        name=name_field(info.name, "name"),
        type=name_field(info.type, "type"),
        id=info.id,
        hooks=info.hooks,
    )


def decode_nodeinfo(data: bytes) -> NodeInfo:
    return _nodeinfo(_fixed(Nodeinfo, data, "nodeinfo"))


def encode_hooklist(hooks: HookList) -> bytes:
    out = bytearray(bytes(Hooklist(nodeinfo=_c_nodeinfo(hooks.node))))
    for link in hooks.links:
        out += bytes(
            Linkinfo(
                ourhook=name_field(link.ourhook, "ourhook"),
                peerhook=name_field(link.peerhook, "peerhook"),
                nodeinfo=_c_nodeinfo(link.peer),
            )
        )
    return bytes(out)


def hooklist_size(hooks: int) -> int:
    """Bytes of a LISTHOOKS reply's data for a node of ``hooks`` hooks (struct hooklist)."""
    return ctypes.sizeof(Hooklist) + hooks * ctypes.sizeof(Linkinfo)


def decode_hooklist(data: bytes) -> HookList:
    head = _fixed(Hooklist, data, "hooklist")
    step, base = ctypes.sizeof(Linkinfo), ctypes.sizeof(Hooklist)
    links = []
    for i in range(head.nodeinfo.hooks):
        s = _fixed(Linkinfo, data, f"hooklist link {i}", base + i * step)
        links.append(
            LinkInfo(
                ourhook=_text(s.ourhook), peerhook=_text(s.peerhook), peer=_nodeinfo(s.nodeinfo)
            )
        )
    return HookList(node=_nodeinfo(head.nodeinfo), links=tuple(links))


def encode_namelist(nodes: list[NodeInfo]) -> bytes:
    return bytes(Namelist(numnames=len(nodes))) + b"".join(encode_nodeinfo(n) for n in nodes)


def decode_namelist(data: bytes) -> list[NodeInfo]:
    head = _fixed(Namelist, data, "namelist")
    step, base = ctypes.sizeof(Nodeinfo), ctypes.sizeof(Namelist)
    return [
        _nodeinfo(_fixed(Nodeinfo, data, f"namelist node {i}", base + i * step))
        for i in range(head.numnames)
    ]


def encode_typelist(types: list[TypeInfo]) -> bytes:
    return bytes(Typelist(numtypes=len(types))) + b"".join(
        bytes(Typeinfo(type_name=name_field(t.type_name, "type_name"), numnodes=t.numnodes))
        for t in types
    )


def decode_typelist(data: bytes) -> list[TypeInfo]:
    head = _fixed(Typelist, data, "typelist")
    step, base = ctypes.sizeof(Typeinfo), ctypes.sizeof(Typelist)
    out = []
    for i in range(head.numtypes):
        s = _fixed(Typeinfo, data, f"typelist type {i}", base + i * step)
        out.append(TypeInfo(type_name=_text(s.type_name), numnodes=s.numnodes))
    return out


# ascii2binary / binary2ascii carry a whole ng_mesg as their argument.


def encode_ascii_request(cmdname: str, args: str) -> bytes:
    """Step 1 of ``NgSendAsciiMsg``: a zeroed header with only cmdstr and arglen, then text."""
    text = args.encode("ascii") + b"\0"
    header = NgMesgHeader(cmdstr=name_field(cmdname, "cmdstr"), arglen=len(text))
    return bytes(header) + text


# ng_ether / ng_eiface.


def encode_u32(value: int) -> bytes:
    return bytes(ctypes.c_uint32(value))


def decode_u32(data: bytes) -> int:
    if len(data) != 4:
        raise ValueError(f"u_int32_t: {len(data)} bytes, need 4")
    return ctypes.c_uint32.from_buffer_copy(data).value


def decode_ifname(data: bytes) -> str:
    """The ``char[IFNAMSIZ]`` of getifname (ether and eiface)."""
    return _text(_fixed(NgEifaceIfname, data, "ifname").ngif_name)


def encode_ifname(name: str) -> bytes:
    return bytes(NgEifaceIfname(ngif_name=name_field(name, "ifname", 16)))


def encode_mac(mac: str) -> bytes:
    """The 6 raw bytes of ``NGM_EIFACE_SET``/``NGM_ETHER_SET_ENADDR``."""
    par = NgEifacePar()
    par.addr[:] = list(mac_bytes(mac))
    return bytes(par)


def decode_mac(data: bytes) -> str:
    return mac_text(bytes(_exact(NgEifacePar, data, "ether address").addr))


# ng_bridge.


def encode_bridge_config(cfg: BridgeConfig, *, old_abi: bool = False) -> bytes:
    if old_abi:
        old = NgBridgeConfigOld(
            debugLevel=cfg.debugLevel,
            loopTimeout=cfg.loopTimeout,
            maxStaleness=cfg.maxStaleness,
            minStableAge=cfg.minStableAge,
        )
        old.ipfw[: len(cfg.ipfw)] = list(cfg.ipfw)
        return bytes(old)
    return bytes(
        NgBridgeConfig(
            debugLevel=cfg.debugLevel,
            loopTimeout=cfg.loopTimeout,
            maxStaleness=cfg.maxStaleness,
            minStableAge=cfg.minStableAge,
        )
    )


def decode_bridge_config(data: bytes, *, old_abi: bool = False) -> BridgeConfig:
    if old_abi:
        old = _exact(NgBridgeConfigOld, data, "ng_bridge_config (old ABI)")
        return BridgeConfig(
            debugLevel=old.debugLevel,
            loopTimeout=old.loopTimeout,
            maxStaleness=old.maxStaleness,
            minStableAge=old.minStableAge,
            ipfw=tuple(old.ipfw),
        )
    s = _exact(NgBridgeConfig, data, "ng_bridge_config")
    return BridgeConfig(
        debugLevel=s.debugLevel,
        loopTimeout=s.loopTimeout,
        maxStaleness=s.maxStaleness,
        minStableAge=s.minStableAge,
    )


def bridge_link_number(hook: str) -> int:
    """getstats' argument: ``linkN`` -> N, ``uplinkN`` -> -N (``ng_bridge.c``)."""
    for prefix, sign in (("uplink", -1), ("link", 1)):
        digits = hook.removeprefix(prefix)
        if digits != hook and digits.isdigit() and str(int(digits)) == digits:
            return sign * int(digits)
    raise ValueError(f"bridge hook {hook!r} is neither linkN nor uplinkN")


def encode_i32(value: int) -> bytes:
    return bytes(ctypes.c_int32(value))


def decode_i32(data: bytes) -> int:
    if len(data) != 4:
        raise ValueError(f"int32_t: {len(data)} bytes, need 4")
    return ctypes.c_int32.from_buffer_copy(data).value


def encode_link_stats(stats: LinkStats) -> bytes:
    return bytes(NgBridgeLinkStats(**msgspec.structs.asdict(stats)))


def decode_link_stats(data: bytes) -> LinkStats:
    s = _exact(NgBridgeLinkStats, data, "ng_bridge_link_stats")
    return LinkStats(**{name: getattr(s, name) for name, _ in NgBridgeLinkStats._fields_})


def encode_host_table(hosts: list[HostEntry], *, old_abi: bool = False) -> bytes:
    out = bytearray(bytes(NgBridgeHostAry(numHosts=len(hosts))))
    for h in hosts:
        if old_abi:
            old = NgBridgeHostOld(linkNum=h.link_num or 0, age=h.age, staleness=h.staleness)
            old.addr[:] = list(mac_bytes(h.addr))
            out += bytes(old)
        else:
            new = NgBridgeHostent(hook=name_field(h.hook or "", "hook"), age=h.age)
            new.staleness = h.staleness
            new.addr[:] = list(mac_bytes(h.addr))
            out += bytes(new)
    return bytes(out)


def decode_host_table(data: bytes, *, old_abi: bool = False) -> list[HostEntry]:
    head = _fixed(NgBridgeHostAry, data, "ng_bridge_host_ary")
    base = ctypes.sizeof(NgBridgeHostAry)
    out = []
    for i in range(head.numHosts):
        if old_abi:
            o = _fixed(
                NgBridgeHostOld, data, f"host {i}", base + i * ctypes.sizeof(NgBridgeHostOld)
            )
            out.append(
                HostEntry(
                    addr=mac_text(bytes(o.addr)),
                    link_num=o.linkNum,
                    age=o.age,
                    staleness=o.staleness,
                )
            )
        else:
            n = _fixed(
                NgBridgeHostent, data, f"host {i}", base + i * ctypes.sizeof(NgBridgeHostent)
            )
            out.append(
                HostEntry(
                    addr=mac_text(bytes(n.addr)),
                    hook=_text(n.hook),
                    age=n.age,
                    staleness=n.staleness,
                )
            )
    return out


def encode_move_host(mac: str, hook: str) -> bytes:
    s = NgBridgeMoveHost(hook=name_field(hook, "hook"))
    s.addr[:] = list(mac_bytes(mac))
    return bytes(s)


def decode_move_host(data: bytes) -> tuple[str, str]:
    s = _exact(NgBridgeMoveHost, data, "ng_bridge_move_host")
    return mac_text(bytes(s.addr)), _text(s.hook)
