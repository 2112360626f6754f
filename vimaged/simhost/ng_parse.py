"""Simulated host layer: ng_parse(4) text of the simulated kernel (ng_parse.c, cmdlists).

The parse and render functions of the types the node cmdlists use, and ng_base.c's generic
cmdlist (``ng_generic_cmds``) for NGM_ASCII2BINARY and NGM_BINARY2ASCII.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vimaged.simhost.ng_message import (
    ETHER_ADDR_LEN,
    I32,
    NG_PATHSIZ,
    NGM_CONNECT,
    NGM_CONNECT_ARGS,
    NGM_LISTHOOKS,
    NGM_LISTNAMES,
    NGM_LISTNODES,
    NGM_LISTTYPES,
    NGM_MKPEER,
    NGM_MKPEER_ARGS,
    NGM_NAME,
    NGM_NODEINFO,
    NGM_RMHOOK,
    NGM_SHUTDOWN,
    NODEINFO,
    U32,
    NgMesg,
    cstr,
    fail,
    fixed,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def _u32_arg(msg: NgMesg) -> int:
    if msg.arglen != U32.size:
        fail(errno.EINVAL, f"argument of {msg.arglen} bytes, expected 4")
    value: int = U32.unpack_from(msg.data)[0]
    return value


def _parse_int(text: str) -> int:
    # ng_parse_int32_type reads with strtol(..., 0): decimal, 0x hex or 0 octal.
    try:
        return int(text.strip(), 0)
    except ValueError:
        fail(errno.EINVAL, f"not an integer: {text!r}")


def _parse_u32(text: str) -> bytes:
    return U32.pack(_parse_int(text) & 0xFFFFFFFF)


def _parse_i32(text: str) -> bytes:
    return I32.pack(_parse_int(text))


def _parse_none(text: str) -> bytes:
    return b""


def _parse_mac(text: str) -> bytes:
    # ng_parse_enaddr_type: six hex octets separated by colons.
    parts = text.strip().split(":")
    if len(parts) != ETHER_ADDR_LEN or not all(re.fullmatch(r"[0-9A-Fa-f]{1,2}", p) for p in parts):
        fail(errno.EINVAL, f"not an Ethernet address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def _parse_struct(text: str) -> dict[str, str]:
    """``{ key=value key="text" }`` as ng_parse_struct_type writes it."""
    body = text.strip()
    if not body:
        return {}
    if not (body.startswith("{") and body.endswith("}")):
        fail(errno.EINVAL, f"not a structure: {text!r}")
    fields: dict[str, str] = {}
    for match in re.finditer(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s}]+)', body[1:-1]):
        value = match.group(2)
        fields[match.group(1)] = value[1:-1] if value.startswith('"') else value
    return fields


def _render_none(data: bytes) -> str:
    return ""


def _render_u32(data: bytes) -> str:
    return str(U32.unpack_from(data)[0]) if len(data) >= U32.size else ""


def _render_i32(data: bytes) -> str:
    return str(I32.unpack_from(data)[0]) if len(data) >= I32.size else ""


def _render_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data[:ETHER_ADDR_LEN])


def _render_string(data: bytes) -> str:
    return '"' + cstr(data) + '"'  # ng_parse_fixedstring_type: quoted


def _render_struct(fields: list[tuple[str, str, bool]]) -> str:
    """ng_parse_struct_type's text: fields equal to their (zero) default are left out."""
    shown = [f"{name}={value}" for name, value, is_default in fields if not is_default]
    return "{ " + " ".join(shown) + (" }" if shown else "}")


def _render_nodeinfo(data: bytes) -> str:
    name, kind, node_id, hooks = NODEINFO.unpack_from(data)
    return _render_struct(
        [
            ("name", _render_string(name), not cstr(name)),
            ("type", _render_string(kind), not cstr(kind)),
            ("id", f"0x{node_id:x}", node_id == 0),  # ng_parse_hint32_type
            ("hooks", str(hooks), hooks == 0),
        ]
    )


def _render_bridge_table(data: bytes) -> str:
    hosts = U32.unpack_from(data)[0]
    return _render_struct([("numHosts", str(hosts), hosts == 0)])


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of a node type's cmdlist (``struct ng_cmdlist``) as ng_parse uses it."""

    name: str
    cmd: int
    parse: Callable[[str], bytes] = _parse_none
    render_args: Callable[[bytes], str] = _render_none
    render_reply: Callable[[bytes], str] = _render_none


GENERIC_COMMANDS = (
    Command("shutdown", NGM_SHUTDOWN),
    Command("mkpeer", NGM_MKPEER),
    Command("connect", NGM_CONNECT),
    Command("name", NGM_NAME),
    Command("rmhook", NGM_RMHOOK),
    Command("nodeinfo", NGM_NODEINFO, render_reply=_render_nodeinfo),
    Command("listhooks", NGM_LISTHOOKS),
    Command("listnames", NGM_LISTNAMES),
    Command("listnodes", NGM_LISTNODES),
    Command("listtypes", NGM_LISTTYPES),
)
"""ng_base.c ``ng_generic_cmds``; the struct arguments are parsed by ``_generic_ascii_args``."""


def _generic_ascii_args(cmd: int, text: str) -> bytes:
    fields = _parse_struct(text)
    if cmd == NGM_MKPEER:
        return NGM_MKPEER_ARGS.pack(
            fixed(fields.get("type", ""), 32),
            fixed(fields.get("ourhook", ""), 32),
            fixed(fields.get("peerhook", ""), 32),
        )
    if cmd == NGM_CONNECT:
        return NGM_CONNECT_ARGS.pack(
            fixed(fields.get("path", ""), NG_PATHSIZ),
            fixed(fields.get("ourhook", ""), 32),
            fixed(fields.get("peerhook", ""), 32),
        )
    if cmd == NGM_NAME:
        return fixed(fields.get("name", ""), 32)
    if cmd == NGM_RMHOOK:
        return fixed(fields.get("hook", ""), 32)
    return b""
