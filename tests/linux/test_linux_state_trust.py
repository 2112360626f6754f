"""Linux tier: an unprivileged neighbour (uid 65534) prepares the state dir or plants a lock
beside the socket; the real daemon refuses to start and touches nothing (issue 10 item 2)."""

from __future__ import annotations

import errno
import os
import uuid
from typing import TYPE_CHECKING

import pytest

from tests.linux.test_linux_daemon import LinuxDaemon

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.linux.conftest import World
    from vimaged.platforms import linux

pytestmark = pytest.mark.linux

NOBODY = 65534
EX_CONFIG = 78


def as_nobody(path: Path, mode: int) -> None:
    os.chmod(path, mode)
    os.chown(path, NOBODY, NOBODY)


@pytest.fixture
def daemon(world: World, tmp_path: Path) -> Iterator[LinuxDaemon]:
    d = LinuxDaemon(sim_socket="", workdir=tmp_path, host_netns=world.host)
    d.write_config('vimage_list="web"\nvimage_web_rootdir="/"\n')
    try:
        yield d
    finally:
        d.stop()


def test_a_state_dir_prepared_by_nobody_is_refused(
    world: World, daemon: LinuxDaemon, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    pins = state / "linux-netns"
    pins.mkdir(parents=True)
    evil_root = tmp_path / "evil"
    evil_root.mkdir()
    (pins / "1.root").write_text(str(evil_root))  # "run my /bin/sh as root"
    for path in (state, pins, pins / "1.root", evil_root):
        as_nobody(path, 0o777)
    done = daemon.run_to_exit()
    assert done.returncode == EX_CONFIG, done.stderr
    assert str(state) in done.stderr
    assert "Traceback" not in done.stderr
    assert not (state / "vimaged.db").exists()
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in names if n.startswith(world.prefix)]


def test_a_file_nobody_planted_in_a_root_state_dir_is_refused(
    daemon: LinuxDaemon, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    planted = state / "vimaged.db"
    planted.write_bytes(b"")
    as_nobody(planted, 0o666)
    done = daemon.run_to_exit()
    assert done.returncode == EX_CONFIG, done.stderr
    assert str(planted) in done.stderr


def test_a_socket_lock_planted_by_nobody_is_refused(daemon: LinuxDaemon) -> None:
    lock = daemon.workdir / "vimaged.sock.lock"
    lock.write_bytes(b"")
    as_nobody(lock, 0o644)
    done = daemon.run_to_exit()
    assert done.returncode == EX_CONFIG, done.stderr
    assert str(lock) in done.stderr


async def test_the_boot_id_is_the_kernels_and_stable(plat: linux.LinuxPlatform) -> None:
    first = await plat.boot_id()
    assert str(uuid.UUID(first)) == first  # random(4): a UUID made at boot
    assert await plat.boot_id() == first


async def test_a_rootdir_file_planted_as_a_link_is_not_followed(
    world: World, plat: linux.LinuxPlatform, tmp_path: Path
) -> None:
    pins = world.state_dir / "linux-netns"
    pins.mkdir(parents=True)
    (tmp_path / "evil").write_text("/home/nobody")
    (pins / "7.root").symlink_to(tmp_path / "evil")
    with pytest.raises(OSError) as raised:  # noqa: PT011 (the errno is checked)
        plat._rootdir(7)
    assert raised.value.errno == errno.ELOOP
