"""ParentNics: a bridged NIC is raised and its offloads turned off, and exactly that is undone."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from vimaged.platforms import parent_nics as parents
from vimaged.platforms.parent_nics import BRIDGED_OFFLOADS_OFF, ParentNics, ParentRecord

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

RXCSUM_TXCSUM = 0x3


class FakeNic:
    """One NIC's IFF_UP and capabilities, with SIOCSIFCAP's EINVAL for unsupported bits."""

    def __init__(self, *, up: bool, supported: int, enabled: int) -> None:
        self.up = up
        self.supported = supported
        self.enabled = enabled
        self.fail: dict[str, int] = {}
        self.calls: list[str] = []

    def _maybe_fail(self, what: str) -> None:
        self.calls.append(what)
        if what in self.fail:
            raise OSError(self.fail[what], os.strerror(self.fail[what]), "em1")

    async def is_up(self, ifname: str) -> bool:
        self._maybe_fail("is_up")
        return self.up

    async def set_up(self, ifname: str, up: bool) -> None:
        self._maybe_fail("set_up")
        self.up = up

    async def capabilities(self, ifname: str) -> tuple[int, int]:
        self._maybe_fail("capabilities")
        return self.supported, self.enabled

    async def set_capabilities(self, ifname: str, enabled: int) -> None:
        self._maybe_fail("set_capabilities")
        if enabled & ~self.supported:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), ifname)
        self.enabled = enabled


ALL = BRIDGED_OFFLOADS_OFF | RXCSUM_TXCSUM


async def test_a_down_nic_is_raised_and_lowered_again(tmp_path: Path) -> None:
    nic = FakeNic(up=False, supported=ALL, enabled=ALL)
    nics = ParentNics(tmp_path / "p", nic)
    await nics.prepare("em1")
    assert nic.up
    assert nic.enabled == RXCSUM_TXCSUM  # -tso4 -tso6 -vlanhwfilter -vlanhwtso, csum kept
    assert nics.record("em1") == ParentRecord(was_up=False, caps_cleared=BRIDGED_OFFLOADS_OFF)
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o700
    await nics.restore("em1")
    assert (nic.up, nic.enabled) == (False, ALL)
    assert nics.record("em1") is None


async def test_only_what_was_on_is_turned_off_and_back_on(tmp_path: Path) -> None:
    # The admin had TSO6 and VLAN filtering off: vimaged must not turn them on at release.
    on = parents.IFCAP_TSO4 | parents.IFCAP_VLAN_HWTSO | RXCSUM_TXCSUM
    nic = FakeNic(up=True, supported=ALL, enabled=on)
    nics = ParentNics(tmp_path, nic)
    await nics.prepare("em1")
    assert nic.enabled == RXCSUM_TXCSUM
    await nics.restore("em1")
    assert (nic.up, nic.enabled) == (True, on)
    assert "set_up" not in nic.calls  # it was up: never touched


async def test_a_record_left_by_a_killed_daemon_keeps_the_original_state(tmp_path: Path) -> None:
    nic = FakeNic(up=False, supported=ALL, enabled=ALL)
    await ParentNics(tmp_path, nic).prepare("em1")
    # killed: a new daemon builds the bridge again while the NIC is up with offloads off
    await ParentNics(tmp_path, nic).prepare("em1")
    await ParentNics(tmp_path, nic).restore("em1")
    assert (nic.up, nic.enabled) == (False, ALL)


async def test_a_failure_to_raise_the_nic_is_an_error(tmp_path: Path) -> None:
    nic = FakeNic(up=False, supported=ALL, enabled=ALL)
    nic.fail["set_up"] = errno.EPERM
    nics = ParentNics(tmp_path, nic)
    with pytest.raises(PermissionError):
        await nics.prepare("em1")
    del nic.fail["set_up"]
    await nics.restore("em1")  # what the rollback's release does: nothing was changed
    assert (nic.up, nic.enabled) == (False, ALL)
    assert nics.record("em1") is None


async def test_an_offload_the_driver_refuses_is_kept_and_not_restored(tmp_path: Path) -> None:
    nic = FakeNic(up=True, supported=ALL, enabled=ALL)
    nic.fail["set_capabilities"] = errno.EOPNOTSUPP
    nics = ParentNics(tmp_path, nic)
    await nics.prepare("em1")
    assert nic.enabled == ALL
    assert nics.record("em1") == ParentRecord(was_up=True, caps_cleared=0)
    del nic.fail["set_capabilities"]
    nic.calls.clear()
    await nics.restore("em1")
    assert "set_capabilities" not in nic.calls


async def test_a_failed_restore_keeps_the_record_for_the_next_release(tmp_path: Path) -> None:
    nic = FakeNic(up=False, supported=ALL, enabled=ALL)
    nics = ParentNics(tmp_path, nic)
    await nics.prepare("em1")
    nic.fail["set_up"] = errno.EBUSY
    await nics.restore("em1")
    assert nics.record("em1") is not None
    del nic.fail["set_up"]
    await nics.restore("em1")
    assert (nic.up, nics.record("em1")) == (False, None)


async def test_a_nic_that_is_gone_drops_its_record(tmp_path: Path) -> None:
    nic = FakeNic(up=False, supported=ALL, enabled=ALL)
    nics = ParentNics(tmp_path, nic)
    await nics.prepare("em1")
    nic.fail["capabilities"] = errno.ENXIO
    await nics.restore("em1")
    assert nics.record("em1") is None


async def test_no_record_means_nothing_is_undone(tmp_path: Path) -> None:
    # A bridge vimaged did not build (or built before records existed): hands off the NIC.
    nic = FakeNic(up=True, supported=ALL, enabled=0)
    (tmp_path / "parent.em1.json").write_bytes(b"{torn")
    await ParentNics(tmp_path, nic).restore("em1")
    await ParentNics(tmp_path, nic).restore("em2")
    assert nic.calls == []


async def test_a_vlan_parent_gets_a_record_of_its_own(tmp_path: Path) -> None:
    nic = FakeNic(up=False, supported=0, enabled=0)
    nics = ParentNics(tmp_path, nic, offloads_off=0)
    await nics.prepare("igb0.100")
    assert (tmp_path / "parent.igb0.100.json").exists()
    assert nics.record("igb0") is None


async def test_a_record_planted_as_a_link_is_not_followed(tmp_path: Path) -> None:
    # a record says what to undo on a real NIC: one reached through a link proves nothing
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(b'{"was_up": false, "caps_cleared": 0}')
    (tmp_path / "parent.em1.json").symlink_to(elsewhere)
    nic = FakeNic(up=True, supported=ALL, enabled=ALL)
    with pytest.raises(OSError, match="symbolic link") as caught:
        await ParentNics(tmp_path, nic).prepare("em1")
    assert caught.value.errno == errno.ELOOP
    assert nic.calls == []  # nothing was changed on the NIC
