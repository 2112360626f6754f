"""Errors of vimaged: the one hierarchy.

Each class's ``code`` is its wire error code (``protocol.Error.code``) and maps to one
sysexits(3) exit status in vimagectl. Platforms and the netgraph binding raise only
``OSError``; domain code raises these, chained. The daemon's own exit statuses (sysexits(3))
for a state dir or a socket it cannot use are here too.
"""

from __future__ import annotations

import errno
import os
from typing import Any, ClassVar


class VimagedError(Exception):
    """Base of every error that reaches a client as ``Error(code=...)``."""

    code: ClassVar[str] = "internal"

    def __init_subclass__(cls, *, code: str, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.code = code


class ConfigError(VimagedError, code="config"):
    """rc.conf(5) content that cannot be used; the message names file, line or variable."""


class NotFoundError(VimagedError, code="not_found"):
    """A vimage name that is not configured."""


class ConflictError(VimagedError, code="conflict"):
    """A transition not allowed from the current state, or a resource held by another vimage."""


class DependentsRunningError(ConflictError, code="dependents_running"):
    """A stop of a vimage that running vimages depend on (``_depend``): it names them; a
    stop ``with_dependents`` stops them first."""


class ShuttingDownError(VimagedError, code="shutting_down"):
    """The daemon is stopping and takes no new mutations."""


class PermissionDeniedError(VimagedError, code="permission_denied"):
    """The peer's credentials do not allow the request."""


class OperationFailedError(VimagedError, code="failed"):
    """A start, stop or restart failed; everything done so far was rolled back.

    ``errno_name``: the errno of the OSError it stands for (``"EBUSY"``), when there was one.
    """

    def __init__(self, message: str, *, errno_name: str | None = None) -> None:
        super().__init__(message)
        self.errno_name = errno_name


class PlatformError(VimagedError, code="platform"):
    """The platform cannot run vimages (missing kernel feature, module, privilege)."""


class InvalidRequestError(VimagedError, code="invalid_request"):
    """A well-formed request that asks for something meaningless (no names, say)."""


EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
"""sysexits(3): the daemon's exit statuses (vimagectl, stdlib only, keeps its own table)."""


class StateDirError(VimagedError, code="failed"):
    """The state dir or the journal in it cannot be trusted or used; ``exit_status`` is the
    sysexits(3) status the daemon ends with."""

    exit_status: ClassVar[int] = EX_CONFIG

    def __init__(self, message: str, *, exit_status: int | None = None) -> None:
        super().__init__(message)
        if exit_status is not None:
            self.exit_status = exit_status  # type: ignore[misc]


class DaemonRunningError(StateDirError, code="failed"):
    """Another daemon holds the state dir, the socket's lock, or listens on the socket:
    EX_UNAVAILABLE either way, so rc scripts see one status. ``errno`` is EADDRINUSE, what a
    bind(2) on a socket in use says."""

    exit_status: ClassVar[int] = EX_UNAVAILABLE
    errno: ClassVar[int] = errno.EADDRINUSE


PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
"""The errnos of a permission problem (an unprivileged daemon says it needs root)."""


def errno_name(exc: BaseException) -> str | None:
    """The symbolic name of an OSError's errno (``"EBUSY"``), for the wire: scripts tell
    EBUSY from EEXIST without parsing text. None for anything else, or an errno no name has."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    return errno.errorcode.get(exc.errno)


def describe_oserror(exc: OSError) -> str:
    """``subject: what went wrong (ENAME)``, the subject being the file name if there is one:
    ``em1: device busy (EBUSY)``, never ``[Errno 16] Device busy: 'em1'`` (issue 13).

    The kernel's wording is lowercased at its start ("Device busy" -> "device busy"), unless it
    starts with an acronym, as in ``EADDRINUSE``'s "Address already in use". An errno no name
    has is shown as ``errno N``.
    """
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno is not None else "") or str(exc)
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[:1].lower() + text[1:]
    if exc.errno is not None:
        text = f"{text} ({errno_name(exc) or f'errno {exc.errno}'})"
    subject = exc.filename
    if exc.filename2 is not None:
        subject = f"{subject} -> {exc.filename2}"
    return f"{subject}: {text}" if subject is not None else text


def error_text(exc: BaseException) -> str:
    """What went wrong, in one line, for any exception a step may raise (a log line, an
    Outcome's message): an OSError in words (:func:`describe_oserror`), else its text."""
    if isinstance(exc, OSError):
        return describe_oserror(exc)
    if type(exc).__name__ == "Cancelled":  # trio.Cancelled, without importing trio here
        return "cancelled"
    return str(exc) or type(exc).__name__
