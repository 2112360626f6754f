"""Platform layer: vimages as Linux network namespaces (``ip netns`` compatible).

A vimage ``NAME`` is the namespace ``/run/netns/<prefix>NAME`` (prefix ``vimage-`` by default),
so ``ip netns exec vimage-NAME ...`` works like jexec. Its "jid" is the namespace's inode
number, stable for the namespace's lifetime and found again by any later process with
``stat``. Bridged interfaces are macvlans in bridge mode (a veth pair when the parent is a
Linux bridge), recognised by their ``ifalias``. Links are driven over rtnetlink sockets
created inside each namespace; this module owns the namespaces, :mod:`linux_links` the
links in them. Nothing here forks except :meth:`exec_in_jail`.
See docs/linux.md for the mechanism and its trade-offs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
import threading
from functools import partial
from typing import TYPE_CHECKING

import trio

from vimaged import names, statedir
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
from vimaged.platforms import linux_links as links
from vimaged.platforms import linux_netlink as nl
from vimaged.platforms.host_command import exit_status, kill_process_group, run_host_command
from vimaged.platforms.ifnet_events import open_reconnecting
from vimaged.platforms.linux_ifwatch import open_rtnl_link_source

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from contextlib import AbstractAsyncContextManager

    from vimaged.platforms import JailSpec, SandboxIfnet
    from vimaged.platforms.ifnet_events import IfnetEvent

DEFAULT_PREFIX = "vimage-"
DEFAULT_STATE_DIR = "/run/vimaged"


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
            raise links.einval("the namespace prefix must be a non-empty file name part", prefix)
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
        found = self._rtnl(ns).dump_links()
        return any(link.type != links.ARPHRD_LOOPBACK for link in found) or self._has_processes(
            ns.jid
        )

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
            raise links.einval("a vimage name is a letter then up to 30 of [A-Za-z0-9_]", spec.name)
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
        named = links.BRIDGED_NAME.fullmatch(ifname)
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
        return links.ifnets(self._rtnl_of(jid))

    def _move_ifnet(self, ifname: str, jid: int) -> None:
        links.check_ifname(ifname)
        ns = self._resolve(jid, alive=True)
        links.move(self._host, ifname, ns.fd, self._rtnl(ns))

    def _reclaim_ifnet(self, ifname: str, jid: int) -> None:
        links.check_ifname(ifname)
        ns = self._resolve(jid)
        links.move(self._rtnl(ns), ifname, self._host_fd, self._host)
        self._prune(ns)

    def _new_bridged_link(self, parent: str, ifname: str, mac: str) -> nl.Link:
        """The first step of a create alone: what a daemon killed half-way leaves (tests)."""
        return links.new_bridged_link(self._host, parent, ifname, mac)

    def _destroy_bridged_ifnet(self, ifname: str) -> None:
        links.check_ifname(ifname)
        where = self._locate(ifname)
        if where is None or not (where[1].alias or "").startswith(links.BRIDGED_ALIAS):
            raise OSError(errno.ENOENT, "no bridged interface of vimaged", ifname)
        jid, link = where
        self._rtnl_of(jid).del_link(link.index, ifname)
        if jid != HOST_JID:
            self._prune(self._resolve(jid))

    def _list_bridged_ifnets(self) -> list[BridgedIfnet]:
        places: list[tuple[int, nl.Rtnl]] = [(HOST_JID, self._host)]
        places += [(ns.jid, self._rtnl(ns)) for ns in self._scan()]
        return links.bridged_ifnets(places)

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
        await trio.to_thread.run_sync(links.preflight)

    async def host_uuid(self) -> str:
        return await trio.to_thread.run_sync(kernel.read_host_uuid)

    async def boot_id(self) -> str:
        return await trio.to_thread.run_sync(kernel.read_boot_id)

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

    async def jail_info(self, jid: int) -> JailInfo | None:
        # The listing prunes namespaces that went away; a namespace per vimage is cheap to scan.
        return next((j for j in await self.list_jails() if j.jid == jid), None)

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
        await trio.to_thread.run_sync(links.rename, self._host, ifname, newname)

    async def set_ifnet_up(self, ifname: str) -> None:
        """``ip link set IF up`` on the host: for tests and tools, not on ``Platform``."""
        await trio.to_thread.run_sync(links.set_up, self._host, ifname)

    async def create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        """A macvlan (mode bridge) on ``parent``; a veth pair enslaved to ``parent`` when it is
        a Linux bridge. EEXIST if ``ifname`` exists on the host."""
        await trio.to_thread.run_sync(links.create_bridged, self._host, parent, ifname, mac)

    async def destroy_bridged_ifnet(self, ifname: str) -> str | None:
        """None: macvlans and veth pairs need no per-parent bridge of ours to release."""
        await trio.to_thread.run_sync(self._destroy_bridged_ifnet, ifname)
        return None

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        return await trio.to_thread.run_sync(self._list_bridged_ifnets)

    async def reconcile_strays(self) -> list[BridgedIfnet]:
        """Bridged links a killed daemon left without their alias, removed (see
        :data:`BRIDGED_GROUP`); the parent is empty for a veth pair, never enslaved."""
        return await trio.to_thread.run_sync(links.remove_strays, self._host)

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

    async def create_in_sandbox(self, want: SandboxIfnet) -> None:
        refused = self._refused_namespaces()
        await trio.to_thread.run_sync(
            linux_sandbox.create_in, self._host, self._nsfs_dev, refused, want
        )

    async def sandbox_ifnet(self, sandbox: str, ifname: str) -> IfnetInfo | None:
        return await trio.to_thread.run_sync(
            linux_sandbox.sandbox_ifnet, self._nsfs_dev, self._refused_namespaces(), sandbox, ifname
        )

    async def detach_from_sandbox(self, sandbox: str, ifname: str, mac: str) -> None:
        refused = self._refused_namespaces()
        await trio.to_thread.run_sync(
            linux_sandbox.detach_from, self._nsfs_dev, refused, sandbox, ifname, mac
        )


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
