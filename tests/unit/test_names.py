"""Unit tests of vimaged.names: one rule per kind of name, and every layer applying it.

The bug these guard (issue 12): the protocol and config accepted ``1web`` and 64 characters
while the platforms want a leading letter and at most 31, so a start got as far as
``jail_conf`` and died there with ValueError.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vimaged import config, names, protocol
from vimaged.errors import ConfigError
from vimaged.platforms import JailSpec, freebsd_jailconf

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = protocol.REQUEST_DECODER

GOOD_NAMES = ["web", "W", "db_1", "a" * 31, "a_"]
BAD_NAMES = ["1web", "42", "_web", "a" * 32, "web-1", "we b", "wéb", "web\n", ""]


def status(name: str) -> bytes:
    return msgspec.json.encode({"op": "status", "names": [name]})


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_the_platforms_refuse_is_refused_by_the_protocol_and_config(name: str) -> None:
    # the platform's guard is an OSError like every platform error (issue 12)
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EINVAL):
        freebsd_jailconf.jail_conf(JailSpec(name=name, hostname="h"))
    with pytest.raises(msgspec.ValidationError):
        REQUESTS.decode(status(name))
    if name.split() == [name]:  # vimage_list is split on blanks first
        with pytest.raises(ConfigError, match="vimage_list"):
            config.build({"vimage_list": name})


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_a_good_name_passes_every_layer(name: str) -> None:
    assert config.build({"vimage_list": name}).vimages[0].name == name
    assert REQUESTS.decode(status(name)) == protocol.Status(names=(name,))
    assert freebsd_jailconf.jail_conf(JailSpec(name=name, hostname="h")).startswith(f"{name} {{\n")


@given(st.from_regex(names.VIMAGE_NAME_PATTERN, fullmatch=True))
def test_every_name_the_wire_accepts_makes_a_jail_conf(name: str) -> None:
    REQUESTS.decode(status(name))
    assert freebsd_jailconf.jail_conf(JailSpec(name=name, hostname="h"))


def test_the_wire_pattern_is_the_names_pattern() -> None:
    schema = msgspec.json.schema(protocol.Status)
    field = schema["$defs"]["Status"]["properties"]["names"]["items"]
    assert field["pattern"] == names.VIMAGE_NAME_PATTERN


@pytest.mark.parametrize("ifname", ["em0", "igb0.100", "em0:1", "vtnet1234567890", "lagg0_x", "_x"])
def test_existing_interface_names(ifname: str) -> None:
    assert names.check_ifname(ifname) == ifname


@pytest.mark.parametrize(
    "ifname", ["", "a" * 16, "em0/1", "em 0", "é0", "-em0", ".em0", "em0\n", "em'0"]
)
def test_bad_interface_names(ifname: str) -> None:
    assert not names.is_ifname(ifname)
    with pytest.raises(ValueError, match="interface name"):
        names.check_ifname(ifname)
    assert not names.is_new_ifname(ifname)


@pytest.mark.parametrize("ifname", ["igb0.100", "em0:1"])
def test_a_vlan_parent_is_no_name_for_a_new_interface(ifname: str) -> None:
    # netgraph addresses split at '.' and ':' (ng_path_parse), Linux's dev_valid_name refuses ':'
    assert names.is_ifname(ifname)
    with pytest.raises(ValueError, match="interface name"):
        names.check_new_ifname(ifname)


def test_bridged_names_and_their_length_rule() -> None:
    assert names.bridged_ifname(0, "web") == "ng0_web"
    assert names.is_new_ifname(names.bridged_ifname(9, "a" * 11))
    assert names.bridged_ifname_problem(10, "a" * 11) is None  # ng9_ + 11 = 15
    assert names.bridged_ifname_problem(11, "a" * 11) is not None  # ng10_ + 11 = 16
    assert names.bridged_ifname_problem(0, "a" * 64) is None


@pytest.mark.parametrize(("alias", "good"), [("web", True), ("1", False), ("a-b", False)])
def test_alias_rule(alias: str, good: bool) -> None:
    assert names.is_alias(alias) is good


def test_ifnamsiz_is_defined_once_but_for_deliberate_copies() -> None:
    definitions = [
        str(path.relative_to(ROOT))
        for package in ("vimaged", "vimagectl", "vimaged_cni")
        for path in sorted((ROOT / package).rglob("*.py"))
        if re.search(r"^IFNAMSIZ\b[^=]*=", path.read_text(), re.MULTILINE)
    ]
    # the simulated host models the kernel (vimaged/cni/ checks CNI_IFNAME with names')
    assert definitions == [
        "vimaged/names.py",
        "vimaged/simhost/ng_message.py",
    ]


def test_the_cni_interface_name_is_the_names_rule() -> None:
    schema = msgspec.json.schema(protocol.CniAdd)
    field = schema["$defs"]["CniAdd"]["properties"]["ifname"]
    assert field["pattern"] == names.SANDBOX_IFNAME_PATTERN
