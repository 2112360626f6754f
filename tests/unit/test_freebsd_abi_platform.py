"""Unit tier: what FreeBSDPlatform asks of libc, recorded byte for byte on any OS.

``_libc.libc`` is replaced by :class:`RecordingLibc`, which keeps each call with the bytes its
pointer arguments point at and answers like the FreeBSD kernel would (a small jail table, an
ifaddrs chain), raising ``OSError`` as ``_libc``'s errcheck does.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from vimaged.errors import PlatformError
from vimaged.platforms import (
    HOST_JID,
    IfnetInfo,
    JailInfo,
    JailSpec,
    _libc,
    freebsd,
    freebsd_ifnet,
    freebsd_jailconf,
)
from vimaged.platforms import freebsd_abi as abi

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.unit

IFREQ_SIZE = 32


class RecordingLibc:
    """libc as the platform uses it: records calls, answers from small tables."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.flags: dict[str, int] = {}
        self.caps: dict[str, tuple[int, int]] = {}
        """SIOCGIFCAP's answer per interface: (if_capabilities, if_capenable)."""
        self.jails: list[JailInfo] = []
        self.sysctls: dict[bytes, bytes] = {}
        self.modules: set[str] = set()
        self.loadable: set[str] = set()
        self.links: list[tuple[str, bytes | None, int]] = []
        self.inet: list[tuple[str, bytes, bytes | None]] = []
        """getifaddrs entries after the links: (name, sockaddr, netmask sockaddr)."""
        self.jail_attach: Callable[[int], object] = lambda jid: self.calls.append(
            ("jail_attach", jid)
        )
        self._keep: list[Any] = []

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        raw = ctypes.string_at(arg, IFREQ_SIZE)
        self.calls.append(("ioctl", request, raw))
        if request == abi.SIOCGIFFLAGS:
            name = raw[:16].rstrip(b"\0").decode()
            if name not in self.flags:
                raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), "ioctl")
            value = self.flags[name]
            ctypes.memmove(arg + 16, struct.pack("<HH", value & 0xFFFF, value >> 16), 4)
        elif request == abi.SIOCGIFCAP:
            name = raw[:16].rstrip(b"\0").decode()
            ctypes.memmove(arg + 16, struct.pack("<ii", *self.caps[name]), 8)
        elif request == abi.SIOCSIFCAP:
            name = raw[:16].rstrip(b"\0").decode()
            (wanted,) = struct.unpack("<i", raw[16:20])
            supported, _ = self.caps[name]
            if wanted & ~supported:  # ifhwioctl, sys/net/if.c
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), "ioctl")
            self.caps[name] = (supported, wanted)
        elif request == abi.SIOCSIFFLAGS:
            name = raw[:16].rstrip(b"\0").decode()
            low, high = struct.unpack("<HH", raw[16:20])
            self.flags[name] = low | high << 16
        return 0

    def jail_get(self, iov_addr: int, niov: int, flags: int) -> int:
        iov = (abi.Iovec * niov).from_address(iov_addr)
        params = {ctypes.string_at(iov[i].iov_base).decode(): iov[i + 1] for i in range(0, niov, 2)}
        self.calls.append(("jail_get", tuple(params), flags))

        def read_int(key: str) -> int:
            value: int = struct.unpack("<i", ctypes.string_at(params[key].iov_base, 4))[0]
            return value

        if "lastjid" in params:
            lastjid = read_int("lastjid")
            match = [j for j in self.jails if j.jid > lastjid]
        elif "jid" in params:
            match = [j for j in self.jails if j.jid == read_int("jid")]
        else:
            wanted = ctypes.string_at(params["name"].iov_base).decode()
            match = [j for j in self.jails if j.name == wanted]
        if not flags & abi.JAIL_DYING:
            match = [j for j in match if not j.dying]
        if not match:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), "jail_get")
        jail = match[0]
        if "jid" in params:
            ctypes.memmove(params["jid"].iov_base, struct.pack("<i", jail.jid), 4)
        ctypes.memmove(params["name"].iov_base, jail.name.encode() + b"\0", len(jail.name) + 1)
        ctypes.memmove(params["dying"].iov_base, struct.pack("<i", int(jail.dying)), 4)
        return jail.jid

    def sysctlbyname(
        self, name: bytes, old: int | None, oldlen: Any, new: None, newlen: int
    ) -> int:
        if name not in self.sysctls:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), "sysctlbyname")
        value = self.sysctls[name]
        size = ctypes.cast(oldlen, ctypes.POINTER(ctypes.c_size_t))
        if old is not None:
            ctypes.memmove(old, value, len(value))
        size.contents.value = len(value)
        return 0

    def modfind(self, name: bytes) -> int:
        self.calls.append(("modfind", name))
        if name.decode() not in self.modules:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), "modfind")
        return 1

    def kldload(self, name: bytes) -> int:
        self.calls.append(("kldload", name))
        if name.decode() not in self.loadable:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), "kldload")
        self.modules.add(name.decode())
        return 5

    def getifaddrs(self, head: Any) -> int:
        nodes = []
        for name, mac, if_flags in self.links:
            nlen, alen = len(name), len(mac or b"")
            sdl = bytes([8 + nlen + alen, abi.AF_LINK, 1, 0, 6, nlen, alen, 0])
            sdl_buf = ctypes.create_string_buffer(sdl + name.encode() + (mac or b""), 54)
            name_buf = ctypes.create_string_buffer(name.encode())
            node = abi.Ifaddrs()
            node.ifa_name = ctypes.cast(name_buf, ctypes.c_char_p).value
            node.ifa_flags = if_flags
            node.ifa_addr = ctypes.addressof(sdl_buf)
            self._keep += [sdl_buf, name_buf, node]
            nodes.append(node)
        for name, addr, netmask in self.inet:
            name_buf = ctypes.create_string_buffer(name.encode())
            addr_buf = ctypes.create_string_buffer(addr, len(addr))
            node = abi.Ifaddrs()
            node.ifa_name = ctypes.cast(name_buf, ctypes.c_char_p).value
            node.ifa_addr = ctypes.addressof(addr_buf)
            if netmask is not None:
                mask_buf = ctypes.create_string_buffer(netmask, max(len(netmask), 1))
                node.ifa_netmask = ctypes.addressof(mask_buf)
                self._keep.append(mask_buf)
            self._keep += [addr_buf, name_buf, node]
            nodes.append(node)
        for node, following in itertools.pairwise(nodes):
            node.ifa_next = ctypes.pointer(following)
        ctypes.cast(head, ctypes.POINTER(ctypes.c_void_p)).contents.value = (
            ctypes.addressof(nodes[0]) if nodes else None
        )
        return 0

    def freeifaddrs(self, head: Any) -> None:
        self.calls.append(("freeifaddrs",))

    def ioctls(self) -> list[tuple[int, bytes]]:
        return [(call[1], call[2]) for call in self.calls if call[0] == "ioctl"]


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> RecordingLibc:
    fake = RecordingLibc()
    monkeypatch.setattr(_libc, "libc", lambda: fake)
    return fake


@pytest.fixture
def plat(tmp_path: Path) -> freebsd.FreeBSDPlatform:
    return freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "run"))


def ifreq_bytes(name: str, jid: int) -> bytes:
    return name.encode().ljust(16, b"\0") + struct.pack("<i", jid) + bytes(12)


async def test_move_of_a_down_ifnet_reads_flags_then_issues_sifvnet(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.flags["em1"] = 0x8842  # not UP: nothing to restore inside the jail
    await plat.move_ifnet("em1", 7)
    assert [request for request, _ in libc.ioctls()] == [0xC0206911, 0xC020695A]
    assert libc.ioctls()[1] == (0xC020695A, ifreq_bytes("em1", 7))


async def test_move_of_an_up_ifnet_raises_it_again_inside_the_jail(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # if_vmove → if_detach_internal → if_down (sys/net/if.c@d87a5f2a): the kernel delivers
    # it down, so the platform brings it up in the jail's vnet (a jail_attach-ing child).
    libc.flags["em1"] = 0x8843
    monkeypatch.setattr(
        freebsd_ifnet, "UP_CHILD", "import sys; assert sys.argv[1:] == ['7', 'em1'], sys.argv"
    )
    await plat.move_ifnet("em1", 7)
    assert [request for request, _ in libc.ioctls()] == [0xC0206911, 0xC020695A]


async def test_move_of_an_up_ifnet_reports_the_childs_errno(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    libc.flags["em1"] = 0x8843
    monkeypatch.setattr(
        freebsd_ifnet, "UP_CHILD", "import sys; sys.stdout.write('{\"errno\": 22}'); sys.exit(3)"
    )
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EINVAL):
        await plat.move_ifnet("em1", 7)


async def test_move_of_a_missing_ifnet_is_enxio_before_sifvnet(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.ENXIO):
        await plat.move_ifnet("em9", 7)
    assert [request for request, _ in libc.ioctls()] == [0xC0206911]


def test_up_child_attaches_then_sets_iff_up(
    libc: RecordingLibc, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    attached: list[int] = []
    libc.jail_attach = attached.append
    libc.flags["em1"] = 0x8842
    assert freebsd_ifnet.raise_ifnet_in_jail(7, "em1") == 0
    assert attached == [7]
    assert libc.ioctls()[-1] == (
        0x80206910,
        b"em1".ljust(16, b"\0") + struct.pack("<HH", 0x8843, 0) + bytes(12),
    )
    assert capsysbinary.readouterr().out == b""


def test_up_child_reports_the_attach_errno(
    libc: RecordingLibc, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    def refuse(jid: int) -> int:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), "jail_attach")

    libc.jail_attach = refuse
    assert freebsd_ifnet.raise_ifnet_in_jail(7, "em1") == freebsd_ifnet.CHILD_ERRNO_STATUS
    assert msgspec.json.decode(capsysbinary.readouterr().out) == {"errno": errno.EINVAL}
    assert libc.ioctls() == []


async def test_reclaim_ifnet_issues_sifrvnet(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    await plat.reclaim_ifnet("em1", 7)
    assert libc.ioctls() == [(0xC020695B, ifreq_bytes("em1", 7))]


async def test_move_refuses_a_bad_name_before_any_syscall(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    # an OSError like the kernel's, never ValueError: the platform raises only OSError
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.ENAMETOOLONG):
        await plat.move_ifnet("a-very-long-ifname0", 7)
    assert libc.calls == []


async def test_rename_issues_sifname(libc: RecordingLibc, plat: freebsd.FreeBSDPlatform) -> None:
    await plat.rename_ifnet("ngeth0", "ng0_web")
    [(request, raw)] = libc.ioctls()
    assert request == 0x80206928
    assert raw[:16] == b"ngeth0".ljust(16, b"\0")


async def test_set_up_reads_flags_then_adds_iff_up(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.flags["ng0_web"] = 0x00028842  # BROADCAST|SIMPLEX|MULTICAST, high bits set, not UP
    await plat.set_ifnet_up("ng0_web")
    get, put = libc.ioctls()
    assert get[0] == 0xC0206911
    assert put == (
        0x80206910,
        b"ng0_web".ljust(16, b"\0") + struct.pack("<HH", 0x8843, 2) + bytes(12),
    )


async def test_set_up_leaves_an_up_interface_alone(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.flags["em0"] = 0x8843
    await plat.set_ifnet_up("em0")
    assert [request for request, _ in libc.ioctls()] == [0xC0206911]


async def test_set_up_of_missing_interface_raises_enxio(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.ENXIO):
        await plat.set_ifnet_up("em9")


async def test_list_jails_walks_lastjid_including_dying(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.jails = [JailInfo(jid=2, name="web"), JailInfo(jid=5, name="db", dying=True)]
    assert await plat.list_jails() == libc.jails
    walks = [call for call in libc.calls if call[0] == "jail_get"]
    assert len(walks) == 3  # two jails, then ENOENT ends the walk
    assert all(call[2] == abi.JAIL_DYING for call in walks)
    assert walks[0][1] == ("lastjid", "jid", "name", "dying", "errmsg")


async def test_host_uuid_strips_the_nul(libc: RecordingLibc, plat: freebsd.FreeBSDPlatform) -> None:
    libc.sysctls[b"kern.hostuuid"] = b"3a0b4e1c-0000-4000-8000-0123456789ab\0"
    assert await plat.host_uuid() == "3a0b4e1c-0000-4000-8000-0123456789ab"


async def test_boot_id_is_kern_boottime(libc: RecordingLibc, plat: freebsd.FreeBSDPlatform) -> None:
    # struct timeval on 64-bit FreeBSD: time_t tv_sec, long tv_usec (sys/_timeval.h)
    libc.sysctls[b"kern.boottime"] = (1733300000).to_bytes(8, sys.byteorder) + (42).to_bytes(
        8, sys.byteorder
    )
    assert await plat.boot_id() == "kern.boottime=1733300000.000042"


async def test_list_ifnets_on_host_reads_af_link(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.links = [("lo0", None, 0x8049), ("em0", bytes.fromhex("0200271b1e18"), 0x8842)]
    assert await plat.list_ifnets() == [
        IfnetInfo(name="lo0", mac=None, up=True),
        IfnetInfo(name="em0", mac="02:00:27:1b:1e:18", up=False),
    ]
    assert ("freeifaddrs",) in libc.calls


def sockaddr_in(address: str, size: int = 16) -> bytes:
    """struct sockaddr_in, sin_len ``size`` (the routing socket shortens netmasks)."""
    return (bytes([size, abi.AF_INET, 0, 0]) + socket.inet_aton(address) + bytes(8))[:size]


def sockaddr_in6(address: str, scope_id: int = 0, size: int = 28) -> bytes:
    raw = bytes([size, abi.AF_INET6]) + bytes(6) + socket.inet_pton(socket.AF_INET6, address)
    return (raw + struct.pack("<I", scope_id))[:size]


async def test_list_ifnets_reads_inet_and_inet6_addresses_with_their_prefixes(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.links = [("em0", bytes.fromhex("0200271b1e18"), 1), ("em1", bytes(6), 1)]
    embedded = bytearray(socket.inet_pton(socket.AF_INET6, "fe80::1"))
    embedded[3] = 2  # KAME form: the zone (if_index 2) inside the address
    libc.inet = [
        ("em0", sockaddr_in("192.0.2.10"), sockaddr_in("255.255.255.0", size=7)),
        ("em0", sockaddr_in("198.51.100.1"), sockaddr_in("255.255.255.255")),
        ("em0", sockaddr_in6("2001:db8::10"), sockaddr_in6("ffff:ffff:ffff:ffff::", size=16)),
        (
            "em0",
            bytes([28, abi.AF_INET6]) + bytes(6) + bytes(embedded) + bytes(4),
            sockaddr_in6("ffff:ffff:ffff:ffff::", size=16),
        ),
        ("em1", sockaddr_in6("fe80::2", scope_id=3), None),
    ]
    assert await plat.list_ifnets() == [
        IfnetInfo(
            name="em0",
            mac="02:00:27:1b:1e:18",
            up=True,
            addresses=("192.0.2.10/24", "198.51.100.1/32", "2001:db8::10/64", "fe80::1/64"),
        ),
        IfnetInfo(name="em1", mac="00:00:00:00:00:00", up=True, addresses=("fe80::2/128",)),
    ]


async def test_locate_finds_a_host_nic_without_asking_jails(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.links = [("em1", bytes(6), 1)]
    assert await plat.locate_ifnet("em1") == HOST_JID
    assert not [call for call in libc.calls if call[0] == "jail_get"]


async def test_locate_skips_dying_jails(libc: RecordingLibc, plat: freebsd.FreeBSDPlatform) -> None:
    libc.jails = [JailInfo(jid=5, name="db", dying=True)]
    assert await plat.locate_ifnet("em1") is None


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "freebsd14")
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.mark.usefixtures("root")
async def test_preflight_loads_only_missing_modules(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.sysctls[b"kern.features.vimage"] = struct.pack("=i", 1)
    libc.modules = {"netgraph", "ng_socket", "ng_bridge", "ng_eiface"}
    libc.loadable = {"ng_ether"}
    await plat.preflight()
    assert [call for call in libc.calls if call[0] == "kldload"] == [("kldload", b"ng_ether")]


@pytest.mark.usefixtures("root")
async def test_preflight_without_vimage_fails(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.sysctls[b"kern.features.vimage"] = struct.pack("=i", 0)
    with pytest.raises(PlatformError) as info:
        await plat.preflight()
    assert info.value.code == "platform"
    assert "VIMAGE" in str(info.value)


@pytest.mark.usefixtures("root")
async def test_preflight_names_the_module_it_cannot_load(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    libc.sysctls[b"kern.features.vimage"] = struct.pack("=i", 1)
    libc.modules = {"netgraph", "ng_socket"}
    with pytest.raises(PlatformError, match="ng_ether_load"):
        await plat.preflight()


async def test_preflight_refuses_non_root(
    monkeypatch: pytest.MonkeyPatch, libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    monkeypatch.setattr(sys, "platform", "freebsd14")
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    with pytest.raises(PlatformError, match="root"):
        await plat.preflight()
    assert libc.calls == []


async def test_preflight_off_freebsd_says_which_platform_to_use(
    monkeypatch: pytest.MonkeyPatch, libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(PlatformError, match="--platform sim"):
        await plat.preflight()
    assert libc.calls == []


def test_jail_conf_for_own_root_mounts_devfs() -> None:
    spec = JailSpec(
        name="web",
        path="/jails/web",
        hostname="web.example.org",
        devfs_ruleset=11,
        parameters=("allow.raw_sockets", 'exec.consolelog=/var/log/a "b" $x'),
    )
    assert freebsd_jailconf.jail_conf(spec) == (
        "web {\n"
        '\tpath = "/jails/web";\n'
        '\thost.hostname = "web.example.org";\n'
        "\tvnet;\n"
        "\tpersist;\n"
        "\tmount.devfs;\n"
        "\tdevfs_ruleset = 11;\n"
        "\tallow.raw_sockets;\n"
        '\texec.consolelog = "/var/log/a \\"b\\" \\$x";\n'
        "}\n"
    )


def test_jail_conf_on_host_root_does_not_mount_devfs() -> None:
    assert "mount.devfs" not in freebsd_jailconf.jail_conf(JailSpec(name="db", hostname="db"))


@pytest.mark.parametrize(
    "parameters",
    [("persist",), ("allow.raw_sockets", "allow.raw_sockets"), ("Bad-Key=1",), ("a=b\nc",)],
)
def test_jail_conf_refuses_bad_parameters(parameters: tuple[str, ...]) -> None:
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EINVAL):
        freebsd_jailconf.jail_conf(JailSpec(name="db", hostname="db", parameters=parameters))


@pytest.mark.parametrize("name", ["1web", "w" * 32, "web-1", ""])
def test_jail_conf_refuses_a_bad_name_with_einval_not_valueerror(name: str) -> None:
    # issue 12: jail_conf('1web') raised ValueError, which no caller of a platform expects
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EINVAL):
        freebsd_jailconf.jail_conf(JailSpec(name=name, hostname="h"))


def fake_jail_tool(tmp_path: Path, *, status: int) -> Path:
    """A jail(8) stand-in: records its argv and the conf it was given, prints a jid."""
    tool = tmp_path / "jail"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/argv"\n'
        f'[ "$1" = -i ] && cat "$3" > "{tmp_path}/conf.seen"\n'
        f"[ {status} -ne 0 ] && echo 'jail: db: some failure' >&2 && exit {status}\n"
        "echo 12\n"
    )
    tool.chmod(0o755)
    return tool


async def test_create_jail_runs_jail_with_the_generated_conf(
    libc: RecordingLibc, tmp_path: Path
) -> None:
    tool = fake_jail_tool(tmp_path, status=0)
    plat = freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "run"), jail_command=str(tool))
    spec = JailSpec(name="db", hostname="db")
    assert await plat.create_jail(spec) == 12
    conf = tmp_path / "run" / "jail.db.conf"
    assert (tmp_path / "argv").read_text() == f"-i -f {conf} -c db\n"
    assert (tmp_path / "conf.seen").read_text() == freebsd_jailconf.jail_conf(spec)
    assert conf.exists()  # kept for jail -r


async def test_create_jail_failure_leaves_no_conf(libc: RecordingLibc, tmp_path: Path) -> None:
    tool = fake_jail_tool(tmp_path, status=1)
    plat = freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "run"), jail_command=str(tool))
    with pytest.raises(OSError, match="some failure") as info:
        await plat.create_jail(JailSpec(name="db", hostname="db"))
    assert info.value.errno == errno.EIO
    assert list((tmp_path / "run").iterdir()) == []


async def test_create_jail_with_taken_name_is_eexist(libc: RecordingLibc, tmp_path: Path) -> None:
    tool = fake_jail_tool(tmp_path, status=0)
    plat = freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "run"), jail_command=str(tool))
    libc.jails = [JailInfo(jid=3, name="db", dying=False)]
    with pytest.raises(FileExistsError):
        await plat.create_jail(JailSpec(name="db", hostname="db"))
    assert not (tmp_path / "argv").exists()


async def test_create_jail_beside_a_dying_namesake_runs_jail(
    libc: RecordingLibc, tmp_path: Path
) -> None:
    # kern_jail.c@002c06d2 kern_jail_set: a dying sibling does not hold the name.
    tool = fake_jail_tool(tmp_path, status=0)
    plat = freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "run"), jail_command=str(tool))
    libc.jails = [JailInfo(jid=3, name="db", dying=True)]
    assert await plat.create_jail(JailSpec(name="db", hostname="db")) == 12


async def test_remove_jail_uses_the_conf_then_drops_it(libc: RecordingLibc, tmp_path: Path) -> None:
    tool = fake_jail_tool(tmp_path, status=0)
    plat = freebsd.FreeBSDPlatform(run_dir=str(tmp_path / "run"), jail_command=str(tool))
    await plat.create_jail(JailSpec(name="db", hostname="db"))
    libc.jails = [JailInfo(jid=12, name="db")]
    await plat.remove_jail(12)
    conf = tmp_path / "run" / "jail.db.conf"
    assert (tmp_path / "argv").read_text().splitlines()[-1] == f"-f {conf} -r db"
    assert not conf.exists()


async def test_remove_unknown_jid_is_enoent(
    libc: RecordingLibc, plat: freebsd.FreeBSDPlatform
) -> None:
    with pytest.raises(FileNotFoundError):
        await plat.remove_jail(99)


@pytest.fixture
def jexec_here(tmp_path: Path) -> freebsd.FreeBSDPlatform:
    jexec = tmp_path / "jexec"
    jexec.write_text('#!/bin/sh\nshift\nexec "$@"\n')  # drop the jid, run the rest here
    jexec.chmod(0o755)
    return freebsd.FreeBSDPlatform(run_dir=str(tmp_path), jexec_command=str(jexec))


async def test_exec_in_jail_returns_the_exit_status(
    libc: RecordingLibc, jexec_here: freebsd.FreeBSDPlatform
) -> None:
    libc.jails = [JailInfo(jid=4, name="web")]
    assert await jexec_here.exec_in_jail(4, "exit 3") == 3


async def test_exec_in_missing_or_dying_jail_is_an_error_not_a_status(
    libc: RecordingLibc, jexec_here: freebsd.FreeBSDPlatform
) -> None:
    with pytest.raises(FileNotFoundError):
        await jexec_here.exec_in_jail(4, "true")
    libc.jails = [JailInfo(jid=4, name="web", dying=True)]
    with pytest.raises(ProcessLookupError):
        await jexec_here.exec_in_jail(4, "true")


def test_create_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match="socket"):
        freebsd.create(socket="/tmp/x")


def test_create_keeps_jail_confs_under_the_state_dir() -> None:
    assert str(freebsd.create(state_dir="/var/db/vimaged").run_dir) == "/var/db/vimaged/jails"


def test_create_makes_no_syscall(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise AssertionError("libc loaded at create()")

    monkeypatch.setattr(_libc, "libc", boom)
    assert freebsd.create(run_dir="/nonexistent").name == "freebsd"


class RecordingBridges:
    """Stands in for NetgraphBridges: keeps its constructor arguments and calls."""

    def __init__(
        self, open_transport: Any, rename_ifnet: Any, set_ifnet_up: Any, **options: Any
    ) -> None:
        self.wiring = (open_transport, rename_ifnet, set_ifnet_up)
        self.options = options
        self.calls: list[tuple[str, ...]] = []

    async def create(self, parent: str, ifname: str, mac: str) -> None:
        self.calls.append(("create", parent, ifname, mac))

    async def aclose(self) -> None:
        self.calls.append(("aclose",))


async def test_bridged_ifnets_go_to_netgraph_with_the_platforms_ioctls(
    monkeypatch: pytest.MonkeyPatch, plat: freebsd.FreeBSDPlatform
) -> None:
    from vimaged.platforms import netgraph_bridges as bridges

    made: list[RecordingBridges] = []

    def factory(*args: Any, **options: Any) -> RecordingBridges:
        made.append(RecordingBridges(*args, **options))
        return made[-1]

    monkeypatch.setattr(bridges, "NetgraphBridges", factory)
    await plat.create_bridged_ifnet("em0", "ng0_web", "02:00:00:00:00:01")
    await plat.aclose()
    await plat.aclose()
    [ng] = made
    assert ng.wiring[1] == plat.rename_ifnet
    assert ng.wiring[2] == plat.set_ifnet_up
    assert ng.options["bridge_mode"] == "classic"
    assert ng.options["parents"].directory == plat.run_dir / "parents"
    assert ng.calls == [("create", "em0", "ng0_web", "02:00:00:00:00:01"), ("aclose",)]
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EBADF):
        await plat.create_bridged_ifnet("em0", "ng1_web", "02:00:00:00:00:02")


def test_child_attaches_then_reports_the_jails_ifnets(
    libc: RecordingLibc, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    attached: list[int] = []
    libc.jail_attach = attached.append
    libc.links = [("ng0_web", bytes.fromhex("020000000001"), 1)]
    assert freebsd_ifnet.report_ifnets_in_jail(7) == 0
    assert attached == [7]
    assert msgspec.json.decode(capsysbinary.readouterr().out, type=list[IfnetInfo]) == [
        IfnetInfo(name="ng0_web", mac="02:00:00:00:00:01", up=True)
    ]


def test_child_reports_the_attach_errno(
    libc: RecordingLibc, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    def refuse(jid: int) -> int:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), "jail_attach")

    libc.jail_attach = refuse
    assert freebsd_ifnet.report_ifnets_in_jail(7) == freebsd_ifnet.CHILD_ERRNO_STATUS
    assert msgspec.json.decode(capsysbinary.readouterr().out) == {"errno": errno.EINVAL}


@pytest.mark.parametrize(
    ("child", "expected_errno"),
    [
        ("import sys; sys.stdout.write('{\"errno\": 22}'); sys.exit(3)", errno.EINVAL),
        ("raise SystemExit('broken')", errno.EIO),
    ],
)
async def test_list_ifnets_in_jail_turns_child_failures_into_oserror(
    monkeypatch: pytest.MonkeyPatch,
    plat: freebsd.FreeBSDPlatform,
    child: str,
    expected_errno: int,
) -> None:
    monkeypatch.setattr(freebsd_ifnet, "CHILD", child)
    with pytest.raises(OSError, check=lambda exc: exc.errno == expected_errno):
        await plat.list_ifnets(7)


async def test_list_ifnets_in_jail_decodes_the_childs_list(
    monkeypatch: pytest.MonkeyPatch, plat: freebsd.FreeBSDPlatform
) -> None:
    listing = '[{"name": "em1", "mac": "02:00:00:00:00:09", "up": true}]'
    monkeypatch.setattr(freebsd_ifnet, "CHILD", f"import sys; sys.stdout.write({listing!r})")
    assert await plat.list_ifnets(7) == [IfnetInfo(name="em1", mac="02:00:00:00:00:09", up=True)]


@pytest.mark.parametrize(
    ("request_code", "expected"),
    [
        # _IOW('i', 30, struct ifreq) and _IOWR('i', 31, struct ifreq), sys/sys/sockio.h
        pytest.param(abi.SIOCSIFCAP, 0x8020691E, id="SIOCSIFCAP"),
        pytest.param(abi.SIOCGIFCAP, 0xC020691F, id="SIOCGIFCAP"),
    ],
)
def test_capability_ioctl_numbers(request_code: int, expected: int) -> None:
    assert request_code == expected


def test_ifreq_caps_puts_reqcap_first_in_the_union() -> None:
    # struct ifreq: ifr_reqcap is ifr_ifru.ifru_cap[0], ifr_curcap ifru_cap[1] (sys/net/if.h)
    raw = bytes(abi.ifreq_caps("em0", 0x40301))
    assert raw == b"em0".ljust(16, b"\0") + struct.pack("<i", 0x40301) + bytes(12)
    req = abi.Ifreq.from_buffer_copy(b"em0".ljust(16, b"\0") + struct.pack("<ii", 7, 5) + bytes(8))
    assert abi.ifreq_get_caps(req) == (7, 5)


def test_create_takes_the_bridge_mode() -> None:
    assert freebsd.create(run_dir="/x", bridge_mode="uplink").bridge_mode == "uplink"
    assert freebsd.create(run_dir="/x").bridge_mode == "classic"
    with pytest.raises(ValueError, match="bridge_mode"):
        freebsd.create(run_dir="/x", bridge_mode="hub")


async def test_host_nic_ops_read_and_set_up_and_capabilities(libc: RecordingLibc) -> None:
    from vimaged.platforms import parent_nics as parents

    ops = freebsd_ifnet.HostNicOps()
    libc.flags["em1"] = 0x8842  # not up
    every = parents.BRIDGED_OFFLOADS_OFF | 0x3  # + RXCSUM|TXCSUM
    libc.caps["em1"] = (every, every)
    assert not await ops.is_up("em1")
    await ops.set_up("em1", True)
    assert libc.flags["em1"] == 0x8843
    assert await ops.capabilities("em1") == (every, every)
    await ops.set_capabilities("em1", 0x3)
    assert libc.caps["em1"] == (every, 0x3)
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EINVAL):
        await ops.set_capabilities("em1", 0x80000000)
    await ops.set_up("em1", False)
    assert libc.flags["em1"] == 0x8842
