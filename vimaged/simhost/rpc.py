"""Simulated host layer: the platform RPC spoken on the sim host's stream socket.

Framing as in the control protocol (vimaged/framing.py): a 4-byte big-endian length, then that
many bytes of msgspec JSON. One request, one reply, in order, on one connection. Kernel failures
come back as :class:`Failed` carrying the errno; the client raises ``OSError`` from it. An
``Exec`` holds its connection until the command ends: closing the connection kills the command.
docs/sim.md lists every message.
"""

from __future__ import annotations

import msgspec

from vimaged import framing
from vimaged.framing import HEADER as HEADER  # re-exported: readers of frames use them
from vimaged.framing import MAX_FRAME as MAX_FRAME
from vimaged.framing import frame_length as frame_length


class Request(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="op"
):
    pass


class GetHostUuid(Request, frozen=True, tag="host_uuid"):
    pass


class GetBootId(Request, frozen=True, tag="boot_id"):
    pass


class SetHostUuid(Request, frozen=True, tag="set_host_uuid"):
    uuid: str


class CreateJail(Request, frozen=True, tag="create_jail"):
    name: str
    hostname: str = ""
    path: str = "/"
    vnet: bool = True


class RemoveJail(Request, frozen=True, tag="remove_jail"):
    jid: int


class ListJails(Request, frozen=True, tag="list_jails"):
    pass


class GetJail(Request, frozen=True, tag="get_jail"):
    """One jail by jid: ``Jails`` with it, or with none."""

    jid: int


class Exec(Request, frozen=True, tag="exec"):
    """``sh -c command`` in jail ``jid``, or on the host for jid 0 (the ``exec_prestart``
    family), with ``env`` added to its environment."""

    jid: int
    command: str
    env: dict[str, str] = {}


class ListIfnets(Request, frozen=True, tag="list_ifnets"):
    jid: int = 0


class LocateIfnet(Request, frozen=True, tag="locate_ifnet"):
    name: str


class MoveIfnet(Request, frozen=True, tag="move_ifnet"):
    name: str
    jid: int


class ReclaimIfnet(Request, frozen=True, tag="reclaim_ifnet"):
    name: str
    jid: int


class RenameIfnet(Request, frozen=True, tag="rename_ifnet"):
    """SIOCSIFNAME on the host, or inside jail ``jid`` (a test renaming a NIC in a vimage)."""

    name: str
    newname: str
    jid: int = 0


class SetIfnetUp(Request, frozen=True, tag="set_ifnet_up"):
    name: str
    up: bool = True


class Reset(Request, frozen=True, tag="reset"):
    """Test control: a fresh host. ``None`` keeps what the process was started with."""

    nics: list[str] | None = None
    faults: str = ""
    kernel: int | None = None
    wires: list[list[str]] | None = None
    """NIC groups that share a wire (null: as started)."""


class SetFaults(Request, frozen=True, tag="set_faults"):
    spec: str


class ScriptExec(Request, frozen=True, tag="script_exec"):
    """Commands in ``jail`` (``*`` for any) containing ``match`` end with ``status`` after
    writing ``output``."""

    jail: str
    match: str = ""
    status: int = 0
    duration: float = 0.0
    output: str = ""


class GetExecLog(Request, frozen=True, tag="exec_log"):
    pass


class KillJail(Request, frozen=True, tag="kill_jail"):
    name: str


class ListNgNodes(Request, frozen=True, tag="ng_nodes"):
    pass


class SendFrame(Request, frozen=True, tag="send_frame"):
    """The stack of jail ``jid`` (0: the host) sends an Ethernet frame out of ``name``."""

    name: str
    frame: str
    """The frame's bytes in hex, from the destination MAC on."""
    jid: int = 0


class SetCapabilities(Request, frozen=True, tag="set_capabilities"):
    """SIOCSIFCAP on a host interface: ``enabled`` becomes its if_capenable."""

    name: str
    enabled: int


class Received(Request, frozen=True, tag="received"):
    """The frames the stack received on ``name`` since the last ``received`` (taken)."""

    name: str
    jid: int = 0


class SetIfnetMtu(Request, frozen=True, tag="set_ifnet_mtu"):
    """SIOCSIFMTU by a process attached to ``jid`` (0: the host)."""

    name: str
    mtu: int
    jid: int = 0


class AddInetAddress(Request, frozen=True, tag="add_inet_address"):
    """SIOCAIFADDR or SIOCAIFADDR_IN6 (by the address's family) of ``address/prefix``."""

    name: str
    address: str
    jid: int = 0


class AddRoute(Request, frozen=True, tag="add_route"):
    """RTM_ADD on a routing socket: ``dst`` via ``gateway``, or on-link via ifnet ``via``."""

    dst: str
    gateway: str | None = None
    via: str | None = None
    jid: int = 0


class ListRoutes(Request, frozen=True, tag="list_routes"):
    """The static routes of ``jid``'s vnet (sysctl NET_RT_DUMP, ``netstat -rn``)."""

    jid: int = 0


class DelRoute(Request, frozen=True, tag="del_route"):
    """RTM_DELETE on a routing socket (``route delete DST [GW]``): ESRCH if there is none."""

    dst: str
    gateway: str | None = None
    jid: int = 0


class SysctlRtDump(Request, frozen=True, tag="sysctl_rt_dump"):
    """sysctl {CTL_NET, PF_ROUTE, 0, family, NET_RT_DUMP, 0} by a process attached to ``jid``:
    the RTM_GET messages, as bytes (vimaged.simhost.rtsock)."""

    family: int
    jid: int = 0


# -- interface arrival and departure (simhost/ifnet_log.py, simhost/hotplug.py) ----------


class PlugNic(Request, frozen=True, tag="plug_nic"):
    """Test control: NIC ``name`` attaches on the host (if_attach), or with ``plugged``
    false goes away from wherever it is (if_detach)."""

    name: str
    plugged: bool = True


class WatchIfnets(Request, frozen=True, tag="watch_ifnets"):
    """The host's IFNET notices after number ``after`` of boot ``boot``; if there are none
    yet, waits up to ``wait`` seconds for one (a long poll on a connection of its own)."""

    after: int = 0
    boot: str = ""
    wait: float = 0.0


AnyRequest = (
    GetHostUuid
    | GetBootId
    | SetHostUuid
    | CreateJail
    | RemoveJail
    | ListJails
    | GetJail
    | Exec
    | ListIfnets
    | LocateIfnet
    | MoveIfnet
    | ReclaimIfnet
    | RenameIfnet
    | SetIfnetUp
    | Reset
    | SetFaults
    | ScriptExec
    | GetExecLog
    | KillJail
    | ListNgNodes
    | SendFrame
    | Received
    | SetCapabilities
    | SetIfnetMtu
    | AddInetAddress
    | AddRoute
    | ListRoutes
    | DelRoute
    | SysctlRtDump
    | PlugNic
    | WatchIfnets
)


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag_field="reply"):
    pass


class Ok(Reply, frozen=True, tag="ok"):
    pass


class Failed(Reply, frozen=True, tag="failed"):
    errno: int
    message: str


class HostUuid(Reply, frozen=True, tag="host_uuid"):
    uuid: str


class BootId(Reply, frozen=True, tag="boot_id"):
    boot_id: str


class Jid(Reply, frozen=True, tag="jid"):
    jid: int


class JailRecord(msgspec.Struct, frozen=True, kw_only=True):
    jid: int
    name: str
    vnet: bool
    dying: bool


class Jails(Reply, frozen=True, tag="jails"):
    jails: list[JailRecord]


class ExitStatus(Reply, frozen=True, tag="exit_status"):
    status: int
    output: str = ""
    """What the command wrote to stdout and stderr (scripted by ``script_exec``)."""


class IfnetRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    mac: str | None
    up: bool
    hwassist: int = 0
    """if_hwassist (ng_ether zeroes it while its ``upper`` hook is connected)."""
    capabilities: int = 0
    """if_capabilities, what SIOCGIFCAP reports as supported."""
    capenable: int = 0
    """if_capenable, what is enabled."""
    mtu: int = 1500
    addresses: list[str] = []
    """Its IPv4 and IPv6 ``address/prefix`` (vimaged.simhost.inet)."""
    index: int = 0
    """if_index (if_nametoindex(3))."""


class Ifnets(Reply, frozen=True, tag="ifnets"):
    ifnets: list[IfnetRecord]


class RouteRecord(msgspec.Struct, frozen=True, kw_only=True):
    dst: str
    gateway: str | None
    ifname: str


class Routes(Reply, frozen=True, tag="routes"):
    routes: list[RouteRecord]


class SysctlData(Reply, frozen=True, tag="sysctl_data"):
    data: bytes


class Location(Reply, frozen=True, tag="location"):
    jid: int | None


class ExecEntry(msgspec.Struct, frozen=True, kw_only=True):
    jid: int
    jail: str
    """The jail's name; empty for a command on the host (jid 0)."""
    command: str
    env: dict[str, str] = {}
    started: float
    outcome: str
    status: int | None
    duration: float | None


class ExecLog(Reply, frozen=True, tag="exec_log"):
    entries: list[ExecEntry]


class NgHookRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    peer_id: int
    peer_hook: str


class NgNodeRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    type: str
    hooks: list[NgHookRecord]
    state: dict[str, str | int | bool]


class NgNodes(Reply, frozen=True, tag="ng_nodes"):
    nodes: list[NgNodeRecord]


class Frames(Reply, frozen=True, tag="frames"):
    frames: list[str]
    """Hex, oldest first."""


class IfnetNoticeRecord(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    kind: str
    """devctl's type: ``ATTACH``, ``DETACH`` or ``RENAME``."""
    name: str
    newname: str | None = None


class IfnetNotices(Reply, frozen=True, tag="ifnet_notices"):
    boot: str
    seq: int
    """The newest notice's number: ask for those after it next."""
    notices: list[IfnetNoticeRecord]
    lost: bool = False
    """Notices after ``after`` were dropped, or the host rebooted: list the ifnets again."""


AnyReply = (
    Ok
    | Failed
    | HostUuid
    | BootId
    | Jid
    | Jails
    | ExitStatus
    | Ifnets
    | Location
    | ExecLog
    | NgNodes
    | Frames
    | Routes
    | SysctlData
    | IfnetNotices
)

# Shaped like vimaged.protocol's codecs, but the sim's own RPC: a different set of messages.
REQUEST_DECODER = msgspec.json.Decoder(AnyRequest)
REPLY_DECODER = msgspec.json.Decoder(AnyReply)
ENCODER = msgspec.json.Encoder()


def frame(message: Request | Reply) -> bytes:
    """Encode ``message`` with its length prefix; ``ValueError`` above :data:`MAX_FRAME`."""
    return framing.frame(ENCODER.encode(message))
