"""Trust in the state dir: owners, modes, links, the locks (issue 10 item 2, issue 13 item 1)."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from vimaged import statedir
from vimaged.statedir import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_UNAVAILABLE,
    DaemonRunningError,
    StateDirError,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.unit

NOBODY = 65534

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def test_a_missing_state_dir_is_created_0700(tmp_path: Path) -> None:
    path = statedir.open_state_dir(str(tmp_path / "a" / "state"))
    assert os.stat(path).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_state_dir_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, mode)
    with pytest.raises(StateDirError) as raised:
        statedir.open_state_dir(str(state))
    assert raised.value.exit_status == EX_CONFIG
    assert str(state) in str(raised.value)


@root_only
def test_a_state_dir_owned_by_an_unprivileged_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(StateDirError, match=f"uid {NOBODY}"):
        statedir.open_state_dir(str(state))


@root_only
def test_a_file_planted_in_it_by_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "linux-netns").mkdir(parents=True, mode=0o700)
    planted = state / "linux-netns" / "3.root"
    planted.write_text("/home/nobody/root")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(StateDirError) as raised:
        statedir.open_state_dir(str(state))
    assert str(planted) in str(raised.value)


def test_a_symlink_in_it_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "vimaged.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(StateDirError) as raised:
        statedir.open_state_dir(str(state))
    assert str(state / "vimaged.db") in str(raised.value)


def test_the_state_dir_itself_may_not_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    with pytest.raises(StateDirError):
        statedir.open_state_dir(str(tmp_path / "state"))


def test_a_world_writable_ancestor_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(StateDirError) as raised:
        statedir.open_state_dir(str(shared / "state"))
    assert str(shared) in str(raised.value)
    os.chmod(shared, 0o1777)  # /tmp: others cannot rename or remove what they do not own
    statedir.open_state_dir(str(shared / "state"))


def test_a_state_dir_that_cannot_be_created_is_ex_cantcreat(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError) as raised:
        statedir.open_state_dir(str(tmp_path / "file" / "state"))
    assert raised.value.exit_status == EX_CANTCREAT


@pytest.mark.parametrize("code", [errno.ELOOP, errno.EMLINK])
def test_both_systems_symlink_errnos_mean_a_link(code: int) -> None:
    assert statedir.is_symlink_error(OSError(code, os.strerror(code)))
    assert not statedir.is_symlink_error(OSError(errno.ENOENT, "x"))


def errno_of(call: Callable[[], object]) -> int | None:
    try:
        call()
    except OSError as exc:
        return exc.errno
    return None


def test_state_files_are_never_read_or_written_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("secret")
    (tmp_path / "3.root").symlink_to(target)
    assert errno_of(lambda: statedir.read_text(str(tmp_path / "3.root"))) == errno.ELOOP
    assert errno_of(lambda: statedir.write_text(str(tmp_path / "3.root"), "/")) == errno.ELOOP
    assert target.read_text() == "secret"
    assert statedir.read_text(str(tmp_path / "absent")) is None


def test_a_second_holder_of_the_lock_is_refused_and_named(tmp_path: Path) -> None:
    path = str(tmp_path / "vimaged.lock")
    first = statedir.acquire_lock(path, "pid 123, socket /s", what="state dir", subject="d")
    try:
        with pytest.raises(DaemonRunningError) as raised:
            statedir.acquire_lock(path, "pid 456", what="state dir", subject="d")
        assert raised.value.exit_status == EX_UNAVAILABLE
        assert "pid 123, socket /s" in str(raised.value)
    finally:
        first.close()
    again = statedir.acquire_lock(path, "pid 456", what="state dir", subject="d")
    again.close()
    first.close()  # idempotent


def test_a_lock_file_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.lock").symlink_to(tmp_path / "victim")
    with pytest.raises(StateDirError):
        statedir.acquire_lock(str(tmp_path / "s.lock"), "pid 1", what="socket", subject="s")
    assert not (tmp_path / "victim").exists()
