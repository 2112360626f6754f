"""vimagectl: the command line of vimaged (vimagectl layer).

Dispatch through one table, :data:`VERBS`: each verb's operands (args.py), help, request,
the reply it expects, its renderer (render.py, nagios.py) and its exit mapping (sysexits(3)
through exits.py, or Nagios codes for ``health``). Imports only the standard library (not
even typing), so it starts fast: docs/performance.md.
"""

from __future__ import annotations

import gc
import os
import sys

from vimagectl import args as grammar
from vimagectl.args import ANY_NAMES, NAMES_OR_ALL, NAMES_OR_CONTAINERS, NO_OPERANDS, UsageError
from vimagectl.client import DEFAULT_SOCKET, Client, ClientError, Listing
from vimagectl.exits import EX_INTERRUPTED, EX_OK, EXIT_STATUS, SYSEXITS, exit_status
from vimagectl.nagios import PLUGIN, render_health
from vimagectl.render import (
    format_table,
    render_attachments,
    render_change,
    render_event,
    render_list,
    render_metrics,
    render_reload,
    render_status,
    render_version,
)
from vimaged import __version__

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from vimagectl.args import Arguments
    from vimagectl.exits import Sysexits
    from vimagectl.nagios import Plugin
    from vimagectl.replies import Attachment, Request
    from vimagectl.replies import Status as StatusRequest

__all__ = ["EXIT_STATUS", "VERBS", "UsageError", "exit_status", "format_table", "main", "parse"]


class Verb:
    """One verb: how it parses, what it asks, how it renders and exits."""

    __slots__ = ("exits", "help", "operands", "render", "reply", "request")

    def __init__(
        self,
        operands: str,
        help: str,  # noqa: A002  # the verb's help text, as args.help_text reads it
        request: Callable[[Arguments], Request],
        reply: str,
        render: Callable[[Any, Arguments], int],
        exits: Sysexits | Plugin = SYSEXITS,
    ) -> None:
        self.operands = operands
        self.help = help
        self.request = request
        self.reply = reply
        """The tag of the reply ``request`` gets; ``event`` is a stream, rendered per event."""
        self.render = render
        self.exits = exits


def _status_request(args: Arguments) -> StatusRequest:
    return {"op": "status", "names": args.names, "containers": args.containers}


VERBS: dict[str, Verb] = {
    "list": Verb(
        NO_OPERANDS,
        "table of all vimages",
        lambda a: {"op": "list"},
        "vimages",
        render_list,
    ),
    "status": Verb(
        NAMES_OR_CONTAINERS,
        "details of the named vimages or containers' attachments, or of all vimages",
        _status_request,
        "vimages",
        render_status,
    ),
    "start": Verb(
        NAMES_OR_ALL,
        "start the named vimages, or all of them",
        lambda a: {"op": "start", "names": a.names, "all": a.all},
        "done",
        render_change,
    ),
    "stop": Verb(
        NAMES_OR_ALL,
        "stop the named vimages (--with-dependents: and what depends on them), or all",
        lambda a: {
            "op": "stop",
            "names": a.names,
            "all": a.all,
            "with_dependents": a.with_dependents,
        },
        "done",
        render_change,
    ),
    "restart": Verb(
        NAMES_OR_ALL,
        "stop then start the named vimages, or all of them",
        lambda a: {"op": "restart", "names": a.names, "all": a.all},
        "done",
        render_change,
    ),
    "health": Verb(
        ANY_NAMES,
        "Nagios plugin: the worst health (exit 0-3)",
        lambda a: {"op": "health", "names": a.names},
        "vimages",
        render_health,
        PLUGIN,
    ),
    "reload": Verb(
        NO_OPERANDS,
        "re-read rc.conf(5)",
        lambda a: {"op": "reload"},
        "reloaded",
        render_reload,
    ),
    "version": Verb(
        NO_OPERANDS,
        "client, daemon and protocol versions",
        lambda a: {"op": "version"},
        "version",
        render_version,
    ),
    "events": Verb(
        NO_OPERANDS,
        "stream events, one line each, until interrupted",
        lambda a: {"op": "events"},
        "event",
        render_event,
    ),
    "metrics": Verb(
        NO_OPERANDS,
        "counts in Prometheus text format (node_exporter's textfile collector)",
        lambda a: {"op": "metrics"},
        "metrics",
        render_metrics,
    ),
    "attachments": Verb(
        NO_OPERANDS,
        "table of vimaged-cni's attachments (container sandboxes)",
        lambda a: {"op": "cni_list"},
        "attachments",
        render_attachments,
    ),
}
"""Every verb, in the order ``--help`` lists them."""


def parse(argv: Sequence[str]) -> Arguments:
    """The command line read against :data:`VERBS` (see :func:`vimagectl.args.parse`)."""
    return grammar.parse(argv, VERBS)


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
        return (VERBS[exc.verb].exits if exc.verb else SYSEXITS).usage(str(exc))
    if args.version:  # this program's alone; the command `version` asks the daemon too
        print(f"vimagectl {__version__}")
        return EX_OK
    if args.help:
        if args.verb:
            print(f"{grammar.verb_usage(args.verb, VERBS[args.verb])}\n\n{VERBS[args.verb].help}")
        else:
            print(grammar.help_text(VERBS))
        return EX_OK
    verb = VERBS[args.verb]
    path = args.socket or os.environ.get("VIMAGED_SOCKET") or DEFAULT_SOCKET
    try:
        with Client(path, args.timeout) as client:
            return _ask(client, verb, args)
    except ClientError as exc:
        return verb.exits.failure(exc.message, exc.code)
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`vimagectl events | head`); keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK


def _ask(client: Client, verb: Verb, args: Arguments) -> int:
    """Send the verb's request and render its reply; an ``Error`` becomes a :class:`ClientError`."""
    request = verb.request(args)
    if verb.reply == "event":
        for event in client.events():
            verb.render(event, args)
        return EX_OK  # unreachable: the stream ends with ClientError("closed")
    if verb.reply == "vimages":  # streamed by a daemon that offers it, rendered as it arrives
        attachments: list[Attachment] = []  # filled when the vimages are all read (render)
        pages = client.pages(request, attachments, texts=args.json)  # type: ignore[arg-type]
        vimages = Listing(pages)  # list, status, health
        return verb.render(
            {"reply": "vimages", "vimages": vimages, "attachments": attachments}, args
        )
    reply = client.request(request)
    if reply["reply"] == "error":
        raise ClientError(reply["code"], reply["message"])
    if reply["reply"] != verb.reply:
        raise ClientError("bad_frame", f"unexpected reply {reply['reply']!r} to {request['op']}")
    return verb.render(reply, args)
