"""Peer credential decoding: Linux ucred, FreeBSD xucred layouts (tests, unit tier)."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from vimaged.peercred import (
    UCRED,
    XU_NGROUPS,
    XUCRED_PID_OFFSET,
    XUCRED_SIZE,
    Peer,
    parse_gid_list,
    parse_ucred,
    parse_xucred,
    peer_credentials,
)

pytestmark = pytest.mark.unit


def test_ucred_layout() -> None:
    assert UCRED.size == 12
    assert parse_ucred(struct.pack("@iII", 42, 1001, 1002)) == (42, 1001, 1002)
    with pytest.raises(ValueError, match="ucred"):
        parse_ucred(b"\0" * 8)


def test_gid_list() -> None:
    assert parse_gid_list(struct.pack("@3I", 5, 0, 27)) == frozenset({0, 5, 27})
    assert parse_gid_list(b"") == frozenset()
    with pytest.raises(ValueError, match="gid_t"):
        parse_gid_list(b"\0" * 5)


def xucred(version: int, uid: int, groups: list[int], pid: int) -> bytes:
    padded = groups + [0] * (XU_NGROUPS - len(groups))
    head = struct.pack(f"@IIh{XU_NGROUPS}I", version, uid, len(groups), *padded)
    tail = struct.pack("@i", pid)
    return head.ljust(XUCRED_PID_OFFSET, b"\0") + tail.ljust(XUCRED_SIZE - XUCRED_PID_OFFSET, b"\0")


def test_xucred_layout_matches_freebsd_amd64() -> None:
    # <sys/ucred.h>: u_int, uid_t, short (+2 pad), gid_t[16], then a pointer-aligned union.
    assert (XUCRED_PID_OFFSET, XUCRED_SIZE) == (80, 88)


def test_xucred_decodes_uid_groups_and_pid() -> None:
    peer = parse_xucred(xucred(0, 1001, [1001, 5, 0], 4242))
    assert peer == Peer(uid=1001, gid=1001, groups=frozenset({1001, 5, 0}), pid=4242)
    assert peer.in_group(5)
    assert not peer.in_group(6)


@pytest.mark.parametrize(
    ("buf", "field"),
    [
        pytest.param(xucred(1, 0, [0], 1), "version", id="version"),
        pytest.param(xucred(0, 0, [], 1), "cr_ngroups", id="no-groups"),
        pytest.param(xucred(0, 0, [0], 1)[:40], "xucred", id="short"),
    ],
)
def test_xucred_refuses_what_it_cannot_trust(buf: bytes, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse_xucred(buf)


def test_peer_credentials_of_a_socketpair_are_our_own() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        peer = peer_credentials(ours)
    assert (peer.uid, peer.gid, peer.pid) == (os.geteuid(), os.getegid(), os.getpid())
    assert peer.groups == frozenset(os.getgroups())
