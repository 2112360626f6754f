"""The sim host's netgraph kernel model: golden vectors decoded with its own struct code, the
golden request sequence replayed with byte-exact replies, every errno path with raw bytes
built here from the ng_mesg header layout, and the node lifetime rules."""

from __future__ import annotations

import errno
import json
import struct
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vectors import NETGRAPH_VECTORS
from vimaged.simhost.host import SimHost
from vimaged.simhost.ng_bridge import BridgeNode
from vimaged.simhost.ng_ether import EtherNode
from vimaged.simhost.ng_message import (
    NGM_MKPEER_ARGS,
    NODEINFO,
    NgMesg,
    cstr,
    make_sockaddr,
    sockaddr_path,
)
from vimaged.simhost.ng_socket import DEFAULT_RECVSPACE, SocketNode

if TYPE_CHECKING:
    from vimaged.simhost.ng_base import Node

pytestmark = pytest.mark.unit

VECTORS = NETGRAPH_VECTORS

HEADER = struct.Struct("<BBHIIIII32s")  # struct ng_mesg, <netgraph/ng_message.h>
GENERIC = 1137070366
ETHER = 917786906
EIFACE = 948105892
BRIDGE = 1569321993
BRIDGE_OLD = 967239368
SOCKET = 851601233
MKPEER, CONNECT, NAME, RMHOOK, SHUTDOWN = 2, 3, 4, 5, 1
NODEINFO_CMD, LISTHOOKS, LISTNODES, LISTTYPES, ASCII2BINARY = (
    0x30000006,
    0x30000007,
    0x30000009,
    0x3000000A,
    0x3000000D,
)


def vectors() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(VECTORS.read_text())
    return data


def by_name() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in vectors()}


def addr(path: str) -> bytes:
    raw = path.encode()
    return bytes([2 + len(raw) + 1, 32]) + raw + b"\0"


def mesg(
    cookie: int,
    cmd: int,
    args: bytes = b"",
    *,
    token: int = 1,
    version: int = 8,
    arglen: int | None = None,
    cmdstr: bytes = b"",
) -> bytes:
    size = len(args) if arglen is None else arglen
    return HEADER.pack(version, 0, 0, size, cmd, 0, token, cookie, cmdstr) + args


def name32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def mkpeer_args(kind: str, ours: str, peer: str) -> bytes:
    return name32(kind) + name32(ours) + name32(peer)


def connect_args(path: str, ours: str, peer: str) -> bytes:
    return path.encode().ljust(512, b"\0") + name32(ours) + name32(peer)


class Probe:
    """One control socket on a fresh simulated host, collecting what arrives on it."""

    def __init__(self, *, kernel: int = 14, nics: tuple[str, ...] = ("em0", "em1")) -> None:
        self.host = SimHost(nics=nics, kernel=kernel)
        self.ng = self.host.ng
        self.sock = self.ng.open_control()
        self.inbox: list[tuple[bytes, bytes]] = []
        self.sock.deliver = lambda sa, m: self.inbox.append((sa, m))

    def send(self, path: str, raw: bytes, sockaddr: bytes | None = None) -> None:
        self.ng.send(self.sock, addr(path) if sockaddr is None else sockaddr, raw)

    def errno(self, path: str, raw: bytes, sockaddr: bytes | None = None) -> int:
        with pytest.raises(OSError, match=r"\S") as info:
            self.send(path, raw, sockaddr)
        assert not self.inbox  # a failed command makes no reply
        return info.value.errno or 0

    def reply(self) -> NgMesg:
        assert len(self.inbox) == 1
        _, raw = self.inbox.pop()
        return NgMesg.decode(raw)

    def mac(self, ifname: str) -> bytes | None:
        ifnet = self.host.find_ifnet(ifname, 0)
        assert ifnet is not None, ifname
        return ifnet.mac

    def node(self, name: str) -> Node:
        node = self.ng.named(name)
        assert node is not None, name
        return node

    def bridge(self, lower: str = "link0", upper: str = "link1") -> None:
        self.send("em0:", mesg(GENERIC, MKPEER, mkpeer_args("bridge", "lower", lower)))
        self.send("em0:", mesg(GENERIC, CONNECT, connect_args("em0:lower", "upper", upper)))
        self.send("em0:lower", mesg(GENERIC, NAME, name32("br")))


# -- golden vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: str(v["name"]))
def test_golden_vector_decodes(vector: dict[str, Any]) -> None:
    sockaddr = bytes.fromhex(vector["sockaddr_hex"])
    assert len(sockaddr) == vector["sockaddr_len"]
    assert sockaddr[1] == 32
    assert sockaddr_path(sockaddr) == vector["path"]
    if vector["kind"] == "sockaddr":
        assert sockaddr[0] == len(sockaddr)
        return
    raw = bytes.fromhex(vector["message_hex"])
    assert len(raw) == vector["message_len"]
    msg = NgMesg.decode(raw)
    assert msg.version == 8
    assert msg.arglen == vector["arglen"] == len(msg.data)
    assert msg.cmd == vector["cmd"] == int(vector["cmd_hex"], 16)
    assert msg.flags == vector["flags"]
    assert msg.token == vector["token"]
    assert msg.typecookie == vector["cookie"]
    assert cstr(msg.cmdstr) == vector["cmdstr"]
    assert msg.data == bytes.fromhex(vector["args_hex"])
    assert msg.encode() == raw
    if vector["kind"] == "reply":
        wide = bytes.fromhex(vector["sockaddr_hex_sg_data32"])
        assert (len(sockaddr), len(wide)) == (16, 34)
        assert sockaddr_path(wide) == vector["path"]
        name, kind, node_id, hooks = NODEINFO.unpack(msg.data)
        assert (cstr(name), cstr(kind), node_id, hooks) == ("em0", "ether", 3, 2)


def test_golden_mkpeer_arguments() -> None:
    msg = NgMesg.decode(bytes.fromhex(by_name()["mkpeer_em0_bridge"]["message_hex"]))
    fields = [cstr(f) for f in NGM_MKPEER_ARGS.unpack(msg.data)]
    assert fields == ["bridge", "lower", "link0"]


@pytest.mark.parametrize(
    ("kernel", "field"), [(14, "sockaddr_hex"), (15, "sockaddr_hex_sg_data32")]
)
def test_golden_sequence_replays_with_exact_reply(kernel: int, field: str) -> None:
    """The vectors' requests, in order, on a host whose em0 is node [3] as in the vectors."""
    probe = Probe(kernel=kernel, nics=("em1", "em2", "em0"))
    v = by_name()
    order = [
        "mkpeer_em0_bridge",
        "connect_em0_upper_link1",
        "name_bridge",
        "mkpeer_bridge_eiface",
        "eiface_set_mac",
        "ether_setpromisc_1",
        "ether_setautosrc_0",
        "bridge_setpersistent",
    ]
    for name in order:
        entry = v[name]
        probe.send("", bytes.fromhex(entry["message_hex"]), bytes.fromhex(entry["sockaddr_hex"]))
    assert probe.inbox == []
    em0 = probe.node("em0")
    assert isinstance(em0, EtherNode)
    assert (em0.promisc, em0.autosrc) == (True, False)
    assert probe.mac("ngeth0") == bytes.fromhex("020027e71b18")
    entry = v["nodeinfo_em0"]
    probe.send("", bytes.fromhex(entry["message_hex"]), bytes.fromhex(entry["sockaddr_hex"]))
    reply = v["reply_nodeinfo_em0"]
    assert probe.inbox == [(bytes.fromhex(reply[field]), bytes.fromhex(reply["message_hex"]))]
    probe.inbox.clear()
    entry = v["ascii2binary_setpromisc"]
    probe.send("", bytes.fromhex(entry["message_hex"]), bytes.fromhex(entry["sockaddr_hex"]))
    outer = probe.reply()
    inner = NgMesg.decode(outer.data)
    assert (outer.token, outer.flags, outer.cmd) == (17, 1, ASCII2BINARY)
    assert (inner.typecookie, inner.cmd, inner.arglen, inner.data) == (ETHER, 6, 4, b"\1\0\0\0")
    assert (inner.version, inner.token) == (0, 0)
    entry = v["shutdown_ngeth0"]
    probe.send("", bytes.fromhex(entry["message_hex"]), bytes.fromhex(entry["sockaddr_hex"]))
    assert probe.host.find_ifnet("ngeth0", 0) is None


def test_golden_bind_and_data_connect() -> None:
    probe = Probe()
    v = by_name()
    probe.ng.bind(probe.sock, bytes.fromhex(v["sockaddr_bind_name"]["sockaddr_hex"]))
    assert probe.sock.name == "mydaemon"
    data = probe.ng.connect_data(bytes.fromhex(v["sockaddr_data_connect"]["sockaddr_hex"]))
    assert data is probe.sock
    with pytest.raises(OSError, match="data socket") as info:
        probe.ng.connect_data(bytes.fromhex(v["sockaddr_data_connect"]["sockaddr_hex"]))
    assert info.value.errno == errno.EADDRINUSE


# -- errno paths ---------------------------------------------------------------------------


def test_header_errors() -> None:
    probe = Probe()
    info = mesg(GENERIC, NODEINFO_CMD)
    assert probe.errno("em0:", mesg(GENERIC, NODEINFO_CMD, version=7)) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, NODEINFO_CMD, arglen=4)) == errno.EINVAL
    assert probe.errno("em0:", info[:40]) == errno.EINVAL
    assert probe.errno("", info, sockaddr=b"") == errno.EDESTADDRREQ
    assert probe.errno("em0:", mesg(GENERIC, 99)) == errno.EINVAL  # unknown generic cmd
    assert probe.errno("em0:", mesg(GENERIC, 6)) == errno.EINVAL  # NODEINFO without RO|HR
    assert probe.errno("em0:", mesg(BRIDGE, 2)) == errno.EINVAL  # cookie of another type


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("em0::", errno.EINVAL),
        ("em0:lower..x", errno.EINVAL),
        ("nosuch:", errno.ENOENT),
        ("em0:lower", errno.ENOENT),  # no such hook yet
        ("[0]:", errno.ENOENT),
        ("[ff]:", errno.ENOENT),
        ("nohook", errno.ENOENT),  # relative: a hook of the socket node
    ],
)
def test_path_errors(path: str, expected: int) -> None:
    assert Probe().errno(path, mesg(GENERIC, NODEINFO_CMD)) == expected


def test_paths_resolve() -> None:
    probe = Probe()
    probe.bridge()
    for path in ("br:", "em0:lower", "em0:upper", f"[{probe.node('br').id:x}]:", "br:link0"):
        probe.send(path, mesg(GENERIC, NODEINFO_CMD))
        name, _, _, _ = NODEINFO.unpack(probe.reply().data)
        want = "em0" if path == "br:link0" else "br"
        assert cstr(name) == want, path
    probe.send(".", mesg(GENERIC, NODEINFO_CMD))
    assert NODEINFO.unpack(probe.reply().data)[2] == probe.sock.id


def test_sg_len_limit_on_kernel_15_only() -> None:
    long_name = "n" * 31
    for kernel, expected in ((14, None), (15, errno.EINVAL)):
        probe = Probe(kernel=kernel)
        probe.send("em0:", mesg(GENERIC, NAME, name32(long_name)))
        raw = mesg(GENERIC, NODEINFO_CMD)
        if expected is None:
            probe.send(long_name + ":", raw)
            assert probe.reply().flags == 1
        else:
            assert probe.errno(long_name + ":", raw) == expected


def test_generic_argument_sizes() -> None:
    probe = Probe()
    assert probe.errno("em0:", mesg(GENERIC, MKPEER, bytes(95))) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, CONNECT, bytes(575))) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, NAME, bytes(31))) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, RMHOOK, bytes(33))) == errno.EINVAL


def test_name_errors() -> None:
    probe = Probe()
    assert probe.errno("em0:", mesg(GENERIC, NAME, name32("em1"))) == errno.EADDRINUSE
    assert probe.errno("em0:", mesg(GENERIC, NAME, name32("a.b"))) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, NAME, name32("a:b"))) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, NAME, name32("[12]"))) == errno.EINVAL
    assert probe.errno("em0:", mesg(GENERIC, NAME, name32(""))) == errno.EINVAL
    probe.send("em0:", mesg(GENERIC, NAME, name32("em0")))  # its own name: no-op
    with pytest.raises(OSError, match="taken") as info:
        probe.ng.bind(probe.sock, addr("em1"))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError, match="sockaddr") as info:
        probe.ng.bind(probe.sock, addr("x" * 32))
    assert info.value.errno == errno.EINVAL


def test_mkpeer_errors_leave_nothing_behind() -> None:
    probe = Probe()
    before = sorted(n.id for n in probe.ng.nodes.values())
    cases = [
        (mkpeer_args("nosuchtype", "lower", "x"), errno.ENXIO),
        (mkpeer_args("ether", "lower", "x"), errno.EINVAL),  # ng_ether_constructor
        (mkpeer_args("socket", "lower", "x"), errno.EINVAL),  # ngs_constructor
        (mkpeer_args("bridge", "bogus", "link0"), errno.EINVAL),  # ether newhook
        (mkpeer_args("bridge", "lower", "uplink0"), errno.EINVAL),
        (mkpeer_args("bridge", "lower", "link01"), errno.EINVAL),
        (mkpeer_args("bridge", "lower", "link0x"), errno.EINVAL),
        (mkpeer_args("eiface", "lower", "uplink1"), errno.EPFNOSUPPORT),
        (mkpeer_args("bridge", "lower.x", "link0"), errno.EINVAL),
    ]
    for args, expected in cases:
        assert probe.errno("em0:", mesg(GENERIC, MKPEER, args)) == expected, args[:40]
    assert sorted(n.id for n in probe.ng.nodes.values()) == before
    assert probe.host.find_ifnet("ngeth0", 0) is None  # the failed eiface's ifnet went too


def test_hook_conflicts() -> None:
    probe = Probe()
    probe.bridge()
    mk = mesg(GENERIC, MKPEER, mkpeer_args("bridge", "lower", "link0"))
    assert probe.errno("em0:", mk) == errno.EEXIST
    divert = mesg(GENERIC, MKPEER, mkpeer_args("bridge", "divert", "link0"))
    assert probe.errno("em0:", divert) == errno.EISCONN  # divert is lower's alias
    again = mesg(GENERIC, CONNECT, connect_args("em0:", "link2", "lower"))
    assert probe.errno("br:", again) == errno.EEXIST  # the peer's hook is taken
    loop = mesg(GENERIC, CONNECT, connect_args(".", "link5", "link6"))
    assert probe.errno("br:", loop) == errno.ELOOP
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether")))
    eiface = probe.node("ngeth0")
    twice = mesg(GENERIC, CONNECT, connect_args("br:", "ether", "link3"))
    assert probe.errno(eiface.address, twice) == errno.EEXIST


def test_type_message_errors() -> None:
    probe = Probe()
    probe.bridge()
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether")))
    assert probe.errno("em0:", mesg(ETHER, 6, bytes(3))) == errno.EINVAL  # setpromisc
    assert probe.errno("em0:", mesg(ETHER, 77)) == errno.EINVAL
    assert probe.errno("ngeth0:", mesg(EIFACE, 3, bytes(5))) == errno.EINVAL  # set
    assert probe.errno("br:", mesg(BRIDGE, 1, bytes(15))) == errno.EINVAL  # setconfig
    assert probe.errno("br:", mesg(BRIDGE, 4, struct.pack("<i", 9))) == errno.ENOTCONN
    assert probe.errno("br:", mesg(BRIDGE, 4, bytes(3))) == errno.EINVAL
    assert probe.errno("br:", mesg(BRIDGE_OLD, 2)) == errno.EINVAL  # old cookie on 14
    assert probe.errno(".", mesg(SOCKET, 9)) == errno.EINVAL
    short = mesg(GENERIC, ASCII2BINARY, bytes(56))
    assert probe.errno("br:", short) == errno.EINVAL
    text = b"1\0"
    unknown = mesg(0, 0, text, cmdstr=b"frobnicate")
    assert probe.errno("br:", mesg(GENERIC, ASCII2BINARY, unknown)) == errno.ENOSYS


def test_type_messages_reply() -> None:
    probe = Probe()
    probe.bridge(lower="uplink1", upper="link0")
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link1", "ether")))
    probe.send("em0:", mesg(ETHER, 1, token=5))
    reply = probe.reply()
    assert (reply.token, reply.flags, reply.data) == (5, 1, b"em0".ljust(16, b"\0"))
    probe.send("em0:", mesg(ETHER, 3))
    assert probe.reply().data == probe.mac("em0")
    probe.send("ngeth0:", mesg(EIFACE, 3, bytes.fromhex("020000000001")))
    assert probe.mac("ngeth0") == bytes.fromhex("020000000001")
    probe.send("br:", mesg(BRIDGE, 2))
    assert probe.reply().data == struct.pack("<B3xIII", 1, 60, 900, 1)
    probe.send("br:", mesg(BRIDGE, 4, struct.pack("<i", -1)))  # -1: uplink1
    assert probe.reply().data == bytes(112)
    bridge = probe.node("br")
    assert isinstance(bridge, BridgeNode)
    assert bridge.restrictive  # its first hook was an uplink
    probe.send("br:", mesg(BRIDGE, 7))
    assert probe.reply().data == bytes(4)


def test_old_bridge_abi_on_kernel_12() -> None:
    probe = Probe(kernel=12)
    up = mesg(GENERIC, MKPEER, mkpeer_args("bridge", "lower", "uplink1"))
    assert probe.errno("em0:", up) == errno.EINVAL
    probe.bridge()
    assert probe.errno("br:", mesg(BRIDGE, 2)) == errno.EINVAL
    probe.send("br:", mesg(BRIDGE_OLD, 2))
    assert len(probe.reply().data) == 48
    far = mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link32", "ether"))
    assert probe.errno("br:", far) == errno.EINVAL
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link31", "ether")))
    assert probe.mac("ngeth0") == bytes(6)


def test_ascii2binary_of_node_and_generic_commands() -> None:
    probe = Probe()
    probe.bridge()
    probe.send("br:", mesg(GENERIC, ASCII2BINARY, mesg(0, 0, b"\0", cmdstr=b"getconfig")))
    inner = NgMesg.decode(probe.reply().data)
    assert (inner.typecookie, inner.cmd) == (BRIDGE, 2)
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether")))
    text = b"00:11:22:aa:bb:cc\0"
    probe.send("ngeth0:", mesg(GENERIC, ASCII2BINARY, mesg(0, 0, text, cmdstr=b"set")))
    inner = NgMesg.decode(probe.reply().data)
    assert (inner.typecookie, inner.cmd, inner.data) == (EIFACE, 3, bytes.fromhex("001122aabbcc"))
    probe.send("em0:", mesg(GENERIC, ASCII2BINARY, mesg(0, 0, b"0\0", cmdstr=b"setautosrc")))
    assert NgMesg.decode(probe.reply().data).data == bytes(4)
    probe.send("em0:", mesg(GENERIC, ASCII2BINARY, mesg(0, 0, b"\0", cmdstr=b"listnodes")))
    inner = NgMesg.decode(probe.reply().data)
    assert (inner.typecookie, inner.cmd) == (GENERIC, LISTNODES)


# -- queries and lifetimes -----------------------------------------------------------------


def test_listhooks_newest_first_and_lists() -> None:
    probe = Probe()
    probe.bridge()
    probe.send("em0:", mesg(GENERIC, LISTHOOKS))
    data = probe.reply().data
    assert NODEINFO.unpack_from(data)[3] == 2
    hooks = [cstr(data[72 + 136 * i : 72 + 136 * i + 32]) for i in range(2)]
    assert hooks == ["upper", "lower"]
    probe.send(".", mesg(GENERIC, LISTNODES))
    data = probe.reply().data
    count = struct.unpack_from("<I", data)[0]
    assert count == len(probe.ng.nodes) == 4  # em0, em1, our socket, br
    probe.send(".", mesg(GENERIC, 0x30000008))  # listnames: our socket is unnamed
    assert struct.unpack_from("<I", probe.reply().data)[0] == 3
    probe.send(".", mesg(GENERIC, LISTTYPES))
    data = probe.reply().data
    types = {
        cstr(data[4 + 36 * i : 36 + 36 * i]): struct.unpack_from("<I", data, 36 + 36 * i)[0]
        for i in range(struct.unpack_from("<I", data)[0])
    }
    assert types == {"socket": 1, "ether": 2, "bridge": 1, "eiface": 0}


def test_bridge_dies_with_last_hook_unless_persistent() -> None:
    probe = Probe()
    probe.bridge()
    probe.send("em0:", mesg(GENERIC, RMHOOK, name32("nosuch")))  # absent: silent success
    probe.send("em0:", mesg(GENERIC, RMHOOK, name32("lower")))
    assert probe.ng.named("br") is not None
    probe.send("em0:", mesg(GENERIC, RMHOOK, name32("upper")))
    assert probe.ng.named("br") is None
    probe.bridge()
    probe.send("br:", mesg(BRIDGE, 8))  # setpersistent
    probe.send("em0:", mesg(GENERIC, SHUTDOWN))  # ether: only a reset
    assert probe.ng.named("br") is not None
    assert probe.node("em0").hooks == {}


def test_ether_resets_when_last_hook_goes() -> None:
    probe = Probe()
    probe.bridge()
    probe.send("em0:", mesg(ETHER, 6, struct.pack("<I", 1)))
    probe.send("em0:", mesg(ETHER, 8, struct.pack("<I", 0)))
    em0 = probe.node("em0")
    assert isinstance(em0, EtherNode)
    assert (em0.promisc, em0.autosrc) == (True, False)
    node_id = em0.id
    probe.send("br:", mesg(GENERIC, SHUTDOWN))
    assert (em0.promisc, em0.autosrc, em0.hooks) == (False, True, {})
    assert probe.node("em0").id == node_id  # revived, not replaced


def test_eiface_lives_until_shutdown_wherever_its_ifnet_is() -> None:
    probe = Probe()
    probe.bridge()
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether")))
    probe.send("br:", mesg(GENERIC, RMHOOK, name32("link2")))
    assert probe.ng.named("ngeth0") is not None
    jid = probe.host.create_jail("web")
    probe.host.move_ifnet("ngeth0", jid)
    probe.host.faults.dying_seconds = 60
    probe.host.remove_jail(jid)
    probe.send("ngeth0:", mesg(GENERIC, SHUTDOWN))
    assert probe.host.locate("ngeth0") is None
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether")))
    assert probe.ng.named("ngeth0") is not None  # the lowest free unit again


def test_socket_node_lifetime() -> None:
    probe = Probe()
    other = probe.ng.open_control()
    probe.send(other.address, mesg(GENERIC, MKPEER, mkpeer_args("bridge", "b", "link0")))
    bridge_ids = [n.id for n in probe.ng.nodes.values() if n.type_name == "bridge"]
    assert len(bridge_ids) == 1
    probe.ng.close_socket(other, data=False)
    assert other.id not in probe.ng.nodes
    assert bridge_ids[0] not in probe.ng.nodes  # lost its only hook
    # NOLINGER: the node goes with its last hook.
    third = probe.ng.open_control()
    probe.send(third.address, mesg(GENERIC, MKPEER, mkpeer_args("bridge", "b", "link0")))
    probe.send(third.address, mesg(SOCKET, 1))
    probe.send(third.address, mesg(GENERIC, RMHOOK, name32("b")))
    assert third.id not in probe.ng.nodes
    with pytest.raises(OSError, match="gone") as info:
        probe.ng.send(third, addr("."), mesg(GENERIC, NODEINFO_CMD))
    assert info.value.errno == errno.ENOTCONN


def test_small_rcvbuf_drops_reply() -> None:
    probe = Probe()
    probe.sock.rcvbuf = 100
    probe.send(".", mesg(GENERIC, LISTNODES))  # 56 + 4 + 72 * 3 bytes: does not fit
    assert probe.inbox == []
    probe.sock.rcvbuf = DEFAULT_RECVSPACE
    probe.send(".", mesg(GENERIC, LISTNODES))
    assert len(probe.inbox) == 1


def test_ether_nodes_follow_the_nic() -> None:
    probe = Probe()
    probe.bridge()
    jid = probe.host.create_jail("web")
    probe.host.move_ifnet("em0", jid)
    assert probe.ng.named("em0") is None
    assert probe.ng.named("br") is None  # lost both hooks with the detached ether node
    probe.host.reclaim_ifnet("em0", jid)
    em0 = probe.node("em0")
    assert isinstance(em0, EtherNode)
    assert em0.hooks == {}


def test_link_race_fault() -> None:
    probe = Probe()
    probe.bridge()
    probe.ng.link_race = 1
    mk = mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether"))
    assert probe.errno("br:", mk) == errno.EEXIST
    grabbed = probe.node("br").hooks["link2"].peer
    assert grabbed is not None
    assert isinstance(grabbed.node, SocketNode)
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link3", "ether")))
    assert probe.ng.named("ngeth0") is not None


def test_ether_node_names_are_sanitised() -> None:
    probe = Probe(nics=("em0.100",))
    assert probe.node("em0_100").type_name == "ether"


def test_movehost_and_data_socket_errors() -> None:
    probe = Probe()
    probe.bridge()
    move = bytes(6) + name32("link9")
    assert probe.errno("br:", mesg(BRIDGE, 9, move)) == errno.ENOENT
    assert probe.errno("br:", mesg(BRIDGE, 9, move[:37])) == errno.EINVAL
    probe.send("br:", mesg(BRIDGE, 9, bytes(6) + name32("link0")))
    with pytest.raises(OSError, match="hook") as info:
        probe.ng.data_send(probe.sock, b"")  # no hook named and not exactly one hook
    assert info.value.errno == errno.EDESTADDRREQ
    with pytest.raises(OSError, match="nohook") as info:
        probe.ng.data_send(probe.sock, addr("nohook")[:-1])
    assert info.value.errno == errno.EHOSTUNREACH


def test_message_to_another_socket_node_is_queued_there() -> None:
    probe = Probe()
    other = probe.ng.open_control()
    received: list[tuple[bytes, bytes]] = []
    other.deliver = lambda sa, m: received.append((sa, m))
    raw = mesg(ETHER, 1, token=33)  # any non-socket cookie: queued, not answered
    probe.send(other.address, raw)
    assert probe.inbox == []
    assert received == [(make_sockaddr(probe.sock.address, 16), raw)]


def b2a(probe: Probe, path: str, binary: bytes) -> tuple[str, str]:
    """BINARY2ASCII of ``binary``: (cmdstr, text) of the ASCII form in the reply."""
    probe.send(path, mesg(GENERIC, 0x3000000C, binary))
    ascii_form = NgMesg.decode(probe.reply().data)
    assert ascii_form.arglen == len(ascii_form.data)
    return cstr(ascii_form.cmdstr), cstr(ascii_form.data)


def test_binary2ascii() -> None:
    probe = Probe()
    probe.bridge()
    resp = HEADER.pack(8, 0, 0, 16, 2, 1, 0, BRIDGE, b"") + struct.pack("<B3xIII", 1, 60, 900, 1)
    assert b2a(probe, "br:", resp) == (
        "getconfig",
        "{ debugLevel=1 loopTimeout=60 maxStaleness=900 minStableAge=1 }",
    )
    assert b2a(probe, "em0:", mesg(ETHER, 6, struct.pack("<I", 1))) == ("setpromisc", "1")
    info = NODEINFO.pack(name32("em0"), name32("ether"), 3, 2)
    resp = HEADER.pack(8, 0, 0, 72, NODEINFO_CMD, 1, 0, GENERIC, b"") + info
    assert b2a(probe, "em0:", resp) == ("nodeinfo", '{ name="em0" type="ether" id=0x3 hooks=2 }')
    unknown = mesg(ETHER, 99)
    assert probe.errno("em0:", mesg(GENERIC, 0x3000000C, unknown)) == errno.ENOSYS
    assert probe.errno("em0:", mesg(GENERIC, 0x3000000C, bytes(10))) == errno.EINVAL


@given(
    cookie=st.sampled_from([GENERIC, ETHER, EIFACE, BRIDGE, BRIDGE_OLD, SOCKET, 0]),
    cmd=st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 0x30000006, 0x3000000C, 0x3000000D]),
    args=st.binary(max_size=700),
    path=st.sampled_from(["em0:", "br:", "ngeth0:", ".", "em0:lower", "[1]:", "x::", ""]),
    arglen=st.one_of(st.none(), st.integers(0, 2000)),
)
@settings(max_examples=300, deadline=None)
def test_any_message_fails_only_with_an_errno(
    cookie: int, cmd: int, args: bytes, path: str, arglen: int | None
) -> None:
    probe = Probe()
    probe.bridge()
    probe.send("br:", mesg(GENERIC, MKPEER, mkpeer_args("eiface", "link2", "ether")))
    failure: int | None = None
    try:
        probe.send(path, mesg(cookie, cmd, args, arglen=arglen))
    except OSError as exc:
        failure = exc.errno
    assert failure is None or failure in errno.errorcode
