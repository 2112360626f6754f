"""Simulated host layer: jails, vnets, ifnets and commands of the simulated FreeBSD host.

Pure and synchronous: the server (``vimaged.simhost.server``) owns time and I/O and calls
:meth:`SimHost.tick` before each request, so a dying jail's deadline is honoured whenever anyone
looks. Every failure is ``OSError`` with the errno FreeBSD gives, cited from its source:
sys/kern/kern_jail.c (jail_set/jail_remove/jail_attach, prison ids), sys/net/if.c (SIOCSIFVNET,
SIOCSIFRVNET, SIOCSIFNAME, vnet_if_return) and sys/net/vnet.c (vnet_destroy).
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vimaged.simhost.dataplane import DataPlane
from vimaged.simhost.faults import Faults
from vimaged.simhost.ifnet import HOST_JID, UnitPool
from vimaged.simhost.ifnet import Ifnet as Ifnet  # re-exported: the model's callers use it
from vimaged.simhost.ifnet_log import IfnetLog
from vimaged.simhost.inet import InetLayer, Route
from vimaged.simhost.ng_eiface import eiface_mac
from vimaged.simhost.ng_message import IFNAMSIZ, fail
from vimaged.simhost.ngmodel import NgKernel

if TYPE_CHECKING:
    from collections.abc import Callable

    from vimaged.simhost.ng_base import IfnetLike

JAIL_MAX = 999999  # kern_jail.c: jids wrap after JAIL_MAX
DEFAULT_NICS = ("em0", "em1")
NIC_CAPABILITIES = 0x1 | 0x2 | 0x10 | 0x100 | 0x200 | 0x10000 | 0x40000
"""IFCAP_RXCSUM | TXCSUM | VLAN_HWTAGGING | TSO4 | TSO6 | VLAN_HWFILTER | VLAN_HWTSO (net/if.h):
an em(4)-like NIC, all of them on after attach."""
NIC_HWASSIST = 0x0007
"""CSUM_IP | CSUM_IP_UDP | CSUM_IP_TCP (sys/mbuf.h): what a NIC driver offers by default."""
KERNELS = (12, 13, 14, 15)
ETHER_KINDS = ("ether", "eiface")
"""Interface kinds that are IFT_ETHER, so ng_ether attaches to them in the host vnet."""


def nic_mac(name: str) -> bytes:
    """A NIC's burnt-in address, derived from its name so runs are reproducible."""
    return bytes([0x00, 0x0C, 0x29]) + hashlib.sha256(name.encode()).digest()[:3]


def mac_text(mac: bytes | None) -> str | None:
    return None if mac is None else ":".join(f"{b:02x}" for b in mac)


@dataclass(eq=False)
class Jail:
    jid: int
    name: str
    hostname: str
    path: str
    vnet: bool
    persist: bool
    dying_until: float | None = None

    @property
    def dying(self) -> bool:
        return self.dying_until is not None


@dataclass(eq=False)
class ExecRecord:
    """One ``/bin/sh -c`` inside a jail, as tests see it in the exec log."""

    jid: int
    jail: str
    command: str
    started: float
    env: dict[str, str] = field(default_factory=dict)
    outcome: str = "running"  # running | exited | killed
    status: int | None = None
    duration: float | None = None
    cancel: Callable[[], None] | None = None
    """Set by the server while it waits: called when the jail is removed under the command."""


@dataclass(frozen=True)
class ExecScript:
    jail: str
    match: str
    status: int = 0
    duration: float = 0.0
    output: str = ""


SIGKILL_STATUS = 128 + 9
"""What sh reports for a command killed by jail_remove's SIGKILL."""


@dataclass
class SimHost(DataPlane, InetLayer):
    nics: tuple[str, ...] = DEFAULT_NICS
    kernel: int = 14
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = time.monotonic
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """Changes at every boot, as ``kern.boottime`` does (kern_tc.c sysctl_kern_boottime; set
    by inittodr at boot): a new SimHost, or a reset, is a reboot. Jails, vnets and netgraph
    nodes are gone and jids start again at 1 (kern_jail.c get_next_prid from lastprid 0)."""
    wires: tuple[tuple[str, ...], ...] = ()
    """Groups of NICs that share a wire (one segment): a frame one sends, the others receive."""
    routes: list[Route] = field(default_factory=list)
    """Static routes of every vnet (vimaged.simhost.inet)."""

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel {self.kernel}: expected one of {KERNELS}")
        for nic in self.nics:
            if not nic or len(nic) >= IFNAMSIZ or not nic.isascii() or not nic[-1].isdigit():
                raise ValueError(f"NIC name {nic!r}: need a driver name and unit, < 16 chars")
        if len(set(self.nics)) != len(self.nics):
            raise ValueError(f"NIC names repeat: {' '.join(self.nics)}")
        for wire in self.wires:
            unknown = [n for n in wire if n not in self.nics]
            if unknown:
                raise ValueError(f"wire {' '.join(wire)}: {unknown[0]} is not a NIC")
        self.ng = NgKernel(self, self.kernel)
        self.ng.clock = self.clock
        self.ng.link_race = self.faults.link_race
        self.ng.learn_fail = self.faults.learn_fail
        self.jails: dict[int, Jail] = {}
        self._live: dict[str, int] = {}
        """The jid of each live jail by name (prison_find_name without the scan)."""
        self._eiface_units = UnitPool()
        self.lastprid = 0
        self.ifnets: list[Ifnet] = []
        self._by_vnet: dict[int, list[Ifnet]] = {}
        self._by_vnet_of: tuple[int, int] = (0, -1)
        """``self.ifnets`` by vnet, for the list it was built from (its id and length)."""
        self.next_index = 1
        self.exec_log: list[ExecRecord] = []
        self._execs: dict[int, list[ExecRecord]] = {}
        """``exec_log`` by jid, for jail_remove's SIGKILL (the whole log at 10,000 jails)."""
        self.scripts: list[ExecScript] = []
        self.vanish_at: dict[int, float] = {}
        self._dying: set[int] = set()
        """Jids with a ``dying_until``: what :meth:`tick` looks at, not every jail."""
        self.ifnet_log = IfnetLog()  # devctl's IFNET notices (ifnet_log.py)
        for nic in self.nics:
            ifnet = Ifnet(nic, "ether", 0, nic_mac(nic), hwassist=NIC_HWASSIST)
            ifnet.capabilities = ifnet.capenable = NIC_CAPABILITIES
            self._add_ifnet(ifnet)
        # The segment of each NIC, by object: a NIC keeps its wire under any name or vnet.
        by_name = {i.name: i for i in self.ifnets}
        self.segments: dict[int, list[Ifnet]] = {}
        for wire in self.wires:
            members = [by_name[n] for n in wire]
            for member in members:
                self.segments[id(member)] = members
        self._add_ifnet(Ifnet("lo0", "loopback", 0))

    # -- ifnets ----------------------------------------------------------------------------

    def _vnet_index(self) -> dict[int, list[Ifnet]]:
        """The ifnets of each vnet (a model's index: listing one vnet must not scan all of
        them); rebuilt when ``self.ifnets`` was replaced or changed length behind it."""
        if self._by_vnet_of != (id(self.ifnets), len(self.ifnets)):
            index: dict[int, list[Ifnet]] = {}
            for ifnet in self.ifnets:
                index.setdefault(ifnet.vnet, []).append(ifnet)
            self._by_vnet = index
            self._by_vnet_of = (id(self.ifnets), len(self.ifnets))
        return self._by_vnet

    def _drop_ifnet(self, ifnet: IfnetLike) -> bool:
        """Take ``ifnet`` out of the list (and the index); whether it was there."""
        index = self._vnet_index()
        if not isinstance(ifnet, Ifnet) or not any(i is ifnet for i in index.get(ifnet.vnet, ())):
            return False
        # The list is in index order (appended as numbered): bisect, not a scan of 10,000.
        at = bisect.bisect_left(self.ifnets, ifnet.index, key=lambda i: i.index)
        if at < len(self.ifnets) and self.ifnets[at] is ifnet:
            del self.ifnets[at]
        else:
            self.ifnets.remove(ifnet)
        index[ifnet.vnet] = [i for i in index[ifnet.vnet] if i is not ifnet]
        self._by_vnet_of = (id(self.ifnets), len(self.ifnets))
        return True

    def _add_ifnet(self, ifnet: Ifnet) -> Ifnet:
        ifnet.index = self.next_index
        self.next_index += 1
        index = self._vnet_index()
        self.ifnets.append(ifnet)
        index.setdefault(ifnet.vnet, []).append(ifnet)
        self._by_vnet_of = (id(self.ifnets), len(self.ifnets))
        if ifnet.kind == "ether" and ifnet.vnet == HOST_JID:
            self.ng.attach_ether(ifnet)
        self.ifnet_log.notify("ATTACH", ifnet.name, ifnet.vnet)  # if_attach_internal
        return ifnet

    def find_ifnet(self, name: str, vnet: int) -> Ifnet | None:
        for ifnet in self._vnet_index().get(vnet, ()):
            if ifnet.name == name:
                return ifnet
        return None

    def _vnet_of_jail(self, jid: int) -> int:
        """The vnet a jail's processes see: its own, or the host's without ``vnet``."""
        jail = self.jails.get(jid)
        if jid == HOST_JID or jail is None or not jail.vnet:
            return HOST_JID
        return jid

    def list_ifnets(self, jid: int = HOST_JID) -> list[Ifnet]:
        if jid != HOST_JID and jid not in self.jails:
            fail(errno.EINVAL, f"no jail {jid}")  # as jail_attach(2) would say
        vnet = self._vnet_of_jail(jid)
        return sorted(self._vnet_index().get(vnet, ()), key=lambda i: i.index)  # list order

    def locate(self, name: str) -> int | None:
        """Where an interface is: 0, the jid holding it, or None (loopbacks are per vnet)."""
        for ifnet in self.ifnets:
            if ifnet.name == name and (ifnet.kind != "loopback" or ifnet.vnet == HOST_JID):
                return ifnet.vnet
        return None

    def attach_eiface(self) -> Ifnet:
        """ng_eiface_constructor: unit from the lowest free (ifc_alloc_unit), on the host."""
        unit = self._eiface_units.alloc()
        name = f"ngeth{unit}"
        # FreeBSD 12 leaves the address all-zero; 13+ calls ether_gen_addr.
        mac = bytes(6) if self.kernel < 13 else eiface_mac(self.host_uuid, name)
        return self._add_ifnet(Ifnet(name, "eiface", 0, mac, unit=unit))

    def detach_eiface(self, ifnet: IfnetLike) -> None:
        self.ng.detach_ether(ifnet)  # ether_ifdetach → ng_ether_detach, if it had one
        if isinstance(ifnet, Ifnet):
            if self._drop_ifnet(ifnet):  # if_detach_internal
                self.ifnet_log.notify("DETACH", ifnet.name, ifnet.vnet)
                if ifnet.kind == "eiface":
                    self._eiface_units.free(ifnet.unit)  # ng_eiface_rmnode: free_unr
            self.purge_inet(ifnet)  # if_detach: its addresses and routes go with it

    def move_ifnet(self, name: str, jid: int) -> None:
        """SIOCSIFVNET, ``ifconfig IF vnet JID`` (ifioctl → if_vmove_loan, sys/net/if.c)."""
        ifnet = self.find_ifnet(name, HOST_JID)
        if ifnet is None:
            fail(errno.ENXIO, name)  # ifunit_ref found nothing in the caller's vnet
        jail = self.jails.get(jid)
        if jail is None:
            fail(errno.ENXIO, f"jail {jid}")  # prison_find_child
        if not jail.vnet:
            fail(errno.EEXIST, f"jail {jid} has no vnet")  # pr->pr_vnet == ifp->if_vnet
        if self.find_ifnet(name, jid) is not None:
            fail(errno.EEXIST, f"{name} exists in jail {jid}")
        if self.faults.move_failures > 0:
            self.faults.move_failures -= 1
            fail(self.faults.move_errno, f"{name} (injected fault)")
        if ifnet.kind == "loopback":
            fail(errno.EEXIST, f"{name} exists in jail {jid}")  # every vnet has its lo0
        self._vmove(ifnet, jid)

    def reclaim_ifnet(self, name: str, jid: int) -> None:
        """SIOCSIFRVNET, ``ifconfig IF -vnet JID`` (if_vmove_reclaim, sys/net/if.c)."""
        jail = self.jails.get(jid)
        if jail is None:
            fail(errno.ENXIO, f"jail {jid}")  # prison_find_child: dying jails are found
        ifnet = self.find_ifnet(name, self._vnet_of_jail(jid))
        if ifnet is None:
            fail(errno.ENXIO, f"{name} is not in jail {jid}")
        if ifnet.vnet == HOST_JID:
            fail(errno.EEXIST, f"{name} is already on the host")  # vnet_dst == ifp->if_vnet
        if self.faults.reclaim_failures > 0:
            self.faults.reclaim_failures -= 1
            fail(self.faults.reclaim_errno, f"{name} (injected fault)")
        self._vmove(ifnet, HOST_JID)

    def _vmove(self, ifnet: Ifnet, vnet: int) -> None:
        """if_vmove: detach (ng_ether goes, the ifnet goes down), re-attach in the new vnet.

        An eiface's ifnet is IFT_ETHER too: at creation its node already holds the name, so
        ng_ether skips it, but coming home renamed (``ng0_web``) it gets an ether node of
        its own, as ng_ether_attach finds the name free.
        """
        if ifnet.kind in ETHER_KINDS and ifnet.vnet == HOST_JID:
            self.ng.detach_ether(ifnet)
        # if_detach_internal calls if_down for a vmove too, which clears IFF_UP: an ifnet
        # arrives in its new vnet down, whichever way it moves (if.c@d87a5f2a).
        ifnet.up = False
        self.purge_inet(ifnet)  # if_detach_internal: addresses and routes stay behind, gone
        self.ifnet_log.notify("DETACH", ifnet.name, ifnet.vnet)  # if_detach_internal(vmove)
        index = self._vnet_index()
        index[ifnet.vnet] = [i for i in index.get(ifnet.vnet, ()) if i is not ifnet]
        ifnet.vnet = vnet
        index.setdefault(vnet, []).append(ifnet)
        self.ifnet_log.notify("ATTACH", ifnet.name, vnet)  # if_attach_internal(vmove)
        if ifnet.kind in ETHER_KINDS and vnet == HOST_JID:
            self.ng.attach_ether(ifnet)

    def rename_ifnet(self, name: str, newname: str, jid: int = HOST_JID) -> None:
        """SIOCSIFNAME on the host (ifioctl → ifhwioctl → if_rename, if.c@d87a5f2a), or,
        attached to jail ``jid``, in its vnet (``jexec web ifconfig em1 name lan0``).

        ifioctl looks the interface up (ENXIO) before ifhwioctl copies the new name in
        (ENAMETOOLONG); if_rename then answers EINVAL for "", 0 for the current name and
        EEXIST for a name taken in the caller's vnet. Its ifnet_arrival_event renames an
        ng_ether companion; an eiface node keeps its name (ng_eiface.c has no such handler).
        The name is the ifnet's own (if_xname): vnet_if_return and if_vmove_reclaim move it
        home under whatever name it has then, and neither renames it.
        """
        if jid != HOST_JID:
            jail = self.jails.get(jid)
            if jail is None or jail.dying:
                fail(errno.EINVAL, f"cannot attach to jail {jid}")  # jail_attach(2)
        vnet = self._vnet_of_jail(jid)
        ifnet = self.find_ifnet(name, vnet)
        if ifnet is None:
            fail(errno.ENXIO, name)
        if len(newname.encode()) >= IFNAMSIZ:
            # copyinstr into an IFNAMSIZ buffer: "File name too long" (field survey #7).
            fail(errno.ENAMETOOLONG, newname)
        if not newname:
            fail(errno.EINVAL, "empty interface name")
        if newname == ifnet.name:
            return
        if self.find_ifnet(newname, vnet) is not None:
            fail(errno.EEXIST, newname)
        old, ifnet.name = ifnet.name, newname
        self.ifnet_log.notify("RENAME", old, vnet, newname)  # any vnet: if_rename
        if vnet == HOST_JID:  # ng_ether nodes live in the host vnet only
            self.ng.rename_ether(ifnet)

    def set_up(self, name: str, up: bool, jid: int = HOST_JID) -> None:
        """SIOCSIFFLAGS in the host or, attached to jail ``jid``, in that jail's vnet.

        Attaching needs a live jail (EINVAL, as jail_attach(2)); ENXIO if the interface is
        not in that vnet (ifunit_ref).
        """
        if jid != HOST_JID:
            jail = self.jails.get(jid)
            if jail is None or jail.dying:
                fail(errno.EINVAL, f"cannot attach to jail {jid}")
        ifnet = self.find_ifnet(name, self._vnet_of_jail(jid))
        if ifnet is None:
            fail(errno.ENXIO, name)
        ifnet.up = up

    def set_capabilities(self, name: str, enabled: int) -> None:
        """SIOCSIFCAP on the host: ENXIO if absent; EINVAL for a bit the driver lacks
        (if.c ifhwioctl: ``ifr_reqcap & ~if_capabilities``)."""
        ifnet = self.find_ifnet(name, HOST_JID)
        if ifnet is None:
            fail(errno.ENXIO, name)
        if enabled & ~ifnet.capabilities:
            fail(errno.EINVAL, f"{name}: capabilities {enabled & ~ifnet.capabilities:#x}")
        ifnet.capenable = enabled

    def move_ifnet_keeping_up(self, name: str, jid: int) -> None:
        """What a platform's ``move_ifnet`` does: SIOCSIFVNET, then ``up`` again inside.

        The kernel brings a moved interface down (:meth:`_vmove`), so the freebsd platform
        re-raises IFF_UP in the jail for one that was up; the RPC ``move_ifnet`` does the same.
        """
        ifnet = self.find_ifnet(name, HOST_JID)
        was_up = ifnet is not None and ifnet.up
        self.move_ifnet(name, jid)
        if was_up:
            self.set_up(name, True, jid)

    # -- jails -----------------------------------------------------------------------------

    def create_jail(
        self, name: str, *, hostname: str = "", path: str = "/", vnet: bool = True
    ) -> int:
        """jail_set(JAIL_CREATE) of a persistent jail (kern_jail.c kern_jail_set)."""
        if not name:
            fail(errno.EINVAL, "a vimage jail needs a name")
        jid: int | None = None
        if name.isascii() and name.isdigit():
            # kern_jail_set takes an all-digit name as the jid to create; it must then be
            # that jid in normal form ("name cannot be numeric (unless it is the jid)").
            if name[0] == "0" or int(name) > JAIL_MAX:
                fail(errno.EINVAL, f"jail name {name!r} is numeric")
            jid = int(name)
            if jid in self.jails:  # prison_find: a dying prison holds its jid too
                fail(errno.EEXIST, f"jail {jid} exists")
        if "." in name:
            fail(errno.ENOENT, f"jail {name!r}: no parent jail {name.rsplit('.', 1)[0]!r}")
        if len(name.encode()) >= 256:
            fail(errno.ENAMETOOLONG, name)  # MAXHOSTNAMELEN
        # Only a live sibling blocks the name; a dying one (pr_uref == 0) is passed over, so
        # JAIL_CREATE makes a new prison beside it (kern_jail.c@002c06d2 kern_jail_set).
        if name in self._live:
            fail(errno.EEXIST, f"jail {name!r} exists")
        if jid is None:
            jid = self._next_jid()
        self.jails[jid] = Jail(jid, name, hostname or name, path, vnet, persist=True)
        self._live[name] = jid
        if vnet:
            self._add_ifnet(Ifnet("lo0", "loopback", 0, vnet=jid, home=jid))
        if name in self.faults.vanish:
            self.vanish_at[jid] = self.clock() + self.faults.vanish[name]
        return jid

    def _next_jid(self) -> int:
        """get_next_prid: lastprid + 1 upward, skipping jids in use, wrapping at JAIL_MAX."""
        jid = self.lastprid
        while True:
            jid = 1 if jid >= JAIL_MAX else jid + 1
            if jid not in self.jails:
                self.lastprid = jid
                return jid

    def remove_jail(self, jid: int) -> None:
        """jail_remove(2): EINVAL for an unknown jid; a dying jail is silently accepted."""
        jail = self.jails.get(jid)
        if jail is None:
            fail(errno.EINVAL, f"no jail {jid}")
        if jail.dying:
            return
        if self._live.get(jail.name) == jid:
            del self._live[jail.name]  # pr_uref 0: the name is free for a new prison
        for record in self._execs.pop(jid, ()):
            if record.outcome == "running":
                self._kill(record)
        if self.faults.dying_seconds > 0:
            jail.dying_until = self.clock() + self.faults.dying_seconds
            self._dying.add(jid)
        else:
            self._destroy_jail(jail)

    def kill_jail(self, name: str) -> int:
        """``jail -r NAME`` run by someone else: the jail is removed under the daemon."""
        jid = self._live.get(name)
        if jid is None:
            fail(errno.ENOENT, f"no live jail {name!r}")
        self.remove_jail(jid)
        return jid

    def _destroy_jail(self, jail: Jail) -> None:
        """prison_deref → vnet_destroy → vnet_if_return: every ifnet goes home."""
        self.jails.pop(jail.jid, None)
        if self._live.get(jail.name) == jail.jid:
            del self._live[jail.name]
        self.vanish_at.pop(jail.jid, None)
        self._dying.discard(jail.jid)
        self.routes = [r for r in self.routes if r.vnet != jail.jid]  # the vnet's rib goes
        for ifnet in sorted(self._vnet_index().get(jail.jid, ()), key=lambda i: i.index):
            if ifnet.home == jail.jid:
                self._drop_ifnet(ifnet)  # the vnet's own lo0 dies with it
            else:
                self._vmove(ifnet, ifnet.home)

    def tick(self) -> None:
        """Apply what time has done: scheduled vanishings, then dying jails that are gone."""
        now = self.clock()
        for jid, when in list(self.vanish_at.items()):
            if when <= now:
                del self.vanish_at[jid]
                if jid in self.jails:
                    self.remove_jail(jid)
        for jid in list(self._dying):
            jail = self.jails.get(jid)
            if jail is None:
                self._dying.discard(jid)
            elif jail.dying_until is not None and jail.dying_until <= now:
                self._destroy_jail(jail)

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.ng.link_race = faults.link_race
        self.ng.learn_fail = faults.learn_fail
        now = self.clock()
        for jail in self.jails.values():
            if jail.name in faults.vanish and not jail.dying:
                self.vanish_at[jail.jid] = now + faults.vanish[jail.name]

    # -- commands --------------------------------------------------------------------------

    def start_exec(
        self, jid: int, command: str, env: dict[str, str] | None = None
    ) -> tuple[ExecRecord, ExecScript | None]:
        """jail_attach + sh -c: EINVAL for a jail that is absent or dying (kern_jail.c).
        jid 0 is the host itself: a command outside any jail, recorded with no jail name."""
        name = ""
        if jid != 0:
            jail = self.jails.get(jid)
            if jail is None or jail.dying:
                fail(errno.EINVAL, f"cannot attach to jail {jid}")
            name = jail.name
        record = ExecRecord(jid, name, command, time.time(), dict(env or {}))
        self.exec_log.append(record)
        if jid != 0:
            self._execs.setdefault(jid, []).append(record)
        script = next(
            (s for s in self.scripts if s.jail in (name, "*") and s.match in command),
            None,
        )
        return record, script

    def finish_exec(self, record: ExecRecord, status: int) -> None:
        if record.outcome == "running":
            record.outcome, record.status = "exited", status
            record.duration = time.time() - record.started

    def _kill(self, record: ExecRecord) -> None:
        record.outcome, record.status = "killed", SIGKILL_STATUS
        record.duration = time.time() - record.started
        if record.cancel is not None:
            record.cancel()

    def kill_exec(self, record: ExecRecord) -> None:
        """The caller went away (the platform's cancellation): the command is killed."""
        if record.outcome == "running":
            self._kill(record)
