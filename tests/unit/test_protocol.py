"""Wire protocol tests: round-trips, garbage, framing, docs coverage (tests, unit tier).

Property tests build every request from its fields; garbage may only ever raise
``msgspec.DecodeError``, which the server answers with ``invalid_request``.
"""

from __future__ import annotations

import contextlib
import re
import struct
import typing
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vimaged import protocol
from vimaged.protocol import (
    ERROR_CODES,
    HEADER,
    MAX_FRAME,
    MAX_NESTING,
    MUTATING,
    REPLY_DECODER,
    REQUEST_DECODER,
    VIMAGE_NAME_PATTERN,
    AnyReply,
    AnyRequest,
    Events,
    Health,
    Hello,
    ListVimages,
    Reload,
    Restart,
    Start,
    Status,
    Stop,
    Version,
    VimageInfo,
    Vimages,
    frame,
    frame_length,
    nests_deeper_than,
)

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

names = st.lists(st.from_regex(VIMAGE_NAME_PATTERN, fullmatch=True), max_size=4).map(tuple)
cni_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
cni_ifnames = st.from_regex(r"\A[a-z][a-z0-9]{0,14}\Z")
cidrs = st.sampled_from(["10.0.0.2/24", "fd00::2/64", "0.0.0.0/0"])
cni_keys = {"network": cni_names, "container_id": cni_names, "ifname": cni_ifnames}
CNI_REQUESTS: dict[type, st.SearchStrategy[typing.Any]] = {
    protocol.CniAdd: st.builds(
        protocol.CniAdd,
        **cni_keys,
        sandbox=st.sampled_from(["/run/netns/a", "12", "web"]),
        parent=st.sampled_from(["em0", "eth1"]),
        mac=st.none() | st.just("02:00:00:00:00:01"),
        mtu=st.none() | st.integers(68, 9000),
        addresses=st.lists(cidrs, max_size=2).map(tuple),
        routes=st.lists(st.builds(protocol.CniRoute, dst=cidrs), max_size=2).map(tuple),
    ),
    protocol.CniCheck: st.builds(protocol.CniCheck, **cni_keys),
    protocol.CniDel: st.builds(protocol.CniDel, **cni_keys),
    protocol.CniGc: st.builds(
        protocol.CniGc,
        network=cni_names,
        valid=st.lists(
            st.builds(protocol.CniAttachmentKey, container_id=cni_names, ifname=cni_ifnames),
            max_size=3,
        ).map(tuple),
    ),
    protocol.CniStatus: st.builds(protocol.CniStatus, network=cni_names, parent=st.just("em0")),
    protocol.CniList: st.builds(protocol.CniList),
    protocol.CniExec: st.builds(
        protocol.CniExec,
        environ=st.binary(max_size=64),
        stdin=st.binary(max_size=64),
    ),
}
REQUESTS: dict[type, st.SearchStrategy[typing.Any]] = {
    Start: st.builds(Start, names=names, all_=st.booleans()),
    Stop: st.builds(Stop, names=names, all_=st.booleans()),
    Restart: st.builds(Restart, names=names, all_=st.booleans()),
    ListVimages: st.builds(ListVimages),
    Status: st.builds(Status, names=names),
    Health: st.builds(Health, names=names),
    Reload: st.builds(Reload),
    Version: st.builds(Version),
    Events: st.builds(Events),
    protocol.Metrics: st.builds(protocol.Metrics),
    **CNI_REQUESTS,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def tag(cls: type) -> str:
    return str(cls.__struct_config__.tag)  # type: ignore[attr-defined]  # msgspec.Struct class


def test_strategies_cover_every_request() -> None:
    assert set(REQUESTS) == set(typing.get_args(AnyRequest))


@given(st.one_of(*REQUESTS.values()))
def test_every_request_round_trips_through_a_frame(request: AnyRequest) -> None:
    framed = frame(request)
    assert frame_length(framed[: HEADER.size]) == len(framed) - HEADER.size
    assert REQUEST_DECODER.decode(framed[HEADER.size :]) == request


@given(st.binary())
def test_binary_garbage_only_raises_decode_error(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        REQUEST_DECODER.decode(data)


@given(
    st.dictionaries(
        st.sampled_from(["op", "names", "all", "verbose"]) | st.text(max_size=5),
        json_values,
        max_size=4,
    ),
    st.sampled_from([tag(cls) for cls in REQUESTS] + ["frobnicate"]),
)
def test_json_garbage_only_raises_decode_error(fields: dict[str, object], op: str) -> None:
    for body in (fields, {**fields, "op": op}):
        with contextlib.suppress(msgspec.DecodeError):
            REQUEST_DECODER.decode(msgspec.json.encode(body))


@pytest.mark.parametrize(
    "name", ["", "1234", "web\n", "we b", "wéb", "web-1", "a" * 32, "../etc", "1web", "_web"]
)
def test_bad_vimage_names_are_rejected(name: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        REQUEST_DECODER.decode(msgspec.json.encode({"op": "status", "names": [name]}))


@pytest.mark.parametrize("name", ["web", "db_1", "W", "a" * 31, "a1"])
def test_good_vimage_names_are_accepted(name: str) -> None:
    request = REQUEST_DECODER.decode(msgspec.json.encode({"op": "status", "names": [name]}))
    assert request == Status(names=(name,))


def test_requests_refuse_unknown_fields_and_replies_tolerate_them() -> None:
    with pytest.raises(msgspec.ValidationError):
        REQUEST_DECODER.decode(b'{"op": "list", "verbose": true}')
    reply = REPLY_DECODER.decode(b'{"reply": "hello", "protocol": 1, "daemon": "9", "new": [1]}')
    assert reply == Hello(protocol=1, daemon="9")


def test_all_is_spelled_all_on_the_wire() -> None:
    # Defaults stay off the wire, so an older daemon accepts a request using no newer option.
    assert msgspec.json.decode(msgspec.json.encode(Start(all_=True))) == {
        "op": "start",
        "all": True,
    }
    assert msgspec.json.encode(ListVimages()) == b'{"op":"list"}'


def test_frame_header_is_four_bytes_big_endian() -> None:
    framed = frame(ListVimages())
    assert framed == struct.pack(">I", len(b'{"op":"list"}')) + b'{"op":"list"}'


def test_frame_length_refuses_more_than_max_frame() -> None:
    assert frame_length(HEADER.pack(MAX_FRAME)) == MAX_FRAME
    with pytest.raises(ValueError, match="MAX_FRAME"):
        frame_length(HEADER.pack(MAX_FRAME + 1))


def test_frame_refuses_to_encode_more_than_max_frame() -> None:
    big = Vimages(vimages=tuple(VimageInfo(name="x" * 60, state="stopped") for _ in range(20000)))
    with pytest.raises(ValueError, match="MAX_FRAME"):
        frame(big)


def test_mutating_requests_are_requests() -> None:
    assert set(MUTATING) <= set(typing.get_args(AnyRequest))
    assert {tag(cls) for cls in MUTATING} == {"start", "stop", "restart", "reload"} | {
        "cni_add", "cni_check", "cni_del", "cni_gc", "cni_status", "cni_exec"
    }  # fmt: skip


def test_docs_name_every_tag_and_error_code() -> None:
    text = DOCS.read_text()
    missing = [
        word
        for word in (
            *(tag(cls) for cls in typing.get_args(AnyRequest)),
            *(tag(cls) for cls in typing.get_args(AnyReply)),
            *ERROR_CODES,
        )
        if f"`{word}`" not in text
    ]
    assert missing == []
    for cls in typing.get_args(AnyRequest):
        assert f'"op": "{tag(cls)}"' in text, f"no JSON example of {tag(cls)}"
    assert str(MAX_FRAME) in text


def test_every_json_example_in_the_docs_decodes() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 2 * len(REQUESTS)
    for block in blocks:
        body = block.encode()
        if b'"op"' in body:
            REQUEST_DECODER.decode(body)
        else:
            REPLY_DECODER.decode(body)


def test_the_nesting_scan_respects_strings_and_counts_levels() -> None:
    assert not nests_deeper_than(b'{"op":"status","names":["' + b"[{" * 500 + b'"]}')
    assert not nests_deeper_than(b'["\\"' + b"[" * 50 + b'"]')  # escaped quote stays inside
    assert not nests_deeper_than(b"[" * MAX_NESTING + b"]" * MAX_NESTING)
    assert nests_deeper_than(b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1))
    assert nests_deeper_than(b"[{" * 9 + b"}]" * 9)  # 18 levels, of two kinds
    assert not nests_deeper_than(b"[]" * 500000)  # wide, not deep
