"""Platform layer, parent NICs of netgraph bridges: what a bridge needs of them, and back.

When vimaged builds the bridge of a NIC it brings the NIC up (``ng_ether_rcv_lower`` in
sys/netgraph/ng_ether.c drops every frame the bridge sends while the NIC lacks
IFF_UP|IFF_DRV_RUNNING, and a down driver delivers nothing) and turns off the offloads that
mangle or filter the eifaces' frames (``-tso4 -tso6 -vlanhwfilter -vlanhwtso``, as ngbuddy
does: ng_ether already zeroes ``if_hwassist`` while ``upper`` is connected, but TSO and VLAN
filtering are capabilities of their own). What it changed is written to a small record file
before it is changed, so the daemon that releases the bridge, a restarted one included,
restores exactly that: a NIC that was up stays up, an offload the admin had off stays off.

The platform supplies the four ifnet operations (:class:`NicOps`): ioctls on FreeBSD, the sim
host's RPCs on sim.
"""

from __future__ import annotations

import errno as errno_codes
import os
from typing import TYPE_CHECKING, Protocol

import msgspec
import structlog

from vimaged import statedir

if TYPE_CHECKING:
    from pathlib import Path

log = structlog.get_logger()

IFCAP_TSO4 = 0x00100
IFCAP_TSO6 = 0x00200
IFCAP_VLAN_HWFILTER = 0x10000
IFCAP_VLAN_HWTSO = 0x40000
"""``sys/net/if.h``."""
BRIDGED_OFFLOADS_OFF = IFCAP_TSO4 | IFCAP_TSO6 | IFCAP_VLAN_HWFILTER | IFCAP_VLAN_HWTSO
"""Offloads turned off while a NIC is bridged (ngbuddy's list)."""


class NicOps(Protocol):
    """The ifnet operations :class:`ParentNics` needs, on the host's vnet."""

    async def is_up(self, ifname: str) -> bool:
        """IFF_UP (SIOCGIFFLAGS)."""

    async def set_up(self, ifname: str, up: bool) -> None:
        """Set or clear IFF_UP (SIOCSIFFLAGS)."""

    async def capabilities(self, ifname: str) -> tuple[int, int]:
        """``(supported, enabled)`` IFCAP bits (SIOCGIFCAP's reqcap, curcap)."""

    async def set_capabilities(self, ifname: str, enabled: int) -> None:
        """Make ``enabled`` the enabled IFCAP bits (SIOCSIFCAP)."""


class ParentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What vimaged changed on a parent NIC when it built the NIC's bridge."""

    was_up: bool
    caps_cleared: int = 0
    """IFCAP bits that were enabled and vimaged turned off."""


class ParentNics:
    """Prepares a parent NIC when its bridge is built and restores it when it is released.

    Args:
        directory: where the records live (root's, 0700); created on first use.
        ops: the ifnet operations.
        offloads_off: IFCAP bits to turn off while bridged (0 keeps the offloads).
    """

    def __init__(
        self, directory: Path, ops: NicOps, *, offloads_off: int = BRIDGED_OFFLOADS_OFF
    ) -> None:
        self.directory = directory
        self.ops = ops
        self.offloads_off = offloads_off

    def _path(self, parent: str) -> Path:
        # The parent is a checked ifname (no '/', no NUL); '.' and ':' are safe in a file name.
        return self.directory / f"parent.{parent}.json"

    def record(self, parent: str) -> ParentRecord | None:
        """The record of ``parent``, or None (not built by vimaged, or already restored)."""
        text = statedir.read_text(str(self._path(parent)))  # O_NOFOLLOW
        if text is None:
            return None
        raw = text.encode()
        try:
            return msgspec.json.decode(raw, type=ParentRecord)
        except msgspec.DecodeError:
            return None  # a torn or foreign file: nothing is proven, nothing is undone

    def _write(self, parent: str, record: ParentRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(parent)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.encode(record))
        os.replace(tmp, path)

    async def prepare(self, parent: str) -> None:
        """Bring ``parent`` up and turn its bridged offloads off, recording the old state.

        A record already there (left by a daemon killed before its release) holds the
        state from before vimaged touched the NIC, and is kept. IFF_UP failing is an error
        (the bridge would be silent); an offload the driver refuses is logged and kept.
        """
        record = self.record(parent)
        if record is None:
            _, enabled = await self.ops.capabilities(parent)
            record = ParentRecord(
                was_up=await self.ops.is_up(parent), caps_cleared=enabled & self.offloads_off
            )
            self._write(parent, record)
        if not await self.ops.is_up(parent):
            await self.ops.set_up(parent, True)
            log.info("parent.raised", ifname=parent)
        _, enabled = await self.ops.capabilities(parent)
        if enabled & record.caps_cleared:
            try:
                await self.ops.set_capabilities(parent, enabled & ~record.caps_cleared)
            except OSError as exc:
                log.warning("parent.offloads_kept", ifname=parent, errno=exc.errno)
                self._write(parent, ParentRecord(was_up=record.was_up, caps_cleared=0))

    async def restore(self, parent: str) -> None:
        """Put back what :meth:`prepare` changed on ``parent``, then drop the record.

        A NIC that is gone (ENXIO) drops the record; any other failure keeps it, so the
        next build keeps the original state and the next release tries again.
        """
        record = self.record(parent)
        if record is None:
            return
        try:
            if record.caps_cleared:
                _, enabled = await self.ops.capabilities(parent)
                await self.ops.set_capabilities(parent, enabled | record.caps_cleared)
            if not record.was_up:
                await self.ops.set_up(parent, False)
                log.info("parent.lowered", ifname=parent)
        except OSError as exc:
            if exc.errno != errno_codes.ENXIO:
                log.warning("parent.restore_failed", ifname=parent, errno=exc.errno)
                return
        self._path(parent).unlink(missing_ok=True)
