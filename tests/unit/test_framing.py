"""The one length-prefix framing (vimaged/framing.py) and each of its readers (tests, unit)."""

from __future__ import annotations

import socket

import pytest

from vimagectl.client import Client, ClientError, _frame
from vimaged import framing, protocol
from vimaged.simhost import rpc

pytestmark = pytest.mark.unit


def test_a_frame_is_its_length_then_its_body() -> None:
    framed = framing.frame(b'{"op":"list"}')
    assert framed == b"\0\0\0\x0d" + b'{"op":"list"}'
    assert framing.frame_length(framed[: framing.HEADER.size]) == 13


def test_the_cap_holds_in_both_directions() -> None:
    assert framing.frame_length(framing.HEADER.pack(framing.MAX_FRAME)) == framing.MAX_FRAME
    with pytest.raises(ValueError, match="MAX_FRAME"):
        framing.frame_length(framing.HEADER.pack(framing.MAX_FRAME + 1))
    assert len(framing.frame(bytes(framing.MAX_FRAME))) == framing.MAX_FRAME + 4
    with pytest.raises(ValueError, match="MAX_FRAME"):
        framing.frame(bytes(framing.MAX_FRAME + 1))


def test_the_sim_rpc_caps_what_it_sends() -> None:
    """An oversized sim reply is refused at the sender (the sim host answers EMSGSIZE)."""
    huge = rpc.Failed(errno=5, message="x" * framing.MAX_FRAME)
    with pytest.raises(ValueError, match="MAX_FRAME"):
        rpc.frame(huge)
    assert rpc.frame(rpc.Failed(errno=5, message="x"))[4:] == rpc.ENCODER.encode(
        rpc.Failed(errno=5, message="x")
    )


def test_vimagectl_refuses_an_oversized_reply_from_its_header() -> None:
    ours, daemons = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, daemons:
        client = Client("/nonexistent", 5.0)
        client._sock = ours  # as connect() leaves it
        daemons.sendall(framing.HEADER.pack(framing.MAX_FRAME + 1))  # and no body at all
        with pytest.raises(ClientError) as caught:
            client._receive(None)
        assert caught.value.code == "bad_frame"
        client._sock = None


def test_vimagectl_never_sends_an_oversized_request() -> None:
    names = [f"n{i:030d}" for i in range(framing.MAX_FRAME // 32)]  # 1 MiB of names and more
    with pytest.raises(ClientError) as caught:
        _frame({"op": "status", "names": names, "containers": []})
    assert caught.value.code == "bad_request"
    assert (
        len(_frame({"op": "status", "names": names[:1000], "containers": []})) > framing.HEADER.size
    )


def test_the_daemon_encodes_through_the_one_framing() -> None:
    framed = protocol.frame(protocol.ListVimages())
    assert framing.frame_length(framed[:4]) == len(framed) - 4
