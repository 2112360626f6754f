"""Simulated host layer: ng_eiface(4) of the simulated kernel (ng_eiface.c)."""

from __future__ import annotations

import errno
import hashlib
from typing import TYPE_CHECKING

from vimaged.simhost.ng_base import Node
from vimaged.simhost.ng_message import (
    ETHER_ADDR_LEN,
    IFNAMSIZ,
    NGM_EIFACE_COOKIE,
    NGM_EIFACE_GET_IFADDRS,
    NGM_EIFACE_GET_IFNAME,
    NGM_EIFACE_SET,
    NgMesg,
    fail,
    fixed,
)
from vimaged.simhost.ng_parse import Command, _parse_mac, _render_mac, _render_string

if TYPE_CHECKING:
    from vimaged.simhost.ng_base import Hook, IfnetLike, NgBase


class EifaceNode(Node):
    """ng_eiface(4): an ``ngethN`` ifnet; lives until NGM_SHUTDOWN (ng_eiface.c)."""

    type_name = "eiface"
    cookie = NGM_EIFACE_COOKIE

    def __init__(self, kernel: NgBase, node_id: int, ifnet: IfnetLike) -> None:
        super().__init__(kernel, node_id)
        self.ifnet = ifnet

    def newhook(self, name: str) -> None:
        # ng_eiface_newhook: only "ether" (EPFNOSUPPORT), once (EISCONN).
        if name != "ether":
            fail(errno.EPFNOSUPPORT, f"eiface hook {name!r}")
        if "ether" in self.hooks:
            fail(errno.EISCONN, name)

    def rcvdata(self, hook: Hook, frame: bytes) -> None:
        """ng_eiface_rcvdata: dropped (ENETDOWN) unless IFF_UP and RUNNING, else if_input."""
        if self.ifnet.up:
            self.kernel.host.stack_input(self.ifnet, frame)

    def output(self, frame: bytes) -> None:
        """ng_eiface_start: the ifnet's output queue goes out the ``ether`` hook, if any."""
        self.kernel.send_data(self.hooks.get("ether"), frame)

    def shutdown(self) -> None:
        # ng_eiface_rmnode switches to ifp->if_vnet: the ifnet goes wherever it lives.
        self.kernel.destroy(self)

    def destroyed(self) -> None:
        self.kernel.host.detach_eiface(self.ifnet)

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        if msg.typecookie != NGM_EIFACE_COOKIE:
            return super().rcvmsg(msg)
        if msg.cmd == NGM_EIFACE_GET_IFNAME:
            return fixed(self.ifnet.name, IFNAMSIZ)
        if msg.cmd == NGM_EIFACE_GET_IFADDRS:
            return b""  # no addresses are modelled
        if msg.cmd == NGM_EIFACE_SET:
            if msg.arglen != ETHER_ADDR_LEN:
                fail(errno.EINVAL, "set needs 6 bytes")
            self.ifnet.mac = msg.data[:ETHER_ADDR_LEN]  # if_setlladdr
            return None
        fail(errno.EINVAL, f"eiface command {msg.cmd}")

    def commands(self) -> tuple[Command, ...]:
        # ng_eiface.c ng_eiface_cmdlist
        return (
            Command("getifname", NGM_EIFACE_GET_IFNAME, render_reply=_render_string),
            Command("set", NGM_EIFACE_SET, _parse_mac, _render_mac),
        )

    def describe(self) -> dict[str, object]:
        return {"ifname": self.ifnet.name}


def eiface_mac(hostuuid: str, ifname: str) -> bytes:
    """ether_gen_addr (if_ethersubr.c, FreeBSD 13+): FreeBSD's OUI 58:9c:fc, locally
    administered, the rest from a hash of ``kern.hostuuid`` and the interface name."""
    digest = hashlib.sha1(f"{hostuuid}-{ifname}".encode()).digest()
    return bytes([0x58 | 0x02, 0x9C, 0xFC]) + digest[:3]
