"""Unit tests of the netgraph ABI layer: golden vectors, struct sizes, hypothesis round trips."""

from __future__ import annotations

import contextlib
import ctypes
import json
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.vectors import NETGRAPH_VECTORS
from vimaged.netgraph import abi, codec, structs
from vimaged.platforms import LinkCounters

pytestmark = pytest.mark.unit

VECTORS_PATH = NETGRAPH_VECTORS
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())
REQUESTS = [v for v in VECTORS if v["kind"] == "request"]
REPLIES = [v for v in VECTORS if v["kind"] == "reply"]
SOCKADDRS = [v for v in VECTORS if v["kind"] == "sockaddr"]

# The argument each request vector was built from (netgraph-abi.md §4.5).
REQUEST_ARGS: dict[str, bytes] = {
    "mkpeer_em0_bridge": codec.encode_mkpeer("bridge", "lower", "link0"),
    "connect_em0_upper_link1": codec.encode_connect("em0:lower", "upper", "link1"),
    "name_bridge": codec.encode_name("em0bridge"),
    "mkpeer_bridge_eiface": codec.encode_mkpeer("eiface", "link2", "ether"),
    "eiface_set_mac": codec.encode_mac("02:00:27:e7:1b:18"),
    "ether_setpromisc_1": codec.encode_u32(1),
    "ether_setautosrc_0": codec.encode_u32(0),
    "bridge_setpersistent": b"",
    "listnodes": b"",
    "nodeinfo_em0": b"",
    "listhooks_em0": b"",
    "shutdown_ngeth0": b"",
    "ascii2binary_setpromisc": codec.encode_ascii_request("setpromisc", "1"),
}


def test_every_vector_is_covered() -> None:
    assert len(VECTORS) == 16
    assert {v["name"] for v in REQUESTS} == set(REQUEST_ARGS)


@pytest.mark.parametrize("vec", REQUESTS, ids=[v["name"] for v in REQUESTS])
def test_request_packs_to_golden_bytes(vec: dict[str, Any]) -> None:
    args = REQUEST_ARGS[vec["name"]]
    assert args.hex() == vec["args_hex"]
    message = abi.pack_message(vec["cookie"], vec["cmd"], args, token=vec["token"])
    assert message.hex() == vec["message_hex"]
    assert abi.pack_sockaddr(vec["path"]).hex() == vec["sockaddr_hex"]
    assert len(abi.pack_sockaddr(vec["path"])) == vec["sockaddr_len"]


@pytest.mark.parametrize("vec", REQUESTS, ids=[v["name"] for v in REQUESTS])
def test_request_decodes_to_its_fields(vec: dict[str, Any]) -> None:
    msg = abi.unpack_message(bytes.fromhex(vec["message_hex"]))
    assert (msg.version, msg.cmd, msg.flags, msg.token, msg.typecookie) == (
        8,
        vec["cmd"],
        vec["flags"],
        vec["token"],
        vec["cookie"],
    )
    assert (msg.cmdstr, msg.arglen, msg.data.hex()) == (
        vec["cmdstr"],
        vec["arglen"],
        vec["args_hex"],
    )
    assert abi.unpack_sockaddr(bytes.fromhex(vec["sockaddr_hex"])) == vec["path"]


def test_request_arguments_decode() -> None:
    assert codec.decode_mkpeer(REQUEST_ARGS["mkpeer_em0_bridge"]) == ("bridge", "lower", "link0")
    connect = REQUEST_ARGS["connect_em0_upper_link1"]
    assert codec.decode_connect(connect) == ("em0:lower", "upper", "link1")
    assert codec.decode_name(REQUEST_ARGS["name_bridge"]) == "em0bridge"
    assert codec.decode_mac(REQUEST_ARGS["eiface_set_mac"]) == "02:00:27:e7:1b:18"
    inner = abi.unpack_message(REQUEST_ARGS["ascii2binary_setpromisc"])
    assert (inner.version, inner.cmdstr, inner.arglen, inner.data) == (0, "setpromisc", 2, b"1\0")


@pytest.mark.parametrize("vec", REPLIES, ids=[v["name"] for v in REPLIES])
@pytest.mark.parametrize("sockaddr_key", ["sockaddr_hex", "sockaddr_hex_sg_data32"])
def test_reply_decodes(vec: dict[str, Any], sockaddr_key: str) -> None:
    msg = abi.unpack_message(bytes.fromhex(vec["message_hex"]))
    assert msg.flags & abi.NGF_RESP
    assert (msg.token, msg.typecookie, msg.cmd, msg.cmdstr) == (
        vec["token"],
        vec["cookie"],
        vec["cmd"],
        vec["cmdstr"],
    )
    info = codec.decode_nodeinfo(msg.data)
    assert info == codec.NodeInfo(name="em0", type="ether", id=3, hooks=2)
    source = bytes.fromhex(vec[sockaddr_key])
    assert source[0] == len(source) in abi.SOCKADDR_NG_SIZES
    assert abi.unpack_sockaddr(source) == vec["path"]


@pytest.mark.parametrize("vec", REPLIES, ids=[v["name"] for v in REPLIES])
def test_reply_packs_back(vec: dict[str, Any]) -> None:
    info = codec.NodeInfo(name="em0", type="ether", id=3, hooks=2)
    message = abi.pack_message(
        vec["cookie"], vec["cmd"], codec.encode_nodeinfo(info), token=vec["token"], flags=1
    )
    assert message.hex() == vec["message_hex"]
    both = (bytes(structs.SockaddrNg14()), bytes(structs.SockaddrNg32()))
    for empty, key in zip(both, ("sockaddr_hex", "sockaddr_hex_sg_data32"), strict=True):
        fixed = bytearray(empty)
        fixed[0], fixed[1] = len(fixed), abi.AF_NETGRAPH
        fixed[2:6] = b"[3]:"
        assert bytes(fixed).hex() == vec[key]


@pytest.mark.parametrize("vec", SOCKADDRS, ids=[v["name"] for v in SOCKADDRS])
def test_bare_sockaddr(vec: dict[str, Any]) -> None:
    packed = abi.pack_sockaddr(vec["path"])
    assert packed.hex() == vec["sockaddr_hex"]
    assert packed[0] == len(packed) == vec["sockaddr_len"] == 2 + len(vec["path"]) + 1
    assert abi.unpack_sockaddr(packed) == vec["path"]


SIZES = {
    structs.NgMesgHeader: 56,
    structs.SockaddrNg14: 16,
    structs.SockaddrNg32: 34,
    structs.NgmMkpeer: 96,
    structs.NgmConnect: 576,
    structs.NgmName: 32,
    structs.NgmRmhook: 32,
    structs.Nodeinfo: 72,
    structs.Linkinfo: 136,
    structs.Hooklist: 72,
    structs.Namelist: 4,
    structs.Typeinfo: 36,
    structs.Typelist: 4,
    structs.NgBridgeConfig: 16,
    structs.NgBridgeConfigOld: 48,
    structs.NgBridgeLinkStats: 112,
    structs.NgBridgeHostent: 42,
    structs.NgBridgeHostAry: 4,
    structs.NgBridgeHostOld: 12,
    structs.NgBridgeMoveHost: 38,
    structs.NgEifacePar: 6,
    structs.NgEifaceIfname: 16,
}


@pytest.mark.parametrize("struct_type", list(SIZES), ids=[t.__name__ for t in SIZES])
def test_struct_size(struct_type: type[ctypes.Structure]) -> None:
    assert ctypes.sizeof(struct_type) == SIZES[struct_type]


def test_offsets_of_padded_structs() -> None:
    assert structs.NgBridgeConfig.loopTimeout.offset == 4
    assert structs.NgBridgeConfigOld.loopTimeout.offset == 36
    assert structs.NgBridgeHostent.age.offset == 38
    assert structs.NgBridgeHostent.staleness.offset == 40
    assert ctypes.alignment(structs.NgBridgeHostent) == 2
    assert structs.NgMesgHeader.cmdstr.offset == 24
    assert structs.Linkinfo.nodeinfo.offset == 64


def test_cmdstr_is_signed_like_libnetgraph() -> None:
    message = abi.pack_message(1, 0xFFFFFFFF, b"", token=1)
    assert abi.unpack_message(message).cmdstr == "cmd-1"


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (abi.pack_sockaddr, ""),
        (abi.pack_sockaddr, "a\0b"),
        (abi.pack_sockaddr, "x" * 253),
        (codec.encode_name, "n" * 32),
        (codec.mac_bytes, "02:00:27:e7:1b"),
        (codec.mac_bytes, "zz:00:27:e7:1b:18"),
        (codec.bridge_link_number, "link01"),
        (codec.bridge_link_number, "uplinkx"),
    ],
)
def test_bad_input_is_refused(call: Any, arg: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        call(arg)


def test_truncated_message_is_refused() -> None:
    message = abi.pack_message(1, 2, b"abcd", token=3)
    with pytest.raises(ValueError, match="arglen"):
        abi.unpack_message(message[:-1])
    with pytest.raises(ValueError, match="header"):
        abi.unpack_message(message[:55])


# hypothesis round trips, one per struct family.

names = st.from_regex(r"[A-Za-z0-9_\-]{1,31}", fullmatch=True)
hooks = st.from_regex(r"[a-z]{1,10}[0-9]{0,5}", fullmatch=True)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
u64 = st.integers(0, 2**64 - 1)
macs = st.binary(min_size=6, max_size=6).map(codec.mac_text)
nodeinfos = st.builds(codec.NodeInfo, name=names | st.just(""), type=names, id=u32, hooks=u32)


@given(cookie=u32, cmd=u32, args=st.binary(max_size=600), token=u32, flags=u32)
def test_message_round_trip(cookie: int, cmd: int, args: bytes, token: int, flags: int) -> None:
    msg = abi.unpack_message(abi.pack_message(cookie, cmd, args, token=token, flags=flags))
    assert (msg.typecookie, msg.cmd, msg.data, msg.token, msg.flags) == (
        cookie,
        cmd,
        args,
        token,
        flags,
    )
    assert msg.cmdstr == abi.default_cmdstr(cmd)


@given(path=st.from_regex(r"[A-Za-z0-9_:.\[\]]{1,252}", fullmatch=True))
def test_sockaddr_round_trip(path: str) -> None:
    packed = abi.pack_sockaddr(path)
    assert abi.unpack_sockaddr(packed) == path
    padded = packed + bytes(40)  # a fixed-size kernel sockaddr reads the same
    assert abi.unpack_sockaddr(padded) == path


@given(type_=names, ourhook=names, peerhook=names)
def test_mkpeer_round_trip(type_: str, ourhook: str, peerhook: str) -> None:
    assert codec.decode_mkpeer(codec.encode_mkpeer(type_, ourhook, peerhook)) == (
        type_,
        ourhook,
        peerhook,
    )


@given(path=st.from_regex(r"[A-Za-z0-9_:.]{1,511}", fullmatch=True), a=names, b=names)
def test_connect_round_trip(path: str, a: str, b: str) -> None:
    assert codec.decode_connect(codec.encode_connect(path, a, b)) == (path, a, b)


@given(name=names)
def test_name_and_rmhook_round_trip(name: str) -> None:
    assert codec.decode_name(codec.encode_name(name)) == name
    assert codec.decode_rmhook(codec.encode_rmhook(name)) == name


@given(info=nodeinfos)
def test_nodeinfo_round_trip(info: codec.NodeInfo) -> None:
    assert codec.decode_nodeinfo(codec.encode_nodeinfo(info)) == info


@given(
    node=nodeinfos,
    links=st.lists(st.builds(codec.LinkInfo, ourhook=names, peerhook=names, peer=nodeinfos)),
)
def test_hooklist_round_trip(node: codec.NodeInfo, links: list[codec.LinkInfo]) -> None:
    hl = codec.HookList(
        node=codec.NodeInfo(name=node.name, type=node.type, id=node.id, hooks=len(links)),
        links=tuple(links),
    )
    assert codec.decode_hooklist(codec.encode_hooklist(hl)) == hl


@given(nodes=st.lists(nodeinfos, max_size=20))
def test_namelist_round_trip(nodes: list[codec.NodeInfo]) -> None:
    assert codec.decode_namelist(codec.encode_namelist(nodes)) == nodes


@given(types=st.lists(st.builds(codec.TypeInfo, type_name=names, numnodes=u32), max_size=20))
def test_typelist_round_trip(types: list[codec.TypeInfo]) -> None:
    assert codec.decode_typelist(codec.encode_typelist(types)) == types


@given(
    cfg=st.builds(
        codec.BridgeConfig,
        debugLevel=st.integers(0, 255),
        loopTimeout=u32,
        maxStaleness=u32,
        minStableAge=u32,
    )
)
def test_bridge_config_round_trip(cfg: codec.BridgeConfig) -> None:
    assert codec.decode_bridge_config(codec.encode_bridge_config(cfg)) == cfg


@given(
    cfg=st.builds(
        codec.BridgeConfig,
        debugLevel=st.integers(0, 255),
        loopTimeout=u32,
        maxStaleness=u32,
        minStableAge=u32,
        ipfw=st.lists(st.integers(0, 255), min_size=32, max_size=32).map(tuple),
    )
)
def test_old_bridge_config_round_trip(cfg: codec.BridgeConfig) -> None:
    encoded = codec.encode_bridge_config(cfg, old_abi=True)
    assert len(encoded) == 48
    assert codec.decode_bridge_config(encoded, old_abi=True) == cfg


@given(stats=st.builds(codec.LinkStats, **{n: u64 for n, _ in structs.NgBridgeLinkStats._fields_}))
def test_link_stats_round_trip(stats: codec.LinkStats) -> None:
    assert codec.decode_link_stats(codec.encode_link_stats(stats)) == stats


def test_platform_link_counters_are_the_binding_link_stats() -> None:
    # platforms.LinkCounters copies codec.LinkStats so the seam need not import the binding;
    # NetgraphBridges.link_counters converts one to the other field by field
    assert LinkCounters.__struct_fields__ == codec.LinkStats.__struct_fields__
    assert codec.LinkStats.__struct_fields__ == tuple(
        n for n, _ in structs.NgBridgeLinkStats._fields_
    )


@given(
    hosts=st.lists(
        st.builds(codec.HostEntry, addr=macs, hook=names, age=u16, staleness=u16), max_size=10
    )
)
def test_host_table_round_trip(hosts: list[codec.HostEntry]) -> None:
    assert codec.decode_host_table(codec.encode_host_table(hosts)) == hosts


@given(
    hosts=st.lists(
        st.builds(codec.HostEntry, addr=macs, link_num=u16, age=u16, staleness=u16), max_size=10
    )
)
def test_old_host_table_round_trip(hosts: list[codec.HostEntry]) -> None:
    encoded = codec.encode_host_table(hosts, old_abi=True)
    assert codec.decode_host_table(encoded, old_abi=True) == hosts


@given(mac=macs, hook=names)
def test_move_host_round_trip(mac: str, hook: str) -> None:
    assert codec.decode_move_host(codec.encode_move_host(mac, hook)) == (mac, hook)


@given(mac=macs, ifname=st.from_regex(r"[a-z]{1,8}[0-9_a-z]{0,7}", fullmatch=True))
def test_eiface_payloads_round_trip(mac: str, ifname: str) -> None:
    assert codec.decode_mac(codec.encode_mac(mac)) == mac
    assert codec.decode_ifname(codec.encode_ifname(ifname)) == ifname


@given(value=u32, number=st.integers(-(2**31), 2**31 - 1))
def test_integer_payloads_round_trip(value: int, number: int) -> None:
    assert codec.decode_u32(codec.encode_u32(value)) == value
    assert codec.decode_i32(codec.encode_i32(number)) == number


@given(n=st.integers(0, 10**6))
def test_bridge_link_numbers(n: int) -> None:
    assert codec.bridge_link_number(f"link{n}") == n
    if n:
        assert codec.bridge_link_number(f"uplink{n}") == -n


@given(garbage=st.binary(max_size=200))
def test_garbage_only_raises_value_error(garbage: bytes) -> None:
    for decode in (
        abi.unpack_message,
        codec.decode_nodeinfo,
        codec.decode_hooklist,
        codec.decode_namelist,
        codec.decode_typelist,
        codec.decode_host_table,
    ):
        with contextlib.suppress(ValueError):
            decode(garbage)


def test_getstats_reply_bytes_follow_the_header_layout() -> None:
    # struct ng_bridge_link_stats (sys/netgraph/ng_bridge.h): 14 x u_int64_t in declaration
    # order, no padding, 112 bytes. The same on 12.x (bcopy of the struct) and 13+ (each
    # counter(9) FETCHed into it by ng_bridge_rcvmsg): counters are 64-bit on every release.
    order = [
        "recvOctets", "recvPackets", "recvMulticasts", "recvBroadcasts", "recvUnknown",
        "recvRunts", "recvInvalid", "xmitOctets", "xmitPackets", "xmitMulticasts",
        "xmitBroadcasts", "loopDrops", "loopDetects", "memoryFailures",
    ]  # fmt: skip
    values = {name: (i + 1) * 0x0101010101 + (1 << 40) for i, name in enumerate(order)}
    raw = struct.pack("<14Q", *(values[name] for name in order))
    stats = codec.decode_link_stats(raw)
    assert msgspec.structs.asdict(stats) == values
    assert codec.encode_link_stats(stats) == raw
    with pytest.raises(ValueError, match="ng_bridge_link_stats"):
        codec.decode_link_stats(raw[:-8])  # a 13-counter layout is refused, never misread


def test_getstats_argument_is_the_signed_link_number() -> None:
    # ng_bridge_rcvmsg: arglen must be 4; n >= 0 -> "link<n>", n < 0 -> "uplink<-n>".
    assert codec.encode_i32(codec.bridge_link_number("link12")) == struct.pack("<i", 12)
    assert codec.encode_i32(codec.bridge_link_number("uplink1")) == struct.pack("<i", -1)
    message = abi.pack_message(
        abi.NGM_BRIDGE_COOKIE,
        abi.NGM_BRIDGE_GET_STATS,
        codec.encode_i32(codec.bridge_link_number("link2")),
        token=7,
    )
    header = abi.unpack_message(message)
    assert (header.typecookie, header.cmd, header.arglen) == (1569321993, 4, 4)
    assert header.data == b"\2\0\0\0"
