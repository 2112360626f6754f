"""Golden netgraph vectors: a copy of the project's shared/vectors/netgraph.json.

Built from the FreeBSD header layouts (shared/reference/netgraph-abi.md §4). The copy lets a
clone run its tests anywhere; test_vectors_copy checks it against the original when the shared
folder sits beside the checkout, as it does in CI.
"""

from __future__ import annotations

from pathlib import Path

NETGRAPH_VECTORS = Path(__file__).resolve().parent / "netgraph.json"
SHARED_NETGRAPH_VECTORS = (
    Path(__file__).resolve().parents[3] / "shared" / "vectors" / "netgraph.json"
)
