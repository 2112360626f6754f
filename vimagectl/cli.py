"""vimagectl: the command line of vimaged (vimagectl layer).

One function per verb; human output like jls(8), ``--json`` for scripts, and ``health`` as a
Nagios plugin. Exit statuses follow sysexits(3) through the single :data:`EXIT_STATUS` table
(also in docs/protocol.md). Imports neither trio nor structlog, so it starts fast.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import msgspec

from vimagectl.client import DEFAULT_SOCKET, Client, ClientError
from vimaged import __version__
from vimaged.protocol import (
    VIMAGE_NAME_PATTERN,
    Done,
    Error,
    Health,
    ListVimages,
    Reload,
    Reloaded,
    Restart,
    Start,
    Status,
    Stop,
    Version,
    VersionInfo,
    Vimages,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from vimaged.protocol import Reply, Request, VimageInfo

ReplyT = TypeVar("ReplyT", bound="Reply")

EX_OK = 0
EX_USAGE = 64
EX_NOHOST = 68
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports it: how ``events`` normally ends."""

EXIT_STATUS: dict[str, int] = {
    # The daemon's Error.code values (protocol.ERROR_CODES).
    "invalid_request": EX_PROTOCOL,
    "frame_too_large": EX_PROTOCOL,
    "permission_denied": EX_NOPERM,
    "not_found": EX_NOHOST,
    "conflict": EX_TEMPFAIL,
    "shutting_down": EX_UNAVAILABLE,
    "config": EX_CONFIG,
    "failed": EX_SOFTWARE,
    "platform": EX_OSERR,
    "os_error": EX_OSERR,
    "internal": EX_SOFTWARE,
    "busy": EX_TEMPFAIL,
    # Failures the client sees itself (client.CLIENT_CODES).
    "unreachable": EX_UNAVAILABLE,
    "closed": EX_UNAVAILABLE,
    "socket_permission": EX_NOPERM,
    "timeout": EX_TEMPFAIL,
    "bad_frame": EX_PROTOCOL,
    "bad_version": EX_PROTOCOL,
}
"""Error code → sysexits(3) status; a code this vimagectl does not know exits 70."""

DEFAULT_TIMEOUT = 60.0

NAGIOS_STATUS = {"ok": 0, "degraded": 1, "failed": 2, "unknown": 3}
NAGIOS_LABEL = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
NAGIOS_UNKNOWN = 3

_NAME = re.compile(VIMAGE_NAME_PATTERN)
_JSON = msgspec.json.Encoder()


def exit_status(code: str | None) -> int:
    """The sysexits(3) status for an error code (``None``: an outcome without one, ``failed``)."""
    return EXIT_STATUS.get(code or "failed", EX_SOFTWARE)


class UsageError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """Exits 64 (EX_USAGE) on bad usage, not argparse's 2; ``health``'s exits 3 (UNKNOWN)."""

    def __init__(self, *args: Any, usage_status: int = EX_USAGE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_status = usage_status

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}", self.usage_status)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, told the width so that argparse does not import shutil for it.

    argparse builds a formatter for every add_argument, and its default asks
    shutil.get_terminal_size, whose import (with zlib, bz2 and lzma) costs vimagectl about 4 ms
    of a start-up budget of ~40; os answers the same question.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            try:
                columns = os.get_terminal_size().columns  # of stdout
            except OSError:
                columns = 80
        super().__init__(prog, indent_increment, max_help_position, width=max(columns, 40) - 2)


def vimage_name(text: str) -> str:
    if _NAME.search(text) is None:
        raise argparse.ArgumentTypeError(
            f"bad vimage name {text!r}: letters, digits and _, at most 64, not all digits"
        )
    return text


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"timeout must be positive and finite, got {text}")
    return seconds


VERBS: dict[str, str] = {
    "list": "table of all vimages",
    "status": "details of the named vimages",
    "start": "start the named vimages, or --all",
    "stop": "stop the named vimages, or --all",
    "restart": "stop then start the named vimages",
    "health": "Nagios plugin: the worst health (exit 0-3)",
    "reload": "re-read rc.conf(5)",
    "version": "client, daemon and protocol versions",
    "events": "stream events as JSON lines until interrupted",
}


def _add_global_options(parser: argparse.ArgumentParser, *, default: bool) -> None:
    # Given before or after the verb (`vimagectl list --json`). The verb's parser leaves
    # unset options unset (SUPPRESS), so it never overwrites one given before the verb.
    unset = argparse.SUPPRESS
    parser.add_argument("-s", "--socket", default=None if default else unset, help="socket")
    parser.add_argument(
        "--json", action="store_true", default=False if default else unset, help="JSON output"
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT if default else unset,
        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; the verb's own one is built only for the verb given.

    Building all nine up front costs several milliseconds of start-up (argparse looks up
    gettext catalogs for every parser), a tenth of vimagectl's budget.
    """
    verbs = "\n".join(f"  {verb:<9} {text}" for verb, text in VERBS.items())
    parser = _Parser(
        prog="vimagectl",
        description="Control vimaged, the supervisor of FreeBSD vimages (VNET jails).",
        epilog=f"commands:\n{verbs}\n\n"
        f"socket: -s, else $VIMAGED_SOCKET, else {DEFAULT_SOCKET}.\n"
        "exit status: sysexits(3); health exits 0-3 like a Nagios plugin.",
        formatter_class=_Formatter,
    )
    _add_global_options(parser, default=True)
    parser.add_argument("verb", choices=VERBS, metavar="COMMAND")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARGUMENTS")
    return parser


def build_verb_parser(verb: str) -> argparse.ArgumentParser:
    status = NAGIOS_UNKNOWN if verb == "health" else EX_USAGE
    parser = _Parser(
        prog=f"vimagectl {verb}",
        description=VERBS[verb],
        formatter_class=_Formatter,
        usage_status=status,
    )
    _add_global_options(parser, default=False)
    if verb in ("status", "restart"):
        parser.add_argument("names", nargs="+", type=vimage_name, metavar="NAME")
    elif verb in ("start", "stop", "health"):
        parser.add_argument("names", nargs="*", type=vimage_name, metavar="NAME")
    if verb in ("start", "stop"):
        parser.add_argument("--all", action="store_true", help="every configured vimage")
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Raises:
        UsageError: with the exit status to use (64, or 3 for ``health``).
    """
    args = build_parser().parse_args(argv)
    build_verb_parser(args.verb).parse_args(args.arguments, namespace=args)
    if args.verb in ("start", "stop") and bool(args.names) == bool(args.all):
        raise UsageError(f"{args.verb}: give vimage names or --all, not both or neither", 64)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The vimagectl command: its exit status. The process is expected to exit right after."""
    try:
        return _run(argv)
    finally:
        # Interpreter exit collects over every object left (typing's and msgspec's included),
        # about 4 ms, a tenth of vimagectl's start-to-exit time; frozen objects are skipped.
        gc.freeze()


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = parse(argv)
    except UsageError as exc:
        if exc.status == NAGIOS_UNKNOWN:
            print(f"VIMAGED UNKNOWN - usage: {exc}".splitlines()[0])
        print(f"vimagectl: {exc}", file=sys.stderr)
        return exc.status
    path = args.socket or os.environ.get("VIMAGED_SOCKET") or DEFAULT_SOCKET
    run = RUN[args.verb]
    try:
        with Client(path, args.timeout) as client:
            return run(client, args)
    except ClientError as exc:
        if args.verb == "health":
            print(f"VIMAGED UNKNOWN - {exc.message}")
            return NAGIOS_UNKNOWN
        print(f"vimagectl: {exc.message}", file=sys.stderr)
        return exit_status(exc.code)
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`vimagectl events | head`); keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK


def _ask(client: Client, request: Request, expected: type[ReplyT]) -> ReplyT:
    """The reply, which must be ``expected``; an ``Error`` becomes a :class:`ClientError`."""
    reply = client.request(request)
    if isinstance(reply, Error):
        raise ClientError(reply.code, reply.message)
    if not isinstance(reply, expected):
        tag = reply.__struct_config__.tag
        raise ClientError(
            "bad_frame", f"unexpected reply {tag!r} to {request.__struct_config__.tag}"
        )
    return reply


def _write_json(value: object) -> None:
    sys.stdout.buffer.write(_JSON.encode(value) + b"\n")
    sys.stdout.flush()


def _vimages(client: Client, request: Request) -> tuple[VimageInfo, ...]:
    return _ask(client, request, Vimages).vimages


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    vimages = _vimages(client, ListVimages())
    if args.json:
        _write_json(vimages)
    else:
        print(format_table(vimages), end="")
    return EX_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    vimages = _vimages(client, Status(names=tuple(args.names)))
    if args.json:
        _write_json(vimages)
        return EX_OK
    for info in vimages:
        jid = "-" if info.jid is None else str(info.jid)
        changed = "  (config changed: restart to apply)" if info.config_changed else ""
        print(
            f"{info.name}: {info.state}, jid {jid}, health {info.health}, "
            f"restarts {info.restarts}{changed}"
        )
        if info.error:
            print(f"  error: {info.error}")
        for ifc in info.interfaces:
            holder = f" (held by jid {ifc.holder_jid})" if ifc.holder_jid is not None else ""
            print(
                f"  {ifc.name}  {ifc.kind}  parent {ifc.parent or '-'}  mac {ifc.mac or '-'}"
                f"  {ifc.where}{holder}"
            )
    return EX_OK


def _interface_column(info: VimageInfo) -> str:
    words = []
    for ifc in info.interfaces:
        word = f"{ifc.name}>{ifc.parent}" if ifc.kind == "bridge" and ifc.parent else ifc.name
        words.append(word if ifc.where == "vimage" else f"{word}[{ifc.where}]")
    return ",".join(words) or "-"


def format_table(vimages: Sequence[VimageInfo]) -> str:
    """jls(8)-style columns: NAME STATE JID HEALTH INTERFACES."""
    rows = [("NAME", "STATE", "JID", "HEALTH", "INTERFACES")]
    for info in vimages:
        jid = "-" if info.jid is None else str(info.jid)
        rows.append((info.name, info.state, jid, info.health, _interface_column(info)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + f"  {row[4]}"
        for row in rows
    ]
    return "".join(line.rstrip() + "\n" for line in lines)


def _change(client: Client, request: Request, args: argparse.Namespace) -> int:
    reply = _ask(client, request, Done)
    if args.json:
        _write_json(reply.outcomes)
    status = EX_OK
    for outcome in reply.outcomes:
        if outcome.ok:
            if not args.json:
                print(f"{outcome.name}: {outcome.state}")
            continue
        if status == EX_OK:
            status = exit_status(outcome.code)  # the first failure decides
        print(
            f"vimagectl: {outcome.name}: {outcome.message or outcome.code or 'failed'}"
            f" ({outcome.code or 'failed'}; now {outcome.state})",
            file=sys.stderr,
        )
    return status


def cmd_start(client: Client, args: argparse.Namespace) -> int:
    return _change(client, Start(names=tuple(args.names), all_=args.all), args)


def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    return _change(client, Stop(names=tuple(args.names), all_=args.all), args)


def cmd_restart(client: Client, args: argparse.Namespace) -> int:
    return _change(client, Restart(names=tuple(args.names)), args)


def health_verdict(vimages: Sequence[VimageInfo], *, named: bool) -> tuple[int, str]:
    """The Nagios status and line for ``vimages``.

    A vimage counts by its ``health``, except: ``failed`` state is CRITICAL; ``starting`` and
    ``stopping`` are WARNING; ``stopped`` is CRITICAL when named on the command line (it is
    not serving) and otherwise left out of the verdict (stopping is an operator's decision)
    and reported as ``stopped=N`` in the performance data.
    """
    counts = dict.fromkeys(NAGIOS_STATUS, 0)
    stopped = 0
    problems: list[tuple[int, str]] = []
    for info in vimages:
        if info.state == "stopped" and not named:
            stopped += 1
            continue
        if info.state in ("stopped", "failed"):
            level, detail = "failed", info.error or info.state
        elif info.state in ("starting", "stopping"):
            level, detail = "degraded", info.state
        else:
            level, detail = info.health, _health_detail(info)
        counts[level] += 1
        if level != "ok":
            problems.append((NAGIOS_STATUS[level], f"{info.name}: {detail}"))
    status = max((severity for severity, _ in problems), default=0)
    if problems:
        problems.sort(key=lambda problem: -problem[0])
        summary = ", ".join(text for _, text in problems)
    else:
        summary = f"{counts['ok']} ok" + (f", {stopped} stopped" if stopped else "")
    perf = " ".join(f"{level}={n}" for level, n in counts.items()) + f" stopped={stopped}"
    return status, f"VIMAGED {NAGIOS_LABEL[status]} - {summary} | {perf}"


def _health_detail(info: VimageInfo) -> str:
    if info.error:
        return info.error
    pending = [ifc.name for ifc in info.interfaces if ifc.where == "pending-return"]
    if pending:
        return f"{' '.join(pending)} pending return"
    misplaced = [f"{ifc.name} {ifc.where}" for ifc in info.interfaces if ifc.where != "vimage"]
    return ", ".join(misplaced) or info.health


def cmd_health(client: Client, args: argparse.Namespace) -> int:
    vimages = _vimages(client, Health(names=tuple(args.names)))
    status, line = health_verdict(vimages, named=bool(args.names))
    if args.json:
        _write_json(vimages)
    else:
        print(line)
    return status


def cmd_reload(client: Client, args: argparse.Namespace) -> int:
    reply = _ask(client, Reload(), Reloaded)
    if args.json:
        _write_json(reply)
    elif reply.added or reply.removed or reply.changed:
        for label, names in (
            ("added", reply.added),
            ("removed", reply.removed),
            ("changed", reply.changed),
        ):
            if names:
                print(f"{label}: {' '.join(names)}")
    else:
        print("no changes")
    return EX_OK


def cmd_version(client: Client, args: argparse.Namespace) -> int:
    reply = _ask(client, Version(), VersionInfo)
    if args.json:
        _write_json(
            {
                "vimagectl": __version__,
                "daemon": reply.daemon,
                "protocol": reply.protocol,
                "platform": reply.platform,
            }
        )
    else:
        print(f"vimagectl {__version__}")
        print(f"vimaged {reply.daemon} (protocol {reply.protocol}, platform {reply.platform})")
    return EX_OK


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    for event in client.events():
        _write_json(event)
    return EX_OK  # unreachable: the stream ends with ClientError("closed")


RUN: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "list": cmd_list,
    "status": cmd_status,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "health": cmd_health,
    "reload": cmd_reload,
    "version": cmd_version,
    "events": cmd_events,
}
"""One function per verb (VERBS holds their help)."""
