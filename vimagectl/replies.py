"""The control protocol's messages as vimagectl holds them: plain dicts, typed for mypy.

vimaged/protocol.py owns the wire types (msgspec structs). vimagectl decodes with the standard
library and checks each reply against the JSON Schema derived from those types (schema.py), so
at run time a reply is a dict with every field present. These TypedDicts give the same dicts
their static types; tests/unit/test_wire_schema.py holds them equal to protocol.py.

Imported only under ``TYPE_CHECKING``: ``typing`` alone would cost vimagectl ~6 ms of start-up.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

State = Literal["stopped", "starting", "running", "stopping", "failed"]
HealthState = Literal["ok", "degraded", "failed", "unknown"]
Where = Literal["vimage", "host", "pending-return", "absent"]
InterfaceKind = Literal["bridge", "vnet"]


# --- requests (vimagectl builds these) ---------------------------------------------------------


class Start(TypedDict):
    op: Literal["start"]
    names: list[str]
    all: bool


class Stop(TypedDict):
    op: Literal["stop"]
    names: list[str]
    all: bool


class Restart(TypedDict):
    op: Literal["restart"]
    names: list[str]


class ListVimages(TypedDict):
    op: Literal["list"]
    stream: NotRequired[bool]  # sent only to a daemon whose Hello lists the feature


class Status(TypedDict):
    op: Literal["status"]
    names: list[str]
    stream: NotRequired[bool]


class Health(TypedDict):
    op: Literal["health"]
    names: list[str]
    stream: NotRequired[bool]


class Reload(TypedDict):
    op: Literal["reload"]


class Version(TypedDict):
    op: Literal["version"]


class Events(TypedDict):
    op: Literal["events"]


Request = Start | Stop | Restart | ListVimages | Status | Health | Reload | Version | Events


# --- replies (checked against the schema, defaults filled in) ---------------------------------


class Hello(TypedDict):
    reply: Literal["hello"]
    protocol: int
    daemon: str
    features: list[str]


class LinkStats(TypedDict):
    recv_packets: int
    xmit_packets: int
    memory_failures: int
    loop_drops: int
    loop_detects: int


class Interface(TypedDict):
    name: str
    kind: InterfaceKind
    parent: str | None
    mac: str | None
    where: Where
    holder_jid: int | None
    holder_dying: bool | None
    addresses: list[str]
    bridge_mode: str | None
    link: LinkStats | None


class VimageInfo(TypedDict):
    name: str
    state: State
    jid: int | None
    health: HealthState
    health_reason: str | None
    interfaces: list[Interface]
    config_changed: bool
    error: str | None
    restarts: int


class Outcome(TypedDict):
    name: str
    ok: bool
    state: State
    code: str | None
    message: str | None


class Done(TypedDict):
    reply: Literal["done"]
    outcomes: list[Outcome]


class Vimages(TypedDict):
    reply: Literal["vimages"]
    vimages: list[VimageInfo]


class VimagesPage(TypedDict):
    reply: Literal["vimages_page"]
    vimages: list[VimageInfo]


class VimagesEnd(TypedDict):
    reply: Literal["vimages_end"]
    count: int


class Reloaded(TypedDict):
    reply: Literal["reloaded"]
    added: list[str]
    removed: list[str]
    changed: list[str]


class VersionInfo(TypedDict):
    reply: Literal["version"]
    daemon: str
    protocol: int
    platform: str


class Event(TypedDict):
    reply: Literal["event"]
    time: float
    event: str
    name: str | None
    data: dict[str, str | int | float | bool | None]


class Error(TypedDict):
    reply: Literal["error"]
    code: str
    message: str
    errno: int | None


Reply = Hello | Done | Vimages | VimagesPage | VimagesEnd | Reloaded | VersionInfo | Event | Error
