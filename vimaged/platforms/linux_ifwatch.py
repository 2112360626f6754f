"""Kernel boundary, Linux: interface events of the host namespace from rtnetlink.

A ``NETLINK_ROUTE`` socket bound to the multicast group ``RTNLGRP_LINK`` (``nl_groups``
bit ``RTMGRP_LINK``, <linux/rtnetlink.h>) receives an ``RTM_NEWLINK`` for every link that
appears and for every change of one (flags, name, ...), and an ``RTM_DELLINK`` for every link
that goes (net/core/rtnetlink.c rtmsg_ifinfo, from netdev_register/unregister and
dev_change_name; moving a link to another namespace is an unregister here and a register
there). The name of each index is remembered, seeded by a dump taken after joining the group
so nothing falls between, to tell an arrival and a rename from a flag change. A socket that
overflows gets ENOBUFS from recv (netlink_overrun): a ``lost`` event, and a fresh dump.
Messages are decoded with :mod:`linux_netlink`'s codec.
"""

from __future__ import annotations

import errno
import socket
import sys
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from vimaged.platforms import linux_kernel as kernel
from vimaged.platforms import linux_netlink as nl
from vimaged.platforms.ifnet_events import LOST, IfnetEvent, valid_ifname

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

RTMGRP_LINK = 0x1
"""``1 << (RTNLGRP_LINK - 1)``: the legacy group mask bind(2) takes in ``nl_groups``."""
RECV_SIZE = 1 << 16


def link_events(data: bytes, names: dict[int, str]) -> list[IfnetEvent]:
    """The events in one datagram of link messages; ``names`` (index → name) is updated."""
    events: list[IfnetEvent] = []
    offset = 0
    while offset + nl.NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = nl.NLMSGHDR.unpack_from(data, offset)
        if length < nl.NLMSGHDR.size:
            break
        payload = data[offset + nl.NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3
        if kind not in (nl.RTM_NEWLINK, nl.RTM_DELLINK) or len(payload) < nl.IFINFOMSG.size:
            continue
        link = nl.parse_link(payload)
        known = names.get(link.index)
        if kind == nl.RTM_DELLINK:
            names.pop(link.index, None)
            name = known or link.name
            if valid_ifname(name):
                events.append(IfnetEvent(kind="detach", name=name))
            continue
        if not valid_ifname(link.name):
            events.append(LOST)
            continue
        names[link.index] = link.name
        if known is None:
            events.append(IfnetEvent(kind="attach", name=link.name))
        elif known != link.name:
            events.append(IfnetEvent(kind="rename", name=known, newname=link.name))
    return events


def _open_group_socket() -> socket.socket:
    if sys.platform != "linux":  # keeps mypy --platform freebsd off Linux-only names
        raise OSError(errno.EAFNOSUPPORT, "rtnetlink exists only on Linux")
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, nl.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_in(host_fd: int | None) -> tuple[socket.socket, nl.Rtnl]:
    """The group socket and a request socket, both in the host namespace."""

    def both() -> tuple[socket.socket, nl.Rtnl]:
        group = _open_group_socket()
        try:
            return group, nl.Rtnl()
        except BaseException:
            group.close()
            raise

    if host_fd is None:
        return both()
    return kernel.in_netns(host_fd, "host namespace", both)


def _dump_names(rtnl: nl.Rtnl) -> dict[int, str]:
    return {link.index: link.name for link in rtnl.dump_links()}


@asynccontextmanager
async def open_rtnl_link_source(
    host_fd: int | None = None,
) -> AsyncIterator[AsyncIterator[IfnetEvent]]:
    """Link events of the namespace open as ``host_fd`` (``None``: this thread's own).

    Cancellation: safe; both sockets are closed on the way out.
    """
    group, rtnl = await trio.to_thread.run_sync(_open_in, host_fd)
    try:
        names = await trio.to_thread.run_sync(_dump_names, rtnl)

        async def events() -> AsyncGenerator[IfnetEvent, None]:
            nonlocal names
            while True:
                await trio.lowlevel.wait_readable(group)
                try:
                    data = group.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    names = await trio.to_thread.run_sync(_dump_names, rtnl)
                    yield LOST
                    continue
                for event in link_events(data, names):
                    yield event

        async with aclosing(events()) as generator:
            yield generator
    finally:
        trio.lowlevel.notify_closing(group)
        group.close()
        rtnl.close()
