"""Fuzz the control socket with a seeded generator (issue 10 "Tests"; unit tier).

Nested, deep, huge, invalid UTF-8 and wrongly typed frames, valid ones among them; afterwards
the daemon must be alive and answering, and no reply may carry a traceback.
"""

from __future__ import annotations

import json
import random

import pytest
import trio

from tests.unit import test_server
from tests.unit.test_server import TIMEOUT, Conn, start_server
from vimaged.protocol import HEADER, MAX_FRAME, Error, ListVimages, Vimages

pytestmark = pytest.mark.unit

# test_server's fixtures, shared by name.
_close_clients = test_server._close_clients
socket_dir = test_server.socket_dir
socket_path = test_server.socket_path

SEED = 20261204
FRAMES = 1500
OPS = ["start", "stop", "restart", "list", "status", "health", "reload", "version", "nope"]


def _value(rng: random.Random, depth: int) -> object:
    kind = rng.randrange(8 if depth < 40 else 5)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2**64, 1e308, "", "web", "1234"])
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40)))
    if kind == 2:
        return rng.randrange(-(2**70), 2**70)
    if kind == 3:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if kind == 4:
        return "web" * rng.randrange(1, 40)
    if kind in (5, 6):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["op", "names", "all", "timeout", "x"]): _value(rng, depth + 1)}


def _request(rng: random.Random) -> bytes:
    body: dict[str, object] = {"op": rng.choice(OPS)}
    for field in rng.sample(["names", "all", "timeout", "extra"], rng.randrange(3)):
        body[field] = _value(rng, 0)
    return json.dumps(body).encode()


def _frame_body(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:  # deep, of either bracket, sometimes unclosed
        depth = rng.choice([17, 100, 1000, 20000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return opener * depth + b"1" + closer * rng.choice([depth, 0, depth // 2])
    if kind == 1:  # invalid UTF-8 in a string or anywhere
        noise = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 30)))
        return rng.choice([b'{"op": "status", "names": ["' + noise + b'"]}', noise])
    if kind == 2:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    if kind == 3:  # huge: many names, or one long string, or wide arrays
        n = rng.choice([1000, 50000])
        return rng.choice(
            [
                json.dumps({"op": "status", "names": ["web"] * n}).encode(),
                b'{"op": "list", "x": "' + b"a" * (MAX_FRAME - 40) + b'"}',
                b"[" + b"[]," * (MAX_FRAME // 4) + b"[]]",
            ]
        )
    if kind == 4:  # a valid frame cut short, or with a tail
        whole = _request(rng)
        return rng.choice([whole[: rng.randrange(len(whole))], whole + b"}", whole * 2])
    return _request(rng)  # well formed JSON, any op, any field types


async def test_fuzzed_frames_leave_the_daemon_alive_and_answering(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    rng = random.Random(SEED)
    codes: set[str] = set()
    with trio.fail_after(TIMEOUT * 3):
        conn = await Conn.greeted(socket_path)
        for _ in range(FRAMES):
            await conn.send_body(_frame_body(rng))
            reply = await conn.receive()
            assert reply is not None
            if isinstance(reply, Error):
                assert "Traceback" not in reply.message
                codes.add(reply.code)
        # An oversized header closes only its own connection.
        await conn.stream.send_all(HEADER.pack(MAX_FRAME + 1))
        assert isinstance(await conn.receive(), Error)
        assert await conn.receive() is None
        assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)
    assert "invalid_request" in codes
    assert "internal" not in codes
