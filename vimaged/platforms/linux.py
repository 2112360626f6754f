"""Platform layer: vimages as Linux network namespaces (``ip netns`` compatible).

A vimage ``NAME`` is the namespace ``/run/netns/<prefix>NAME`` (prefix ``vimage-`` by default),
so ``ip netns exec vimage-NAME ...`` works like jexec. Its "jid" is the namespace's inode
number, stable for the namespace's lifetime and found again by any later process with
``stat``. Bridged interfaces are macvlans in bridge mode (a veth pair when the parent is a
Linux bridge), recognised by their ``ifalias``. Links are driven over rtnetlink sockets
created inside each namespace; nothing here forks except :meth:`exec_in_jail`.
See docs/linux.md for the mechanism and its trade-offs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import resource
import shutil
import subprocess
import threading
import uuid
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import trio

from vimaged import names, statedir
from vimaged.errors import PlatformError
from vimaged.platforms import (
    HOST_JID,
    BridgedIfnet,
    BridgeInfo,
    IfnetInfo,
    JailInfo,
    LinkCounters,
    linux_sandbox,
)
from vimaged.platforms import linux_kernel as kernel
from vimaged.platforms import linux_netlink as nl
from vimaged.platforms.host_command import exit_status, kill_process_group, run_host_command
from vimaged.platforms.ifnet_events import open_reconnecting
from vimaged.platforms.linux_ifwatch import open_rtnl_link_source

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from vimaged.platforms import JailSpec
    from vimaged.platforms.ifnet_events import IfnetEvent

DEFAULT_PREFIX = "vimage-"
DEFAULT_STATE_DIR = "/run/vimaged"
BRIDGED_ALIAS = "vimaged:bridged:"
"""``ifalias`` of a bridged interface, followed by its parent's name; survives netns moves."""
PEER_ALIAS = "vimaged:peer:"
"""``ifalias`` of the host end of a bridged veth pair, followed by the bridged interface."""
BRIDGED_GROUP = 0x76696D67
"""Device group (``ip link ... group``; "vimg") of both ends of every bridged interface, set
by the one RTM_NEWLINK that creates them: a daemon killed before the alias is set leaves a
link that is still recognisably its own, and reconciliation removes it."""
BRIDGED_NAME = re.compile(r"ng\d+_(?P<vimage>.+)")
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
T = TypeVar("T")
ARPHRD_LOOPBACK = 772


def _einval(what: str, subject: str) -> OSError:
    return OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {what}", subject)


def _enoent(subject: str) -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT), subject)


def _check_ifname(name: str) -> None:
    # The kernel's own rule, wider than names.check_ifname: CNI runtimes pick sandbox names.
    if not name or len(name.encode()) >= names.IFNAMSIZ or "/" in name or name.strip() != name:
        raise _einval("interface names have 1 to 15 bytes, no '/' or whitespace", name)


class _Netns:
    """One namespace of ours, held open by ``fd`` while this process knows it."""

    def __init__(self, jid: int, name: str, path: str, fd: int, dying: bool) -> None:
        self.jid = jid
        self.name = name
        self.path = path
        """``/run/netns/<prefix>NAME`` while alive; the pin in the state dir while dying."""
        self.fd = fd
        self.dying = dying
        self.rtnl: nl.Rtnl | None = None

    def close(self) -> None:
        if self.rtnl is not None:
            self.rtnl.close()
            self.rtnl = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LinuxPlatform:
    """:class:`vimaged.platforms.Platform` over Linux network namespaces."""

    name = "linux"

    def __init__(self, *, host_netns: str | None, prefix: str, state_dir: str) -> None:
        if not prefix or "/" in prefix:
            raise _einval("the namespace prefix must be a non-empty file name part", prefix)
        self._prefix = prefix
        self._pin_dir = os.path.join(state_dir, "linux-netns")
        """Bind mounts of dying namespaces (``NAME@JID``) and rootdirs (``JID.root``)."""
        host_path = "/proc/self/ns/net"
        if host_netns is not None:
            host_path = host_netns if "/" in host_netns else f"{kernel.NETNS_RUN_DIR}/{host_netns}"
        self._host_fd = os.open(host_path, os.O_RDONLY | os.O_CLOEXEC)
        self._nsfs_dev = os.fstat(self._host_fd).st_dev
        self._host = (
            nl.Rtnl() if host_netns is None else kernel.in_netns(self._host_fd, host_path, nl.Rtnl)
        )
        self._lock = threading.Lock()
        self._known: dict[int, _Netns] = {}
        # Each vimage holds two fds (namespace, rtnetlink socket); 1024 is too few.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            with contextlib.suppress(ValueError, OSError):  # best effort: above nr_open
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        self._run_dir_ready = False
        self._closed = False

    # -- namespaces ------------------------------------------------------------------------

    def _nsfs_inode(self, path: str) -> int | None:
        """The namespace inode behind ``path``, or None if it is no (longer a) namespace."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino if st.st_dev == self._nsfs_dev else None

    def _scan(self) -> list[_Netns]:
        """Every namespace of ours: named ones, pinned dying ones, and ones only we hold."""
        found: dict[int, tuple[str, str, bool]] = {}
        if os.path.isdir(self._pin_dir):
            for entry in os.scandir(self._pin_dir):
                name, sep, _ = entry.name.partition("@")
                jid = self._nsfs_inode(entry.path) if sep else None
                if jid is not None:
                    found[jid] = (name, entry.path, True)
        if os.path.isdir(kernel.NETNS_RUN_DIR):
            for entry in os.scandir(kernel.NETNS_RUN_DIR):
                if entry.name.startswith(self._prefix):
                    jid = self._nsfs_inode(entry.path)
                    if jid is not None:
                        found[jid] = (entry.name.removeprefix(self._prefix), entry.path, False)
        with self._lock:
            for jid, (name, path, dying) in found.items():
                ns = self._known.get(jid)
                if ns is None:
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    except OSError:
                        continue  # deleted meanwhile
                    self._known[jid] = _Netns(jid, name, path, fd, dying)
                else:
                    ns.path, ns.dying = path, dying
            for jid, ns in self._known.items():
                if jid not in found:
                    ns.dying = True  # its name went (ip netns delete) but our fd keeps it
            return list(self._known.values())

    def _resolve(self, jid: int, *, alive: bool = False) -> _Netns:
        with self._lock:
            ns = self._known.get(jid)
        if ns is None:
            ns = next((n for n in self._scan() if n.jid == jid), None)
        if ns is None or (alive and ns.dying):
            raise OSError(errno.ENOENT, f"no vimage namespace with jid {jid}", str(jid))
        return ns

    def _rtnl(self, ns: _Netns) -> nl.Rtnl:
        with self._lock:  # two threads must not both open (and one leak) a socket
            if ns.rtnl is None:
                if ns.fd < 0:
                    raise OSError(errno.ENOENT, "the vimage namespace is gone", ns.name)
                ns.rtnl = kernel.in_netns(ns.fd, ns.path, nl.Rtnl)
            return ns.rtnl

    def _rtnl_of(self, jid: int) -> nl.Rtnl:
        return self._host if jid == HOST_JID else self._rtnl(self._resolve(jid))

    def _has_processes(self, jid: int) -> bool:
        for pid in os.listdir("/proc"):
            if pid.isdigit() and self._nsfs_inode(f"/proc/{pid}/ns/net") == jid:
                return True
        return False

    def _busy(self, ns: _Netns) -> bool:
        """Whether the namespace still holds an interface besides lo, or a process."""
        links = self._rtnl(ns).dump_links()
        return any(link.type != ARPHRD_LOOPBACK for link in links) or self._has_processes(ns.jid)

    def _forget(self, ns: _Netns) -> None:
        """Drop our last hold on a namespace; the kernel destroys it once nothing else does."""
        if ns.dying and ns.path.startswith(self._pin_dir):
            # Another platform instance (a restarted daemon) may have unpinned it already.
            try:
                kernel.umount(ns.path)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ns.path)
        root_file = self._root_file(ns.jid)
        if os.path.exists(root_file):
            os.unlink(root_file)
        with self._lock:
            self._known.pop(ns.jid, None)
        ns.close()

    def _prune(self, ns: _Netns) -> None:
        if ns.dying and not self._busy(ns):
            self._forget(ns)

    def _root_file(self, jid: int) -> str:
        return os.path.join(self._pin_dir, f"{jid}.root")

    def _rootdir(self, jid: int) -> str | None:
        # Never through a link planted there: the health check runs this directory's /bin/sh.
        return statedir.read_text(self._root_file(jid))

    def _create_jail(self, spec: JailSpec) -> int:
        if not names.is_vimage_name(spec.name):
            raise _einval("a vimage name is a letter then up to 30 of [A-Za-z0-9_]", spec.name)
        if spec.path != "/" and not os.path.isdir(spec.path):
            raise OSError(errno.ENOENT, "the vimage's path is no directory", spec.path)
        if not self._run_dir_ready:
            kernel.ensure_netns_run_dir()
            self._run_dir_ready = True
        path = f"{kernel.NETNS_RUN_DIR}/{self._prefix}{spec.name}"
        self._claim_name(path)
        ns: _Netns | None = None
        try:

            def build() -> nl.Rtnl:
                kernel.mount_bind("/proc/thread-self/ns/net", path)
                rtnl = nl.Rtnl()
                try:
                    rtnl.set_link(nl.ifinfo(1, nl.IFF_UP, nl.IFF_UP), "lo")
                except BaseException:
                    rtnl.close()
                    raise
                return rtnl

            rtnl = kernel.in_new_netns(path, build)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            ns = _Netns(os.fstat(fd).st_ino, spec.name, path, fd, dying=False)
            ns.rtnl = rtnl
            if spec.path != "/":
                os.makedirs(self._pin_dir, mode=0o700, exist_ok=True)
                statedir.write_text(self._root_file(ns.jid), os.path.abspath(spec.path))
        except BaseException:
            if ns is not None:
                ns.close()
            if self._nsfs_inode(path) is not None:
                kernel.umount(path)
            os.unlink(path)
            raise
        with self._lock:
            self._known[ns.jid] = ns
        return ns.jid

    def _claim_name(self, path: str) -> None:
        """Create the empty file a namespace is mounted on; EEXIST if the name is taken.

        A file with no namespace mounted on it is the remains of a create that was killed
        half-way (the daemon, SIGKILLed); it is replaced rather than blocking the name forever.
        """
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        except FileExistsError:
            if self._nsfs_inode(path) is not None:
                raise
            os.unlink(path)
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))

    def _remove_jail(self, jid: int) -> None:
        ns = self._resolve(jid)
        if ns.dying:
            self._prune(ns)
            return
        if self._busy(ns):
            # Pin it under the state dir so a restarted daemon still finds (and reclaims
            # from) it; the name goes now, as with ip netns delete.
            os.makedirs(self._pin_dir, mode=0o700, exist_ok=True)
            pin = os.path.join(self._pin_dir, f"{ns.name}@{jid}")
            os.close(os.open(pin, os.O_RDONLY | os.O_CREAT, 0o444))
            kernel.mount_bind(ns.path, pin)
            kernel.umount(ns.path)
            os.unlink(ns.path)
            ns.path, ns.dying = pin, True
            return
        kernel.umount(ns.path)
        os.unlink(ns.path)
        self._forget(ns)

    def _list_jails(self) -> list[JailInfo]:
        for ns in self._scan():
            self._prune(ns)
        with self._lock:
            known = sorted(self._known.values(), key=lambda n: (n.name, n.jid))
        return [JailInfo(jid=n.jid, name=n.name, dying=n.dying) for n in known]

    # -- interfaces ------------------------------------------------------------------------

    def _locate(self, ifname: str) -> tuple[int, nl.Link] | None:
        """Where ``ifname`` is, trying first the vimage its ``ng<i>_NAME`` name points at."""
        try:
            return HOST_JID, self._host.get_link(ifname)
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise
        namespaces = self._scan()
        named = BRIDGED_NAME.fullmatch(ifname)
        if named:
            namespaces.sort(key=lambda n: n.name != named["vimage"])
        for ns in namespaces:
            try:
                return ns.jid, self._rtnl(ns).get_link(ifname)
            except OSError as exc:
                if exc.errno != errno.ENODEV:
                    raise
        return None

    def _list_ifnets(self, jid: int) -> list[IfnetInfo]:
        rtnl = self._rtnl_of(jid)
        links = rtnl.dump_links()
        addresses: dict[int, list[str]] = {}
        for address in rtnl.dump_addresses():
            addresses.setdefault(address.index, []).append(address.text())
        return [
            IfnetInfo(
                name=link.name,
                mac=_mac_text(link),
                up=bool(link.flags & nl.IFF_UP),
                addresses=tuple(addresses.get(link.index, ())),
            )
            for link in links
        ]

    def _move(self, source: nl.Rtnl, ifname: str, target_fd: int, target: nl.Rtnl) -> None:
        """Move ``ifname`` between namespaces, keeping it up if it was (the Platform contract;
        the freebsd platform raises it again after if_vmove took it down)."""
        link = _enodev_is_enoent(lambda: source.get_link(ifname), ifname)
        body = nl.ifinfo(link.index) + nl.attr(nl.IFLA_NET_NS_FD, nl.u32(target_fd))
        source.set_link(body, ifname)
        if link.flags & nl.IFF_UP:
            # Linux closes an interface that changes namespace, as FreeBSD's if_vmove does.
            up = nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP) + nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname))
            target.set_link(up, ifname)

    def _move_ifnet(self, ifname: str, jid: int) -> None:
        _check_ifname(ifname)
        ns = self._resolve(jid, alive=True)
        self._move(self._host, ifname, ns.fd, self._rtnl(ns))

    def _reclaim_ifnet(self, ifname: str, jid: int) -> None:
        _check_ifname(ifname)
        ns = self._resolve(jid)
        self._move(self._rtnl(ns), ifname, self._host_fd, self._host)
        self._prune(ns)

    def _rename_ifnet(self, ifname: str, newname: str) -> None:
        _check_ifname(ifname)
        _check_ifname(newname)
        link = _enodev_is_enoent(lambda: self._host.get_link(ifname), ifname)
        body = nl.ifinfo(link.index) + nl.attr(nl.IFLA_IFNAME, nl.cstr(newname))
        self._host.set_link(body, newname)

    def _set_ifnet_up(self, ifname: str) -> None:
        _check_ifname(ifname)
        body = nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP) + nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname))
        _enodev_is_enoent(lambda: self._host.set_link(body, ifname), ifname)

    def _new_bridged_link(self, parent: str, ifname: str, mac: str) -> nl.Link:
        """The first step of :meth:`_create_bridged_ifnet`: one RTM_NEWLINK creating the
        macvlan (or veth pair) with its final names and :data:`BRIDGED_GROUP`; ``parent``'s
        link is returned."""
        _check_ifname(parent)
        _check_ifname(ifname)
        if not MAC.fullmatch(mac):
            raise _einval("a MAC address is xx:xx:xx:xx:xx:xx", mac)
        upper = _enodev_is_enoent(lambda: self._host.get_link(parent), parent)
        group = nl.attr(nl.IFLA_GROUP, nl.u32(BRIDGED_GROUP))
        common = nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname)) + group
        common += nl.attr(nl.IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        if upper.kind != "bridge":
            mode = nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.IFLA_MACVLAN_MODE, nl.u32(4)))
            linkinfo = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"macvlan"), mode)
            common += nl.attr(nl.IFLA_LINK, nl.u32(upper.index))
        else:
            # A macvlan on a bridge would not reach the bridge's own address: a veth pair does.
            peer_info = nl.ifinfo() + nl.attr(nl.IFLA_IFNAME, nl.cstr(_peer_name(ifname)))
            peer_info += group
            data = nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.VETH_INFO_PEER, peer_info))
            linkinfo = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"veth"), data)
        self._host.new_link(nl.ifinfo() + common + linkinfo, ifname)
        return upper

    def _create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        upper = self._new_bridged_link(parent, ifname, mac)
        peer = _peer_name(ifname)
        try:
            # The kernel ignores IFLA_IFALIAS in RTM_NEWLINK, hence a second message; it also
            # brings the link up, as ng_eiface's are on FreeBSD (kept up across the move).
            alias = nl.attr(nl.IFLA_IFALIAS, nl.cstr(BRIDGED_ALIAS + parent))
            self._host.set_link(
                nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP)
                + nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname))
                + alias,
                ifname,
            )
            if upper.kind == "bridge":
                enslave = nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP)
                enslave += nl.attr(nl.IFLA_IFNAME, nl.cstr(peer))
                enslave += nl.attr(nl.IFLA_MASTER, nl.u32(upper.index))
                enslave += nl.attr(nl.IFLA_IFALIAS, nl.cstr(PEER_ALIAS + ifname))
                self._host.set_link(enslave, peer)
        except BaseException:
            self._host.del_link(self._host.get_link(ifname).index, ifname)
            raise

    def _destroy_bridged_ifnet(self, ifname: str) -> None:
        _check_ifname(ifname)
        where = self._locate(ifname)
        if where is None or not (where[1].alias or "").startswith(BRIDGED_ALIAS):
            raise OSError(errno.ENOENT, "no bridged interface of vimaged", ifname)
        jid, link = where
        self._rtnl_of(jid).del_link(link.index, ifname)
        if jid != HOST_JID:
            self._prune(self._resolve(jid))

    def _list_bridged_ifnets(self) -> list[BridgedIfnet]:
        places: list[tuple[int, nl.Rtnl]] = [(HOST_JID, self._host)]
        places += [(ns.jid, self._rtnl(ns)) for ns in self._scan()]
        return [
            BridgedIfnet(name=link.name, parent=link.alias.removeprefix(BRIDGED_ALIAS), jid=jid)
            for jid, rtnl in places
            for link in rtnl.dump_links()
            if link.alias is not None and link.alias.startswith(BRIDGED_ALIAS)
        ]

    def _remove_stray_bridged_ifnets(self) -> list[BridgedIfnet]:
        """Host links in :data:`BRIDGED_GROUP` named ``ng<i>_NAME`` that never got their
        alias: a daemon was killed between creating them and naming them. Removing the
        ``ng`` end of a veth pair removes its peer too. For reconciliation, while no create
        is in flight (one is a stray between its two steps)."""
        links = self._host.dump_links()
        names = {link.index: link.name for link in links}
        strays: list[BridgedIfnet] = []
        for link in links:
            if (
                link.group != BRIDGED_GROUP
                or link.kind not in ("veth", "macvlan")
                or BRIDGED_NAME.fullmatch(link.name) is None
                or (link.alias or "").startswith(BRIDGED_ALIAS)
            ):
                continue
            parent = names.get(link.link or 0, "") if link.kind == "macvlan" else ""
            try:
                self._host.del_link(link.index, link.name)
            except OSError as exc:
                if exc.errno != errno.ENODEV:  # gone meanwhile (its veth peer went first)
                    raise
                continue
            strays.append(BridgedIfnet(name=link.name, parent=parent, jid=HOST_JID))
        return strays

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise PlatformError("the linux platform needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
        if not os.path.exists("/proc/self/ns/net"):
            raise PlatformError("this kernel has no network namespaces (CONFIG_NET_NS)")
        for tool in ("nsenter", "chroot"):
            if shutil.which(tool) is None:
                raise PlatformError(f"{tool} not found: install util-linux and coreutils")

        def try_macvlan() -> None:
            rtnl = nl.Rtnl()
            try:
                veth = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"veth"))
                rtnl.new_link(nl.ifinfo() + nl.attr(nl.IFLA_IFNAME, b"pf0\0") + veth, "veth")
                parent = rtnl.get_link("pf0").index
                macvlan = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"macvlan"))
                body = nl.ifinfo() + nl.attr(nl.IFLA_LINK, nl.u32(parent)) + macvlan
                rtnl.new_link(body, "macvlan")
            finally:
                rtnl.close()  # the throwaway namespace dies with its last socket and thread

        try:
            kernel.in_new_netns("preflight", try_macvlan)
        except OSError as exc:
            raise PlatformError(
                f"cannot create veth/macvlan links ({exc.strerror}): load the veth and"
                " macvlan kernel modules (modprobe veth macvlan)"
            ) from exc

    def _aclose(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            known, self._known = list(self._known.values()), {}
        for ns in known:
            ns.close()
        self._host.close()
        os.close(self._host_fd)

    # -- the Platform protocol -------------------------------------------------------------

    async def preflight(self) -> None:
        await trio.to_thread.run_sync(self._preflight)

    async def host_uuid(self) -> str:
        return await trio.to_thread.run_sync(_read_host_uuid)

    async def boot_id(self) -> str:
        def read() -> str:
            with open(BOOT_ID_PATH, encoding="ascii") as f:
                return f.read().strip()

        return await trio.to_thread.run_sync(read)

    async def create_jail(self, spec: JailSpec) -> int:
        """Create the namespace ``<prefix>NAME`` (lo up) and return its inode as the jid.

        ``hostname``, ``devfs_ruleset`` and ``parameters`` have no meaning for a network
        namespace and are ignored; a ``path`` other than ``/`` becomes the chroot of
        :meth:`exec_in_jail`. EEXIST if the name is taken. Nothing is left on failure.
        """
        return await trio.to_thread.run_sync(self._create_jail, spec)

    async def remove_jail(self, jid: int) -> None:
        """Delete the namespace's name; a namespace still holding a process or an interface
        stays reachable, pinned under the state dir, and is listed dying until it is empty."""
        await trio.to_thread.run_sync(self._remove_jail, jid)

    async def list_jails(self) -> list[JailInfo]:
        return await trio.to_thread.run_sync(self._list_jails)

    async def exec_in_jail(self, jid: int, command: str, *, output: int | None = None) -> int:
        """Run ``/bin/sh -c command`` in the namespace (chrooted to the vimage's path).

        Cancellation: the command's whole process group is killed with SIGKILL.
        """
        ns = await trio.to_thread.run_sync(lambda: self._resolve(jid, alive=True))
        root = await trio.to_thread.run_sync(self._rootdir, jid)
        argv = ["nsenter", f"--net={ns.path}", "--"]
        if root is not None:
            argv += ["chroot", root]  # chroot(8) also changes the directory into the root
        argv += ["/bin/sh", "-c", command]
        done = await trio.run_process(
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            deliver_cancel=kill_process_group,
        )
        return exit_status(done.returncode)

    async def exec_on_host(
        self, command: str, *, env: Mapping[str, str], output: int | None = None
    ) -> int:
        return await run_host_command(command, env=env, output=output)

    async def list_ifnets(self, jid: int = HOST_JID) -> list[IfnetInfo]:
        return await trio.to_thread.run_sync(self._list_ifnets, jid)

    async def locate_ifnet(self, ifname: str) -> int | None:
        """``HOST_JID``, the jid of the namespace of ours holding ``ifname`` (dying ones too),
        or None."""
        where = await trio.to_thread.run_sync(self._locate, ifname)
        return None if where is None else where[0]

    async def move_ifnet(self, ifname: str, jid: int) -> None:
        await trio.to_thread.run_sync(self._move_ifnet, ifname, jid)

    async def reclaim_ifnet(self, ifname: str, jid: int) -> None:
        """Move ``ifname`` from the vimage back to the daemon's (host) namespace."""
        await trio.to_thread.run_sync(self._reclaim_ifnet, ifname, jid)

    async def rename_ifnet(self, ifname: str, newname: str) -> None:
        await trio.to_thread.run_sync(self._rename_ifnet, ifname, newname)

    async def set_ifnet_up(self, ifname: str) -> None:
        await trio.to_thread.run_sync(self._set_ifnet_up, ifname)

    async def create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        """A macvlan (mode bridge) on ``parent``; a veth pair enslaved to ``parent`` when it is
        a Linux bridge. EEXIST if ``ifname`` exists on the host."""
        await trio.to_thread.run_sync(self._create_bridged_ifnet, parent, ifname, mac)

    async def destroy_bridged_ifnet(self, ifname: str) -> None:
        await trio.to_thread.run_sync(self._destroy_bridged_ifnet, ifname)

    async def release_bridge(self, parent: str) -> bool:
        """Always False: macvlans and veth pairs need no per-parent bridge of ours."""
        return False

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        return await trio.to_thread.run_sync(self._list_bridged_ifnets)

    async def remove_stray_bridged_ifnets(self) -> list[BridgedIfnet]:
        """Bridged links a killed daemon left without their alias, removed (see
        :data:`BRIDGED_GROUP`); the parent is empty for a veth pair, never enslaved."""
        return await trio.to_thread.run_sync(self._remove_stray_bridged_ifnets)

    async def list_bridges(self) -> list[BridgeInfo]:
        """No bridge of vimaged's own here: a macvlan hangs on its parent directly."""
        return []

    async def bridged_ifnet_stats(self, ifname: str) -> LinkCounters:
        """EOPNOTSUPP: a macvlan or veth has no bridge link, so no ng_bridge counters (no
        learning failures or loop detections to report); health does without them."""
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), ifname)

    # -- interface arrival and departure (platforms/linux_ifwatch.py) ----------------------
    def watch_ifnets(self) -> AbstractAsyncContextManager[AsyncIterator[IfnetEvent]]:
        return open_reconnecting(
            partial(open_rtnl_link_source, self._host_fd), what="rtnetlink RTNLGRP_LINK"
        )

    # -- end of interface arrival and departure ---------------------------------------------

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._aclose)

    # -- CNI attachments (vimaged-cni): the sandbox is the netns path CNI_NETNS names --------

    def _refused_namespaces(self) -> set[int]:
        with self._lock:
            return {os.fstat(self._host_fd).st_ino, *self._known}

    @staticmethod
    def _ours(link: nl.Link) -> bool:
        return (link.alias or "").startswith(BRIDGED_ALIAS)

    def _create_in_sandbox(
        self,
        parent: str,
        ifname: str,
        mac: str,
        sandbox: str,
        newname: str,
        mtu: int | None,
        addresses: Sequence[str],
        routes: Sequence[tuple[str, str | None]],
    ) -> None:
        for name in (parent, ifname, newname):
            _check_ifname(name)
        if not MAC.fullmatch(mac):
            raise _einval("a MAC address is xx:xx:xx:xx:xx:xx", mac)
        upper = _enodev_is_enoent(lambda: self._host.get_link(parent), parent)
        with linux_sandbox.open_sandbox(sandbox, self._nsfs_dev, self._refused_namespaces()) as fd:
            try:
                if upper.kind == "bridge":  # a veth pair, made on the host, then moved
                    self._create_bridged_ifnet(parent, ifname, mac)
                    linux_sandbox.attach(self._host, fd, sandbox, ifname, newname,
                                         owned=self._ours, mtu=mtu, addresses=addresses,
                                         routes=routes)  # fmt: skip
                else:
                    linux_sandbox.create(self._host, fd, sandbox, upper.index, newname, mac,
                                         BRIDGED_ALIAS + parent, mtu=mtu, addresses=addresses,
                                         routes=routes)  # fmt: skip
            except ValueError as exc:
                raise _einval(str(exc), sandbox) from None

    def _sandbox_ifnet(self, sandbox: str, ifname: str) -> IfnetInfo | None:
        _check_ifname(ifname)
        with linux_sandbox.open_sandbox(sandbox, self._nsfs_dev, self._refused_namespaces()) as fd:
            return linux_sandbox.inspect(fd, sandbox, ifname, self._ours)

    def _detach_from_sandbox(self, sandbox: str, ifname: str, mac: str) -> None:
        _check_ifname(ifname)
        with linux_sandbox.open_sandbox(sandbox, self._nsfs_dev, self._refused_namespaces()) as fd:
            linux_sandbox.detach(fd, sandbox, ifname, mac, self._ours)

    async def create_in_sandbox(
        self,
        parent: str,
        ifname: str,
        mac: str,
        sandbox: str,
        newname: str,
        *,
        mtu: int | None,
        addresses: Sequence[str],
        routes: Sequence[tuple[str, str | None]],
    ) -> None:
        await trio.to_thread.run_sync(
            self._create_in_sandbox, parent, ifname, mac, sandbox, newname, mtu, addresses, routes
        )

    async def sandbox_ifnet(self, sandbox: str, ifname: str) -> IfnetInfo | None:
        return await trio.to_thread.run_sync(self._sandbox_ifnet, sandbox, ifname)

    async def detach_from_sandbox(self, sandbox: str, ifname: str, mac: str) -> None:
        await trio.to_thread.run_sync(self._detach_from_sandbox, sandbox, ifname, mac)


def _mac_text(link: nl.Link) -> str | None:
    if link.type == ARPHRD_LOOPBACK or link.address is None or len(link.address) != 6:
        return None
    return link.address.hex(":")


def _peer_name(ifname: str) -> str:
    """The host end of a bridged veth: derived from ``ifname`` so it is found without state."""
    return "vp" + hashlib.blake2s(ifname.encode()).hexdigest()[:12]


def _enodev_is_enoent(call: Callable[[], T], ifname: str) -> T:
    try:
        return call()
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise _enoent(ifname) from None
        raise


BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
"""A random UUID the kernel makes at each boot (random(4), ``boot_id``)."""


def _read_host_uuid() -> str:
    for path in ("/etc/machine-id", "/sys/class/dmi/id/product_uuid"):
        try:
            with open(path, encoding="ascii") as f:
                return str(uuid.UUID(f.read().strip()))
        except (OSError, ValueError):
            continue
    raise OSError(errno.ENOENT, "no /etc/machine-id or product_uuid", "/etc/machine-id")


def create(**options: object) -> LinuxPlatform:
    """The linux platform. Options: ``host_netns`` (name or path of the namespace that plays
    the host; default the daemon's own), ``netns_prefix`` (default ``vimage-``) and
    ``state_dir`` (default ``/run/vimaged``). Other options are ignored."""
    host_netns = options.get("host_netns")
    return LinuxPlatform(
        host_netns=None if host_netns is None else str(host_netns),
        prefix=str(options.get("netns_prefix", DEFAULT_PREFIX)),
        state_dir=str(options.get("state_dir", DEFAULT_STATE_DIR)),
    )
