"""``vimaged``: parse arguments, read rc.conf, configure logging, load the platform, run.

Exit status follows sysexits(3): 64 usage, 69 another daemon owns the socket or the platform
cannot run vimages, 71 an OS error, 78 a configuration error or a state dir or journal that
cannot be trusted or read, 73 a journal that cannot be created or written, 74 a full state dir
or an I/O error on it, 69 also when another daemon holds the state dir or socket lock,
75 a journal busy in another process, 70 anything else.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from vimaged import __version__
from vimaged.errors import EX_CANTCREAT, EX_NOPERM
from vimaged.errors import EX_CONFIG as EX_CONFIG  # re-exported: tests read the statuses here
from vimaged.errors import EX_OSERR as EX_OSERR
from vimaged.errors import EX_SOFTWARE as EX_SOFTWARE
from vimaged.errors import EX_UNAVAILABLE as EX_UNAVAILABLE
from vimaged.errors import EX_USAGE as EX_USAGE

if TYPE_CHECKING:
    from vimaged.config import Config

DEFAULT_SOCKET = "/var/run/vimaged.sock"
DEFAULT_STATE_DIR = "/var/db/vimaged"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"vimaged: {message}\n")


def default_platform() -> str:
    return "freebsd" if sys.platform.startswith("freebsd") else "sim"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="vimaged", description="Supervisor for FreeBSD vimages (VNET jails).")
    parser.add_argument("--version", action="version", version=f"vimaged {__version__}")
    parser.add_argument(
        "--platform",
        choices=("freebsd", "linux", "sim"),
        default=default_platform(),
        help="kernel to drive (default: freebsd on FreeBSD, sim elsewhere)",
    )
    parser.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="rc.conf(5) file to read; repeatable, later files override earlier ones "
        "(default: /etc/rc.conf, /etc/rc.conf.local, /etc/rc.conf.d/vimaged, "
        "/usr/local/etc/rc.conf.d/vimaged)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the configuration (and, but on an unstarted sim, that its NICs exist), "
        "print what was read, exit 0 or 78; nothing is started",
    )
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="control socket path")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="journal and MACs")
    parser.add_argument(
        "--log-format",
        choices=("console", "json", "syslog"),
        default=None,
        help="console (default on a terminal), json (default otherwise) or syslog: straight "
        "to syslog(3), facility daemon, each line at its level's priority",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    sim = parser.add_argument_group("sim platform")
    sim.add_argument("--sim-host", metavar="PATH", help="socket of a running simulated host")
    sim.add_argument("--sim-nics", metavar="NICS", help='NICs of a started sim host ("em0 em1")')
    sim.add_argument("--sim-faults", metavar="SPEC", help="faults of a started sim host")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported here so that ``vimaged --help`` stays quick and import errors get a clean exit.
    import trio

    from vimaged import config, daemon, log, platforms
    from vimaged.errors import ConfigError, PlatformError, StateDirError, VimagedError

    # Most specific first: ConfigError and PlatformError are VimagedErrors. A StateDirError
    # (DaemonRunningError too) carries its own status and is answered before this table.
    exit_statuses: list[tuple[type[Exception], int]] = [
        (ConfigError, EX_CONFIG),
        (PlatformError, EX_UNAVAILABLE),
        (VimagedError, EX_SOFTWARE),
        (OSError, EX_OSERR),
    ]
    json_logs = args.log_format == "json" or (args.log_format is None and not sys.stderr.isatty())
    log.configure(json=json_logs, level=args.log_level, log_format=args.log_format)
    options: dict[str, str] = {"state_dir": args.state_dir}
    for key in ("sim_host", "sim_nics", "sim_faults"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    try:
        cfg = config.load(args.config)
        if args.check_config:
            return _check_config(cfg, args)
        # the wiring of new bridges; linux has none and ignores it
        platform = platforms.load(args.platform, bridge_mode=cfg.bridge_mode, **options)
        trio.run(
            lambda: daemon.run(
                cfg,
                platform,
                socket_path=args.socket,
                state_dir=args.state_dir,
                config_paths=args.config,
            )
        )
    except KeyboardInterrupt:
        return 0
    except Exception as raised:
        exc = _single_cause(raised)
        if not isinstance(exc, VimagedError | OSError):
            raise
        print(f"vimaged: {_exit_message(exc)}", file=sys.stderr)
        if isinstance(exc, StateDirError):
            return exc.exit_status
        if isinstance(exc, PermissionError) and os.geteuid() != 0:
            return EX_NOPERM
        return next(status for cls, status in exit_statuses if isinstance(exc, cls))
    return 0


def _exit_message(exc: Exception) -> str:
    """The one line vimaged leaves on stderr when it cannot run: an errno in words, never
    ``[Errno 13]``; a permission problem met by an unprivileged user says why (issue 13)."""
    from vimaged.errors import PERMISSION_ERRNOS, StateDirError, describe_oserror

    message = describe_oserror(exc) if isinstance(exc, OSError) else str(exc)
    denied = (isinstance(exc, OSError) and exc.errno in PERMISSION_ERRNOS) or (
        isinstance(exc, StateDirError) and exc.exit_status == EX_CANTCREAT
    )
    if denied and os.geteuid() != 0:
        message += f"; vimaged needs root (running as uid {os.geteuid()})"
    return message


def _check_config(cfg: Config, args: argparse.Namespace) -> int:
    """``--check-config``: the configuration is valid (``load`` raised otherwise); then every
    NIC it names must be on the host or inside a jail (moved in by a running vimage).

    The sim platform is asked only when ``--sim-host`` names a running one: checking must not
    start a simulated host.
    """
    import trio

    from vimaged import host_nics, platforms

    names = ", ".join(v.name for v in cfg.vimages) or "none"
    nics = sorted({n for v in cfg.vimages for n in (*v.vnets, *(b.parent for b in v.bridges))})
    checked = "no NICs to look for"
    if nics and (args.platform != "sim" or args.sim_host):
        options = {"sim_host": args.sim_host} if args.sim_host else {}
        platform = platforms.load(args.platform, **options)

        async def check() -> list[str]:
            try:
                return await host_nics.host_nic_warnings(cfg, platform, in_any_jail=True)
            finally:
                await platform.aclose()

        # An absent NIC is a warning, not an error: its vimages wait for it (issue 13.5), so
        # rc.d's configtest must not refuse a NIC that attaches late.
        warnings = trio.run(check)
        for line in warnings:
            print(f"vimaged: warning: {line}", file=sys.stderr)
        absent = {line.partition(": ")[2].partition(":")[0] for line in warnings}
        checked = f"NICs present: {' '.join(n for n in nics if n not in absent) or 'none'}"
        if absent:
            checked += f"; absent: {' '.join(sorted(absent))}"
    elif nics:
        checked = "NICs not checked (no --sim-host)"
    print(
        f"vimaged: configuration OK: {len(cfg.vimages)} vimage(s) ({names}); {checked}; "
        f"read {', '.join(cfg.sources) or 'no file'}"
    )
    return 0


def _single_cause(exc: Exception) -> Exception:
    """The one error inside nested single-member exception groups (trio's nurseries wrap)."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
