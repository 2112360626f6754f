"""Console logs and captured output of commands run inside vimages (tests, unit tier)."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from vimaged.command_output import LINE_MAX, TAIL_BYTES, CommandOutput
from vimaged.errors import OperationFailedError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def test_the_last_line_is_this_commands_last_non_blank_one(tmp_path: Path) -> None:
    log = tmp_path / "web.console"
    log.write_text("an earlier start failed here\n")
    with CommandOutput.console_log(str(log), "vimage_web_exec_consolelog") as output:
        assert output.last_line() is None  # nothing of this command's yet
        assert output.fd is not None
        os.write(output.fd, b"Starting nginx.\nnginx: [emerg] bind() failed\n\n  \n")
        assert output.last_line() == "nginx: [emerg] bind() failed"
        assert output.said() == ": nginx: [emerg] bind() failed"
    assert log.read_text().startswith("an earlier start failed here\nStarting nginx.")


def test_a_console_log_is_created_private(tmp_path: Path) -> None:
    log = tmp_path / "db.console"
    with CommandOutput.console_log(str(log), "vimage_db_exec_consolelog"):
        pass
    assert log.stat().st_mode & 0o777 == 0o600


def test_an_unopenable_console_log_names_its_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir.log"
    with (
        pytest.raises(OperationFailedError, match="vimage_web_exec_consolelog: cannot open"),
        CommandOutput.console_log(str(missing), "vimage_web_exec_consolelog"),
    ):
        pass


def test_a_console_log_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:*:0:0\n")
    (tmp_path / "web.console").symlink_to(target)
    with (
        pytest.raises(OperationFailedError, match="it is a symbolic link"),
        CommandOutput.console_log(str(tmp_path / "web.console"), "vimage_web_exec_consolelog"),
    ):
        pass
    assert target.read_text() == "root:*:0:0\n"


def test_without_a_console_log_output_is_the_daemons_and_unread() -> None:
    with CommandOutput.console_log(None, "vimage_web_exec_consolelog") as output:
        assert (output.fd, output.last_line(), output.said()) == (None, None, "")


def test_a_capture_reads_back_and_cuts_long_lines() -> None:
    with CommandOutput.capture() as output:
        assert output.fd is not None
        os.write(output.fd, b"x" * (TAIL_BYTES * 2) + b"\n" + b"y" * (LINE_MAX + 50))
        line = output.last_line()
    assert line == "y" * (LINE_MAX - 3) + "..."


def test_undecodable_output_does_not_break_the_error() -> None:
    with CommandOutput.capture() as output:
        assert output.fd is not None
        os.write(output.fd, b"caf\xe9 closed\n")
        assert output.last_line() == "caf\ufffd closed"


@pytest.mark.parametrize("code", [errno.ELOOP, errno.EMLINK])
def test_a_symlink_errno_of_either_system_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """open(2) with O_NOFOLLOW on a link: ELOOP on Linux, EMLINK on FreeBSD (issue 11 #15)."""
    messages = []
    for errno_seen in (errno.ELOOP, code):

        def refuse(*_args: object, errno_seen: int = errno_seen) -> int:
            raise OSError(errno_seen, os.strerror(errno_seen))

        monkeypatch.setattr(os, "open", refuse)
        with (
            pytest.raises(OperationFailedError) as raised,
            CommandOutput.console_log(str(tmp_path / "web.console"), "v"),
        ):
            pass
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
