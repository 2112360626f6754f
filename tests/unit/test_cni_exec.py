"""vimaged-cni without a daemon: every malformed config, missing env var and unknown field gets
the spec's error code, and nothing is asked of IPAM or the daemon before the input is valid."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from vimaged import macs
from vimaged_cni import cli, spec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "lan",
    "type": "vimaged-cni",
    "parent": "eth9",
}


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """A fake IPAM plugin that records each call, and a socket path nobody listens on."""
    log = tmp_path / "ipam.log"
    plugin = tmp_path / "bin" / "fake-ipam"
    plugin.parent.mkdir()
    plugin.write_text(
        "#!/bin/sh\n"
        f'echo "$CNI_COMMAND" >> {log}\n'
        'if [ "$CNI_COMMAND" = ADD ]; then\n'
        '  echo \'{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24","gateway":"10.9.0.1"}],'
        '"routes":[{"dst":"0.0.0.0/0"}]}\'\n'
        "fi\n"
        'if [ "$CNI_COMMAND" = VERSION ]; then\n'
        '  echo \'{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}\'\n'
        "fi\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    return {"log": log, "path": str(plugin.parent), "socket": str(tmp_path / "absent.sock")}


def env(world: dict[str, Any], command: str = "ADD", **changes: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee",
        "CNI_NETNS": "/run/netns/c0ffee",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": world["path"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def conf(world: dict[str, Any], **changes: Any) -> bytes:
    c = {**BASE, "socket": world["socket"], "ipam": {"type": "fake-ipam"}, **changes}
    return json.dumps({k: v for k, v in c.items() if v is not None}).encode()


def calls(world: dict[str, Any]) -> list[str]:
    log = world["log"]
    return log.read_text().split() if log.exists() else []


def code_of(environ: dict[str, str], stdin: bytes) -> int:
    status, out = cli.run(environ, stdin)
    assert status == 1
    assert out is not None
    assert set(out) >= {"cniVersion", "code", "msg"}
    code = out["code"]
    assert isinstance(code, int)
    return code


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"CNI_COMMAND": None}, spec.INVALID_ENVIRONMENT),
        ({"CNI_COMMAND": "ATTACH"}, spec.INVALID_ENVIRONMENT),
        ({"CNI_CONTAINERID": None}, spec.INVALID_ENVIRONMENT),
        ({"CNI_CONTAINERID": "-leading-dash"}, spec.INVALID_ENVIRONMENT),
        ({"CNI_CONTAINERID": "has/slash"}, spec.INVALID_ENVIRONMENT),
        ({"CNI_NETNS": None}, spec.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": None}, spec.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": "a-very-long-ifname"}, spec.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": "eth/0"}, spec.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": ".."}, spec.INVALID_ENVIRONMENT),
        ({"CNI_PATH": None}, spec.INVALID_ENVIRONMENT),
        ({"CNI_ARGS": "K8S_POD_NAME=x"}, spec.INVALID_ENVIRONMENT),
        ({"CNI_ARGS": "novalue"}, spec.INVALID_ENVIRONMENT),
    ],
)
def test_a_bad_environment_is_code_4_and_touches_nothing(
    world: dict[str, Any], changes: dict[str, str | None], code: int
) -> None:
    assert code_of(env(world, "ADD", **changes), conf(world)) == code
    assert calls(world) == []


def test_unknown_cni_args_pass_with_ignore_unknown(world: dict[str, Any]) -> None:
    environ = env(world, CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=x")
    # Past the checks: IPAM ran, then the absent daemon made it try-again-later (and undo).
    assert code_of(environ, conf(world)) == spec.TRY_AGAIN_LATER
    assert calls(world) == ["ADD", "DEL"]


@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        (b"", spec.DECODING_FAILURE),
        (b"{not json", spec.DECODING_FAILURE),
        (b"\xff\xfe", spec.DECODING_FAILURE),
        (b"[1, 2]", spec.DECODING_FAILURE),
        (json.dumps({**BASE, "cniVersion": None}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "cniVersion": 1}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "cniVersion": "0.4.0"}).encode(), spec.INCOMPATIBLE_VERSION),
        (json.dumps({**BASE, "cniVersion": "2.0.0"}).encode(), spec.INCOMPATIBLE_VERSION),
        (json.dumps({**BASE, "name": None}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "name": "bad name"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "type": 7}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "parent": None}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "parent": "eth0:1"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "parent": "x" * 16}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "mac": "02:00:00:00:00"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "mac": "01:00:5e:00:00:01"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "runtimeConfig": {"mac": "zz"}}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "runtimeConfig": []}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "mtu": 67}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "mtu": "1500"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "mtu": True}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "socket": "relative.sock"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "ipam": "host-local"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "ipam": {"type": "../../bin/sh"}}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "ipam": {"type": "no-such-ipam"}}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "prevResult": "x"}).encode(), spec.INVALID_CONFIG),
        (json.dumps({**BASE, "bridge": "br0"}).encode(), spec.UNSUPPORTED_FIELD),
        (json.dumps({**BASE, "Parent": "eth0"}).encode(), spec.UNSUPPORTED_FIELD),
    ],
)
def test_a_bad_config_gets_its_code_and_touches_nothing(
    world: dict[str, Any], stdin: bytes, code: int
) -> None:
    assert code_of(env(world), stdin) == code
    assert calls(world) == []


def test_an_unsupported_field_is_named_with_its_value(world: dict[str, Any]) -> None:
    _, out = cli.run(env(world), conf(world, bridge="br0"))
    assert out is not None
    assert "bridge" in str(out["msg"])
    assert "br0" in str(out["msg"])


@pytest.mark.parametrize("version", [*spec.SUPPORTED_VERSIONS, "0.3.1", None])
def test_version_answers_every_supported_version(version: str | None) -> None:
    stdin = b"" if version is None else json.dumps({"cniVersion": version}).encode()
    status, out = cli.run({"CNI_COMMAND": "VERSION"}, stdin)
    assert status == 0
    assert out == {
        "cniVersion": version if version in spec.SUPPORTED_VERSIONS else spec.LATEST,
        "supportedVersions": ["1.0.0", "1.1.0"],
    }


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC"])
def test_an_absent_daemon_is_try_again_later(world: dict[str, Any], command: str) -> None:
    assert code_of(env(world, command), conf(world)) == spec.TRY_AGAIN_LATER
    # ADD gave its address back; DEL kept it (the interface may still exist).
    assert calls(world) == (["ADD", "DEL"] if command == "ADD" else [])


def test_status_of_an_absent_daemon_is_50(world: dict[str, Any]) -> None:
    environ = {"CNI_COMMAND": "STATUS", "CNI_PATH": world["path"]}
    assert code_of(environ, conf(world, cniVersion="1.1.0")) == spec.PLUGIN_NOT_AVAILABLE


@pytest.mark.parametrize(
    "valid",
    ["x", [1], [{"containerID": "c"}], [{"containerID": "bad id", "ifname": "eth0"}]],
)
def test_gc_refuses_a_malformed_valid_list(world: dict[str, Any], valid: object) -> None:
    stdin = conf(world, cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    assert code_of(env(world, "GC"), stdin) == spec.INVALID_CONFIG


# --- against a scripted daemon -------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A one-connection-at-a-time fake vimaged: Hello, then the scripted reply to each request."""
    path = str(tmp_path / "d.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    state: dict[str, Any] = {"path": path, "requests": [], "reply": None}

    def send(conn: socket.socket, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        conn.sendall(struct.pack(">I", len(data)) + data)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                send(conn, {"reply": "hello", "protocol": 1, "daemon": "test"})
                (length,) = struct.unpack(">I", conn.recv(4))
                request = json.loads(conn.recv(length))
                state["requests"].append(request)
                send(conn, state["reply"](request))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    listener.close()
    os.unlink(path)


def test_add_sends_the_ipam_addresses_and_prints_the_result(
    world: dict[str, Any], daemon: dict[str, Any]
) -> None:
    mac = macs.attachment_mac("00000000-0000-0000-0000-000000000001", "c0ffee", "eth0")
    daemon["reply"] = lambda req: {"reply": "attachments", "attachments": [{"mac": mac}]}
    status, out = cli.run(env(world), conf(world, socket=daemon["path"], mtu=1400))
    assert status == 0
    (request,) = daemon["requests"]
    assert request == {
        "op": "cni_add", "network": "lan", "container_id": "c0ffee", "ifname": "eth0",
        "sandbox": "/run/netns/c0ffee", "parent": "eth9", "mac": None, "mtu": 1400,
        "addresses": ["10.9.0.2/24"], "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
    }  # fmt: skip
    assert out == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": mac, "sandbox": "/run/netns/c0ffee"}],
        "ips": [{"address": "10.9.0.2/24", "interface": 0, "gateway": "10.9.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert calls(world) == ["ADD"]


def test_a_daemon_error_undoes_ipam_and_is_code_100(
    world: dict[str, Any], daemon: dict[str, Any]
) -> None:
    daemon["reply"] = lambda req: {"reply": "error", "code": "not_found", "message": "no eth9"}
    status, out = cli.run(env(world), conf(world, socket=daemon["path"]))
    assert (status, out) == (
        1,
        {"cniVersion": "1.0.0", "code": spec.DAEMON_REFUSED, "msg": "no eth9",
         "details": "not_found"},
    )  # fmt: skip
    assert calls(world) == ["ADD", "DEL"]


def test_a_daemon_shutting_down_is_try_again_later(
    world: dict[str, Any], daemon: dict[str, Any]
) -> None:
    daemon["reply"] = lambda req: {"reply": "error", "code": "shutting_down", "message": "bye"}
    assert code_of(env(world, "DEL"), conf(world, socket=daemon["path"])) == spec.TRY_AGAIN_LATER


def test_status_with_the_parent_gone_is_51(world: dict[str, Any], daemon: dict[str, Any]) -> None:
    daemon["reply"] = lambda req: {"reply": "error", "code": "not_found", "message": "no eth9"}
    environ = {"CNI_COMMAND": "STATUS", "CNI_PATH": world["path"]}
    stdin = conf(world, socket=daemon["path"], cniVersion="1.1.0")
    assert code_of(environ, stdin) == spec.PLUGIN_LIMITED
    assert daemon["requests"] == [{"op": "cni_status", "network": "lan", "parent": "eth9"}]


def test_gc_sends_the_valid_attachments(world: dict[str, Any], daemon: dict[str, Any]) -> None:
    daemon["reply"] = lambda req: {"reply": "attachments", "attachments": []}
    valid = [{"containerID": "a1", "ifname": "eth0"}, {"containerID": "b2", "ifname": "net1"}]
    stdin = conf(world, socket=daemon["path"], cniVersion="1.1.0",
                 **{"cni.dev/valid-attachments": valid})  # fmt: skip
    assert cli.run({"CNI_COMMAND": "GC", "CNI_PATH": world["path"]}, stdin) == (0, None)
    assert daemon["requests"] == [
        {"op": "cni_gc", "network": "lan", "valid": [
            {"container_id": "a1", "ifname": "eth0"}, {"container_id": "b2", "ifname": "net1"}]}
    ]  # fmt: skip
    assert calls(world) == ["VERSION", "GC"]  # GC only to an IPAM plugin of CNI 1.1


def test_the_attachment_mac_is_pinned() -> None:
    uuid = "00000000-0000-0000-0000-000000000001"
    assert macs.attachment_mac(uuid, "abc", "eth0") == "5e:d6:bb:db:35:a0"
    assert macs.attachment_mac(uuid.upper(), "abc", "eth0") == "5e:d6:bb:db:35:a0"
    assert macs.attachment_mac(uuid, "abc", "eth1") != "5e:d6:bb:db:35:a0"


def test_the_plugin_loads_only_the_standard_library() -> None:
    """Like vimagectl: a runtime execs the plugin for every ADD, so it starts fast."""
    code = (
        "import json, sys, vimaged_cni.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('trio', 'structlog', 'msgspec', 'vimaged', 'vimagectl', 'typing'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert json.loads(done.stdout) == []
