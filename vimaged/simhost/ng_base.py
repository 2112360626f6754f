"""Simulated host layer: ng_base.c of the simulated kernel: nodes, hooks, paths, IDs, names
and the generic messages (``ng_generic_msg``, ``ng_path2noderef``, ``ng_name_node``,
``ng_add_hook``, ``ng_con_nodes``, ``ng_rmnode``, ``ng_destroy_hook``).

The node types live in their own modules (ng_socket, ng_ether, ng_eiface, ng_bridge), as in
sys/netgraph/; :class:`vimaged.simhost.ngmodel.NgKernel` puts them together.
"""

from __future__ import annotations

import errno
import re
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from vimaged.simhost.ng_message import (
    LINKINFO_HOOKS,
    NG_CMDSTRSIZ,
    NG_HOOKSIZ,
    NG_MESG_HEADER,
    NG_NODESIZ,
    NGF_RESP,
    NGM_ASCII2BINARY,
    NGM_BINARY2ASCII,
    NGM_CONNECT,
    NGM_CONNECT_ARGS,
    NGM_GENERIC_COOKIE,
    NGM_LISTHOOKS,
    NGM_LISTNAMES,
    NGM_LISTNODES,
    NGM_LISTTYPES,
    NGM_MKPEER,
    NGM_MKPEER_ARGS,
    NGM_NAME,
    NGM_NAME_ARGS,
    NGM_NODEINFO,
    NGM_RMHOOK,
    NGM_SHUTDOWN,
    NGM_TEXT_STATUS,
    NODE_TYPES,
    NODEINFO,
    TYPEINFO,
    U32,
    NgMesg,
    cstr,
    fail,
    fixed,
)
from vimaged.simhost.ng_parse import GENERIC_COMMANDS, _generic_ascii_args, _render_none

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from vimaged.simhost.ng_parse import Command


class IfnetLike(Protocol):
    """What a netgraph node needs of the ifnet it fronts (the host model's Ifnet)."""

    name: str
    mac: bytes | None
    index: int
    up: bool
    hwassist: int


class IfnetHost(Protocol):
    """The host side the netgraph kernel calls into: eiface ifnets, the wire, the stack."""

    def transmit(self, ifnet: IfnetLike, frame: bytes) -> None:
        """The driver sends ``frame`` on the NIC's wire (if_transmit)."""

    def stack_input(self, ifnet: IfnetLike, frame: bytes) -> None:
        """``frame`` reaches the host stack of the ifnet's vnet (if_input, ether_demux)."""

    def attach_eiface(self) -> IfnetLike:
        """Create an ``ngethN`` ifnet on the host (lowest free unit)."""

    def detach_eiface(self, ifnet: IfnetLike) -> None:
        """Destroy an eiface ifnet in whatever vnet it lives now."""


MAX_ITEMS = 10000
"""Items one send may set off before the rest are dropped (a loop without loop detection)."""


class Hook:
    __slots__ = ("name", "node", "peer")

    def __init__(self, name: str, node: Node) -> None:
        self.name = name
        self.node = node
        self.peer: Hook | None = None


class Node:
    """A netgraph node; subclasses are the node types."""

    type_name = ""
    cookie = 0

    def __init__(self, kernel: NgBase, node_id: int) -> None:
        self.kernel = kernel
        self.id = node_id
        self._name = ""
        self.hooks: dict[str, Hook] = {}
        self.valid = True

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        # The kernel's name index follows every naming (ng_name_node, the types' own).
        self.kernel.renamed(self, name)
        self._name = name

    @property
    def address(self) -> str:
        return f"[{self.id:x}]:"

    def newhook(self, name: str) -> str | None:
        """The type's newhook method: reject a hook name with its errno; or rename it."""

    def disconnected(self, hook: Hook) -> None:
        """The type's disconnect method, called after ``hook`` left ``self.hooks``."""

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        """A type-specific message; the reply's data or None. Unknown cookie: EINVAL."""
        fail(errno.EINVAL, f"{self.type_name} does not know cookie {msg.typecookie}")

    def shutdown(self) -> None:
        """NGM_SHUTDOWN: ng_rmnode by default."""
        self.kernel.destroy(self)

    def describe(self) -> dict[str, object]:
        """Type state for test assertions (promisc, persistent, ...)."""
        return {}

    def commands(self) -> tuple[Command, ...]:
        """The node type's cmdlist (ASCII2BINARY, BINARY2ASCII)."""
        return ()

    def rcvdata(self, hook: Hook, frame: bytes) -> None:
        """The type's rcvdata method: a frame arrived on ``hook``. Default: dropped."""

    def connect_self(self, hook: str) -> None:
        """ng_con_nodes of a node to itself: the type may refuse (ng_bridge: ELOOP)."""

    def destroyed(self) -> None:
        """After ng_rmnode: the type's resources go (ng_eiface: its ifnet)."""


def _valid_name(name: str) -> bool:
    """ng_name_node/ng_add_hook: non-empty, no ``.`` or ``:``."""
    return bool(name) and "." not in name and ":" not in name


def _decode_id(name: str) -> int | None:
    """ng_decodeidname: ``[hex]`` (at most 8 digits, not 0) → ID, else None."""
    match = re.fullmatch(r"\[([0-9a-fA-F]{1,8})\]", name)
    if match is None:
        return None
    value = int(match.group(1), 16)
    return value or None


class NgBase:
    """All netgraph nodes of the simulated host vnet (ng_base.c)."""

    def __init__(self, host: IfnetHost, version: int = 14) -> None:
        self.host = host
        self.version = version
        self.nodes: dict[int, Node] = {}
        self._by_name: dict[str, Node] = {}
        """The named nodes of ``nodes`` by name (ng_name_hash in ng_base.c)."""
        self.next_id = 1
        self.sender: Node | None = None
        """The socket node whose message is being applied (the return address)."""
        self.link_race = 0
        """Fault: the next N bridge link hooks a client adds are grabbed first by a stranger."""
        self.learn_fail = 0
        """Fault: the next N MAC learnings of a bridge fail (memoryFailures)."""
        self.clock: Callable[[], float] = time.monotonic
        """Seconds, for the bridge's once-a-second timer (host ages, muted links)."""
        self.queue: deque[Callable[[], None]] = deque()
        self.storm_drops = 0
        """Items dropped because one send set off more than :data:`MAX_ITEMS` (a storm)."""

    # -- data plane (ng_snd_item, ng_queue_rw) ---------------------------------------------

    def send_data(self, hook: Hook | None, frame: bytes) -> None:
        """NG_SEND_DATA_ONLY out of ``hook``: queued to the peer's rcvdata, in order.

        netgraph queues an item when the target is busy (ng_snd_item, ng_apply_item); the
        sim queues every item and runs the queue to the end, breadth first, which is what
        keeps a bridge's own MOVE_HOST self-message behind the frames it forwards.
        """
        if hook is None or hook.peer is None:
            return  # ENOTCONN: nothing to deliver to, the frame is freed
        peer = hook.peer
        self.enqueue_item(lambda: peer.node.rcvdata(peer, frame) if peer.node.valid else None)

    def enqueue_item(self, item: Callable[[], None]) -> None:
        self.queue.append(item)
        if len(self.queue) > 1:
            return  # the outermost caller runs the queue
        done = 0
        while self.queue:
            if done >= MAX_ITEMS:
                self.storm_drops += len(self.queue)
                self.queue.clear()
                break
            self.queue[0]()
            self.queue.popleft()
            done += 1

    # -- node bookkeeping -----------------------------------------------------------------

    def _new_id(self) -> int:
        node_id = self.next_id
        self.next_id += 1
        return node_id

    def named(self, name: str) -> Node | None:
        """ng_name2noderef's lookup, from the name index (a scan of every node at 10,000)."""
        return self._by_name.get(name) if name else None

    def renamed(self, node: Node, name: str) -> None:
        """Keep the name index in step: ``node`` is about to be called ``name``."""
        if node.name and self._by_name.get(node.name) is node:
            del self._by_name[node.name]
        if name:
            self._by_name[name] = node

    def iter_nodes(self) -> Iterator[Node]:
        return iter(sorted(self.nodes.values(), key=lambda n: n.id))

    def make_node(self, type_name: str) -> Node:
        """ng_make_node: the node types are :class:`vimaged.simhost.ngmodel.NgKernel`'s."""
        raise NotImplementedError

    def destroy(self, node: Node) -> None:
        """ng_rmnode: every hook goes (peers get disconnect), then the node."""
        if not node.valid:
            return
        node.valid = False
        for hook in list(node.hooks.values()):
            self.remove_hook(hook)
        self.nodes.pop(node.id, None)
        if node.name and self._by_name.get(node.name) is node:
            del self._by_name[node.name]  # ng_rmnode: the name goes with the node
        node.destroyed()

    def add_hook(self, node: Node, name: str) -> Hook:
        """ng_add_hook: EINVAL bad name, EEXIST taken, then the type's newhook."""
        if not _valid_name(name) or len(name) >= NG_HOOKSIZ:
            fail(errno.EINVAL, f"hook name {name!r}")
        if name in node.hooks:
            fail(errno.EEXIST, f"hook {name!r} exists on {node.address}")
        name = node.newhook(name) or name  # ng_bridge on 15 numbers a bare "link" itself
        hook = Hook(name, node)
        node.hooks[name] = hook
        return hook

    def remove_hook(self, hook: Hook) -> None:
        """ng_destroy_hook: both ends go, each node's disconnect runs."""
        peer = hook.peer
        hook.peer = None
        hook.node.hooks.pop(hook.name, None)
        if peer is not None:
            peer.peer = None
            peer.node.hooks.pop(peer.name, None)
        hook.node.disconnected(hook)
        if peer is not None:
            peer.node.disconnected(peer)

    def connect(self, node1: Node, hook1: str, node2: Node, hook2: str) -> None:
        """ng_con_nodes: both hooks or neither (nothing half-made is left)."""
        self._race(node1, hook1)
        self._race(node2, hook2)
        if node1 is node2:
            node1.connect_self(hook1)
        if node1 is node2 and hook1 == hook2:
            fail(errno.EEXIST, f"hook {hook1!r}")
        first = self.add_hook(node1, hook1)
        try:
            second = self.add_hook(node2, hook2)
        except OSError:
            # ng_con_nodes destroys the first hook: its node's disconnect runs (a bridge
            # left without hooks dies, an ether node resets).
            node1.hooks.pop(first.name, None)  # its name, which newhook may have chosen
            node1.disconnected(first)
            raise
        first.peer, second.peer = second, first

    def _race(self, node: Node, hook: str) -> None:
        """The link-race fault (:class:`vimaged.simhost.ngmodel.NgKernel`); none here."""

    # -- path resolution (ng_path_parse, ng_path2noderef) ----------------------------------

    def resolve(self, here: Node | None, address: str) -> tuple[Node, Hook | None]:
        """The node an address names, and the hook last crossed to reach it."""
        if address.count(":") > 1:
            fail(errno.EINVAL, f"path {address!r}")
        nodename: str | None
        if ":" in address:
            nodename, path = address.split(":")
        else:
            nodename, path = None, address
        if path in ("", "."):
            segments: list[str] = []
        else:
            segments = path.split(".")
            if any(not s for s in segments):
                fail(errno.EINVAL, f"path {address!r}")
        if nodename is None and not segments and path != ".":
            fail(errno.EINVAL, "empty path")
        if nodename is None or nodename == ".":
            if here is None:
                fail(errno.EINVAL, f"relative path {address!r}")
            node = here
        else:
            found = self._name2node(nodename)
            if found is None:
                fail(errno.ENOENT, f"no node {nodename!r}")
            node = found
        last: Hook | None = None
        for segment in segments:
            hook = node.hooks.get(segment)
            if hook is None or hook.peer is None:
                fail(errno.ENOENT, f"no hook {segment!r} on {node.address}")
            last = hook
            node = hook.peer.node
            if not node.valid:
                fail(errno.ENXIO, f"invalid node {node.address}")
        return node, last

    def _name2node(self, name: str) -> Node | None:
        node_id = _decode_id(name)
        if node_id is not None:
            return self.nodes.get(node_id)
        return self.named(name) if name else None

    def apply(self, node: Node, lasthook: Hook | None, msg: NgMesg) -> bytes | None:
        """ng_apply_item: generic messages to ng_generic_msg, the rest to the type."""
        if msg.typecookie == NGM_GENERIC_COOKIE and not msg.flags & NGF_RESP:
            return self.generic(node, lasthook, msg)
        return node.rcvmsg(msg)

    def name_node(self, node: Node, name: str) -> None:
        """ng_name_node: EINVAL bad/ID-like name, EADDRINUSE if another node has it."""
        if not _valid_name(name) or _decode_id(name) is not None or len(name) >= NG_NODESIZ:
            fail(errno.EINVAL, f"node name {name!r}")
        other = self.named(name)
        if other is not None and other is not node:
            fail(errno.EADDRINUSE, f"name {name!r} is taken by {other.address}")
        node.name = name

    def nodeinfo(self, node: Node) -> bytes:
        return NODEINFO.pack(
            fixed(node.name, 32), fixed(node.type_name, 32), node.id, len(node.hooks)
        )

    def generic(self, here: Node, lasthook: Hook | None, msg: NgMesg) -> bytes | None:
        cmd = msg.cmd
        if cmd == NGM_SHUTDOWN:
            here.shutdown()
            return None
        if cmd == NGM_MKPEER:
            if msg.arglen != NGM_MKPEER_ARGS.size:
                fail(errno.EINVAL, "mkpeer needs struct ngm_mkpeer")
            type_raw, ours_raw, peer_raw = NGM_MKPEER_ARGS.unpack_from(msg.data)
            ours, peer = cstr(ours_raw), cstr(peer_raw)
            self._race(here, ours)
            if ours in here.hooks:
                fail(errno.EEXIST, f"hook {ours!r} exists")  # before the node is made
            new = self.make_node(cstr(type_raw))
            try:
                self.connect(here, ours, new, peer)
            except OSError:
                self.destroy(new)  # ng_mkpeer: the new node goes on failure
                raise
            return None
        if cmd == NGM_CONNECT:
            if msg.arglen != NGM_CONNECT_ARGS.size:
                fail(errno.EINVAL, "connect needs struct ngm_connect")
            path_raw, ours_raw, peer_raw = NGM_CONNECT_ARGS.unpack_from(msg.data)
            other, _ = self.resolve(here, cstr(path_raw))
            self.connect(here, cstr(ours_raw), other, cstr(peer_raw))
            return None
        if cmd == NGM_NAME:
            if msg.arglen != NGM_NAME_ARGS.size:
                fail(errno.EINVAL, "name needs struct ngm_name")
            self.name_node(here, cstr(msg.data))
            return None
        if cmd == NGM_RMHOOK:
            if msg.arglen != NGM_NAME_ARGS.size:
                fail(errno.EINVAL, "rmhook needs struct ngm_rmhook")
            hook = here.hooks.get(cstr(msg.data))
            if hook is not None:  # an absent hook is not an error (ng_generic_msg)
                self.remove_hook(hook)
            return None
        if cmd == NGM_NODEINFO:
            return self.nodeinfo(here)
        if cmd == NGM_LISTHOOKS:
            # Hooks are inserted at the list head (ng_add_hook): newest first.
            links = b"".join(
                LINKINFO_HOOKS.pack(fixed(h.name, 32), fixed(h.peer.name, 32))
                + self.nodeinfo(h.peer.node)
                for h in reversed(list(here.hooks.values()))
                if h.peer is not None
            )
            return self.nodeinfo(here) + links
        if cmd in (NGM_LISTNODES, NGM_LISTNAMES):
            chosen = [n for n in self.iter_nodes() if cmd == NGM_LISTNODES or n.name]
            return U32.pack(len(chosen)) + b"".join(self.nodeinfo(n) for n in chosen)
        if cmd == NGM_LISTTYPES:
            counts = {t: 0 for t in NODE_TYPES}
            for node in self.nodes.values():
                counts[node.type_name] += 1
            return U32.pack(len(counts)) + b"".join(
                TYPEINFO.pack(fixed(t, 32), n) for t, n in counts.items()
            )
        if cmd == NGM_ASCII2BINARY:
            return self.ascii2binary(here, msg)
        if cmd == NGM_BINARY2ASCII:
            return self.binary2ascii(here, msg)
        if cmd == NGM_TEXT_STATUS:
            fail(errno.ENOSYS, "textstatus is not modelled")
        fail(errno.EINVAL, f"generic command {cmd:#x}")

    def binary2ascii(self, here: Node, msg: NgMesg) -> bytes:
        """NGM_BINARY2ASCII (ng_generic_msg): the message's text, per the cmdlist entry.

        The reply's argument is the message with ``cmdstr`` set to the command's name and
        its data replaced by the NUL-terminated text (``respType`` if NGF_RESP is set).
        ENOSYS for a command no cmdlist has; generic replies other than nodeinfo too, as
        their renderings (node and hook arrays) are not modelled.
        """
        if msg.arglen < NG_MESG_HEADER.size:
            fail(errno.EINVAL, "binary2ascii needs a whole ng_mesg")
        binary = NgMesg.decode(msg.data)
        if binary.arglen > len(binary.data):
            fail(errno.EINVAL, "binary2ascii framing")
        table = GENERIC_COMMANDS if binary.typecookie == NGM_GENERIC_COOKIE else here.commands()
        if binary.typecookie not in (NGM_GENERIC_COOKIE, here.cookie):
            table = ()
        found = next((c for c in table if c.cmd == binary.cmd), None)
        if found is None:
            fail(errno.ENOSYS, f"no command {binary.cmd} for {here.type_name}")
        render = found.render_reply if binary.flags & NGF_RESP else found.render_args
        args = binary.data[: binary.arglen]
        if binary.typecookie == NGM_GENERIC_COOKIE and args and render is _render_none:
            fail(errno.ENOSYS, f"rendering {found.name} is not modelled")
        try:
            text = render(args).encode("latin-1") + b"\0"
        except struct.error:
            fail(errno.EINVAL, f"{found.name}: argument too short")
        ascii_form = NgMesg(
            binary.version,
            len(text),
            binary.cmd,
            binary.flags,
            binary.token,
            binary.typecookie,
            fixed(found.name, NG_CMDSTRSIZ),
            text,
        )
        return ascii_form.encode()

    def ascii2binary(self, here: Node, msg: NgMesg) -> bytes:
        """NGM_ASCII2BINARY (ng_generic_msg): the node's cmdlist, then the generic one."""
        header = NG_MESG_HEADER.size
        if msg.arglen < header + 1:
            fail(errno.EINVAL, "ascii2binary needs a header and text")
        inner = NgMesg.decode(msg.data)
        if inner.arglen < 1 or msg.arglen < header + inner.arglen:
            fail(errno.EINVAL, "ascii2binary framing")
        text = cstr(msg.data[header : header + inner.arglen])
        cmdstr = cstr(inner.cmdstr)
        found = next((c for c in here.commands() if c.name == cmdstr), None)
        generic = next((c for c in GENERIC_COMMANDS if c.name == cmdstr), None)
        if found is not None:
            cookie, cmd = here.cookie, found.cmd
            args = found.parse(text)
        elif generic is not None:
            cookie, cmd = NGM_GENERIC_COOKIE, generic.cmd
            args = _generic_ascii_args(cmd, text)
        else:
            fail(errno.ENOSYS, f"no command {cmdstr!r} for {here.type_name}")
        # The binary header is the ASCII one (version and token 0) with cmd and cookie set.
        binary = NgMesg(
            inner.version, len(args), cmd, inner.flags, inner.token, cookie, inner.cmdstr, args
        )
        return binary.encode()
