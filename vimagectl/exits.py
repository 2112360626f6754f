"""vimagectl's exit statuses: sysexits(3) through one table, :data:`EXIT_STATUS`.

Also in docs/protocol.md and vimagectl.8. :data:`SYSEXITS` is the exit mapping of every verb
but ``health``, which reports as a Nagios plugin (vimagectl/nagios.py).
"""

from __future__ import annotations

import sys

EX_OK = 0
EX_USAGE = 64
EX_NOHOST = 68
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports it: how ``events`` normally ends."""

EXIT_STATUS: dict[str, int] = {
    # The daemon's Error.code values (protocol.ERROR_CODES).
    "invalid_request": EX_PROTOCOL,
    "frame_too_large": EX_PROTOCOL,
    "permission_denied": EX_NOPERM,
    "not_found": EX_NOHOST,
    "conflict": EX_TEMPFAIL,
    "dependents_running": EX_TEMPFAIL,
    "shutting_down": EX_UNAVAILABLE,
    "config": EX_CONFIG,
    "failed": EX_SOFTWARE,
    "platform": EX_OSERR,
    "os_error": EX_OSERR,
    "internal": EX_SOFTWARE,
    "busy": EX_TEMPFAIL,
    "reply_too_large": EX_PROTOCOL,
    # Failures the client sees itself (client.CLIENT_CODES).
    "unreachable": EX_UNAVAILABLE,
    "closed": EX_UNAVAILABLE,
    "socket_permission": EX_NOPERM,
    "timeout": EX_TEMPFAIL,
    "bad_frame": EX_PROTOCOL,
    "bad_version": EX_PROTOCOL,
    "bad_request": EX_PROTOCOL,
    "untrusted_socket": EX_NOPERM,
}
"""Error code → sysexits(3) status; a code this vimagectl does not know exits 70."""


def exit_status(code: str | None) -> int:
    """The sysexits(3) status for an error code (``None``: an outcome without one, ``failed``)."""
    return EXIT_STATUS.get(code or "failed", EX_SOFTWARE)


class Sysexits:
    """The exit mapping of an ordinary verb: a message on stderr, a sysexits(3) status."""

    def usage(self, text: str) -> int:
        print(f"vimagectl: {text}", file=sys.stderr)
        return EX_USAGE

    def failure(self, message: str, code: str) -> int:
        print(f"vimagectl: {message}", file=sys.stderr)
        return exit_status(code)


SYSEXITS = Sysexits()
