"""Netgraph binding, ABI layer: constants, cookies, command numbers and the message frame.

Values from ``shared/reference/netgraph-abi.md`` §1 (``<netgraph/ng_message.h>``,
``ng_socket.h``, ``ng_ether.h``, ``ng_eiface.h``, ``ng_bridge.h``). Pure bytes in and out:
no syscalls, so it imports and runs anywhere. Requests are framed exactly as libnetgraph's
``NgSendMsg`` frames them; the golden vectors hold this module to those bytes.
"""

from __future__ import annotations

import ctypes

import msgspec

from vimaged.netgraph.structs import NG_CMDSTRSIZ, NgMesgHeader

AF_NETGRAPH = 32
NG_DATA = 1
NG_CONTROL = 2
NG_VERSION = 8
NGF_ORIG = 0x00000000
NGF_RESP = 0x00000001
NGM_READONLY = 0x10000000
NGM_HASREPLY = 0x20000000
NGSA_OVERHEAD = 2
"""``offsetof(struct sockaddr_ng, sg_data)``."""
SOCKADDR_NG_SIZES = (16, 34)
"""``sizeof(struct sockaddr_ng)`` on FreeBSD 13/14 and on main: a reply's source address."""
MAX_ADDRESS = 31
"""Characters of a path main's ``ngc_send`` accepts (``sg_len <= 34``); 13/14 take 511."""

# Generic messages, <netgraph/ng_message.h>.
NGM_GENERIC_COOKIE = 1137070366
NGM_SHUTDOWN = 1
NGM_MKPEER = 2
NGM_CONNECT = 3
NGM_NAME = 4
NGM_RMHOOK = 5
NGM_NODEINFO = 6 | NGM_READONLY | NGM_HASREPLY
NGM_LISTHOOKS = 7 | NGM_READONLY | NGM_HASREPLY
NGM_LISTNAMES = 8 | NGM_READONLY | NGM_HASREPLY
NGM_LISTNODES = 9 | NGM_READONLY | NGM_HASREPLY
NGM_LISTTYPES = 10 | NGM_READONLY | NGM_HASREPLY
NGM_TEXT_STATUS = 11 | NGM_READONLY | NGM_HASREPLY
NGM_BINARY2ASCII = 12 | NGM_READONLY | NGM_HASREPLY
NGM_ASCII2BINARY = 13 | NGM_READONLY | NGM_HASREPLY
NGM_TEXT_CONFIG = 14

# ng_socket, <netgraph/ng_socket.h>.
NG_SOCKET_NODE_TYPE = "socket"
NGM_SOCKET_COOKIE = 851601233
NGM_SOCK_CMD_NOLINGER = 1
NGM_SOCK_CMD_LINGER = 2

# ng_ether, <netgraph/ng_ether.h>.
NG_ETHER_NODE_TYPE = "ether"
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
NG_ETHER_HOOK_LOWER = "lower"
NG_ETHER_HOOK_UPPER = "upper"
NG_ETHER_HOOK_ORPHAN = "orphans"

# ng_eiface, <netgraph/ng_eiface.h>.
NG_EIFACE_NODE_TYPE = "eiface"
NGM_EIFACE_COOKIE = 948105892
NGM_EIFACE_GET_IFNAME = 1
NGM_EIFACE_GET_IFADDRS = 2
NGM_EIFACE_SET = 3
NG_EIFACE_HOOK_ETHER = "ether"

# ng_bridge, <netgraph/ng_bridge.h>.
NG_BRIDGE_NODE_TYPE = "bridge"
NGM_BRIDGE_COOKIE = 1569321993
NGM_BRIDGE_COOKIE_OLD = 967239368
"""FreeBSD <= 12.1 (``NGM_BRIDGE_COOKIE_TBL`` in the 13-era header)."""
NGM_BRIDGE_SET_CONFIG = 1
NGM_BRIDGE_GET_CONFIG = 2
NGM_BRIDGE_RESET = 3
NGM_BRIDGE_GET_STATS = 4
NGM_BRIDGE_CLR_STATS = 5
NGM_BRIDGE_GETCLR_STATS = 6
NGM_BRIDGE_GET_TABLE = 7
NGM_BRIDGE_SET_PERSISTENT = 8
NGM_BRIDGE_MOVE_HOST = 9
NG_BRIDGE_HOOK_LINK_PREFIX = "link"
NG_BRIDGE_HOOK_UPLINK_PREFIX = "uplink"

_U32 = 1 << 32
HEADER_SIZE = ctypes.sizeof(NgMesgHeader)


class NgMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded ``struct ng_mesg``: its header fields and ``arglen`` bytes of data."""

    version: int
    arglen: int
    cmd: int
    flags: int
    token: int
    typecookie: int
    cmdstr: str
    data: bytes


def _u32(value: int, what: str) -> int:
    if not 0 <= value < _U32:
        raise ValueError(f"{what} {value} does not fit in u_int32_t")
    return value


def default_cmdstr(cmd: int) -> str:
    """libnetgraph's ``snprintf(cmdstr, "cmd%d", cmd)``: cmd printed as a signed int."""
    return f"cmd{ctypes.c_int32(cmd).value}"


def pack_message(
    cookie: int,
    cmd: int,
    args: bytes,
    *,
    token: int,
    flags: int = 0,
    cmdstr: str | None = None,
) -> bytes:
    """Frame one ``struct ng_mesg`` as ``NgSendMsg`` does: header (version 8) then ``args``.

    ``cmdstr`` None gives libnetgraph's ``"cmd%d"``; a given one must fit in 31 bytes.
    """
    text = (default_cmdstr(cmd) if cmdstr is None else cmdstr).encode("ascii")
    if len(text) >= NG_CMDSTRSIZ or b"\0" in text:
        raise ValueError(f"cmdstr {cmdstr!r} must be at most 31 characters without NUL")
    header = NgMesgHeader(
        version=NG_VERSION,
        arglen=_u32(len(args), "arglen"),
        cmd=_u32(cmd, "cmd"),
        flags=_u32(flags, "flags"),
        token=_u32(token, "token"),
        typecookie=_u32(cookie, "typecookie"),
        cmdstr=text,
    )
    return bytes(header) + args


def unpack_message(message: bytes) -> NgMessage:
    """Decode one ``struct ng_mesg``; ``ValueError`` if it is shorter than it says."""
    if len(message) < HEADER_SIZE:
        raise ValueError(f"ng_mesg of {len(message)} bytes is shorter than its 56-byte header")
    header = NgMesgHeader.from_buffer_copy(message)
    if len(message) < HEADER_SIZE + header.arglen:
        raise ValueError(
            f"ng_mesg arglen {header.arglen} exceeds the {len(message) - HEADER_SIZE} bytes sent"
        )
    return NgMessage(
        version=header.version,
        arglen=header.arglen,
        cmd=header.cmd,
        flags=header.flags,
        token=header.token,
        typecookie=header.typecookie,
        cmdstr=header.cmdstr.decode("ascii", "replace"),
        data=message[HEADER_SIZE : HEADER_SIZE + header.arglen],
    )


def pack_sockaddr(path: str) -> bytes:
    """A ``sockaddr_ng`` exactly as long as ``path``: ``sg_len = 2 + strlen(path) + 1``.

    The kernel reads ``socklen`` bytes and takes the path up to ``sg_len``, so the address
    is variable-length whichever size ``sg_data`` is declared with.
    """
    raw = path.encode("ascii")
    if not raw or b"\0" in raw:
        raise ValueError(f"netgraph path {path!r} must be non-empty and without NUL")
    sg_len = NGSA_OVERHEAD + len(raw) + 1
    if sg_len > 255:
        raise ValueError(f"netgraph path {path!r} is longer than sg_len (u_char) can say")
    return bytes([sg_len, AF_NETGRAPH]) + raw + b"\0"


def unpack_sockaddr(sockaddr: bytes) -> str:
    """The path text of a ``sockaddr_ng`` of any size (16, 34 or exact), up to its first NUL."""
    if len(sockaddr) < NGSA_OVERHEAD or sockaddr[1] != AF_NETGRAPH:
        raise ValueError(f"not a netgraph sockaddr: {sockaddr[:4].hex()}")
    data = sockaddr[NGSA_OVERHEAD:]
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode("ascii", "replace")


COMMAND_NAMES: dict[tuple[int, int], str] = {
    # The ASCII names of the node types' cmdlists (ng_base.c, ng_ether.c, ...), for errors.
    (NGM_GENERIC_COOKIE, NGM_SHUTDOWN): "shutdown",
    (NGM_GENERIC_COOKIE, NGM_MKPEER): "mkpeer",
    (NGM_GENERIC_COOKIE, NGM_CONNECT): "connect",
    (NGM_GENERIC_COOKIE, NGM_NAME): "name",
    (NGM_GENERIC_COOKIE, NGM_RMHOOK): "rmhook",
    (NGM_GENERIC_COOKIE, NGM_NODEINFO): "nodeinfo",
    (NGM_GENERIC_COOKIE, NGM_LISTHOOKS): "listhooks",
    (NGM_GENERIC_COOKIE, NGM_LISTNAMES): "listnames",
    (NGM_GENERIC_COOKIE, NGM_LISTNODES): "listnodes",
    (NGM_GENERIC_COOKIE, NGM_LISTTYPES): "listtypes",
    (NGM_GENERIC_COOKIE, NGM_BINARY2ASCII): "binary2ascii",
    (NGM_GENERIC_COOKIE, NGM_ASCII2BINARY): "ascii2binary",
    (NGM_SOCKET_COOKIE, NGM_SOCK_CMD_NOLINGER): "nolinger",
    (NGM_SOCKET_COOKIE, NGM_SOCK_CMD_LINGER): "linger",
    (NGM_ETHER_COOKIE, NGM_ETHER_GET_IFNAME): "getifname",
    (NGM_ETHER_COOKIE, NGM_ETHER_GET_ENADDR): "getenaddr",
    (NGM_ETHER_COOKIE, NGM_ETHER_GET_PROMISC): "getpromisc",
    (NGM_ETHER_COOKIE, NGM_ETHER_SET_PROMISC): "setpromisc",
    (NGM_ETHER_COOKIE, NGM_ETHER_GET_AUTOSRC): "getautosrc",
    (NGM_ETHER_COOKIE, NGM_ETHER_SET_AUTOSRC): "setautosrc",
    (NGM_EIFACE_COOKIE, NGM_EIFACE_GET_IFNAME): "getifname",
    (NGM_EIFACE_COOKIE, NGM_EIFACE_SET): "set",
    **{
        (cookie, cmd): name
        for cookie in (NGM_BRIDGE_COOKIE, NGM_BRIDGE_COOKIE_OLD)
        for cmd, name in (
            (NGM_BRIDGE_SET_CONFIG, "setconfig"),
            (NGM_BRIDGE_GET_CONFIG, "getconfig"),
            (NGM_BRIDGE_GET_STATS, "getstats"),
            (NGM_BRIDGE_GET_TABLE, "gettable"),
            (NGM_BRIDGE_SET_PERSISTENT, "setpersistent"),
        )
    },
}


def command_name(cookie: int, cmd: int) -> str:
    """The ASCII name of a command (``"mkpeer"``), or libnetgraph's ``"cmd%d"``."""
    return COMMAND_NAMES.get((cookie, cmd), default_cmdstr(cmd))
