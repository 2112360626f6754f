"""Unit tests of the MAC schemes (domain layer): frozen host_mac values, bit-exact jng."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vimaged import macs
from vimaged.errors import ConflictError
from vimaged.protocol import VIMAGE_NAME_PATTERN

pytestmark = pytest.mark.unit

UUID = "0f3c8e2a-1d2b-4c5e-9f00-123456789abc"
OTHER_UUID = "6a1d0d7e-58f0-11ee-8c99-0242ac120002"
VBOX_EM0 = "08:00:27:e7:1b:18"

names = st.from_regex(VIMAGE_NAME_PATTERN, fullmatch=True)
uuids = st.uuids().map(str)
# The properties must not depend on the machine's speed: a slow (emulated) CPU made
# hypothesis's too_slow health check fail them on FreeBSD.
machine_independent = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("host_uuid", "vimage", "index", "attempt", "expected"),
    [
        (UUID, "web", 0, 0, "8a:0b:c1:dc:0c:9b"),
        (UUID, "web", 1, 0, "56:5c:bb:cb:7d:ac"),
        (UUID, "db", 0, 0, "12:f2:c6:97:ba:40"),
        (OTHER_UUID, "web", 0, 0, "6e:c7:98:a4:5b:bb"),
        (UUID, "web", 0, 1, "3e:0d:97:80:ad:00"),
        (UUID.upper(), "web", 0, 0, "8a:0b:c1:dc:0c:9b"),  # hostuuid spelling does not matter
    ],
)
def test_host_mac_is_frozen(
    host_uuid: str, vimage: str, index: int, attempt: int, expected: str
) -> None:
    assert macs.host_mac(host_uuid, vimage, index, attempt) == expected


@machine_independent
@given(uuids, names, st.integers(0, 4096), st.integers(0, 300))
def test_host_mac_is_unicast_locally_administered(
    host_uuid: str, vimage: str, index: int, attempt: int
) -> None:
    mac = macs.host_mac(host_uuid, vimage, index, attempt)
    assert macs.is_unicast(mac)
    assert macs.is_locally_administered(mac)
    assert macs.parse_mac(mac) == mac
    assert mac == macs.host_mac(host_uuid, vimage, index, attempt)


@machine_independent
@given(st.lists(st.tuples(uuids, names, st.integers(0, 64)), min_size=2, max_size=50, unique=True))
def test_host_mac_distinct_inputs_give_distinct_macs(
    inputs: list[tuple[str, str, int]],
) -> None:
    assert len({macs.host_mac(*args) for args in inputs}) == len(inputs)


def test_bsd_sum1_matches_freebsd_sum() -> None:
    # values of `echo -n NAME | sum` cited in lineage.md §5
    assert macs.bsd_sum1(b"xxx") == 210
    assert macs.bsd_sum1(b"NAME") == 32901
    assert macs.bsd_sum1(b"7") == 0x37
    assert macs.bsd_sum1(b"aaaaabbaaG") == 0x27


@pytest.mark.parametrize(
    ("vimage", "parent", "counter", "expected"),
    [
        ("xxx", VBOX_EM0, 0, "02:00:d2:e7:1b:18"),
        ("xxx", VBOX_EM0, 1, "12:00:d2:e7:1b:18"),
        ("NAME", VBOX_EM0, 0, "02:80:85:e7:1b:18"),
        ("NAME", VBOX_EM0, 1, "12:80:85:e7:1b:18"),
        ("NAME", VBOX_EM0, 16, "02:80:85:e7:1b:18"),  # counter & 15, as jng
        ("xxx", "02:00:27:e7:1b:18", 0, "0a:00:d2:e7:1b:18"),  # 2nd digit 2 -> P = a
        ("xxx", "0E:00:27:E7:1B:18", 0, "02:00:d2:e7:1b:18"),  # 2nd digit e -> P = 2
    ],
)
def test_jng_mac_reproduces_derive_mac(
    vimage: str, parent: str, counter: int, expected: str
) -> None:
    assert macs.jng_mac(vimage, parent, counter) == expected


@machine_independent
@given(names, st.binary(min_size=6, max_size=6), st.integers(0, 1000))
def test_jng_mac_is_unicast_locally_administered(vimage: str, parent: bytes, counter: int) -> None:
    mac = macs.jng_mac(vimage, macs.format_mac(parent), counter)
    assert macs.is_unicast(mac)
    assert macs.is_locally_administered(mac)
    assert mac[9:] == macs.format_mac(parent)[9:]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("02:00:00:00:00:AA", "02:00:00:00:00:aa"),
        ("2:0:0:0:0:aa", "02:00:00:00:00:aa"),
        ("02-00-00-00-00-01", "02:00:00:00:00:01"),
        ("08:00:27:e7:1b:18", "08:00:27:e7:1b:18"),  # universally administered is allowed
    ],
)
def test_parse_mac_normalises(text: str, expected: str) -> None:
    assert macs.parse_mac(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "02:00:00:00:00",
        "02:00:00:00:00:00:00",
        "02:00:00:00:00:0g",
        "02:00:00-00:00:01",
        "020000000001",
        "01:00:5e:00:00:01",  # multicast
        "ff:ff:ff:ff:ff:ff",  # broadcast
        "00:00:00:00:00:00",
        "em0",
    ],
)
def test_parse_mac_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text)):
        macs.parse_mac(text)


@machine_independent
@given(st.binary(min_size=6, max_size=6))
def test_format_then_normalize_round_trips(octets: bytes) -> None:
    text = macs.format_mac(octets)
    assert macs.mac_octets(text) == octets
    assert macs.normalize_mac(text.upper()) == text


def test_choose_mac_host_skips_taken() -> None:
    first = macs.host_mac(UUID, "web", 0)
    second = macs.host_mac(UUID, "web", 0, 1)
    chosen = macs.choose_mac(
        "host",
        host_uuid=UUID,
        vimage="web",
        index=0,
        parent_mac=None,
        jng_counter=0,
        taken={first.upper()},
    )
    assert chosen == second


def _choose_jng(taken: tuple[str, ...]) -> str:
    return macs.choose_mac(
        "jng",
        host_uuid=UUID,
        vimage="xxx",
        index=1,
        parent_mac=VBOX_EM0,
        jng_counter=1,
        taken=taken,
    )


def test_choose_mac_jng_prefers_derived_then_falls_back_to_host() -> None:
    assert _choose_jng(()) == "12:00:d2:e7:1b:18"
    assert _choose_jng(("12:00:d2:e7:1b:18",)) == macs.host_mac(UUID, "xxx", 1)


def test_choose_mac_jng_needs_parent_mac() -> None:
    with pytest.raises(ValueError, match="parent"):
        macs.choose_mac(
            "jng", host_uuid=UUID, vimage="web", index=0, parent_mac=None, jng_counter=0, taken=()
        )


def test_choose_mac_gives_up_with_conflict() -> None:
    taken = {macs.host_mac(UUID, "web", 0, n) for n in range(macs.MAX_HOST_MAC_ATTEMPTS)}
    with pytest.raises(ConflictError):
        macs.choose_mac(
            "host",
            host_uuid=UUID,
            vimage="web",
            index=0,
            parent_mac=None,
            jng_counter=0,
            taken=taken,
        )


def test_property_tests_do_not_depend_on_the_machines_speed() -> None:
    # tests/conftest.py loads this profile for every property test that says nothing else.
    default = settings()
    assert default.deadline is None
    assert HealthCheck.too_slow in default.suppress_health_check
