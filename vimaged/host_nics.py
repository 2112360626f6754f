"""Domain layer: the one host-NIC check, of the daemon's start, of reload and of
``vimaged --check-config``: is every NIC the configuration names somewhere?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vimaged import config as config_mod
from vimaged.errors import ConfigError
from vimaged.platforms import HOST_JID

if TYPE_CHECKING:
    from collections.abc import Collection

    from vimaged.config import Config
    from vimaged.platforms import Platform


async def check_host_nics(
    cfg: Config, platform: Platform, held: Collection[str] = (), *, in_any_jail: bool = False
) -> None:
    """``ConfigError`` naming each ``_vnets``/``_bridges`` variable whose NIC is nowhere.

    A NIC counts as present on the host or in ``held`` (moved in by a running vimage, on its
    way home, or journaled as moved). ``in_any_jail``, for ``vimaged --check-config``, which
    cannot know what a running daemon holds: inside any jail counts too (``locate_ifnet``).
    The one check of the daemon's start, of reload and of ``--check-config``.
    """
    present = {i.name for i in await platform.list_ifnets(HOST_JID)} | set(held)
    wanted = {n for v in cfg.vimages for n in (*v.vnets, *(b.parent for b in v.bridges))}
    for nic in sorted(wanted - present) if in_any_jail else ():
        if await platform.locate_ifnet(nic) is not None:
            present.add(nic)
    config_mod.check_host_nics(cfg, present)


async def host_nic_warnings(
    cfg: Config, platform: Platform, held: Collection[str] = (), *, in_any_jail: bool = False
) -> list[str]:
    """:func:`check_host_nics` as warnings, one line per absent NIC: a vimage whose NIC is
    absent waits for it (arrivals.py), so the daemon's start, reload and ``--check-config``
    only say so (issue 13.5)."""
    try:
        await check_host_nics(cfg, platform, held, in_any_jail=in_any_jail)
    except ConfigError as exc:
        return [f"{line}; vimages using it wait for it" for line in str(exc).splitlines()]
    return []
