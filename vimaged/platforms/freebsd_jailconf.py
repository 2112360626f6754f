"""Platform layer, ``freebsd``: the jail.conf(5) block jail(8) creates a vimage's jail from.

jail(8) keeps mounts, devfs rulesets and parameter parsing; vimaged only writes one block per
vimage, quoted so a value can never start another parameter. A malformed name or parameter
is ``OSError`` (EINVAL) like every platform error: the domain checked them first.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from vimaged import names
from vimaged.platforms import os_error

if TYPE_CHECKING:
    from vimaged.platforms import JailSpec

_PARAM_KEY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_OWN_PARAMS = frozenset({"name", "path", "host.hostname", "vnet", "persist", "devfs_ruleset"})


def _quote(value: str) -> str:
    """A jail.conf(5) double-quoted string: backslash, quote and ``$`` (expansion) escaped."""
    if "\n" in value or "\0" in value:
        raise os_error(errno.EINVAL, f"jail parameter value {value!r}: a newline or NUL")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def jail_conf(spec: JailSpec) -> str:
    """The jail.conf(5) block jail(8) creates and removes ``spec``'s jail from.

    ``vnet`` and ``persist`` always; devfs is mounted only for a jail with its own root
    (mounting it at ``/`` + ``/dev`` would cover the host's). Raises ``OSError`` (EINVAL)
    naming a malformed or duplicated parameter: the domain checks names and parameters first,
    so this is the platform's own guard, not the error users see.
    """
    if not names.is_vimage_name(spec.name):  # the one rule, as an OSError
        raise os_error(errno.EINVAL, f"jail name {spec.name!r}")
    lines = [
        f"path = {_quote(spec.path)};",
        f"host.hostname = {_quote(spec.hostname)};",
        "vnet;",
        "persist;",
    ]
    if spec.path != "/":
        lines.append("mount.devfs;")
    if spec.devfs_ruleset is not None:
        lines.append(f"devfs_ruleset = {int(spec.devfs_ruleset)};")
    seen: set[str] = set()
    for param in spec.parameters:
        key, sep, value = param.partition("=")
        if not _PARAM_KEY.fullmatch(key):
            raise os_error(errno.EINVAL, f"jail parameter {param!r}")
        if key in _OWN_PARAMS or key in seen:
            raise os_error(errno.EINVAL, f"jail parameter {key!r} (given twice or set by vimaged)")
        seen.add(key)
        lines.append(f"{key} = {_quote(value)};" if sep else f"{key};")
    body = "".join(f"\t{line}\n" for line in lines)
    return f"{spec.name} {{\n{body}}}\n"
