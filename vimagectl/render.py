"""What vimagectl prints for each reply: jls(8)-style tables, status lines, or ``--json``.

Each ``render_*`` takes the checked reply and the parsed command line, prints, and returns the
exit status (a change's first failed outcome decides it). ``health`` renders in nagios.py.
"""

from __future__ import annotations

import json
import sys

from vimagectl.exits import EX_OK, exit_status
from vimaged import __version__

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Sequence

    from vimagectl.args import Arguments
    from vimagectl.replies import (
        Attachment,
        AttachmentList,
        Done,
        Event,
        Reloaded,
        VersionInfo,
        VimageInfo,
        Vimages,
    )


def write_json(value: object) -> None:
    # Compact UTF-8, as the daemon sends it; check_circular is pointless for decoded JSON.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), check_circular=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def render_list(reply: Vimages, args: Arguments) -> int:
    """The vimages' table, then (if any) vimaged-cni's attachments' after a blank line.

    ``--json`` keeps printing the vimages' array (scripts index it); ``attachments --json``
    prints the attachments'."""
    if args.json:
        write_json(reply["vimages"])
        return EX_OK
    print(format_table(reply["vimages"]), end="")
    attachments = reply.get("attachments") or []  # absent from a daemon before issue 14
    if attachments:
        print()
        print(format_attachments(attachments), end="")
    return EX_OK


def render_status(reply: Vimages, args: Arguments) -> int:
    """The vimages, then the attachments of the containers named (``--json``: one array,
    each element as ``list --json`` and ``attachments --json`` print it)."""
    attachments = reply.get("attachments") or []
    if args.json:
        write_json([*reply["vimages"], *attachments])
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


def _print_vimages(vimages: Sequence[VimageInfo]) -> None:
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
    rows = [("NAME", "STATE", "JID", "HEALTH", "IP", "INTERFACES")]
    for info in vimages:
        jid = "-" if info["jid"] is None else str(info["jid"])
        rows.append(
            (
                info["name"],
                info["state"],
                jid,
                info["health"],
                _primary_address(info),
                _interface_column(info),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
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
    """One event, one JSON line, with or without ``--json``."""
    write_json(reply)
    return EX_OK
