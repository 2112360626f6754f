"""Simulated host layer: ng_bridge(4) of the simulated kernel (ng_bridge.c, ng_bridge.h)."""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from vimaged.simhost.ng_base import Node
from vimaged.simhost.ng_message import (
    BRIDGE_CONFIG,
    BRIDGE_CONFIG_OLD,
    BRIDGE_LINK_STATS_SIZE,
    BRIDGE_MOVE_HOST_SIZE,
    I32,
    NG_BRIDGE_MAX_LINKS_OLD,
    NGM_BRIDGE_CLR_STATS,
    NGM_BRIDGE_COOKIE,
    NGM_BRIDGE_COOKIE_OLD,
    NGM_BRIDGE_GET_CONFIG,
    NGM_BRIDGE_GET_STATS,
    NGM_BRIDGE_GET_TABLE,
    NGM_BRIDGE_GETCLR_STATS,
    NGM_BRIDGE_MOVE_HOST,
    NGM_BRIDGE_RESET,
    NGM_BRIDGE_SET_CONFIG,
    NGM_BRIDGE_SET_PERSISTENT,
    U32,
    NgMesg,
    cstr,
    fail,
)
from vimaged.simhost.ng_parse import (
    Command,
    _parse_i32,
    _parse_int,
    _parse_struct,
    _render_bridge_stats,
    _render_bridge_table,
    _render_i32,
    _render_struct,
)

if TYPE_CHECKING:
    from vimaged.simhost.ng_base import Hook, NgBase


class BridgeNode(Node):
    """ng_bridge(4) in the ABI of the simulated kernel (ng_bridge.c, ng_bridge.h)."""

    type_name = "bridge"

    def __init__(self, kernel: NgBase, node_id: int) -> None:
        super().__init__(kernel, node_id)
        self.legacy = kernel.version < 13
        self.cookie = NGM_BRIDGE_COOKIE_OLD if self.legacy else NGM_BRIDGE_COOKIE
        self.config = (1, 60, 900, 1)  # debugLevel, loopTimeout, maxStaleness, minStableAge
        self.persistent = False
        self.restrictive = False
        self.had_hook = False

    def parse_hook(self, name: str) -> tuple[bool, int]:
        """``(uplink, number)``; EINVAL unless the name round-trips through ``%s%u``."""
        prefixes = (("link", False),) if self.legacy else (("uplink", True), ("link", False))
        for prefix, uplink in prefixes:
            if name.startswith(prefix):
                digits = name[len(prefix) :]
                if not re.fullmatch(r"0|[1-9][0-9]{0,9}", digits) or int(digits) > 0xFFFFFFFF:
                    fail(errno.EINVAL, f"bridge hook {name!r}")
                number = int(digits)
                if uplink and number == 0:
                    fail(errno.EINVAL, "uplink0 is not a bridge hook")
                if self.legacy and number >= NG_BRIDGE_MAX_LINKS_OLD:
                    fail(errno.EINVAL, f"{name!r}: the old bridge has link0..link31")
                return uplink, number
        fail(errno.EINVAL, f"bridge hook {name!r}")

    def newhook(self, name: str) -> None:
        uplink, _ = self.parse_hook(name)
        if not self.had_hook:
            # ng_bridge_newhook: the first hook ever an uplink → restrictive mode (no
            # unknown unicast to normal links).
            self.restrictive = uplink
            self.had_hook = True

    def connect_self(self, hook: str) -> None:
        self.parse_hook(hook)
        fail(errno.ELOOP, "bridge connected to itself")

    def disconnected(self, hook: Hook) -> None:
        # ng_bridge_disconnect: the last hook gone and not persistent → shut down.
        if not self.hooks and not self.persistent and self.valid:
            self.kernel.destroy(self)

    def _link_arg(self, msg: NgMesg) -> str:
        if msg.arglen != I32.size:
            fail(errno.EINVAL, "link number needs 4 bytes")
        number: int = I32.unpack_from(msg.data)[0]
        if self.legacy:
            if not 0 <= number < NG_BRIDGE_MAX_LINKS_OLD:
                fail(errno.EINVAL, f"link {number}")
            name = f"link{number}"
        else:
            name = f"link{number}" if number >= 0 else f"uplink{-number}"
        if name not in self.hooks:
            fail(errno.ENOTCONN, name)
        return name

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        if msg.typecookie != self.cookie:
            return super().rcvmsg(msg)
        cmd = msg.cmd
        config_struct = BRIDGE_CONFIG_OLD if self.legacy else BRIDGE_CONFIG
        if cmd == NGM_BRIDGE_GET_CONFIG:
            if self.legacy:
                return BRIDGE_CONFIG_OLD.pack(bytes(32), *self.config)
            return BRIDGE_CONFIG.pack(*self.config)
        if cmd == NGM_BRIDGE_SET_CONFIG:
            if msg.arglen != config_struct.size:
                fail(errno.EINVAL, f"setconfig needs {config_struct.size} bytes")
            fields = config_struct.unpack_from(msg.data)[-4:]
            self.config = (fields[0], fields[1], fields[2], fields[3])
            return None
        if cmd == NGM_BRIDGE_RESET:
            return None
        if cmd in (NGM_BRIDGE_GET_STATS, NGM_BRIDGE_CLR_STATS, NGM_BRIDGE_GETCLR_STATS):
            self._link_arg(msg)
            return None if cmd == NGM_BRIDGE_CLR_STATS else bytes(BRIDGE_LINK_STATS_SIZE)
        if cmd == NGM_BRIDGE_GET_TABLE:
            return U32.pack(0)  # no traffic is modelled, so nothing is learnt
        if cmd == NGM_BRIDGE_SET_PERSISTENT:
            self.persistent = True
            return None
        if cmd == NGM_BRIDGE_MOVE_HOST and not self.legacy:
            if msg.arglen != BRIDGE_MOVE_HOST_SIZE:
                fail(errno.EINVAL, "movehost needs 38 bytes")
            if cstr(msg.data[6:38]) not in self.hooks:
                fail(errno.ENOENT, "movehost hook")
            return None
        fail(errno.EINVAL, f"bridge command {cmd}")

    def commands(self) -> tuple[Command, ...]:
        # ng_bridge.c ng_bridge_cmdlist
        config = (self._parse_config, self._render_config)
        return (
            Command("setconfig", NGM_BRIDGE_SET_CONFIG, *config),
            Command("getconfig", NGM_BRIDGE_GET_CONFIG, render_reply=self._render_config),
            Command("reset", NGM_BRIDGE_RESET),
            Command(
                "getstats", NGM_BRIDGE_GET_STATS, _parse_i32, _render_i32, _render_bridge_stats
            ),
            Command("clrstats", NGM_BRIDGE_CLR_STATS, _parse_i32, _render_i32),
            Command(
                "getclrstats",
                NGM_BRIDGE_GETCLR_STATS,
                _parse_i32,
                _render_i32,
                _render_bridge_stats,
            ),
            Command("gettable", NGM_BRIDGE_GET_TABLE, render_reply=_render_bridge_table),
            Command("setpersistent", NGM_BRIDGE_SET_PERSISTENT),
        )

    def _render_config(self, data: bytes) -> str:
        fields = (BRIDGE_CONFIG_OLD if self.legacy else BRIDGE_CONFIG).unpack_from(data)[-4:]
        names = ("debugLevel", "loopTimeout", "maxStaleness", "minStableAge")
        return _render_struct([(n, str(v), v == 0) for n, v in zip(names, fields, strict=True)])

    def _parse_config(self, text: str) -> bytes:
        fields = _parse_struct(text)
        names = ("debugLevel", "loopTimeout", "maxStaleness", "minStableAge")
        unknown = set(fields) - set(names) - {"ipfw"}
        if unknown:
            fail(errno.ENOENT, f"unknown config field {sorted(unknown)[0]}")
        # ng_parse_struct_type starts from the type's default: zeros.
        values = [_parse_int(fields[n]) if n in fields else 0 for n in names]
        if self.legacy:
            return BRIDGE_CONFIG_OLD.pack(bytes(32), *values)
        return BRIDGE_CONFIG.pack(*values)

    def describe(self) -> dict[str, object]:
        return {
            "persistent": self.persistent,
            "restrictive": self.restrictive,
            "cookie": self.cookie,
        }
