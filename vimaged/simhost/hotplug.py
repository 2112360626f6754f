"""Simulated host layer: NIC hot-plug, a test's hands on the hardware.

A NIC (USB, a hot-plugged PCI card) attaching after boot, or going away; what the kernel
does about it is sys/net/if.c's if_attach and if_detach, and the devctl notices they send
(``vimaged.simhost.ifnet_log``). RPC ``plug_nic``.
"""

from __future__ import annotations

import errno

from vimaged.simhost.host import NIC_CAPABILITIES, NIC_HWASSIST, Ifnet, SimHost, nic_mac
from vimaged.simhost.ifnet import HOST_JID
from vimaged.simhost.ng_message import IFNAMSIZ, fail


def plug_nic(host: SimHost, name: str) -> None:
    """A NIC ``name`` attaches on the host: the driver's attach → ether_ifattach → if_attach
    (sys/net/if.c), which links it into the host's vnet, lets ng_ether attach its node
    (ng_ether_attach via ether_ifattach) and announces ATTACH. EEXIST if the name is taken in
    any vnet: a real driver would pick another unit, and a test means this one."""
    if not name or len(name.encode()) >= IFNAMSIZ or not name.isascii() or not name[-1].isdigit():
        fail(errno.EINVAL, f"NIC name {name!r}: need a driver name and unit, < 16 chars")
    if any(i.name == name for i in host.ifnets):
        fail(errno.EEXIST, name)
    ifnet = Ifnet(name, "ether", 0, nic_mac(name), hwassist=NIC_HWASSIST)
    ifnet.capabilities = ifnet.capenable = NIC_CAPABILITIES
    host._add_ifnet(ifnet)


def unplug_nic(host: SimHost, name: str) -> None:
    """NIC ``name`` goes away (pulled out, its driver unloaded): ether_ifdetach → if_detach
    in whichever vnet holds it, its ng_ether node with it (ng_ether_detach), announced as
    DETACH only if that is the host's. ENXIO if there is no such NIC; EINVAL for an interface
    that is not one (a loopback, an eiface: those are destroyed, not unplugged)."""
    ifnet = next((i for i in host.ifnets if i.name == name and i.kind != "loopback"), None)
    if ifnet is None:
        fail(errno.ENXIO, name)
    if ifnet.kind != "ether":
        fail(errno.EINVAL, f"{name} is not a NIC")
    if ifnet.vnet == HOST_JID:
        host.ng.detach_ether(ifnet)
    host.ifnets = [i for i in host.ifnets if i is not ifnet]
    host.ifnet_log.notify("DETACH", ifnet.name, ifnet.vnet)
