"""vimagectl's side of the wire: the shipped JSON Schema, its checker, and the typed dicts
(tests, unit tier).

vimaged/protocol.py owns the message types. vimagectl reads replies without msgspec, checking
them against vimagectl/protocol.schema.json and typing them with vimagectl/replies.py, both
generated from protocol.py by scripts/gen-wire-schema.py. These tests hold both files current
and equal to protocol.py, and hold the checker to what msgspec itself accepts and produces.
"""

from __future__ import annotations

import importlib.util
import json
import math
import typing
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vimagectl import replies
from vimagectl.client import (
    PROTOCOL_VERSION,
    SCHEMA,
    ClientError,
    _frame,
    decode_reply,
)
from vimagectl.schema import SCHEMA_FILE, Schema, SchemaError, WireError
from vimaged import framing, protocol
from vimaged.protocol import (
    REPLY_DECODER,
    REQUEST_DECODER,
    AnyReply,
    AnyRequest,
    Attachment,
    AttachmentList,
    CniResult,
    Done,
    Error,
    Event,
    Hello,
    Interface,
    MetricsText,
    Outcome,
    Reloaded,
    VersionInfo,
    VimageInfo,
    Vimages,
    VimagesEnd,
    VimagesPage,
    wire_schema,
)

if typing.TYPE_CHECKING:
    import types

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# --- the shipped schema -----------------------------------------------------------------------


def _generator() -> types.ModuleType:
    """scripts/gen-wire-schema.py, the one writer of vimagectl's copies of the wire types."""
    spec = importlib.util.spec_from_file_location("gen_wire_schema", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = ROOT / "scripts" / "gen-wire-schema.py"


def test_the_shipped_schema_is_current() -> None:
    shipped = Path(SCHEMA_FILE).read_text()
    assert shipped == json.dumps(wire_schema(), indent=2) + "\n", (
        "vimagectl/protocol.schema.json is stale: run python3 scripts/gen-wire-schema.py"
    )
    assert Path(SCHEMA_FILE) == ROOT / "vimagectl" / "protocol.schema.json"


def test_every_generated_file_is_current() -> None:
    generator = _generator()
    assert set(generator.OUTPUTS) == {Path(SCHEMA_FILE), Path(replies.__file__)}
    for path, text in generator.OUTPUTS.items():
        assert path.read_text() == text(), f"{path.name} is stale: run {GENERATOR.name}"


def test_a_wire_type_the_generator_cannot_spell_is_refused() -> None:
    """So that a new kind of field never ends up typed loosely (or not at all) in replies.py."""
    import datetime

    import msgspec.inspect

    with pytest.raises(TypeError):
        _generator()._Writer().annotation(msgspec.inspect.type_info(datetime.datetime))


def test_the_client_takes_version_and_frame_cap_from_the_protocol() -> None:
    assert PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert SCHEMA.integer("x-max-frame") == framing.MAX_FRAME == protocol.MAX_FRAME
    assert SCHEMA.pattern("Status", "names") == protocol.VIMAGE_NAME_PATTERN


def test_every_definition_compiles() -> None:
    Schema.load().compile_all()


@pytest.mark.parametrize(
    "definition",
    [
        pytest.param({"type": "integer", "minimum": 0}, id="minimum"),
        pytest.param({"type": "string", "format": "date-time"}, id="format"),
        pytest.param({"type": "array", "items": {"type": "string"}, "maxItems": 3}, id="maxItems"),
        pytest.param({"$ref": "other.json#/X"}, id="foreign-ref"),
        pytest.param({"type": "object", "properties": {}, "patternProperties": {}}, id="pattern"),
        pytest.param({"oneOf": [{"type": "string"}]}, id="oneOf"),
    ],
)
def test_a_keyword_it_does_not_understand_is_refused(definition: dict[str, object]) -> None:
    """So that a protocol change can never be checked more loosely than msgspec checks it."""
    schema = Schema({"$defs": {"X": definition}})
    for _ in range(2):  # and again: a failed compilation leaves nothing half-built behind
        with pytest.raises(SchemaError):
            schema.compile_all()


# --- the checker against msgspec ---------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # msgspec's range
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=12)
maybe_texts = st.none() | texts
states = st.sampled_from(typing.get_args(protocol.State))

interfaces = st.builds(
    Interface,
    name=texts,
    kind=st.sampled_from(typing.get_args(protocol.InterfaceKind)),
    parent=maybe_texts,
    mac=maybe_texts,
    where=st.sampled_from(typing.get_args(protocol.Where)),
    holder_jid=st.none() | ints,
    holder_dying=st.none() | st.booleans(),
)
vimage_infos = st.builds(
    VimageInfo,
    name=texts,
    state=states,
    jid=st.none() | ints,
    health=st.sampled_from(typing.get_args(protocol.HealthState)),
    interfaces=st.lists(interfaces, max_size=3).map(tuple),
    config_changed=st.booleans(),
    error=maybe_texts,
    restarts=ints,
    removed=st.booleans(),
)
outcomes = st.builds(
    Outcome, name=texts, ok=st.booleans(), state=states, code=maybe_texts, message=maybe_texts
)
names = st.lists(texts, max_size=3).map(tuple)
event_values = st.none() | st.booleans() | ints | floats | texts
attachments = st.builds(
    Attachment,
    network=texts,
    container_id=texts,
    ifname=texts,
    sandbox=texts,
    parent=texts,
    mac=texts,
    host_ifname=texts,
    state=st.sampled_from(typing.get_args(protocol.AttachmentState)),
    addresses=names,
)
REPLIES: dict[type, st.SearchStrategy[typing.Any]] = {
    AttachmentList: st.builds(
        AttachmentList, attachments=st.lists(attachments, max_size=3).map(tuple)
    ),
    Hello: st.builds(Hello, protocol=ints, daemon=texts, features=names),
    Done: st.builds(Done, outcomes=st.lists(outcomes, max_size=3).map(tuple)),
    Vimages: st.builds(Vimages, vimages=st.lists(vimage_infos, max_size=3).map(tuple)),
    VimagesPage: st.builds(VimagesPage, vimages=st.lists(vimage_infos, max_size=3).map(tuple)),
    VimagesEnd: st.builds(VimagesEnd, count=ints),
    Reloaded: st.builds(Reloaded, added=names, removed=names, changed=names),
    VersionInfo: st.builds(VersionInfo, daemon=texts, protocol=ints, platform=texts),
    Event: st.builds(
        Event,
        time=floats,
        event=texts,
        name=maybe_texts,
        data=st.dictionaries(texts, event_values, max_size=3),
    ),
    Error: st.builds(Error, code=texts, message=texts, errno=st.none() | ints),
    MetricsText: st.builds(MetricsText, text=texts),
    CniResult: st.builds(CniResult, exit=ints, stdout=st.binary(max_size=12)),
}
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def test_strategies_cover_every_reply() -> None:
    assert set(REPLIES) == set(typing.get_args(AnyReply))


def msgspec_view(value: object) -> object:
    """What msgspec makes of ``value`` as a reply: the decoded struct as JSON, or None."""
    try:
        decoded = REPLY_DECODER.decode(msgspec.json.encode(value))
    except msgspec.DecodeError:
        return None
    return json.loads(msgspec.json.encode(decoded))


def checker_view(value: object) -> object:
    try:
        return SCHEMA.check("Reply", value)
    except WireError:
        return None


@settings(deadline=None)  # a slow CI machine must not make a timing failure of a property
@given(st.one_of(*REPLIES.values()))
def test_every_reply_passes_unchanged(reply: AnyReply) -> None:
    wire = json.loads(msgspec.json.encode(reply))
    assert SCHEMA.check("Reply", wire) == wire
    assert SCHEMA.check("Reply", wire) is wire  # the fast path: nothing copied


@settings(deadline=None)
@given(st.one_of(*REPLIES.values()), st.data())
def test_omitted_defaults_are_filled_in_as_msgspec_does(
    reply: AnyReply, data: st.DataObject
) -> None:
    wire = json.loads(msgspec.json.encode(reply))
    dropped = data.draw(st.sets(st.sampled_from(sorted(wire))))
    sparse = {key: value for key, value in wire.items() if key not in dropped}
    assert checker_view(sparse) == msgspec_view(sparse)


@settings(max_examples=300, deadline=None)
@given(st.one_of(*REPLIES.values()), st.data())
def test_the_checker_accepts_and_refuses_what_msgspec_does(
    reply: AnyReply, data: st.DataObject
) -> None:
    """A field (at any depth) replaced, deleted or added: both agree on the outcome and value."""
    wire = json.loads(msgspec.json.encode(reply))
    mutated = data.draw(mutations(wire))
    assert checker_view(mutated) == msgspec_view(mutated), mutated


def mutations(value: object) -> st.SearchStrategy[object]:
    """``value`` with one thing changed somewhere inside it."""
    here: st.SearchStrategy[object] = json_values
    if isinstance(value, dict) and value:
        key = st.sampled_from(sorted(value))
        here = st.one_of(
            json_values,
            key.map(lambda k: {i: v for i, v in value.items() if i != k}),  # deleted
            st.tuples(texts, json_values).map(lambda kv: {**value, kv[0]: kv[1]}),  # added
            key.flatmap(lambda k: mutations(value[k]).map(lambda v: {**value, k: v})),
        )
    elif isinstance(value, list) and value:
        index = st.integers(0, len(value) - 1)
        here = st.one_of(
            json_values,
            index.flatmap(
                lambda i: mutations(value[i]).map(lambda v: [*value[:i], v, *value[i + 1 :]])
            ),
        )
    return here


@pytest.mark.parametrize(
    ("reply", "where", "problem"),
    [
        pytest.param(
            {"reply": "vimages", "vimages": [{"name": "a", "state": "running", "jid": "3"}]},
            "vimages[0].jid",
            'expected an integer or null, got "3"',
            id="string-jid",
        ),
        pytest.param(
            {"reply": "vimages", "vimages": [{"name": "a", "state": "running", "jid": True}]},
            "vimages[0].jid",
            "expected an integer or null, got true",
            id="bool-is-not-an-integer",
        ),
        pytest.param(
            {"reply": "vimages", "vimages": [{"name": "a", "state": "gone"}]},
            "vimages[0].state",
            'expected one of "failed", "running", "starting", "stopped", "stopping", "waiting", '
            'got "gone"',
            id="unknown-state",
        ),
        pytest.param(
            {"reply": "vimages", "vimages": [{"name": "a"}]},
            "vimages[0]",
            "VimageInfo lacks its field 'state'",
            id="missing-field",
        ),
        pytest.param(
            {
                "reply": "vimages",
                "vimages": [
                    {"name": "a", "state": "running"},
                    {"name": "b", "state": "running", "interfaces": [{"name": "em0"}]},
                ],
            },
            "vimages[1].interfaces[0]",
            "Interface lacks its field 'kind'",
            id="nested",
        ),
        pytest.param(
            {"reply": "goodbye"},
            "reply",
            'expected one of "hello", "done", "vimages", "vimages_page", "vimages_end", '
            '"reloaded", "version", "event", "error", "attachments", "cni_result", "metrics", '
            'got "goodbye"',
            id="unknown-tag",
        ),
        pytest.param(
            {"reply": "event", "time": 1.5, "event": "x", "data": {"k": [1]}},
            "data.k",
            "expected a string or an integer or a number or a boolean or null, got an array",
            id="event-data",
        ),
        pytest.param([1], "", "expected an object, got an array", id="not-an-object"),
    ],
)
def test_a_malformed_reply_is_named_where_it_breaks(
    reply: object, where: str, problem: str
) -> None:
    with pytest.raises(WireError) as caught:
        SCHEMA.check("Reply", reply)
    assert (caught.value.where, caught.value.problem) == (where, problem)


def test_unknown_fields_of_a_reply_are_dropped_and_defaults_filled() -> None:
    checked = SCHEMA.check(
        "Reply", {"reply": "vimages", "vimages": [{"name": "a", "state": "stopped", "new": 1}]}
    )
    assert checked == {
        "reply": "vimages",
        "vimages": [
            {
                "name": "a",
                "state": "stopped",
                "jid": None,
                "wanted": False,
                "health": "unknown",
                "health_reason": None,
                "interfaces": [],
                "config_changed": False,
                "error": None,
                "restarts": 0,
                "removed": False,
                "waiting_for": [],
            }
        ],
        "attachments": [],
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"reply":"event","time":NaN,"event":"x"}', id="NaN"),
        pytest.param(b'{"reply":"event","time":Infinity,"event":"x"}', id="Infinity"),
        pytest.param(b'{"reply":"hello"', id="truncated"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b'{"reply":"hello","protocol":1}', id="incomplete"),
    ],
)
def test_decode_reply_refuses_what_is_not_a_protocol_reply(body: bytes) -> None:
    with pytest.raises(ClientError) as caught:
        decode_reply(body)
    assert caught.value.code == "bad_frame"
    with pytest.raises(msgspec.DecodeError):
        REPLY_DECODER.decode(body)  # as the daemon's own decoder would


# --- requests -----------------------------------------------------------------------------------

VIMAGECTL_REQUESTS: list[tuple[replies.Request, AnyRequest]] = [
    ({"op": "start", "names": ["web"], "all": False}, protocol.Start(names=("web",))),
    (
        {"op": "stop", "names": [], "all": True, "with_dependents": False},
        protocol.Stop(all_=True),
    ),
    (
        {"op": "stop", "names": ["db"], "all": False, "with_dependents": True},
        protocol.Stop(names=("db",), with_dependents=True),
    ),
    ({"op": "restart", "names": ["a", "b"], "all": False}, protocol.Restart(names=("a", "b"))),
    ({"op": "list"}, protocol.ListVimages()),
    ({"op": "list", "stream": True}, protocol.ListVimages(stream=True)),
    (
        {"op": "status", "names": [], "containers": [], "stream": True},
        protocol.Status(stream=True),
    ),
    ({"op": "status", "names": ["db"], "containers": []}, protocol.Status(names=("db",))),
    (
        {"op": "status", "names": [], "containers": ["0f3a"]},
        protocol.Status(containers=("0f3a",)),
    ),
    ({"op": "health", "names": []}, protocol.Health()),
    ({"op": "reload"}, protocol.Reload()),
    ({"op": "version"}, protocol.Version()),
    ({"op": "events"}, protocol.Events()),
    ({"op": "metrics"}, protocol.Metrics()),
    ({"op": "restart", "names": [], "all": True}, protocol.Restart(all_=True)),
    # what vimaged-cni sent before cni_exec (still served)
    (
        {
            "op": "cni_add",
            "network": "n",
            "container_id": "c1",
            "ifname": "eth0",
            "sandbox": "/run/netns/x",
            "parent": "em0",
            "mac": None,
            "mtu": 1400,
            "addresses": ["10.0.0.2/24"],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
        },
        protocol.CniAdd(
            network="n",
            container_id="c1",
            ifname="eth0",
            sandbox="/run/netns/x",
            parent="em0",
            mtu=1400,
            addresses=("10.0.0.2/24",),
            routes=(protocol.CniRoute(dst="0.0.0.0/0", gw="10.0.0.1"),),
        ),
    ),
    (
        {
            "op": "cni_check",
            "network": "n",
            "container_id": "c1",
            "ifname": "eth0",
            "addresses": [],
            "mtu": None,
        },
        protocol.CniCheck(network="n", container_id="c1", ifname="eth0"),
    ),
    (
        {"op": "cni_del", "network": "n", "container_id": "c1", "ifname": "eth0"},
        protocol.CniDel(network="n", container_id="c1", ifname="eth0"),
    ),
    (
        {"op": "cni_gc", "network": "n", "valid": [{"container_id": "c1", "ifname": "eth0"}]},
        protocol.CniGc(
            network="n", valid=(protocol.CniAttachmentKey(container_id="c1", ifname="eth0"),)
        ),
    ),
    (
        {"op": "cni_status", "network": "n", "parent": "em0"},
        protocol.CniStatus(network="n", parent="em0"),
    ),
    ({"op": "cni_list"}, protocol.CniList()),
    # what vimaged-cni sends now (vimaged_cni/client.py, vimaged-cni.c): the exec, piped
    (
        {"op": "cni_exec", "environ": "Q05JX0NPTU1BTkQ9QUREAA==", "stdin": "e30="},
        protocol.CniExec(environ=b"CNI_COMMAND=ADD\0", stdin=b"{}"),
    ),
]


def test_requests_cover_every_verb() -> None:
    assert {type(typed) for _, typed in VIMAGECTL_REQUESTS} == set(typing.get_args(AnyRequest))


@pytest.mark.parametrize(("request_", "expected"), VIMAGECTL_REQUESTS)
def test_what_vimagectl_sends_is_what_the_daemon_decodes(
    request_: replies.Request, expected: AnyRequest
) -> None:
    framed = _frame(request_)
    assert int.from_bytes(framed[:4], "big") == len(framed) - 4
    assert REQUEST_DECODER.decode(framed[4:]) == expected


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param({"op": "list", "verbose": True}, id="unknown-field"),
        pytest.param({"op": "status", "names": ["web!"]}, id="bad-name"),
        pytest.param({"op": "status", "names": ["1234"]}, id="all-digits"),
        pytest.param({"op": "status", "names": ["web\n"]}, id="trailing-newline"),
        pytest.param({"op": "frobnicate"}, id="unknown-op"),
    ],
)
def test_a_request_the_daemon_would_refuse_is_never_sent(request_: typing.Any) -> None:
    with pytest.raises(ClientError) as caught:
        _frame(request_)
    assert caught.value.code == "bad_request"
    with pytest.raises(msgspec.ValidationError):
        REQUEST_DECODER.decode(msgspec.json.encode(request_))


# --- the typed dicts ---------------------------------------------------------------------------


def shapes(types: typing.Iterable[object]) -> dict[str, object]:
    """Each type's JSON Schema properties, without titles, docs and defaults.

    And without patterns: a TypedDict types a name as str; the schema checks its pattern. Bytes
    (base64, bounded) are a TypedDict's str too.
    """
    _, defs = msgspec.json.schema_components(types)

    def strip(node: object) -> object:
        if isinstance(node, dict):
            return {
                key: strip(value)
                for key, value in node.items()
                if key
                not in (
                    "title",
                    "description",
                    "default",
                    "pattern",
                    "contentEncoding",
                    "maxLength",
                )
            }
        if isinstance(node, list):
            return [strip(value) for value in node]
        return node

    return {name: strip(schema["properties"]) for name, schema in defs.items()}


def test_the_typed_dicts_match_the_wire_types() -> None:
    wire = shapes([*typing.get_args(AnyRequest), *typing.get_args(AnyReply)])
    # msgspec takes no union of TypedDicts: their members, then.
    typed = shapes([*typing.get_args(replies.Request), *typing.get_args(replies.Reply)])
    assert typed == wire


def test_checked_replies_need_no_default_the_typed_dicts_lack() -> None:
    # The TypedDicts say every field is present: the checker fills in every default.
    for cls in typing.get_args(AnyReply):
        minimal = json.loads(msgspec.json.encode(REPLIES_MINIMAL[cls]))
        required = msgspec.json.schema(cls)["$defs"][cls.__name__].get("required", [])
        sparse = {key: value for key, value in minimal.items() if key in required}
        assert set(SCHEMA.check("Reply", sparse)) == set(minimal), cls  # type: ignore[call-overload]


REPLIES_MINIMAL: dict[type, AnyReply] = {
    AttachmentList: AttachmentList(),
    Hello: Hello(protocol=1, daemon="0"),
    Done: Done(),
    Vimages: Vimages(),
    VimagesPage: VimagesPage(),
    VimagesEnd: VimagesEnd(count=0),
    Reloaded: Reloaded(),
    VersionInfo: VersionInfo(daemon="0", protocol=1, platform="sim"),
    Event: Event(time=math.pi, event="vimage.started"),
    Error: Error(code="internal", message="x"),
    MetricsText: MetricsText(text=""),
    CniResult: CniResult(exit=0),
}


def test_an_empty_object_in_a_struct_field_is_still_checked() -> None:
    """The fast path skips empty arrays and maps, never an empty object that has fields."""
    schema = Schema(
        {
            "$defs": {
                "Inner": {
                    "type": "object",
                    "properties": {"x": {"type": "integer"}},
                    "required": ["x"],
                },
                "Outer": {
                    "type": "object",
                    "properties": {
                        "inner": {"$ref": "#/$defs/Inner"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["inner", "tags"],
                },
            }
        }
    )
    assert schema.check("Outer", {"inner": {"x": 1}, "tags": []}) == {"inner": {"x": 1}, "tags": []}
    with pytest.raises(WireError) as caught:
        schema.check("Outer", {"inner": {}, "tags": []})
    assert (caught.value.where, caught.value.problem) == ("inner", "object lacks its field 'x'")
    with pytest.raises(WireError) as caught:
        schema.check("Outer", {"inner": {"x": 1}, "tags": ["a", 2]})
    assert caught.value.where == "tags[1]"
