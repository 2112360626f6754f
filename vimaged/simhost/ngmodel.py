"""Simulated host layer: the netgraph(4) kernel of the simulated FreeBSD host.

It receives the same bytes a PF_NETGRAPH socket would pass to the kernel and answers as the
kernel does: the errno of ``sendto`` is the command's result and replies are queued on the
sender's control socket. The code follows FreeBSD's files: ng_message.py (ng_message.h and the
type headers), ng_parse.py (ng_parse.c), ng_base.py (ng_base.c), ng_socket.py, ng_ether.py,
ng_eiface.py and ng_bridge.py; this module loads the node types into one kernel.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vimaged.simhost.ng_bridge import BridgeNode
from vimaged.simhost.ng_eiface import EifaceNode
from vimaged.simhost.ng_ether import EtherNode
from vimaged.simhost.ng_message import NODE_TYPES, fail
from vimaged.simhost.ng_socket import NgSocket, SocketNode

if TYPE_CHECKING:
    from vimaged.simhost.ng_base import IfnetHost, IfnetLike, Node


class NgKernel(NgSocket):
    """All netgraph nodes of the simulated host vnet, and the socket calls into them."""

    def __init__(self, host: IfnetHost, version: int = 14) -> None:
        super().__init__(host, version)
        self._ether_nodes: dict[int, EtherNode] = {}

    def make_node(self, type_name: str) -> Node:
        """ng_make_node: ENXIO for an unknown type; ether and socket constructors say EINVAL."""
        if type_name not in NODE_TYPES:
            fail(errno.ENXIO, f"no netgraph node type {type_name!r}")
        if type_name in ("ether", "socket"):
            # ng_ether_constructor and ngs_constructor refuse: those nodes come from
            # interface attach and socket(2) only.
            fail(errno.EINVAL, f"{type_name} nodes cannot be made by mkpeer")
        node: Node
        if type_name == "bridge":
            node = BridgeNode(self, self._new_id())
        else:
            ifnet = self.host.attach_eiface()
            node = EifaceNode(self, self._new_id(), ifnet)
            # ng_eiface_constructor names the node after its ifnet.
            if self.named(ifnet.name) is None:
                node.name = ifnet.name
        self.nodes[node.id] = node
        return node

    def attach_ether(self, ifnet: IfnetLike) -> None:
        """ng_ether_attach: an Ethernet ifnet arrived in the host vnet."""
        name = ifnet.name.replace(".", "_").replace(":", "_")
        if self.named(name) is not None:
            return  # ng_ether_attach skips an ifnet whose name a node already has
        node = EtherNode(self, self._new_id(), ifnet)
        node.name = name
        self.nodes[node.id] = node
        self._ethers()[node.id] = node

    def detach_ether(self, ifnet: IfnetLike) -> None:
        """ng_ether_detach: the ifnet left the host vnet; the node really goes."""
        for node in list(self._ethers().values()):
            if node.ifnet is ifnet:
                self.destroy(node)

    def rename_ether(self, ifnet: IfnetLike) -> None:
        """ng_ether_ifnet_arrival_event: a renamed ifnet renames its ether node if free."""
        name = ifnet.name.replace(".", "_").replace(":", "_")
        for node in self._ethers().values():
            if node.ifnet is ifnet and self.named(name) is None:
                node.name = name

    def _ethers(self) -> dict[int, EtherNode]:
        """The live ether nodes by id (a few: the NICs and eifaces on the host), so that an
        ifnet's detach or rename does not scan every node; dead ones are dropped here."""
        ethers = self._ether_nodes
        for node_id in [i for i, n in ethers.items() if not n.valid]:
            del ethers[node_id]
        return ethers

    def _race(self, node: Node, hook: str) -> None:
        """The link-race fault: another process connects to the bridge hook first."""
        if self.link_race <= 0 or not isinstance(node, BridgeNode) or hook in node.hooks:
            return
        try:
            node.parse_hook(hook)
        except OSError:
            return
        self.link_race -= 1
        stranger = SocketNode(self, self._new_id())
        stranger.refs = 1  # held by a process we do not model
        self.nodes[stranger.id] = stranger
        mine, theirs = self.add_hook(stranger, f"grab{stranger.id}"), self.add_hook(node, hook)
        mine.peer, theirs.peer = theirs, mine
