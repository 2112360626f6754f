"""Linux tier, end to end: the real vimaged on the linux platform, killed and restarted.

The daemon runs inside the test's private host namespace (``nsenter --net``, which keeps the
mount namespace, so its ``/run/netns`` names are visible here), so its own namespace is the
host it manages, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.sim.daemon_harness import Daemon

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.linux.conftest import World

pytestmark = pytest.mark.linux


@dataclass
class LinuxDaemon(Daemon):
    host_netns: str = ""

    def command(self) -> list[str]:
        argv = super().command()
        at = argv.index("--platform")
        argv[at + 1] = "linux"
        at = argv.index("--sim-host")
        del argv[at : at + 2]
        return ["nsenter", f"--net=/run/netns/{self.host_netns}", *argv]


@pytest.fixture
def daemon(world: World, tmp_path: Path) -> Iterator[LinuxDaemon]:
    d = LinuxDaemon(sim_socket="", workdir=tmp_path, host_netns=world.host)
    try:
        yield d
    finally:
        d.stop()


def test_daemon_starts_adopts_after_sigkill_and_stops(world: World, daemon: LinuxDaemon) -> None:
    name = world.tag  # unique, as the daemon uses the default vimage- prefix
    netns = f"vimage-{name}"
    world.extra_netns.append(netns)
    world.add_nic("lan0", "peer0")
    world.add_nic("nic0", "peer1")
    daemon.write_config(
        f'vimage_enable="NO"\nvimage_list="{name}"\n'
        f'vimage_{name}_bridges="lan0"\nvimage_{name}_vnets="nic0"\n'
        f'vimage_{name}_exec_start="true"\nvimage_{name}_exec_stop="true"\n'
    )
    daemon.start()
    daemon.ok("start", name)
    running = daemon.vimages()[name]
    assert running["state"] == "running"
    assert os.stat(f"/run/netns/{netns}").st_ino == running["jid"]
    inside = world.ip("-o", "link", "show", netns=netns)
    assert "nic0" in inside
    assert f"ng0_{name}" in inside

    assert daemon.kill(signal.SIGKILL) == -signal.SIGKILL
    daemon.start()
    adopted = daemon.vimages()[name]
    assert (adopted["state"], adopted["jid"]) == ("running", running["jid"])

    daemon.ok("stop", name)
    assert daemon.vimages()[name]["state"] == "stopped"
    assert not os.path.exists(f"/run/netns/{netns}")
    on_host = world.ip("-o", "link", "show", netns=world.host)
    assert "nic0" in on_host
    assert f"ng0_{name}" not in on_host
    with pytest.raises(subprocess.CalledProcessError):
        world.ip("link", "show", "nic0", netns=netns)


def test_status_shows_the_addresses_inside_the_vimage(world: World, daemon: LinuxDaemon) -> None:
    """jls(8) cannot show a VNET jail's addresses (field survey problem 19); vimagectl can.
    And the commands' output lands in the console log."""
    name = world.tag
    world.extra_netns.append(f"vimage-{name}")
    world.add_nic("lan0", "peer0")
    ifname = f"ng0_{name}"
    console = daemon.workdir / "console.log"
    marker = daemon.workdir / "poststart"
    daemon.write_config(
        f'vimage_enable="NO"\nvimage_list="{name}"\nvimage_{name}_bridges="lan0"\n'
        f'vimage_{name}_exec_start="echo configuring {ifname}; '
        f"ip addr add 192.0.2.10/24 dev {ifname} && "
        f'ip addr add 2001:db8::10/64 dev {ifname} nodad"\n'
        f'vimage_{name}_exec_stop="echo stopping >&2"\n'
        f'vimage_{name}_exec_consolelog="{console}"\n'
        # host commands; single quotes keep $VIMAGE_JID for the shell, as in sh
        f"vimage_{name}_exec_poststart='echo \"$VIMAGE_JID $VIMAGE_INTERFACES\" > {marker}'\n"
        f"vimage_{name}_exec_poststop='rm {marker}'\n"
    )
    daemon.start()
    daemon.ok("start", name)
    # the first health check runs at the end of the start: no wait for a poll (issue 15.4)
    listed = daemon.vimages()[name]
    assert "192.0.2.10/24" in listed["interfaces"][0]["addresses"]
    assert listed["health"] == "ok"
    [ng0] = daemon.ok("--json", "status", name).json()[0]["interfaces"]
    assert ng0["name"] == ifname
    jid = daemon.vimages()[name]["jid"]
    assert marker.read_text() == f"{jid} {ifname}\n"  # exec_poststart ran on the host
    assert {"192.0.2.10/24", "2001:db8::10/64"} <= set(ng0["addresses"])
    assert "192.0.2.10/24" in daemon.ok("status", name).stdout
    daemon.ok("stop", name)
    [ng0] = daemon.ok("--json", "status", name).json()[0]["interfaces"]
    assert ng0["addresses"] == []
    assert console.read_text() == f"configuring {ifname}\nstopping\n"  # stdout and stderr
    assert not marker.exists()  # exec_poststop


def test_a_nic_renamed_inside_comes_home_under_its_own_name(
    world: World, daemon: LinuxDaemon
) -> None:
    name = world.tag
    netns = f"vimage-{name}"
    world.extra_netns.append(netns)
    world.add_nic("nic0", "peer1")
    daemon.write_config(
        f'vimage_enable="NO"\nvimage_list="{name}"\nvimage_{name}_vnets="nic0"\n'
        f'vimage_{name}_exec_start="true"\nvimage_{name}_exec_stop="true"\n'
    )
    daemon.start()
    daemon.ok("start", name)
    # what an admin inside does; Linux renames only a link that is down
    world.ip("link", "set", "nic0", "down", netns=netns)
    world.ip("link", "set", "nic0", "name", "wan0", netns=netns)
    world.ip("link", "set", "wan0", "up", netns=netns)
    daemon.ok("stop", name)
    nic0 = world.ip("-o", "link", "show", "nic0", netns=world.host)  # fails if absent
    assert ",UP" in nic0  # up, as it left
    assert "wan0" not in world.ip("-o", "link", "show", netns=world.host)
    assert '"ifnet.renamed_back"' in daemon.log()
