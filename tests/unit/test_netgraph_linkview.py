"""Unit tests of NetgraphBridges' per-bridge link view: hook names parsed, lowest free link."""

from __future__ import annotations

import pytest

from vimaged.netgraph import codec
from vimaged.netgraph.linkview import LinkView, link_number

pytestmark = pytest.mark.unit


def _hooks(*links: tuple[str, str]) -> codec.HookList:
    """A bridge's LISTHOOKS reply: ``(ourhook, peer type)`` for each link."""
    bridge = codec.NodeInfo(name="vimaged_br_em0", type="bridge", id=1, hooks=len(links))
    return codec.HookList(
        node=bridge,
        links=tuple(
            codec.LinkInfo(
                ourhook=hook,
                peerhook="ether" if kind == "eiface" else "lower",
                peer=codec.NodeInfo(
                    name=f"vimaged_if_{hook}" if kind == "eiface" else "em0",
                    type=kind,
                    id=2 + i,
                    hooks=1,
                ),
            )
            for i, (hook, kind) in enumerate(links)
        ),
    )


@pytest.mark.parametrize(
    ("hook", "number"),
    [("link0", 0), ("link7", 7), ("link1234", 1234), ("uplink1", None), ("link", None)],
)
def testlink_number_reads_canonical_names(hook: str, number: int | None) -> None:
    assert link_number(hook) == number


@pytest.mark.parametrize("hook", ["link01", "link-1", "link 1", "link1a", "LINK1", "link\u0661"])
def testlink_number_refuses_other_spellings(hook: str) -> None:
    assert link_number(hook) is None


def test_uplink_bridge_starts_at_link1_and_fills_gaps() -> None:
    view = LinkView.from_hooks(
        _hooks(("uplink1", "ether"), ("link0", "ether"), ("link1", "eiface"), ("link3", "eiface"))
    )
    assert view.wiring.uplink
    assert view.eifaces == {1: "vimaged_if_link1", 3: "vimaged_if_link3"}
    assert view.lowest_free() == 2
    view.add(2, "vimaged_if_x")
    assert view.lowest_free() == 4
    view.remove(1)
    assert view.lowest_free() == 1
    assert 1 not in view.eifaces


def test_classic_bridge_never_offers_the_ether_links() -> None:
    view = LinkView.from_hooks(_hooks(("link0", "ether"), ("link1", "ether")))
    assert not view.wiring.uplink
    assert view.lowest_free() == 2
    view.remove(0)  # nothing below the first eiface link is ever offered
    assert view.lowest_free() == 2


def test_learning_again_replaces_the_picture() -> None:
    view = LinkView.from_hooks(_hooks(("uplink1", "ether"), ("link0", "ether")))
    view.add(1, "vimaged_if_a")
    view.add(2, "vimaged_if_b")
    view.learn(_hooks(("uplink1", "ether"), ("link0", "ether"), ("link2", "eiface")))
    assert view.eifaces == {2: "vimaged_if_link2"}
    assert view.lowest_free() == 1
