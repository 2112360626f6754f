"""vimaged-cni, the pipe: VERSION without the daemon, the socket it picks, what it sends, and
every way of getting no result, against a scripted daemon on a real AF_UNIX socket."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from tests.unit.test_server import unprivileged_python
from vimaged_cni import cli

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.unit


def send(conn: socket.socket, body: dict[str, Any] | bytes) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def receive(conn: socket.socket) -> dict[str, Any]:
    (length,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
    body: dict[str, Any] = json.loads(conn.recv(length, socket.MSG_WAITALL))
    return body


HELLO = {"reply": "hello", "protocol": 1, "daemon": "test", "features": ["stream"]}


class Daemon:
    """A one-connection-at-a-time fake vimaged running ``script`` on each connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.script: Callable[[socket.socket], None] = lambda conn: None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, reply: dict[str, Any] | bytes) -> None:
        """From now on: say hello, read the request, send ``reply``."""

        def script(conn: socket.socket) -> None:
            send(conn, HELLO)
            self.requests.append(receive(conn))
            send(conn, reply)

        self.script = script

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            # a client that went away is its test's business
            with conn, contextlib.suppress(OSError):
                self.script(conn)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(str(tmp_path / "d.sock"))
    yield d
    d.listener.shutdown(socket.SHUT_RDWR)
    d.listener.close()
    d.thread.join(5)


def stdin_for(daemon: Daemon | str, **changes: Any) -> bytes:
    path = daemon if isinstance(daemon, str) else daemon.path
    conf = {"cniVersion": "1.0.0", "name": "lan", "type": "vimaged-cni", "parent": "eth9",
            "socket": path, **changes}  # fmt: skip
    return json.dumps(conf).encode()


ENV = {b"CNI_COMMAND": b"ADD", b"CNI_CONTAINERID": b"c1", b"PATH": b"/bin"}


def failure(out: tuple[int, bytes]) -> dict[str, Any]:
    status, stdout = out
    assert status == 1
    assert stdout.endswith(b"\n")
    error: dict[str, Any] = json.loads(stdout)
    return error


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0", "0.3.1", None])
def test_version_is_answered_without_the_daemon(tmp_path: Path, version: str | None) -> None:
    stdin = stdin_for(str(tmp_path / "absent.sock"), cniVersion=version)
    status, out = cli.run({b"CNI_COMMAND": b"VERSION"}, stdin)
    assert status == 0
    expected = version if version in ("1.0.0", "1.1.0") else "1.1.0"
    assert out == (
        b'{"cniVersion": "%s", "supportedVersions": ["1.0.0", "1.1.0"]}\n' % expected.encode()
    )


def test_the_result_is_written_unchanged_and_the_request_carries_everything(
    daemon: Daemon,
) -> None:
    stdout = b'{"cniVersion": "1.0.0", "interfaces": []}\n\xff'
    daemon.answer(
        {"reply": "cni_result", "exit": 0, "stdout": base64.b64encode(stdout).decode(), "new": 1}
    )
    stdin = stdin_for(daemon)
    environ = {**ENV, b"ODD": b"\xfe=x"}
    assert cli.run(environ, stdin) == (0, stdout)
    [request] = daemon.requests
    assert set(request) == {"op", "environ", "stdin"}
    assert request["op"] == "cni_exec"
    assert base64.b64decode(request["stdin"], validate=True) == stdin
    block = base64.b64decode(request["environ"], validate=True)
    assert block.endswith(b"\0")
    assert sorted(block[:-1].split(b"\0")) == sorted(b"%s=%s" % kv for kv in environ.items())


def test_an_exit_status_of_1_and_its_output(daemon: Daemon) -> None:
    error = b'{"cniVersion": "1.0.0", "code": 7, "msg": "x"}\n'
    daemon.answer({"reply": "cni_result", "exit": 1, "stdout": base64.b64encode(error).decode()})
    assert cli.run(ENV, stdin_for(daemon)) == (1, error)


def test_the_default_socket_when_stdin_names_none(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "DEFAULT_SOCKET", daemon.path)
    daemon.answer({"reply": "cni_result", "exit": 1, "stdout": ""})
    for stdin in (b"{not json", b'["socket"]', b'{"socket": 7}', b""):
        assert cli.run(ENV, stdin) == (1, b"")
    assert [base64.b64decode(r["stdin"]) for r in daemon.requests] == [
        b"{not json",
        b'["socket"]',
        b'{"socket": 7}',
        b"",
    ]


@pytest.mark.parametrize(("command", "code"), [(b"ADD", 11), (b"DEL", 11), (b"STATUS", 50)])
def test_an_absent_daemon_is_try_again_later_or_50(
    tmp_path: Path, command: bytes, code: int
) -> None:
    path = str(tmp_path / "absent.sock")
    error = failure(cli.run({b"CNI_COMMAND": command}, stdin_for(path)))
    assert error == {
        "cniVersion": "1.0.0", "code": code, "details": "is vimaged running?",
        "msg": f"cannot reach vimaged at {path}: {os.strerror(2)}",
    }  # fmt: skip


def test_a_refused_connection_is_try_again_later(tmp_path: Path) -> None:
    path = str(tmp_path / "dead.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # bound, never listening: ECONNREFUSED
    try:
        assert failure(cli.run(ENV, stdin_for(path)))["code"] == 11
    finally:
        dead.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to uid 65534 needs root")
def test_a_socket_the_caller_may_not_use_is_101(tmp_path: Path) -> None:
    python = unprivileged_python()
    if python is None:
        pytest.skip("no Python uid 65534 may run")
    public = tmp_path / "public"
    public.mkdir()
    for p in (public, *public.parents):
        p.chmod(p.stat().st_mode | 0o005)  # traversable by uid 65534; the socket is not
    path = str(public / "root-only.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    os.chmod(path, 0o600)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    try:
        done = subprocess.run(
            [python, "-IS", "-c", "import sys; sys.path.append(sys.argv[1]);"
             "from vimaged_cni.cli import main; main()", root],
            input=stdin_for(path), env={"CNI_COMMAND": "ADD"}, capture_output=True, timeout=30,
            check=False, user=65534, group=65534, extra_groups=[], cwd="/",
        )  # fmt: skip
    finally:
        listener.close()
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {
        "cniVersion": "1.0.0", "code": 101, "msg": f"no permission to use {path}",
        "details": "run as root or in vimaged_group",
    }  # fmt: skip


def test_a_daemon_that_closes_early_is_try_again_later(daemon: Daemon) -> None:
    def close_after_hello(conn: socket.socket) -> None:
        send(conn, HELLO)
        receive(conn)

    for script in (lambda conn: None, close_after_hello):
        daemon.script = script
        error = failure(cli.run(ENV, stdin_for(daemon)))
        assert (error["code"], error["msg"]) == (11, "vimaged closed the connection")
        status = failure(cli.run({b"CNI_COMMAND": b"STATUS"}, stdin_for(daemon)))
        assert status["code"] == 50


def test_a_daemon_that_does_not_answer_in_time(daemon: Daemon) -> None:
    gate = threading.Event()

    def silent(conn: socket.socket) -> None:
        send(conn, HELLO)
        gate.wait(5)

    daemon.script = silent
    environ = {**ENV, b"VIMAGED_CNI_TIMEOUT": b"0.2"}
    error = failure(cli.run(environ, stdin_for(daemon)))
    gate.set()
    assert (error["code"], error["msg"]) == (11, "vimaged did not answer within 0.2 s")


@pytest.mark.parametrize(
    ("reply", "command", "code", "details"),
    [
        ({"code": "not_found", "message": "m"}, b"ADD", 100, "not_found"),
        ({"code": "os_error", "message": "m", "errno": 17, "errno_name": "EEXIST"}, b"ADD", 100,
         "os_error (EEXIST)"),
        ({"code": "permission_denied", "message": "m"}, b"DEL", 100, "permission_denied"),
        ({"code": "busy", "message": "m"}, b"ADD", 11, "busy"),
        ({"code": "shutting_down", "message": "m"}, b"GC", 11, "shutting_down"),
        ({"code": "busy", "message": "m"}, b"STATUS", 50, "busy"),
        ({"code": "invalid_request", "message": "m"}, b"STATUS", 100, "invalid_request"),
    ],
)  # fmt: skip
def test_an_error_reply_is_mapped_to_a_cni_error(
    daemon: Daemon, reply: dict[str, Any], command: bytes, code: int, details: str
) -> None:
    daemon.answer({"reply": "error", **reply})
    error = failure(cli.run({b"CNI_COMMAND": command}, stdin_for(daemon)))
    assert error == {"cniVersion": "1.0.0", "code": code, "msg": "m", "details": details}


def test_an_error_in_place_of_hello(daemon: Daemon) -> None:
    daemon.script = lambda conn: send(conn, {"reply": "error", "code": "busy", "message": "full"})
    assert failure(cli.run(ENV, stdin_for(daemon)))["code"] == 11


@pytest.mark.parametrize(
    ("first", "reply"),
    [
        ({**HELLO, "protocol": 2}, None),
        ({**HELLO, "protocol": "1"}, None),
        ({"reply": "vimages"}, None),
        (b"[1]", None),
        (b"not json", None),
        (HELLO, {"reply": "attachments"}),
        (HELLO, {"reply": "cni_result", "exit": "0", "stdout": ""}),
        (HELLO, {"reply": "cni_result", "exit": 256, "stdout": ""}),
        (HELLO, {"reply": "cni_result", "exit": True, "stdout": ""}),
        (HELLO, {"reply": "cni_result", "exit": 0, "stdout": "e30!"}),
        (HELLO, {"reply": "cni_result", "exit": 0, "stdout": "e30"}),
        (HELLO, {"reply": "error"}),
    ],
)
def test_an_answer_not_understood_is_101(
    daemon: Daemon, first: dict[str, Any] | bytes, reply: dict[str, Any] | None
) -> None:
    def script(conn: socket.socket) -> None:
        send(conn, first)
        if reply is not None:
            receive(conn)
            send(conn, reply)

    daemon.script = script
    error = failure(cli.run(ENV, stdin_for(daemon)))
    assert (error["code"], error["cniVersion"]) == (101, "1.0.0")


def test_a_frame_over_max_frame_is_101_before_its_body(daemon: Daemon) -> None:
    daemon.script = lambda conn: conn.sendall(struct.pack(">I", (1 << 20) + 1))
    error = failure(cli.run(ENV, stdin_for(daemon)))
    assert (error["code"], error["msg"]) == (101, f"vimaged sent a frame of {(1 << 20) + 1} bytes")


def test_sizes_are_refused_before_connecting(daemon: Daemon) -> None:
    big = stdin_for(daemon, pad="x" * cli.MAX_STDIN)
    assert failure(cli.run(ENV, big)) == {
        "cniVersion": "1.1.0", "code": 7, "msg": "network configuration over 262144 bytes"
    }  # fmt: skip
    env = {**ENV, b"HUGE": b"y" * cli.MAX_ENVIRON}
    assert failure(cli.run(env, stdin_for(daemon))) == {
        "cniVersion": "1.0.0", "code": 4, "msg": "environment over 65536 bytes"
    }  # fmt: skip
    assert daemon.connections == 0
    daemon.answer({"reply": "cni_result", "exit": 0, "stdout": ""})
    exact = stdin_for(daemon, pad="")
    exact = exact[:-1] + b" " * (cli.MAX_STDIN - len(exact)) + b"}"
    assert cli.run(ENV, exact) == (0, b"")  # at the limit: sent


def test_main_reads_stdin_and_exits_with_the_status(daemon: Daemon) -> None:
    daemon.answer({"reply": "cni_result", "exit": 1, "stdout": base64.b64encode(b"out").decode()})
    done = subprocess.run(
        [sys.executable, "-IS", "-c", "import sys; sys.path.append(sys.argv[1]);"
         "from vimaged_cni.cli import main; main()", os.getcwd()],
        input=stdin_for(daemon), env={"CNI_COMMAND": "ADD"}, capture_output=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (1, b"out", b"")
    [request] = daemon.requests
    assert b"CNI_COMMAND=ADD\0" in base64.b64decode(request["environ"])


def test_the_plugin_loads_only_the_standard_library() -> None:
    """Like vimagectl: a runtime execs the plugin for every ADD, so it starts fast."""
    code = (
        "import json, sys, vimaged_cni.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('trio', 'structlog', 'msgspec', 'vimaged', 'vimagectl', 'typing'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert json.loads(done.stdout) == []
