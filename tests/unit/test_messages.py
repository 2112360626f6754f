"""What people read (issue 13): errnos in words, suggestions, event lines, removed vimages."""

from __future__ import annotations

import errno
import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from vimagectl.args import UsageError
from vimagectl.cli import parse
from vimagectl.client import Client, ClientError
from vimagectl.render import format_event, render_status
from vimaged import cli as daemon_cli
from vimaged.errors import describe_oserror, errno_name
from vimaged.statedir import StateDirError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (OSError(errno.EBUSY, os.strerror(errno.EBUSY), "em1"), "EBUSY"),
        (OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE), "/run/x.sock"), "EADDRINUSE"),
        (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), "EACCES"),
        (OSError(4242, "unheard of", "x"), "errno 4242"),
    ],
)
def test_an_oserror_is_worded_with_its_errno_name_never_its_number(exc: OSError, name: str) -> None:
    text = describe_oserror(exc)
    assert "[Errno" not in text
    assert text.endswith(f"({name})")
    assert text.startswith(f"{exc.filename}: " if exc.filename else str(exc.strerror)[0].lower())
    # the wire's errno_name: None for an errno the system has no name for
    assert errno_name(exc) == (None if name.startswith("errno ") else name)


@pytest.mark.parametrize("exc", [OSError("no errno at all"), ValueError("not an OSError")])
def test_errno_name_is_none_without_an_errno(exc: Exception) -> None:
    assert errno_name(exc) is None


@pytest.mark.parametrize(
    "exc",
    [
        PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/var/db/vimaged"),
        StateDirError("state dir /x: cannot create it: Permission denied", exit_status=73),
    ],
)
def test_an_unprivileged_daemon_is_told_it_needs_root(
    exc: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    message = daemon_cli._exit_message(exc)
    assert "needs root" in message
    assert "uid 1001" in message
    assert "[Errno" not in message
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "needs root" not in daemon_cli._exit_message(exc)  # root: the problem is elsewhere


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["strat", "web"], "'start'"),
        (["stauts"], "'status'"),
        (["metrcs"], "'metrics'"),
        (["list", "--jsno"], "'--json'"),
        (["--sokcet", "/x", "list"], "'--socket'"),
    ],
)
def test_a_misspelt_verb_or_option_gets_a_suggestion(argv: list[str], suggestion: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(argv)
    assert f"did you mean {suggestion}?" in str(caught.value)


def test_nothing_close_gets_no_suggestion() -> None:
    with pytest.raises(UsageError) as caught:
        parse(["xyzzy"])
    assert "did you mean" not in str(caught.value)


def test_restart_all_and_status_of_all_parse() -> None:
    restart = parse(["restart", "--all"])
    assert (restart.verb, restart.all, restart.names) == ("restart", True, [])
    status = parse(["status"])
    assert (status.verb, status.names) == ("status", [])


def test_an_event_line_quotes_what_would_split_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    line = format_event(
        {
            "reply": "event",
            "time": 1764880000.25,
            "event": "ifnet.return_retry",
            "name": "db",
            "data": {"ifnet": "em1", "error": 'em1: "busy" now', "dying": True, "jid": None},
        }
    )
    assert "\n" not in line
    head, _, rest = line.partition(" ifnet.return_retry db ")
    assert head == "2025-12-04T20:26:40.250+00:00"
    assert rest == 'ifnet=em1 error="em1: \\"busy\\" now" dying=yes jid=-'
    quoted = rest.split("error=", 1)[1].rsplit(" dying", 1)[0]
    assert json.loads(quoted) == 'em1: "busy" now'


class _Args:
    json = False


def _info(**changes: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "state": "running",
        "jid": 3,
        "health": "ok",
        "health_reason": None,
        "interfaces": [],
        "config_changed": False,
        "error": None,
        "restarts": 0,
        "removed": False,
        **changes,
    }


def test_status_of_a_removed_vimage_says_what_start_would(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vimaged.lifecycle import removed_text

    reply: Any = {"reply": "vimages", "vimages": [_info(config_changed=True, removed=True)]}
    render_status(reply, _Args())  # type: ignore[arg-type]
    shown = capsys.readouterr().out
    assert "removed from the configuration by reload" in shown
    assert "restart to apply" not in shown  # restart would refuse it
    assert "removed from the configuration by reload" in removed_text("web")


def test_a_regular_file_as_the_socket_is_not_a_socket(tmp_path: Path) -> None:
    regular = tmp_path / "vimaged.sock"
    regular.write_text("")
    with pytest.raises(ClientError) as caught:
        Client(str(regular), 5, refused_retry=0).connect()
    assert caught.value.code == "untrusted_socket"  # not "unreachable", as for a refusal
    assert "not a socket" in caught.value.message


async def test_an_os_error_reply_words_its_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    from vimaged.dispatch import Dispatcher
    from vimaged.peercred import Peer
    from vimaged.protocol import Error, Version

    async def busy(self: Dispatcher, request: object) -> None:
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), "em1")

    monkeypatch.setattr(Dispatcher, "_dispatch", busy)
    reply = await Dispatcher(None, None).handle(Version(), Peer(uid=0, gid=0, pid=1, groups=()))  # type: ignore[arg-type]
    assert isinstance(reply, Error)
    assert (reply.code, reply.errno) == ("os_error", errno.EBUSY)
    assert reply.message == describe_oserror(OSError(errno.EBUSY, os.strerror(errno.EBUSY), "em1"))
    assert "[Errno" not in reply.message


def test_metrics_is_read_only() -> None:
    from vimaged.protocol import MUTATING, Metrics

    assert Metrics not in MUTATING  # any peer that can connect may read the counts


def test_an_unprivileged_daemon_denied_permission_exits_77(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vimaged import config, log

    monkeypatch.setattr(log, "configure", lambda **_: None)  # the tests' logging stays as it is

    def denied(paths: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/etc/rc.conf")

    monkeypatch.setattr(config, "load", denied)
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    assert daemon_cli.main(["--platform", "sim", "--log-format", "json"]) == 77  # EX_NOPERM
    err = capsys.readouterr().err
    assert "needs root" in err
    assert "[Errno" not in err
