"""Simulated host layer: the netgraph(4) kernel of the simulated FreeBSD host.

It receives the same bytes a PF_NETGRAPH socket would pass to the kernel and answers as the
kernel does: the errno of ``sendto`` is the command's result and replies are queued on the
sender's control socket. The struct code here is written from ``<netgraph/ng_message.h>``,
``ng_socket.h``, ``ng_bridge.h``, ``ng_ether.h`` and ``ng_eiface.h`` (layouts verified in
shared/reference/netgraph-abi.md §2) and deliberately shares nothing with ``vimaged.netgraph``,
so a mistake in the binding cannot hide behind the same mistake here.

Citations name FreeBSD source files: ng_base.c (``ng_generic_msg``, ``ng_path2noderef``,
``ng_name_node``, ``ng_add_hook``), ng_socket.c (``ngc_send``, ``ng_bind``, ``ngs_rcvmsg``),
ng_bridge.c, ng_ether.c and ng_eiface.c.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

AF_NETGRAPH = 32
NG_VERSION = 8
NGF_RESP = 0x00000001
NG_NODESIZ = NG_HOOKSIZ = NG_TYPESIZ = NG_CMDSTRSIZ = 32
NG_PATHSIZ = 512
IFNAMSIZ = 16
SOCKADDR_NG_MAX = NG_NODESIZ + 2
"""``sg_len`` limit of FreeBSD 15's ngc_send/ng_bind (``sizeof(struct sockaddr_ng)``)."""

NGM_GENERIC_COOKIE = 1137070366
NGM_SHUTDOWN = 1
NGM_MKPEER = 2
NGM_CONNECT = 3
NGM_NAME = 4
NGM_RMHOOK = 5
NGM_NODEINFO = 0x30000006
NGM_LISTHOOKS = 0x30000007
NGM_LISTNAMES = 0x30000008
NGM_LISTNODES = 0x30000009
NGM_LISTTYPES = 0x3000000A
NGM_TEXT_STATUS = 0x3000000B
NGM_BINARY2ASCII = 0x3000000C
NGM_ASCII2BINARY = 0x3000000D

NGM_SOCKET_COOKIE = 851601233
NGM_SOCK_CMD_NOLINGER = 1
NGM_SOCK_CMD_LINGER = 2

NGM_ETHER_COOKIE = 917786906
NGM_ETHER_GET_IFNAME = 1
NGM_ETHER_GET_IFINDEX = 2
NGM_ETHER_GET_ENADDR = 3
NGM_ETHER_SET_ENADDR = 4
NGM_ETHER_GET_PROMISC = 5
NGM_ETHER_SET_PROMISC = 6
NGM_ETHER_GET_AUTOSRC = 7
NGM_ETHER_SET_AUTOSRC = 8
NGM_ETHER_ADD_MULTI = 9
NGM_ETHER_DEL_MULTI = 10
NGM_ETHER_DETACH = 11

NGM_EIFACE_COOKIE = 948105892
NGM_EIFACE_GET_IFNAME = 1
NGM_EIFACE_GET_IFADDRS = 2
NGM_EIFACE_SET = 3

NGM_BRIDGE_COOKIE = 1569321993
NGM_BRIDGE_COOKIE_OLD = 967239368
"""The bridge ABI of FreeBSD <= 12.1 (48-byte config, link0..link31, no uplinks)."""
NGM_BRIDGE_SET_CONFIG = 1
NGM_BRIDGE_GET_CONFIG = 2
NGM_BRIDGE_RESET = 3
NGM_BRIDGE_GET_STATS = 4
NGM_BRIDGE_CLR_STATS = 5
NGM_BRIDGE_GETCLR_STATS = 6
NGM_BRIDGE_GET_TABLE = 7
NGM_BRIDGE_SET_PERSISTENT = 8
NGM_BRIDGE_MOVE_HOST = 9
NG_BRIDGE_MAX_LINKS_OLD = 32

# struct ng_mesg header: version, spare, spare2, arglen, cmd, flags, token, typecookie,
# cmdstr[NG_CMDSTRSIZ]; 56 bytes on every FreeBSD target, amd64 byte order.
NG_MESG_HEADER = struct.Struct("<BBHIIIII32s")
NGM_MKPEER_ARGS = struct.Struct("<32s32s32s")  # struct ngm_mkpeer: type, ourhook, peerhook
NGM_CONNECT_ARGS = struct.Struct("<512s32s32s")  # struct ngm_connect: path, ourhook, peerhook
NGM_NAME_ARGS = struct.Struct("<32s")  # struct ngm_name / struct ngm_rmhook
NODEINFO = struct.Struct("<32s32sII")  # struct nodeinfo: name, type, id, hooks
LINKINFO_HOOKS = struct.Struct("<32s32s")  # struct linkinfo: ourhook, peerhook, nodeinfo
TYPEINFO = struct.Struct("<32sI")  # struct typeinfo: type_name, numnodes
U32 = struct.Struct("<I")
I32 = struct.Struct("<i")
BRIDGE_CONFIG = struct.Struct("<B3xIII")  # struct ng_bridge_config (16 bytes)
BRIDGE_CONFIG_OLD = struct.Struct("<32sB3xIII")  # legacy config with ipfw[32] (48 bytes)
BRIDGE_LINK_STATS_SIZE = 112  # struct ng_bridge_link_stats: 14 x u64
BRIDGE_MOVE_HOST_SIZE = 38  # struct ng_bridge_move_host: addr[6], hook[32]
ETHER_ADDR_LEN = 6

NODE_TYPES = ("socket", "ether", "bridge", "eiface")
"""Types loaded in the simulated kernel; MKPEER of anything else fails with ENXIO."""


def fail(err: int, subject: str = "") -> NoReturn:
    raise OSError(err, os.strerror(err), subject) if subject else OSError(err, os.strerror(err))


def cstr(raw: bytes) -> str:
    """A C string of a fixed-size field: up to the first NUL (the kernel forces one)."""
    return raw.split(b"\0", 1)[0].decode("latin-1")


def fixed(text: str, size: int) -> bytes:
    return text.encode("latin-1")[: size - 1].ljust(size, b"\0")


@dataclass(frozen=True, slots=True)
class NgMesg:
    """One ``struct ng_mesg``: header fields and the ``arglen`` bytes of data."""

    version: int
    arglen: int
    cmd: int
    flags: int
    token: int
    typecookie: int
    cmdstr: bytes
    data: bytes

    @classmethod
    def decode(cls, raw: bytes) -> NgMesg:
        """Parse a message as ngc_send receives it; EINVAL if it is shorter than its header."""
        if len(raw) < NG_MESG_HEADER.size:
            fail(errno.EINVAL, "message shorter than struct ng_mesg")
        version, _spare, _spare2, arglen, cmd, flags, token, cookie, cmdstr = (
            NG_MESG_HEADER.unpack_from(raw)
        )
        return cls(version, arglen, cmd, flags, token, cookie, cmdstr, raw[NG_MESG_HEADER.size :])

    def encode(self) -> bytes:
        return (
            NG_MESG_HEADER.pack(
                self.version,
                0,
                0,
                self.arglen,
                self.cmd,
                self.flags,
                self.token,
                self.typecookie,
                self.cmdstr,
            )
            + self.data
        )

    def response(self, data: bytes) -> NgMesg:
        """NG_MKRESPONSE (ng_message.h): zeroed, then token, cookie, cmd, cmdstr copied."""
        return NgMesg(
            NG_VERSION,
            len(data),
            self.cmd,
            NGF_RESP,
            self.token,
            self.typecookie,
            self.cmdstr,
            data,
        )


def sockaddr_path(sockaddr: bytes) -> str:
    """The text of a ``struct sockaddr_ng``: ``sg_data`` up to the first NUL."""
    return cstr(sockaddr[2:]) if len(sockaddr) > 2 else ""


def make_sockaddr(text: str, size: int) -> bytes:
    """A fixed-size source sockaddr as ngs_rcvmsg attaches it (``sg_len = sizeof``)."""
    data = text.encode("latin-1")[: size - 3]
    return bytes([size, AF_NETGRAPH]) + data.ljust(size - 2, b"\0")


class IfnetLike(Protocol):
    """What a netgraph node needs of the ifnet it fronts (the host model's Ifnet)."""

    name: str
    mac: bytes | None
    index: int


class IfnetHost(Protocol):
    """The host side the netgraph kernel calls into: eiface ifnets and their MACs."""

    def attach_eiface(self) -> IfnetLike:
        """Create an ``ngethN`` ifnet on the host (lowest free unit)."""

    def detach_eiface(self, ifnet: IfnetLike) -> None:
        """Destroy an eiface ifnet in whatever vnet it lives now."""


class Hook:
    __slots__ = ("name", "node", "peer")

    def __init__(self, name: str, node: Node) -> None:
        self.name = name
        self.node = node
        self.peer: Hook | None = None


class Node:
    """A netgraph node; subclasses are the node types."""

    type_name = ""
    cookie = 0

    def __init__(self, kernel: NgKernel, node_id: int) -> None:
        self.kernel = kernel
        self.id = node_id
        self.name = ""
        self.hooks: dict[str, Hook] = {}
        self.valid = True

    @property
    def address(self) -> str:
        return f"[{self.id:x}]:"

    def newhook(self, name: str) -> None:
        """The type's newhook method: reject a hook name with its errno."""

    def disconnected(self, hook: Hook) -> None:
        """The type's disconnect method, called after ``hook`` left ``self.hooks``."""

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        """A type-specific message; the reply's data or None. Unknown cookie: EINVAL."""
        fail(errno.EINVAL, f"{self.type_name} does not know cookie {msg.typecookie}")

    def shutdown(self) -> None:
        """NGM_SHUTDOWN: ng_rmnode by default."""
        self.kernel.destroy(self)

    def describe(self) -> dict[str, object]:
        """Type state for test assertions (promisc, persistent, ...)."""
        return {}

    def commands(self) -> tuple[Command, ...]:
        """The node type's cmdlist (ASCII2BINARY, BINARY2ASCII)."""
        return ()


class SocketNode(Node):
    """ng_socket(4): one per control socket; dies when its sockets close (ng_socket.c)."""

    type_name = "socket"
    cookie = NGM_SOCKET_COOKIE

    def __init__(self, kernel: NgKernel, node_id: int) -> None:
        super().__init__(kernel, node_id)
        self.refs = 0  # open control + data sockets (ng_socket_free_priv)
        self.has_data = False
        self.nolinger = False
        self.rcvbuf = DEFAULT_RECVSPACE
        self.deliver: Callable[[bytes, bytes], None] | None = None

    def disconnected(self, hook: Hook) -> None:
        # ngs_disconnect: with NOLINGER the node goes when its last hook does.
        if self.nolinger and not self.hooks and self.valid:
            self.kernel.destroy(self)

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        # ngs_rcvmsg consumes NGM_SOCKET_COOKIE messages: LINGER/NOLINGER, else EINVAL.
        if msg.typecookie != NGM_SOCKET_COOKIE or msg.flags & NGF_RESP:
            # Anything else is queued to the control socket, from its sender (NGI_RETADDR).
            self.kernel.enqueue(self, msg, self.kernel.sender)
            return None
        if msg.cmd == NGM_SOCK_CMD_NOLINGER:
            self.nolinger = True
            if not self.hooks:
                self.kernel.destroy(self)
        elif msg.cmd == NGM_SOCK_CMD_LINGER:
            self.nolinger = False
        else:
            fail(errno.EINVAL, f"socket command {msg.cmd}")
        return None

    def describe(self) -> dict[str, object]:
        return {"nolinger": self.nolinger}


DEFAULT_RECVSPACE = 20480
"""``net.graph.recvspace``: a netgraph control socket's default SO_RCVBUF (ng_socket.c)."""


def _u32_arg(msg: NgMesg) -> int:
    if msg.arglen != U32.size:
        fail(errno.EINVAL, f"argument of {msg.arglen} bytes, expected 4")
    value: int = U32.unpack_from(msg.data)[0]
    return value


def _parse_int(text: str) -> int:
    # ng_parse_int32_type reads with strtol(..., 0): decimal, 0x hex or 0 octal.
    try:
        return int(text.strip(), 0)
    except ValueError:
        fail(errno.EINVAL, f"not an integer: {text!r}")


def _parse_u32(text: str) -> bytes:
    return U32.pack(_parse_int(text) & 0xFFFFFFFF)


def _parse_i32(text: str) -> bytes:
    return I32.pack(_parse_int(text))


def _parse_none(text: str) -> bytes:
    return b""


def _parse_mac(text: str) -> bytes:
    # ng_parse_enaddr_type: six hex octets separated by colons.
    parts = text.strip().split(":")
    if len(parts) != ETHER_ADDR_LEN or not all(re.fullmatch(r"[0-9A-Fa-f]{1,2}", p) for p in parts):
        fail(errno.EINVAL, f"not an Ethernet address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def _parse_struct(text: str) -> dict[str, str]:
    """``{ key=value key="text" }`` as ng_parse_struct_type writes it."""
    body = text.strip()
    if not body:
        return {}
    if not (body.startswith("{") and body.endswith("}")):
        fail(errno.EINVAL, f"not a structure: {text!r}")
    fields: dict[str, str] = {}
    for match in re.finditer(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s}]+)', body[1:-1]):
        value = match.group(2)
        fields[match.group(1)] = value[1:-1] if value.startswith('"') else value
    return fields


def _render_none(data: bytes) -> str:
    return ""


def _render_u32(data: bytes) -> str:
    return str(U32.unpack_from(data)[0]) if len(data) >= U32.size else ""


def _render_i32(data: bytes) -> str:
    return str(I32.unpack_from(data)[0]) if len(data) >= I32.size else ""


def _render_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data[:ETHER_ADDR_LEN])


def _render_string(data: bytes) -> str:
    return '"' + cstr(data) + '"'  # ng_parse_fixedstring_type: quoted


def _render_struct(fields: list[tuple[str, str, bool]]) -> str:
    """ng_parse_struct_type's text: fields equal to their (zero) default are left out."""
    shown = [f"{name}={value}" for name, value, is_default in fields if not is_default]
    return "{ " + " ".join(shown) + (" }" if shown else "}")


def _render_nodeinfo(data: bytes) -> str:
    name, kind, node_id, hooks = NODEINFO.unpack_from(data)
    return _render_struct(
        [
            ("name", _render_string(name), not cstr(name)),
            ("type", _render_string(kind), not cstr(kind)),
            ("id", f"0x{node_id:x}", node_id == 0),  # ng_parse_hint32_type
            ("hooks", str(hooks), hooks == 0),
        ]
    )


def _render_bridge_stats(data: bytes) -> str:
    names = [
        "recvOctets",
        "recvPackets",
        "recvMulticasts",
        "recvBroadcasts",
        "recvUnknown",
        "recvRunts",
        "recvInvalid",
        "xmitOctets",
        "xmitPackets",
        "xmitMulticasts",
        "xmitBroadcasts",
        "loopDrops",
        "loopDetects",
        "memoryFailures",
    ]
    values = struct.unpack_from(f"<{len(names)}Q", data)
    return _render_struct([(n, str(v), v == 0) for n, v in zip(names, values, strict=True)])


def _render_bridge_table(data: bytes) -> str:
    hosts = U32.unpack_from(data)[0]
    return _render_struct([("numHosts", str(hosts), hosts == 0)])


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of a node type's cmdlist (``struct ng_cmdlist``) as ng_parse uses it."""

    name: str
    cmd: int
    parse: Callable[[str], bytes] = _parse_none
    render_args: Callable[[bytes], str] = _render_none
    render_reply: Callable[[bytes], str] = _render_none


GENERIC_COMMANDS = (
    Command("shutdown", NGM_SHUTDOWN),
    Command("mkpeer", NGM_MKPEER),
    Command("connect", NGM_CONNECT),
    Command("name", NGM_NAME),
    Command("rmhook", NGM_RMHOOK),
    Command("nodeinfo", NGM_NODEINFO, render_reply=_render_nodeinfo),
    Command("listhooks", NGM_LISTHOOKS),
    Command("listnames", NGM_LISTNAMES),
    Command("listnodes", NGM_LISTNODES),
    Command("listtypes", NGM_LISTTYPES),
)
"""ng_base.c ``ng_generic_cmds``; the struct arguments are parsed by ``_generic_ascii_args``."""


class EtherNode(Node):
    """ng_ether(4): one per Ethernet ifnet in the host vnet, named after it."""

    type_name = "ether"
    cookie = NGM_ETHER_COOKIE
    HOOKS = ("lower", "upper", "orphans", "divert")

    def __init__(self, kernel: NgKernel, node_id: int, ifnet: IfnetLike) -> None:
        super().__init__(kernel, node_id)
        self.ifnet = ifnet
        self.promisc = False
        # ng_ether.c@039ea811 zero-fills the private state at attach (autosrc off, as
        # ng_ether(4) says); only a reset turns it on (see lineage.md §3.4).
        self.autosrc = False
        self.multi: set[bytes] = set()

    def newhook(self, name: str) -> None:
        # ng_ether_newhook: divert is an alias of lower; unknown names EINVAL; EISCONN if taken.
        if name not in self.HOOKS:
            fail(errno.EINVAL, f"ether hook {name!r}")
        lower = {"lower", "divert"}
        if name in lower and any(h in self.hooks for h in lower):
            fail(errno.EISCONN, name)

    def disconnected(self, hook: Hook) -> None:
        # ng_ether_disconnect: the last hook gone → ng_rmnode_self → reset (node revived).
        if not self.hooks:
            self.reset()

    def shutdown(self) -> None:
        # ng_ether_shutdown: unless detaching, the node is only reset and revived.
        for hook in list(self.hooks.values()):
            self.kernel.remove_hook(hook)
        self.reset()

    def reset(self) -> None:
        self.promisc = False
        self.autosrc = True

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        if msg.typecookie != NGM_ETHER_COOKIE:
            return super().rcvmsg(msg)
        cmd = msg.cmd
        if cmd == NGM_ETHER_GET_IFNAME:
            return fixed(self.ifnet.name, IFNAMSIZ)
        if cmd == NGM_ETHER_GET_IFINDEX:
            return U32.pack(self.ifnet.index)
        if cmd == NGM_ETHER_GET_ENADDR:
            return self.ifnet.mac or bytes(ETHER_ADDR_LEN)
        if cmd == NGM_ETHER_SET_ENADDR:
            if msg.arglen != ETHER_ADDR_LEN:
                fail(errno.EINVAL, "setenaddr needs 6 bytes")
            self.ifnet.mac = msg.data[:ETHER_ADDR_LEN]
            return None
        if cmd == NGM_ETHER_GET_PROMISC:
            return U32.pack(int(self.promisc))
        if cmd == NGM_ETHER_SET_PROMISC:
            self.promisc = _u32_arg(msg) != 0
            return None
        if cmd == NGM_ETHER_GET_AUTOSRC:
            return U32.pack(int(self.autosrc))
        if cmd == NGM_ETHER_SET_AUTOSRC:
            self.autosrc = _u32_arg(msg) != 0
            return None
        if cmd in (NGM_ETHER_ADD_MULTI, NGM_ETHER_DEL_MULTI):
            if msg.arglen != ETHER_ADDR_LEN:
                fail(errno.EINVAL, "multicast address needs 6 bytes")
            addr = msg.data[:ETHER_ADDR_LEN]
            if cmd == NGM_ETHER_ADD_MULTI:
                if addr in self.multi:
                    fail(errno.EADDRINUSE, "multicast membership exists")  # if_addmulti
                self.multi.add(addr)
            else:
                if addr not in self.multi:
                    fail(errno.ENOENT, "no such multicast membership")  # if_delmulti
                self.multi.discard(addr)
            return None
        if cmd == NGM_ETHER_DETACH:
            self.kernel.destroy(self)
            return None
        fail(errno.EINVAL, f"ether command {cmd}")

    def commands(self) -> tuple[Command, ...]:
        # ng_ether.c ng_ether_cmdlist
        return (
            Command("getifname", NGM_ETHER_GET_IFNAME, render_reply=_render_string),
            Command("getifindex", NGM_ETHER_GET_IFINDEX, render_reply=_render_u32),
            Command("getenaddr", NGM_ETHER_GET_ENADDR, render_reply=_render_mac),
            Command("setenaddr", NGM_ETHER_SET_ENADDR, _parse_mac, _render_mac),
            Command("getpromisc", NGM_ETHER_GET_PROMISC, render_reply=_render_u32),
            Command("setpromisc", NGM_ETHER_SET_PROMISC, _parse_u32, _render_u32),
            Command("getautosrc", NGM_ETHER_GET_AUTOSRC, render_reply=_render_u32),
            Command("setautosrc", NGM_ETHER_SET_AUTOSRC, _parse_u32, _render_u32),
            Command("addmulti", NGM_ETHER_ADD_MULTI, _parse_mac, _render_mac),
            Command("delmulti", NGM_ETHER_DEL_MULTI, _parse_mac, _render_mac),
            Command("detach", NGM_ETHER_DETACH),
        )

    def describe(self) -> dict[str, object]:
        return {"ifname": self.ifnet.name, "promisc": self.promisc, "autosrc": self.autosrc}


class EifaceNode(Node):
    """ng_eiface(4): an ``ngethN`` ifnet; lives until NGM_SHUTDOWN (ng_eiface.c)."""

    type_name = "eiface"
    cookie = NGM_EIFACE_COOKIE

    def __init__(self, kernel: NgKernel, node_id: int, ifnet: IfnetLike) -> None:
        super().__init__(kernel, node_id)
        self.ifnet = ifnet

    def newhook(self, name: str) -> None:
        # ng_eiface_newhook: only "ether" (EPFNOSUPPORT), once (EISCONN).
        if name != "ether":
            fail(errno.EPFNOSUPPORT, f"eiface hook {name!r}")
        if "ether" in self.hooks:
            fail(errno.EISCONN, name)

    def shutdown(self) -> None:
        # ng_eiface_rmnode switches to ifp->if_vnet: the ifnet goes wherever it lives.
        self.kernel.destroy(self)

    def destroyed(self) -> None:
        self.kernel.host.detach_eiface(self.ifnet)

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        if msg.typecookie != NGM_EIFACE_COOKIE:
            return super().rcvmsg(msg)
        if msg.cmd == NGM_EIFACE_GET_IFNAME:
            return fixed(self.ifnet.name, IFNAMSIZ)
        if msg.cmd == NGM_EIFACE_GET_IFADDRS:
            return b""  # no addresses are modelled
        if msg.cmd == NGM_EIFACE_SET:
            if msg.arglen != ETHER_ADDR_LEN:
                fail(errno.EINVAL, "set needs 6 bytes")
            self.ifnet.mac = msg.data[:ETHER_ADDR_LEN]  # if_setlladdr
            return None
        fail(errno.EINVAL, f"eiface command {msg.cmd}")

    def commands(self) -> tuple[Command, ...]:
        # ng_eiface.c ng_eiface_cmdlist
        return (
            Command("getifname", NGM_EIFACE_GET_IFNAME, render_reply=_render_string),
            Command("set", NGM_EIFACE_SET, _parse_mac, _render_mac),
        )

    def describe(self) -> dict[str, object]:
        return {"ifname": self.ifnet.name}


class BridgeNode(Node):
    """ng_bridge(4) in the ABI of the simulated kernel (ng_bridge.c, ng_bridge.h)."""

    type_name = "bridge"

    def __init__(self, kernel: NgKernel, node_id: int) -> None:
        super().__init__(kernel, node_id)
        self.legacy = kernel.version < 13
        self.cookie = NGM_BRIDGE_COOKIE_OLD if self.legacy else NGM_BRIDGE_COOKIE
        self.config = (1, 60, 900, 1)  # debugLevel, loopTimeout, maxStaleness, minStableAge
        self.persistent = False
        self.restrictive = False
        self.had_hook = False

    def parse_hook(self, name: str) -> tuple[bool, int]:
        """``(uplink, number)``; EINVAL unless the name round-trips through ``%s%u``."""
        prefixes = (("link", False),) if self.legacy else (("uplink", True), ("link", False))
        for prefix, uplink in prefixes:
            if name.startswith(prefix):
                digits = name[len(prefix) :]
                if not re.fullmatch(r"0|[1-9][0-9]{0,9}", digits) or int(digits) > 0xFFFFFFFF:
                    fail(errno.EINVAL, f"bridge hook {name!r}")
                number = int(digits)
                if uplink and number == 0:
                    fail(errno.EINVAL, "uplink0 is not a bridge hook")
                if self.legacy and number >= NG_BRIDGE_MAX_LINKS_OLD:
                    fail(errno.EINVAL, f"{name!r}: the old bridge has link0..link31")
                return uplink, number
        fail(errno.EINVAL, f"bridge hook {name!r}")

    def newhook(self, name: str) -> None:
        uplink, _ = self.parse_hook(name)
        if not self.had_hook:
            # ng_bridge_newhook: the first hook ever an uplink → restrictive mode (no
            # unknown unicast to normal links).
            self.restrictive = uplink
            self.had_hook = True

    def disconnected(self, hook: Hook) -> None:
        # ng_bridge_disconnect: the last hook gone and not persistent → shut down.
        if not self.hooks and not self.persistent and self.valid:
            self.kernel.destroy(self)

    def _link_arg(self, msg: NgMesg) -> str:
        if msg.arglen != I32.size:
            fail(errno.EINVAL, "link number needs 4 bytes")
        number: int = I32.unpack_from(msg.data)[0]
        if self.legacy:
            if not 0 <= number < NG_BRIDGE_MAX_LINKS_OLD:
                fail(errno.EINVAL, f"link {number}")
            name = f"link{number}"
        else:
            name = f"link{number}" if number >= 0 else f"uplink{-number}"
        if name not in self.hooks:
            fail(errno.ENOTCONN, name)
        return name

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        if msg.typecookie != self.cookie:
            return super().rcvmsg(msg)
        cmd = msg.cmd
        config_struct = BRIDGE_CONFIG_OLD if self.legacy else BRIDGE_CONFIG
        if cmd == NGM_BRIDGE_GET_CONFIG:
            if self.legacy:
                return BRIDGE_CONFIG_OLD.pack(bytes(32), *self.config)
            return BRIDGE_CONFIG.pack(*self.config)
        if cmd == NGM_BRIDGE_SET_CONFIG:
            if msg.arglen != config_struct.size:
                fail(errno.EINVAL, f"setconfig needs {config_struct.size} bytes")
            fields = config_struct.unpack_from(msg.data)[-4:]
            self.config = (fields[0], fields[1], fields[2], fields[3])
            return None
        if cmd == NGM_BRIDGE_RESET:
            return None
        if cmd in (NGM_BRIDGE_GET_STATS, NGM_BRIDGE_CLR_STATS, NGM_BRIDGE_GETCLR_STATS):
            self._link_arg(msg)
            return None if cmd == NGM_BRIDGE_CLR_STATS else bytes(BRIDGE_LINK_STATS_SIZE)
        if cmd == NGM_BRIDGE_GET_TABLE:
            return U32.pack(0)  # no traffic is modelled, so nothing is learnt
        if cmd == NGM_BRIDGE_SET_PERSISTENT:
            self.persistent = True
            return None
        if cmd == NGM_BRIDGE_MOVE_HOST and not self.legacy:
            if msg.arglen != BRIDGE_MOVE_HOST_SIZE:
                fail(errno.EINVAL, "movehost needs 38 bytes")
            if cstr(msg.data[6:38]) not in self.hooks:
                fail(errno.ENOENT, "movehost hook")
            return None
        fail(errno.EINVAL, f"bridge command {cmd}")

    def commands(self) -> tuple[Command, ...]:
        # ng_bridge.c ng_bridge_cmdlist
        config = (self._parse_config, self._render_config)
        return (
            Command("setconfig", NGM_BRIDGE_SET_CONFIG, *config),
            Command("getconfig", NGM_BRIDGE_GET_CONFIG, render_reply=self._render_config),
            Command("reset", NGM_BRIDGE_RESET),
            Command(
                "getstats", NGM_BRIDGE_GET_STATS, _parse_i32, _render_i32, _render_bridge_stats
            ),
            Command("clrstats", NGM_BRIDGE_CLR_STATS, _parse_i32, _render_i32),
            Command(
                "getclrstats",
                NGM_BRIDGE_GETCLR_STATS,
                _parse_i32,
                _render_i32,
                _render_bridge_stats,
            ),
            Command("gettable", NGM_BRIDGE_GET_TABLE, render_reply=_render_bridge_table),
            Command("setpersistent", NGM_BRIDGE_SET_PERSISTENT),
        )

    def _render_config(self, data: bytes) -> str:
        fields = (BRIDGE_CONFIG_OLD if self.legacy else BRIDGE_CONFIG).unpack_from(data)[-4:]
        names = ("debugLevel", "loopTimeout", "maxStaleness", "minStableAge")
        return _render_struct([(n, str(v), v == 0) for n, v in zip(names, fields, strict=True)])

    def _parse_config(self, text: str) -> bytes:
        fields = _parse_struct(text)
        names = ("debugLevel", "loopTimeout", "maxStaleness", "minStableAge")
        unknown = set(fields) - set(names) - {"ipfw"}
        if unknown:
            fail(errno.ENOENT, f"unknown config field {sorted(unknown)[0]}")
        # ng_parse_struct_type starts from the type's default: zeros.
        values = [_parse_int(fields[n]) if n in fields else 0 for n in names]
        if self.legacy:
            return BRIDGE_CONFIG_OLD.pack(bytes(32), *values)
        return BRIDGE_CONFIG.pack(*values)

    def describe(self) -> dict[str, object]:
        return {
            "persistent": self.persistent,
            "restrictive": self.restrictive,
            "cookie": self.cookie,
        }


def _generic_ascii_args(cmd: int, text: str) -> bytes:
    fields = _parse_struct(text)
    if cmd == NGM_MKPEER:
        return NGM_MKPEER_ARGS.pack(
            fixed(fields.get("type", ""), 32),
            fixed(fields.get("ourhook", ""), 32),
            fixed(fields.get("peerhook", ""), 32),
        )
    if cmd == NGM_CONNECT:
        return NGM_CONNECT_ARGS.pack(
            fixed(fields.get("path", ""), NG_PATHSIZ),
            fixed(fields.get("ourhook", ""), 32),
            fixed(fields.get("peerhook", ""), 32),
        )
    if cmd == NGM_NAME:
        return fixed(fields.get("name", ""), 32)
    if cmd == NGM_RMHOOK:
        return fixed(fields.get("hook", ""), 32)
    return b""


def _valid_name(name: str) -> bool:
    """ng_name_node/ng_add_hook: non-empty, no ``.`` or ``:``."""
    return bool(name) and "." not in name and ":" not in name


def _decode_id(name: str) -> int | None:
    """ng_decodeidname: ``[hex]`` (at most 8 digits, not 0) → ID, else None."""
    match = re.fullmatch(r"\[([0-9a-fA-F]{1,8})\]", name)
    if match is None:
        return None
    value = int(match.group(1), 16)
    return value or None


class NgKernel:
    """All netgraph nodes of the simulated host vnet, and the socket calls into them."""

    def __init__(self, host: IfnetHost, version: int = 14) -> None:
        self.host = host
        self.version = version
        self.nodes: dict[int, Node] = {}
        self.next_id = 1
        self.sender: SocketNode | None = None
        """The socket node whose message is being applied (the return address)."""
        self.link_race = 0
        """Fault: the next N bridge link hooks a client adds are grabbed first by a stranger."""

    # -- node bookkeeping -----------------------------------------------------------------

    def _new_id(self) -> int:
        node_id = self.next_id
        self.next_id += 1
        return node_id

    def named(self, name: str) -> Node | None:
        for node in self.nodes.values():
            if node.name == name:
                return node
        return None

    def iter_nodes(self) -> Iterator[Node]:
        return iter(sorted(self.nodes.values(), key=lambda n: n.id))

    def make_node(self, type_name: str) -> Node:
        """ng_make_node: ENXIO for an unknown type; ether and socket constructors say EINVAL."""
        if type_name not in NODE_TYPES:
            fail(errno.ENXIO, f"no netgraph node type {type_name!r}")
        if type_name in ("ether", "socket"):
            # ng_ether_constructor and ngs_constructor refuse: those nodes come from
            # interface attach and socket(2) only.
            fail(errno.EINVAL, f"{type_name} nodes cannot be made by mkpeer")
        node: Node
        if type_name == "bridge":
            node = BridgeNode(self, self._new_id())
        else:
            ifnet = self.host.attach_eiface()
            node = EifaceNode(self, self._new_id(), ifnet)
            # ng_eiface_constructor names the node after its ifnet.
            if self.named(ifnet.name) is None:
                node.name = ifnet.name
        self.nodes[node.id] = node
        return node

    def attach_ether(self, ifnet: IfnetLike) -> None:
        """ng_ether_attach: an Ethernet ifnet arrived in the host vnet."""
        name = ifnet.name.replace(".", "_").replace(":", "_")
        if self.named(name) is not None:
            return  # ng_ether_attach skips an ifnet whose name a node already has
        node = EtherNode(self, self._new_id(), ifnet)
        node.name = name
        self.nodes[node.id] = node

    def detach_ether(self, ifnet: IfnetLike) -> None:
        """ng_ether_detach: the ifnet left the host vnet; the node really goes."""
        for node in list(self.nodes.values()):
            if isinstance(node, EtherNode) and node.ifnet is ifnet:
                self.destroy(node)

    def rename_ether(self, ifnet: IfnetLike) -> None:
        """ng_ether_ifnet_arrival_event: a renamed ifnet renames its ether node if free."""
        name = ifnet.name.replace(".", "_").replace(":", "_")
        for node in self.nodes.values():
            if isinstance(node, EtherNode) and node.ifnet is ifnet and self.named(name) is None:
                node.name = name

    def destroy(self, node: Node) -> None:
        """ng_rmnode: every hook goes (peers get disconnect), then the node."""
        if not node.valid:
            return
        node.valid = False
        for hook in list(node.hooks.values()):
            self.remove_hook(hook)
        self.nodes.pop(node.id, None)
        if isinstance(node, EifaceNode):
            node.destroyed()

    def add_hook(self, node: Node, name: str) -> Hook:
        """ng_add_hook: EINVAL bad name, EEXIST taken, then the type's newhook."""
        if not _valid_name(name) or len(name) >= NG_HOOKSIZ:
            fail(errno.EINVAL, f"hook name {name!r}")
        if name in node.hooks:
            fail(errno.EEXIST, f"hook {name!r} exists on {node.address}")
        node.newhook(name)
        hook = Hook(name, node)
        node.hooks[name] = hook
        return hook

    def remove_hook(self, hook: Hook) -> None:
        """ng_destroy_hook: both ends go, each node's disconnect runs."""
        peer = hook.peer
        hook.peer = None
        hook.node.hooks.pop(hook.name, None)
        if peer is not None:
            peer.peer = None
            peer.node.hooks.pop(peer.name, None)
        hook.node.disconnected(hook)
        if peer is not None:
            peer.node.disconnected(peer)

    def connect(self, node1: Node, hook1: str, node2: Node, hook2: str) -> None:
        """ng_con_nodes: both hooks or neither (nothing half-made is left)."""
        self._race(node1, hook1)
        self._race(node2, hook2)
        if node1 is node2 and isinstance(node1, BridgeNode):
            node1.parse_hook(hook1)
            fail(errno.ELOOP, "bridge connected to itself")
        if node1 is node2 and hook1 == hook2:
            fail(errno.EEXIST, f"hook {hook1!r}")
        first = self.add_hook(node1, hook1)
        try:
            second = self.add_hook(node2, hook2)
        except OSError:
            # ng_con_nodes destroys the first hook: its node's disconnect runs (a bridge
            # left without hooks dies, an ether node resets).
            node1.hooks.pop(hook1, None)
            node1.disconnected(first)
            raise
        first.peer, second.peer = second, first

    def _race(self, node: Node, hook: str) -> None:
        """The link-race fault: another process connects to the bridge hook first."""
        if self.link_race <= 0 or not isinstance(node, BridgeNode) or hook in node.hooks:
            return
        try:
            node.parse_hook(hook)
        except OSError:
            return
        self.link_race -= 1
        stranger = SocketNode(self, self._new_id())
        stranger.refs = 1  # held by a process we do not model
        self.nodes[stranger.id] = stranger
        mine, theirs = self.add_hook(stranger, f"grab{stranger.id}"), self.add_hook(node, hook)
        mine.peer, theirs.peer = theirs, mine

    # -- path resolution (ng_path_parse, ng_path2noderef) ----------------------------------

    def resolve(self, here: Node | None, address: str) -> tuple[Node, Hook | None]:
        """The node an address names, and the hook last crossed to reach it."""
        if address.count(":") > 1:
            fail(errno.EINVAL, f"path {address!r}")
        nodename: str | None
        if ":" in address:
            nodename, path = address.split(":")
        else:
            nodename, path = None, address
        if path in ("", "."):
            segments: list[str] = []
        else:
            segments = path.split(".")
            if any(not s for s in segments):
                fail(errno.EINVAL, f"path {address!r}")
        if nodename is None and not segments and path != ".":
            fail(errno.EINVAL, "empty path")
        if nodename is None or nodename == ".":
            if here is None:
                fail(errno.EINVAL, f"relative path {address!r}")
            node = here
        else:
            found = self._name2node(nodename)
            if found is None:
                fail(errno.ENOENT, f"no node {nodename!r}")
            node = found
        last: Hook | None = None
        for segment in segments:
            hook = node.hooks.get(segment)
            if hook is None or hook.peer is None:
                fail(errno.ENOENT, f"no hook {segment!r} on {node.address}")
            last = hook
            node = hook.peer.node
            if not node.valid:
                fail(errno.ENXIO, f"invalid node {node.address}")
        return node, last

    def _name2node(self, name: str) -> Node | None:
        node_id = _decode_id(name)
        if node_id is not None:
            return self.nodes.get(node_id)
        return self.named(name) if name else None

    # -- sockets ---------------------------------------------------------------------------

    def open_control(self) -> SocketNode:
        """socket(PF_NETGRAPH, SOCK_DGRAM, NG_CONTROL): ng_attach_cntl makes the node."""
        node = SocketNode(self, self._new_id())
        node.refs = 1
        self.nodes[node.id] = node
        return node

    def bind(self, node: SocketNode, sockaddr: bytes) -> None:
        """ng_bind: EINVAL unless 4 <= sg_len <= 34 and NUL-terminated; then ng_name_node."""
        sg_len = len(sockaddr)
        if not node.valid:
            fail(errno.ENOTCONN, "socket node is gone")
        if sg_len < 4 or sg_len > SOCKADDR_NG_MAX or sockaddr[2] == 0 or sockaddr[sg_len - 1]:
            fail(errno.EINVAL, "bad netgraph sockaddr")
        self.name_node(node, cstr(sockaddr[2:]))

    def connect_data(self, sockaddr: bytes) -> SocketNode:
        """ng_connect_data: the path's node must be a socket node without a data socket."""
        node, _ = self.resolve(None, sockaddr_path(sockaddr))
        if not isinstance(node, SocketNode):
            fail(errno.EINVAL, f"{node.address} is not a socket node")
        if node.has_data:
            fail(errno.EADDRINUSE, f"{node.address} has a data socket")
        node.has_data = True
        node.refs += 1
        return node

    def close_socket(self, node: SocketNode, *, data: bool) -> None:
        """ng_socket_free_priv: the node goes when its last socket closes."""
        if data:
            node.has_data = False
        node.refs -= 1
        if node.refs <= 0:
            node.deliver = None
            self.destroy(node)

    def data_send(self, node: SocketNode, sockaddr: bytes) -> None:
        """ngd_send: frames go out of one of the node's hooks (the data plane is not modelled)."""
        if not node.valid:
            fail(errno.ENOTCONN, "socket node is gone")
        if len(sockaddr) > SOCKADDR_NG_MAX and self.version >= 15:
            fail(errno.EINVAL, "sg_len > 34")
        hook = sockaddr_path(sockaddr)
        if not hook:
            if len(node.hooks) != 1:
                fail(errno.EDESTADDRREQ, "no hook given")
            return
        if len(hook) >= NG_HOOKSIZ:
            fail(errno.EINVAL, "hook name too long")
        if hook not in node.hooks:
            fail(errno.EHOSTUNREACH, hook)

    def enqueue(self, node: SocketNode, msg: NgMesg, source: Node | None = None) -> None:
        """ngs_rcvmsg: append to the control socket with a ``[id]:`` source, or drop.

        The sockaddr is ``sizeof(struct sockaddr_ng)``: 16 bytes before FreeBSD 15, 34 after.
        sbappendaddr fails when the datagram does not fit the receive buffer, and the
        message is dropped silently (soroverflow).
        """
        if node.deliver is None:
            return
        size = SOCKADDR_NG_MAX if self.version >= 15 else 16
        sender = source if source is not None else node
        sockaddr = make_sockaddr(sender.address, size)
        raw = msg.encode()
        if len(raw) + len(sockaddr) > node.rcvbuf:
            return
        node.deliver(sockaddr, raw)

    def send(self, sender: SocketNode, sockaddr: bytes, raw: bytes) -> None:
        """ngc_send: deliver one message; raise OSError with the node's errno."""
        if not sender.valid:
            fail(errno.ENOTCONN, "socket node is gone")
        if not sockaddr:
            fail(errno.EDESTADDRREQ, "no destination")
        if self.version >= 15 and len(sockaddr) > SOCKADDR_NG_MAX:
            fail(errno.EINVAL, "sg_len > 34")  # FreeBSD 15 ngc_send
        msg = NgMesg.decode(raw)
        if msg.version != NG_VERSION:
            fail(errno.EINVAL, f"NG_VERSION {msg.version}")
        if msg.arglen != len(msg.data):
            fail(errno.EINVAL, f"arglen {msg.arglen} but {len(msg.data)} bytes follow")
        path = cstr(sockaddr[2 : len(sockaddr)])
        target, lasthook = self.resolve(sender, path)
        self.sender = sender
        try:
            reply = self.apply(target, lasthook, msg)
        finally:
            self.sender = None
        if reply is not None:  # NG_RESPOND_MSG: a reply only when the node made one
            self.enqueue(sender, msg.response(reply), target)

    def apply(self, node: Node, lasthook: Hook | None, msg: NgMesg) -> bytes | None:
        """ng_apply_item: generic messages to ng_generic_msg, the rest to the type."""
        if msg.typecookie == NGM_GENERIC_COOKIE and not msg.flags & NGF_RESP:
            return self.generic(node, lasthook, msg)
        return node.rcvmsg(msg)

    def name_node(self, node: Node, name: str) -> None:
        """ng_name_node: EINVAL bad/ID-like name, EADDRINUSE if another node has it."""
        if not _valid_name(name) or _decode_id(name) is not None or len(name) >= NG_NODESIZ:
            fail(errno.EINVAL, f"node name {name!r}")
        other = self.named(name)
        if other is not None and other is not node:
            fail(errno.EADDRINUSE, f"name {name!r} is taken by {other.address}")
        node.name = name

    def nodeinfo(self, node: Node) -> bytes:
        return NODEINFO.pack(
            fixed(node.name, 32), fixed(node.type_name, 32), node.id, len(node.hooks)
        )

    def generic(self, here: Node, lasthook: Hook | None, msg: NgMesg) -> bytes | None:
        cmd = msg.cmd
        if cmd == NGM_SHUTDOWN:
            here.shutdown()
            return None
        if cmd == NGM_MKPEER:
            if msg.arglen != NGM_MKPEER_ARGS.size:
                fail(errno.EINVAL, "mkpeer needs struct ngm_mkpeer")
            type_raw, ours_raw, peer_raw = NGM_MKPEER_ARGS.unpack_from(msg.data)
            ours, peer = cstr(ours_raw), cstr(peer_raw)
            self._race(here, ours)
            if ours in here.hooks:
                fail(errno.EEXIST, f"hook {ours!r} exists")  # before the node is made
            new = self.make_node(cstr(type_raw))
            try:
                self.connect(here, ours, new, peer)
            except OSError:
                self.destroy(new)  # ng_mkpeer: the new node goes on failure
                raise
            return None
        if cmd == NGM_CONNECT:
            if msg.arglen != NGM_CONNECT_ARGS.size:
                fail(errno.EINVAL, "connect needs struct ngm_connect")
            path_raw, ours_raw, peer_raw = NGM_CONNECT_ARGS.unpack_from(msg.data)
            other, _ = self.resolve(here, cstr(path_raw))
            self.connect(here, cstr(ours_raw), other, cstr(peer_raw))
            return None
        if cmd == NGM_NAME:
            if msg.arglen != NGM_NAME_ARGS.size:
                fail(errno.EINVAL, "name needs struct ngm_name")
            self.name_node(here, cstr(msg.data))
            return None
        if cmd == NGM_RMHOOK:
            if msg.arglen != NGM_NAME_ARGS.size:
                fail(errno.EINVAL, "rmhook needs struct ngm_rmhook")
            hook = here.hooks.get(cstr(msg.data))
            if hook is not None:  # an absent hook is not an error (ng_generic_msg)
                self.remove_hook(hook)
            return None
        if cmd == NGM_NODEINFO:
            return self.nodeinfo(here)
        if cmd == NGM_LISTHOOKS:
            # Hooks are inserted at the list head (ng_add_hook): newest first.
            links = b"".join(
                LINKINFO_HOOKS.pack(fixed(h.name, 32), fixed(h.peer.name, 32))
                + self.nodeinfo(h.peer.node)
                for h in reversed(list(here.hooks.values()))
                if h.peer is not None
            )
            return self.nodeinfo(here) + links
        if cmd in (NGM_LISTNODES, NGM_LISTNAMES):
            chosen = [n for n in self.iter_nodes() if cmd == NGM_LISTNODES or n.name]
            return U32.pack(len(chosen)) + b"".join(self.nodeinfo(n) for n in chosen)
        if cmd == NGM_LISTTYPES:
            counts = {t: 0 for t in NODE_TYPES}
            for node in self.nodes.values():
                counts[node.type_name] += 1
            return U32.pack(len(counts)) + b"".join(
                TYPEINFO.pack(fixed(t, 32), n) for t, n in counts.items()
            )
        if cmd == NGM_ASCII2BINARY:
            return self.ascii2binary(here, msg)
        if cmd == NGM_BINARY2ASCII:
            return self.binary2ascii(here, msg)
        if cmd == NGM_TEXT_STATUS:
            fail(errno.ENOSYS, "textstatus is not modelled")
        fail(errno.EINVAL, f"generic command {cmd:#x}")

    def binary2ascii(self, here: Node, msg: NgMesg) -> bytes:
        """NGM_BINARY2ASCII (ng_generic_msg): the message's text, per the cmdlist entry.

        The reply's argument is the message with ``cmdstr`` set to the command's name and
        its data replaced by the NUL-terminated text (``respType`` if NGF_RESP is set).
        ENOSYS for a command no cmdlist has; generic replies other than nodeinfo too, as
        their renderings (node and hook arrays) are not modelled.
        """
        if msg.arglen < NG_MESG_HEADER.size:
            fail(errno.EINVAL, "binary2ascii needs a whole ng_mesg")
        binary = NgMesg.decode(msg.data)
        if binary.arglen > len(binary.data):
            fail(errno.EINVAL, "binary2ascii framing")
        table = GENERIC_COMMANDS if binary.typecookie == NGM_GENERIC_COOKIE else here.commands()
        if binary.typecookie not in (NGM_GENERIC_COOKIE, here.cookie):
            table = ()
        found = next((c for c in table if c.cmd == binary.cmd), None)
        if found is None:
            fail(errno.ENOSYS, f"no command {binary.cmd} for {here.type_name}")
        render = found.render_reply if binary.flags & NGF_RESP else found.render_args
        args = binary.data[: binary.arglen]
        if binary.typecookie == NGM_GENERIC_COOKIE and args and render is _render_none:
            fail(errno.ENOSYS, f"rendering {found.name} is not modelled")
        try:
            text = render(args).encode("latin-1") + b"\0"
        except struct.error:
            fail(errno.EINVAL, f"{found.name}: argument too short")
        ascii_form = NgMesg(
            binary.version,
            len(text),
            binary.cmd,
            binary.flags,
            binary.token,
            binary.typecookie,
            fixed(found.name, NG_CMDSTRSIZ),
            text,
        )
        return ascii_form.encode()

    def ascii2binary(self, here: Node, msg: NgMesg) -> bytes:
        """NGM_ASCII2BINARY (ng_generic_msg): the node's cmdlist, then the generic one."""
        header = NG_MESG_HEADER.size
        if msg.arglen < header + 1:
            fail(errno.EINVAL, "ascii2binary needs a header and text")
        inner = NgMesg.decode(msg.data)
        if inner.arglen < 1 or msg.arglen < header + inner.arglen:
            fail(errno.EINVAL, "ascii2binary framing")
        text = cstr(msg.data[header : header + inner.arglen])
        cmdstr = cstr(inner.cmdstr)
        found = next((c for c in here.commands() if c.name == cmdstr), None)
        generic = next((c for c in GENERIC_COMMANDS if c.name == cmdstr), None)
        if found is not None:
            cookie, cmd = here.cookie, found.cmd
            args = found.parse(text)
        elif generic is not None:
            cookie, cmd = NGM_GENERIC_COOKIE, generic.cmd
            args = _generic_ascii_args(cmd, text)
        else:
            fail(errno.ENOSYS, f"no command {cmdstr!r} for {here.type_name}")
        # The binary header is the ASCII one (version and token 0) with cmd and cookie set.
        binary = NgMesg(
            inner.version, len(args), cmd, inner.flags, inner.token, cookie, inner.cmdstr, args
        )
        return binary.encode()


def eiface_mac(hostuuid: str, ifname: str) -> bytes:
    """ether_gen_addr (if_ethersubr.c, FreeBSD 13+): FreeBSD's OUI 58:9c:fc, locally
    administered, the rest from a hash of ``kern.hostuuid`` and the interface name."""
    digest = hashlib.sha1(f"{hostuuid}-{ifname}".encode()).digest()
    return bytes([0x58 | 0x02, 0x9C, 0xFC]) + digest[:3]
