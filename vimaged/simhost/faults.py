"""Simulated host layer: the fault injection spec (``--sim-faults``, RPC ``set_faults``).

A spec is a list of ``key=value`` items separated by commas or white space; docs/sim.md is the
reference. Unknown keys and malformed values raise ``ValueError`` naming the item, so nothing is
applied from a spec that is partly wrong.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field

DEFAULT_VNET_ERRNO = errno.EBUSY
"""if_vmove_loan/if_vmove_reclaim (sys/net/if.c) answer EBUSY while the source vnet is
shutting down (``VNET_IS_SHUTTING_DOWN``): the transient failure of ``ifconfig IF -vnet J``."""


@dataclass
class Faults:
    dying_seconds: float = 0.0
    """A removed jail lingers dying this long, its ifnets still inside (prison references)."""
    reclaim_failures: int = 0
    """The next N SIOCSIFRVNET calls fail with :attr:`reclaim_errno`."""
    reclaim_errno: int = DEFAULT_VNET_ERRNO
    move_failures: int = 0
    """The next N SIOCSIFVNET calls fail with :attr:`move_errno`."""
    move_errno: int = DEFAULT_VNET_ERRNO
    vanish: dict[str, float] = field(default_factory=dict)
    """Jail name → seconds after its creation when it is removed from outside (``jail -r``)."""
    link_race: int = 0
    """The next N bridge link hooks a client adds are taken first by another process."""
    learn_fail: int = 0
    """The next N MAC learnings of any bridge fail and count in memoryFailures."""


def _errno_value(text: str, item: str) -> int:
    if text.isdigit():
        return int(text)
    value = getattr(errno, text.upper(), None)
    if not isinstance(value, int) or not text.upper().startswith("E"):
        raise ValueError(f"fault {item!r}: {text!r} is not an errno name or number")
    return value


def _count(text: str, item: str) -> int:
    if not text.isdigit():
        raise ValueError(f"fault {item!r}: {text!r} is not a count")
    return int(text)


def _seconds(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"fault {item!r}: {text!r} is not a number of seconds") from None
    if value < 0 or value != value:
        raise ValueError(f"fault {item!r}: seconds must be >= 0")
    return value


def parse_faults(spec: str) -> Faults:
    """Parse a fault spec such as ``"dying=5, reclaim_fail=2:EBUSY, vanish=web@1.5"``."""
    faults = Faults()
    for item in re.split(r"[,\s]+", spec.strip()):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise ValueError(f"fault {item!r}: expected key=value")
        if key == "dying":
            faults.dying_seconds = _seconds(value, item)
        elif key in ("reclaim_fail", "move_fail"):
            count, _, err = value.partition(":")
            n = _count(count, item)
            code = _errno_value(err, item) if err else DEFAULT_VNET_ERRNO
            if key == "reclaim_fail":
                faults.reclaim_failures, faults.reclaim_errno = n, code
            else:
                faults.move_failures, faults.move_errno = n, code
        elif key == "vanish":
            name, at, delay = value.partition("@")
            if not name:
                raise ValueError(f"fault {item!r}: expected vanish=JAIL[@SECONDS]")
            faults.vanish[name] = _seconds(delay, item) if at else 0.0
        elif key == "link_race":
            faults.link_race = _count(value, item)
        elif key == "learn_fail":
            faults.learn_fail = _count(value, item)
        else:
            raise ValueError(
                f"fault {item!r}: unknown key {key!r} "
                "(dying, reclaim_fail, move_fail, vanish, link_race, learn_fail)"
            )
    return faults
