"""Unit tier: FreeBSDPlatform.watch_ifnets against a recorded devd, on any OS.

The records are what sys/kern/kern_devctl.c devctl_notify builds for the calls in
sys/net/if.c (``!system=IFNET subsystem=NAME type=TYPE[ DATA]\\n``); a stand-in devd serves
them on a SOCK_SEQPACKET socket, one record per packet as devd.cc notify_clients sends them
(MSG_EOR), and restarts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.platforms import freebsd
from vimaged.platforms.freebsd_devd import check_pipe, parse_devd_event
from vimaged.platforms.ifnet_events import LOST, IfnetEvent

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

GOLDEN = [
    # if_attach_internal: devctl_notify("IFNET", ifp->if_xname, "ATTACH", NULL)
    ("!system=IFNET subsystem=em1 type=ATTACH\n", IfnetEvent(kind="attach", name="em1")),
    # if_detach_internal: devctl_notify("IFNET", ifp->if_xname, "DETACH", NULL)
    ("!system=IFNET subsystem=ue0 type=DETACH\n", IfnetEvent(kind="detach", name="ue0")),
    # if_rename: snprintf(strbuf, ..., "name=%s", new_name); devctl_notify(..., "RENAME", strbuf)
    (
        "!system=IFNET subsystem=em1 type=RENAME name=lan0\n",
        IfnetEvent(kind="rename", name="em1", newname="lan0"),
    ),
    ("!system=IFNET subsystem=vlan5 type=ATTACH\n", IfnetEvent(kind="attach", name="vlan5")),
    # not arrivals: do_link_state_change, rt_addrmsg; other systems; devaddq's device lines
    ("!system=IFNET subsystem=em0 type=LINK_UP\n", None),
    ("!system=IFNET subsystem=em0 type=ADDR_ADD address=192.0.2.1\n", None),
    ("!system=USB subsystem=DEVICE type=ATTACH ugen=ugen0.2\n", None),
    ("!system=ETHERNET subsystem=ue0 type=IFATTACH\n", None),
    ("+uhub1 at bus=0 on usbus1\n", None),
    ("-ure0 at bus=0 on uhub1\n", None),
    # an IFNET event that cannot be read: something happened, so list again
    ("!system=IFNET subsystem=waytoolonginterfacename type=ATTACH\n", LOST),
    ("!system=IFNET type=DETACH\n", LOST),
    ("!system=IFNET subsystem=em1 type=RENAME\n", LOST),
    ("!system=IFNET subsystem=em1 type=RENAME name=a/b\n", LOST),
]


@pytest.mark.parametrize(("record", "expected"), GOLDEN, ids=[g[0].strip() for g in GOLDEN])
def test_devd_records_parse(record: str, expected: IfnetEvent | None) -> None:
    assert parse_devd_event(record) == expected


class FakeDevd:
    """devd's server side of the seqpacket pipe: accept, send records, restart."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener: trio.socket.SocketType | None = None
        self.clients: list[trio.socket.SocketType] = []

    async def start(self) -> None:
        # devd.cc create_socket: unlink, bind, listen, chmod 0666
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        await self.listener.bind(self.path)
        self.listener.listen(4)

    async def accept(self) -> None:
        assert self.listener is not None
        client, _ = await self.listener.accept()
        self.clients.append(client)

    async def send(self, record: str) -> None:
        for client in self.clients:
            await client.send(record.encode())

    def stop(self) -> None:
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self.clients = []
        if self.listener is not None:
            self.listener.close()
            self.listener = None


async def test_events_arrive_and_a_devd_restart_is_a_lost_event(tmp_path: Path) -> None:
    devd = FakeDevd(str(tmp_path / "devd.seqpacket.pipe"))
    await devd.start()
    plat = freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "jails"), devd_socket=devd.path)
    # Real sockets on the real clock (an autojump clock can jump past the kernel's EOF);
    # the first reconnection attempt is FIRST_DELAY (0.1 s) after the loss.
    with trio.fail_after(5):
        async with plat.watch_ifnets() as events:
            await devd.accept()
            await devd.send("!system=IFNET subsystem=em0 type=LINK_UP\n")
            await devd.send("!system=IFNET subsystem=em1 type=ATTACH\n")
            assert await anext(events) == IfnetEvent(kind="attach", name="em1")
            devd.stop()  # service devd restart: the pipe closes, and is made again later
            got: list[IfnetEvent] = []

            async def take_one() -> None:
                got.append(await anext(events))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(take_one)  # reconnects fail meanwhile: ENOENT
                await trio.sleep(0.15)
                assert got == []
                await devd.start()
                await devd.accept()
            assert got == [LOST]
            await devd.send("!system=IFNET subsystem=em1 type=DETACH\n")
            assert await anext(events) == IfnetEvent(kind="detach", name="em1")
    devd.stop()


async def test_no_devd_is_an_oserror_at_subscription(tmp_path: Path) -> None:
    plat = freebsd.FreeBSDPlatform(
        run_dir=str(tmp_path / "jails"), devd_socket=str(tmp_path / "none")
    )
    with pytest.raises(FileNotFoundError):
        async with plat.watch_ifnets():
            pass


def test_a_pipe_not_owned_by_root_or_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.bind(path)
        check_pipe(path, owner=os.geteuid())
        with pytest.raises(PermissionError) as info:
            check_pipe(path, owner=os.geteuid() + 1)
        assert info.value.errno == errno.EPERM
    os.unlink(path)
    with open(path, "w"):
        pass
    with pytest.raises(OSError) as raised:  # noqa: PT011 (the errno is checked)
        check_pipe(path, owner=os.geteuid())
    assert raised.value.errno == errno.ENOTSOCK
