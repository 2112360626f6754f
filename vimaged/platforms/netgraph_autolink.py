"""Platform layer, netgraph bridges: an eiface on a link number ng_bridge chooses itself.

FreeBSD 15's ng_bridge gives a hook named exactly ``link`` the lowest free number and renames
it ``linkN`` ("ng_bridge: allow to automatically assign numbers to new hooks", freebsd-src
86a6393a7d67, D44615; ``ng_bridge_newhook``, ``alloc_unr``). 13 and 14 refuse the bare name
with EINVAL (``strlen(name) <= strlen("link")``), which is the probe.

The kernel does not say which N it chose, so the eiface is made and named first and asks
nothing of the bridge (docs/netgraph.md, "Kernel-assigned link numbers"):

1. ``mkpeer . eiface <node> ether``: the eiface hangs on a hook of our own socket node;
2. ``name .:<node> <node>``: from here on it carries our name (``vimaged_if_<ifname>``);
3. ``rmhook . <node>``: ng_eiface has one hook, so it must be free before the bridge takes it;
4. ``connect <node>: ether [bridge]: link``: ng_bridge numbers the link;
5. ``listhooks <node>:``: the peer hook of ``ether`` is ``linkN``.

A kill after 2 leaves a named eiface (on no bridge, or on its link) that reconciliation
removes as an orphan or undoes as a journaled intent. A kill inside 1-2 (one request) leaves
an eiface named only ``ngethN`` (``ng_eiface_constructor``) on no hook, which is what
``ngctl mkpeer . eiface`` leaves too: it cannot be proved ours, so it is left alone. Every
failure here shuts the eiface down before it raises.
"""

from __future__ import annotations

import errno as errno_codes
from contextlib import suppress
from typing import TYPE_CHECKING

import trio

from vimaged.netgraph import abi
from vimaged.netgraph.linkview import link_number
from vimaged.netgraph.ngsocket import netgraph_error
from vimaged.platforms.netgraph_survey import claim_name

if TYPE_CHECKING:
    from vimaged.netgraph.ngsocket import NgSocket

BARE_LINK = "link"
HERE = ".:"
"""Our own socket node (``ng_path2noderef``: ``.`` is the sender)."""


class KernelNumbersUnsupportedError(Exception):
    """The bridge refused the bare ``link`` hook (EINVAL): ng_bridge before FreeBSD 15.

    The eiface was shut down again; the caller falls back to choosing N itself."""


async def attach_numbered_by_kernel(sock: NgSocket, bridge_path: str, node: str) -> int:
    """A new eiface named ``node`` on the bridge at ``bridge_path``, on the link number the
    kernel chose; that number.

    Raises ``FileExistsError`` (EEXIST) if ``node`` is taken, ``KernelNumbersUnsupportedError``
    on a kernel without numbering, and whatever else the kernel answers (ENOENT: the bridge
    is gone). On every failure the eiface this call made is shut down, shielded.
    """
    await sock.mkpeer(HERE, abi.NG_EIFACE_NODE_TYPE, node, "ether")
    eiface = HERE + node
    try:
        await claim_name(sock, eiface, node)
        eiface = node + ":"
        await sock.rmhook(HERE, node)
        try:
            await sock.connect(eiface, bridge_path, "ether", BARE_LINK)
        except OSError as exc:
            if exc.errno != errno_codes.EINVAL:
                raise
            raise KernelNumbersUnsupportedError(bridge_path) from None
        return await linked_number(sock, node)
    except BaseException:
        with trio.move_on_after(5, shield=True):
            with suppress(FileNotFoundError):
                await sock.shutdown(eiface)
        raise


async def linked_number(sock: NgSocket, node: str) -> int:
    """N of the ``linkN`` the eiface ``node``'s ``ether`` hook is on, read from its side."""
    hooks = await sock.listhooks(node + ":")
    number = next(
        (link_number(h.peerhook) for h in hooks.links if h.ourhook == "ether"),
        None,
    )
    if number is None:
        raise netgraph_error(errno_codes.ENOTCONN, node + ":", "listhooks")
    return number
