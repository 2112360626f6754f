"""The repository's copy of the golden vectors is the shared original, byte for byte."""

from __future__ import annotations

import pytest

from tests.vectors import NETGRAPH_VECTORS, SHARED_NETGRAPH_VECTORS

pytestmark = pytest.mark.unit


def test_copy_matches_the_shared_original() -> None:
    if not SHARED_NETGRAPH_VECTORS.exists():
        pytest.skip(f"no shared folder beside the checkout ({SHARED_NETGRAPH_VECTORS})")
    assert NETGRAPH_VECTORS.read_bytes() == SHARED_NETGRAPH_VECTORS.read_bytes()
