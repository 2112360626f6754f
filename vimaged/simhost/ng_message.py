"""Simulated host layer: netgraph message structs of the simulated FreeBSD kernel.

Written from ``<netgraph/ng_message.h>``, ``ng_socket.h``, ``ng_bridge.h``, ``ng_ether.h`` and
``ng_eiface.h`` (layouts verified in shared/reference/netgraph-abi.md §2); deliberately shares
nothing with ``vimaged.netgraph``, so a mistake in the binding cannot hide behind the same
mistake here.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from typing import NoReturn

AF_NETGRAPH = 32
NG_VERSION = 8
NGF_RESP = 0x00000001
NG_NODESIZ = NG_HOOKSIZ = NG_TYPESIZ = NG_CMDSTRSIZ = 32
NG_PATHSIZ = 512
IFNAMSIZ = 16
"""sys/net/if.h. A deliberate copy of ``vimaged.names.IFNAMSIZ``: the sim models the kernel and
imports none of the product's rules, so a wrong rule there cannot hide in both ends."""
SOCKADDR_NG_MAX = NG_NODESIZ + 2
"""``sg_len`` limit of FreeBSD 15's ngc_send/ng_bind (``sizeof(struct sockaddr_ng)``)."""

# The numbers below repeat vimaged/netgraph/abi.py on purpose (see the module docstring).
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
