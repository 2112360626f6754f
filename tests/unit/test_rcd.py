"""Unit tier: etc/rc.d/vimaged and etc/rc.d/vimage under /bin/sh with a stand-in rc.subr.

The scripts run unchanged except two paths: ``/etc/rc.subr`` becomes tests/unit/rcd/rc.subr
(which records instead of acting) and ``/usr/local`` a temporary prefix holding a vimagectl
that records its arguments, as the port's ``%%PREFIX%%`` substitution would. Everything lands
in one log, so the order of what a start, a restart and a system shutdown do is visible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RC_D = ROOT / "etc" / "rc.d"
STAND_IN = Path(__file__).resolve().parent / "rcd" / "rc.subr"


@dataclass
class Harness:
    tmp: Path

    @property
    def log(self) -> Path:
        return self.tmp / "rc.log"

    @property
    def prefix(self) -> Path:
        return self.tmp / "prefix"

    def install(self, script: str) -> Path:
        text = (RC_D / script).read_text()
        assert "\n. /etc/rc.subr\n" in text
        text = text.replace("/etc/rc.subr", str(STAND_IN)).replace("/usr/local", str(self.prefix))
        path = self.tmp / script
        path.write_text(text)
        return path

    def rc_conf(self, text: str) -> None:
        (self.tmp / "rc.conf").write_text(text)

    def run(
        self, script: str, *args: str, shutdown: str | None = None, status: int = 0
    ) -> list[str]:
        """``service SCRIPT ARGS`` or, with ``shutdown``, what rc.shutdown(8) does; the script
        must exit ``status``."""
        path = self.install(script)
        env = {
            "PATH": os.environ["PATH"],
            "RC_LOG": str(self.log),
            "RC_CONF": str(self.tmp / "rc.conf"),
        }
        if shutdown is None:
            argv = ["/bin/sh", str(path), *args]
        else:
            # rc.shutdown: rc_shutdown=${1:-"unspecified"}; run_rc_script $file faststop,
            # which sources the script in a subshell with "set $_arg".
            argv = ["/bin/sh", "-c", f'rc_shutdown={shutdown}; set -- faststop; . "$0"', str(path)]
        done = subprocess.run(argv, env=env, check=False, timeout=10)
        assert done.returncode == status
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def rc(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    bindir = harness.prefix / "bin"
    bindir.mkdir(parents=True)
    ctl = bindir / "vimagectl"
    ctl.write_text(f'#!/bin/sh\necho "VIMAGECTL: $*" >> "{harness.log}"\n')
    ctl.chmod(0o755)
    # The daemon itself runs only as --check-config here (daemon(8) is recorded, not run);
    # it exits with the status in the file "configtest", 0 when there is none.
    sbindir = harness.prefix / "sbin"
    sbindir.mkdir()
    daemon = sbindir / "vimaged"
    status = tmp_path / "configtest"
    daemon.write_text(
        f'#!/bin/sh\necho "VIMAGED: $*" >> "{harness.log}"\n'
        f'echo "vimaged: configuration OK"\n'
        f'[ -f "{status}" ] && exit "$(cat "{status}")"\nexit 0\n'
    )
    daemon.chmod(0o755)
    harness.rc_conf(f'vimaged_enable="YES"\nvimaged_state_dir="{tmp_path}/db"\n')
    return harness


def test_start_runs_vimaged_under_daemon_with_its_flags_last(rc: Harness) -> None:
    rc.rc_conf(
        'vimaged_enable="YES"\n'
        f'vimaged_state_dir="{rc.tmp}/db"\n'
        'vimaged_config="/etc/rc.conf /usr/local/etc/vimaged.conf"\n'
        'vimaged_flags="--log-level debug"\n'
    )
    check, line = rc.run("vimaged", "start")
    assert check.split() == [
        "VIMAGED:",
        *("--platform", "freebsd", "--check-config"),
        *("--config", "/etc/rc.conf"),
        *("--config", "/usr/local/etc/vimaged.conf"),
    ]
    assert line.split() == [
        "EXEC:",
        "/usr/sbin/daemon",
        *("-r", "-S", "-T", "vimaged", "-P", "/var/run/vimaged.pid"),
        f"{rc.prefix}/sbin/vimaged",
        *("--platform", "freebsd"),
        *("--log-format", "syslog"),
        *("--socket", "/var/run/vimaged.sock"),
        *("--state-dir", f"{rc.tmp}/db"),
        *("--config", "/etc/rc.conf"),
        *("--config", "/usr/local/etc/vimaged.conf"),
        *("--log-level", "debug"),
    ]
    assert (rc.tmp / "db").is_dir()


def test_disabled_vimaged_does_not_start(rc: Harness) -> None:
    rc.rc_conf("")
    assert rc.run("vimaged", "start") == ["DISABLED: vimaged_enable"]


def test_onestart_ignores_the_rcvar(rc: Harness) -> None:
    rc.rc_conf(f'vimaged_state_dir="{rc.tmp}/db"\n')
    line = rc.run("vimaged", "onestart")[-1]
    assert line.startswith("EXEC: /usr/sbin/daemon ")


def test_stop_and_restart_keep_the_vimages_running(rc: Harness) -> None:
    assert rc.run("vimaged", "stop") == ["KILL: TERM /var/run/vimaged.pid"]
    lines = rc.run("vimaged", "restart")
    assert [line.split(":")[0] for line in lines] == ["KILL", "KILL", "VIMAGED", "EXEC"]
    assert not [line for line in lines if line.startswith("VIMAGECTL")]


def test_system_shutdown_stops_vimages_before_the_daemon(rc: Harness) -> None:
    assert rc.run("vimaged", shutdown="reboot") == [
        "VIMAGECTL: --timeout 80 stop --all",
        "KILL: TERM /var/run/vimaged.pid",
    ]


def test_shutdown_goes_on_when_vimagectl_fails(rc: Harness) -> None:
    (rc.prefix / "bin" / "vimagectl").write_text(
        f'#!/bin/sh\necho "VIMAGECTL: $*" >> "{rc.log}"\nexit 69\n'
    )
    lines = rc.run("vimaged", shutdown="single")
    assert lines[0] == "VIMAGECTL: --timeout 80 stop --all"
    assert lines[1].startswith("WARN: ")
    assert lines[2] == "KILL: TERM /var/run/vimaged.pid"


def test_a_bad_configuration_is_said_once_and_nothing_starts(rc: Harness) -> None:
    # vimaged would exit 78, and daemon(8) -r would start it again every second.
    (rc.tmp / "configtest").write_text("78")
    lines = rc.run("vimaged", "start", status=1)
    assert lines[0].startswith("VIMAGED: --platform freebsd --check-config")
    assert lines[1] == "WARN: vimaged not started: its configuration has errors (above)"
    assert not [line for line in lines if line.startswith("EXEC")]
    assert not (rc.tmp / "db").exists()


def test_configtest_checks_what_start_would_read(rc: Harness) -> None:
    rc.rc_conf('vimaged_enable="YES"\nvimaged_config="/usr/local/etc/vimaged.conf"\n')
    assert rc.run("vimaged", "configtest") == [
        "VIMAGED: --platform freebsd --check-config --config /usr/local/etc/vimaged.conf"
    ]


def test_other_socket_reaches_vimagectl(rc: Harness) -> None:
    rc.rc_conf('vimaged_enable="YES"\nvimaged_socket="/var/run/other.sock"\n')
    assert rc.run("vimaged", "reload") == ["VIMAGECTL: --socket /var/run/other.sock reload"]


def test_vimaged_rcorder_headers() -> None:
    text = (RC_D / "vimaged").read_text()
    assert "# PROVIDE: vimaged\n" in text
    assert "# REQUIRE: NETWORKING syslogd\n" in text
    assert "# BEFORE: LOGIN\n" in text
    assert "shutdown" in text.split("# KEYWORD:")[1].splitlines()[0].split()


@pytest.fixture
def vimage_rc(rc: Harness) -> Harness:
    rc.rc_conf('vimage_enable="YES"\nvimage_list="web db"\n')
    return rc


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("start", "db"), "start db"),
        (("start",), "start --all"),
        (("stop", "web", "db"), "stop web db"),
        (("stop",), "stop --all"),
        (("restart",), "restart web db"),
        (("restart", "web"), "restart web"),
        (("status",), "list"),
        (("status", "db"), "status db"),
    ],
)
def test_vimage_delegates_to_vimagectl(
    vimage_rc: Harness, args: tuple[str, ...], expected: str
) -> None:
    assert vimage_rc.run("vimage", *args) == [f"VIMAGECTL: {expected}"]


def test_vimage_restart_with_empty_list_does_nothing(rc: Harness) -> None:
    rc.rc_conf('vimage_enable="YES"\n')
    assert rc.run("vimage", "restart") == []


@pytest.mark.parametrize("autostart", ["", 'vimage_enable="NO"\n', 'vimage_enable="YES"\n'])
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("start", "web"), "start web"),
        (("stop", "web"), "stop web"),
        (("restart", "web"), "restart web"),
        (("onestart", "web"), "start web"),
        (("onestop", "web"), "stop web"),
    ],
)
def test_vimage_works_whatever_the_autostart_setting(
    rc: Harness, autostart: str, args: tuple[str, ...], expected: str
) -> None:
    # vimage_enable is vimaged's "autostart vimage_list", not this script's rcvar: with it as
    # rcvar, run_rc_command said "Cannot 'start' vimage" and exited 0 whenever it was off.
    rc.rc_conf(autostart + 'vimage_list="web"\n')
    assert rc.run("vimage", *args) == [f"VIMAGECTL: {expected}"]


@pytest.mark.parametrize(
    "args", [("start", "web"), ("stop", "web"), ("restart", "web"), ("start",), ("status",)]
)
def test_vimage_exits_nonzero_when_vimagectl_fails(rc: Harness, args: tuple[str, ...]) -> None:
    (rc.prefix / "bin" / "vimagectl").write_text(
        f'#!/bin/sh\necho "VIMAGECTL: $*" >> "{rc.log}"\nexit 69\n'
    )
    rc.rc_conf('vimage_list="web"\n')
    # run_rc_command returns 1 when a ${rc_arg}_cmd fails (rc.subr's _run_rc_doit).
    lines = rc.run("vimage", *args, status=1)
    assert len(lines) == 1
    assert lines[0].startswith("VIMAGECTL: ")


def test_vimage_has_no_rcvar() -> None:
    # service -e lists scripts whose rcvar is YES; this one never runs at boot.
    text = (RC_D / "vimage").read_text()
    assert not [line for line in text.splitlines() if line.lstrip().startswith("rcvar=")]


def test_vimage_never_runs_at_boot_or_shutdown() -> None:
    keywords = (RC_D / "vimage").read_text().split("# KEYWORD:")[1].splitlines()[0].split()
    assert "nostart" in keywords
    assert "shutdown" not in keywords


def test_scripts_are_executable() -> None:
    for script in ("vimaged", "vimage"):
        assert os.access(RC_D / script, os.X_OK)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    subprocess.run(
        ["shellcheck", "-s", "sh", str(RC_D / "vimaged"), str(RC_D / "vimage"), str(STAND_IN)],
        check=True,
        timeout=60,
    )
