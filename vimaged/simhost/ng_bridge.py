"""Simulated host layer: ng_bridge(4) of the simulated kernel (ng_bridge.c, ng_bridge.h)."""

from __future__ import annotations

import errno
import re
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vimaged.simhost.ng_base import Node
from vimaged.simhost.ng_message import (
    BRIDGE_CONFIG,
    BRIDGE_CONFIG_OLD,
    BRIDGE_MOVE_HOST_SIZE,
    ETHER_ADDR_LEN,
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
    fixed,
)
from vimaged.simhost.ng_parse import (
    Command,
    _parse_i32,
    _parse_int,
    _parse_struct,
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
        self.send_unknown = True  # ng_bridge_constructor: "classic bridge"
        self.links: dict[str, Link] = {}
        self.hosts: dict[bytes, Host] = {}
        # ng_bridge.c learns through a queued NGM_BRIDGE_MOVE_HOST self-message from 14 on
        # ([M] 2d614aa2 ng_bridge_rcvdata; the memoryFailures of issue 15 on 14.2); the 13-era
        # ng_bridge.c@011b7317 calls ng_bridge_put inline.
        self.learn_by_message = kernel.version >= 14
        self.auto_number = kernel.version >= 15
        """D44615 (freebsd-src 86a6393a7d67): a hook named ``link``/``uplink`` gets the lowest
        free number; in stable/15, not in stable/14 (dmarker/bong-patches 14-stable/0001)."""

    @property
    def restrictive(self) -> bool:
        return not self.send_unknown

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

    def newhook(self, name: str) -> str | None:
        """ng_bridge_newhook: parse (or, on 15, number) the hook and make its link."""
        renamed = None
        if self.auto_number and name in ("link", "uplink"):
            # alloc_unr: the lowest number no hook of that kind holds (uplinks from 1).
            used = {n for n, link in self.links.items() if link.uplink == (name == "uplink")}
            number = next(
                i for i in range(name == "uplink", len(used) + 2) if f"{name}{i}" not in used
            )
            renamed = f"{name}{number}"
        uplink, _ = self.parse_hook(renamed or name)
        if uplink:
            # the first link an uplink → restrictive mode: no unknown unicast to links.
            if not self.links:
                self.send_unknown = False
            link = Link(uplink=True, learn_mac=False, send_unknown=True)
        else:
            link = Link(uplink=False, learn_mac=True, send_unknown=self.send_unknown)
        self.links[renamed or name] = link
        return renamed

    def connect_self(self, hook: str) -> None:
        if not (self.auto_number and hook in ("link", "uplink")):
            self.parse_hook(hook)
        fail(errno.ELOOP, "bridge connected to itself")

    def disconnected(self, hook: Hook) -> None:
        # ng_bridge_disconnect: the link's hosts and stats go with it; then, the last hook
        # gone and not persistent → shut down.
        self.links.pop(hook.name, None)
        self.hosts = {a: h for a, h in self.hosts.items() if h.link != hook.name}
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
            self.hosts.clear()  # ng_bridge_remove_hosts(priv, NULL), ng_bridge_reset_link
            for link in self.links.values():
                link.stats = dict.fromkeys(STATS_FIELDS, 0)
                link.muted_until = 0.0
            return None
        if cmd in (NGM_BRIDGE_GET_STATS, NGM_BRIDGE_CLR_STATS, NGM_BRIDGE_GETCLR_STATS):
            link = self.links[self._link_arg(msg)]
            reply = None if cmd == NGM_BRIDGE_CLR_STATS else encode_stats(link.stats)
            if cmd != NGM_BRIDGE_GET_STATS:
                link.stats = dict.fromkeys(STATS_FIELDS, 0)  # ng_bridge_clear_link_stats
            return reply
        if cmd == NGM_BRIDGE_GET_TABLE:
            return self._table()
        if cmd == NGM_BRIDGE_SET_PERSISTENT:
            self.persistent = True
            return None
        if cmd == NGM_BRIDGE_MOVE_HOST and not self.legacy:
            if msg.arglen != BRIDGE_MOVE_HOST_SIZE:
                fail(errno.EINVAL, "movehost needs 38 bytes")
            hook = cstr(msg.data[6:38])
            if hook not in self.hooks:
                fail(errno.ENOENT, "movehost hook")
            err = self._put(msg.data[:ETHER_ADDR_LEN], hook)
            if err:
                fail(err, "movehost")
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
            "hosts": len(self.hosts),
        }

    # -- data plane (ng_bridge_rcvdata, ng_bridge_put, ng_bridge_timeout) -------------------

    def _now(self) -> float:
        return self.kernel.clock()

    def _expire(self) -> None:
        """ng_bridge_timeout: hosts not heard from for maxStaleness seconds are removed."""
        now, max_staleness = self._now(), self.config[2]
        self.hosts = {a: h for a, h in self.hosts.items() if now - h.heard < max_staleness}

    def _age(self, host: Host) -> int:
        return min(int(self._now() - host.learned), 0xFFFF)

    def _put(self, addr: bytes, hook: str) -> int:
        """ng_bridge_put: learn or move ``addr``; ELOOP (the link muted) for a jumpy host."""
        host = self.hosts.get(addr)
        link = self.links.get(hook)
        if link is None:
            return 0
        now = self._now()
        if host is None:
            self.hosts[addr] = Host(hook, now, now)
            return 0
        if host.link == hook:
            return 0
        if self._age(host) >= self.config[3]:  # minStableAge
            host.link, host.learned = hook, now
            return 0
        self._loop(hook, link)
        return errno.ELOOP

    def _moved(self, addr: bytes, hook: str) -> None:
        """The queued NGM_BRIDGE_MOVE_HOST self-message arrives (ng_bridge_rcvmsg)."""
        if self.valid:
            self._put(addr, hook)

    def _loop(self, hook: str, link: Link) -> None:
        """ "Mark link as linka non grata" for loopTimeout seconds; forget its hosts."""
        link.muted_until = self._now() + self.config[1]
        link.stats["loopDetects"] += 1
        self.hosts = {a: h for a, h in self.hosts.items() if h.link != hook}

    def _learn(self, addr: bytes, hook: str, link: Link) -> bool:
        """The learning step of ng_bridge_rcvdata; False if the frame is to be dropped."""
        kernel = self.kernel
        if self.learn_by_message:
            # NG_SEND_MSG_ID(NGM_BRIDGE_MOVE_HOST) to itself, applied after this item.
            if kernel.learn_fail > 0:
                kernel.learn_fail -= 1
                link.stats["memoryFailures"] += 1
            else:
                kernel.enqueue_item(lambda: self._moved(addr, hook))
            return True
        if kernel.learn_fail > 0:  # ng_bridge_put's malloc failed: ENOMEM, frame dropped
            kernel.learn_fail -= 1
            link.stats["memoryFailures"] += 1
            return False
        self._put(addr, hook)
        return True

    def rcvdata(self, hook: Hook, frame: bytes) -> None:
        link = self.links.get(hook.name)
        if link is None:
            return
        self._expire()
        stats = link.stats
        if len(frame) < ETHER_HDR_LEN:
            stats["recvRunts"] += 1
            return  # EINVAL
        dst, src = frame[:ETHER_ADDR_LEN], frame[ETHER_ADDR_LEN : 2 * ETHER_ADDR_LEN]
        if src[0] & 1:
            stats["recvInvalid"] += 1
            return  # EINVAL: a multicast source
        if self._now() < link.muted_until:
            stats["loopDrops"] += 1
            return  # ELOOP: the link is muted after a loop
        stats["recvPackets"] += 1
        stats["recvOctets"] += len(frame)
        manycast = 0
        if dst[0] & 1:
            manycast = 2 if dst == BROADCAST else 1
            stats["recvBroadcasts" if manycast == 2 else "recvMulticasts"] += 1
        host = self.hosts.get(src)
        if host is not None:
            host.heard = self._now()
        moved = host is not None and host.link != hook.name
        unstable = host is not None and moved and self._age(host) < self.config[3]
        if not self.learn_by_message and host is not None and moved:
            if unstable:
                self._loop(hook.name, link)
                stats["loopDrops"] += 1
                return  # ELOOP
            host.link, host.learned = hook.name, self._now()  # "Move host over to new link"
        elif ((host is None and link.learn_mac) or moved) and not self._learn(src, hook.name, link):
            return
        if self.learn_by_message and unstable:
            stats["loopDrops"] += 1
            return  # ELOOP: "Drop packet on instable links"
        if not manycast:
            known = self.hosts.get(dst)
            if known is not None:
                if known.link != hook.name:
                    self._send(known.link, frame, manycast)
                return
            stats["recvUnknown"] += 1
        for name, out in list(self.links.items()):
            # ng_bridge_send_ctx: not back out the incoming link, and unknown unicast only
            # to links with sendUnknown.
            if name == hook.name or (not manycast and not out.send_unknown):
                continue
            self._send(name, frame, manycast)

    def _send(self, name: str, frame: bytes, manycast: int) -> None:
        """ng_bridge_send_data: the xmit counters, then out of the link's hook."""
        stats = self.links[name].stats
        stats["xmitPackets"] += 1
        stats["xmitOctets"] += len(frame)
        if manycast:
            stats["xmitBroadcasts" if manycast == 2 else "xmitMulticasts"] += 1
        self.kernel.send_data(self.hooks.get(name), frame)

    def _table(self) -> bytes:
        """NGM_BRIDGE_GET_TABLE: struct ng_bridge_host_ary (the old ABI: host_ary_old)."""
        self._expire()
        now = self._now()
        rows = []
        for addr, host in self.hosts.items():
            age, staleness = self._age(host), min(int(now - host.heard), 0xFFFF)
            if self.legacy:
                rows.append(HOST_OLD.pack(addr, int(host.link[4:]), age, staleness))
            else:
                rows.append(HOSTENT.pack(addr, fixed(host.link, 32), age, staleness))
        return U32.pack(len(rows)) + b"".join(rows)


STATS_FIELDS = (
    "recvOctets",
    "recvPackets",
    "recvMulticasts",
    "recvBroadcasts",
    "recvUnknown",
    "recvRunts",
    "recvInvalid",
    "xmitOctets",
    "xmitPackets",
    "xmitMulticasts",
    "xmitBroadcasts",
    "loopDrops",
    "loopDetects",
    "memoryFailures",
)
"""struct ng_bridge_link_stats (ng_bridge.h): 14 u64 in this order, 112 bytes, on 12 to 15."""
LINK_STATS = struct.Struct(f"<{len(STATS_FIELDS)}Q")
HOSTENT = struct.Struct("<6s32sHH")  # struct ng_bridge_hostent (42 bytes)
HOST_OLD = struct.Struct("<6sHHH")  # struct ng_bridge_host_old (12 bytes)
ETHER_HDR_LEN = 14
BROADCAST = b"\xff" * ETHER_ADDR_LEN


def encode_stats(stats: dict[str, int]) -> bytes:
    return LINK_STATS.pack(*(stats[f] & 0xFFFFFFFFFFFFFFFF for f in STATS_FIELDS))


def _render_bridge_stats(data: bytes) -> str:
    """getstats' reply as ng_bridge.c's ng_bridge_stats_type renders it."""
    values = LINK_STATS.unpack_from(data)
    return _render_struct([(n, str(v), v == 0) for n, v in zip(STATS_FIELDS, values, strict=True)])


def decode_stats(data: bytes) -> dict[str, int]:
    """A struct ng_bridge_link_stats reply as a dict (for tests and tools)."""
    return dict(zip(STATS_FIELDS, LINK_STATS.unpack_from(data), strict=True))


@dataclass(eq=False)
class Link:
    """struct ng_bridge_link: one link or uplink hook's flags, stats and loop state."""

    uplink: bool
    learn_mac: bool
    send_unknown: bool
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS_FIELDS, 0))
    muted_until: float = 0.0
    """loopCount as a deadline: the link drops frames until then after a loop detection."""


@dataclass(eq=False)
class Host:
    """struct ng_bridge_host: where a MAC was heard; ``learned`` (age) and ``heard``."""

    link: str
    learned: float
    heard: float
