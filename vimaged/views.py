"""What ``list``, ``status`` and ``health`` show of a vimage: ``protocol.VimageInfo``.

Pure: it reads the vimage, the MACs assigned so far, the bridge modes the health checks saw
and the NICs pending return, and builds the wire view. A NIC on its way home stays visible
even after a reload took it out of the vimage's ``_vnets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vimaged.protocol import Interface, VimageInfo

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vimaged.vimage import Vimage
    from vimaged.vnets import PendingReturn


def vimage_info(
    v: Vimage,
    *,
    macs: Mapping[tuple[str, int], str],
    bridge_modes: Mapping[str, str],
    pending: Mapping[str, PendingReturn],
    wanted: bool = False,
) -> VimageInfo:
    running = v.state in ("starting", "running", "stopping") and v.jid is not None
    interfaces: list[Interface] = []
    for b in v.cfg.bridges:
        interfaces.append(
            Interface(
                name=b.ifname,
                kind="bridge",
                parent=b.parent,
                mac=b.mac or macs.get((v.name, b.index)),
                where="vimage" if running else "absent",
                addresses=v.addresses.get(b.ifname, ()) if running else (),
                bridge_mode=bridge_modes.get(b.parent) if running else None,
                link=v.link_stats.get(b.ifname) if running else None,
            )
        )
    # a NIC on its way home stays visible even if a reload took it out of the vnets
    dropped = [
        p.ifname for p in pending.values() if p.vimage == v.name and p.ifname not in v.cfg.vnets
    ]
    for nic in (*v.cfg.vnets, *dropped):
        returning = pending.get(nic)
        if returning is not None and returning.vimage == v.name:
            interfaces.append(
                Interface(
                    name=nic,
                    kind="vnet",
                    where="pending-return",
                    holder_jid=returning.jid,
                    holder_dying=returning.dying,
                )
            )
        else:
            interfaces.append(
                Interface(
                    name=nic,
                    kind="vnet",
                    where="vimage" if running else "absent" if nic in v.waiting_for else "host",
                    addresses=v.addresses.get(nic, ()) if running else (),
                )
            )
    return VimageInfo(
        name=v.name,
        state=v.state,
        jid=v.jid,
        wanted=wanted,
        health=v.health if v.state == "running" else "unknown",
        health_reason=v.health_reason if v.state == "running" else None,
        interfaces=tuple(interfaces),
        config_changed=v.next_cfg is not None or v.removed,
        removed=v.removed,
        error=v.error,
        restarts=v.restarts,
        waiting_for=v.waiting_for if v.state == "waiting" else (),
    )
