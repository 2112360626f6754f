"""``vimagectl --json list`` prints the daemon's page text where that is provably what
decoding and encoding again printed (tests, unit tier).

The reference, :func:`printed_before`, is what vimagectl did before: ``json.loads`` the page,
the schema's check, ``json.dumps`` of its vimages. Every page, as the daemon writes it or
spelt otherwise, must print the same bytes through vimagectl/client.py's ``decode_page`` and
render.py's ``write_json_array``; and a page the schema refuses is refused, whichever path
it takes. Schema.unchanged (vimagectl/bulk.py), which that path trusts, is held to the
schema's own check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import typing
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vimagectl.client import SCHEMA, ClientError, decode_page, decode_reply
from vimagectl.render import write_json_array
from vimagectl.schema import WireError
from vimaged import protocol
from vimaged.framing import frame, recv_frame
from vimaged.protocol import (
    FEATURES,
    REPLY_DECODER,
    Hello,
    Interface,
    LinkStats,
    VimageInfo,
    VimagesEnd,
    vimages_pages,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Any text: spaces, quotes, backslashes, control characters, non-ASCII, astral characters.
texts = st.text(max_size=8) | st.sampled_from(["::1/128", "-0", "a b", 'q"', "é", "\u2028"])
maybe = st.none() | texts
interfaces = st.builds(
    Interface,
    name=texts,
    kind=st.sampled_from(typing.get_args(protocol.InterfaceKind)),
    parent=maybe,
    mac=maybe,
    where=st.sampled_from(typing.get_args(protocol.Where)),
    holder_jid=st.none() | ints,
    holder_dying=st.none() | st.booleans(),
    addresses=st.lists(texts, max_size=2).map(tuple),
    bridge_mode=maybe,
    link=st.none() | st.builds(LinkStats, recv_packets=ints, loop_drops=ints),
)
vimage_infos = st.builds(
    VimageInfo,
    name=texts,
    state=st.sampled_from(typing.get_args(protocol.State)),
    jid=st.none() | ints,
    wanted=st.booleans(),
    health=st.sampled_from(typing.get_args(protocol.HealthState)),
    health_reason=maybe,
    interfaces=st.lists(interfaces, max_size=3).map(tuple),
    error=maybe,
    restarts=ints,
    waiting_for=st.lists(texts, max_size=2).map(tuple),
)


def printed_before(body: bytes) -> str:
    """What vimagectl printed of a page's vimages before it printed page text."""
    checked = SCHEMA.check("Reply", json.loads(body))
    assert isinstance(checked, dict)
    return json.dumps(checked["vimages"], ensure_ascii=False, separators=(",", ":")) + "\n"


def printed_now(body: bytes, capsys: pytest.CaptureFixture[str]) -> tuple[str, str | None]:
    """What vimagectl prints of that page now, and the page text it used (None: encoded)."""
    capsys.readouterr()
    page, text = decode_page(body)
    write_json_array([(page["vimages"], text)])  # type: ignore[typeddict-item]
    return capsys.readouterr().out, text


def fleet(count: int) -> list[VimageInfo]:
    """Vimages as a daemon lists them: running, stopped, bridged, with addresses and counters."""
    return [
        VimageInfo(
            name=f"v{i}",
            state="running" if i % 2 else "stopped",
            jid=i + 1 if i % 2 else None,
            wanted=bool(i % 2),
            health="ok" if i % 2 else "unknown",
            interfaces=(
                Interface(
                    name=f"ng0_v{i}",
                    kind="bridge",
                    parent="em0",
                    mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                    where="vimage" if i % 2 else "absent",
                    addresses=("192.0.2.1/24", "2001:db8::1/64") if i % 2 else (),
                    bridge_mode="classic" if i % 2 else None,
                    link=LinkStats(recv_packets=i, xmit_packets=2 * i) if i % 2 else None,
                ),
            ),
        )
        for i in range(count)
    ]


def test_the_daemons_pages_are_printed_as_they_came_and_as_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    infos = fleet(600)
    pages = list(vimages_pages(infos))
    assert len(pages) > 1
    out = ""
    for body in pages:
        now, text = printed_now(body, capsys)
        assert text is not None  # the daemon's spelling: printed without encoding it again
        assert now == printed_before(body)
        out += text + ","
    assert f"[{out[:-1]}]".encode() == msgspec.json.encode(infos)


# capsys is read afresh for each example (printed_now).
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(infos=st.lists(vimage_infos, min_size=1, max_size=4), budget=st.integers(1, 2000))
def test_any_page_the_daemon_writes_prints_as_before(
    infos: list[VimageInfo], budget: int, capsys: pytest.CaptureFixture[str]
) -> None:
    for body in vimages_pages(infos, budget=budget):
        assert printed_now(body, capsys)[0] == printed_before(body)


PAGE = '{"reply":"vimages_page","vimages":[%s]}'
VIMAGE = (
    '{"name":"a","state":"running","jid":%s,"wanted":false,"health":"ok","health_reason":null,'
    '"interfaces":[],"config_changed":false,"error":%s,"restarts":0,"removed":false,'
    '"waiting_for":[]}'
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(PAGE % (VIMAGE % ("1", '"x y"')), id="space-in-a-string"),
        pytest.param(PAGE % (VIMAGE % ("1", '"::"')), id="string-opening-with-a-colon"),
        pytest.param(PAGE % (VIMAGE % ("1", '"-0"')), id="minus-zero-in-a-string"),
        pytest.param(PAGE % (VIMAGE % ("1", '"\\u00e9\\n\\""')), id="escapes"),
        pytest.param(PAGE % (VIMAGE % ("1", '"\u00e9\U0001f600"')), id="non-ascii"),
        pytest.param(PAGE % (VIMAGE % ("-0", "null")), id="minus-zero"),
        pytest.param(PAGE % (VIMAGE % (" 1", "null")), id="space-between-tokens"),
        pytest.param(PAGE % (VIMAGE % ("1\n", "null")), id="newline-between-tokens"),
        pytest.param(PAGE.replace(":[", ": [") % (VIMAGE % ("1", "null")), id="space-in-the-page"),
        pytest.param(
            PAGE % (VIMAGE % ("1", "null")).replace('"name":"a",', '"name":"b","name":"a",'),
            id="a-key-twice",
        ),
        pytest.param(
            PAGE
            % (VIMAGE % ("1", "null"))
            .replace('"state":"running",', '"state":"bogus",', 1)
            .replace('"restarts":0', '"restarts":0,"state":"running"'),
            id="an-invalid-value-overridden-by-a-later-key",
        ),
        pytest.param(
            PAGE
            % (VIMAGE % ("1", "null"))
            .replace('"wanted":false,', "")
            .replace('"health":"ok",', '"health":"ok","wanted":false,'),
            id="fields-out-of-order",
        ),
        pytest.param(PAGE % (VIMAGE % ("1", "null")).replace("}", ',"new":1}'), id="unknown"),
        pytest.param(PAGE % '{"name":"a","state":"stopped"}', id="defaults-left-out"),
        pytest.param(PAGE % "", id="empty-page"),
        pytest.param(PAGE.replace("]}", '],"more":true}') % (VIMAGE % ("1", "null")), id="more"),
    ],
)
def test_a_page_spelt_otherwise_prints_as_before(
    body: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now, text = printed_now(body.encode(), capsys)
    assert now == printed_before(body.encode())
    if text is not None:  # as it came only if that is what json prints
        assert f"[{text}]\n" == now


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(PAGE % (VIMAGE % ('"1"', "null")), id="string-jid"),
        pytest.param(PAGE % (VIMAGE % ("1.0", "null")), id="float-jid"),
        pytest.param(PAGE % (VIMAGE % ("true", "null")), id="bool-jid"),
        pytest.param(PAGE % (VIMAGE % ("1", "2")), id="number-error"),
        pytest.param(PAGE % (VIMAGE % ("NaN", "null")), id="NaN"),
        pytest.param(PAGE % (VIMAGE % ("1", "null")).replace("running", "bogus"), id="state"),
        pytest.param(
            PAGE % (VIMAGE % ("1", "null")).replace('"restarts":0', '"restarts":0,"state":"x"'),
            id="an-invalid-value-in-a-later-key",
        ),
        pytest.param(
            PAGE % (VIMAGE % ("1", "null")).replace('"interfaces":[]', '"interfaces":[{}]'),
            id="an-interface-without-fields",
        ),
        pytest.param(
            PAGE
            % (VIMAGE % ("1", "null")).replace(
                '"interfaces":[]',
                '"interfaces":[{"name":"e","kind":"vnet","parent":null,"mac":null,'
                '"where":"host","holder_jid":null,"holder_dying":null,"addresses":[],'
                '"bridge_mode":null,"link":{"recv_packets":"1","xmit_packets":0,'
                '"memory_failures":0,"loop_drops":0,"loop_detects":0}}]',
            ),
            id="a-counter-as-a-string",
        ),
        pytest.param(PAGE % (VIMAGE % ("1", "null") + ",[]"), id="a-vimage-that-is-an-array"),
        pytest.param(PAGE.replace("vimages_page", "vimages_pages") % "", id="unknown-reply"),
        pytest.param((PAGE % (VIMAGE % ("1", "null")))[:-1], id="truncated"),
    ],
)
def test_a_page_the_schema_refuses_is_refused(body: str) -> None:
    with pytest.raises(ClientError) as caught:
        decode_page(body.encode())
    assert caught.value.code == "bad_frame"
    with pytest.raises(msgspec.DecodeError):
        REPLY_DECODER.decode(body.encode())  # as the daemon's own decoder would


def test_a_page_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ClientError) as caught:
        decode_page((PAGE % (VIMAGE % ("1", '"\udcff"'))).encode("utf-8", "surrogatepass"))
    assert caught.value.code == "bad_frame"


@pytest.mark.parametrize("decode", [decode_page, decode_reply])
def test_a_reply_nested_too_deeply_is_a_bad_frame(decode: typing.Callable[[bytes], object]) -> None:
    """A RecursionError from the decoder was a traceback before."""
    with pytest.raises(ClientError) as caught:
        decode(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.code == "bad_frame"


def members(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(map(members, value.values()))
    if isinstance(value, list):
        return sum(map(members, value))
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def mutated(value: object) -> st.SearchStrategy[object]:
    """``value`` with one thing changed somewhere inside it (as test_wire_schema's)."""
    here: st.SearchStrategy[object] = json_values
    if isinstance(value, dict) and value:
        key = st.sampled_from(sorted(value))
        here = st.one_of(
            json_values,
            key.map(lambda k: {i: v for i, v in value.items() if i != k}),
            st.tuples(texts, json_values).map(lambda kv: {**value, kv[0]: kv[1]}),
            key.map(lambda k: {k: value[k], **value}),  # reordered
            key.flatmap(lambda k: mutated(value[k]).map(lambda v: {**value, k: v})),
        )
    elif isinstance(value, list) and value:
        index = st.integers(0, len(value) - 1)
        here = st.one_of(
            json_values,
            index.flatmap(
                lambda i: mutated(value[i]).map(lambda v: [*value[:i], v, *value[i + 1 :]])
            ),
        )
    return here


@settings(max_examples=250, deadline=None)
@given(st.lists(vimage_infos, max_size=3), st.data())
def test_unchanged_says_yes_only_for_what_the_check_passes_as_it_is(
    infos: list[VimageInfo], data: st.DataObject
) -> None:
    wire = json.loads(msgspec.json.encode(infos))
    values = data.draw(mutated(wire)) if data.draw(st.booleans()) else wire
    if not isinstance(values, list):
        values = [values]
    found = SCHEMA.unchanged("VimageInfo", values)
    if values is wire:  # as the daemon wrote it
        assert found == members(wire)
    if found is None:
        return
    assert found == members(values)
    assert not any(isinstance(v, float) for v in _leaves(values))
    for value in values:
        try:
            checked = SCHEMA.check("VimageInfo", value)
        except WireError:
            pytest.fail(f"unchanged passed what the check refuses: {value!r}")
        assert checked is value


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


# --- the real vimagectl, started as a user starts it ------------------------------------------


def serve_once(path: str, pages: list[bytes]) -> threading.Thread:
    """A listener that answers one connection's listing with ``pages`` and an end."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def answer() -> None:
        with listener, listener.accept()[0] as conn:
            conn.sendall(
                frame(msgspec.json.encode(Hello(protocol=1, daemon="t", features=FEATURES)))
            )
            recv_frame(conn)
            count = 0
            for body in pages:
                conn.sendall(frame(body))
                count += len(json.loads(body)["vimages"])
            conn.sendall(frame(msgspec.json.encode(VimagesEnd(count=count))))

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


LOADED = """
import sys
from vimagectl.cli import main
status = main(sys.argv[1:])
sys.stdout.flush()
print(status, sorted(m for m in ("re", "json", "enum", "functools") if m in sys.modules),
      file=sys.stderr)
"""


def test_json_list_prints_the_pages_without_json_or_re(tmp_path: Path) -> None:
    path = str(tmp_path / "v.sock")
    odd = (PAGE % (VIMAGE % ("1", '"x y"'))).encode()  # encoded again: still without json
    pages = [*vimages_pages(fleet(300)), odd]
    thread = serve_once(path, pages)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIMAGED_SOCKET")}
    done = subprocess.run(
        [sys.executable, "-c", LOADED, "-s", path, "--json", "list"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=True,
        timeout=60,
    )
    thread.join(10)
    assert done.stderr.decode().split(None, 1) == ["0", "[]\n"]
    expected = [item for body in pages for item in json.loads(printed_before(body))]
    assert (
        done.stdout
        == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    )
