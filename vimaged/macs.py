"""Domain layer: Ethernet (MAC) addresses for the interfaces vimaged creates.

Pure functions, no I/O. Two schemes derive the address of bridge ``index`` of a vimage
(``vimage_mac_scheme`` in rc.conf):

``host`` (the default)
    :func:`host_mac`: SHA-256 of the host identity (``kern.hostuuid``), the vimage name and
    the bridge index, first six bytes, U/L bit set and I/G bit cleared: a locally
    administered unicast address that is the same on every start, differs between hosts
    and changes when the vimage is renamed. The formula is frozen (the tests pin exact
    values): an upgrade must never change an address that DHCP reservations rely on.

``jng``
    :func:`jng_mac`: bit-exact ``derive_mac`` of FreeBSD's ``share/examples/jails/jng``
    (BSD ``sum(1)`` of the name, the parent NIC's last three octets, a per-parent counter in
    the first nibble), so a jail migrated from jng keeps its addresses.

An explicit ``vimage_NAME_ether_N`` overrides both; :func:`parse_mac` validates it.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Literal

from vimaged.errors import ConflictError

if TYPE_CHECKING:
    from collections.abc import Collection, Container
    from collections.abc import Set as AbstractSet

MacScheme = Literal["host", "jng"]
MAC_SCHEMES: tuple[MacScheme, ...] = ("host", "jng")

HOST_MAC_DOMAIN = b"vimaged host_mac v1"
"""Prefix of every :func:`host_mac` hash input; part of the frozen formula."""

MAX_HOST_MAC_ATTEMPTS = 256
"""How many alternatives :func:`choose_mac` derives before giving up."""

_MAC_RE = re.compile(
    r"^([0-9A-Fa-f]{1,2})([:-])" + r"([0-9A-Fa-f]{1,2})\2" * 4 + r"([0-9A-Fa-f]{1,2})$"
)

_UNIVERSAL_LOCAL_BIT = 0x02
_MULTICAST_BIT = 0x01


def format_mac(octets: bytes) -> str:
    """``b"\\x02\\x00..."`` as ``"02:00:..."``: six octets, lower-case hex, colons."""
    if len(octets) != 6:
        raise ValueError(f"a MAC address has 6 octets, not {len(octets)}")
    return ":".join(f"{octet:02x}" for octet in octets)


def mac_octets(text: str) -> bytes:
    """The six octets of ``text`` (``xx:xx:xx:xx:xx:xx``, ``-`` also accepted, and one-digit
    octets as ifconfig(8) prints them). ``ValueError`` saying what is wrong otherwise."""
    match = _MAC_RE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a MAC address (expected xx:xx:xx:xx:xx:xx)")
    return bytes(int(group, 16) for index, group in enumerate(match.groups()) if index != 1)


def normalize_mac(text: str) -> str:
    """``text`` in the canonical form ``xx:xx:xx:xx:xx:xx`` (lower case); ``ValueError`` if it
    is not a MAC address. Does not judge the address: see :func:`parse_mac`."""
    return format_mac(mac_octets(text))


def parse_mac(text: str) -> str:
    """An address usable for an interface, normalised; ``ValueError`` naming the defect.

    Refused: bad syntax, the multicast (I/G) bit (broadcast included), all zeros.
    Universally administered addresses are allowed: a user may pin a vendor address.
    """
    octets = mac_octets(text)
    if octets[0] & _MULTICAST_BIT:
        raise ValueError(f"{text} is a multicast address (lowest bit of the first octet set)")
    if not any(octets):
        raise ValueError(f"{text} is the all-zero address")
    return format_mac(octets)


def is_unicast(mac: str) -> bool:
    return not mac_octets(mac)[0] & _MULTICAST_BIT


def is_locally_administered(mac: str) -> bool:
    return bool(mac_octets(mac)[0] & _UNIVERSAL_LOCAL_BIT)


def host_mac(host_uuid: str, vimage: str, index: int, attempt: int = 0) -> str:
    """The ``host`` scheme's address of bridge ``index`` of ``vimage``.

    ``sha256(HOST_MAC_DOMAIN + NUL + uuid + NUL + vimage + NUL + index + NUL + attempt)``,
    numbers in decimal, the uuid stripped and lower-cased (``kern.hostuuid`` spelling must
    not matter); first six bytes with bit 1 of the first octet set (locally administered)
    and bit 0 cleared (unicast). ``attempt`` > 0 derives alternatives after a collision.
    Frozen: the tests pin exact values.
    """
    if index < 0 or attempt < 0:
        raise ValueError("index and attempt must not be negative")
    material = b"\0".join(
        (
            HOST_MAC_DOMAIN,
            host_uuid.strip().lower().encode(),
            vimage.encode(),
            str(index).encode(),
            str(attempt).encode(),
        )
    )
    digest = bytearray(hashlib.sha256(material).digest()[:6])
    digest[0] = (digest[0] | _UNIVERSAL_LOCAL_BIT) & ~_MULTICAST_BIT & 0xFF
    return format_mac(bytes(digest))


def bsd_sum1(data: bytes) -> int:
    """FreeBSD ``sum`` (``cksum -o 1``): per byte rotate the 16-bit sum right by one bit,
    add the byte (``usr.bin/cksum/sum1.c``)."""
    checksum = 0
    for byte in data:
        checksum = ((checksum >> 1) | ((checksum & 1) << 15)) + byte
        checksum &= 0xFFFF
    return checksum


def jng_mac(vimage: str, parent_mac: str, counter: int) -> str:
    """jng's ``derive_mac``: ``NP:SS:SS:II:II:II``.

    ``SS:SS`` is :func:`bsd_sum1` of the name, ``II:II:II`` the parent's last three octets,
    ``N`` the per-parent counter masked to four bits (the 17th repeats the 1st, as in jng)
    and ``P`` makes it unicast and locally administered: ``a`` when the parent's second hex
    digit is ``2``, otherwise ``2``.
    """
    if counter < 0:
        raise ValueError("counter must not be negative")
    parent = normalize_mac(parent_mac)
    checksum = bsd_sum1(vimage.encode())
    low_nibble = "a" if parent[1] == "2" else "2"
    return f"{counter & 15:x}{low_nibble}:{checksum >> 8:02x}:{checksum & 0xFF:02x}:{parent[9:]}"


def choose_mac(
    scheme: MacScheme,
    *,
    host_uuid: str,
    vimage: str,
    index: int,
    parent_mac: str | None,
    jng_counter: int,
    taken: Collection[str],
    taken_normalized: Container[str] = frozenset(),
) -> str:
    """The address for bridge ``index`` of ``vimage`` that is not in ``taken``, nor in
    ``taken_normalized`` (MACs already in :func:`normalize_mac` form: a caller's big set,
    kept normalized so that each choice does not normalize it all again).

    ``host``: :func:`host_mac` with attempt 0, 1, ... until free. ``jng``: :func:`jng_mac`;
    if that is taken (jng has only 16 variants per name and parent, and they belong to the
    vimage's other interfaces) the ``host`` scheme's sequence supplies the alternative.
    ``ConflictError`` if :data:`MAX_HOST_MAC_ATTEMPTS` alternatives are all taken.
    """
    used = _Used({_comparable(mac) for mac in taken}, taken_normalized)
    if scheme == "jng":
        if parent_mac is None:
            raise ValueError("the jng MAC scheme needs the parent NIC's MAC address")
        derived = jng_mac(vimage, parent_mac, jng_counter)
        if derived not in used:
            return derived
    elif scheme != "host":
        raise ValueError(f"unknown MAC scheme {scheme!r} (expected one of {MAC_SCHEMES})")
    for attempt in range(MAX_HOST_MAC_ATTEMPTS):
        candidate = host_mac(host_uuid, vimage, index, attempt)
        if candidate not in used:
            return candidate
    raise ConflictError(
        f"no free MAC address for bridge {index} of vimage {vimage} "
        f"after {MAX_HOST_MAC_ATTEMPTS} attempts"
    )


class _Used:
    """Membership in either of two sets, without building their union."""

    def __init__(self, small: AbstractSet[str], big: Container[str]) -> None:
        self._small, self._big = small, big

    def __contains__(self, mac: object) -> bool:
        return mac in self._small or mac in self._big


def comparable_mac(mac: str) -> str:
    """``mac`` as :func:`choose_mac` compares it (normalized, or as written if unparsable)."""
    return _comparable(mac)


def _comparable(mac: str) -> str:
    try:
        return normalize_mac(mac)
    except ValueError:
        return mac.strip().lower()


CNI_MAC_DOMAIN = b"vimaged cni_mac v1"


def attachment_mac(host_uuid: str, container_id: str, ifname: str) -> str:
    """The default address of a CNI attachment (vimaged-cni): stable for one container and
    interface on one host, as :func:`host_mac` is for a vimage's bridge.

    ``sha256(CNI_MAC_DOMAIN + NUL + uuid + NUL + container_id + NUL + ifname)``, first six
    bytes, locally administered unicast. Frozen: the tests pin a value.
    """
    material = b"\0".join(
        (CNI_MAC_DOMAIN, host_uuid.strip().lower().encode(), container_id.encode(), ifname.encode())
    )
    digest = bytearray(hashlib.sha256(material).digest()[:6])
    digest[0] = (digest[0] | _UNIVERSAL_LOCAL_BIT) & ~_MULTICAST_BIT & 0xFF
    return format_mac(bytes(digest))
