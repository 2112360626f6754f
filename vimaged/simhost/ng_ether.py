"""Simulated host layer: ng_ether(4) of the simulated kernel (ng_ether.c)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vimaged.simhost.ng_base import Node
from vimaged.simhost.ng_message import (
    ETHER_ADDR_LEN,
    IFNAMSIZ,
    NGM_ETHER_ADD_MULTI,
    NGM_ETHER_COOKIE,
    NGM_ETHER_DEL_MULTI,
    NGM_ETHER_DETACH,
    NGM_ETHER_GET_AUTOSRC,
    NGM_ETHER_GET_ENADDR,
    NGM_ETHER_GET_IFINDEX,
    NGM_ETHER_GET_IFNAME,
    NGM_ETHER_GET_PROMISC,
    NGM_ETHER_SET_AUTOSRC,
    NGM_ETHER_SET_ENADDR,
    NGM_ETHER_SET_PROMISC,
    U32,
    NgMesg,
    fail,
    fixed,
)
from vimaged.simhost.ng_parse import (
    Command,
    _parse_mac,
    _parse_u32,
    _render_mac,
    _render_string,
    _render_u32,
    _u32_arg,
)

if TYPE_CHECKING:
    from vimaged.simhost.ng_base import Hook, IfnetLike, NgBase


class EtherNode(Node):
    """ng_ether(4): one per Ethernet ifnet in the host vnet, named after it."""

    type_name = "ether"
    cookie = NGM_ETHER_COOKIE
    HOOKS = ("lower", "upper", "orphans", "divert")

    def __init__(self, kernel: NgBase, node_id: int, ifnet: IfnetLike) -> None:
        super().__init__(kernel, node_id)
        self.ifnet = ifnet
        self.promisc = False
        # ng_ether.c@039ea811 zero-fills the private state at attach (autosrc off, as
        # ng_ether(4) says); only a reset turns it on (see lineage.md §3.4).
        self.autosrc = False
        self.multi: set[bytes] = set()
        self.hwassist = ifnet.hwassist  # ng_ether_attach: priv->hwassist = ifp->if_hwassist
        self.down_drops = 0
        """Frames ng_ether_rcv_lower refused with ENETDOWN (the parent lacked IFF_UP)."""

    def newhook(self, name: str) -> None:
        # ng_ether_newhook: divert is an alias of lower; unknown names EINVAL; EISCONN if taken.
        if name not in self.HOOKS:
            fail(errno.EINVAL, f"ether hook {name!r}")
        lower = {"lower", "divert"}
        if name in lower and any(h in self.hooks for h in lower):
            fail(errno.EISCONN, name)
        if name == "upper":
            # "Disable hardware checksums while 'upper' hook is connected"
            self.ifnet.hwassist = 0

    def disconnected(self, hook: Hook) -> None:
        if hook.name == "upper":
            self.ifnet.hwassist = self.hwassist  # ng_ether_disconnect restores it
        # ng_ether_disconnect: the last hook gone → ng_rmnode_self → reset (node revived).
        if not self.hooks:
            self.reset()

    # -- data plane ------------------------------------------------------------------------

    def _hook(self, *names: str) -> Hook | None:
        return next((self.hooks[n] for n in names if n in self.hooks), None)

    def rcvdata(self, hook: Hook, frame: bytes) -> None:
        """ng_ether_rcvdata: lower/divert/orphans to the wire, upper to the host stack."""
        if hook.name == "upper":
            # ng_ether_rcv_upper: as if received from the wire (ether_demux).
            self.kernel.host.stack_input(self.ifnet, frame)
            return
        # ng_ether_rcv_lower: "Check whether interface is ready for packets".
        if not self.ifnet.up:
            self.down_drops += 1
            return  # ENETDOWN, the frame is freed
        if self.autosrc and self.ifnet.mac is not None and len(frame) >= 12:
            frame = frame[:6] + self.ifnet.mac + frame[12:]  # ng_ether_rcv_lower: autosrc
        self.kernel.host.transmit(self.ifnet, frame)

    def input(self, frame: bytes) -> None:
        """ng_ether_input: a frame from the wire goes out ``lower`` if connected, else up."""
        lower = self._hook("lower", "divert")
        if lower is not None and lower.peer is not None:
            self.kernel.send_data(lower, frame)
        else:
            self.kernel.host.stack_input(self.ifnet, frame)

    def output(self, frame: bytes) -> None:
        """ng_ether_output: the host stack's frame goes out ``upper`` if connected."""
        upper = self._hook("upper")
        if upper is not None and upper.peer is not None:
            self.kernel.send_data(upper, frame)
        else:
            self.kernel.host.transmit(self.ifnet, frame)

    def shutdown(self) -> None:
        # ng_ether_shutdown: unless detaching, the node is only reset and revived.
        for hook in list(self.hooks.values()):
            self.kernel.remove_hook(hook)
        self.reset()

    def reset(self) -> None:
        self.promisc = False
        self.autosrc = True

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        if msg.typecookie != NGM_ETHER_COOKIE:
            return super().rcvmsg(msg)
        cmd = msg.cmd
        if cmd == NGM_ETHER_GET_IFNAME:
            return fixed(self.ifnet.name, IFNAMSIZ)
        if cmd == NGM_ETHER_GET_IFINDEX:
            return U32.pack(self.ifnet.index)
        if cmd == NGM_ETHER_GET_ENADDR:
            return self.ifnet.mac or bytes(ETHER_ADDR_LEN)
        if cmd == NGM_ETHER_SET_ENADDR:
            if msg.arglen != ETHER_ADDR_LEN:
                fail(errno.EINVAL, "setenaddr needs 6 bytes")
            self.ifnet.mac = msg.data[:ETHER_ADDR_LEN]
            return None
        if cmd == NGM_ETHER_GET_PROMISC:
            return U32.pack(int(self.promisc))
        if cmd == NGM_ETHER_SET_PROMISC:
            self.promisc = _u32_arg(msg) != 0
            return None
        if cmd == NGM_ETHER_GET_AUTOSRC:
            return U32.pack(int(self.autosrc))
        if cmd == NGM_ETHER_SET_AUTOSRC:
            self.autosrc = _u32_arg(msg) != 0
            return None
        if cmd in (NGM_ETHER_ADD_MULTI, NGM_ETHER_DEL_MULTI):
            if msg.arglen != ETHER_ADDR_LEN:
                fail(errno.EINVAL, "multicast address needs 6 bytes")
            addr = msg.data[:ETHER_ADDR_LEN]
            if cmd == NGM_ETHER_ADD_MULTI:
                if addr in self.multi:
                    fail(errno.EADDRINUSE, "multicast membership exists")  # if_addmulti
                self.multi.add(addr)
            else:
                if addr not in self.multi:
                    fail(errno.ENOENT, "no such multicast membership")  # if_delmulti
                self.multi.discard(addr)
            return None
        if cmd == NGM_ETHER_DETACH:
            self.kernel.destroy(self)
            return None
        fail(errno.EINVAL, f"ether command {cmd}")

    def commands(self) -> tuple[Command, ...]:
        # ng_ether.c ng_ether_cmdlist
        return (
            Command("getifname", NGM_ETHER_GET_IFNAME, render_reply=_render_string),
            Command("getifindex", NGM_ETHER_GET_IFINDEX, render_reply=_render_u32),
            Command("getenaddr", NGM_ETHER_GET_ENADDR, render_reply=_render_mac),
            Command("setenaddr", NGM_ETHER_SET_ENADDR, _parse_mac, _render_mac),
            Command("getpromisc", NGM_ETHER_GET_PROMISC, render_reply=_render_u32),
            Command("setpromisc", NGM_ETHER_SET_PROMISC, _parse_u32, _render_u32),
            Command("getautosrc", NGM_ETHER_GET_AUTOSRC, render_reply=_render_u32),
            Command("setautosrc", NGM_ETHER_SET_AUTOSRC, _parse_u32, _render_u32),
            Command("addmulti", NGM_ETHER_ADD_MULTI, _parse_mac, _render_mac),
            Command("delmulti", NGM_ETHER_DEL_MULTI, _parse_mac, _render_mac),
            Command("detach", NGM_ETHER_DETACH),
        )

    def describe(self) -> dict[str, object]:
        return {
            "ifname": self.ifnet.name,
            "promisc": self.promisc,
            "autosrc": self.autosrc,
            "down_drops": self.down_drops,
        }
