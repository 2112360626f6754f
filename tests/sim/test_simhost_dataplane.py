"""The sim host process's data-plane and capability RPCs: shared wires, send_frame/received,
set_capabilities, and the release a reset selects. Assertions are on frames and errnos."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest

from vimaged import platforms
from vimaged.platforms import JailSpec
from vimaged.simhost import rpc

if TYPE_CHECKING:
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

BROADCAST = "ff" * 6


def failed_errno(reply: rpc.Reply) -> int:
    assert isinstance(reply, rpc.Failed), reply
    return reply.errno


def test_a_frame_crosses_a_shared_wire_into_a_jail(sim_host: SimHostHandle) -> None:
    sim_host.call(rpc.Reset(nics=["em0", "em1"], wires=[["em0", "em1"]]))
    try:
        jid = sim_host.create_jail("c")
        sim_host.call(rpc.SetIfnetUp(name="em1", up=True))
        assert isinstance(sim_host.call(rpc.MoveIfnet(name="em1", jid=jid)), rpc.Ok)
        frame = BROADCAST + "02" * 6 + "0806" + "aa"
        reply = sim_host.call(rpc.SendFrame(name="em0", frame=frame))
        assert failed_errno(reply) == errno.ENETDOWN  # ether_output: em0 is down
        sim_host.call(rpc.SetIfnetUp(name="em0", up=True))
        assert isinstance(sim_host.call(rpc.SendFrame(name="em0", frame=frame)), rpc.Ok)
        got = sim_host.call(rpc.Received(name="em1", jid=jid))
        assert isinstance(got, rpc.Frames)
        assert got.frames == [frame]
        again = sim_host.call(rpc.Received(name="em1", jid=jid))
        assert isinstance(again, rpc.Frames)
        assert again.frames == []  # received takes what it returns
    finally:
        sim_host.reset()


def test_received_names_an_interface_of_that_vnet(sim_host: SimHostHandle) -> None:
    assert failed_errno(sim_host.call(rpc.Received(name="nope0"))) == errno.ENXIO


def test_capabilities_are_reported_and_set_within_what_the_driver_has(
    sim_host: SimHostHandle,
) -> None:
    em0 = next(i for i in sim_host.ifnets() if i.name == "em0")
    assert em0.capabilities == em0.capenable != 0
    assert em0.hwassist != 0
    tso4 = 0x100
    sim_host.call(rpc.SetCapabilities(name="em0", enabled=em0.capenable & ~tso4))
    em0 = next(i for i in sim_host.ifnets() if i.name == "em0")
    assert em0.capenable == em0.capabilities & ~tso4
    reply = sim_host.call(rpc.SetCapabilities(name="em0", enabled=1 << 30))
    assert failed_errno(reply) == errno.EINVAL  # ifhwioctl: a bit the driver lacks


def frames_at(sim_host: SimHostHandle, name: str, jid: int) -> list[str]:
    got = sim_host.call(rpc.Received(name=name, jid=jid))
    assert isinstance(got, rpc.Frames), got
    return got.frames


@pytest.mark.parametrize(("mode", "reply_arrives"), [("uplink", False), ("classic", True)])
async def test_issue_15_through_the_binding(
    sim_host: SimHostHandle, tmp_path: Path, mode: str, reply_arrives: bool
) -> None:
    """Two vimages bridged to em0 by the real binding, MAC learning failing as on the 14.2
    host: with uplink wiring b's reply to a is unknown unicast and lost; classic floods it."""
    sim_host.reset(faults="learn_fail=1000")
    plat = platforms.load(
        "sim", sim_host=sim_host.socket_path, state_dir=str(tmp_path), bridge_mode=mode
    )
    try:
        macs = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b"}
        jids = {}
        for name, mac in macs.items():
            jids[name] = await plat.create_jail(JailSpec(name=name, hostname=name))
            await plat.create_bridged_ifnet("em0", f"ng0_{name}", mac)  # up, as ng_eifaces are
            await plat.move_ifnet(f"ng0_{name}", jids[name])
        mac_a, mac_b = (m.replace(":", "") for m in macs.values())
        request = BROADCAST + mac_a + "0806" + "01"
        sim_host.call(rpc.SendFrame(name="ng0_a", frame=request, jid=jids["a"]))
        assert frames_at(sim_host, "ng0_b", jids["b"]) == [request]
        reply = mac_a + mac_b + "0806" + "02"
        sim_host.call(rpc.SendFrame(name="ng0_b", frame=reply, jid=jids["b"]))
        assert frames_at(sim_host, "ng0_a", jids["a"]) == ([reply] if reply_arrives else [])
    finally:
        await plat.aclose()
