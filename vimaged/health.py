"""Health of running vimages, and restarts by policy.

Each running vimage is polled every ``_health_interval``: its jail must be alive (not gone, not
dying), its interfaces present and up inside it, each bridged one wired to its parent's bridge
and that parent up on the host,
no NIC of it pending return, and the optional ``_health_cmd`` must exit 0 within
``_health_timeout``. The result is ``ok``, ``degraded``
(something is off but the vimage runs) or ``failed`` (the jail is gone, or the command failed
``_health_retries`` times in a row after ``_health_start_period``).

On ``failed`` it calls its ``on_failed`` callback (restarts.py decides what follows). It
imports no supervisor: it is given the platform, the return watcher and the event hub.

A platform that cannot be reached (``OSError``, such as the sim host's lost connection) makes
the health ``unknown``, never ``failed``: nothing is restarted for it. Once it is reachable
again the supervisor reconciles, then calls :meth:`HealthMonitor.recheck` to check every
vimage at once.
"""

from __future__ import annotations

import errno as errnos
import math
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged.command_output import CommandOutput
from vimaged.platforms import HOST_JID
from vimaged.protocol import LinkStats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    from vimaged.events import EventHub
    from vimaged.platforms import Platform
    from vimaged.protocol import HealthState
    from vimaged.vimage import Vimage
    from vimaged.vnets import ReturnWatcher

    OnFailed = Callable[[Vimage, str | None], Awaitable[None]]

log = structlog.get_logger()

WIRING_MAX_AGE = 2.0
WIRING_SHARE = 20
"""A wiring listing is kept at least this many times as long as it took: its cost grows
with the graph, so a fixed age made it a growing share of the daemon (6% at 10,000)."""


class HealthMonitor:
    def __init__(
        self,
        platform: Platform,
        watcher: ReturnWatcher,
        events: EventHub,
        on_failed: OnFailed | None = None,
    ) -> None:
        self._platform = platform
        self._watcher = watcher
        self._events = events
        self.on_failed = on_failed
        """Called (in the monitor's nursery) for a vimage found ``failed``, with the reason."""
        self._nursery: trio.Nursery | None = None
        self._polls: dict[str, trio.CancelScope] = {}
        self._waiting: list[Vimage] = []
        self._wiring: dict[str, str] = {}
        self.bridge_modes: dict[str, str] = {}
        """Parent → wiring of its bridge (``classic``/``uplink``), as of the last check; an
        adopted bridge keeps the mode it was built with until it is released."""
        self._wiring_at = -math.inf
        self._wiring_max_age = WIRING_MAX_AGE
        self._refreshing: trio.Event | None = None
        """Set when the wiring listing in flight is done; ``None`` when none is."""
        self._wake = trio.Event()
        """Set to end every poll's wait at once (the platform came back)."""
        self._stopping: Counter[str] = Counter()
        """Vimages a stop request holds (:meth:`stop_begun`): their polls skip the checks."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for v in self._waiting:
                self.watch(v)
            self._waiting.clear()
            task_status.started()
            await trio.sleep_forever()

    def watch(self, v: Vimage, *, checked: bool = False) -> None:
        """Start polling a vimage that just became running. ``checked``: :meth:`first_check`
        just ran, so the first poll waits an interval (unless a ``health_cmd`` is still to
        give its verdict)."""
        if self._nursery is None:
            self._waiting.append(v)
            return
        self.unwatch(v)
        scope = trio.CancelScope()
        self._polls[v.name] = scope
        wait = checked and not v.cfg.health_cmd and v.health != "failed"
        self._nursery.start_soon(self._poll, v, scope, wait)

    async def first_check(self, v: Vimage) -> None:
        """The checks at the end of a start, without the ``health_cmd``, so that ``list``
        shows addresses and a verdict at once instead of after ``_health_interval``."""
        try:
            health, reason, _ = await self.check(v, run_cmd=False)
        except OSError as exc:
            health, reason = "unknown", _describe(exc)
        if health == "failed":  # the jail is already gone: the first poll acts on it
            health, reason = "unknown", None
        self._set(v, health, reason)

    def unwatch(self, v: Vimage) -> None:
        scope = self._polls.pop(v.name, None)
        if scope is not None:
            scope.cancel()

    @contextmanager
    def stop_begun(self, names: Iterable[str]) -> Iterator[None]:
        """The block stops ``names``: no poll checks them meanwhile, while they queue for
        their turn. Polls grow with the vimages running, so checking what is about to go
        made ``stop --all`` cost more per vimage as vimages grew. A stop that does not
        happen (refused, cancelled) lets their polls go on."""
        held = list(names)
        self._stopping.update(held)
        try:
            yield
        finally:
            self._stopping.subtract(held)
            for name in held:
                if self._stopping[name] <= 0:
                    del self._stopping[name]

    def recheck(self, reason: str) -> None:
        """Look at every vimage now (the platform was lost and found): a jail that went with
        it is then ``failed`` (cleaned up and restarted by policy) without waiting."""
        log.info("health.recheck", reason=reason, vimages=len(self._polls))
        self._wiring_at = -math.inf
        self._wake.set()
        self._wake = trio.Event()

    async def _poll(self, v: Vimage, scope: trio.CancelScope, wait: bool = False) -> None:
        # Spawned by whichever request started the vimage; its log lines are not that request's.
        structlog.contextvars.clear_contextvars()
        with scope:
            started = trio.current_time()
            if wait:
                with trio.move_on_after(v.cfg.health_interval):
                    await self._wake.wait()  # a recheck (a parent gone) does not wait
            cmd_failures = 0
            while True:
                if v.name in self._stopping:  # its stop has begun: not worth a look
                    with trio.move_on_after(v.cfg.health_interval):
                        await self._wake.wait()
                    continue
                try:
                    health, reason, cmd_failed = await self.check(v)
                except OSError as exc:
                    # The jail went away between two looks (jls, then jail_attach): the next
                    # round sees it gone. A poll must never take the daemon down.
                    health, reason, cmd_failed = "unknown", _describe(exc), False
                in_start_period = trio.current_time() - started < v.cfg.health_start_period
                if cmd_failed and not in_start_period:
                    cmd_failures += 1
                elif not cmd_failed:
                    cmd_failures = 0
                if health == "failed" and reason != "jail gone":
                    health = "failed" if cmd_failures >= v.cfg.health_retries else "degraded"
                if cmd_failed and in_start_period:
                    health = "unknown"
                self._set(v, health, reason)
                if health == "failed":
                    self._polls.pop(v.name, None)
                    if self.on_failed is not None:
                        assert self._nursery is not None
                        self._nursery.start_soon(self.on_failed, v, reason)
                    return
                with trio.move_on_after(v.cfg.health_interval):
                    await self._wake.wait()

    def _set(self, v: Vimage, health: HealthState, reason: str | None) -> None:
        if health != v.health:
            self._events.emit(f"health.{health}", v.name, reason=reason)
        v.health, v.health_reason = health, reason

    async def check(
        self, v: Vimage, *, run_cmd: bool = True
    ) -> tuple[HealthState, str | None, bool]:
        """One round of checks: ``(health, reason, health_cmd failed)``. Without ``run_cmd``,
        a vimage with a ``health_cmd`` whose other checks pass is ``unknown``."""
        jid = v.jid
        platform = self._platform
        if jid is None:
            return "unknown", None, False
        jail = await platform.jail_info(jid)
        if jail is None or jail.dying:
            return "failed", "jail gone", False
        problems: list[str] = []
        present = {i.name: i for i in await platform.list_ifnets(jid)}
        v.addresses = {name: ifnet.addresses for name, ifnet in present.items()}  # for list
        wiring = await self._bridged_parents() if v.cfg.bridges else {}
        if v.cfg.bridges:
            # ng_ether_rcv_lower drops what the bridge sends to a parent that is not up
            # (ENETDOWN, sys/netgraph/ng_ether.c), and a down driver delivers nothing in
            host = {i.name: i for i in await platform.list_ifnets(HOST_JID)}
            for parent in dict.fromkeys(b.parent for b in v.cfg.bridges):
                parent_ifnet = host.get(parent)
                if parent_ifnet is None:
                    problems.append(f"parent {parent} is gone")  # re-wired on return
                elif not parent_ifnet.up:
                    problems.append(f"parent {parent} is down")
        for b in v.cfg.bridges:
            ifnet = present.get(b.ifname)
            if ifnet is None:
                problems.append(f"{b.ifname} missing")
            elif not ifnet.up:
                problems.append(f"{b.ifname} down")
            elif wiring.get(b.ifname, b.parent) != b.parent:  # not listed yet: next round
                problems.append(f"{b.ifname} not bridged to {b.parent}")
            if ifnet is not None:
                problems.extend(await self._data_plane(v, b.ifname))
        watcher = self._watcher
        for nic in v.cfg.vnets:
            pending = watcher.pending.get(nic)
            identity = watcher.identities.get(nic)
            if pending is not None:
                problems.append(f"{nic} pending return")
            elif nic in present:
                watcher.remember(nic, present[nic].mac)  # after a daemon restart: learn it
            else:
                renamed = [n for n, i in present.items() if identity and i.mac == identity.mac]
                if len(renamed) == 1:
                    problems.append(f"{nic} renamed to {renamed[0]} inside")
                else:
                    problems.append(f"{nic} missing")
        if v.cfg.health_cmd and not run_cmd:
            return (
                ("degraded", ", ".join(problems), False) if problems else ("unknown", None, False)
            )
        if v.cfg.health_cmd:
            status: int | None = None
            with CommandOutput.capture() as output:
                with trio.move_on_after(v.cfg.health_timeout):
                    status = await platform.exec_in_jail(jid, v.cfg.health_cmd, output=output.fd)
                if status != 0:
                    why = "timed out" if status is None else f"exited {status}"
                    return "failed", f"health_cmd {why}{output.said()}", True
        if problems:
            return "degraded", ", ".join(problems), False
        return "ok", None, False

    async def _data_plane(self, v: Vimage, ifname: str) -> list[str]:
        """Read the link counters of a bridged interface and say what grew since the last
        check: failed MAC learning (memoryFailures: the jail-to-jail failure of uplink
        wiring, issue 15) and loop protection (loopDetects, loopDrops)."""
        try:
            counters = await self._platform.bridged_ifnet_stats(ifname)
        except OSError as exc:
            # EOPNOTSUPP: no bridge link on this platform; ENOENT/ENOTCONN: the checks above
            # already say it is missing or cut from its bridge
            if exc.errno not in (errnos.EOPNOTSUPP, errnos.ENOENT, errnos.ENOTCONN):
                log.info("health.counters_unreadable", vimage=v.name, ifname=ifname,
                         error=_describe(exc))  # fmt: skip
            v.link_stats.pop(ifname, None)
            return []
        now = LinkStats(
            recv_packets=counters.recvPackets,
            xmit_packets=counters.xmitPackets,
            memory_failures=counters.memoryFailures,
            loop_drops=counters.loopDrops,
            loop_detects=counters.loopDetects,
        )
        before = v.link_stats.get(ifname)
        v.link_stats[ifname] = now
        if before is None or now.recv_packets < before.recv_packets:
            return []  # first look, or the bridge was rebuilt: counters start over
        problems = []
        if now.memory_failures > before.memory_failures:
            grew = now.memory_failures - before.memory_failures
            problems.append(f"{ifname}: bridge failed to learn {grew} times (memoryFailures)")
        if now.loop_detects > before.loop_detects:
            problems.append(f"{ifname}: loop detected (loopDetects)")
        elif now.loop_drops > before.loop_drops:
            grew = now.loop_drops - before.loop_drops
            problems.append(f"{ifname}: {grew} frames dropped by loop protection (loopDrops)")
        return problems

    async def _bridged_parents(self) -> dict[str, str]:
        """Which parent each bridged interface of ours hangs on (its netgraph wiring on
        FreeBSD). The listing walks the whole graph, so one serves every vimage polled within
        :data:`WIRING_MAX_AGE`; an interface created since is checked by a later round."""
        now = trio.current_time()
        if now - self._wiring_at <= self._wiring_max_age:
            return self._wiring
        if self._refreshing is not None:
            # One listing at a time: the checks that come meanwhile wait for it (or, if it
            # fails, use the previous picture), instead of each listing the whole graph.
            await self._refreshing.wait()
            return self._wiring
        done = self._refreshing = trio.Event()
        try:
            listed = await self._platform.list_bridged_ifnets()
            self._wiring = {b.name: b.parent for b in listed}
            self.bridge_modes = {b.parent: b.mode for b in await self._platform.list_bridges()}
            self._wiring_at = now
            took = trio.current_time() - now
            self._wiring_max_age = max(WIRING_MAX_AGE, WIRING_SHARE * took)
        finally:
            self._refreshing = None
            done.set()
        return self._wiring


def _describe(exc: OSError) -> str:
    name = errnos.errorcode.get(exc.errno or 0, exc.errno)
    if exc.errno in _UNREACHABLE:
        return f"platform unreachable: {name}"
    return f"check failed: {name}"


_UNREACHABLE = frozenset({errnos.ECONNRESET, errnos.ECONNREFUSED, errnos.ENOTCONN, errnos.EPIPE})
