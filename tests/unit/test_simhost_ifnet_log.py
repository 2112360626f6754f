"""Unit tier: the sim host's devctl IFNET notices and NIC hot-plug, without its process."""

from __future__ import annotations

import errno

import pytest

from vimaged.simhost.faults import Faults
from vimaged.simhost.host import SimHost
from vimaged.simhost.hotplug import plug_nic, unplug_nic
from vimaged.simhost.ifnet_log import LOG_SIZE, IfnetLog

pytestmark = pytest.mark.unit


def notices(host: SimHost, after: int) -> list[tuple[str, str, str | None]]:
    found = host.ifnet_log.since(after)
    assert found is not None
    return [(n.kind, n.name, n.newname) for n in found]


def test_moves_renames_and_plugs_are_noticed_as_if_c_notifies() -> None:
    now = [0.0]
    host = SimHost(faults=Faults(dying_seconds=5), clock=lambda: now[0])
    start = host.ifnet_log.seq
    jid = host.create_jail("web")  # its lo0 attaches in its own vnet: no notice
    host.move_ifnet("em1", jid)
    host.rename_ifnet("em1", "lan0", jid)
    plug_nic(host, "ue0")
    host.rename_ifnet("ue0", "wan0")
    host.remove_jail(jid)  # dying, holding lan0
    assert notices(host, start) == [
        ("DETACH", "em1", None),
        ("RENAME", "em1", "lan0"),
        ("ATTACH", "ue0", None),
        ("RENAME", "ue0", "wan0"),
    ]
    mark = host.ifnet_log.seq
    now[0] = 10.0
    host.tick()  # the vnet is destroyed: vnet_if_return sends lan0 home
    assert notices(host, mark) == [("ATTACH", "lan0", None)]
    assert host.find_ifnet("lan0", 0) is not None


def test_unplugging_inside_a_jail_is_silent_on_the_host() -> None:
    host = SimHost()
    jid = host.create_jail("web")
    host.move_ifnet("em1", jid)
    mark = host.ifnet_log.seq
    unplug_nic(host, "em1")
    assert notices(host, mark) == []
    assert host.locate("em1") is None
    unplug_nic(host, "em0")
    assert notices(host, mark) == [("DETACH", "em0", None)]
    assert not any(n.name == "em0" for n in host.ng.iter_nodes())  # ng_ether_detach


@pytest.mark.parametrize(
    ("name", "plugged", "code"),
    [("em0", True, errno.EEXIST), ("em", True, errno.EINVAL), ("x" * 16 + "0", True, errno.EINVAL),
     ("em9", False, errno.ENXIO), ("lo0", False, errno.ENXIO)],
)  # fmt: skip
def test_hotplug_errors(name: str, plugged: bool, code: int) -> None:
    host = SimHost()
    with pytest.raises(OSError) as info:  # noqa: PT011 (the errno is checked)
        (plug_nic if plugged else unplug_nic)(host, name)
    assert info.value.errno == code


def test_a_watcher_too_far_behind_is_told_it_lost_some() -> None:
    log = IfnetLog()
    for i in range(LOG_SIZE + 5):
        log.notify("ATTACH", f"em{i}", 0)
    assert log.since(0) is None
    assert log.since(log.seq + 1) is None
    recent = log.since(log.seq - 2)
    assert recent is not None
    assert [n.name for n in recent] == [f"em{LOG_SIZE + 3}", f"em{LOG_SIZE + 4}"]
    assert log.since(log.seq) == []
