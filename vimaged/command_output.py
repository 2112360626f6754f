"""Where commands run inside a vimage write, and the last line they wrote (domain layer).

``exec_start`` and ``exec_stop`` write to ``vimage_NAME_exec_consolelog`` when it is set, as
jail(8)'s ``exec.consolelog`` does, else to the daemon's own output (syslog under rc.d); when
one fails, its error ends with the last line it wrote to the console log. ``health_cmd`` is
always captured, so that a check every 30 seconds never fills syslog, and a failed check's
reason ends with its last line (``health_cmd exited 1: nginx is not running``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING

from vimaged.errors import OperationFailedError
from vimaged.statedir import is_symlink_error

if TYPE_CHECKING:
    from collections.abc import Iterator

TAIL_BYTES = 4096
"""How far back from the end the last line is looked for."""
LINE_MAX = 200
"""Longer last lines are cut, with an ellipsis: they end up in one-line errors."""


class CommandOutput:
    """One command's output: a file descriptor to give it (``None``: the daemon's own) and
    where in that file this command's part begins."""

    def __init__(self, fd: int | None, start: int = 0) -> None:
        self.fd = fd
        self.start = start

    @classmethod
    @contextlib.contextmanager
    def console_log(cls, path: str | None, variable: str) -> Iterator[CommandOutput]:
        """Append to ``path``, created mode 0600 (output may hold secrets); ``None``: inherit.

        A symbolic link as the file itself is refused (O_NOFOLLOW): root appending to whatever
        a link in a shared directory points at is how a log clobbers /etc.

        Raises:
            OperationFailedError: the file cannot be opened; names ``variable``.
        """
        if path is None:
            yield cls(None)
            return
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            why = "it is a symbolic link" if is_symlink_error(exc) else exc.strerror
            raise OperationFailedError(f"{variable}: cannot open {path}: {why}") from exc
        try:
            yield cls(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    @classmethod
    @contextlib.contextmanager
    def capture(cls) -> Iterator[CommandOutput]:
        """An anonymous file, gone when the block ends: a pipe nobody read could fill up and
        stall the command."""
        with tempfile.TemporaryFile() as file:
            yield cls(file.fileno())

    def last_line(self) -> str | None:
        """The last non-blank line this command wrote, or None (nothing, or not ours to read)."""
        if self.fd is None:
            return None
        end = os.fstat(self.fd).st_size
        begin = max(self.start, end - TAIL_BYTES)
        text = os.pread(self.fd, end - begin, begin).decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return None
        line = lines[-1]
        return line if len(line) <= LINE_MAX else line[: LINE_MAX - 3] + "..."

    def said(self) -> str:
        """``": <last line>"`` to end an error message with, or ``""``."""
        line = self.last_line()
        return f": {line}" if line else ""
