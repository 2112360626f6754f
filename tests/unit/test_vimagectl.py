"""vimagectl end to end: the real ``python -m vimagectl`` against a served socket (tests, unit).

The server is vimaged.server with one small handler holding three vimages; each test checks
the exit status and what vimagectl prints, never its wording.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing
from contextlib import asynccontextmanager
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest
import trio

from vimagectl.cli import VERBS, UsageError, parse
from vimagectl.client import CLIENT_CODES, Client, ClientError, _frame
from vimagectl.exits import EXIT_STATUS
from vimagectl.render import format_table
from vimaged import __version__
from vimaged.protocol import (
    CNI_MUTATING,
    ERROR_CODES,
    HEADER,
    REQUEST_DECODER,
    AnyRequest,
    CniList,
    Done,
    Error,
    Event,
    Events,
    Health,
    Hello,
    Interface,
    ListVimages,
    Metrics,
    Outcome,
    Reload,
    Reloaded,
    Restart,
    Start,
    Status,
    Stop,
    Version,
    VersionInfo,
    VimageInfo,
    Vimages,
    VimagesEnd,
    frame,
    vimages_pages,
)
from vimaged.server import open_control_listener, serve_control

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator

    from vimaged.peercred import Peer
    from vimaged.protocol import Reply

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534

WEB = VimageInfo(
    name="web",
    state="running",
    jid=3,
    health="ok",
    interfaces=(
        Interface(
            name="ng0_web",
            kind="bridge",
            parent="em0",
            mac="02:00:27:e7:1b:18",
            where="vimage",
            addresses=("192.0.2.10/24", "fe80::27ff:fee7:1b18/64"),
        ),
    ),
)
DB = VimageInfo(
    name="db",
    state="running",
    jid=4,
    health="degraded",
    interfaces=(Interface(name="em1", kind="vnet", where="pending-return", holder_jid=2),),
)
OLD = VimageInfo(name="old", state="stopped")


class Handler:
    """Three vimages; ``e_CODE`` names answer ``Error(code=CODE)``, ``stuck`` fails a change."""

    def __init__(self) -> None:
        self.vimages = {info.name: info for info in (WEB, DB, OLD)}
        self.seen: list[AnyRequest] = []
        self.slow = trio.Event()
        self.events_end = True
        self.subscribed = trio.Event()
        self.end_count_skew = 0

    def _pick(self, names: tuple[str, ...]) -> Reply:
        for name in names:
            if name.startswith("e_"):
                return Error(code=name[2:], message=f"asked for {name[2:]}")
            if name == "boom":
                raise RuntimeError("handler bug")
        missing = [n for n in names if n not in self.vimages]
        if missing:
            return Error(code="not_found", message=f"no vimage {missing[0]}")
        chosen = [self.vimages[n] for n in names] if names else list(self.vimages.values())
        return Vimages(vimages=tuple(chosen))

    async def handle(
        self, request: AnyRequest, peer: Peer
    ) -> Reply | AsyncGenerator[bytes | Reply, None]:
        answer = await self._handle(request)
        if isinstance(answer, Vimages) and getattr(request, "stream", False):
            return self._stream(answer.vimages)
        return answer

    async def _stream(self, infos: tuple[VimageInfo, ...]) -> AsyncGenerator[bytes | Reply, None]:
        # One vimage a page, so that every listing here is streamed over several frames.
        for page in vimages_pages(infos, budget=1):
            yield page
        yield VimagesEnd(count=len(infos) + self.end_count_skew)

    async def _handle(self, request: AnyRequest) -> Reply:
        self.seen.append(request)
        match request:
            case Status(names=("slow",)):
                await self.slow.wait()
                return Vimages()
            case ListVimages():
                return self._pick(())
            case Status(names=names) | Health(names=names):
                return self._pick(names)
            case Start(names=names) | Stop(names=names) | Restart(names=names):
                picked = self._pick(names)
                if isinstance(picked, Error):
                    return picked
                return Done(
                    outcomes=tuple(
                        Outcome(name=n, ok=True, state="running")
                        if n != "old"
                        else Outcome(
                            name=n, ok=False, state="stopped", code="conflict", message="x"
                        )
                        for n in (names or tuple(self.vimages))
                    )
                )
            case Reload():
                return Reloaded(changed=("web",))
            case Version():
                return VersionInfo(daemon="9.9.9", protocol=1, platform="sim")
        return Error(code="invalid_request", message="unexpected")

    @asynccontextmanager
    async def events(self) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](4)
        await send.send(Event(time=1.0, event="vimage.started", name="web", data={"jid": 3}))
        await send.send(Event(time=2.0, event="ifnet.moved", name="db", data={"ifnet": "em1"}))
        if self.events_end:
            await send.aclose()  # the stream ends, as when the daemon stops
        self.subscribed.set()
        yield receive


@pytest.fixture
def socket_path() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="vctl", dir="/tmp")
    os.chmod(directory, 0o755)
    yield os.path.join(directory, "vimaged.sock")
    shutil.rmtree(directory)


@pytest.fixture
async def handler(nursery: trio.Nursery, socket_path: str) -> Handler:
    served = Handler()
    listener = await open_control_listener(socket_path)
    await nursery.start(partial(serve_control, listener, served, handler_nursery=nursery))
    return served


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIMAGED_SOCKET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


async def vimagectl(
    *args: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    user: int | None = None,
) -> subprocess.CompletedProcess[bytes]:
    done: subprocess.CompletedProcess[bytes] = await trio.run_process(
        [python, "-m", "vimagectl", *args],
        env=env or _env(),
        check=False,
        capture_stdout=True,
        capture_stderr=True,
        user=user,
        group=user,
        extra_groups=None if user is None else [],
        cwd="/",
    )
    assert b"Traceback" not in done.stderr
    if done.stderr:
        assert done.stderr.startswith(b"vimagectl: ")
    return done


async def test_list_prints_a_jls_style_table(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "list")
    assert done.returncode == 0
    rows = [line.split() for line in done.stdout.decode().splitlines()]
    assert rows[0] == ["NAME", "STATE", "JID", "HEALTH", "IP", "INTERFACES"]
    assert [row[:5] for row in rows[1:]] == [
        ["web", "running", "3", "ok", "192.0.2.10"],
        ["db", "running", "4", "degraded", "-"],
        ["old", "stopped", "-", "unknown", "-"],
    ]
    assert "ng0_web" in rows[1][5]
    assert "em1" in rows[2][5]


@pytest.mark.parametrize(
    ("addresses", "shown"),
    [
        pytest.param(
            [["fe80::1/64", "2001:db8::1/64"], ["198.51.100.7/24"]], "198.51.100.7", id="ipv4-first"
        ),
        pytest.param([["fe80::1/64"], ["2001:db8::1/64"]], "2001:db8::1", id="ipv6-not-local"),
        pytest.param([["FE80::1/64"]], "-", id="only-link-local"),
        pytest.param([], "-", id="no-interfaces"),
    ],
)
def test_the_ip_column_shows_what_jls_would(addresses: list[list[str]], shown: str) -> None:
    info: typing.Any = {
        "name": "web",
        "state": "running",
        "jid": 3,
        "health": "ok",
        "interfaces": [
            {
                "name": f"ng{i}_web",
                "kind": "bridge",
                "parent": "em0",
                "where": "vimage",
                "addresses": listed,
            }
            for i, listed in enumerate(addresses)
        ],
    }
    assert format_table([info]).splitlines()[1].split()[4] == shown


async def test_list_json_is_an_array_of_vimage_info(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("list", "--json", "-s", socket_path)
    assert done.returncode == 0
    listed = json.loads(done.stdout)
    assert listed == json.loads(msgspec.json.encode([WEB, DB, OLD]))
    assert listed[0]["interfaces"][0] == {
        "name": "ng0_web",
        "kind": "bridge",
        "parent": "em0",
        "mac": "02:00:27:e7:1b:18",
        "where": "vimage",
        "holder_jid": None,
        "holder_dying": None,
        "addresses": ["192.0.2.10/24", "fe80::27ff:fee7:1b18/64"],
        "bridge_mode": None,
        "link": None,
    }
    assert listed[1]["interfaces"][0]["where"] == "pending-return"


async def test_status_json_and_not_found(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("--json", "-s", socket_path, "status", "db")
    assert done.returncode == 0
    assert [info["name"] for info in json.loads(done.stdout)] == ["db"]
    missing = await vimagectl("-s", socket_path, "status", "mail")
    assert missing.returncode == 68
    assert missing.stdout == b""


async def test_status_shows_each_interface_with_its_addresses(
    handler: Handler, socket_path: str
) -> None:
    done = await vimagectl("-s", socket_path, "status", "web", "db")
    assert done.returncode == 0
    assert done.stdout.decode().splitlines() == [
        "web: running, jid 3, health ok, restarts 0",
        "  ng0_web  bridge  parent em0  mac 02:00:27:e7:1b:18  vimage"
        "  192.0.2.10/24  fe80::27ff:fee7:1b18/64",
        "db: running, jid 4, health degraded, restarts 0",
        "  em1  vnet  parent -  mac -  pending-return (held by jid 2)",
    ]


async def test_socket_from_environment(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("status", "web", env=_env(VIMAGED_SOCKET=socket_path))
    assert done.returncode == 0
    assert b"web" in done.stdout


async def test_start_stop_restart_report_outcomes(handler: Handler, socket_path: str) -> None:
    assert (await vimagectl("-s", socket_path, "start", "web", "db")).returncode == 0
    assert (await vimagectl("-s", socket_path, "stop", "--all")).returncode == 75  # old: conflict
    restarted = await vimagectl("-s", socket_path, "--json", "restart", "web")
    assert restarted.returncode == 0
    assert json.loads(restarted.stdout) == [
        {
            "name": "web",
            "ok": True,
            "state": "running",
            "code": None,
            "message": None,
            "errno_name": None,
        }
    ]
    assert handler.seen == [
        Start(names=("web", "db")),
        Stop(all_=True),
        Restart(names=("web",)),
    ]


async def test_partial_failure_exits_with_the_failed_outcome(
    handler: Handler, socket_path: str
) -> None:
    done = await vimagectl("-s", socket_path, "start", "web", "old")
    assert done.returncode == 75
    assert done.stdout.split() == [b"web:", b"running"]
    assert b"old" in done.stderr


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_request", 76),
        ("frame_too_large", 76),
        ("permission_denied", 77),
        ("not_found", 68),
        ("conflict", 75),
        ("shutting_down", 69),
        ("config", 78),
        ("failed", 70),
        ("platform", 71),
        ("os_error", 71),
        ("internal", 70),
        ("busy", 75),
        ("added_in_protocol_9", 70),
    ],
)
async def test_error_codes_map_to_sysexits(
    handler: Handler, socket_path: str, code: str, status: int
) -> None:
    done = await vimagectl("-s", socket_path, "stop", f"e_{code}")
    assert done.returncode == status
    assert done.stderr


def test_exit_table_covers_every_code() -> None:
    assert set(ERROR_CODES) | set(CLIENT_CODES) == set(EXIT_STATUS)


async def test_handler_crash_exits_70(handler: Handler, socket_path: str) -> None:
    assert (await vimagectl("-s", socket_path, "status", "boom")).returncode == 70


async def test_reload_and_version(handler: Handler, socket_path: str) -> None:
    reloaded = await vimagectl("-s", socket_path, "--json", "reload")
    assert reloaded.returncode == 0
    assert json.loads(reloaded.stdout) == {
        "reply": "reloaded",
        "added": [],
        "removed": [],
        "changed": ["web"],
    }
    version = await vimagectl("-s", socket_path, "version", "--json")
    assert version.returncode == 0
    assert json.loads(version.stdout)["daemon"] == "9.9.9"


async def test_events_json_prints_one_json_object_per_line(
    handler: Handler, socket_path: str
) -> None:
    done = await vimagectl("-s", socket_path, "--json", "events")
    assert done.returncode == 69  # the daemon ended the stream
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["event"], e["name"], e["data"]) for e in events] == [
        ("vimage.started", "web", {"jid": 3}),
        ("ifnet.moved", "db", {"ifnet": "em1"}),
    ]


async def test_events_print_one_line_each_with_a_local_iso_time(
    handler: Handler, socket_path: str
) -> None:
    done = await vimagectl("-s", socket_path, "events", env=_env(TZ="UTC"))
    assert done.returncode == 69  # the daemon ended the stream
    assert done.stdout.decode().splitlines() == [
        "1970-01-01T00:00:01.000+00:00 vimage.started web jid=3",
        "1970-01-01T00:00:02.000+00:00 ifnet.moved db ifnet=em1",
    ]


async def test_status_without_names_shows_every_vimage(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "--json", "status")
    assert done.returncode == 0
    assert [v["name"] for v in json.loads(done.stdout)] == list(handler.vimages)
    assert handler.seen == [Status(stream=True)]


async def test_restart_all_asks_for_all(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "restart", "--all")
    assert done.returncode == 75  # "old" fails with conflict, as in start --all
    assert handler.seen == [Restart(all_=True)]


async def test_interrupted_events_exit_130_quietly(
    handler: Handler, socket_path: str, tmp_path: Path
) -> None:
    handler.events_end = False
    with (tmp_path / "stderr").open("w+b") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "vimagectl", "-s", socket_path, "events"],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            with trio.fail_after(30):
                await handler.subscribed.wait()
                process.send_signal(signal.SIGINT)
                assert await process.wait() == 130
        finally:
            process.kill()  # a no-op once it has exited
        stderr.seek(0)
        assert stderr.read() == b""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["frobnicate"], id="unknown-verb"),
        pytest.param([], id="no-verb"),
        pytest.param(["stop"], id="stop-without-names"),
        pytest.param(["start", "--all", "web"], id="names-and-all"),
        pytest.param(["restart", "--all", "web"], id="restart-names-and-all"),
        pytest.param(["restart"], id="restart-without-names"),
        pytest.param(["status", "web!"], id="bad-name"),
        pytest.param(["--timeout", "-1", "list"], id="negative-timeout"),
        pytest.param(["--timeout", "soon", "list"], id="timeout-not-a-number"),
        pytest.param(["--json=yes", "list"], id="flag-with-value"),
        pytest.param(["list", "--socket"], id="option-without-value"),
        pytest.param(["list", "--socket="], id="empty-socket"),
        pytest.param(["list", "web"], id="list-takes-no-names"),
        pytest.param(["list", "--all"], id="all-is-for-start-and-stop"),
        pytest.param(["--all", "start"], id="all-before-the-verb"),
        pytest.param(["list", "--verbose"], id="unknown-option"),
    ],
)
async def test_usage_errors_exit_64(socket_path: str, args: list[str]) -> None:
    done = await vimagectl("-s", socket_path, *args)
    assert done.returncode == 64
    assert done.stdout == b""


@pytest.mark.parametrize(
    ("argv", "socket", "timeout", "json_"),
    [
        pytest.param(["-s", "/a", "list"], "/a", 60.0, False, id="short"),
        pytest.param(["-s/a", "list"], "/a", 60.0, False, id="short-attached"),
        pytest.param(["--socket", "/a", "list"], "/a", 60.0, False, id="long"),
        pytest.param(["--socket=/a", "list"], "/a", 60.0, False, id="long-equals"),
        pytest.param(["list", "--json", "-s", "/a"], "/a", 60.0, True, id="after-the-verb"),
        pytest.param(["--timeout=2.5", "list"], None, 2.5, False, id="timeout-equals"),
        pytest.param(["list", "--timeout", "3"], None, 3.0, False, id="timeout-after"),
    ],
)
def test_options_are_read_as_getopt_long_reads_them(
    argv: list[str], socket: str | None, timeout: float, json_: bool
) -> None:
    args = parse(argv)
    assert (args.verb, args.socket, args.timeout, args.json) == ("list", socket, timeout, json_)


EVERY_VERB = [
    (["list"], ListVimages()),
    (["status", "web"], Status(names=("web",))),
    (["start", "--all"], Start(all_=True)),
    (["stop", "web", "db"], Stop(names=("web", "db"))),
    (["restart", "web"], Restart(names=("web",))),
    (["health"], Health()),
    (["reload"], Reload()),
    (["version"], Version()),
    (["events"], Events()),
    (["metrics"], Metrics()),
    (["attachments"], CniList()),
]


def test_status_sends_operands_that_are_no_vimage_names_as_containers() -> None:
    args = parse(["status", "web", "0f3a9c", "pod.1-a"])
    framed = _frame(VERBS[args.verb].request(args))
    assert REQUEST_DECODER.decode(framed[HEADER.size :]) == Status(
        names=("web",), containers=("0f3a9c", "pod.1-a")
    )


def test_the_verb_table_covers_every_request() -> None:
    assert [argv[0] for argv, _ in EVERY_VERB] == list(VERBS)
    # The other CNI requests are the plugin's (cni_exec) and the daemon's own (vimaged/cni/).
    verbs_send = set(typing.get_args(AnyRequest)) - CNI_MUTATING
    assert {type(request) for _, request in EVERY_VERB} == verbs_send


@pytest.mark.parametrize(("argv", "expected"), EVERY_VERB, ids=[a[0] for a, _ in EVERY_VERB])
def test_each_verb_sends_the_request_it_is_named_for(argv: list[str], expected: object) -> None:
    args = parse(argv)
    framed = _frame(VERBS[args.verb].request(args))
    assert REQUEST_DECODER.decode(framed[HEADER.size :]) == expected


def test_the_rcd_scripts_command_lines_parse() -> None:
    # etc/rc.d/vimaged's shutdown and etc/rc.d/vimage's delegation, with vimaged_socket set.
    args = parse(["--socket", "/var/run/v.sock", "--timeout", "80", "stop", "--all"])
    assert (args.verb, args.socket, args.timeout, args.all) == ("stop", "/var/run/v.sock", 80, True)
    args = parse(["--socket", "/var/run/v.sock", "status", "web"])
    assert (args.verb, args.names) == ("status", ["web"])


def test_double_dash_ends_the_options() -> None:
    args = parse(["stop", "--", "web", "db"])
    assert (args.verb, args.names, args.all) == ("stop", ["web", "db"], False)
    with pytest.raises(UsageError, match="bad vimage name '--all'"):
        parse(["stop", "--", "--all"])  # after --, a name, and not a valid one


async def test_help_lists_every_command_and_exits_0() -> None:
    done = await vimagectl("-h")
    assert done.returncode == 0
    text = done.stdout.decode()
    assert text.startswith("usage: vimagectl ")
    assert all(f"\n  {verb} " in text for verb in VERBS)
    done = await vimagectl("stop", "--help")
    assert done.returncode == 0
    assert done.stdout.decode().startswith("usage: vimagectl [-s socket] [--json]")
    assert "stop name ... | --all" in done.stdout.decode()


async def test_version_option_needs_no_daemon(socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "--version")  # nothing listens there
    assert (done.returncode, done.stdout) == (0, f"vimagectl {__version__}\n".encode())


async def test_a_malformed_reply_exits_76_naming_the_field(
    nursery: trio.Nursery, socket_path: str
) -> None:
    listener = await open_control_listener(socket_path)
    bad = b'{"reply":"vimages","vimages":[{"name":"web","state":"running","jid":"3"}]}'

    async def answer_badly() -> None:
        async with listener, await listener.accept() as stream:
            await stream.send_all(frame(Hello(protocol=1, daemon="9")))
            await stream.receive_some()
            await stream.send_all(HEADER.pack(len(bad)) + bad)

    nursery.start_soon(answer_badly)
    done = await vimagectl("-s", socket_path, "--json", "list")
    assert done.returncode == 76
    assert done.stdout == b""
    assert b"vimages[0].jid: expected an integer or null" in done.stderr


# Streamed listings (issue 13 item 2): the handler sends one vimage a page.


async def test_a_streamed_listing_prints_what_one_frame_would(
    handler: Handler, socket_path: str
) -> None:
    infos = [WEB, DB, OLD]
    listed = await vimagectl("-s", socket_path, "--json", "list")
    assert listed.returncode == 0
    assert listed.stdout == msgspec.json.encode(infos) + b"\n"
    table = await vimagectl("-s", socket_path, "list")
    assert table.stdout.decode() == format_table(json.loads(msgspec.json.encode(infos)))
    status = await vimagectl("-s", socket_path, "--json", "status", "db", "web")
    assert json.loads(status.stdout) == json.loads(msgspec.json.encode([DB, WEB]))
    assert handler.seen == [
        ListVimages(stream=True),
        ListVimages(stream=True),
        Status(names=("db", "web"), stream=True),
    ]


async def test_a_stream_short_of_its_count_exits_76(handler: Handler, socket_path: str) -> None:
    handler.end_count_skew = 1  # the end says 4: a page went missing
    done = await vimagectl("-s", socket_path, "--json", "list")
    assert done.returncode == 76
    assert not done.stdout.endswith(b"]\n")  # never a valid-looking partial array


async def test_a_refused_streamed_status_prints_nothing(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "--json", "status", "web", "nosuch")
    assert (done.returncode, done.stdout) == (68, b"")


async def test_an_older_daemon_is_asked_for_one_frame(
    nursery: trio.Nursery, socket_path: str
) -> None:
    listener = await open_control_listener(socket_path)
    asked: list[bytes] = []

    async def answer_as_protocol_1_did() -> None:
        async with listener, await listener.accept() as stream:
            await stream.send_all(frame(Hello(protocol=1, daemon="0.1.0")))  # no features
            asked.append(await stream.receive_some())
            await stream.send_all(frame(Vimages(vimages=(WEB, OLD))))

    nursery.start_soon(answer_as_protocol_1_did)
    done = await vimagectl("-s", socket_path, "--json", "list")
    assert done.returncode == 0
    assert asked == [frame(ListVimages())]  # no "stream" field, which it would refuse
    assert done.stdout == msgspec.json.encode([WEB, OLD]) + b"\n"


async def test_unreachable_daemon_exits_69(socket_path: str) -> None:
    assert (await vimagectl("-s", socket_path, "list")).returncode == 69  # no socket
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(socket_path)  # a stale socket: nobody listens
        assert (await vimagectl("-s", socket_path, "list")).returncode == 69


async def test_slow_daemon_exits_75(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "--timeout", "0.3", "status", "slow")
    handler.slow.set()
    assert done.returncode == 75


async def test_unknown_protocol_version_exits_76(nursery: trio.Nursery, socket_path: str) -> None:
    listener = await open_control_listener(socket_path)

    async def greet_from_the_future() -> None:
        async with listener, await listener.accept() as stream:
            await stream.send_all(frame(Hello(protocol=99, daemon="99.0")))
            await stream.receive_some()

    nursery.start_soon(greet_from_the_future)
    done = await vimagectl("-s", socket_path, "list")
    assert done.returncode == 76
    assert done.stdout == b""


# health, the Nagios plugin.


def _info(
    name: str, state: str = "running", health: str = "ok", *, wanted: bool = False
) -> VimageInfo:
    return msgspec.convert(
        {"name": name, "state": state, "health": health, "wanted": wanted}, VimageInfo
    )


@pytest.mark.parametrize(
    ("vimages", "names", "status"),
    [
        pytest.param([_info("a"), _info("b")], [], 0, id="all-ok"),
        pytest.param([_info("a"), _info("b", health="degraded")], [], 1, id="degraded"),
        pytest.param(
            [_info("a", health="failed"), _info("b", health="degraded")], [], 2, id="failed"
        ),
        pytest.param([_info("a", state="failed")], [], 2, id="failed-state"),
        pytest.param([_info("a", health="unknown")], [], 3, id="unknown"),
        pytest.param([_info("a"), _info("b", state="starting")], [], 1, id="starting"),
        pytest.param([_info("a"), _info("b", state="waiting")], [], 1, id="waiting"),
        pytest.param([_info("a"), _info("b", state="stopped")], [], 0, id="stopped-not-named"),
        pytest.param([_info("a"), _info("b", state="stopped")], ["b"], 0, id="stopped-named"),
        pytest.param(
            [_info("a"), _info("b", state="stopped", wanted=True)], [], 2, id="stopped-wanted"
        ),
        pytest.param(
            [_info("b", state="stopped", wanted=True)], ["b"], 2, id="stopped-wanted-named"
        ),
        pytest.param([], [], 0, id="nothing-configured"),
    ],
)
async def test_health_is_a_nagios_plugin(
    handler: Handler, socket_path: str, vimages: list[VimageInfo], names: list[str], status: int
) -> None:
    handler.vimages = {info.name: info for info in vimages}
    done = await vimagectl("-s", socket_path, "health", *names)
    assert done.returncode == status
    [line] = done.stdout.decode().splitlines()
    label = ("OK", "WARNING", "CRITICAL", "UNKNOWN")[status]
    assert line.startswith(f"VIMAGED {label} - ")
    perf = dict(field.split("=") for field in line.split(" | ")[1].split())
    considered = [info for info in vimages if not names or info.name in names]
    counted = [info for info in considered if info.state != "stopped" or info.wanted]
    assert sum(map(int, (perf["ok"], perf["degraded"], perf["failed"], perf["unknown"]))) == len(
        counted
    )
    assert int(perf["stopped"]) == len(considered) - len(counted)


async def test_health_names_the_problem(handler: Handler, socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "health")
    assert done.returncode == 1
    assert b"db" in done.stdout
    assert b"em1" in done.stdout
    assert done.stdout.split(b" | ")[1].split() == [
        b"ok=1",
        b"degraded=1",
        b"failed=0",
        b"unknown=0",
        b"stopped=1",
    ]


@pytest.mark.parametrize(
    "args",
    [["health", "mail"], ["health", "e_internal"], ["health", "bad!"]],
    ids=["not-found", "error-reply", "usage"],
)
async def test_health_without_an_answer_is_unknown(
    handler: Handler, socket_path: str, args: list[str]
) -> None:
    done = await vimagectl("-s", socket_path, *args)
    assert done.returncode == 3
    assert done.stdout.startswith(b"VIMAGED UNKNOWN - ")


async def test_health_of_unreachable_daemon_is_unknown(socket_path: str) -> None:
    done = await vimagectl("-s", socket_path, "health")
    assert done.returncode == 3
    assert done.stdout.startswith(b"VIMAGED UNKNOWN - ")


# Permissions, as uid 65534.


@cache
def unprivileged_python() -> str | None:
    """A Python 3.11 that uid 65534 can run and that finds msgspec (via PYTHONPATH)."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    for candidate in (sys.executable, "/usr/bin/python3.11", "/usr/local/bin/python3.11"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import msgspec, vimagectl.cli"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                cwd="/",
                env=_env(PYTHONPATH=f"{ROOT}{os.pathsep}{site}"),
                capture_output=True,
                check=False,
            )
        except PermissionError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture
def nobody_env() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("switching to uid 65534 needs root")
    if unprivileged_python() is None:
        pytest.skip("no Python 3.11 that uid 65534 may run with this venv's msgspec")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    return _env(PYTHONPATH=f"{ROOT}{os.pathsep}{site}")


async def test_permission_exits_77(
    handler: Handler, socket_path: str, nobody_env: dict[str, str]
) -> None:
    python = unprivileged_python()
    assert python is not None
    as_nobody = partial(vimagectl, python=python, env=nobody_env, user=NOBODY)
    refused = await as_nobody("-s", socket_path, "list")
    assert refused.returncode == 77  # socket EACCES: mode 0660, not in the group
    os.chmod(socket_path, 0o666)
    listed = await as_nobody("-s", socket_path, "list")
    assert listed.returncode == 0
    started = await as_nobody("-s", socket_path, "start", "web")
    assert started.returncode == 77  # permission_denied
    assert handler.seen == [ListVimages(stream=True)]


# Trust in the socket (issue 10 item 9) and a refused connect (issue 11 item 16).


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")


@pytest.mark.usefixtures("root")
async def test_a_socket_owned_by_another_uid_is_refused_before_connecting(
    socket_path: str,
) -> None:
    with socket.socket(socket.AF_UNIX) as impostor:
        impostor.bind(socket_path)
        impostor.listen()
        os.chown(socket_path, NOBODY, NOBODY)  # planted by uid 65534
        done = await vimagectl("-s", socket_path, "stop", "web")
        assert done.returncode == 77
        impostor.setblocking(False)
        with pytest.raises(BlockingIOError):
            impostor.accept()  # nobody connected: nothing was sent, no answer believed


@pytest.mark.usefixtures("root")
async def test_a_link_at_the_socket_path_is_refused(handler: Handler, socket_path: str) -> None:
    link = socket_path + ".link"
    os.symlink(socket_path, link)
    assert (await vimagectl("-s", link, "list")).returncode == 77
    assert handler.seen == []


def test_a_listener_run_by_another_uid_is_refused_after_connecting(
    socket_path: str, nobody_env: dict[str, str]
) -> None:
    # The file looks right (root's), but the process listening on it is uid 65534's.
    python = unprivileged_python()
    assert python is not None
    directory = os.path.dirname(socket_path)
    os.chown(directory, NOBODY, NOBODY)
    script = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
        "s.listen(); print('ready', flush=True); c, _ = s.accept(); c.settimeout(5); "
        "print(len(c.recv(100)), flush=True)"
    )
    with subprocess.Popen(
        [python, "-c", script, socket_path],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            os.chown(socket_path, 0, 0)
            with pytest.raises(ClientError) as refused:
                Client(socket_path, 5).connect()
            assert refused.value.code == "untrusted_socket"
            assert child.stdout.readline() == "0\n"  # we closed without sending a byte
        finally:
            child.kill()


def test_a_refused_connect_is_retried_until_the_daemon_accepts(socket_path: str) -> None:
    # FreeBSD refuses connects while the listen queue is full; Linux only when nobody listens,
    # so a socket that starts listening a little later stands in for a queue that drains.
    with socket.socket(socket.AF_UNIX) as busy:
        busy.bind(socket_path)

        def drain() -> None:
            time.sleep(0.2)
            busy.listen()
            conn, _ = busy.accept()
            with conn:
                conn.sendall(frame(Hello(protocol=1, daemon=__version__)))
                conn.recv(1)

        server = threading.Thread(target=drain)
        server.start()
        try:
            with Client(socket_path, 5, refused_retry=3) as client:
                assert client.hello is not None
        finally:
            server.join()


def test_a_refusal_that_lasts_is_reported_unreachable(socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(socket_path)
        started = time.monotonic()
        with pytest.raises(ClientError) as refused:
            Client(socket_path, 5, refused_retry=0.2).connect()
        assert refused.value.code == "unreachable"
        assert time.monotonic() - started >= 0.2
