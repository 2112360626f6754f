"""Kernel boundary: the real FreeBSD platform (VNET jails, ifnet ioctls, netgraph).

Jails are created and removed with jail(8) from a generated per-vimage jail.conf
(:mod:`freebsd_jailconf`), so mounts, devfs rulesets and parameter parsing stay jail(8)'s;
commands run inside with jexec(8).
Cheap, frequent questions (which jails exist, which are dying, which name has a jid) go
straight to ``jail_get(2)``. Interfaces move with the SIOCSIFVNET/SIOCSIFRVNET ioctls, are
renamed with SIOCSIFNAME and brought up with SIOCGIFFLAGS/SIOCSIFFLAGS; MACs come from
``getifaddrs(3)``; to see inside a jail's vnet a short-lived child ``jail_attach(2)``-es and
reports (all three in :mod:`freebsd_ifnet`). Bridged interfaces are
:class:`~vimaged.platforms.netgraph_bridges.NetgraphBridges` over the real PF_NETGRAPH
transport. Bytes for the kernel come from :mod:`freebsd_abi`, libc from :mod:`_libc`.
docs/freebsd.md gives the reasons.

Everything here raises ``OSError(errno, strerror, subject)``; :meth:`preflight` alone raises
``PlatformError``, saying what to do.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import trio

from vimaged import statedir
from vimaged.errors import PlatformError
from vimaged.platforms import (
    HOST_JID,
    BridgedIfnet,
    BridgeInfo,
    IfnetInfo,
    JailInfo,
    JailSpec,
    LinkCounters,
    _libc,
    jail_inet,
)
from vimaged.platforms import freebsd_abi as abi
from vimaged.platforms import freebsd_ifnet as ifops
from vimaged.platforms.freebsd_devd import DEVD_SEQPACKET_PIPE, open_devd_source
from vimaged.platforms.freebsd_jailconf import jail_conf
from vimaged.platforms.host_command import run_host_command
from vimaged.platforms.ifnet_events import open_reconnecting
from vimaged.platforms.jail_cni import JailCniMethods

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from vimaged.netgraph.transport import NgTransport
    from vimaged.platforms.ifnet_events import IfnetEvent
    from vimaged.platforms.netgraph_bridges import NetgraphBridges

JAIL = "/usr/sbin/jail"
JEXEC = "/usr/sbin/jexec"
DEFAULT_RUN_DIR = "/var/db/vimaged/jails"


# --- libc wrappers (synchronous, each one syscall or a short sequence) ---------------------


SYSCTL_BOOTTIME = b"kern.boottime"


def _sysctl(name: bytes) -> bytes:
    """``sysctlbyname(name)``'s value: ask for its size, then read it."""
    lib = _libc.libc()
    size = ctypes.c_size_t(0)
    lib.sysctlbyname(name, None, ctypes.byref(size), None, 0)
    buf = ctypes.create_string_buffer(size.value)
    lib.sysctlbyname(name, ctypes.addressof(buf), ctypes.byref(size), None, 0)
    return buf.raw[: size.value]


def _jail_get(query: abi.JailQuery) -> int:
    """``jail_get(2)`` including dying jails; the jid found. ENOENT when there is none."""
    try:
        jid: int = _libc.libc().jail_get(ctypes.addressof(query.iov), query.niov, abi.JAIL_DYING)
    except OSError as exc:
        raise query.error(exc.errno or errno.EIO) from None
    return jid


def _jails() -> list[JailInfo]:
    """Every jail, dying ones included, walking ``lastjid`` as jls(8) does."""
    found: list[JailInfo] = []
    lastjid = 0
    while True:
        query = abi.JailQuery(lastjid=lastjid)
        try:
            jid = _jail_get(query)
        except FileNotFoundError:
            return found
        found.append(
            JailInfo(jid=jid, name=query.name.value.decode(), dying=bool(query.dying.value))
        )
        lastjid = jid


def _find_jail(*, jid: int | None = None, name: str | None = None) -> JailInfo:
    query = abi.JailQuery(jid=jid) if jid is not None else abi.JailQuery(name=name)
    found = _jail_get(query)
    return JailInfo(jid=found, name=query.name.value.decode(), dying=bool(query.dying.value))


# --- bridged interfaces -------------------------------------------------------------------


def _open_kernel_transport() -> AbstractAsyncContextManager[NgTransport]:
    from vimaged.netgraph.kernel_transport import open_kernel_transport

    return open_kernel_transport()


# --- the platform -------------------------------------------------------------------------


class FreeBSDPlatform(JailCniMethods):
    """:class:`vimaged.platforms.Platform` on a FreeBSD kernel with ``options VIMAGE``."""

    name = "freebsd"

    def __init__(
        self,
        *,
        run_dir: str = DEFAULT_RUN_DIR,
        jail_command: str = JAIL,
        jexec_command: str = JEXEC,
        open_transport: Callable[[], AbstractAsyncContextManager[NgTransport]] | None = None,
        bridge_mode: str = "classic",
        devd_socket: str = DEVD_SEQPACKET_PIPE,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.devd_socket = devd_socket
        self.bridge_mode = bridge_mode
        self.jail_command = jail_command
        self.jexec_command = jexec_command
        self._open_transport = open_transport or _open_kernel_transport
        self._bridges: NetgraphBridges | None = None
        self._closed = False
        self._sandbox_lock = trio.Lock()  # vimaged-cni: one rename-and-move at a time

    # -- start-up checks

    async def preflight(self) -> None:
        """Root, ``options VIMAGE``, and the netgraph modules loaded (loading those missing)."""
        if not sys.platform.startswith("freebsd"):
            raise PlatformError(
                f"the freebsd platform needs FreeBSD, this is {sys.platform}: "
                "use --platform sim (or linux) here"
            )
        if os.geteuid() != 0:
            raise PlatformError("vimaged must run as root to create jails and move interfaces")
        try:
            vimage = int.from_bytes(_sysctl(abi.SYSCTL_VIMAGE), sys.byteorder)
        except FileNotFoundError:
            vimage = 0
        if vimage != 1:
            raise PlatformError(
                "the kernel lacks options VIMAGE (sysctl kern.features.vimage is not 1): "
                "boot a kernel with VIMAGE (GENERIC has it since FreeBSD 12.0)"
            )
        lib = _libc.libc()
        for module in abi.NETGRAPH_MODULES:
            try:
                lib.modfind(module.encode())
                continue
            except OSError:
                pass
            try:
                lib.kldload(module.encode())
            except FileExistsError:
                continue  # loaded meanwhile, or compiled into the kernel under another file
            except OSError as exc:
                raise PlatformError(
                    f"kernel module {module} is not loaded and kldload failed "
                    f'({os.strerror(exc.errno or 0)}): add {module}_load="YES" to '
                    "/boot/loader.conf or run kldload " + module
                ) from exc
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def host_uuid(self) -> str:
        return _sysctl(abi.SYSCTL_HOSTUUID).rstrip(b"\0").decode()

    async def boot_id(self) -> str:
        # kern.boottime is a struct timeval (sys/kern/kern_tc.c sysctl_kern_boottime): time_t
        # tv_sec and long tv_usec, both 8 bytes on 64-bit FreeBSD. It is set once per boot.
        raw = _sysctl(SYSCTL_BOOTTIME)
        half = len(raw) // 2
        sec = int.from_bytes(raw[:half], sys.byteorder, signed=True)
        usec = int.from_bytes(raw[half:], sys.byteorder, signed=True)
        return f"kern.boottime={sec}.{usec:06d}"

    # -- jails

    def _conf_path(self, name: str) -> Path:
        return self.run_dir / f"jail.{name}.conf"

    async def create_jail(self, spec: JailSpec) -> int:
        conf = jail_conf(spec)  # EINVAL before anything is done
        try:
            existing = _find_jail(name=spec.name)  # prison_find_name: a live one first
        except FileNotFoundError:
            pass
        else:
            # Only a live jail holds its name: kern_jail_set (JAIL_CREATE) passes over a dying
            # sibling (pr_uref == 0) and creates a new prison beside it (kern_jail.c@002c06d2).
            if not existing.dying:
                raise FileExistsError(
                    errno.EEXIST, f"a running jail named {spec.name} exists", spec.name
                )
        path = self._conf_path(spec.name)
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        statedir.write_text(str(path), conf)  # O_NOFOLLOW: never through a planted link
        argv = [self.jail_command, "-i", "-f", str(path), "-c", spec.name]
        try:
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if result.returncode != 0:
            path.unlink(missing_ok=True)
            raise _tool_error(result, spec.name)
        words = result.stdout.split()
        if not words or not words[-1].isdigit():
            # jail(8) said it worked but printed no jid (-i): find it by name instead.
            return _find_jail(name=spec.name).jid
        return int(words[-1])

    async def remove_jail(self, jid: int) -> None:
        jail = _find_jail(jid=jid)  # FileNotFoundError when there is no such jail
        if jail.dying:
            return  # already removed; the kernel frees it when its last reference goes
        conf = self._conf_path(jail.name)
        if conf.exists():
            argv = [self.jail_command, "-f", str(conf), "-r", jail.name]
        else:
            argv = [self.jail_command, "-R", str(jid)]  # not ours to unmount; just remove
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode != 0:
            raise _tool_error(result, jail.name)
        conf.unlink(missing_ok=True)

    async def list_jails(self) -> list[JailInfo]:
        return _jails()

    async def jail_info(self, jid: int) -> JailInfo | None:
        try:
            return _find_jail(jid=jid)  # jail_get(2) by jid, JAIL_DYING
        except FileNotFoundError:
            return None

    async def exec_in_jail(self, jid: int, command: str, *, output: int | None = None) -> int:
        # jexec(8) exits 1 for a missing jail, which would read as the command's status.
        if _find_jail(jid=jid).dying:
            raise ProcessLookupError(errno.ESRCH, f"jail {jid} is dying", str(jid))
        result = await trio.run_process(
            [self.jexec_command, str(jid), "/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            check=False,
        )
        return result.returncode

    async def exec_on_host(
        self, command: str, *, env: Mapping[str, str], output: int | None = None
    ) -> int:
        return await run_host_command(command, env=env, output=output)

    # -- interfaces

    async def list_ifnets(self, jid: int = HOST_JID) -> list[IfnetInfo]:
        if jid == HOST_JID:
            return ifops.ifnets_here()
        return msgspec.json.decode(await ifops.run_child(ifops.CHILD, jid), type=list[IfnetInfo])

    async def locate_ifnet(self, ifname: str) -> int | None:
        abi.check_ifname(ifname)
        if any(ifnet.name == ifname for ifnet in ifops.ifnets_here()):
            return HOST_JID
        for jail in _jails():
            if jail.dying:
                continue  # jail_attach(2) refuses a dying jail; its ifnets come home with it
            try:
                ifnets = await self.list_ifnets(jail.jid)
            except OSError:
                continue  # gone or dying since the walk
            if any(ifnet.name == ifname for ifnet in ifnets):
                return jail.jid
        return None

    async def move_ifnet(self, ifname: str, jid: int) -> None:
        """SIOCSIFVNET, then ``up`` inside the jail for an interface that was up.

        if_vmove's if_detach_internal calls if_down, so the kernel delivers the interface
        down (sys/net/if.c@d87a5f2a); the Platform contract says the up flag survives.
        """
        flags = abi.ifreq(ifname)
        ifops.ifnet_ioctl(abi.SIOCGIFFLAGS, flags)
        ifops.ifnet_ioctl(abi.SIOCSIFVNET, abi.ifreq_jid(ifname, jid))
        if abi.ifreq_get_flags(flags) & abi.IFF_UP:
            await ifops.run_child(ifops.UP_CHILD, jid, ifname)

    async def reclaim_ifnet(self, ifname: str, jid: int) -> None:
        ifops.ifnet_ioctl(abi.SIOCSIFRVNET, abi.ifreq_jid(ifname, jid))

    async def rename_ifnet(self, ifname: str, newname: str) -> None:
        buf = abi.new_name_buffer(newname)
        ifops.ifnet_ioctl(abi.SIOCSIFNAME, abi.ifreq_rename(ifname, buf))

    async def set_ifnet_up(self, ifname: str) -> None:
        """``ifconfig IF up`` on the host: for the bridge code and tests, not on ``Platform``."""
        ifops.raise_ifnet(ifname)

    # -- bridged interfaces (netgraph)

    def _netgraph(self) -> NetgraphBridges:
        if self._closed:
            raise OSError(errno.EBADF, "platform is closed", "netgraph")
        if self._bridges is None:
            from vimaged.platforms.netgraph_bridges import (
                NetgraphBridges,  # the binding, on first use
            )
            from vimaged.platforms.parent_nics import ParentNics

            self._bridges = NetgraphBridges(
                self._open_transport,
                self.rename_ifnet,
                self.set_ifnet_up,
                bridge_mode=self.bridge_mode,
                parents=ParentNics(self.run_dir / "parents", ifops.HostNicOps()),
            )
        return self._bridges

    async def create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        abi.check_ifname(parent)  # igb0.100 passes: '.' and ':' are ifname characters
        abi.check_ifname(ifname)
        await self._netgraph().create(parent, ifname, mac)

    async def destroy_bridged_ifnet(self, ifname: str) -> str | None:
        abi.check_ifname(ifname)
        return await self._netgraph().destroy(ifname)

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        return await self._netgraph().list()

    async def reconcile_strays(self) -> list[BridgedIfnet]:
        return await self._netgraph().reconcile_strays()

    async def list_bridges(self) -> list[BridgeInfo]:
        return await self._netgraph().bridges()

    async def bridged_ifnet_stats(self, ifname: str) -> LinkCounters:
        abi.check_ifname(ifname)
        return await self._netgraph().link_counters(ifname)

    # -- interface arrival and departure (platforms/freebsd_devd.py) -----------------------
    def watch_ifnets(self) -> AbstractAsyncContextManager[AsyncIterator[IfnetEvent]]:
        return open_reconnecting(
            partial(open_devd_source, self.devd_socket), what=f"devd {self.devd_socket}"
        )

    # -- end of interface arrival and departure ---------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        bridges, self._bridges = self._bridges, None
        if bridges is not None:
            await bridges.aclose()

    # -- CNI attachments (vimaged-cni): the sandbox is a VNET jail; create, inspect and detach
    # are JailCniMethods'

    async def configure_in_jail(self, jid: int, inet: jail_inet.InetPlan) -> None:
        """MTU, addresses and routes of ``inet.ifname`` in jail ``jid`` (jail_inet.py)."""
        await ifops.run_child(jail_inet.CHILD_SCRIPT, jid, msgspec.json.encode(inet).decode())

    async def inspect_in_jail(self, jid: int, ifname: str) -> IfnetInfo | None:
        """``ifname`` in jail ``jid`` with its routes: the address child, given the name."""
        abi.check_ifname(ifname)
        found = await ifops.run_child(ifops.CHILD, jid, ifname)
        return next(iter(msgspec.json.decode(found, type=list[IfnetInfo])), None)


def _tool_error(result: subprocess.CompletedProcess[bytes], subject: str) -> OSError:
    """jail(8) exits 1 for every failure; its stderr (jail(2)'s errmsg) is the text."""
    text = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
    return OSError(errno.EIO, text, subject)


def create(**options: str) -> FreeBSDPlatform:
    """The platform ``vimaged --platform freebsd`` runs.

    Options: ``state_dir`` (the daemon's; the generated jail.conf files go to its ``jails``
    subdirectory, the parent NIC records to ``jails/parents``) or ``run_dir`` (that directory
    itself); ``bridge_mode`` (``classic``, the default, or ``uplink``: Config.bridge_mode).
    """
    unknown = set(options) - {"run_dir", "state_dir", "bridge_mode"}
    if unknown:
        raise ValueError(f"unknown freebsd platform option(s): {', '.join(sorted(unknown))}")
    mode = options.get("bridge_mode", "classic")
    if mode not in ("classic", "uplink"):
        raise ValueError(f"bridge_mode {mode!r} is not classic or uplink")
    if "run_dir" in options:
        return FreeBSDPlatform(run_dir=options["run_dir"], bridge_mode=mode)
    if "state_dir" in options:
        return FreeBSDPlatform(run_dir=str(Path(options["state_dir"]) / "jails"), bridge_mode=mode)
    return FreeBSDPlatform(bridge_mode=mode)
