"""Simulated host layer: frames between the simulated host's stacks, netgraph and wires.

A test sends a frame from an interface's stack (:meth:`DataPlane.send_frame`) and reads what
each stack received (:meth:`DataPlane.received`); NICs listed together in ``SimHost.wires``
share one Ethernet segment. Cited: if_ethersubr.c ``ether_output``, ng_eiface.c
``ng_eiface_start``/``ng_eiface_rcvdata``, ng_ether.c ``ng_ether_output``/``ng_ether_input``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vimaged.simhost.ifnet import HOST_JID, Ifnet
from vimaged.simhost.ng_eiface import EifaceNode
from vimaged.simhost.ng_ether import EtherNode
from vimaged.simhost.ng_message import fail

if TYPE_CHECKING:
    from vimaged.simhost.ng_base import IfnetLike
    from vimaged.simhost.ngmodel import NgKernel


class DataPlane:
    """The data-plane half of :class:`vimaged.simhost.host.SimHost`."""

    ng: NgKernel
    ifnets: list[Ifnet]
    segments: dict[int, list[Ifnet]]

    def find_ifnet(self, name: str, vnet: int) -> Ifnet | None:
        raise NotImplementedError

    def _vnet_of_jail(self, jid: int) -> int:
        raise NotImplementedError

    def _ether_node(self, ifnet: Ifnet) -> EtherNode | None:
        if ifnet.vnet != HOST_JID:
            return None  # ng_ether nodes exist in the host vnet only (the sim's netgraph)
        for node in self.ng.nodes.values():
            if isinstance(node, EtherNode) and node.ifnet is ifnet:
                return node
        return None

    def send_frame(self, name: str, frame: bytes, jid: int = HOST_JID) -> None:
        """The stack of jail ``jid``'s vnet sends ``frame`` out of ``name`` (ether_output).

        ENXIO if the interface is not in that vnet; ENETDOWN unless it is up (ether_output's
        IFF_UP/IFF_DRV_RUNNING check). An eiface's frame goes out its ``ether`` hook
        (ng_eiface_start); a NIC's out ng_ether's ``upper`` if connected (ng_ether_output),
        else onto its wire.
        """
        ifnet = self.find_ifnet(name, self._vnet_of_jail(jid))
        if ifnet is None or ifnet.kind == "loopback":
            fail(errno.ENXIO, name)
        if not ifnet.up:
            fail(errno.ENETDOWN, name)
        if ifnet.kind == "eiface":
            node = next(
                (
                    n
                    for n in self.ng.nodes.values()
                    if isinstance(n, EifaceNode) and n.ifnet is ifnet
                ),
                None,
            )
            if node is not None:
                node.output(frame)
            return
        ether = self._ether_node(ifnet)
        if ether is not None:
            ether.output(frame)
        else:
            self.transmit(ifnet, frame)

    def received(self, name: str, jid: int = HOST_JID) -> list[bytes]:
        """The frames the stack got on ``name`` since the last call (taken, oldest first)."""
        ifnet = self.find_ifnet(name, self._vnet_of_jail(jid))
        if ifnet is None:
            fail(errno.ENXIO, name)
        frames, ifnet.inbox = ifnet.inbox, []
        return frames

    def transmit(self, ifnet: IfnetLike, frame: bytes) -> None:
        """The driver puts ``frame`` on the wire: every other up NIC there may take it.

        A NIC that is down receives nothing (its driver is stopped). An up one accepts
        broadcast, multicast, its own address, and anything in promiscuous mode (ifpromisc,
        which ng_ether's setpromisc calls); then ng_ether_input sends it out ``lower`` if
        that is connected, else it goes to the NIC's stack.
        """
        for peer in self.segments.get(id(ifnet), ()):
            if peer is ifnet or not peer.up or len(frame) < 6:
                continue
            ether = self._ether_node(peer)
            promisc = ether is not None and ether.promisc
            if not (frame[0] & 1 or frame[:6] == peer.mac or promisc):
                continue
            if ether is not None:
                ether.input(frame)
            else:
                peer.inbox.append(frame)

    def stack_input(self, ifnet: IfnetLike, frame: bytes) -> None:
        """if_input / ether_demux: the frame reaches the stack of the ifnet's vnet."""
        for candidate in self.ifnets:
            if candidate is ifnet:
                candidate.inbox.append(frame)
