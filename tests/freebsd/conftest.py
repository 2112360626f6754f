"""Fixtures of the freebsd tier: the real platform, and an epair(4) to move around."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest

from vimaged.platforms import freebsd

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture
async def plat(tmp_path: Path) -> AsyncIterator[freebsd.FreeBSDPlatform]:
    platform = freebsd.create(run_dir=str(tmp_path / "run"))
    await platform.preflight()
    try:
        yield platform
    finally:
        await platform.aclose()


@pytest.fixture
def epair() -> Iterator[str]:
    name = subprocess.run(
        ["ifconfig", "epair", "create"], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(["ifconfig", name, "destroy"], check=False, capture_output=True)
