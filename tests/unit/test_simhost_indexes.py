"""The sim host's lookup indexes keep the behaviour of the scans they replaced: nodes by name
(ng_name_hash), eiface units lowest free first (alloc_unr), live jails by name."""

from __future__ import annotations

import errno

import pytest

from vimaged.simhost.faults import parse_faults
from vimaged.simhost.host import SimHost
from vimaged.simhost.ifnet import UnitPool

pytestmark = pytest.mark.unit


def errno_of(call: object, *args: object) -> int:
    assert callable(call)
    with pytest.raises(OSError, match=r"\S") as info:
        call(*args)
    return info.value.errno or 0


def test_node_names_follow_naming_renaming_and_shutdown() -> None:
    host = SimHost()
    ng = host.ng
    bridge = ng.make_node("bridge")
    ng.name_node(bridge, "br0")
    assert ng.named("br0") is bridge
    ng.name_node(bridge, "br1")  # ng_name_node on a named node: the old name is free
    assert ng.named("br0") is None
    assert ng.named("br1") is bridge
    other = ng.make_node("bridge")
    assert errno_of(ng.name_node, other, "br1") == errno.EADDRINUSE
    ng.name_node(other, "br0")
    assert ng.named("br0") is other
    ng.destroy(bridge)
    assert ng.named("br1") is None  # the name goes with the node
    ng.name_node(other, "br1")
    assert ng.named("br1") is other
    assert ng.named("") is None


def test_an_ether_node_keeps_the_index_in_step_through_an_interface_rename() -> None:
    host = SimHost()
    ether = host.ng.named("em0")
    assert ether is not None
    host.rename_ifnet("em0", "lan0")
    assert host.ng.named("lan0") is ether
    assert host.ng.named("em0") is None


def test_eiface_units_come_lowest_free_first() -> None:
    host = SimHost()
    nodes = [host.ng.make_node("eiface") for _ in range(4)]
    assert [n.name for n in nodes] == ["ngeth0", "ngeth1", "ngeth2", "ngeth3"]
    host.ng.destroy(nodes[2])
    host.ng.destroy(nodes[0])
    assert host.ng.make_node("eiface").name == "ngeth0"  # alloc_unr: the lowest free
    assert host.ng.make_node("eiface").name == "ngeth2"
    assert host.ng.make_node("eiface").name == "ngeth4"


def test_a_unit_pool_refuses_a_double_or_foreign_free() -> None:
    pool = UnitPool()
    assert [pool.alloc(), pool.alloc()] == [0, 1]
    pool.free(0)
    pool.free(0)
    pool.free(7)  # never handed out
    assert [pool.alloc(), pool.alloc()] == [0, 2]


def test_jail_names_are_taken_by_live_jails_only() -> None:
    host = SimHost(faults=parse_faults("dying=10"))
    jid = host.create_jail("web")
    assert errno_of(host.create_jail, "web") == errno.EEXIST
    host.remove_jail(jid)  # dying: the name is free for a new prison
    new = host.create_jail("web")
    assert new != jid
    assert errno_of(host.create_jail, "web") == errno.EEXIST
    assert host.kill_jail("web") == new
    assert errno_of(host.kill_jail, "web") == errno.ENOENT


def test_a_destroyed_jail_frees_its_name() -> None:
    host = SimHost()
    jid = host.create_jail("web")
    host.remove_jail(jid)
    assert jid not in host.jails
    assert host.create_jail("web") == jid + 1


def test_ether_nodes_follow_their_ifnet_out_and_home_again() -> None:
    host = SimHost()
    jid = host.create_jail("web")
    host.move_ifnet("em1", jid)
    assert host.ng.named("em1") is None  # ng_ether_detach: the node went with the vnet move
    host.rename_ifnet("em0", "lan0")
    assert host.ng.named("lan0") is not None
    host.remove_jail(jid)
    back = host.ng.named("em1")
    assert back is not None
    assert back.type_name == "ether"
    host.rename_ifnet("em1", "lan1")  # the new node, not the destroyed one, is renamed
    assert host.ng.named("lan1") is back


def test_dropping_ifnets_keeps_the_list_in_order() -> None:
    host = SimHost()
    nodes = [host.ng.make_node("eiface") for _ in range(5)]
    for node in (nodes[3], nodes[0], nodes[4]):
        host.ng.destroy(node)
    names = [i.name for i in host.ifnets]
    assert names == ["em0", "em1", "lo0", "ngeth1", "ngeth2"]


def test_removing_a_jail_kills_only_its_running_commands() -> None:
    host = SimHost()
    web, db = host.create_jail("web"), host.create_jail("db")
    done, _ = host.start_exec(web, "true")
    host.finish_exec(done, 0)
    running, _ = host.start_exec(web, "sleep 9")
    other, _ = host.start_exec(db, "sleep 9")
    host.remove_jail(web)
    assert [(r.outcome, r.status) for r in (done, running, other)] == [
        ("exited", 0),
        ("killed", 137),
        ("running", None),
    ]
