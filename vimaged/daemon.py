"""The daemon's lifetime: nurseries, signals and the shutdown order (hypercorn's).

SIGHUP re-reads rc.conf. SIGTERM and SIGINT stop the daemon, not the vimages: they keep
running and the next daemon adopts them (an upgrade restart). ``vimagectl stop --all`` stops
the vimages; rc.d does that at system shutdown.
"""

from __future__ import annotations

import contextlib
import os
import signal
from functools import partial
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged import __version__, statedir
from vimaged.attachments import Attachments
from vimaged.dispatch import Dispatcher
from vimaged.errors import ConfigError
from vimaged.events import EventHub
from vimaged.host_nics import host_nic_warnings
from vimaged.server import open_control_listener, serve_control
from vimaged.state import Journal
from vimaged.supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from vimaged.config import Config
    from vimaged.platforms import Platform

log = structlog.get_logger()


GRACE = 10.0
"""Seconds in-flight requests may take to finish once the daemon is told to stop."""


async def run(
    cfg: Config,
    platform: Platform,
    *,
    socket_path: str,
    state_dir: str,
    config_paths: Sequence[str] | None,
) -> None:
    # One daemon per state dir and per socket, decided before the journal is read or the
    # kernel touched: a second one must not adopt, reconcile or health-check anything.
    locks = await trio.to_thread.run_sync(_lock, state_dir, socket_path)
    try:
        await _run_locked(
            cfg, platform, socket_path=socket_path, state_dir=state_dir, config_paths=config_paths
        )
    finally:
        for held in locks:
            held.close()


def _lock(state_dir: str, socket_path: str) -> list[statedir.HeldLock]:
    """Take the state dir's lock, then the socket's (``SOCKET.lock`` beside it).

    Raises:
        StateDirError: the state dir is not trusted; DaemonRunningError: another daemon has it.
    """
    state_dir = statedir.open_state_dir(state_dir)
    holder = f"pid {os.getpid()}, socket {socket_path}, state dir {state_dir}"
    held = [
        statedir.acquire_lock(
            os.path.join(state_dir, statedir.LOCK_NAME), holder, what="state dir", subject=state_dir
        )
    ]
    try:
        held.append(
            statedir.acquire_lock(f"{socket_path}.lock", holder, what="socket", subject=socket_path)
        )
    except BaseException:
        held[0].close()
        raise
    return held


# run's own parameters again: this is run's body with the locks held (kept apart so the
# locks' try/finally does not indent the whole daemon)
async def _run_locked(
    cfg: Config,
    platform: Platform,
    *,
    socket_path: str,
    state_dir: str,
    config_paths: Sequence[str] | None,
) -> None:
    journal = await Journal.open(state_dir)
    try:
        await platform.preflight()
        journal.boot_id = boot_id = await platform.boot_id()
        boot = await _first_since_boot(journal, boot_id, enabled=cfg.enable)
        held = {r.key for r in await journal.resources() if r.kind == "vnet"}
        for line in await host_nic_warnings(cfg, platform, held):  # they wait (arrivals.py)
            log.warning("config.nic_absent", problem=line)
        sup = Supervisor(cfg, platform, journal, EventHub())
        dispatcher = Dispatcher(sup, config_paths)
        attachments = await Attachments.open(state_dir, sup, platform)  # vimaged-cni
        dispatcher.attachments = attachments
        # Caught from here on and queued until the daemon is ready: a SIGHUP that came once the
        # socket answered, but before a handler was in place, used to end the daemon.
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as received:
            async with (
                trio.open_nursery() as handlers
            ):  # connection handlers outlive the accept loop
                async with trio.open_nursery() as main:
                    await main.start(partial(sup.run, boot=boot))  # reconciled when this returns
                    await attachments.reconcile()
                    listener = await open_control_listener(socket_path, group=cfg.group)
                    socket_inode = os.stat(socket_path).st_ino
                    await main.start(
                        partial(
                            serve_control,
                            listener,
                            dispatcher,
                            handler_nursery=handlers,
                            request_times=dispatcher.request_times,
                        )
                    )
                    if boot:
                        await journal.set_autostarted_boot(boot_id)
                    log.info(
                        "daemon.ready",
                        socket=socket_path,
                        platform=platform.name,
                        version=__version__,
                    )
                    await _wait_for_stop_signal(received, dispatcher)
                    sup.stopping = True  # new mutations get ShuttingDownError
                    main.cancel_scope.cancel()
                handlers.cancel_scope.deadline = trio.current_time() + GRACE
        _unlink_own_socket(socket_path, socket_inode)
        with trio.CancelScope(shield=True):
            await attachments.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await platform.aclose()
            await journal.aclose()
    log.info("daemon.stopped")


async def _first_since_boot(journal: Journal, boot_id: str, *, enabled: bool) -> bool:
    """Whether this daemon is the first since the host booted (it then runs vimage_enable's
    autostart): the boot recorded in the state dir by the last one that did is not this one."""
    last = await journal.autostarted_boot()
    first = last != boot_id
    if not enabled:
        log.info("autostart.skipped", reason="vimage_enable is off", boot_id=boot_id)
    elif first:
        log.warning(
            "autostart.running",
            reason="first daemon since boot" if last else "no autostart recorded in the state dir",
            boot_id=boot_id,
            last_boot_id=last,
        )
    else:
        log.warning(
            "autostart.skipped",
            reason="already autostarted in this boot: restoring the recorded intent instead",
            boot_id=boot_id,
        )
    return first


async def _wait_for_stop_signal(signals: AsyncIterator[int], dispatcher: Dispatcher) -> None:
    """Reload on SIGHUP until SIGTERM or SIGINT."""
    async for signum in signals:
        if signum != signal.SIGHUP:
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            return
        try:
            reloaded = await dispatcher.reload()
        except ConfigError as exc:
            log.error("config.reload_failed", error=str(exc))
        else:
            log.info("config.reloaded", added=reloaded.added, removed=reloaded.removed)


def _unlink_own_socket(path: str, inode: int) -> None:
    """Remove the socket file only if it is still the one this daemon bound: a newer daemon
    may have replaced it."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)
