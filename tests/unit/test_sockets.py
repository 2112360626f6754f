"""The one "is anyone listening" probe of UNIX socket paths (vimaged/sockets.py; tests, unit)."""

from __future__ import annotations

import errno
import socket
import sys
from typing import TYPE_CHECKING

import pytest

from vimaged.sockets import GONE, LIVE, REFUSED, probe_socket, socket_is_live

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def test_no_socket_is_gone(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    assert probe_socket(path) == GONE
    assert not socket_is_live(path)


def test_a_bound_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)
        assert probe_socket(path) == REFUSED
        assert not socket_is_live(path)


def test_a_listener_is_live_and_the_probe_sends_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        assert probe_socket(path) == LIVE
        assert socket_is_live(path)
        conn, _ = server.accept()
        with conn:
            assert conn.recv(1) == b""  # connected, then closed without a byte


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux stalls, FreeBSD refuses")
def test_a_listener_with_a_full_queue_is_live(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as queued:
        server.bind(path)
        server.listen(0)
        queued.connect(path)  # fills the queue of one, never accepted
        assert probe_socket(path, timeout=0.05) == LIVE


def test_the_wrong_kind_of_socket_raises_or_is_not_live(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(path)
        server.listen()
        with pytest.raises(OSError) as caught:  # noqa: PT011  # the errno is checked
            probe_socket(path, socket.SOCK_STREAM)
        assert caught.value.errno == errno.EPROTOTYPE
        assert not socket_is_live(path, socket.SOCK_STREAM)
        assert socket_is_live(path, socket.SOCK_SEQPACKET)
