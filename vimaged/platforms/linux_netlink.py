"""Kernel boundary of the linux platform: the few rtnetlink link messages vimaged sends.

One :class:`Rtnl` is one ``NETLINK_ROUTE`` socket, bound to the network namespace it was
created in. Only link messages (``RTM_NEWLINK``/``DELLINK``/``GETLINK``/``SETLINK``) and an
address dump (``RTM_GETADDR``) are spoken; the layouts are those of ``<linux/netlink.h>``,
``<linux/rtnetlink.h>``, ``<linux/if_link.h>`` and ``<linux/if_addr.h>``. Kernel errors arrive
as ``OSError`` with the kernel's errno. Calls block; the platform runs them under
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import threading
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterator

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_GETADDR = 22

IFA_ADDRESS = 1
IFA_LOCAL = 2
"""On a point-to-point link IFA_ADDRESS is the peer's; IFA_LOCAL, when present, is ours."""
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_GROUP = 27
"""The device group, a u32 that rtnl_create_link applies from the RTM_NEWLINK that creates a
link (IFLA_IFALIAS is applied only by a later RTM_SETLINK): net/core/rtnetlink.c."""
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_MACVLAN_MODE = 1
MACVLAN_MODE_BRIDGE = 4
VETH_INFO_PEER = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

IFF_UP = 0x1
ARPHRD_ETHER = 1

NLMSGHDR = struct.Struct("=IHHII")
"""``struct nlmsghdr { u32 nlmsg_len; u16 nlmsg_type, nlmsg_flags; u32 nlmsg_seq, nlmsg_pid; }``"""
IFINFOMSG = struct.Struct("=BxHiII")
"""``struct ifinfomsg { u8 family, pad; u16 type; int index; u32 flags, change; }``"""
IFADDRMSG = struct.Struct("=BBBBI")
"""``struct ifaddrmsg { u8 ifa_family, ifa_prefixlen, ifa_flags, ifa_scope; u32 ifa_index; }``"""
RTATTR = struct.Struct("=HH")
"""``struct rtattr { unsigned short rta_len, rta_type; }``, payload padded to 4 bytes."""
NLMSGERR = struct.Struct("=i")
"""The ``int error`` that starts ``struct nlmsgerr``; 0 is an acknowledgement."""


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """One ``RTM_NEWLINK`` reply, reduced to what vimaged reads."""

    index: int
    name: str
    type: int
    flags: int
    address: bytes | None = None
    kind: str | None = None
    alias: str | None = None
    master: int | None = None
    group: int = 0
    link: int | None = None
    """IFLA_LINK: the lower device of a macvlan (or the peer of a veth), by index."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One ``rtattr``, padded."""
    raw = RTATTR.pack(RTATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def parse_attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            break
        yield kind & NLA_TYPE_MASK, data[offset + RTATTR.size : offset + length]
        offset += _align(length)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def parse_link(payload: bytes) -> Link:
    _family, if_type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    fields: dict[str, object] = {"index": index, "type": if_type, "flags": flags, "name": ""}
    for kind, value in parse_attrs(payload[IFINFOMSG.size :]):
        if kind == IFLA_IFNAME:
            fields["name"] = _text(value)
        elif kind == IFLA_ADDRESS:
            fields["address"] = value
        elif kind == IFLA_IFALIAS:
            fields["alias"] = _text(value)
        elif kind == IFLA_MASTER:
            fields["master"] = struct.unpack("=I", value)[0]
        elif kind == IFLA_GROUP:
            fields["group"] = struct.unpack("=I", value)[0]
        elif kind == IFLA_LINK:
            fields["link"] = struct.unpack("=I", value)[0]
        elif kind == IFLA_LINKINFO:
            for info_kind, info in parse_attrs(value):
                if info_kind == IFLA_INFO_KIND:
                    fields["kind"] = _text(info)
    return msgspec.convert(fields, Link)


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """One ``RTM_NEWADDR`` reply: an address of the link ``index``."""

    index: int
    family: int
    prefixlen: int
    address: bytes

    def text(self) -> str:
        """``192.0.2.10/24``, ``fe80::1/64``."""
        return f"{socket.inet_ntop(self.family, self.address)}/{self.prefixlen}"


def parse_address(payload: bytes) -> Address | None:
    """An ``RTM_NEWADDR`` payload; None for a family other than IPv4 and IPv6."""
    family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    found: dict[int, bytes] = dict(parse_attrs(payload[IFADDRMSG.size :]))
    raw = found.get(IFA_LOCAL, found.get(IFA_ADDRESS))
    if raw is None:
        return None
    return Address(index=index, family=family, prefixlen=prefixlen, address=raw)


class Rtnl:
    """A ``NETLINK_ROUTE`` socket; thread-safe (one request at a time)."""

    _sock: socket.socket
    _lock: threading.Lock
    _seq: int

    def __init__(self) -> None:
        if sys.platform != "linux":  # also keeps mypy --platform freebsd off Linux-only names
            raise OSError(errno.EAFNOSUPPORT, "rtnetlink exists only on Linux")
        # Created by the caller's thread, so it belongs to that thread's network namespace.
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        self._sock.bind((0, 0))
        self._lock = threading.Lock()
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(self, msg_type: int, flags: int, body: bytes, subject: str) -> list[bytes]:
        """Send one message; return the payloads of the replies, raise OSError on a NACK."""
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        if not dump:
            flags |= NLM_F_ACK
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seq = self._seq
            header = NLMSGHDR.pack(
                NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | flags, seq, 0
            )
            self._sock.send(header + body)
            replies: list[bytes] = []
            while True:
                data = self._sock.recv(1 << 16)
                offset = 0
                while offset + NLMSGHDR.size <= len(data):
                    length, kind, _flags, reply_seq, _pid = NLMSGHDR.unpack_from(data, offset)
                    payload = data[offset + NLMSGHDR.size : offset + length]
                    offset += _align(length)
                    if reply_seq != seq:
                        continue  # a late reply to an earlier, interrupted request
                    if kind == NLMSG_DONE:
                        return replies
                    if kind == NLMSG_ERROR:
                        (error,) = NLMSGERR.unpack_from(payload)
                        if error:
                            raise OSError(-error, os.strerror(-error), subject)
                        return replies
                    replies.append(payload)

    def dump_links(self) -> list[Link]:
        return [parse_link(p) for p in self.request(RTM_GETLINK, NLM_F_DUMP, ifinfo(), "links")]

    def dump_addresses(self) -> list[Address]:
        """Every IPv4 and IPv6 address in this namespace, in the kernel's order."""
        body = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        replies = self.request(RTM_GETADDR, NLM_F_DUMP, body, "addresses")
        return [a for a in map(parse_address, replies) if a is not None]

    def get_link(self, name: str) -> Link:
        """The link called ``name``; ENODEV if there is none in this namespace."""
        body = ifinfo() + attr(IFLA_IFNAME, cstr(name))
        (reply,) = self.request(RTM_GETLINK, 0, body, name)
        return parse_link(reply)

    def new_link(self, body: bytes, subject: str) -> None:
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, subject)

    def set_link(self, body: bytes, subject: str) -> None:
        self.request(RTM_SETLINK, 0, body, subject)

    def del_link(self, index: int, subject: str) -> None:
        self.request(RTM_DELLINK, 0, ifinfo(index), subject)
