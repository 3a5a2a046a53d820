"""The cloud client's HTTP stack costs no needless CPU per request."""

from __future__ import annotations

import asyncio
import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

from httpcore import _synchronization


class Lookups(importlib.abc.MetaPathFinder):
    """Records which modules Python searched sys.path for (a failed import is searched again
    on every attempt: Python caches only modules that were found)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> None:
        self.names.append(fullname)


def test_httpcore_finds_sniffio_instead_of_searching_for_it_on_every_request() -> None:
    """httpcore imports `sniffio` in each lock, event and semaphore setup (4 per request).
    anyio >= 4.11 no longer installs it, and then every one of those is a failed import, a
    search of sys.path (~50 µs): encode/httpcore#1103 (open), discussion #1102. pyproject.toml
    depends on sniffio for this; measured, an httpx request to a local server took 0.8-1.0 ms
    with it and 1.3-1.6 ms without."""
    lookups = Lookups()

    async def detect() -> list[str]:
        return [_synchronization.current_async_library() for _ in range(3)]

    sys.meta_path.insert(0, lookups)
    try:
        assert asyncio.run(detect()) == ["asyncio"] * 3
    finally:
        sys.meta_path.remove(lookups)
    assert "sniffio" not in lookups.names
