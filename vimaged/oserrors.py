"""OSError in words, for every message a person reads: ``em1: device busy (EBUSY)``.

``str(OSError)`` reads ``[Errno 16] Device busy: 'em1'``: an errno number nobody looks up, and
a quoted subject. Standard library only: vimagectl words its own socket errors with this too.
"""

from __future__ import annotations

import errno
import os

PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def errno_name(number: int | None) -> str:
    """``EBUSY`` for 16; the number itself if the system has no name for it."""
    if number is None:
        return "no errno"
    return errno.errorcode.get(number, f"errno {number}")


def describe_oserror(exc: OSError) -> str:
    """``subject: what went wrong (ENAME)``, the subject being the file name if there is one.

    The kernel's wording is lowercased at its start ("Device busy" -> "device busy"), unless it
    starts with an acronym, as in ``EADDRINUSE``'s "Address already in use".
    """
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno is not None else "") or str(exc)
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[:1].lower() + text[1:]
    if exc.errno is not None:
        text = f"{text} ({errno_name(exc.errno)})"
    subject = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        subject = f"{subject} -> {exc.filename2}"
    return f"{subject}: {text}" if subject is not None else text


def error_text(exc: BaseException) -> str:
    """Any exception for a log line or message: an OSError in words, else its text."""
    if isinstance(exc, OSError):
        return describe_oserror(exc)
    return str(exc) or type(exc).__name__
