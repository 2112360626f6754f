"""The CNI methods of the platforms whose sandbox is a VNET jail (freebsd, sim), written once.

Both platforms mix :class:`JailCniMethods` in; the work is :mod:`jail_sandbox`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from vimaged.platforms import jail_sandbox

if TYPE_CHECKING:
    import trio

    from vimaged.platforms import IfnetInfo, Platform, SandboxIfnet


class JailCniMethods:
    """``create_in_sandbox``, ``sandbox_ifnet`` and ``detach_from_sandbox`` of a netgraph
    platform; the class sets ``_sandbox_lock`` (one rename-and-move at a time)."""

    _sandbox_lock: trio.Lock

    def _plat(self) -> Platform:
        return cast("Platform", self)  # a mixin: the class it is mixed into is the Platform

    async def create_in_sandbox(self, want: SandboxIfnet) -> None:
        await jail_sandbox.create(
            self._plat(), self._sandbox_lock, want.parent, want.ifname, want.mac, want.sandbox,
            want.newname, mtu=want.mtu, addresses=want.addresses, routes=want.routes,
        )  # fmt: skip

    async def sandbox_ifnet(self, sandbox: str, ifname: str) -> IfnetInfo | None:
        return await jail_sandbox.inspect(self._plat(), sandbox, ifname)

    async def detach_from_sandbox(self, sandbox: str, ifname: str, mac: str) -> None:
        await jail_sandbox.detach(self._plat(), sandbox, ifname, mac)
