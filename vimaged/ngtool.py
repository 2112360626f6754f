"""Developer tool over the netgraph binding: ``python -m vimaged.ngtool``, a small ``ngctl``.

``list`` (``ngctl ls -l``), ``show PATH``, ``msg PATH CMD [ARGS]`` (ASCII through the node's
own ascii2binary/binary2ascii, as ``ngctl msg``), ``dot`` (Graphviz, as ``ngctl dot``).
Talks to the kernel on FreeBSD and to a simulated host with ``--sim SOCKET`` anywhere.
Exit status: 0, 64 usage, 71 a netgraph error (errno printed), 75 no reply in time.

It lives above ``vimaged.netgraph`` (which imports nothing outside itself) because its
``--sim`` transport is the sim platform's (:mod:`vimaged.platforms.sim_transport`).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn

import trio

from vimaged.errors import describe_oserror
from vimaged.netgraph import abi
from vimaged.netgraph.ngsocket import open_ng_socket

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from vimaged.netgraph.ngsocket import NgSocket
    from vimaged.netgraph.transport import NgTransport

EX_USAGE, EX_OSERR, EX_TEMPFAIL = 64, 71, 75
MSG_REPLY_TIMEOUT = 2.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m vimaged.ngtool", description=__doc__.splitlines()[0])
    parser.add_argument("--sim", metavar="SOCKET", help="simulated host's socket (not FreeBSD)")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    verbs.add_parser("list", help="every node: name, type, id, hooks")
    show = verbs.add_parser("show", help="one node and its hooks")
    show.add_argument("path")
    msg = verbs.add_parser("msg", help="send an ASCII control message, print the reply")
    msg.add_argument("path")
    msg.add_argument("cmd")
    msg.add_argument("args", nargs="*")
    verbs.add_parser("dot", help="the graph in Graphviz dot (ngctl dot)")
    return parser


@asynccontextmanager
async def _open_transport(sim: str | None) -> AsyncIterator[NgTransport]:
    if sim is not None:
        from vimaged.platforms.sim_transport import open_sim_transport

        async with open_sim_transport(sim) as transport:
            yield transport
    else:
        from vimaged.netgraph.kernel_transport import open_kernel_transport

        async with open_kernel_transport() as kernel:
            yield kernel


def _name(name: str) -> str:
    return name or "<unnamed>"


async def cmd_list(sock: NgSocket, out: list[str]) -> None:
    nodes = await sock.listnodes()
    out.append(f"There are {len(nodes)} total nodes:")
    for node in sorted(nodes, key=lambda n: n.id):
        out.append(
            f"  Name: {_name(node.name):<20} Type: {node.type:<10} "
            f"ID: {node.id:08x}   Num hooks: {node.hooks}"
        )


async def cmd_show(sock: NgSocket, path: str, out: list[str]) -> None:
    hooks = await sock.listhooks(path)
    node = hooks.node
    out.append(
        f"  Name: {_name(node.name):<20} Type: {node.type:<10} "
        f"ID: {node.id:08x}   Num hooks: {node.hooks}"
    )
    if hooks.links:
        out.append("  Local hook      Peer name       Peer type    Peer ID         Peer hook")
        out.append("  ----------      ---------       ---------    -------         ---------")
        for link in hooks.links:
            out.append(
                f"  {link.ourhook:<15} {_name(link.peer.name):<15} {link.peer.type:<12} "
                f"{link.peer.id:08x}        {link.peerhook}"
            )


async def cmd_msg(sock: NgSocket, path: str, cmd: str, args: Sequence[str], out: list[str]) -> None:
    binary = await sock.ascii2binary(path, cmd, " ".join(args))
    expects_reply = bool(binary.cmd & abi.NGM_HASREPLY) or cmd.startswith(("get", "list"))
    if not expects_reply:
        await sock.send(path, binary.typecookie, binary.cmd, binary.data)
        return
    data = await sock.request(path, binary.typecookie, binary.cmd, binary.data)
    reply = abi.pack_message(
        binary.typecookie, binary.cmd, data, token=0, flags=abi.NGF_RESP, cmdstr=cmd
    )
    try:
        text = await sock.binary2ascii(path, reply)
    except OSError:
        text = data.hex()  # the node cannot render its reply: show the bytes
    out.append(
        f'Rec\'d response "{cmd}" (cookie {binary.typecookie}, cmd {binary.cmd}) from {path}:'
    )
    out.append(f"Args:\t{text}")


async def cmd_dot(sock: NgSocket, out: list[str]) -> None:
    nodes = sorted(await sock.listnodes(), key=lambda n: n.id)
    out.append("graph netgraph {")
    out.append("\tedge [ weight = 1.0 ];")
    out.append("\tnode [ shape = record, fontsize = 12 ] {")
    for node in nodes:
        label = f"{{{node.name or '<unnamed>'}:|{{{node.type}|[{node.id:x}]:}}}}"
        out.append(f'\t\t"{node.id:x}" [ label = "{label}" ];')
    out.append("\t};")
    edges: list[str] = []
    out.append("\tnode [ shape = octagon, fontsize = 10 ] {")
    for node in nodes:
        if not node.hooks:
            continue
        for link in (await sock.listhooks(node.address)).links:
            out.append(f'\t\t"{node.id:x}.{link.ourhook}" [ label = "{link.ourhook}" ];')
            edges.append(f'\t"{node.id:x}.{link.ourhook}" -- "{node.id:x}";')
            if (node.id, link.ourhook) < (link.peer.id, link.peerhook):
                edges.append(
                    f'\t"{node.id:x}.{link.ourhook}" -- "{link.peer.id:x}.{link.peerhook}";'
                )
    out.append("\t};")
    out.extend(edges)
    out.append("}")


async def run(options: argparse.Namespace) -> list[str]:
    """Run one verb and return the lines to print."""
    out: list[str] = []
    async with (
        _open_transport(options.sim) as transport,
        open_ng_socket(transport, reply_timeout=MSG_REPLY_TIMEOUT) as sock,
    ):
        if options.verb == "list":
            await cmd_list(sock, out)
        elif options.verb == "show":
            await cmd_show(sock, options.path, out)
        elif options.verb == "msg":
            await cmd_msg(sock, options.path, options.cmd, options.args, out)
        else:
            await cmd_dot(sock, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        options = parser.parse_args(argv)
        if options.sim is None and not sys.platform.startswith("freebsd"):
            parser.error("no netgraph kernel here: pass --sim SOCKET")
    except SystemExit as exc:  # usage errors (64) and --help (0) become the return value
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    try:
        lines = trio.run(run, options)
    except OSError as exc:
        print(f"netgraph: {describe_oserror(exc)}", file=sys.stderr)
        return EX_OSERR
    except trio.TooSlowError:
        print("netgraph: no reply in time", file=sys.stderr)
        return EX_TEMPFAIL
    except ValueError as exc:
        print(f"netgraph: {exc}", file=sys.stderr)
        return EX_USAGE
    if lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
