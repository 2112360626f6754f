"""The attachments owner over a recording fake platform: journal order, rollback, cancellation,
reconciliation, GC and the refusals that come before any kernel call."""

from __future__ import annotations

import errno
import os
from collections import defaultdict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
import trio

from vimaged.attachments import AttachmentJournal, Attachments, host_ifname
from vimaged.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OperationFailedError,
    VimagedError,
)
from vimaged.events import EventHub
from vimaged.platforms import IfnetInfo, SandboxIfnet
from vimaged.protocol import CniAdd, CniAttachmentKey, CniCheck, CniDel, CniGc, CniRoute

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.unit

UUID = "00000000-0000-0000-0000-000000000001"


class FakePlatform:
    """Only what attachments.py calls; a sandbox is a dict of interfaces by name."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sandboxes: dict[str, dict[str, IfnetInfo]] = {"/run/netns/a": {}, "/run/netns/b": {}}
        self.fail_create: OSError | None = None
        self.block_create = False
        self.entered = trio.Event()
        self.phase_seen: list[str] = []
        self.journal: AttachmentJournal | None = None

    async def host_uuid(self) -> str:
        return UUID

    async def list_ifnets(self, jid: int = 0) -> list[IfnetInfo]:
        return [IfnetInfo(name="eth9"), IfnetInfo(name="lo0")]

    async def create_in_sandbox(self, want: SandboxIfnet) -> None:
        ifname, mac, sandbox, newname = want.ifname, want.mac, want.sandbox, want.newname
        self.calls.append(f"create {ifname} {sandbox} {newname}")
        assert self.journal is not None
        self.phase_seen += [a.state for a in await self.journal.load()]
        if self.block_create:
            self.entered.set()
            await trio.sleep_forever()
        if self.fail_create is not None:
            raise self.fail_create
        if sandbox not in self.sandboxes:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), sandbox)
        addresses = want.addresses
        self.sandboxes[sandbox][newname] = IfnetInfo(name=newname, mac=mac, up=True,
                                                     addresses=addresses,
                                                     routes=want.routes)  # fmt: skip

    async def destroy_bridged_ifnet(self, ifname: str) -> None:
        self.calls.append(f"destroy {ifname}")
        raise FileNotFoundError(errno.ENOENT, "no such node", ifname)

    async def release_bridge(self, parent: str) -> bool:
        return False

    async def sandbox_ifnet(self, sandbox: str, ifname: str) -> IfnetInfo | None:
        return self.sandboxes.get(sandbox, {}).get(ifname)

    async def detach_from_sandbox(self, sandbox: str, ifname: str, mac: str) -> None:
        self.calls.append(f"detach {sandbox} {ifname}")
        info = self.sandboxes.get(sandbox, {}).get(ifname)
        if info is None or info.mac != mac:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), ifname)
        del self.sandboxes[sandbox][ifname]


def supervisor(vimages: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(
        stopping=False, events=EventHub(), vimages=vimages or {},
        _parent_locks=defaultdict(trio.Lock), attachment_ifnets=set(),
    )  # fmt: skip


@pytest.fixture
async def owner(tmp_path: Path) -> AsyncIterator[tuple[Attachments, FakePlatform]]:
    plat = FakePlatform()
    atts = await Attachments.open(str(tmp_path), supervisor(), plat)  # type: ignore[arg-type]
    plat.journal = atts._journal
    try:
        yield atts, plat
    finally:
        await atts.aclose()


def add(cid: str = "c1", sandbox: str = "/run/netns/a", **kw: Any) -> CniAdd:
    return CniAdd(network="lan", container_id=cid, ifname="eth0", sandbox=sandbox,
                  parent="eth9", **kw)  # fmt: skip


async def test_add_journals_the_intent_first_and_check_del(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, plat = owner
    att = await atts.add(add(addresses=("10.0.0.2/24",)))
    assert plat.phase_seen == ["attaching"]  # the row existed, as intent, during the create
    assert att.state == "attached"
    assert [a.state for a in await atts._journal.load()] == ["attached"]
    checked = await atts.check(CniCheck(network="lan", container_id="c1", ifname="eth0",
                                        addresses=("10.0.0.2/24",)))  # fmt: skip
    assert checked.addresses == ("10.0.0.2/24",)
    with pytest.raises(VimagedError):
        await atts.check(CniCheck(network="lan", container_id="c1", ifname="eth0",
                                  addresses=("10.0.0.3/24",)))  # fmt: skip
    removed = await atts.delete(CniDel(network="lan", container_id="c1", ifname="eth0"))
    assert [a.container_id for a in removed] == ["c1"]
    assert await atts.delete(CniDel(network="lan", container_id="c1", ifname="eth0")) == []
    assert plat.sandboxes["/run/netns/a"] == {}
    assert await atts._journal.load() == []


async def test_a_failed_add_forgets_its_intent(owner: tuple[Attachments, FakePlatform]) -> None:
    atts, plat = owner
    plat.fail_create = OSError(errno.EEXIST, os.strerror(errno.EEXIST), "eth0")
    with pytest.raises(FileExistsError):
        await atts.add(add())
    assert await atts._journal.load() == []
    assert atts.list() == []
    assert f"destroy {host_ifname('lan', 'c1', 'eth0')}" in plat.calls  # whatever was left
    plat.fail_create = None
    await atts.add(add())  # the name is free again


async def test_a_cancelled_add_leaves_nothing(owner: tuple[Attachments, FakePlatform]) -> None:
    atts, plat = owner
    plat.block_create = True
    scope = trio.CancelScope()

    async def adding() -> None:
        with scope:
            await atts.add(add())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(adding)
        await plat.entered.wait()  # inside the kernel call, the intent journaled
        scope.cancel()
    assert scope.cancelled_caught
    assert await atts._journal.load() == []
    assert atts._sup.attachment_ifnets == set()


async def test_reconcile_removes_what_an_intent_names(tmp_path: Path) -> None:
    plat = FakePlatform()
    sup = supervisor()
    atts = await Attachments.open(str(tmp_path), sup, plat)  # type: ignore[arg-type]
    plat.journal = atts._journal
    await atts.add(add("c1"))
    await atts.add(add("c2", sandbox="/run/netns/b"))
    # A daemon killed during c2's DEL: its row is back to intent.
    [c2] = [a for a in atts.list() if a.container_id == "c2"]
    await atts._journal.save(c2.__class__(**{**{f: getattr(c2, f) for f in c2.__struct_fields__},
                                             "state": "attaching"}))  # fmt: skip
    await atts.aclose()
    again = await Attachments.open(str(tmp_path), supervisor(), plat)  # type: ignore[arg-type]
    try:
        assert again._sup.attachment_ifnets == {a.host_ifname for a in again.list()}
        await again.reconcile()
        assert [a.container_id for a in again.list()] == ["c1"]
        assert plat.sandboxes["/run/netns/b"] == {}
        assert "eth0" in plat.sandboxes["/run/netns/a"]
    finally:
        await again.aclose()


async def test_gc_keeps_only_the_valid(owner: tuple[Attachments, FakePlatform]) -> None:
    atts, _ = owner
    await atts.add(add("c1"))
    await atts.add(add("c2", sandbox="/run/netns/b"))
    other = CniAdd(network="wan", container_id="c3", ifname="eth1", sandbox="/run/netns/a",
                   parent="eth9")  # fmt: skip
    await atts.add(other)
    keep = (CniAttachmentKey(container_id="c1", ifname="eth0"),)
    removed = await atts.gc(CniGc(network="lan", valid=keep))
    assert [a.container_id for a in removed] == ["c2"]
    assert sorted(a.container_id for a in atts.list()) == ["c1", "c3"]  # wan is not lan's


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (add(mtu=67), InvalidRequestError),
        (add(mtu=70000), InvalidRequestError),
        (add(addresses=("10.0.0.2",)), InvalidRequestError),
        (add(addresses=("10.0.0.300/24",)), InvalidRequestError),
        (add(addresses=tuple(f"10.0.{i}.2/24" for i in range(65))), InvalidRequestError),
        (add(routes=(CniRoute(dst="0.0.0.0/0", gw="10.0.0.x"),)), InvalidRequestError),
        (add(mac="01:00:5e:00:00:01"), InvalidRequestError),
        (add(mac="nonsense"), InvalidRequestError),
        (add(sandbox="web"), InvalidRequestError),
        (
            CniAdd(
                network="lan",
                container_id="c1",
                ifname="eth0",
                sandbox="/run/netns/a",
                parent="em7",
            ),
            NotFoundError,
        ),
    ],
)
async def test_refusals_come_before_any_kernel_call(
    tmp_path: Path, request_: CniAdd, error: type[Exception]
) -> None:
    plat = FakePlatform()
    web = SimpleNamespace(name="web", jid=7, cfg=SimpleNamespace(vnets=("em1",)))
    atts = await Attachments.open(str(tmp_path), supervisor({"web": web}), plat)  # type: ignore[arg-type]
    try:
        with pytest.raises(error):
            await atts.add(request_)
        assert plat.calls == []
        assert await atts._journal.load() == []
    finally:
        await atts.aclose()


async def test_a_second_add_of_one_attachment_conflicts(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, _ = owner
    await atts.add(add())
    with pytest.raises(ConflictError):
        await atts.add(add(sandbox="/run/netns/b"))


# -- CHECK compares routes (the CNI spec's CHECK: prevResult's routes must be there) --------

ROUTES = (
    CniRoute(dst="0.0.0.0/0", gw="10.0.0.1"),
    CniRoute(dst="::/0", gw="2001:db8::1"),
    CniRoute(dst="198.51.100.0/24"),
)


def check(*routes: CniRoute) -> CniCheck:
    return CniCheck(network="lan", container_id="c1", ifname="eth0", routes=routes)


def set_routes(plat: FakePlatform, *routes: tuple[str, str | None]) -> None:
    info = plat.sandboxes["/run/netns/a"]["eth0"]
    plat.sandboxes["/run/netns/a"]["eth0"] = msgspec.structs.replace(info, routes=routes)


async def test_check_passes_with_the_routes_present_and_more_besides(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, plat = owner
    await atts.add(add(addresses=("10.0.0.2/24",), routes=ROUTES))
    set_routes(plat, ("10.0.0.0/24", None), *plat.sandboxes["/run/netns/a"]["eth0"].routes)
    assert (await atts.check(check(*ROUTES))).state == "attached"
    assert (await atts.check(check())).state == "attached"  # no routes asked: none compared


async def test_check_fails_when_a_route_is_absent(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, plat = owner
    await atts.add(add(addresses=("10.0.0.2/24",), routes=ROUTES))
    set_routes(plat, ("0.0.0.0/0", "10.0.0.1"), ("::/0", "2001:db8::1"))
    with pytest.raises(OperationFailedError) as failed:
        await atts.check(check(*ROUTES))
    assert failed.value.code == "failed"
    assert "198.51.100.0/24 on-link" in str(failed.value)  # names the missing route


async def test_check_compares_a_default_route_normalized(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, plat = owner
    await atts.add(add(addresses=("10.0.0.2/24",)))
    set_routes(plat, ("0.0.0.0/0", "10.0.0.1"), ("::/0", "2001:db8:0:0::1"))
    spelled = (CniRoute(dst="0.0.0.0/0", gw="10.0.0.1"), CniRoute(dst="::0/0", gw="2001:db8::1"))
    assert (await atts.check(check(*spelled))).state == "attached"
    set_routes(plat, ("::/0", "2001:db8::1"))
    with pytest.raises(OperationFailedError):  # a default of the other family is no match
        await atts.check(check(CniRoute(dst="0.0.0.0/0", gw="10.0.0.1")))


async def test_check_fails_on_a_gateway_mismatch_or_on_link_for_a_gateway(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, plat = owner
    await atts.add(add(addresses=("10.0.0.2/24",)))
    set_routes(plat, ("0.0.0.0/0", "10.0.0.254"), ("198.51.100.0/24", None))
    for wrong in (CniRoute(dst="0.0.0.0/0", gw="10.0.0.1"),
                  CniRoute(dst="198.51.100.0/24", gw="10.0.0.1")):  # fmt: skip
        with pytest.raises(OperationFailedError) as failed:
            await atts.check(check(wrong))
        assert f"{wrong.dst} via 10.0.0.1" in str(failed.value)


async def test_check_refuses_a_bad_or_unbounded_route_list(
    owner: tuple[Attachments, FakePlatform],
) -> None:
    atts, _plat = owner
    await atts.add(add(addresses=("10.0.0.2/24",)))
    with pytest.raises(InvalidRequestError):
        await atts.check(check(CniRoute(dst="0.0.0.0/0", gw="2001:db8::1")))
    many = tuple(CniRoute(dst=f"10.{i // 256}.{i % 256}.0/24") for i in range(257))
    with pytest.raises(InvalidRequestError):
        await atts.check(check(*many))
