"""The one owner of "open a trusted state dir": who may own it, what may be in it, the lock.

The daemon runs as root; its state dir says which kernel objects it may destroy, and (linux)
which directory a health check runs ``/bin/sh`` from. Whoever can write there controls root. The
rules (docs/design.md, "Ownership and trust"):

- the state dir is a real directory (not a symbolic link), owned by root or the daemon's uid,
  not writable by group or others; missing, it is created mode 0700;
- every directory above it, up to ``/``, is owned by root or the daemon's uid and not writable by
  group or others, except that a sticky directory (``/tmp``) is accepted *as an ancestor*: the
  sticky bit stops others from renaming or removing an entry they do not own (as OpenSSH's
  ``safe_path`` walks up, but with sticky dirs allowed above, never as the state dir itself);
- every entry in it (and in its subdirectories) is a regular file or directory under the same
  owner and mode rule; a symbolic link, a fifo, a device is refused;
- files are opened with ``O_NOFOLLOW``: on FreeBSD a link gives EMLINK, on Linux ELOOP
  (open(2) on each); both mean "is a symbolic link";
- one daemon per state dir and per socket: ``vimaged.lock`` in the state dir and ``SOCKET.lock``
  beside the socket, each held with flock(2) for the daemon's life and naming its holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

# re-exported: the journal and the daemon's exit statuses import them from here
from vimaged.errors import EX_CANTCREAT as EX_CANTCREAT
from vimaged.errors import EX_CONFIG as EX_CONFIG
from vimaged.errors import EX_IOERR as EX_IOERR
from vimaged.errors import EX_TEMPFAIL as EX_TEMPFAIL
from vimaged.errors import EX_UNAVAILABLE as EX_UNAVAILABLE
from vimaged.errors import DaemonRunningError as DaemonRunningError
from vimaged.errors import StateDirError as StateDirError

SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})
"""What ``open(O_NOFOLLOW)`` of a symbolic link fails with: ELOOP on Linux, EMLINK on FreeBSD."""

LOCK_NAME = "vimaged.lock"


def is_symlink_error(exc: OSError) -> bool:
    """``exc`` is ``open(O_NOFOLLOW)`` refusing a symbolic link (on FreeBSD or Linux)."""
    return exc.errno in SYMLINK_ERRNOS


def _owner_ok(st: os.stat_result, uid: int) -> bool:
    return st.st_uid in (0, uid)


def _problem(st: os.stat_result, uid: int, *, ancestor: bool = False) -> str | None:
    """What is wrong with one path's ``lstat``, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not _owner_ok(st, uid):
        return f"it is owned by uid {st.st_uid}, not root" + (f" or uid {uid}" if uid else "")
    if st.st_mode & 0o022:
        if ancestor and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            return None
        return f"it is writable by {'others' if st.st_mode & 0o002 else 'its group'}"
    return None


def check_tree(path: str, uid: int) -> None:
    """Refuse ``path`` (an existing state dir) unless it, its ancestors and its contents
    follow the rules above.

    Raises:
        StateDirError: names the first offending path and what is wrong with it.
    """
    st = os.lstat(path)
    why = _problem(st, uid)
    if why is None and not stat.S_ISDIR(st.st_mode):
        why = "it is not a directory"
    if why is not None:
        raise StateDirError(f"state dir {path}: {why}")
    # The parent chain as the kernel resolves it: a link above is followed, then checked.
    here = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    while True:
        why = _problem(os.lstat(here), uid, ancestor=True)
        if why is not None:
            raise StateDirError(f"state dir {path}: directory above it {here}: {why}")
        if here == "/":
            break
        here = os.path.dirname(here)
    _check_contents(path, uid)


def _check_contents(directory: str, uid: int) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            why = _problem(st, uid)
            if why is None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                why = "it is neither a regular file nor a directory"
            if why is not None:
                raise StateDirError(f"state dir file {entry.path}: {why}")
            if stat.S_ISDIR(st.st_mode):
                _check_contents(entry.path, uid)


def open_state_dir(path: str, uid: int | None = None) -> str:
    """Create ``path`` (mode 0700, parents 0755) if missing, then check it (:func:`check_tree`).

    Returns the path, absolute.

    Raises:
        StateDirError: not trusted (EX_CONFIG), or it cannot be created (EX_CANTCREAT).
    """
    uid = os.geteuid() if uid is None else uid
    path = os.path.abspath(path)
    try:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    except OSError as exc:
        raise StateDirError(
            f"state dir {path}: cannot create it: {exc.strerror}", exit_status=EX_CANTCREAT
        ) from None
    try:
        check_tree(path, uid)
    except OSError as exc:
        raise StateDirError(f"state dir {path}: cannot check it: {exc.strerror}") from None
    return path


def open_file(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` with ``O_NOFOLLOW | O_CLOEXEC``; a link planted at ``path`` raises
    ``OSError(ELOOP)`` whatever the system's errno for it, so callers test one errno."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if is_symlink_error(exc):
            raise OSError(errno.ELOOP, "it is a symbolic link", path) from None
        raise


def read_text(path: str) -> str | None:
    """A state file's text, or None when it does not exist."""
    try:
        fd = open_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    """Replace a state file's content (created 0600)."""
    fd = open_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


class HeldLock:
    """An flock(2) held on one file while the daemon lives; the holder is written into it."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the flock
            self.fd = -1


def acquire_lock(path: str, holder: str, *, what: str, subject: str) -> HeldLock:
    """Take the exclusive lock on ``path`` (created 0600, never through a link) and write
    ``holder`` into it. ``what`` and ``subject`` name the thing locked (``state dir``, its path).

    Raises:
        DaemonRunningError: another process holds it; names the holder it recorded.
        StateDirError: the lock file cannot be opened or is another user's.
    """
    try:
        fd = open_file(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        status = EX_CONFIG if exc.errno == errno.ELOOP else EX_CANTCREAT
        raise StateDirError(
            f"{what} lock {path}: cannot open it: {exc.strerror}", exit_status=status
        ) from None
    try:
        st = os.fstat(fd)
        why = _problem(st, os.geteuid())
        if why is None and not stat.S_ISREG(st.st_mode):
            why = "it is not a regular file"
        if why is not None:
            raise StateDirError(f"{what} lock {path}: {why}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise DaemonRunningError(
                f"{what} {subject} is in use by another vimaged ({other})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd, path)
