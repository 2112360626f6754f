"""Both vimaged-cni clients (vimaged-cni.c and the Python fallback) against a fake daemon.

The client is compiled once per session with the strict flags of the brief; a missing ``cc``
fails (scripts/setup.sh installs gcc and libc6-dev). Each test runs the binary as a runtime
does (environment, config on stdin) against a real AF_UNIX stream socket served by a thread
that speaks the framing of docs/protocol.md; expected error JSON is what ``json.dumps`` writes,
as the Python fallback writes it (the cni_exec contract: both clients, byte for byte).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.unit

SOURCE = Path(__file__).resolve().parents[2] / "vimaged_cni" / "vimaged-cni.c"
STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
HELLO = {"reply": "hello", "protocol": 1, "daemon": "0.1.0", "features": []}
RUNNING = "is vimaged running?"


class Client:
    """The compiled client, and the socket it uses when stdin names none."""

    def __init__(self, binary: str, default_socket: str) -> None:
        self.binary = binary
        self.default_socket = default_socket

    def run(
        self, stdin: bytes = b"{}", command: str = "ADD", **env: str
    ) -> subprocess.CompletedProcess[bytes]:
        environ = {"CNI_COMMAND": command, **env}
        return subprocess.run([self.binary], input=stdin, env=environ, capture_output=True,
                              timeout=30, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def compiled() -> Iterator[Client]:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler (cc): scripts/setup.sh installs gcc and libc6-dev")
    # a short directory: an AF_UNIX path holds 104 (FreeBSD) to 108 (Linux) bytes
    with tempfile.TemporaryDirectory(prefix="vcni", dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)  # the permission test runs it as nobody
        binary = os.path.join(tmp, "vimaged-cni")
        default = os.path.join(tmp, "default.sock")
        argv = [cc, *STRICT, f'-DDEFAULT_SOCKET="{default}"', "-o", binary, str(SOURCE)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # warning-free
        yield Client(binary, default)


@pytest.fixture(scope="session")
def python_client() -> Iterator[Client]:
    """The Python fallback as the ``-IS`` launcher starts it, its default socket moved aside."""
    root = str(SOURCE.parents[1])
    with tempfile.TemporaryDirectory(prefix="vcnp", dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        script = os.path.join(tmp, "vimaged-cni")
        default = os.path.join(tmp, "default.sock")
        with open(script, "w") as f:
            f.write(f"#!{sys.executable} -IS\nimport sys\nsys.path.append({root!r})\n")
            f.write(f"from vimaged_cni import cli\ncli.DEFAULT_SOCKET = {default!r}\ncli.main()\n")
        os.chmod(script, 0o755)
        yield Client(script, default)


@pytest.fixture(params=["c", "python"])
def client(request: pytest.FixtureRequest) -> Client:
    """Both clients: the cni_exec contract says they answer byte for byte alike."""
    fixture = "compiled" if request.param == "c" else "python_client"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vcs", dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


def frame(message: object) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return len(body).to_bytes(4, "big") + body


def exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk, "the client closed mid-frame"
        data += chunk
    return data


def receive(conn: socket.socket) -> bytes:
    return exactly(conn, int.from_bytes(exactly(conn, 4), "big"))


class FakeDaemon:
    """One connection on ``path``, handled by ``script`` in a thread; requests recorded."""

    def __init__(self, path: str, script: Callable[[FakeDaemon, socket.socket], None]) -> None:
        self.path = path
        self.requests: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.listener.settimeout(20)
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener, self.listener.accept()[0] as conn:
            self.script(self, conn)

    def join(self) -> None:
        self.thread.join(20)
        assert not self.thread.is_alive()
        if os.path.exists(self.path):
            os.unlink(self.path)


def answering(*replies: object) -> Callable[[FakeDaemon, socket.socket], None]:
    """hello, then for each request one reply (bytes: sent as they are)."""

    def script(daemon: FakeDaemon, conn: socket.socket) -> None:
        conn.sendall(frame(HELLO))
        for reply in replies:
            daemon.requests.append(receive(conn))
            conn.sendall(reply if isinstance(reply, bytes) else frame(reply))

    return script


def result(stdout: bytes = b"", exit_status: int = 0) -> dict[str, object]:
    return {"reply": "cni_result", "exit": exit_status,
            "stdout": base64.b64encode(stdout).decode()}  # fmt: skip


@pytest.fixture
def serve(sockdir: Path) -> Iterator[Callable[..., FakeDaemon]]:
    started: list[FakeDaemon] = []

    def start(
        script: Callable[[FakeDaemon, socket.socket], None], name: str = "d.sock"
    ) -> FakeDaemon:
        daemon = FakeDaemon(name if name.startswith("/") else str(sockdir / name), script)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.join()


def conf(path: str, **fields: object) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "n", "socket": path, **fields}).encode()


def error_json(code: int, msg: str, details: str = "", version: str = "1.0.0") -> bytes:
    out: dict[str, object] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    return (json.dumps(out) + "\n").encode()


def cni_error(done: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    assert done.returncode == 1, done
    assert done.stdout.endswith(b"\n")
    body: dict[str, object] = json.loads(done.stdout)
    return body


# ---- VERSION ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "version"),
    [
        (b'{"cniVersion": "1.0.0"}', "1.0.0"),
        (b'{"cniVersion": "1.1.0"}', "1.1.0"),
        (b"{}", "1.1.0"),
        (b'{"cniVersion": "0.4.0"}', "1.1.0"),
        (b'{"cniVersion": 1}', "1.1.0"),
        (b'{"plugins": {"cniVersion": "1.0.0"}}', "1.1.0"),  # only a top-level member counts
        (b'{"cniVersion": "1.0.0", "cniVersion": "1.1.0"}', "1.1.0"),  # the last, as json's
        (b'{"cniVersion": "1.0.\\u0030"}', "1.0.0"),
        (b'{"cniVersion": "1.0.0"', "1.1.0"),
        (b"", "1.1.0"),
    ],
)
def test_version_is_answered_without_the_daemon(client: Client, stdin: bytes, version: str) -> None:
    done = client.run(stdin, "VERSION")  # no daemon listens anywhere
    assert done.returncode == 0
    expected = {"cniVersion": version, "supportedVersions": ["1.0.0", "1.1.0"]}
    assert done.stdout == (json.dumps(expected) + "\n").encode()


def test_version_of_an_oversized_stdin_is_the_latest(client: Client) -> None:
    stdin = b'{"cniVersion": "1.0.0", "x": "' + b"a" * 262_144 + b'"}'
    done = client.run(stdin, "VERSION")
    assert (done.returncode, json.loads(done.stdout)["cniVersion"]) == (0, "1.1.0")


# ---- the request --------------------------------------------------------------------------


def test_the_request_carries_the_environment_and_stdin(
    compiled: Client, serve: Callable[..., FakeDaemon], sockdir: Path
) -> None:
    client = compiled  # C only: Python adds LC_CTYPE (PEP 538) to its own environment
    daemon = serve(answering(result(b"out")))
    stdin = json.dumps({"socket": daemon.path, "é": "\u2603\U0001f600"}, ensure_ascii=False)
    stdin_bytes = stdin.encode()  # multi-byte UTF-8
    env = {"CNI_COMMAND": "ADD", "CNI_PATH": "/opt/cni/bin", "EMPTY": "", "EQ": "a=b"}
    done = subprocess.run([client.binary], input=stdin_bytes, env=env, capture_output=True,
                          timeout=30, check=False)  # fmt: skip
    daemon.join()
    assert (done.returncode, done.stdout) == (0, b"out")
    environ = b"CNI_COMMAND=ADD\0CNI_PATH=/opt/cni/bin\0EMPTY=\0EQ=a=b\0"
    (request,) = daemon.requests
    assert request == (
        b'{"op":"cni_exec","environ":"' + base64.b64encode(environ)
        + b'","stdin":"' + base64.b64encode(stdin_bytes) + b'"}'
    )  # fmt: skip


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 255, 256, 1000])
def test_stdin_of_any_bytes_goes_as_base64(
    client: Client, serve: Callable[..., FakeDaemon], size: int
) -> None:
    """Bytes that are no JSON (not even UTF-8) go to the default socket, every one of them."""
    junk = bytes(random.Random(size).randrange(256) for _ in range(size))
    stdin = b"\xff\xfe" + junk  # never UTF-8, so never JSON
    daemon = serve(answering(result()), name=client.default_socket)
    done = client.run(stdin)
    daemon.join()
    assert done.returncode == 0, done
    request = json.loads(daemon.requests[0])
    assert base64.b64decode(request["stdin"], validate=True) == stdin
    assert request["stdin"] == base64.b64encode(stdin).decode()


def test_the_first_of_duplicate_names_is_sent(
    compiled: Client, serve: Callable[..., FakeDaemon]
) -> None:
    client = compiled  # C only: os.environ keeps one value of a name
    daemon = serve(answering(result()))
    # subprocess writes a str key and a bytes key with one name as two entries
    env: dict[str | bytes, str | bytes] = {"CNI_COMMAND": "DEL", "A": "first", b"A": b"second"}
    done = subprocess.run([client.binary], input=conf(daemon.path), env=env,  # type: ignore[arg-type]
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    daemon.join()
    assert done.returncode == 0
    environ = base64.b64decode(json.loads(daemon.requests[0])["environ"])
    assert environ == b"CNI_COMMAND=DEL\0A=first\0"


@pytest.mark.parametrize(
    "escaped",
    ["\\/", "\\u002f", "\\u002F"],  # three spellings of the slash
)
def test_the_socket_is_stdins_top_level_one_with_escapes_decoded(
    client: Client, serve: Callable[..., FakeDaemon], escaped: str
) -> None:
    daemon = serve(answering(result(b"{}\n")), name="d\u00e9.sock")  # non-ASCII too
    path = json.dumps(daemon.path)[1:-1].replace("/", escaped)
    stdin = '{"x": {"socket": "/nested"}, "l": [{"socket": "/n"}], "socket": "' + path + '"}'
    done = client.run(stdin.encode())
    daemon.join()
    assert (done.returncode, done.stdout) == (0, b"{}\n")


@pytest.mark.parametrize(
    "stdin",
    [
        b'{"x": {"socket": "/nested"}}',  # not top-level
        b'{"socket": 5}',  # no string
        b'{"socket": "/a\\u0000b"}',  # a NUL
        b'{"socket": "/tmp/x"',  # no JSON
        b'["socket", "/tmp/x"]',  # no object
    ],
)
def test_without_a_usable_socket_member_the_default_is_used(client: Client, stdin: bytes) -> None:
    error = cni_error(client.run(stdin))
    assert error["code"] == 11
    assert error["msg"] == f"cannot reach vimaged at {client.default_socket}: " + os.strerror(
        errno.ENOENT
    )


# ---- the result ---------------------------------------------------------------------------


@pytest.mark.parametrize("exit_status", [0, 1])
def test_the_result_is_written_byte_for_byte_with_its_status(
    client: Client, serve: Callable[..., FakeDaemon], exit_status: int
) -> None:
    stdout = bytes(range(256)) * 3 + '{"é": 1}\n'.encode()  # NULs, non-UTF-8, everything
    daemon = serve(answering(result(stdout, exit_status)))
    done = client.run(conf(daemon.path))
    daemon.join()
    assert (done.returncode, done.stdout, done.stderr) == (exit_status, stdout, b"")


def test_a_reply_of_exactly_max_frame_is_read(
    client: Client, serve: Callable[..., FakeDaemon]
) -> None:
    body = json.dumps(result(b"big")).encode()
    body = body[:-1] + b" " * ((1 << 20) - len(body)) + b"}"
    daemon = serve(answering(frame(body)))
    done = client.run(conf(daemon.path))
    daemon.join()
    assert (done.returncode, done.stdout) == (0, b"big")


# ---- the client's own errors --------------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [("ADD", 11), ("DEL", 11), ("STATUS", 50)])
def test_no_daemon_is_try_again_later_or_not_available(
    client: Client, sockdir: Path, command: str, code: int
) -> None:
    path = str(sockdir / "absent.sock")
    done = client.run(conf(path), command)
    msg = f"cannot reach vimaged at {path}: {os.strerror(errno.ENOENT)}"
    assert done.stdout == error_json(code, msg, RUNNING)


def test_a_socket_nobody_listens_on_is_refused(client: Client, sockdir: Path) -> None:
    path = str(sockdir / "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # bound, not listening: ECONNREFUSED
        done = client.run(conf(path))
    msg = f"cannot reach vimaged at {path}: {os.strerror(errno.ECONNREFUSED)}"
    assert done.stdout == error_json(11, msg, RUNNING)


def test_a_socket_we_may_not_use_is_101(compiled: Client, sockdir: Path) -> None:
    client = (
        compiled  # C only: nobody may not run root's interpreter (test_cni_plugin.py has Python's)
    )
    path = str(sockdir / "private.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        os.chmod(path, 0)
        # root passes every permission check: run as nobody then
        who = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
        done = subprocess.run([client.binary], input=conf(path), env={"CNI_COMMAND": "ADD"},
                              capture_output=True, timeout=30, check=False, **who)  # type: ignore[call-overload]  # fmt: skip
    assert done.stdout == error_json(
        101, f"no permission to use {path}", "run as root or in vimaged_group"
    )


@pytest.mark.parametrize(
    ("error", "command", "code", "details"),
    [
        ({"code": "busy"}, "ADD", 11, "busy"),
        ({"code": "shutting_down"}, "DEL", 11, "shutting_down"),
        ({"code": "busy"}, "STATUS", 50, "busy"),
        ({"code": "not_authorized"}, "ADD", 100, "not_authorized"),
        (
            {"code": "os_error", "errno": 17, "errno_name": "EEXIST"},
            "ADD",
            100,
            "os_error (EEXIST)",
        ),
        ({"code": "bad_request"}, "STATUS", 100, "bad_request"),
    ],
)
@pytest.mark.parametrize("instead_of_hello", [True, False])
def test_an_error_reply_becomes_the_specs_error(
    client: Client,
    serve: Callable[..., FakeDaemon],
    error: dict[str, object],
    command: str,
    code: int,
    details: str,
    instead_of_hello: bool,
) -> None:
    reply = {"reply": "error", "message": 'it says "no" \u00e9\n\u0000', **error}

    def refuse(daemon: FakeDaemon, conn: socket.socket) -> None:
        conn.sendall(frame(reply))

    daemon = serve(refuse if instead_of_hello else answering(reply))
    done = client.run(conf(daemon.path), command)
    daemon.join()
    assert done.stdout == error_json(code, str(reply["message"]), details)


@pytest.mark.parametrize(
    ("script", "code"),
    [
        pytest.param(lambda d, c: None, 11, id="closed-before-hello"),
        pytest.param(lambda d, c: c.sendall(frame(HELLO)[:7]), 11, id="truncated-hello"),
        pytest.param(answering(b""), 11, id="closed-after-request"),
        pytest.param(answering(frame(result())[:-3]), 11, id="truncated-reply"),
        pytest.param(lambda d, c: c.sendall(frame({**HELLO, "protocol": 2})), 101, id="protocol-2"),
        pytest.param(lambda d, c: c.sendall(frame({"reply": "hello"})), 101, id="no-protocol"),
        pytest.param(lambda d, c: c.sendall(frame({"reply": "bye"})), 101, id="no-hello"),
        pytest.param(
            lambda d, c: c.sendall(((1 << 20) + 1).to_bytes(4, "big")), 101, id="frame-too-large"
        ),
        pytest.param(answering(b"\xff\xff\xff\xff"), 101, id="reply-too-large"),
        pytest.param(lambda d, c: c.sendall(frame(b"hello")), 101, id="hello-no-json"),
        pytest.param(answering(frame(b'{"reply": "cni_result",')), 101, id="reply-cut-json"),
        pytest.param(answering(frame(b"[1, 2]")), 101, id="reply-no-object"),
        pytest.param(answering({"reply": "attachments", "attachments": []}), 101, id="other-reply"),
        pytest.param(answering({"reply": "cni_result", "exit": 0}), 101, id="no-stdout"),
        pytest.param(answering({**result(), "exit": 256}), 101, id="exit-256"),
        pytest.param(answering({**result(), "exit": -1}), 101, id="exit-negative"),
        pytest.param(answering({**result(), "exit": "0"}), 101, id="exit-string"),
        pytest.param(answering({**result(), "stdout": "abc"}), 101, id="stdout-not-base64"),
        pytest.param(answering({**result(), "stdout": "ab=c"}), 101, id="stdout-bad-padding"),
        pytest.param(answering({"reply": "error", "code": 5}), 101, id="error-without-message"),
    ],
)
def test_what_the_daemon_must_not_do(
    client: Client,
    serve: Callable[..., FakeDaemon],
    script: Callable[[FakeDaemon, socket.socket], None],
    code: int,
) -> None:
    daemon = serve(script)
    done = client.run(conf(daemon.path))
    daemon.join()
    error = cni_error(done)
    assert error["code"] == code
    assert error["cniVersion"] == "1.0.0"
    assert (error.get("details") == RUNNING) == (code == 11)


def test_closed_early_and_too_large_are_worded_as_the_contract_says(
    client: Client, serve: Callable[..., FakeDaemon]
) -> None:
    daemon = serve(lambda d, c: None)
    assert client.run(conf(daemon.path)).stdout == error_json(
        11, "vimaged closed the connection", RUNNING
    )
    daemon.join()
    daemon = serve(lambda d, c: c.sendall(b"\x00\x10\x00\x01"), name="e.sock")
    assert client.run(conf(daemon.path)).stdout == error_json(
        101, "vimaged sent a frame of 1048577 bytes"
    )


def test_stdin_over_its_limit_is_refused_before_connecting(
    client: Client, serve: Callable[..., FakeDaemon]
) -> None:
    daemon = serve(answering(result(b"ok")))
    head = conf(daemon.path)[:-1] + b', "pad": "'
    fits = head + b"x" * (262_144 - len(head) - 2) + b'"}'
    assert len(fits) == 262_144
    assert client.run(fits).stdout == b"ok"  # reached the daemon
    daemon.join()
    done = client.run(fits[:-2] + b'x"}')  # its daemon is gone: 11 if it tried
    assert done.stdout == error_json(7, "network configuration over 262144 bytes", version="1.1.0")


def test_an_environment_over_its_limit_is_refused(client: Client, sockdir: Path) -> None:
    path = str(sockdir / "absent.sock")  # refused before connecting: no daemon needed
    done = client.run(conf(path), BIG="x" * 65_536)
    assert done.stdout == error_json(4, "environment over 65536 bytes")


@pytest.mark.parametrize("silent_after_hello", [False, True])
def test_a_daemon_that_does_not_answer_times_out(
    client: Client, serve: Callable[..., FakeDaemon], silent_after_hello: bool
) -> None:
    def silent(daemon: FakeDaemon, conn: socket.socket) -> None:
        if silent_after_hello:
            conn.sendall(frame(HELLO))
        while conn.recv(65536):  # until the client gives up and exits
            pass

    daemon = serve(silent)
    done = client.run(conf(daemon.path), "STATUS", VIMAGED_CNI_TIMEOUT="0.2")
    daemon.join()
    assert done.stdout == error_json(50, "vimaged did not answer within 0.2 s", RUNNING)


def test_a_full_listen_queue_is_try_again_later(client: Client, sockdir: Path) -> None:
    """Linux waits in connect(2) while the queue is full (up to the deadline), FreeBSD refuses:
    both are code 11, and the client never hangs past its deadline."""
    path = str(sockdir / "full.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(0)  # never accepted
        fillers = []
        for _ in range(4):
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(path)
            except BlockingIOError:
                break  # full
        done = client.run(conf(path), VIMAGED_CNI_TIMEOUT="0.2")
        for filler in fillers:
            filler.close()
    assert cni_error(done)["code"] == 11


# ---- the JSON scanner, fuzzed -------------------------------------------------------------


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 6 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2.5, 1e300, -0.0, 123456789012345678901234567890])
    if kind in (2, 3, 4):
        return rng.choice(["1.0.0", "1.1.0", "", "\u00e9\ud83d\ude00", '\\"\n\x01', "\ud800"])
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    names = ["cniVersion", "socket", "a", "cniVersio\u00f1"]
    return {rng.choice(names): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def mutate(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0 or not data:
        return data
    i = rng.randrange(len(data))
    if choice == 1:
        return data[:i]
    if choice == 2:
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    if choice == 3:
        return (
            data[:i] + rng.choice([b"\\", b'"', b"\\u", b"\\ud800", b"[", b"{", b"\xc3"]) + data[i:]
        )
    return data[:i] + data[i + 1 :]


def python_reads(data: bytes) -> str:
    """The version the Python client answers: json with its defaults on the UTF-8 stdin."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return "1.1.0"
    asked = doc.get("cniVersion") if isinstance(doc, dict) else None
    return asked if asked in ("1.0.0", "1.1.0") else "1.1.0"


def test_the_scanner_survives_random_input_and_agrees_with_json(compiled: Client) -> None:
    client = compiled  # the Python client reads with json itself: nothing to compare
    rng = random.Random(14)
    for _ in range(300):
        # cniVersion last: the scanner must get through the random value to find it
        doc = {"x": random_json(rng), "cniVersion": rng.choice(["1.0.0", "1.0.0", "0.3.1"])}
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        data = mutate(rng, text)
        done = client.run(data, "VERSION")
        assert done.returncode == 0, data
        assert json.loads(done.stdout)["cniVersion"] == python_reads(data), data
    for data in (b"[" * 100_000, b'{"a":' * 100_000, b"\x00" * 10, b'"\\ud800"', b"\xed\xa0\x80"):
        done = client.run(data, "VERSION")
        assert (done.returncode, json.loads(done.stdout)["cniVersion"]) == (0, "1.1.0")


def test_the_shipped_default_socket_is_the_daemons() -> None:
    from vimaged import cli

    assert f'#define DEFAULT_SOCKET "{cli.DEFAULT_SOCKET}"' in SOURCE.read_text()
