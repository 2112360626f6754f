"""Every name rule of vimaged, defined once: vimage names, interface names, ``ng{i}_{alias}``.

Standard library only and importing nothing of vimaged, so every layer may use it: config
(rc.conf values), protocol (the msgspec pattern of request names), the platforms and the
netgraph binding (checked again before a name reaches the kernel). vimagectl does not import
it: it checks names with the pattern of the generated wire schema, which comes from here.
The simulated host keeps its own ``IFNAMSIZ`` on purpose (it models the kernel, not us).
"""

from __future__ import annotations

import re
from typing import Final

IFNAMSIZ: Final = 16
"""``char ifr_name[IFNAMSIZ]`` (sys/net/if.h; ``IFNAMSIZ`` in linux/if.h too), NUL included."""
IFNAME_MAX: Final = IFNAMSIZ - 1
"""The longest interface name the kernel accepts: 15 characters."""

VIMAGE_NAME_MAX: Final = 31
"""The platforms' limit (both create ``vimaged_*`` objects named after it)."""
VIMAGE_NAME_PATTERN: Final = rf"^[A-Za-z][A-Za-z0-9_]{{0,{VIMAGE_NAME_MAX - 1}}}\Z"
"""A letter first (jail(8) reads a number as a jid, sh a leading digit as no name), then sh
identifier characters (the name sits in ``vimage_NAME_vnets``). ``\\Z``, not ``$``: msgspec
uses ``re.search`` and ``$`` also matches before a trailing newline (``"web\\n"``)."""

ALIAS_PATTERN: Final = r"^(?![0-9]+\Z)[A-Za-z0-9_]+\Z"
"""``vimage_NAME_ifname``, the alias in ``ng{i}_{alias}``: sh identifier characters, not only
digits; its length is bounded by :data:`IFNAME_MAX` through :func:`bridged_ifname_problem`."""

IFNAME_PATTERN: Final = rf"^[A-Za-z0-9_][A-Za-z0-9_.:-]{{0,{IFNAME_MAX - 1}}}\Z"
"""An existing interface (a parent NIC, a NIC to move): FreeBSD's driver-unit names, VLANs
(``igb0.100``) and aliases (``em0:1``); no blank, ``/``, quote, nor a leading ``-`` (an option
to ifconfig(8) in a hook) or ``.`` (``..`` is a path)."""

NEW_IFNAME_PATTERN: Final = rf"^[A-Za-z0-9_][A-Za-z0-9_-]{{0,{IFNAME_MAX - 1}}}\Z"
"""An interface or netgraph node vimaged creates (``ng0_web``): an existing-interface name
without ``.`` and ``:``, which netgraph addresses and Linux's ``dev_valid_name`` refuse."""

SANDBOX_IFNAME_PATTERN: Final = rf"^[^/:\s]{{1,{IFNAME_MAX}}}\Z"
"""CNI_IFNAME, the name a container runtime picks inside its sandbox: what the kernels take
(no ``/``, ``:`` or blank); the platform refuses what its kernel would."""

_VIMAGE_NAME = re.compile(VIMAGE_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_IFNAME = re.compile(IFNAME_PATTERN)
_NEW_IFNAME = re.compile(NEW_IFNAME_PATTERN)


def is_vimage_name(name: str) -> bool:
    return _VIMAGE_NAME.match(name) is not None


def is_alias(alias: str) -> bool:
    return _ALIAS.match(alias) is not None


def is_ifname(ifname: str) -> bool:
    return _IFNAME.match(ifname) is not None


def is_new_ifname(ifname: str) -> bool:
    return _NEW_IFNAME.match(ifname) is not None


def check_vimage_name(name: str) -> str:
    """``name``, or ``ValueError`` saying what a vimage name is."""
    return _checked(is_vimage_name(name), "vimage name", name, _VIMAGE_NAME_RULE)


def check_ifname(ifname: str) -> str:
    """``ifname`` of an existing interface, or ``ValueError`` naming the problem."""
    return _checked(is_ifname(ifname), "interface name", ifname, _IFNAME_RULE)


def check_new_ifname(ifname: str) -> str:
    """``ifname`` for an interface or node vimaged creates, or ``ValueError``."""
    return _checked(is_new_ifname(ifname), "new interface name", ifname, _NEW_IFNAME_RULE)


_VIMAGE_NAME_RULE = f"a letter, then letters, digits or '_', at most {VIMAGE_NAME_MAX} in all"
_IFNAME_RULE = f"1-{IFNAME_MAX} letters, digits or '_.:-', not starting with '.:-'"
_NEW_IFNAME_RULE = f"1-{IFNAME_MAX} letters, digits, '_' or '-', not starting with '-'"


def _checked(good: bool, what: str, name: str, rule: str) -> str:
    if not good:
        raise ValueError(f"bad {what} {name!r}: {rule}")
    return name


def bridged_ifname(index: int, alias: str) -> str:
    """The ``index``-th bridged interface of the vimage whose alias is ``alias``."""
    return f"ng{index}_{alias}"


def bridged_ifname_problem(count: int, alias: str, *, setting: str = "the alias") -> str | None:
    """Why ``count`` bridged interfaces of ``alias`` cannot all be named, or ``None``.

    Names are never truncated: the last one, the longest, must fit :data:`IFNAME_MAX`;
    ``setting`` is what the message tells the user to shorten.
    """
    if count <= 0:
        return None
    longest = bridged_ifname(count - 1, alias)
    if len(longest) <= IFNAME_MAX:
        return None
    room = IFNAME_MAX - len(longest) + len(alias)
    return (
        f"interface name {longest} is {len(longest)} characters, more than {IFNAME_MAX}; "
        f"set {setting} to a shorter alias (at most {room} characters)"
    )
