"""Limits on rc.conf(5) values: what passed configtest can always be encoded and executed.

A value goes on the wire (msgspec: valid UTF-8 only), into execve(2) and jail(2) (C strings:
no NUL) and into logs; one that cannot would fail later, with a vimage half started or a
reply that cannot be encoded. So every value is checked here, by :mod:`vimaged.config`, and
every number has a range (a 5,000-digit count or a 100 ns interval is a mistake, not a
setting). The limits are documented in vimage.conf(5) under "Limits".
"""

from __future__ import annotations

from typing import Final

VALUE_MAX: Final = 64 * 1024
"""Bytes (UTF-8) of any variable not limited more tightly below."""
LIST_MAX: Final = 8 * 1024 * 1024
"""Bytes of ``vimage_list``: 250,000 names of 31 characters fit."""
COMMAND_MAX: Final = 8 * 1024
"""Bytes of a command (``exec_*``, ``health_cmd``) and of ``parameters``: far below
``ARG_MAX`` (sys/sys/syslimits.h), and small enough that a vimage's status stays a small
reply."""
PATH_MAX: Final = 1023
"""Bytes of a path (``rootdir``, ``exec_consolelog``): ``PATH_MAX`` (1024, sys/sys/syslimits.h)
less the NUL."""
HOSTNAME_MAX: Final = 255
"""Bytes of ``hostname``: ``MAXHOSTNAMELEN`` (256, sys/sys/param.h) less the NUL."""
NUMBER_DIGITS_MAX: Final = 20
"""Characters of a number, checked before converting (Python refuses >4,300 digits)."""

COMMAND_SETTINGS: Final = (
    "exec_start",
    "exec_stop",
    "exec_prestart",
    "exec_poststart",
    "exec_prestop",
    "exec_poststop",
    "health_cmd",
    "parameters",
)
PATH_SETTINGS: Final = ("rootdir", "exec_consolelog")

SECONDS_RANGES: Final[dict[str, tuple[float, float]]] = {
    "exec_timeout": (0, 86400),
    "stop_timeout": (0, 3600),
    "health_interval": (0.1, 86400),
    "health_timeout": (0.1, 3600),
    "health_start_period": (0, 86400),
    "restart_window": (1, 7 * 86400),
}
"""Inclusive bounds, in seconds, per setting; 0 for ``exec_timeout`` means no limit."""
INTEGER_RANGES: Final[dict[str, tuple[int, int]]] = {
    "health_retries": (1, 1000),
    "restart_limit": (1, 1000),
    "devfs_ruleset": (0, 65535),
}
"""Inclusive bounds per setting; ``devfs_ruleset`` is a ``u_short`` in devfs(8)."""


def text_problem(value: str) -> str | None:
    """What makes ``value`` impossible to pass on (NUL, invalid UTF-8), or ``None``.

    rc.conf files are read with ``surrogateescape``: a byte that is not UTF-8 arrives as a
    lone surrogate, which msgspec refuses to encode.
    """
    if "\0" in value:
        return "contains a NUL byte"
    for index, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            return f"is not valid UTF-8 (byte {index + 1})"
    return None


def size_problem(value: str, maximum: int) -> str | None:
    """``value`` longer than ``maximum`` bytes of UTF-8, or ``None``."""
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > maximum:
        return f"is {size} bytes long, more than {maximum}"
    return None


def has_control(value: str) -> bool:
    """A C0 control character or DEL: never in a hostname or a path vimaged takes."""
    return any(char < " " or char == "\x7f" for char in value)


def value_maximum(variable: str) -> int:
    """The byte limit any value of ``variable`` must keep; :data:`SETTING_MAX` is tighter."""
    return LIST_MAX if variable == "vimage_list" else VALUE_MAX


SETTING_MAX: Final[dict[str, int]] = {
    **dict.fromkeys(COMMAND_SETTINGS, COMMAND_MAX),
    **dict.fromkeys(PATH_SETTINGS, PATH_MAX),
    "hostname": HOSTNAME_MAX,
}
"""Byte limits of per-vimage settings (the suffix of ``vimage_NAME_``)."""
