"""Listings larger than one frame (issue 13 item 2): the real daemon on the sim host streams
``list``, ``status`` and ``health`` to the real vimagectl; the big sizes are benchmarks."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.sim.daemon_harness import Daemon
from vimagectl.client import Client
from vimaged.protocol import MAX_FRAME, MAX_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

COUNT = 3500


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    sim_host.reset(nics=["em0"])
    d = Daemon(sim_socket=sim_host.socket_path, workdir=tmp_path)
    names = [f"v{i:05d}" for i in range(COUNT)]
    d.write_config(
        f'vimage_list="{" ".join(names)}"\n'
        + "".join(f'vimage_{name}_bridges="em0"\n' for name in names)
    )
    d.start()
    yield d
    d.stop()


def test_a_listing_larger_than_a_frame_streams_whole_and_in_order(daemon: Daemon) -> None:
    """And an old client, which asks for one frame, gets ``reply_too_large`` as before."""
    listed = daemon.ok("--json", "list")
    assert len(listed.stdout) > MAX_FRAME  # one vimages frame could not have held it
    vimages = json.loads(listed.stdout)
    assert [v["name"] for v in vimages] == [f"v{i:05d}" for i in range(COUNT)]
    assert {v["state"] for v in vimages} == {"stopped"}
    table = daemon.ok("list").stdout.splitlines()
    assert len(table) == COUNT + 1
    assert table[1].split()[:2] == ["v00000", "stopped"]
    assert table[-1].split()[:2] == [f"v{COUNT - 1:05d}", "stopped"]
    named = [f"v{i:05d}" for i in range(COUNT - 1, COUNT - 1 - MAX_NAMES, -1)]
    status = json.loads(daemon.ok("--json", "status", *named).stdout)
    assert [v["name"] for v in status] == named
    assert len(json.loads(daemon.ok("--json", "health").stdout)["vimages"]) == COUNT
    health = daemon.ok("health")  # all stopped and unnamed: OK, out of the verdict
    assert f"stopped={COUNT}" in health.stdout
    with Client(daemon.socket_path, timeout=10) as client:
        reply = client.request({"op": "list"})  # no "stream", as protocol 1 clients ask
        assert reply["reply"] == "error"
        assert reply["code"] == "reply_too_large"
        # ... and the connection stays usable: the same client then streams it.
        assert sum(1 for _ in client.listing({"op": "list"})) == COUNT
