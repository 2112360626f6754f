"""``vimaged-cni``: hand the environment and stdin to vimaged, print its answer (``main``).

What this answers itself (docs/cni.md, the ``cni_exec`` contract in docs/protocol.md): VERSION,
without the daemon (runtimes ask while it may be down), and the errors of getting no answer:
the spec's error JSON on stdout and exit 1. Everything else is the daemon's ``cni_result``,
written unchanged. The C client (vimaged-cni.c) behaves the same, byte for byte.
"""

from __future__ import annotations

import os
import sys

from vimaged_cni import client, jsonc

SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]
DEFAULT_SOCKET = "/var/run/vimaged.sock"
MAX_STDIN = 262_144
"""Bytes of network configuration sent (vimaged.protocol.MAX_CNI_STDIN); more is code 7."""
MAX_ENVIRON = 65_536
"""Bytes of environment sent (vimaged.protocol.MAX_CNI_ENVIRON); more is code 4."""
INVALID_ENVIRONMENT = 4
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50


def top_level(stdin: bytes) -> dict[str, object]:
    """stdin's JSON object, or {} (the daemon reports what it cannot decode, code 6)."""
    try:
        conf = jsonc.loads(stdin)
    except ValueError:
        return {}
    return conf if isinstance(conf, dict) else {}


def error(version: str, code: int, msg: str, details: str = "") -> bytes:
    """The spec's error JSON, spaced as json.dumps does; no details when there are none."""
    out: dict[str, object] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    return (jsonc.dumps(out) + "\n").encode()


def environ_block(environ: dict[bytes, bytes]) -> bytes:
    """The environment as /proc/PID/environ lays it out: ``NAME=VALUE`` and a NUL each."""
    return b"".join(b"%s=%s\0" % item for item in environ.items())


def run(environ: dict[bytes, bytes], stdin: bytes) -> tuple[int, bytes]:
    """One invocation: (exit status, bytes for stdout)."""
    conf = top_level(stdin) if len(stdin) <= MAX_STDIN else {}
    asked = conf.get("cniVersion")
    version = asked if isinstance(asked, str) and asked in SUPPORTED_VERSIONS else LATEST
    command = environ.get(b"CNI_COMMAND")
    if command == b"VERSION":
        info = {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
        return 0, (jsonc.dumps(info) + "\n").encode()
    if len(stdin) > MAX_STDIN:
        return 1, error(version, INVALID_CONFIG, f"network configuration over {MAX_STDIN} bytes")
    block = environ_block(environ)
    if len(block) > MAX_ENVIRON:
        return 1, error(version, INVALID_ENVIRONMENT, f"environment over {MAX_ENVIRON} bytes")
    socket = conf.get("socket")
    path = socket if isinstance(socket, str) and _is_path(socket) else DEFAULT_SOCKET
    try:
        return client.cni_exec(path, block, stdin, client.timeout(environ))
    except client.CniError as exc:
        code = exc.code
        if code == TRY_AGAIN_LATER and command == b"STATUS":
            code = PLUGIN_NOT_AVAILABLE  # STATUS: ADD cannot work now; attachments keep working
        return 1, error(version, code, exc.msg, exc.details)


def main() -> None:
    stdin = sys.stdin.buffer.read(MAX_STDIN + 1)  # one byte more says it is too large
    status, out = run(dict(os.environb), stdin)
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.exit(status)


def _is_path(text: str) -> bool:
    """A ``socket`` member a path can be: no NUL, no lone surrogate (the C client's rule)."""
    if "\0" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
