"""vimagectl: the command line of vimaged (vimagectl layer).

One function per verb; human output like jls(8), ``--json`` for scripts, and ``health`` as a
Nagios plugin. Exit statuses follow sysexits(3) through the single :data:`EXIT_STATUS` table
(also in docs/protocol.md). Imports only the standard library (not even typing), so it starts
fast: docs/performance.md.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys

from vimagectl.client import DEFAULT_SOCKET, SCHEMA, Client, ClientError
from vimaged import __version__

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from vimagectl.replies import Done, Reloaded, Request, VersionInfo, VimageInfo

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
    "reply_too_large": EX_PROTOCOL,
    # Failures the client sees itself (client.CLIENT_CODES).
    "unreachable": EX_UNAVAILABLE,
    "closed": EX_UNAVAILABLE,
    "socket_permission": EX_NOPERM,
    "timeout": EX_TEMPFAIL,
    "bad_frame": EX_PROTOCOL,
    "bad_version": EX_PROTOCOL,
    "bad_request": EX_PROTOCOL,
    "untrusted_socket": EX_NOPERM,
}
"""Error code → sysexits(3) status; a code this vimagectl does not know exits 70."""

DEFAULT_TIMEOUT = 60.0

NAGIOS_STATUS = {"ok": 0, "degraded": 1, "failed": 2, "unknown": 3}
NAGIOS_LABEL = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
NAGIOS_UNKNOWN = 3

# The protocol's own rule for names, so that a bad one is a usage error, not a refusal; re
# compiles it on first use (most commands name no vimage).
NAME_PATTERN = SCHEMA.pattern("Status", "names")


def exit_status(code: str | None) -> int:
    """The sysexits(3) status for an error code (``None``: an outcome without one, ``failed``)."""
    return EXIT_STATUS.get(code or "failed", EX_SOFTWARE)


class UsageError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


VERBS: dict[str, tuple[str, str]] = {
    "list": ("", "table of all vimages"),
    "status": ("name ...", "details of the named vimages"),
    "start": ("name ... | --all", "start the named vimages, or all of them"),
    "stop": ("name ... | --all", "stop the named vimages, or all of them"),
    "restart": ("name ...", "stop then start the named vimages"),
    "health": ("[name ...]", "Nagios plugin: the worst health (exit 0-3)"),
    "reload": ("", "re-read rc.conf(5)"),
    "version": ("", "client, daemon and protocol versions"),
    "events": ("", "stream events as JSON lines until interrupted"),
}
"""Each verb: its operands for the usage line, and its help."""

OPTIONS = "[-s socket] [--json] [--timeout seconds]"
USAGE = f"usage: vimagectl {OPTIONS} command [argument ...]"


def help_text() -> str:
    verbs = "\n".join(f"  {verb:<9} {text}" for verb, (_, text) in VERBS.items())
    return (
        f"{USAGE}\n\n"
        "Control vimaged, the supervisor of FreeBSD vimages (VNET jails).\n\n"
        "options (before or after the command):\n"
        "  -s, --socket socket  the control socket\n"
        "  --json               JSON output\n"
        f"  --timeout seconds    wait for each answer (default {DEFAULT_TIMEOUT:g})\n"
        "  -h, --help           this help\n"
        "  --version            vimagectl's version; the command version adds the daemon's\n\n"
        f"commands:\n{verbs}\n\n"
        f"socket: -s, else $VIMAGED_SOCKET, else {DEFAULT_SOCKET}.\n"
        "exit status: sysexits(3); health exits 0-3 like a Nagios plugin."
    )


def verb_usage(verb: str) -> str:
    operands = VERBS[verb][0]
    return f"usage: vimagectl {OPTIONS} {verb}{' ' + operands if operands else ''}"


class Arguments:
    """The parsed command line."""

    __slots__ = ("all", "help", "json", "names", "socket", "timeout", "verb", "version")

    def __init__(self) -> None:
        self.verb = ""
        self.names: list[str] = []
        self.all = False
        self.json = False
        self.socket: str | None = None
        self.timeout = DEFAULT_TIMEOUT
        self.help = False
        self.version = False


def vimage_name(text: str) -> str:
    if re.search(NAME_PATTERN, text) is None:
        raise ValueError(
            f"bad vimage name {text!r}: letters, digits and _, at most 64, not all digits"
        )
    return text


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"--timeout: not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"--timeout must be positive and finite, got {text}")
    return seconds


def parse(argv: Sequence[str]) -> Arguments:
    """Parse the command line, getopt(3) style with long options, like the base system's tools.

    Options may come before or after the command (``vimagectl list --json``); ``--`` ends them.
    Hand-written rather than argparse: argparse with its gettext and locale lookups costs
    vimagectl about 6 ms of start-up, a fifth of its budget (docs/performance.md).

    Raises:
        UsageError: with the exit status to use (64, or 3 for ``health``).
    """
    args = Arguments()
    operands: list[str] = []
    words = iter(argv)
    options_done = False
    try:
        for word in words:
            if options_done or word == "-" or not word.startswith("-"):
                if args.verb:
                    operands.append(word)
                elif word in VERBS:
                    args.verb = word
                else:
                    raise ValueError(f"unknown command {word!r}")
                continue
            name, equals, value = word.partition("=")
            if word == "--":
                options_done = True
            elif name in ("--help", "--json", "--all", "--version") and equals:
                raise ValueError(f"{name} takes no value")
            elif word in ("-h", "--help"):
                args.help = True
            elif word == "--version":
                args.version = True
            elif name == "--json":
                args.json = True
            elif name == "--all" and args.verb in ("start", "stop"):
                args.all = True
            elif name in ("--socket", "--timeout") or word.startswith("-s"):
                if not word.startswith("--"):  # -s socket or -ssocket, as getopt(3) takes it
                    name, value = "-s", word[2:]
                    equals = "=" if value else ""
                if not equals:
                    following = next(words, None)
                    if following is None:
                        raise ValueError(f"{name} needs a value")
                    value = following
                if not value:
                    raise ValueError(f"{name} needs a value")
                if name == "--timeout":
                    args.timeout = positive_seconds(value)
                else:
                    args.socket = value
            else:
                raise ValueError(f"unknown option {name}")
        if args.help or args.version:
            return args
        if not args.verb:
            raise ValueError("no command given")
        _take_operands(args, operands)
    except ValueError as exc:
        status = NAGIOS_UNKNOWN if args.verb == "health" else EX_USAGE
        usage = verb_usage(args.verb) if args.verb else USAGE
        raise UsageError(f"{exc}\n{usage}", status) from None
    return args


def _take_operands(args: Arguments, operands: list[str]) -> None:
    verb = args.verb
    if verb in ("status", "restart", "start", "stop", "health"):
        args.names = [vimage_name(name) for name in operands]
    elif operands:
        raise ValueError(f"{verb} takes no arguments, got {' '.join(operands)}")
    if verb in ("status", "restart") and not args.names:
        raise ValueError(f"{verb}: name at least one vimage")
    if verb in ("start", "stop") and bool(args.names) == args.all:
        raise ValueError(f"{verb}: give vimage names or --all, not both or neither")


def main(argv: Sequence[str] | None = None) -> int:
    """The vimagectl command: its exit status. The process is expected to exit right after."""
    # Short-lived and cycle-free: the collector would only walk the decoded reply, again and
    # again as it grows (~1 ms for 1,000 vimages), and once more at interpreter exit.
    gc.disable()
    gc.freeze()
    return _run(sys.argv[1:] if argv is None else argv)


def _run(argv: Sequence[str]) -> int:
    try:
        args = parse(argv)
    except UsageError as exc:
        if exc.status == NAGIOS_UNKNOWN:
            print(f"VIMAGED UNKNOWN - usage: {exc}".splitlines()[0])
        print(f"vimagectl: {exc}", file=sys.stderr)
        return exc.status
    if args.version:  # this program's alone; the command `version` asks the daemon too
        print(f"vimagectl {__version__}")
        return EX_OK
    if args.help:
        print(f"{verb_usage(args.verb)}\n\n{VERBS[args.verb][1]}" if args.verb else help_text())
        return EX_OK
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


def _ask(client: Client, request: Request, expected: str) -> Any:
    """The reply, whose tag must be ``expected``; an ``Error`` becomes a :class:`ClientError`.

    Typed ``Any``: each caller names the reply type its ``expected`` tag stands for.
    """
    reply = client.request(request)
    if reply["reply"] == "error":
        raise ClientError(reply["code"], reply["message"])
    if reply["reply"] != expected:
        raise ClientError("bad_frame", f"unexpected reply {reply['reply']!r} to {request['op']}")
    return reply


def _write_json(value: object) -> None:
    # Compact UTF-8, as the daemon sends it; check_circular is pointless for decoded JSON.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), check_circular=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
PRINT_BLOCK = 512
"""Vimages printed at a time as a listing streams in (about one page of the daemon's)."""


def _blocks(vimages: Iterable[VimageInfo]) -> Iterable[list[VimageInfo]]:
    block: list[VimageInfo] = []
    for info in vimages:
        block.append(info)
        if len(block) >= PRINT_BLOCK:
            yield block
            block = []
    if block:
        yield block


def write_json_array(vimages: Iterable[VimageInfo]) -> None:
    """``vimages`` as one compact JSON array, written block by block as they arrive: the same
    bytes as ``_write_json(list(vimages))``. A listing that fails midway leaves the array
    unclosed (and the exit status says why), never a valid-looking partial one; one that
    fails before its first vimage prints nothing."""
    out = sys.stdout
    opening = "["  # written with the first block: an error before any vimage prints nothing
    for block in _blocks(vimages):
        out.write(opening + _JSON.encode(block)[1:-1])
        out.flush()
        opening = ","
    out.write("[]\n" if opening == "[" else "]\n")
    out.flush()


def write_table(vimages: Iterable[VimageInfo]) -> None:
    """:func:`format_table`'s columns, printed block by block as the vimages arrive; a column
    is as wide as its widest cell so far, so a listing of one block is exactly format_table's
    and a longer one stays aligned unless a later name is wider."""
    widths = [0] * 5
    rows: list[tuple[str, ...]] = [TABLE_HEADER]
    for block in _blocks(vimages):
        rows += [_table_row(info) for info in block]
        sys.stdout.write(_table_lines(rows, widths))
        sys.stdout.flush()
        rows = []
    if rows:  # no vimage at all: the header alone
        sys.stdout.write(_table_lines(rows, widths))


def cmd_list(client: Client, args: Arguments) -> int:
    vimages = client.listing({"op": "list"})
    if args.json:
        write_json_array(vimages)
    else:
        write_table(vimages)
    return EX_OK


def cmd_status(client: Client, args: Arguments) -> int:
    vimages = client.listing({"op": "status", "names": args.names})
    if args.json:
        write_json_array(vimages)
        return EX_OK
    for info in vimages:
        jid = "-" if info["jid"] is None else str(info["jid"])
        changed = "  (config changed: restart to apply)" if info["config_changed"] else ""
        print(
            f"{info['name']}: {info['state']}, jid {jid}, health {info['health']}, "
            f"restarts {info['restarts']}{changed}"
        )
        if info["error"]:
            print(f"  error: {info['error']}")
        if info["health_reason"]:
            print(f"  health: {info['health_reason']}")
        for ifc in info["interfaces"]:
            holder = f" (held by jid {ifc['holder_jid']})" if ifc["holder_jid"] is not None else ""
            addresses = "".join(f"  {address}" for address in ifc["addresses"])
            print(
                f"  {ifc['name']}  {ifc['kind']}  parent {ifc['parent'] or '-'}"
                f"  mac {ifc['mac'] or '-'}  {ifc['where']}{holder}{addresses}"
            )
            link = ifc.get("link")
            if link is not None:
                mode = ifc.get("bridge_mode")
                print(
                    f"    {mode + ' bridge ' if mode else ''}"
                    f"link: recv {link['recv_packets']}  xmit {link['xmit_packets']}"
                    f"  memory failures {link['memory_failures']}"
                    f"  loop drops {link['loop_drops']}  loops {link['loop_detects']}"
                )
    return EX_OK


def _interface_column(info: VimageInfo) -> str:
    words = []
    for ifc in info["interfaces"]:
        name, parent = ifc["name"], ifc["parent"]
        word = f"{name}>{parent}" if ifc["kind"] == "bridge" and parent else name
        words.append(word if ifc["where"] == "vimage" else f"{word}[{ifc['where']}]")
    return ",".join(words) or "-"


TABLE_HEADER: tuple[str, ...] = ("NAME", "STATE", "JID", "HEALTH", "IP", "INTERFACES")


def format_table(vimages: Sequence[VimageInfo]) -> str:
    """jls(8)-style columns: NAME STATE JID HEALTH IP INTERFACES.

    IP is what jls(8) shows for a jail and cannot for a VNET jail: the vimage's first IPv4
    address, else its first IPv6 address that is not link-local, without the prefix length.
    """
    return _table_lines([TABLE_HEADER, *map(_table_row, vimages)], [0] * 5)


def _table_row(info: VimageInfo) -> tuple[str, ...]:
    jid = "-" if info["jid"] is None else str(info["jid"])
    return (
        info["name"],
        info["state"],
        jid,
        info["health"],
        _primary_address(info),
        _interface_column(info),
    )


def _table_lines(rows: list[tuple[str, ...]], widths: list[int]) -> str:
    """``rows`` as lines; ``widths`` (the first five columns') grow to fit them, in place."""
    for i in range(5):
        widths[i] = max(widths[i], *(len(row[i]) for row in rows))
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + f"  {row[5]}"
        for row in rows
    ]
    return "".join(line.rstrip() + "\n" for line in lines)


def _primary_address(info: VimageInfo) -> str:
    addresses = [a for ifc in info["interfaces"] for a in ifc["addresses"]]
    ipv4 = [a for a in addresses if ":" not in a]
    ipv6 = [a for a in addresses if ":" in a and not a.lower().startswith("fe80:")]
    return (ipv4 or ipv6 or ["-/"])[0].partition("/")[0]


def _change(client: Client, request: Request, args: Arguments) -> int:
    reply: Done = _ask(client, request, "done")
    if args.json:
        _write_json(reply["outcomes"])
    status = EX_OK
    for outcome in reply["outcomes"]:
        if outcome["ok"]:
            if not args.json:
                print(f"{outcome['name']}: {outcome['state']}")
            continue
        code = outcome["code"]
        if status == EX_OK:
            status = exit_status(code)  # the first failure decides
        print(
            f"vimagectl: {outcome['name']}: {outcome['message'] or code or 'failed'}"
            f" ({code or 'failed'}; now {outcome['state']})",
            file=sys.stderr,
        )
    return status


def cmd_start(client: Client, args: Arguments) -> int:
    return _change(client, {"op": "start", "names": args.names, "all": args.all}, args)


def cmd_stop(client: Client, args: Arguments) -> int:
    return _change(client, {"op": "stop", "names": args.names, "all": args.all}, args)


def cmd_restart(client: Client, args: Arguments) -> int:
    return _change(client, {"op": "restart", "names": args.names}, args)


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
        state = info["state"]
        if state == "stopped" and not named:
            stopped += 1
            continue
        if state in ("stopped", "failed"):
            level, detail = "failed", info["error"] or state
        elif state in ("starting", "stopping"):
            level, detail = "degraded", state
        else:
            level, detail = info["health"], _health_detail(info)
        counts[level] += 1
        if level != "ok":
            problems.append((NAGIOS_STATUS[level], f"{info['name']}: {detail}"))
    status = max((severity for severity, _ in problems), default=0)
    if problems:
        problems.sort(key=lambda problem: -problem[0])
        summary = ", ".join(text for _, text in problems)
    else:
        summary = f"{counts['ok']} ok" + (f", {stopped} stopped" if stopped else "")
    perf = " ".join(f"{level}={n}" for level, n in counts.items()) + f" stopped={stopped}"
    return status, f"VIMAGED {NAGIOS_LABEL[status]} - {summary} | {perf}"


def _health_detail(info: VimageInfo) -> str:
    if info["error"]:
        return info["error"]
    if info["health_reason"]:
        return info["health_reason"]
    interfaces = info["interfaces"]
    pending = [ifc["name"] for ifc in interfaces if ifc["where"] == "pending-return"]
    if pending:
        return f"{' '.join(pending)} pending return"
    misplaced = [f"{ifc['name']} {ifc['where']}" for ifc in interfaces if ifc["where"] != "vimage"]
    return ", ".join(misplaced) or info["health"]


def cmd_health(client: Client, args: Arguments) -> int:
    vimages = list(client.listing({"op": "health", "names": args.names}))
    status, line = health_verdict(vimages, named=bool(args.names))
    if args.json:
        _write_json(vimages)
    else:
        print(line)
    return status


def cmd_reload(client: Client, args: Arguments) -> int:
    reply: Reloaded = _ask(client, {"op": "reload"}, "reloaded")
    if args.json:
        _write_json(reply)
    elif reply["added"] or reply["removed"] or reply["changed"]:
        for label, names in (
            ("added", reply["added"]),
            ("removed", reply["removed"]),
            ("changed", reply["changed"]),
        ):
            if names:
                print(f"{label}: {' '.join(names)}")
    else:
        print("no changes")
    return EX_OK


def cmd_version(client: Client, args: Arguments) -> int:
    reply: VersionInfo = _ask(client, {"op": "version"}, "version")
    daemon, protocol, platform = reply["daemon"], reply["protocol"], reply["platform"]
    if args.json:
        _write_json(
            {"vimagectl": __version__, "daemon": daemon, "protocol": protocol, "platform": platform}
        )
    else:
        print(f"vimagectl {__version__}")
        print(f"vimaged {daemon} (protocol {protocol}, platform {platform})")
    return EX_OK


def cmd_events(client: Client, args: Arguments) -> int:
    for event in client.events():
        _write_json(event)
    return EX_OK  # unreachable: the stream ends with ClientError("closed")


RUN: dict[str, Callable[[Client, Arguments], int]] = {
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
