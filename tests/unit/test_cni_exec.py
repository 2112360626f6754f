"""``cni_exec`` in the daemon, through the real dispatch over the in-process sim platform: every
malformed config, missing env var and unknown field gets the spec's error code and leaves
nothing behind; the IPAM plugin runs as the caller, from the caller's CNI_PATH, bounded."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vimaged import config, macs
from vimaged.attachments import Attachments
from vimaged.cni import ipam, spec, verbs
from vimaged.dispatch import Dispatcher
from vimaged.peercred import Peer
from vimaged.protocol import MAX_CNI_ENVIRON, REQUEST_DECODER, CniExec, CniResult
from vimaged.testing import InProcessPlatform, open_supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trio.testing

pytestmark = pytest.mark.unit

ROOT = Peer(uid=0, gid=0, groups=frozenset(), pid=1)
NOBODY = Peer(uid=65534, gid=65534, groups=frozenset({65534, 100}), pid=2)
BASE: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "lan",
    "type": "vimaged-cni",
    "parent": "em0",
}
RESULT = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1"}],
          "routes": [{"dst": "0.0.0.0/0"}]}  # fmt: skip
VERSIONS = {"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}


class World:
    """A daemon's dispatcher and attachments over the in-process sim host, a jail ``ctr1`` as
    the sandbox, and a fake IPAM plugin in ``bin`` that records each call."""

    def __init__(self, tmp: Path, plat: InProcessPlatform, dispatcher: Dispatcher) -> None:
        self.plat = plat
        self.dispatcher = dispatcher
        self.log = tmp / "ipam.log"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.plugin("fake-ipam", f'echo "$CNI_COMMAND" >> {self.log}\n'
                    f"[ \"$CNI_COMMAND\" = ADD ] && echo '{json.dumps(RESULT)}'\n"
                    '[ "$CNI_COMMAND" = VERSION ] && '
                    f"echo '{json.dumps(VERSIONS)}'\n"
                    "exit 0")  # fmt: skip

    def plugin(self, name: str, body: str, mode: int = 0o755) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(mode)

    def calls(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def env(self, command: str = "ADD", **changes: str | None) -> dict[str, str]:
        base: dict[str, str | None] = {
            "PATH": "/usr/bin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": "c0ffee",
            "CNI_NETNS": "ctr1",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bin),
        }
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    async def exec(
        self, environ: dict[str, str], stdin: bytes, peer: Peer = ROOT
    ) -> tuple[int, dict[str, Any] | None]:
        block = b"".join(os.fsencode(f"{k}={v}") + b"\0" for k, v in environ.items())
        reply = await self.dispatcher.handle(CniExec(environ=block, stdin=stdin), peer)
        assert isinstance(reply, CniResult), reply
        if not reply.stdout:
            return reply.exit, None
        assert reply.stdout.endswith(b"\n")
        return reply.exit, json.loads(reply.stdout)

    async def code_of(self, environ: dict[str, str], stdin: bytes, peer: Peer = ROOT) -> int:
        status, out = await self.exec(environ, stdin, peer)
        assert status == 1
        assert out is not None
        assert set(out) >= {"cniVersion", "code", "msg"}
        assert isinstance(out["code"], int)
        return out["code"]

    @property
    def attachments(self) -> Attachments:
        assert self.dispatcher.attachments is not None
        return self.dispatcher.attachments

    def eifaces(self) -> list[str]:
        return [n.name for n in self.plat.host.ng.nodes.values() if n.type_name == "eiface"]

    def nothing_left(self) -> None:
        assert self.attachments.list() == []
        assert self.eifaces() == []


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    # pytest-trio sets async fixtures up anew for each hypothesis example, in one tmp_path
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))
    plat = InProcessPlatform(nics=("em0", "em1"))
    plat.host.create_jail("ctr1")
    async with open_supervisor(config.build({"vimage_list": ""}), plat) as sup:
        dispatcher = Dispatcher(sup, None)
        dispatcher.attachments = await Attachments.open(str(tmp_path / "state"), sup, plat)
        try:
            yield World(tmp_path, plat, dispatcher)
        finally:
            await dispatcher.attachments.aclose()


def conf(**changes: Any) -> bytes:
    c = {**BASE, "ipam": {"type": "fake-ipam"}, **changes}
    return json.dumps({k: v for k, v in c.items() if v is not None}).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"CNI_COMMAND": None},
        {"CNI_COMMAND": "ATTACH"},
        {"CNI_CONTAINERID": None},
        {"CNI_CONTAINERID": "-leading-dash"},
        {"CNI_CONTAINERID": "has/slash"},
        {"CNI_NETNS": None},
        {"CNI_IFNAME": None},
        {"CNI_IFNAME": "a-very-long-ifname"},
        {"CNI_IFNAME": "eth/0"},
        {"CNI_IFNAME": ".."},
        {"CNI_IFNAME": os.fsdecode(b"eth\xff")},
        {"CNI_NETNS": os.fsdecode(b"/run/netns/\xff")},
        {"CNI_PATH": None},
        {"CNI_ARGS": "K8S_POD_NAME=x"},
        {"CNI_ARGS": "novalue"},
    ],
)
async def test_a_bad_environment_is_code_4_and_touches_nothing(
    world: World, changes: dict[str, str | None]
) -> None:
    assert await world.code_of(world.env("ADD", **changes), conf()) == spec.INVALID_ENVIRONMENT
    assert world.calls() == []
    world.nothing_left()


async def test_unknown_cni_args_pass_with_ignore_unknown_and_a_failed_add_undoes_ipam(
    world: World,
) -> None:
    environ = world.env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=x", CNI_NETNS="nosuchjail")
    status, out = await world.exec(environ, conf())
    assert status == 1
    assert out is not None
    assert (out["code"], out["details"]) == (spec.DAEMON_REFUSED, "os_error (ENOENT)")
    assert world.calls() == ["ADD", "DEL"]  # past the checks: IPAM ran, then gave it back
    world.nothing_left()


@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        (b"", spec.DECODING_FAILURE),
        (b"{not json", spec.DECODING_FAILURE),
        (b"\xff\xfe", spec.DECODING_FAILURE),
        (b"[1, 2]", spec.DECODING_FAILURE),
        (b"[" * 200_000, spec.DECODING_FAILURE),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, spec.DECODING_FAILURE),
        (b'{"cniVersion": "1.0.0", "mtu": 1' + b"0" * 5000 + b"}", spec.DECODING_FAILURE),
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
async def test_a_bad_config_gets_its_code_and_touches_nothing(
    world: World, stdin: bytes, code: int
) -> None:
    assert await world.code_of(world.env(), stdin) == code
    assert world.calls() == []
    world.nothing_left()


async def test_an_unsupported_field_is_named_with_its_value(world: World) -> None:
    _, out = await world.exec(world.env(), conf(bridge="br0"))
    assert out is not None
    assert "bridge" in str(out["msg"])
    assert "br0" in str(out["msg"])


@pytest.mark.parametrize("version", [*spec.SUPPORTED_VERSIONS, "0.3.1", None])
async def test_version_answers_every_supported_version(world: World, version: str | None) -> None:
    stdin = b"" if version is None else json.dumps({"cniVersion": version}).encode()
    assert await world.exec({"CNI_COMMAND": "VERSION"}, stdin) == (0, {
        "cniVersion": version if version in spec.SUPPORTED_VERSIONS else spec.LATEST,
        "supportedVersions": ["1.0.0", "1.1.0"],
    })  # fmt: skip


@pytest.mark.parametrize(
    "valid",
    ["x", [1], [{"containerID": "c"}], [{"containerID": "bad id", "ifname": "eth0"}]],
)
async def test_gc_refuses_a_malformed_valid_list(world: World, valid: object) -> None:
    stdin = conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    assert await world.code_of(world.env("GC"), stdin) == spec.INVALID_CONFIG


async def test_add_check_del_into_a_jail(world: World) -> None:
    status, out = await world.exec(world.env(), conf(mtu=1400))
    assert status == 0
    [att] = world.attachments.list()
    assert len(world.eifaces()) == 1
    assert att.sandbox == "ctr1"
    assert att.addresses == ("10.9.0.2/24",)
    assert out == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": att.mac, "sandbox": "ctr1"}],
        "ips": [{"address": "10.9.0.2/24", "interface": 0, "gateway": "10.9.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert await world.exec(world.env("CHECK"), conf(mtu=1400, prevResult=out)) == (0, None)
    claimed = {**out, "ips": [*out["ips"], {"address": "10.9.0.99/24", "interface": 0}]}
    status, failed = await world.exec(world.env("CHECK"), conf(mtu=1400, prevResult=claimed))
    assert failed is not None
    assert (status, failed["code"], failed["details"]) == (1, spec.DAEMON_REFUSED, "failed")
    for _ in range(2):  # the second DEL succeeds too
        assert await world.exec(world.env("DEL"), conf()) == (0, None)
    world.nothing_left()
    assert world.calls() == ["ADD", "CHECK", "DEL", "DEL"]


async def test_a_daemon_error_undoes_ipam_and_is_code_100(world: World) -> None:
    status, out = await world.exec(world.env(), conf(parent="eth9"))
    assert (status, out) == (1, {
        "cniVersion": "1.0.0", "code": spec.DAEMON_REFUSED,
        "msg": "parent NIC eth9 is not on the host", "details": "not_found",
    })  # fmt: skip
    assert world.calls() == ["ADD", "DEL"]
    world.nothing_left()


async def test_an_ipam_result_the_daemon_refuses_is_undone(world: World) -> None:
    world.plugin("bad-ipam", f'echo "$CNI_COMMAND" >> {world.log}\n'
                 """[ "$CNI_COMMAND" = ADD ] && echo '{"ips": [{"address": {"x": 1}}]}'\n"""
                 "exit 0")  # fmt: skip
    status, out = await world.exec(world.env(), conf(ipam={"type": "bad-ipam"}))
    assert out is not None
    assert (status, out["code"], out["details"]) == (1, spec.DAEMON_REFUSED, "invalid_request")
    assert world.calls() == ["ADD", "DEL"]
    world.nothing_left()


async def test_a_daemon_shutting_down_is_try_again_later(world: World) -> None:
    world.dispatcher._sup.stopping = True
    assert await world.code_of(world.env(), conf()) == spec.TRY_AGAIN_LATER
    assert world.calls() == ["ADD", "DEL"]


async def test_status_up_and_with_the_parent_gone(world: World) -> None:
    environ = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(world.bin), "PATH": "/usr/bin:/bin"}
    assert await world.exec(environ, conf(cniVersion="1.1.0")) == (0, None)
    assert world.calls() == ["VERSION", "STATUS"]  # STATUS only to an IPAM plugin of CNI 1.1
    gone = conf(cniVersion="1.1.0", parent="eth9")
    assert await world.code_of(environ, gone) == spec.PLUGIN_LIMITED


async def test_gc_removes_what_the_valid_list_drops(world: World) -> None:
    world.plat.host.create_jail("ctr2")
    assert (await world.exec(world.env(), conf()))[0] == 0
    assert (await world.exec(world.env(CNI_CONTAINERID="b2", CNI_NETNS="ctr2"), conf()))[0] == 0
    valid = [{"containerID": "c0ffee", "ifname": "eth0"}, {"containerID": "a1", "ifname": "x"}]
    stdin = conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    assert await world.exec({"CNI_COMMAND": "GC", "CNI_PATH": str(world.bin)}, stdin) == (0, None)
    assert [a.container_id for a in world.attachments.list()] == ["c0ffee"]
    assert world.calls() == ["ADD", "ADD", "VERSION", "GC"]


async def test_no_exception_escapes_as_anything_but_a_cni_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(world.attachments, "delete", broken)
    status, out = await world.exec(world.env("DEL"), conf())
    assert out is not None
    assert (status, out["code"], out["details"]) == (1, spec.DAEMON_REFUSED, "internal")
    assert "a bug" not in out["msg"]
    assert world.calls() == []  # IPAM DEL comes after the daemon's part


@pytest.mark.parametrize("environ", [b"", b"\0\0=\0CNI_COMMAND\0", b"\xff=\xfe\0" * 100])
async def test_a_garbage_environment_is_code_4(world: World, environ: bytes) -> None:
    reply = await world.dispatcher.handle(CniExec(environ=environ, stdin=conf()), ROOT)
    assert isinstance(reply, CniResult)
    assert reply.exit == 1
    assert json.loads(reply.stdout)["code"] == spec.INVALID_ENVIRONMENT


def test_the_wire_bounds_the_environment_and_stdin() -> None:
    def request(environ: int, stdin: int) -> bytes:
        return msgspec.json.encode(
            {"op": "cni_exec", "environ": b"x" * environ, "stdin": b"y" * stdin}
        )

    assert REQUEST_DECODER.decode(request(MAX_CNI_ENVIRON, 1 << 18)) == CniExec(
        environ=b"x" * MAX_CNI_ENVIRON, stdin=b"y" * (1 << 18)
    )
    for sizes in ((MAX_CNI_ENVIRON + 1, 0), (0, (1 << 18) + 1)):
        with pytest.raises(msgspec.ValidationError):
            REQUEST_DECODER.decode(request(*sizes))


def test_check_asks_for_the_prev_result_routes_with_their_family_gateway() -> None:
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "ctr1"}],
        "ips": [{"address": "10.9.0.2/24", "interface": 0, "gateway": "10.9.0.1"},
                {"address": "2001:db8::2/64", "interface": 0, "gateway": "2001:db8::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"},
                   {"dst": "198.51.100.0/24", "gw": "10.9.0.254"}],
    }  # fmt: skip
    environ = {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "ctr1",
               "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}  # fmt: skip
    raw = json.dumps({**BASE, "prevResult": prev}).encode()
    request = verbs.check_request(spec.NetConf(raw, "CHECK"), spec.Env(environ))
    assert [(r.dst, r.gw) for r in request.routes] == [
        ("0.0.0.0/0", "10.9.0.1"), ("::/0", "2001:db8::1"), ("198.51.100.0/24", "10.9.0.254"),
    ]  # fmt: skip
    assert request.addresses == ("10.9.0.2/24", "2001:db8::2/64")


def test_the_attachment_mac_is_pinned() -> None:
    uuid = "00000000-0000-0000-0000-000000000001"
    assert macs.attachment_mac(uuid, "abc", "eth0") == "5e:d6:bb:db:35:a0"
    assert macs.attachment_mac(uuid.upper(), "abc", "eth0") == "5e:d6:bb:db:35:a0"
    assert macs.attachment_mac(uuid, "abc", "eth1") != "5e:d6:bb:db:35:a0"


# --- the IPAM plugin: as the caller, found in the caller's CNI_PATH, bounded --------------


@pytest.fixture
def public_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin directory uid 65534 may enter (pytest's tmp_path is root's, mode 0700)."""
    path = tmp_path_factory.mktemp("public")
    for p in (path, *path.parents):
        if p.stat().st_mode & 0o005 != 0o005:
            p.chmod(p.stat().st_mode | 0o005)
    return path


async def test_the_ipam_plugin_runs_as_a_non_root_caller(world: World, public_bin: Path) -> None:
    script = public_bin / "whoami-ipam"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$CNI_COMMAND" = ADD ] || exit 0\n'
        'printf \'{"cniVersion":"1.0.0","ips":[],"dns":{"nameservers":["%s","%s"],'
        '"search":["%s"]}}\' "$(id -u)" "$(id -g)" "$(id -G)"\n'
    )
    script.chmod(0o755)
    environ = world.env(CNI_PATH=f"/nonexistent:{public_bin}")
    status, out = await world.exec(environ, conf(ipam={"type": "whoami-ipam"}), NOBODY)
    assert status == 0, out
    assert out is not None
    assert out["dns"]["nameservers"] == ["65534", "65534"]
    assert set(out["dns"]["search"][0].split()) == {"65534", "100"}
    # root's (the daemon's own) run of it is root's
    environ = world.env(CNI_PATH=str(public_bin), CNI_CONTAINERID="c2")
    world.plat.host.create_jail("ctr2")
    status, out = await world.exec({**environ, "CNI_NETNS": "ctr2"},
                                   conf(ipam={"type": "whoami-ipam"}), ROOT)  # fmt: skip
    assert out is not None
    assert out["dns"]["nameservers"] == ["0", "0"]


async def test_a_plugin_only_root_may_run_is_not_run_for_another_caller(
    world: World, public_bin: Path
) -> None:
    marker = public_bin / "ran"
    script = public_bin / "root-only"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o700)
    environ = world.env(CNI_PATH=str(public_bin))
    status, out = await world.exec(environ, conf(ipam={"type": "root-only"}), NOBODY)
    assert out is not None
    assert (status, out["code"]) == (1, spec.IO_FAILURE)
    assert not marker.exists()
    world.nothing_left()


@pytest.mark.parametrize("kind", ["no-such-ipam", "sub/fake-ipam", ".."])
def test_an_ipam_plugin_is_a_plain_name_found_in_cni_path(tmp_path: Path, kind: str) -> None:
    (tmp_path / "sub").mkdir()
    for where in (tmp_path / "sub" / "fake-ipam", tmp_path / "dir-ipam" / "x"):
        where.parent.mkdir(exist_ok=True)
        where.write_text("#!/bin/sh\n")
        where.chmod(0o755)
    caller = ipam.Caller(ROOT, {}, [str(tmp_path)])
    with pytest.raises(spec.CniError) as err:
        caller.find(kind)
    assert err.value.code == spec.INVALID_CONFIG
    with pytest.raises(spec.CniError):
        caller.find("dir-ipam")  # a directory is no plugin
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o644)
    with pytest.raises(spec.CniError):
        caller.find("plain")  # nor a file nobody may execute
    assert ipam.Caller(ROOT, {}, [str(tmp_path), str(tmp_path / "sub")]).find("fake-ipam") == str(
        tmp_path / "sub" / "fake-ipam"
    )


async def test_the_ipam_plugin_gets_the_callers_env_stdin_and_cwd(tmp_path: Path) -> None:
    script = tmp_path / "p"
    script.write_text('#!/bin/sh\ncat; echo "$CNI_COMMAND $OTHER $(pwd)" >&2; exit 3\n')
    script.chmod(0o755)
    big = b"x" * 300_000  # more than a pipe holds: written while the outputs are read
    caller = ipam.Caller(ROOT, {"OTHER": "o", "PATH": "/bin:/usr/bin"}, [])
    assert await ipam.spawn(caller, str(script), big, "ADD") == (3, big, b"ADD o /\n")


async def test_a_plugin_that_does_not_read_stdin(tmp_path: Path) -> None:
    script = tmp_path / "p"
    script.write_text("#!/bin/sh\necho '{}'\n")
    script.chmod(0o755)
    caller = ipam.Caller(ROOT, {}, [])
    assert (await ipam.spawn(caller, str(script), b"y" * 300_000, "ADD"))[:2] == (0, b"{}\n")


def children() -> list[int]:
    """Our child processes, zombies included (Linux /proc; [] elsewhere)."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if ppid == me:
            found.append(int(entry))
    return found


async def test_a_plugin_that_hangs_is_killed_and_try_again_later(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    script = tmp_path / "p"
    script.write_text("#!/bin/sh\nexec sleep 300\n")
    script.chmod(0o755)
    before = set(children())  # the suite's own (a sim host)
    with pytest.raises(spec.CniError) as err:
        await ipam.spawn(ipam.Caller(ROOT, {}, []), str(script), b"", "ADD")
    assert err.value.code == spec.TRY_AGAIN_LATER
    assert set(children()) <= before  # killed and reaped


async def test_output_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipam, "MAX_STDOUT", 10_000)
    script = tmp_path / "p"
    script.write_text("#!/bin/sh\nhead -c 100000 /dev/zero\nhead -c 1000000 /dev/zero >&2\n")
    script.chmod(0o755)
    with pytest.raises(spec.CniError) as err:
        await ipam.spawn(ipam.Caller(ROOT, {"PATH": "/usr/bin:/bin"}, []), str(script), b"", "X")
    assert err.value.code == spec.IO_FAILURE


async def test_a_plugin_that_cannot_run(tmp_path: Path) -> None:
    path = tmp_path / "noexec"
    path.write_text("no shebang, no ELF\0")
    path.chmod(stat.S_IRWXU)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(spec.CniError) as err:
        await ipam.spawn(ipam.Caller(ROOT, {}, []), str(path), b"{}", "ADD")
    assert err.value.code == spec.IO_FAILURE
    assert len(os.listdir("/proc/self/fd")) == fds  # its pipes are closed


def test_the_egid_leads_the_groups_of_a_non_root_caller() -> None:
    caller = ipam.Caller(Peer(uid=1001, gid=1001, groups=frozenset({5, 1001, 20})), {}, [])
    assert caller.credentials() == {"user": 1001, "group": 1001, "extra_groups": [1001, 5, 20]}
    assert ipam.Caller(ROOT, {}, []).credentials() == {}  # root: nothing to drop, vfork stays


CNI_VARS = st.sampled_from(
    ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]
)
COMMANDS = st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "add"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
STDINS = st.one_of(
    st.binary(max_size=64),
    st.dictionaries(st.sampled_from([*BASE, "ipam", "mac", "mtu", "prevResult"]), JSON).map(
        lambda d: json.dumps({**BASE, **d}).encode()
    ),
)


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    env=st.dictionaries(CNI_VARS, st.binary(max_size=12).map(os.fsdecode)),
    command=COMMANDS,
    stdin=STDINS,
)
async def test_whatever_the_input_the_answer_is_a_cni_result(
    world: World, env: dict[str, str], command: str, stdin: bytes
) -> None:
    environ = {**env, "CNI_COMMAND": command, "CNI_PATH": "/nonexistent"}
    status, out = await world.exec(environ, stdin)
    assert status in (0, 1)
    if status == 1:
        assert out is not None
        assert type(out["code"]) is int
        assert out["code"] != spec.DAEMON_REFUSED or out["details"] != "internal", out
