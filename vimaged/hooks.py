"""A vimage's commands: ``exec_start``/``exec_stop`` inside its jail, and the host hooks.

Host hooks (``vimage_NAME_exec_prestart``, ``_poststart``, ``_prestop``, ``_poststop``) run on
the host with ``VIMAGE_NAME``, ``VIMAGE_JID``, ``VIMAGE_PATH`` and ``VIMAGE_INTERFACES`` in their
environment, as jail(8)'s do. Start-side commands fail the start; stop-side ones are logged
and never stop a teardown (NICs must come home). Output goes to ``_exec_consolelog`` when set.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged.command_output import CommandOutput
from vimaged.errors import OperationFailedError, error_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from vimaged.config import VimageConfig
    from vimaged.events import EventHub
    from vimaged.platforms import Platform

log = structlog.get_logger()


class Hooks:
    def __init__(self, platform: Platform, events: EventHub) -> None:
        self._platform = platform
        self._events = events

    async def exec_start(self, cfg: VimageConfig, jid: int) -> None:
        await run_command(
            cfg,
            "exec_start",
            cfg.exec_start,
            partial(self._platform.exec_in_jail, jid, cfg.exec_start),
            limit=cfg.exec_timeout,
            limit_variable=f"vimage_{cfg.name}_exec_timeout",
        )

    async def exec_stop(self, cfg: VimageConfig, jid: int) -> None:
        """``exec_stop`` within ``stop_timeout``; its failures are logged, never fatal: the
        NICs and interfaces inside still have to come home."""
        variable = f"vimage_{cfg.name}_exec_consolelog"
        try:
            with CommandOutput.console_log(cfg.exec_consolelog, variable) as output:
                with trio.move_on_after(cfg.stop_timeout) as timeout:
                    status = await self._platform.exec_in_jail(jid, cfg.exec_stop, output=output.fd)
                if timeout.cancelled_caught:
                    log.warning(
                        "vimage.exec_stop_timed_out",
                        vimage=cfg.name,
                        timeout=cfg.stop_timeout,
                        said=output.last_line(),
                    )
                elif status != 0:
                    log.warning(
                        "vimage.exec_stop_failed",
                        vimage=cfg.name,
                        status=status,
                        said=output.last_line(),
                    )
        except (OSError, OperationFailedError) as exc:
            # the jail vanished meanwhile, or the console log cannot be opened
            log.warning("vimage.exec_stop_failed", vimage=cfg.name, error=error_text(exc))

    async def host(self, cfg: VimageConfig, hook: str, command: str, jid: int | None) -> None:
        """``vimage_NAME_exec_<hook>`` on the host, within ``exec_timeout`` for the start
        side and ``stop_timeout`` for the stop side.

        Raises:
            OperationFailedError: it failed or ran too long; ends with its last line.
        """
        stop_side = hook in ("prestop", "poststop")
        env = {
            "VIMAGE_NAME": cfg.name,
            "VIMAGE_JID": "" if jid is None else str(jid),
            "VIMAGE_PATH": cfg.rootdir,
            "VIMAGE_INTERFACES": " ".join([b.ifname for b in cfg.bridges] + list(cfg.vnets)),
        }
        await run_command(
            cfg,
            f"vimage_{cfg.name}_exec_{hook}",
            command,
            partial(self._platform.exec_on_host, command, env=env),
            limit=cfg.stop_timeout if stop_side else cfg.exec_timeout,
            limit_variable=f"vimage_{cfg.name}_{'stop' if stop_side else 'exec'}_timeout",
        )
        self._events.emit(f"hook.{hook}", cfg.name)

    async def host_logged(
        self, cfg: VimageConfig, hook: str, command: str | None, jid: int | None
    ) -> None:
        """A stop-side hook, if configured: a failure is logged, and the stop goes on."""
        if command is None:
            return
        try:
            await self.host(cfg, hook, command, jid)
        except (OSError, OperationFailedError) as exc:
            log.warning("vimage.hook_failed", vimage=cfg.name, hook=hook, error=error_text(exc))


async def run_command(
    cfg: VimageConfig,
    what: str,
    command: str,
    run: Callable[..., Awaitable[int]],
    *,
    limit: float,
    limit_variable: str,
) -> None:
    """``run(output=fd)``, one of the vimage's commands, with its output in the console log.

    Raises:
        OperationFailedError: it exited non-zero or outlived ``limit`` (0: no limit); the
            message ends with the last line it wrote.
    """
    consolelog = f"vimage_{cfg.name}_exec_consolelog"
    with CommandOutput.console_log(cfg.exec_consolelog, consolelog) as output:
        with trio.move_on_after(limit or math.inf) as deadline:
            status = await run(output=output.fd)
        if deadline.cancelled_caught:
            raise OperationFailedError(
                f"{cfg.name}: {what} {command!r} still running after {limit:g} s "
                f"({limit_variable}){output.said()}"
            )
        if status != 0:
            raise OperationFailedError(
                f"{cfg.name}: {what} {command!r} exited with status {status}{output.said()}"
            )
