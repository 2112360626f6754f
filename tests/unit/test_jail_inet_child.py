"""Unit tier: jail_inet's child (what freebsd.configure_in_jail runs): attach, then in order
SIOCSIFMTU, SIOCAIFADDR(_IN6) and RTM_ADD; the first errno is printed and stops it."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import types
from typing import Any, ClassVar

import msgspec
import pytest

from vimaged.platforms import IfnetInfo, _libc, freebsd_ifnet, jail_inet

pytestmark = pytest.mark.unit


class FakeLibc:
    def __init__(self, log: list[tuple[Any, ...]], fail_on: int | None) -> None:
        self.log, self.fail_on = log, fail_on

    def jail_attach(self, jid: int) -> int:
        self.log.append(("jail_attach", jid))
        return 0

    def ioctl(self, fd: int, request: int, address: int) -> int:
        self.log.append(("ioctl", FakeSocket.families[fd], request))
        if request == self.fail_on:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), "ioctl")
        return 0


class FakeSocket:
    families: ClassVar[dict[int, int]] = {}

    def __init__(self, log: list[tuple[Any, ...]], family: int, *args: int) -> None:
        self.log, self.family = log, family
        self.fd = 100 + len(FakeSocket.families)
        FakeSocket.families[self.fd] = family

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def fileno(self) -> int:
        return self.fd

    def shutdown(self, how: int) -> None:
        self.log.append(("shutdown", how))

    def send(self, data: bytes) -> int:
        self.log.append(("rtm", data))
        return len(data)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    fail_on = getattr(request, "param", None)
    monkeypatch.setattr(_libc, "libc", lambda: FakeLibc(calls, fail_on))
    fake = types.SimpleNamespace(
        socket=lambda *a: FakeSocket(calls, *a),
        if_nametoindex=lambda name: 4,
        AF_UNIX=socket.AF_UNIX, AF_INET=socket.AF_INET, AF_INET6=socket.AF_INET6,
        SOCK_DGRAM=socket.SOCK_DGRAM, SOCK_RAW=socket.SOCK_RAW, SHUT_RD=socket.SHUT_RD,
    )  # fmt: skip
    monkeypatch.setattr(jail_inet, "socket", fake)
    return calls


PLAN = jail_inet.plan(
    "eth0", 1400, ["192.0.2.10/24", "2001:db8::10/64"], [("0.0.0.0/0", "192.0.2.1")]
)


def run(plan: object) -> int:
    return jail_inet.apply_in_jail(7, msgspec.json.encode(plan).decode())


def test_the_child_attaches_then_applies_in_order(
    log: list[tuple[Any, ...]], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run(PLAN) == 0
    assert log[:4] == [
        ("jail_attach", 7),
        ("ioctl", socket.AF_UNIX, jail_inet.SIOCSIFMTU),
        ("ioctl", socket.AF_INET, jail_inet.SIOCAIFADDR),
        ("ioctl", socket.AF_INET6, jail_inet.SIOCAIFADDR_IN6),
    ]
    assert log[4:] == [
        ("shutdown", socket.SHUT_RD),
        ("rtm", jail_inet.rtm_add("0.0.0.0/0", "192.0.2.1", 4, 1)),
    ]
    assert capsysbinary.readouterr().out == b""


@pytest.mark.parametrize("log", [jail_inet.SIOCAIFADDR], indirect=True)
def test_the_first_errno_stops_the_child(
    log: list[tuple[Any, ...]], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run(PLAN) == jail_inet.CHILD_ERRNO_STATUS
    assert [c[2] for c in log if c[0] == "ioctl"] == [jail_inet.SIOCSIFMTU, jail_inet.SIOCAIFADDR]
    assert not [c for c in log if c[0] == "rtm"]
    assert msgspec.json.decode(capsysbinary.readouterr().out) == {"errno": errno.EEXIST}


def test_a_bad_plan_is_refused_before_the_attach(
    log: list[tuple[Any, ...]], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    bad = {"ifname": "eth0", "mtu": 20000, "addresses": [], "routes": []}
    assert run(bad) == jail_inet.CHILD_ERRNO_STATUS
    assert log == []
    assert msgspec.json.decode(capsysbinary.readouterr().out) == {"errno": errno.EINVAL}


def test_ifreq_mtu_slot_is_ifru_mtu() -> None:
    req = jail_inet.ifreq_mtu("eth0", 9000)
    assert ctypes.c_int.from_buffer_copy(bytes(req), 16).value == 9000


@pytest.mark.parametrize(("found", "status"), [("02:00:00:00:00:01", 0), ("02:00:00:00:00:99", 3)])
def test_the_child_configures_only_the_interface_with_our_mac(
    log: list[tuple[Any, ...]],
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    found: str,
    status: int,
) -> None:
    """The jail's root may have renamed ours and given eth0 to another interface."""
    monkeypatch.setattr(freebsd_ifnet, "ifnets_here", lambda: [IfnetInfo(name="eth0", mac=found)])
    plan = jail_inet.plan("eth0", 1400, [], [], mac="02:00:00:00:00:01")
    assert run(plan) == status
    ioctls = [c for c in log if c[0] == "ioctl"]
    if status:
        assert ioctls == []
        assert msgspec.json.decode(capsysbinary.readouterr().out) == {"errno": errno.ENXIO}
    else:
        assert ioctls == [("ioctl", socket.AF_UNIX, jail_inet.SIOCSIFMTU)]
