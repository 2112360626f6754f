"""Simulated host layer: ``python -m vimaged.simhost --socket PATH``, the sim host process.

It holds one simulated FreeBSD host in memory and serves it until SIGTERM or SIGINT, whoever
connects and disconnects meanwhile, so a killed daemon finds the host as it left it.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

import trio

from vimaged.simhost.faults import parse_faults
from vimaged.simhost.host import DEFAULT_NICS, KERNELS
from vimaged.simhost.server import SimHostServer, run

EX_USAGE = 64
EX_UNAVAILABLE = 69


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m vimaged.simhost", description=__doc__)
    parser.add_argument("--socket", required=True, help="RPC socket path (netgraph: PATH.ng)")
    parser.add_argument("--sim-nics", default=" ".join(DEFAULT_NICS), help='e.g. "em0 em1"')
    parser.add_argument("--sim-faults", default="", help="fault spec, see docs/sim.md")
    parser.add_argument(
        "--release",
        "--sim-kernel",
        dest="release",
        type=int,
        choices=KERNELS,
        default=14,
        help="FreeBSD release whose kernel behaviour is simulated (docs/sim.md)",
    )
    parser.add_argument(
        "--sim-wires", default="", help='NICs sharing a wire, e.g. "em0,em1 em2,em3"'
    )
    args = parser.parse_args(argv)
    try:
        parse_faults(args.sim_faults)
        server = SimHostServer(
            nics=tuple(args.sim_nics.split()),
            kernel=args.release,
            faults=args.sim_faults,
            wires=tuple(tuple(w.split(",")) for w in args.sim_wires.split()),
        )
    except ValueError as exc:
        print(f"vimaged.simhost: {exc}", file=sys.stderr)
        return EX_USAGE
    status = 0
    try:
        trio.run(run, server, args.socket)
    except* OSError as group:
        for failure in group.exceptions:
            print(f"vimaged.simhost: {failure}", file=sys.stderr)
        status = EX_UNAVAILABLE
    return status


if __name__ == "__main__":
    sys.exit(main())
