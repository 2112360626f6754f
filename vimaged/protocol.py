"""The control protocol between vimaged and its clients: typed messages and framing.

Pure msgspec and the standard library: vimagectl imports this module and must not pull in trio
or structlog. The wire contract is documented in docs/protocol.md; a wire change edits both.

Framing: every message is a 4-byte big-endian length followed by that many bytes of JSON. The
daemon speaks first with :class:`Hello`. Requests forbid unknown fields (an old daemon refuses an
option it does not know); replies tolerate them (an old client reads a newer daemon). Tags never
change.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from vimaged import framing
from vimaged.framing import HEADER as HEADER  # re-exported: readers of frames use them
from vimaged.framing import MAX_FRAME as MAX_FRAME
from vimaged.framing import frame_length as frame_length
from vimaged.names import SANDBOX_IFNAME_PATTERN
from vimaged.names import VIMAGE_NAME_PATTERN as VIMAGE_NAME_PATTERN

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

PROTOCOL_VERSION = 1
MAX_NESTING = 16
"""Deepest ``[``/``{`` nesting a request may have (real ones nest 2): msgspec's decoder recurses
while it skips an unknown value, and 1,000 levels raised RecursionError (issue 10)."""
MAX_NAMES = 1024
"""Most names one request may carry (after duplicates are dropped)."""
PAGE_BYTES = 1 << 16
"""A streamed listing's page (``vimages_page``) holds whole vimages up to about this many bytes
of JSON: small enough that the client prints as it reads, big enough to cost few frames."""
FEATURES = ("stream",)
"""What this daemon offers beyond protocol 1 as first published, announced in ``Hello``:
``stream`` means ``list``, ``status`` and ``health`` take ``"stream": true``. A client checks
the feature rather than the version, so old clients keep working (they never ask)."""

VimageName = Annotated[str, msgspec.Meta(pattern=VIMAGE_NAME_PATTERN)]
"""The rule of :mod:`vimaged.names` (a letter, then sh identifier characters, at most 31), so
a name the platforms would refuse is a bad request, never a ValueError deep in a start."""

State = Literal["stopped", "waiting", "starting", "running", "stopping", "failed"]
"""``waiting``: wanted running, but a NIC or parent is absent (or a dependency waits);
``VimageInfo.waiting_for`` names them and it starts when they appear."""
HealthState = Literal["ok", "degraded", "failed", "unknown"]
Where = Literal["vimage", "host", "pending-return", "absent"]
InterfaceKind = Literal["bridge", "vnet"]


class Request(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag_field="op",
):
    """Base of every request. ``op`` carries the tag, the CLI verb. Defaults stay off the wire,
    so a request that uses no newer option is one an older daemon accepts."""


class Start(Request, tag="start", frozen=True):
    names: tuple[VimageName, ...] = ()
    all_: bool = msgspec.field(default=False, name="all")


class Stop(Request, tag="stop", frozen=True):
    names: tuple[VimageName, ...] = ()
    all_: bool = msgspec.field(default=False, name="all")
    with_dependents: bool = False
    """Stop the running vimages that depend on ``names`` too, first (reverse dependency
    order); without it, such a stop is refused with ``dependents_running``."""


class Restart(Request, tag="restart", frozen=True):
    names: tuple[VimageName, ...] = ()
    all_: bool = msgspec.field(default=False, name="all")


class ListVimages(Request, tag="list", frozen=True):
    stream: bool = False
    """Answer with ``vimages_page`` frames and a ``vimages_end`` (docs/protocol.md, Streams)
    instead of one ``vimages`` frame, which cannot hold more than a few thousand vimages."""


class Status(Request, tag="status", frozen=True):
    names: tuple[VimageName, ...] = ()
    containers: tuple[CniName, ...] = ()
    """vimaged-cni's attachments of these container IDs (or unique prefixes of them), after
    the vimages; a name that is no vimage is looked up as a container ID too."""
    stream: bool = False


class Health(Request, tag="health", frozen=True):
    names: tuple[VimageName, ...] = ()
    stream: bool = False


class Reload(Request, tag="reload", frozen=True):
    pass


class Version(Request, tag="version", frozen=True):
    pass


class Events(Request, tag="events", frozen=True):
    """Subscribe: the daemon answers with :class:`Event` frames until the client leaves."""


class Metrics(Request, tag="metrics", frozen=True):
    """The daemon's counts in Prometheus' text format (:class:`MetricsText`); read-only."""


# -- CNI attachments (vimaged-cni, issue 14) ------------------------------------------------

CniName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}\Z")]
"""A CNI network name or container ID: the characters libcni allows (``[A-Za-z0-9_.-]``, a
letter or digit first), at most 255."""
CniIfName = Annotated[str, msgspec.Meta(pattern=SANDBOX_IFNAME_PATTERN)]
"""CNI_IFNAME: an interface name inside the sandbox (IFNAMSIZ - 1, no ``/``, ``:`` or space)."""
CniSandbox = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]{1,1024}\Z")]
"""CNI_NETNS: a netns path (linux) or a VNET jail's name or jid (FreeBSD)."""
CniCidr = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f:./]{1,64}\Z")]
"""An address, with or without prefix length; the daemon parses it."""


class CniRoute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    dst: CniCidr
    gw: CniCidr | None = None


class CniAttachmentKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    container_id: CniName
    ifname: CniIfName


class CniAdd(Request, tag="cni_add", frozen=True):
    """Create an interface bridged to ``parent`` and move it into ``sandbox`` as ``ifname``."""

    network: CniName
    container_id: CniName
    ifname: CniIfName
    sandbox: CniSandbox
    parent: str
    mac: str | None = None
    """Default: derived from the host's UUID, the container ID and ``ifname``."""
    mtu: int | None = None
    """68 to 65535; the daemon checks it."""
    addresses: tuple[CniCidr, ...] = ()
    routes: tuple[CniRoute, ...] = ()


class CniCheck(Request, tag="cni_check", frozen=True):
    """Is the attachment in its sandbox with its MAC, (at least) ``addresses`` and ``routes``?"""

    network: CniName
    container_id: CniName
    ifname: CniIfName
    addresses: tuple[CniCidr, ...] = ()
    mtu: int | None = None
    """The network's ``mtu``: compared where the platform reports one (freebsd, sim)."""
    routes: tuple[CniRoute, ...] = ()
    """prevResult's routes (``gw`` the gateway of its family when absent, as for ADD): each
    must be in the sandbox through the interface; more routes there are fine."""


class CniDel(Request, tag="cni_del", frozen=True):
    """Remove the attachment; succeeds when it (or its sandbox) is already gone."""

    network: CniName
    container_id: CniName
    ifname: CniIfName


class CniGc(Request, tag="cni_gc", frozen=True):
    """Remove every attachment of ``network`` not in ``valid`` (``cni.dev/valid-attachments``)."""

    network: CniName
    valid: tuple[CniAttachmentKey, ...] = ()


class CniStatus(Request, tag="cni_status", frozen=True):
    """Can ADD work on ``network``: is ``parent`` on the host?"""

    network: CniName
    parent: str


class CniList(Request, tag="cni_list", frozen=True):
    """Every attachment (read-only, like ``list``)."""


MAX_CNI_ENVIRON = 1 << 16
"""Bytes of a plugin's environment ``cni_exec`` carries (the client refuses more, code 4)."""
MAX_CNI_STDIN = 1 << 18
"""Bytes of a network configuration ``cni_exec`` carries (the client refuses more, code 7)."""


class CniExec(Request, tag="cni_exec", frozen=True):
    """One exec of the vimaged-cni plugin, piped whole: the daemon runs the CNI verb (vimaged/cni/)
    and answers :class:`CniResult` with what the plugin prints and its exit status."""

    environ: Annotated[bytes, msgspec.Meta(max_length=MAX_CNI_ENVIRON)]
    """The plugin's environment as /proc/PID/environ lays it out: ``NAME=VALUE`` and a NUL each."""
    stdin: Annotated[bytes, msgspec.Meta(max_length=MAX_CNI_STDIN)] = b""
    """Every byte the plugin read from its stdin (the network configuration)."""


CNI_MUTATING: frozenset[type[Request]] = frozenset(
    {CniAdd, CniCheck, CniDel, CniGc, CniStatus, CniExec}
)
"""CHECK and STATUS name sandboxes and parents, cni_exec runs an IPAM plugin: authorized like
mutations (issue 14)."""

# -- end of CNI requests ---------------------------------------------------------------------

AnyRequest = (
    Start | Stop | Restart | ListVimages | Status | Health | Reload | Version | Events | Metrics
    | CniAdd | CniCheck | CniDel | CniGc | CniStatus | CniList | CniExec
)  # fmt: skip

MUTATING: frozenset[type[Request]] = CNI_MUTATING | {Start, Stop, Restart, Reload}
"""Requests that need root or the configured group; the rest are read-only."""


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag_field="reply"):
    """Base of every reply. Unknown fields are tolerated."""


class Hello(Reply, tag="hello", frozen=True):
    protocol: int
    daemon: str
    features: tuple[str, ...] = ()
    """:data:`FEATURES`; absent (empty) from a daemon that streams nothing."""


class LinkStats(msgspec.Struct, frozen=True, kw_only=True):
    """The bridge's counters for a bridged interface's link (ng_bridge ``getstats``:
    recvPackets, xmitPackets, memoryFailures, loopDrops, loopDetects), as of the last health
    check. ``memory_failures`` counts failed MAC learning (NGM_BRIDGE_MOVE_HOST) too."""

    recv_packets: int = 0
    xmit_packets: int = 0
    memory_failures: int = 0
    loop_drops: int = 0
    loop_detects: int = 0


class Interface(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: InterfaceKind
    parent: str | None = None
    mac: str | None = None
    where: Where = "absent"
    holder_jid: int | None = None
    """For ``pending-return``: the jail still holding the NIC."""
    holder_dying: bool | None = None
    addresses: tuple[str, ...] = ()
    """Its IPv4 and IPv6 addresses inside the vimage (``192.0.2.10/24``), as of the last
    health poll (``status`` of named vimages looks again); empty unless ``where`` is
    ``vimage``. jls(8) cannot show a VNET jail's addresses; this does."""
    bridge_mode: str | None = None
    """For a running ``bridge`` interface: its bridge's wiring, ``classic`` or ``uplink``
    (ng_bridge's restrictive mode; docs/netgraph.md), as of the last health check."""
    link: LinkStats | None = None
    """For a running ``bridge`` interface: its bridge link's counters (FreeBSD and sim;
    ``None`` on linux, where a macvlan has no bridge link, and until the first check)."""


class VimageInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    state: State
    jid: int | None = None
    wanted: bool = False
    """Wanted running: the operator's last ``start`` (or the journal's record of it), else
    ``vimage_enable``'s autostart; false once an operator stopped it. ``health`` counts a
    wanted vimage that is not running as CRITICAL, any other stopped one as OK."""
    health: HealthState = "unknown"
    health_reason: str | None = None
    """Why ``health`` is not ``ok``: ``ng0_web down``, ``health_cmd exited 1: <its last line
    of output>``."""
    interfaces: tuple[Interface, ...] = ()
    config_changed: bool = False
    """The configuration changed since this vimage started; a restart applies it (unless
    ``removed``)."""
    error: str | None = None
    restarts: int = 0
    removed: bool = False
    """A reload took it out of the configuration while it ran: it may only be stopped, and
    is then forgotten."""
    waiting_for: tuple[str, ...] = ()
    """For ``waiting``: the absent NICs and parents (``em1``), and dependencies that wait."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ok: bool
    state: State
    code: str | None = None
    message: str | None = None
    errno_name: str | None = None
    """The errno behind a failure, by name (``"EBUSY"``), when an OSError caused it."""


class Done(Reply, tag="done", frozen=True):
    outcomes: tuple[Outcome, ...] = ()


class Vimages(Reply, tag="vimages", frozen=True):
    vimages: tuple[VimageInfo, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    """vimaged-cni's attachments: all of them for ``list``, those asked for by ``status``."""


class VimagesPage(Reply, tag="vimages_page", frozen=True):
    """One frame of a streamed listing: the next vimages, in order."""

    vimages: tuple[VimageInfo, ...] = ()


class VimagesEnd(Reply, tag="vimages_end", frozen=True):
    """The last frame of a streamed listing; ``count`` vimages were sent before it."""

    count: int
    attachments: tuple[Attachment, ...] = ()
    """As :class:`Vimages`' (a listing's attachments come after all its vimages)."""


class Reloaded(Reply, tag="reloaded", frozen=True):
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


class VersionInfo(Reply, tag="version", frozen=True):
    daemon: str
    protocol: int
    platform: str


class Event(Reply, tag="event", frozen=True):
    time: float
    event: str
    """A dotted past-tense fact, as in the daemon's log: ``vimage.started``."""
    name: str | None = None
    data: dict[str, str | int | float | bool | None] = {}


class MetricsText(Reply, tag="metrics", frozen=True):
    text: str
    """A Prometheus text exposition (format 0.0.4; vimaged/metrics.py): counts only, no
    vimage names."""


class Error(Reply, tag="error", frozen=True):
    code: str
    message: str
    errno: int | None = None
    errno_name: str | None = None
    """``errno`` by name (``"EBUSY"``): the numbers differ between FreeBSD and Linux."""


# -- CNI attachments (vimaged-cni, issue 14) ------------------------------------------------

AttachmentState = Literal["attaching", "attached"]


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """An interface vimaged made, bridged to ``parent``, in a sandbox it does not own."""

    network: str
    container_id: str
    ifname: str
    """Its name in the sandbox (CNI_IFNAME)."""
    sandbox: str
    parent: str
    mac: str
    host_ifname: str
    """Its name on the host before the move (``cni`` + 11 hex digits), as in the journal."""
    state: AttachmentState = "attached"
    addresses: tuple[str, ...] = ()


class AttachmentList(Reply, tag="attachments", frozen=True):
    attachments: tuple[Attachment, ...] = ()


class CniResult(Reply, tag="cni_result", frozen=True):
    """The answer to :class:`CniExec`: the plugin writes ``stdout`` unchanged and exits ``exit``."""

    exit: int
    """0, or 1 with the spec's error JSON in ``stdout``."""
    stdout: bytes = b""


# -- end of CNI replies ----------------------------------------------------------------------

AnyReply = (
    Hello
    | Done
    | Vimages
    | VimagesPage
    | VimagesEnd
    | Reloaded
    | VersionInfo
    | Event
    | Error
    | AttachmentList
    | CniResult
    | MetricsText
)

REQUEST_DECODER = msgspec.json.Decoder(AnyRequest)
REPLY_DECODER = msgspec.json.Decoder(AnyReply)
ENCODER = msgspec.json.Encoder()

ERROR_CODES = (
    "invalid_request",
    "frame_too_large",
    "permission_denied",
    "not_found",
    "conflict",
    "dependents_running",
    "shutting_down",
    "config",
    "failed",
    "platform",
    "os_error",
    "internal",
    "busy",
    "reply_too_large",
)
"""Every ``Error.code`` the daemon sends; docs/protocol.md lists each one."""


def wire_schema() -> dict[str, object]:
    """The protocol as one JSON Schema document (draft 2020-12), derived from the types above.

    ``$defs`` holds every message, with the unions ``Request`` and ``Reply``; ``x-protocol`` and
    ``x-max-frame`` carry :data:`PROTOCOL_VERSION` and :data:`MAX_FRAME`. vimagectl validates
    replies against it without importing msgspec (its start-up budget); the copy it ships,
    vimagectl/protocol.schema.json, is written by scripts/gen-wire-schema.py and held equal to
    this by tests/unit/test_wire_schema.py.
    """
    (request, reply), defs = msgspec.json.schema_components((AnyRequest, AnyReply))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"vimaged control protocol {PROTOCOL_VERSION}",
        "x-protocol": PROTOCOL_VERSION,
        "x-max-frame": MAX_FRAME,
        "$defs": {**defs, "Request": request, "Reply": reply},
    }


def frame(message: Request | Reply) -> bytes:
    """Encode ``message`` with its length prefix; ``ValueError`` above :data:`MAX_FRAME`."""
    return framing.frame(ENCODER.encode(message))


_PAGE_HEAD, _PAGE_TAIL = ENCODER.encode(VimagesPage()).split(b"[]")


def vimages_pages(infos: Iterable[VimageInfo], budget: int = PAGE_BYTES) -> Iterator[bytes]:
    """The bodies of the ``vimages_page`` frames carrying ``infos``, in order.

    Each vimage is encoded once and pages are cut by size, so a page never exceeds
    :data:`MAX_FRAME` however many interfaces its vimages have; a page holds at least one
    vimage. A vimage that alone exceeds MAX_FRAME raises ``ValueError`` (the configuration
    limits keep one far below: a few KB).
    """
    parts: list[bytes] = []
    size = 0
    for info in infos:
        part = ENCODER.encode(info)
        if parts and size + len(part) > budget:
            yield _PAGE_HEAD + b"[" + b",".join(parts) + b"]" + _PAGE_TAIL
            parts, size = [], 0
        if len(part) + len(_PAGE_HEAD) + len(_PAGE_TAIL) + 2 > MAX_FRAME:
            raise ValueError(f"vimage {info.name}: {len(part)} bytes exceed MAX_FRAME")
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield _PAGE_HEAD + b"[" + b",".join(parts) + b"]" + _PAGE_TAIL


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def nests_deeper_than(body: bytes, limit: int = MAX_NESTING) -> bool:
    """True if ``body`` nests arrays/objects deeper than ``limit``, or its brackets do not pair.

    A scan before decoding, at C speed: strings (escapes respected) are dropped, then everything
    but brackets, braces become brackets (depth is what counts; msgspec checks the pairing), and
    innermost ``[]`` pairs go, one level per pass; anything left after ``limit`` passes is too
    deep or unbalanced (neither decodes as a request).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(_AS_SQUARE, _NOT_BRACKET)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)
