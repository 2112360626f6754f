"""What vimagectl prints for each reply: jls(8)-style tables, status lines, or ``--json``.

Each ``render_*`` takes the checked reply and the parsed command line, prints, and returns the
exit status (a change's first failed outcome decides it). ``health`` renders in nagios.py.
"""

from __future__ import annotations

import itertools
import sys

from vimagectl.client import Listing
from vimagectl.exits import EX_OK, exit_status
from vimagectl.jsontext import compact
from vimaged import __version__

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import TypeVar

    from vimagectl.args import Arguments
    from vimagectl.replies import (
        Attachment,
        AttachmentList,
        Done,
        Event,
        MetricsText,
        Reloaded,
        VersionInfo,
        VimageInfo,
        Vimages,
    )

    _Item = TypeVar("_Item")


def write_json(value: object) -> None:
    # Compact UTF-8, as the daemon sends it.
    sys.stdout.write(compact(value) + "\n")
    sys.stdout.flush()


PRINT_BLOCK = 512
"""Vimages printed at a time as a listing streams in (about one page of the daemon's)."""


def _blocks(items: Iterable[_Item]) -> Iterator[list[_Item]]:
    block: list[_Item] = []
    for info in items:
        block.append(info)
        if len(block) >= PRINT_BLOCK:
            yield block
            block = []
    if block:
        yield block


def write_json_array(
    pages: Iterable[tuple[Sequence[VimageInfo | Attachment], str | None]],
) -> None:
    """The values of ``pages`` as one compact JSON array, written page by page as they
    arrive: the same bytes as ``write_json`` of them all. A page's text, where the client
    has it (``Client.pages``), is written as it came instead of encoding its values again.
    A listing that fails midway leaves the array unclosed (and the exit status says why),
    never a valid-looking partial one; one that fails before its first vimage prints
    nothing."""
    out = sys.stdout
    opening = "["  # written with the first value
    for values, text in pages:
        if text is not None and values:
            out.write(opening + text)
            out.flush()
            opening = ","
            continue
        for block in _blocks(values):
            out.write(opening + compact(block)[1:-1])
            out.flush()
            opening = ","
    out.write("[]\n" if opening == "[" else "]\n")
    out.flush()


def _pages(vimages: Iterable[VimageInfo]) -> Iterable[tuple[Sequence[VimageInfo], str | None]]:
    """A listing's pages as the client read them; any other iterable as one page, untexted."""
    if isinstance(vimages, Listing):
        return vimages.pages()
    return [(list(vimages), None)]


def write_table(vimages: Iterable[VimageInfo]) -> None:
    """:func:`format_table`'s columns, printed block by block as the vimages arrive; a column
    is as wide as its widest cell so far, so a listing of one block is exactly format_table's
    and a longer one stays aligned unless a later cell is wider."""
    widths = [0] * 5
    rows: list[tuple[str, ...]] = [TABLE_HEADER]
    for block in _blocks(vimages):
        rows += [_table_row(info) for info in block]
        sys.stdout.write(_table_lines(rows, widths))
        sys.stdout.flush()
        rows = []
    if rows:  # no vimage at all: the header alone
        sys.stdout.write(_table_lines(rows, widths))


def render_list(reply: Vimages, args: Arguments) -> int:
    """The vimages' table, then (if any) vimaged-cni's attachments' after a blank line.

    ``reply["vimages"]`` may be an iterator over a streamed listing (cli._ask): read once;
    its ``attachments`` list is filled only when that iterator is done. ``--json`` keeps
    printing the vimages' array (scripts index it); ``attachments --json`` prints the
    attachments'."""
    if args.json:
        write_json_array(_pages(reply["vimages"]))
        return EX_OK
    write_table(reply["vimages"])
    attachments = reply.get("attachments", [])  # absent from a daemon before issue 14
    if attachments:
        print()
        print(format_attachments(attachments), end="")
    return EX_OK


def render_status(reply: Vimages, args: Arguments) -> int:
    """The vimages, then the attachments of the containers named (``--json``: one array,
    each element as ``list --json`` and ``attachments --json`` print it). The attachments
    are read after the vimages (a streamed listing fills them at its end: render_list)."""
    attachments = reply.get("attachments", [])
    if args.json:
        # The attachments after the vimages: the list is filled once they are read.
        write_json_array(itertools.chain(_pages(reply["vimages"]), [(attachments, None)]))
        return EX_OK
    _print_vimages(reply["vimages"])
    for att in attachments:
        addresses = "".join(f"  {address}" for address in att["addresses"])
        print(
            f"{att['container_id']} {att['ifname']} on {att['network']}: {att['state']},"
            f" sandbox {att['sandbox']}"
        )
        print(
            f"  {att['host_ifname']}  attachment  parent {att['parent']}  mac {att['mac']}"
            f"{addresses}"
        )
    return EX_OK


def _print_vimages(vimages: Iterable[VimageInfo]) -> None:
    for info in vimages:
        jid = "-" if info["jid"] is None else str(info["jid"])
        if info["removed"]:  # the daemon's start and restart refusals say the same
            changed = "  (removed from the configuration by reload: stop it to let it go)"
        elif info["config_changed"]:
            changed = "  (config changed: restart to apply)"
        else:
            changed = ""
        print(
            f"{info['name']}: {info['state']}, jid {jid}, health {info['health']}, "
            f"restarts {info['restarts']}{changed}"
        )
        if info["error"]:
            print(f"  error: {info['error']}")
        if info["health_reason"]:
            print(f"  health: {info['health_reason']}")
        if info.get("waiting_for"):
            print(f"  waiting for {' '.join(info['waiting_for'])}")
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


def _interface_column(info: VimageInfo) -> str:
    words = []
    for ifc in info["interfaces"]:
        name, parent = ifc["name"], ifc["parent"]
        word = f"{name}>{parent}" if ifc["kind"] == "bridge" and parent else name
        words.append(word if ifc["where"] == "vimage" else f"{word}[{ifc['where']}]")
    return ",".join(words) or "-"


def format_table(vimages: Sequence[VimageInfo]) -> str:
    """jls(8)-style columns: NAME STATE JID HEALTH IP INTERFACES.

    IP is what jls(8) shows for a jail and cannot for a VNET jail: the vimage's first IPv4
    address, else its first IPv6 address that is not link-local, without the prefix length.
    """
    return _table_lines([TABLE_HEADER, *map(_table_row, vimages)], [0] * 5)


TABLE_HEADER: tuple[str, ...] = ("NAME", "STATE", "JID", "HEALTH", "IP", "INTERFACES")


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


def render_change(reply: Done, args: Arguments) -> int:
    """``start``, ``stop``, ``restart``: one line per vimage; failures on stderr."""
    if args.json:
        write_json(reply["outcomes"])
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


def render_reload(reply: Reloaded, args: Arguments) -> int:
    if args.json:
        write_json(reply)
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


def render_version(reply: VersionInfo, args: Arguments) -> int:
    daemon, protocol, platform = reply["daemon"], reply["protocol"], reply["platform"]
    if args.json:
        write_json(
            {"vimagectl": __version__, "daemon": daemon, "protocol": protocol, "platform": platform}
        )
    else:
        print(f"vimagectl {__version__}")
        print(f"vimaged {daemon} (protocol {protocol}, platform {platform})")
    return EX_OK


def render_attachments(reply: AttachmentList, args: Arguments) -> int:
    """vimaged-cni's attachments (issue 14), one row each."""
    if args.json:
        write_json(reply["attachments"])
        return EX_OK
    print(format_attachments(reply["attachments"]), end="")
    return EX_OK


def format_attachments(attachments: Sequence[Attachment]) -> str:
    """NETWORK CONTAINER IFNAME STATE PARENT INTERFACE MAC SANDBOX ADDRESSES, one row each
    (INTERFACE: the host-side name, as the netgraph node and the journal carry it)."""
    rows = [("NETWORK", "CONTAINER", "IFNAME", "STATE", "PARENT", "INTERFACE", "MAC", "SANDBOX",
             "ADDRESSES")]  # fmt: skip
    for att in attachments:
        rows.append((att["network"], att["container_id"], att["ifname"], att["state"],
                     att["parent"], att["host_ifname"], att["mac"], att["sandbox"],
                     ",".join(att["addresses"]) or "-"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )


def render_event(reply: Event, args: Arguments) -> int:
    """One event per line: ``--json`` the protocol's object, else :func:`format_event`."""
    if args.json:
        write_json(reply)
    else:
        sys.stdout.write(format_event(reply) + "\n")
        sys.stdout.flush()  # a pipe (`| grep`) sees each event as it happens
    return EX_OK


def format_event(event: Event) -> str:
    """``2026-12-04T21:40:10.245+01:00 vimage.started web jid=3``: the local time to the
    millisecond (ISO 8601, with its UTC offset), the event, its vimage, then its data as
    ``key=value``, a value JSON-quoted when it has a space, a quote, ``=`` or nothing."""
    from datetime import datetime  # only here: events is the one verb that needs it

    when = datetime.fromtimestamp(event["time"]).astimezone().isoformat(timespec="milliseconds")
    words = [when, event["event"]]
    if event["name"] is not None:
        words.append(event["name"])
    for key, value in event["data"].items():
        words.append(f"{key}={_event_value(value)}")
    return " ".join(words)


def _event_value(value: object) -> str:
    if value is None:
        return "-"
    if value is True or value is False:
        return "yes" if value else "no"
    text = str(value)
    if not text or any(c.isspace() or c in '"=\\' or not c.isprintable() for c in text):
        return compact(text)
    return text


def render_metrics(reply: MetricsText, args: Arguments) -> int:
    """The daemon's exposition text as it sent it; ``--json``: ``{"text": ...}``."""
    if args.json:
        write_json({"text": reply["text"]})
    else:
        sys.stdout.write(reply["text"])
        sys.stdout.flush()
    return EX_OK
