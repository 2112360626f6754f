"""The sim host's model without its process: fault specs, jid allocation, dying jails on a
test clock, vnet moves and what the netgraph side sees of them."""

from __future__ import annotations

import errno

import pytest

from vimaged.simhost.faults import Faults, parse_faults
from vimaged.simhost.host import JAIL_MAX, ExecScript, Ifnet, SimHost, nic_mac

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def on_host(host: SimHost, name: str) -> Ifnet:
    ifnet = host.find_ifnet(name, 0)
    assert ifnet is not None, name
    return ifnet


def errno_of(call: object, *args: object) -> int:
    assert callable(call)
    with pytest.raises(OSError, match=r"\S") as info:
        call(*args)
    return info.value.errno or 0


def test_fault_spec_parses() -> None:
    faults = parse_faults("dying=2.5, reclaim_fail=3:ENXIO move_fail=1 vanish=web@4 link_race=2")
    assert faults == Faults(
        dying_seconds=2.5,
        reclaim_failures=3,
        reclaim_errno=errno.ENXIO,
        move_failures=1,
        move_errno=errno.EBUSY,
        vanish={"web": 4.0},
        link_race=2,
    )
    assert parse_faults("") == Faults()


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("dying", "dying"),
        ("dying=-1", "dying=-1"),
        ("dying=soon", "soon"),
        ("reclaim_fail=x", "x"),
        ("reclaim_fail=1:EWHAT", "EWHAT"),
        ("vanish=@3", "vanish"),
        ("frobs=1", "frobs"),
    ],
)
def test_bad_fault_spec_names_the_item(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_faults(spec)


def test_bad_host_parameters() -> None:
    with pytest.raises(ValueError, match="kernel"):
        SimHost(kernel=11)
    with pytest.raises(ValueError, match="em0"):
        SimHost(nics=("em0", "em0"))
    with pytest.raises(ValueError, match="averyveryverylongnic0"):
        SimHost(nics=("averyveryverylongnic0",))


def test_nic_macs_are_stable_and_distinct() -> None:
    host = SimHost(nics=("em0", "em1", "fxp0"))
    macs = [on_host(host, n).mac for n in ("em0", "em1", "fxp0")]
    assert macs == [nic_mac("em0"), nic_mac("em1"), nic_mac("fxp0")]
    assert len(set(macs)) == 3
    assert all(m is not None and not m[0] & 1 for m in macs)  # unicast


def test_jid_allocation_wraps_and_skips_used() -> None:
    host = SimHost()
    assert host.create_jail("a") == 1
    host.lastprid = JAIL_MAX - 1
    assert host.create_jail("b") == JAIL_MAX
    assert host.create_jail("c") == 2  # wrapped, 1 still in use


def test_jail_name_rules() -> None:
    host = SimHost()
    host.create_jail("web")
    assert errno_of(host.create_jail, "web") == errno.EEXIST
    assert errno_of(host.create_jail, "a.b") == errno.ENOENT
    assert errno_of(host.remove_jail, 9) == errno.EINVAL


def test_a_numeric_jail_name_is_the_jid_it_creates() -> None:
    # kern_jail.c@002c06d2 kern_jail_set: JAIL_CREATE with an all-digit name and no jid
    # takes the name as the jid; only that jid's normal form is allowed as the name.
    host = SimHost(faults=parse_faults("dying=10"))
    assert host.create_jail("42") == 42
    assert host.jails[42].name == "42"
    assert errno_of(host.create_jail, "42") == errno.EEXIST  # prison_find(42)
    host.remove_jail(42)
    assert errno_of(host.create_jail, "42") == errno.EEXIST  # a dying prison keeps its jid
    for name in ("0", "042", str(JAIL_MAX + 1)):
        assert errno_of(host.create_jail, name) == errno.EINVAL, name
    assert host.create_jail("web") == 1  # an explicit jid does not move lastprid


def test_dying_jail_on_a_clock() -> None:
    clock = Clock()
    host = SimHost(clock=clock, faults=parse_faults("dying=10"))
    jid = host.create_jail("web")
    host.move_ifnet("em1", jid)
    host.remove_jail(jid)
    # The name is free again while the old jail is dying: kern_jail_set's sibling walk
    # answers EEXIST only for pr_uref > 0 (kern_jail.c@002c06d2), so JAIL_CREATE makes a
    # second prison of that name beside the dying one.
    new = host.create_jail("web")
    assert new == jid + 1
    assert [(j.name, j.dying) for j in host.jails.values()] == [("web", True), ("web", False)]
    clock.now += 9.9
    host.tick()
    assert host.jails[jid].dying
    assert host.locate("em1") == jid
    assert host.ng.named("em1") is None
    clock.now += 0.2
    host.tick()
    assert jid not in host.jails
    assert host.locate("em1") == 0
    assert host.ng.named("em1") is not None


def test_vanish_on_a_clock() -> None:
    clock = Clock()
    host = SimHost(clock=clock, faults=parse_faults("vanish=web@5"))
    jid = host.create_jail("web")
    other = host.create_jail("db")
    clock.now += 5
    host.tick()
    assert set(host.jails) == {other}
    assert errno_of(host.start_exec, jid, "true") == errno.EINVAL


def in_jail(host: SimHost, name: str, jid: int) -> Ifnet:
    ifnet = host.find_ifnet(name, jid)
    assert ifnet is not None, name
    return ifnet


def test_move_fault_and_up_flag() -> None:
    # if_vmove → if_detach_internal → if_down clears IFF_UP (sys/net/if.c@d87a5f2a): an
    # interface arrives down whichever way it moves.
    host = SimHost(faults=parse_faults("move_fail=1:EBUSY"))
    jid = host.create_jail("web")
    host.set_up("em0", True)
    assert errno_of(host.move_ifnet, "em0", jid) == errno.EBUSY
    assert host.locate("em0") == 0
    assert on_host(host, "em0").up  # a refused move changes nothing
    host.move_ifnet("em0", jid)
    assert not in_jail(host, "em0", jid).up
    assert errno_of(host.set_up, "em0", False) == errno.ENXIO  # not on the host any more
    host.set_up("em0", True, jid)
    host.reclaim_ifnet("em0", jid)
    assert not on_host(host, "em0").up
    assert errno_of(host.reclaim_ifnet, "em0", jid) == errno.ENXIO


def test_ifnets_come_home_down_when_the_vnet_is_destroyed() -> None:
    # prison_deref → vnet_destroy → vnet_if_return → if_vmove: down again (if.c@d87a5f2a).
    host = SimHost()
    jid = host.create_jail("web")
    host.move_ifnet("em1", jid)
    host.set_up("em1", True, jid)
    host.remove_jail(jid)
    assert host.locate("em1") == 0
    assert not on_host(host, "em1").up


def test_the_platforms_move_keeps_an_up_interface_up() -> None:
    host = SimHost()
    jid = host.create_jail("web")
    host.set_up("em0", True)
    host.move_ifnet_keeping_up("em0", jid)
    host.move_ifnet_keeping_up("em1", jid)  # down before: stays down
    assert in_jail(host, "em0", jid).up
    assert not in_jail(host, "em1", jid).up


def test_the_platforms_move_into_a_dying_jail_moves_then_fails() -> None:
    # prison_find_child finds a dying jail (SIOCSIFVNET works); jail_attach refuses it.
    host = SimHost(faults=parse_faults("dying=10"))
    jid = host.create_jail("web")
    host.remove_jail(jid)
    host.set_up("em0", True)
    assert errno_of(host.move_ifnet_keeping_up, "em0", jid) == errno.EINVAL
    assert host.locate("em0") == jid
    assert not in_jail(host, "em0", jid).up


def test_set_up_inside_a_jail_needs_it_live() -> None:
    host = SimHost(faults=parse_faults("dying=10"))
    jid = host.create_jail("web")
    host.move_ifnet("em0", jid)
    assert errno_of(host.set_up, "em1", True, jid) == errno.ENXIO  # not in that vnet
    assert errno_of(host.set_up, "em0", True, 99) == errno.EINVAL
    host.remove_jail(jid)
    assert errno_of(host.set_up, "em0", True, jid) == errno.EINVAL  # jail_attach: dying


def test_rename_errnos_in_ifioctl_order() -> None:
    # ifioctl's ifunit_ref (ENXIO) runs before ifhwioctl's copyinstr (ENAMETOOLONG); if_rename
    # accepts the current name as a no-op (if.c@d87a5f2a).
    host = SimHost()
    assert errno_of(host.rename_ifnet, "em9", "x" * 16) == errno.ENXIO
    assert errno_of(host.rename_ifnet, "em0", "x" * 16) == errno.ENAMETOOLONG
    assert errno_of(host.rename_ifnet, "em0", "") == errno.EINVAL
    assert errno_of(host.rename_ifnet, "em0", "em1") == errno.EEXIST
    host.rename_ifnet("em0", "em0")
    assert host.ng.named("em0") is not None


def test_renaming_renames_ng_ether_but_not_ng_eiface() -> None:
    # ng_ether_ifnet_arrival_event (ng_ether.c) renames a NIC's node on if_rename's arrival
    # event; ng_eiface.c@01cb2c87 registers no such handler, so an eiface node keeps its name.
    host = SimHost()
    host.rename_ifnet("em0", "lan0")
    assert host.ng.named("em0") is None
    ether = host.ng.named("lan0")
    assert ether is not None
    assert ether.type_name == "ether"
    eiface = host.ng.make_node("eiface")
    host.rename_ifnet("ngeth0", "ng0_web")
    assert host.ng.named("ngeth0") is eiface
    assert host.ng.named("ng0_web") is None  # no ng_ether companion while on the host


def test_non_vnet_jail_sees_the_host_vnet() -> None:
    host = SimHost()
    jid = host.create_jail("plain", vnet=False)
    assert {i.name for i in host.list_ifnets(jid)} == {"em0", "em1", "lo0"}
    assert errno_of(host.reclaim_ifnet, "em0", jid) == errno.EEXIST  # already in that vnet


def test_exec_scripts_match_jail_and_substring() -> None:
    host = SimHost()
    jid = host.create_jail("web")
    host.scripts.insert(0, ExecScript("web", "rc", 1))
    record, script = host.start_exec(jid, "/bin/sh /etc/rc")
    assert script is not None
    assert script.status == 1
    _, none = host.start_exec(jid, "true")
    assert none is None
    host.remove_jail(jid)
    assert (record.outcome, record.status) == ("killed", 137)


def test_eiface_ifnet_coming_home_gets_an_ether_node() -> None:
    host = SimHost()
    eiface = host.ng.make_node("eiface")
    assert eiface.name == "ngeth0"  # the eiface node holds the name, so no ether node
    assert [n.type_name for n in host.ng.nodes.values()] == ["ether", "ether", "eiface"]
    host.rename_ifnet("ngeth0", "ng0_web")
    jid = host.create_jail("web")
    host.move_ifnet("ng0_web", jid)
    host.remove_jail(jid)
    assert host.locate("ng0_web") == 0
    node = host.ng.named("ng0_web")
    assert node is not None
    assert node.type_name == "ether"
    host.ng.destroy(eiface)
    assert host.ng.named("ng0_web") is None
    assert host.locate("ng0_web") is None


def test_release_option_and_wires_are_checked_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vimaged.simhost.__main__ import EX_USAGE, main

    with pytest.raises(SystemExit) as info:
        main(["--socket", "/nonexistent/s", "--release", "16"])
    assert info.value.code == EX_USAGE
    assert main(["--socket", "/nonexistent/s", "--sim-wires", "em0,em9"]) == EX_USAGE
    assert "em9" in capsys.readouterr().err


def test_learn_fail_fault_parses_and_reaches_the_kernel() -> None:
    assert parse_faults("learn_fail=3").learn_fail == 3
    host = SimHost(faults=parse_faults("learn_fail=2"))
    assert host.ng.learn_fail == 2
    host.set_faults(parse_faults(""))
    assert host.ng.learn_fail == 0
    with pytest.raises(ValueError, match="learn_fail"):
        parse_faults("learn_fail=x")
