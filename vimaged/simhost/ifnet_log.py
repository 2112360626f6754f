"""Simulated host layer: the devctl(4) interface notices of the simulated host.

What sys/net/if.c tells devd (sys/kern/kern_devctl.c devctl_notify, system ``IFNET``):

- ``ATTACH`` from if_attach_internal, ``DETACH`` from if_detach_internal, each only when the
  interface is in the default (host) vnet: ``if (IS_DEFAULT_VNET(curvnet))``. if_vmove runs
  both, so moving into a jail is a DETACH on the host and coming home an ATTACH, while
  attaching and detaching inside a jail's vnet say nothing;
- ``RENAME`` (``name=NEW``) from if_rename, whichever vnet the interface is in.

The log numbers events from 1; a watcher asks for those after the last it saw (RPC
``watch_ifnets``). It keeps the newest :data:`LOG_SIZE`, as devctl keeps a bounded queue and
drops the oldest (kern_devctl.c devctl_alloc_dei): a watcher further behind is told it lost
some. A reset is a reboot: a new log under a new boot id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

LOG_SIZE = 1024
HOST_VNET = 0


@dataclass(frozen=True)
class IfnetNotice:
    seq: int
    kind: str
    """``ATTACH``, ``DETACH`` or ``RENAME``, devctl's words."""
    name: str
    newname: str | None = None


@dataclass
class IfnetLog:
    seq: int = 0
    notices: list[IfnetNotice] = field(default_factory=list)
    on_notice: Callable[[], None] | None = None
    """Set by the server to wake long polls."""

    def notify(self, kind: str, name: str, vnet: int, newname: str | None = None) -> None:
        """devctl_notify("IFNET", name, kind, ...) as if.c calls it from vnet ``vnet``."""
        if kind in ("ATTACH", "DETACH") and vnet != HOST_VNET:
            return  # IS_DEFAULT_VNET(curvnet) is false inside a jail's vnet
        self.seq += 1
        self.notices.append(IfnetNotice(self.seq, kind, name, newname))
        del self.notices[:-LOG_SIZE]
        if self.on_notice is not None:
            self.on_notice()

    def since(self, after: int) -> list[IfnetNotice] | None:
        """Notices after number ``after``; ``None`` if some of those were already dropped."""
        if after > self.seq or after < 0:
            return None
        first = self.notices[0].seq if self.notices else self.seq + 1
        if after + 1 < first:
            return None
        return self.notices[after + 1 - first :]  # seqs are consecutive: a slice, not a scan
