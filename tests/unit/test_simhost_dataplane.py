"""The sim host's data plane: frames through ng_eiface, ng_bridge and ng_ether to ifnets and
wires, per FreeBSD release, built with raw netgraph messages as a client would send them.

Each scenario cites the FreeBSD function it checks; the issue-15 uplink failure (restrictive
mode plus failed learning) is reproduced, and classic wiring shown to pass the same exchange.
"""

from __future__ import annotations

import errno
import struct

import pytest

from vimaged.simhost.faults import parse_faults
from vimaged.simhost.host import NIC_HWASSIST, SimHost
from vimaged.simhost.ng_bridge import decode_stats
from vimaged.simhost.ng_ether import EtherNode
from vimaged.simhost.ng_message import NgMesg

pytestmark = pytest.mark.unit

HEADER = struct.Struct("<BBHIIIII32s")  # struct ng_mesg, <netgraph/ng_message.h>
GENERIC, BRIDGE = 1137070366, 1569321993
MKPEER, CONNECT, NAME, RMHOOK = 2, 3, 4, 5
GET_STATS, CLR_STATS, GETCLR_STATS, GET_TABLE = 4, 5, 6, 7
BROADCAST = b"\xff" * 6


def addr(path: str) -> bytes:
    raw = path.encode()
    return bytes([2 + len(raw) + 1, 32]) + raw + b"\0"


def mesg(cookie: int, cmd: int, args: bytes = b"") -> bytes:
    return HEADER.pack(8, 0, 0, len(args), cmd, 0, 1, cookie, b"") + args


def name32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def frame(dst: bytes, src: bytes, payload: bytes = b"arp") -> bytes:
    return dst + src + b"\x08\x06" + payload


class Graph:
    """A host whose em0 is bridged (vimaged's layout) to eifaces moved into jails."""

    def __init__(self, *, release: int = 14, mode: str = "classic", faults: str = "") -> None:
        self.host = SimHost(
            nics=("em0", "em1"),
            kernel=release,
            faults=parse_faults(faults),
            wires=(("em0", "em1"),),
        )
        self.ng = self.host.ng
        self.sock = self.ng.open_control()
        self.replies: list[bytes] = []
        self.sock.deliver = lambda _sa, raw: self.replies.append(raw)
        lower, upper = ("uplink1", "link0") if mode == "uplink" else ("link0", "link1")
        self.send("em0:", mesg(GENERIC, MKPEER, name32("bridge") + name32("lower") + name32(lower)))
        self.send("em0:lower", mesg(GENERIC, NAME, name32("br")))
        connect = b"br:".ljust(512, b"\0") + name32("upper") + name32(upper)
        self.send("em0:", mesg(GENERIC, CONNECT, connect))
        self.next_link = 2
        self.host.set_up("em0", True)
        self.a: tuple[int, str, bytes, str] = (0, "", b"", "")
        self.b = self.a

    def send(self, path: str, raw: bytes) -> None:
        self.ng.send(self.sock, addr(path), raw)

    def vimage(self, jail: str) -> tuple[int, str, bytes, str]:
        """An eiface on the next link, moved into a new jail and up: (jid, ifname, mac, link)."""
        link = f"link{self.next_link}"
        self.next_link += 1
        self.send("br:", mesg(GENERIC, MKPEER, name32("eiface") + name32(link) + name32("ether")))
        eiface = self.ng.resolve(None, f"br:{link}")[0]
        ifname = eiface.name
        jid = self.host.create_jail(jail)
        self.host.move_ifnet(ifname, jid)
        self.host.set_up(ifname, True, jid)
        ifnet = self.host.find_ifnet(ifname, jid)
        assert ifnet is not None
        assert ifnet.mac is not None
        return jid, ifname, ifnet.mac, link

    def stats(self, link: str) -> dict[str, int]:
        number = int(link.removeprefix("uplink")) * -1 if link.startswith("up") else int(link[4:])
        self.send("br:", mesg(BRIDGE, GET_STATS, struct.pack("<i", number)))
        return decode_stats(NgMesg.decode(self.replies.pop()).data)


def arp_exchange(graph: Graph) -> tuple[list[bytes], list[bytes]]:
    """a broadcasts a request, b answers a by unicast: what b and then a received."""
    jid_a, if_a, mac_a, _ = graph.a
    jid_b, if_b, mac_b, _ = graph.b
    graph.host.send_frame(if_a, frame(BROADCAST, mac_a, b"who-has"), jid_a)
    at_b = graph.host.received(if_b, jid_b)
    graph.host.send_frame(if_b, frame(mac_a, mac_b, b"is-at"), jid_b)
    return at_b, graph.host.received(if_a, jid_a)


def two_vimages(graph: Graph) -> Graph:
    graph.a = graph.vimage("a")
    graph.b = graph.vimage("b")
    return graph


# -- issue 15: restrictive mode and failed learning ------------------------------------------


@pytest.mark.parametrize("release", [13, 14, 15])
def test_exchange_passes_in_both_wirings_when_learning_works(release: int) -> None:
    for mode in ("classic", "uplink"):
        graph = two_vimages(Graph(release=release, mode=mode))
        at_b, at_a = arp_exchange(graph)
        assert [f[14:] for f in at_b] == [b"who-has"], mode
        assert [f[14:] for f in at_a] == [b"is-at"], mode


def test_uplink_wiring_with_failed_learning_loses_the_reply() -> None:
    # ng_bridge_rcvdata (14): the MOVE_HOST self-message fails, a's MAC is never learnt, and
    # b's reply is unknown unicast, not sent to links without sendUnknown (restrictive mode).
    graph = two_vimages(Graph(release=14, mode="uplink", faults="learn_fail=1000"))
    at_b, at_a = arp_exchange(graph)
    assert len(at_b) == 1  # broadcast is flooded
    assert at_a == []
    stats_a, stats_b = graph.stats(graph.a[3]), graph.stats(graph.b[3])
    assert stats_a["memoryFailures"] == 1
    assert stats_a["recvBroadcasts"] == 1
    assert stats_b["recvUnknown"] == 1
    assert stats_b["memoryFailures"] == 1
    graph.send("br:", mesg(BRIDGE, GET_TABLE))
    assert struct.unpack_from("<I", NgMesg.decode(graph.replies.pop()).data)[0] == 0


def test_classic_wiring_with_failed_learning_floods_the_reply() -> None:
    graph = two_vimages(Graph(release=14, mode="classic", faults="learn_fail=1000"))
    at_b, at_a = arp_exchange(graph)
    assert len(at_b) == 1
    assert len(at_a) == 1
    assert graph.stats(graph.a[3])["xmitPackets"] == 1


def test_restrictive_mode_sends_unknown_unicast_to_uplinks_only() -> None:
    graph = Graph(mode="uplink")
    jid_a, if_a, mac_a, link_a = graph.vimage("a")
    jid_b, if_b, _mac_b, _ = graph.vimage("b")
    unknown = b"\x02" + bytes(5)
    graph.host.send_frame(if_a, frame(unknown, mac_a), jid_a)
    assert graph.host.received(if_b, jid_b) == []
    # ng_bridge_newhook: an uplink has sendUnknown, the links after a first uplink do not.
    assert graph.stats("uplink1")["xmitPackets"] == 1
    assert graph.stats(link_a)["recvUnknown"] == 1


def test_learnt_unicast_goes_to_one_link_only() -> None:
    graph = two_vimages(Graph())
    jid_c, if_c, _mac_c, _ = graph.vimage("c")
    arp_exchange(graph)
    _jid_a, _if_a, mac_a, _ = graph.a
    jid_b, if_b, mac_b, _ = graph.b
    graph.host.send_frame(if_b, frame(mac_a, mac_b, b"again"), jid_b)
    assert graph.host.received(if_c, jid_c) == [frame(BROADCAST, mac_a, b"who-has")]


# -- issue 11 item 1: the parent must be up -------------------------------------------------


def test_a_down_parent_drops_and_counts_frames_to_the_wire() -> None:
    graph = Graph()
    jid, ifname, mac, _ = graph.vimage("a")
    c = graph.host.create_jail("c")
    graph.host.move_ifnet("em1", c)
    graph.host.set_up("em1", True, c)
    graph.host.set_up("em0", False)
    graph.host.send_frame(ifname, frame(BROADCAST, mac), jid)
    em0 = graph.ng.named("em0")
    assert isinstance(em0, EtherNode)
    assert em0.down_drops == 1
    assert graph.host.received("em1", c) == []
    graph.host.set_up("em0", True)
    graph.host.send_frame(ifname, frame(BROADCAST, mac), jid)
    assert graph.host.received("em1", c) == [frame(BROADCAST, mac)]


def test_a_down_nic_delivers_nothing_inbound() -> None:
    graph = Graph()
    jid, ifname, _mac, _link = graph.vimage("a")
    graph.host.set_up("em1", True)
    graph.host.set_up("em0", False)
    em1 = graph.host.find_ifnet("em1", 0)
    assert em1 is not None
    assert em1.mac is not None
    graph.host.send_frame("em1", frame(BROADCAST, em1.mac))
    assert graph.host.received(ifname, jid) == []
    assert graph.stats("link0")["recvPackets"] == 0


def test_a_down_interface_cannot_send() -> None:
    graph = Graph()
    jid, ifname, _mac, _ = graph.vimage("a")
    graph.host.set_up(ifname, False, jid)
    with pytest.raises(OSError, match=ifname) as info:
        graph.host.send_frame(ifname, frame(BROADCAST, b"\x02" * 6), jid)
    assert info.value.errno == errno.ENETDOWN


# -- loops, stats, runts ---------------------------------------------------------------------


def test_two_nics_on_one_wire_bridged_together_are_a_detected_loop() -> None:
    graph = Graph()
    jid, ifname, mac, _ = graph.vimage("a")
    connect = b"br:".ljust(512, b"\0") + name32("lower") + name32("link9")
    graph.send("em1:", mesg(GENERIC, CONNECT, connect))
    graph.send("em1:", mesg(917786906, 6, struct.pack("<I", 1)))  # setpromisc 1
    graph.send("em0:", mesg(917786906, 6, struct.pack("<I", 1)))
    graph.host.set_up("em1", True)
    graph.host.send_frame(ifname, frame(BROADCAST, mac), jid)
    detects = sum(graph.stats(link)["loopDetects"] for link in ("link0", "link9"))
    drops = sum(graph.stats(link)["loopDrops"] for link in ("link0", "link9"))
    assert detects >= 1
    assert drops >= 1
    assert graph.ng.storm_drops == 0


def test_stats_clear_and_getclear() -> None:
    graph = two_vimages(Graph())
    arp_exchange(graph)
    link = graph.a[3]
    assert graph.stats(link)["recvPackets"] == 1
    graph.send("br:", mesg(BRIDGE, GETCLR_STATS, struct.pack("<i", int(link[4:]))))
    assert decode_stats(NgMesg.decode(graph.replies.pop()).data)["recvOctets"] > 0
    assert graph.stats(link)["recvPackets"] == 0
    graph.host.send_frame(graph.a[1], frame(BROADCAST, graph.a[2]), graph.a[0])
    graph.send("br:", mesg(BRIDGE, CLR_STATS, struct.pack("<i", int(link[4:]))))
    assert graph.replies == []
    assert graph.stats(link)["recvPackets"] == 0


def test_runts_and_multicast_sources_are_counted_not_forwarded() -> None:
    graph = two_vimages(Graph())
    jid_a, if_a, _mac_a, link_a = graph.a
    graph.host.send_frame(if_a, b"\xff" * 10, jid_a)
    graph.host.send_frame(if_a, frame(BROADCAST, b"\x01" + bytes(5)), jid_a)
    stats = graph.stats(link_a)
    assert (stats["recvRunts"], stats["recvInvalid"], stats["recvPackets"]) == (1, 1, 0)
    assert graph.host.received(graph.b[1], graph.b[0]) == []


def test_learnt_hosts_age_out_after_max_staleness() -> None:
    now = [1000.0]
    graph = two_vimages(Graph())
    graph.host.clock = graph.ng.clock = lambda: now[0]
    arp_exchange(graph)
    graph.send("br:", mesg(BRIDGE, GET_TABLE))
    table = NgMesg.decode(graph.replies.pop()).data
    assert struct.unpack_from("<I", table)[0] == 2
    assert len(table) == 4 + 2 * 42
    now[0] += 900  # maxStaleness (ng_bridge_timeout)
    graph.send("br:", mesg(BRIDGE, GET_TABLE))
    assert NgMesg.decode(graph.replies.pop()).data == struct.pack("<I", 0)


# -- releases ---------------------------------------------------------------------------------


def test_bare_link_hook_is_numbered_by_the_bridge_on_15_only() -> None:
    # D44615 (86a6393a7d67): "link"/"uplink" get the lowest free number (alloc_unr).
    graph = Graph(release=15)
    graph.send("br:", mesg(GENERIC, MKPEER, name32("eiface") + name32("link") + name32("ether")))
    graph.send("br:", mesg(GENERIC, MKPEER, name32("eiface") + name32("uplink") + name32("ether")))
    bridge = graph.ng.named("br")
    assert bridge is not None
    assert sorted(bridge.hooks) == ["link0", "link1", "link2", "uplink1"]
    old = Graph(release=14)
    with pytest.raises(OSError, match=r"\S") as info:
        old.send("br:", mesg(GENERIC, MKPEER, name32("eiface") + name32("link") + name32("ether")))
    assert info.value.errno == errno.EINVAL


def test_a_failed_connect_leaves_no_numbered_hook_behind() -> None:
    # ng_con_nodes: the second hook fails (EEXIST), the first goes under the name it got.
    graph = Graph(release=15)
    connect = b"em0:".ljust(512, b"\0") + name32("link") + name32("lower")
    with pytest.raises(OSError, match=r"\S") as info:
        graph.send("br:", mesg(GENERIC, CONNECT, connect))
    assert info.value.errno == errno.EEXIST
    bridge = graph.ng.named("br")
    assert bridge is not None
    assert sorted(bridge.hooks) == ["link0", "link1"]
    with pytest.raises(OSError, match=r"\S") as info:
        graph.send("br:", mesg(GENERIC, CONNECT, b"br:".ljust(512, b"\0") + name32("link") * 2))
    assert info.value.errno == errno.ELOOP  # ng_bridge_newhook: NG_PEER_NODE(hook) == node


@pytest.mark.parametrize(("release", "refused"), [(13, False), (14, False), (15, True)])
def test_sg_len_check_of_ngd_send_follows_the_release(release: int, refused: bool) -> None:
    # ngd_send: 15 refuses sg_len > 34 first; every release refuses sg_len - 2 >= 32.
    graph = Graph(release=release)
    data = graph.ng.open_control()
    graph.send(
        ".",
        mesg(GENERIC, CONNECT, b"br:".ljust(512, b"\0") + name32("h") + name32("link5")),
    )
    padded = bytes([35, 32]) + b"h".ljust(33, b"\0")
    with pytest.raises(OSError, match=r"\S") as info:
        graph.ng.data_send(graph.sock, padded, frame(BROADCAST, b"\x02" * 6))
    assert info.value.errno == errno.EINVAL
    assert ("sg_len" in str(info.value)) is refused
    graph.ng.data_send(graph.sock, addr("h"), frame(BROADCAST, b"\x02" * 6))
    assert graph.stats("link5")["recvBroadcasts"] == 1
    graph.ng.close_socket(data, data=False)


def test_upper_hook_zeroes_hwassist_until_it_goes() -> None:
    graph = Graph()
    em0 = graph.host.find_ifnet("em0", 0)
    assert em0 is not None
    assert em0.hwassist == 0
    graph.send("em0:", mesg(GENERIC, RMHOOK, name32("upper")))
    assert em0.hwassist == NIC_HWASSIST  # ng_ether_disconnect restores priv->hwassist


def test_a_vlan_nic_gets_a_sanitized_ether_node() -> None:
    host = SimHost(nics=("igb0", "igb0.100"))
    node = host.ng.named("igb0_100")  # ng_ether_sanitize_ifname: "." and ":" → "_"
    assert isinstance(node, EtherNode)
    assert node.ifnet.name == "igb0.100"
