"""Netgraph binding, link view: a bridge's wiring and this process's picture of its links.

Split from :mod:`bridges` (which owns every request): pure bookkeeping over LISTHOOKS replies,
no I/O. See docs/netgraph.md, "Link view".
"""

from __future__ import annotations

from vimaged.netgraph import abi, codec

UPLINK_HOOK = "uplink1"


class Wiring:
    """Which hooks a bridge uses: classic (link0/link1, eifaces from link2) or uplink."""

    def __init__(self, uplink: bool) -> None:
        self.uplink = uplink
        self.lower = UPLINK_HOOK if uplink else "link0"
        self.upper = "link0" if uplink else "link1"
        self.first_eiface_link = 1 if uplink else 2

    @property
    def mode(self) -> str:
        return "uplink" if self.uplink else "classic"


def link_number(hook: str) -> int | None:
    """N of a canonical ``linkN`` hook name; None for any other hook (``uplink1``, ...)."""
    digits = hook.removeprefix("link")
    if digits == hook or not digits.isdecimal() or str(int(digits)) != digits:
        return None
    return int(digits)


class LinkView:
    """This process's picture of one bridge's ``linkN`` hooks.

    Learnt from one LISTHOOKS when the process first touches the bridge, then kept by every
    add and remove made here, so choosing a link costs no request. It is only a hint: a link
    another process took since is refused by ``mkpeer`` (EEXIST, and the view is learnt
    again); a link another process freed is merely skipped until then. Nothing is decided on
    the view alone.
    """

    def __init__(self, wiring: Wiring, node_id: int) -> None:
        self.wiring = wiring
        self.node_id = node_id
        """The bridge's node ID: links are addressed as ``[id]:linkN`` (31-character paths)."""
        self.taken: set[int] = set()
        self.eifaces: dict[int, str] = {}
        """Link number -> name of the eiface on it, as far as this process knows."""
        self._lowest = wiring.first_eiface_link

    @classmethod
    def from_hooks(cls, hooks: codec.HookList) -> LinkView:
        uplink = any(link.ourhook == UPLINK_HOOK for link in hooks.links)
        view = cls(Wiring(uplink=uplink), hooks.node.id)
        view.learn(hooks)
        return view

    @property
    def path(self) -> str:
        return f"[{self.node_id:x}]:"

    def link_path(self, number: int) -> str:
        return f"[{self.node_id:x}]:link{number}"

    def learn(self, hooks: codec.HookList) -> None:
        """Replace the picture with the bridge's hooks as LISTHOOKS shows them now."""
        self.node_id = hooks.node.id
        self.taken.clear()
        self.eifaces.clear()
        for link in hooks.links:
            number = link_number(link.ourhook)
            if number is None:
                continue
            self.taken.add(number)
            if link.peer.type == abi.NG_EIFACE_NODE_TYPE:
                self.eifaces[number] = link.peer.name
        self._lowest = self.wiring.first_eiface_link

    def lowest_free(self) -> int:
        number = self._lowest
        while number in self.taken:
            number += 1
        self._lowest = number  # everything below is taken: the next search starts here
        return number

    def add(self, number: int, eiface: str) -> None:
        self.taken.add(number)
        self.eifaces[number] = eiface

    def remove(self, number: int) -> None:
        self.taken.discard(number)
        self.eifaces.pop(number, None)
        self._lowest = max(min(self._lowest, number), self.wiring.first_eiface_link)
