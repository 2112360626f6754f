"""IPAM by delegation, as the reference plugins do (pkg/invoke's DelegateAdd and friends).

The plugin named by ``ipam.type`` is looked up in CNI_PATH and run with the same stdin and
environment (CNI_COMMAND included). A 1.1.0 configuration is retried as 1.0.0 when the IPAM
plugin answers "incompatible version": the 1.1 result format is the 1.0 one, and Debian's
host-local (1.1.x) knows only 1.0.
"""

from __future__ import annotations

import json
import os
import subprocess

from vimaged_cni.spec import (
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    IO_FAILURE,
    CniError,
)

TIMEOUT = 60.0


def find(kind: str, path: list[str]) -> str:
    for directory in path:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_CONFIG, f"IPAM plugin {kind} not found in CNI_PATH", ":".join(path))


def run(kind: str, path: list[str], stdin: bytes, command: str) -> dict[str, object]:
    """Run the IPAM plugin for ``command``; its result (``{}`` for verbs without one)."""
    plugin = find(kind, path)
    try:
        return _exec(plugin, stdin, command)
    except CniError as exc:
        if exc.code != INCOMPATIBLE_VERSION:
            raise
        conf = json.loads(stdin)
        if conf.get("cniVersion") != "1.1.0":
            raise
        conf["cniVersion"] = "1.0.0"
        return _exec(plugin, json.dumps(conf).encode(), command)


def supports(kind: str, path: list[str], version: str) -> bool:
    """Whether the IPAM plugin knows CNI ``version`` (its VERSION answer): GC and STATUS go
    only to plugins of 1.1 or later, which an older one (host-local 1.1.x) would refuse."""
    info = _exec(find(kind, path), json.dumps({"cniVersion": version}).encode(), "VERSION")
    versions = info.get("supportedVersions")
    return isinstance(versions, list) and version in versions


def _exec(plugin: str, stdin: bytes, command: str) -> dict[str, object]:
    env = dict(os.environ, CNI_COMMAND=command)
    try:
        done = subprocess.run(
            [plugin], input=stdin, env=env, capture_output=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin} did not run: {exc}") from None
    out: object = None
    if done.stdout.strip():
        try:
            out = json.loads(done.stdout)
        except ValueError:
            out = None
    if done.returncode != 0:
        if isinstance(out, dict) and isinstance(out.get("code"), int):
            # The IPAM plugin's own error, passed through as the reference plugins do.
            raise CniError(out["code"], str(out.get("msg", "")), str(out.get("details", "")))
        text = done.stderr.decode(errors="replace").strip()[-500:]
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin} exited {done.returncode}", text)
    return out if isinstance(out, dict) else {}
