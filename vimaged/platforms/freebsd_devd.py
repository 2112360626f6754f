"""Kernel boundary, FreeBSD: interface events from devd(8)'s seqpacket pipe.

The kernel queues one line per event on /dev/devctl (sys/kern/kern_devctl.c devctl_notify:
``!system=SYSTEM subsystem=SUBSYSTEM type=TYPE[ DATA]\\n``); devd reads them and sends each
one, as one ``MSG_EOR`` record, to every client of ``/var/run/devd.seqpacket.pipe``
(sbin/devd/devd.cc notify_clients), a ``SOCK_SEQPACKET`` socket it creates mode 0666 owned by
root (create_socket). sys/net/if.c notifies, for system ``IFNET`` and the interface name as
subsystem:

- ``ATTACH`` from if_attach_internal and ``DETACH`` from if_detach_internal, both only
  ``if (IS_DEFAULT_VNET(curvnet))``: the host's vnet. if_vmove goes through both, so a NIC
  moved into a jail is a DETACH and one coming home an ATTACH;
- ``RENAME`` with data ``name=NEW`` from if_rename, in every vnet (no vnet test there);
- ``LINK_UP``/``LINK_DOWN`` (do_link_state_change) and ``ADDR_ADD``/``ADDR_DEL``
  (rt_addrmsg): not arrivals, ignored here.

devd drops a client that does not keep up (notify_clients closes it "at the first sign of
trouble"), and devctl drops its oldest queued event when full (devctl_alloc_dei): both are
losses, the first seen as EOF, so the watcher reconnects and lists again.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from vimaged.platforms.ifnet_events import LOST, IfnetEvent, valid_ifname

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

DEVD_SEQPACKET_PIPE = "/var/run/devd.seqpacket.pipe"
DEVCTL_MAXBUF = 1024
"""sys/kern/kern_devctl.c: the size of one event's buffer (dei_data); a record is no longer."""

_TYPES = {"ATTACH": "attach", "DETACH": "detach", "RENAME": "rename"}


def parse_devd_event(record: str) -> IfnetEvent | None:
    """The interface event in one devd record; ``None`` for anything else.

    A record that says ``system=IFNET`` but cannot be read (no or a bad interface name, a
    RENAME without a valid ``name=``) is :data:`LOST`: an event was there and is not known.
    """
    line = record.strip("\n")
    if not line.startswith("!"):
        return None  # "+" attach / "-" detach / "?" nomatch of a device, not an ifnet
    fields: dict[str, str] = {}
    for item in line[1:].split(" "):
        key, sep, value = item.partition("=")
        if sep and key not in fields:
            fields[key] = value
    if fields.get("system") != "IFNET":
        return None
    kind = _TYPES.get(fields.get("type", ""))
    if kind is None:
        return None  # LINK_UP, ADDR_ADD, ...
    name = fields.get("subsystem", "")
    if not valid_ifname(name):
        return LOST
    if kind == "rename":
        newname = fields.get("name", "")
        if not valid_ifname(newname):
            return LOST
        return IfnetEvent(kind="rename", name=name, newname=newname)
    return IfnetEvent(kind="attach" if kind == "attach" else "detach", name=name)


def check_pipe(path: str, *, owner: int = 0) -> None:
    """Refuse a pipe that is not a socket owned by ``owner`` (root: devd creates it so).

    Anyone who could plant a socket there could feed the daemon invented arrivals.
    """
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.ENOTSOCK, "not a socket", path)
    if st.st_uid != owner:
        raise OSError(errno.EPERM, f"owned by uid {st.st_uid}, not {owner}", path)


@asynccontextmanager
async def open_devd_source(
    path: str = DEVD_SEQPACKET_PIPE, *, owner: int = 0
) -> AsyncIterator[AsyncIterator[IfnetEvent]]:
    """One connection to devd's pipe; its iterator ends when devd closes it.

    Raises ``OSError`` (ENOENT, ECONNREFUSED: devd is not running) if it cannot connect.
    Cancellation: safe; the socket is closed on the way out.
    """
    check_pipe(path, owner=owner)  # one lstat in /var/run: no thread (and no clock jump)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        await sock.connect(path)

        async def records() -> AsyncGenerator[IfnetEvent, None]:
            while True:
                data = await sock.recv(DEVCTL_MAXBUF + 1)
                if not data:
                    return  # devd restarted, or dropped us as too slow
                # One record per event; split anyway, a stream client may get several.
                for line in data.decode("utf-8", errors="replace").splitlines():
                    event = parse_devd_event(line)
                    if event is not None:
                        yield event

        async with aclosing(records()) as generator:
            yield generator
    finally:
        sock.close()
