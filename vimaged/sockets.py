"""Is anyone listening at a UNIX socket path? The one probe, for the daemon and the sim host.

A connect answers it without reading or writing a byte. Used by vimaged/listener.py (refuse
to replace a live daemon's control socket), vimaged/simhost/server.py (refuse to replace a
live sim host's sockets) and vimaged/platforms/sim.py (start a sim host only if none serves).
Standard library only; blocking, so trio callers run it in a thread.
"""

from __future__ import annotations

import socket

LIVE = "live"
"""Connected; or the connect timed out or would block (a full listen queue on Linux)."""
REFUSED = "refused"
"""ECONNREFUSED: nobody listens, or (FreeBSD) a live listener's queue is full: ask again."""
GONE = "gone"
"""ENOENT: no socket at the path any more."""


def probe_socket(path: str, kind: int = socket.SOCK_STREAM, *, timeout: float = 1.0) -> str:
    """:data:`LIVE`, :data:`REFUSED` or :data:`GONE` for the socket at ``path``.

    Raises:
        OSError: any other failure to connect (EACCES, EPROTOTYPE for the wrong ``kind``).
    """
    with socket.socket(socket.AF_UNIX, kind) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(path)
        except FileNotFoundError:
            return GONE
        except ConnectionRefusedError:
            return REFUSED
        except (TimeoutError, BlockingIOError):
            return LIVE  # someone listens, too busy to accept yet
    return LIVE


def socket_is_live(path: str, kind: int = socket.SOCK_STREAM) -> bool:
    """True if something accepts connections at ``path``; any failure to connect is False."""
    try:
        return probe_socket(path, kind) == LIVE
    except OSError:
        return False
