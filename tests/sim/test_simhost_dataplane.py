"""The sim host process's data-plane and capability RPCs: shared wires, send_frame/received,
set_capabilities, and the release a reset selects. Assertions are on frames and errnos."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest

from vimaged.simhost import rpc

if TYPE_CHECKING:
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
