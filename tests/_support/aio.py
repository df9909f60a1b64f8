"""Running a coroutine to completion from a synchronous test (pytest-asyncio is not a
dependency)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def arun(coro: Awaitable[T], *, own_thread: bool = False) -> T:
    """Run ``coro`` to completion on a new event loop; its result.

    ``own_thread``: on a thread of its own, for when an event loop already runs on this
    thread (Playwright's sync API keeps one on the main thread while a browser is open,
    and ``asyncio.run`` refuses to start there).
    """

    async def main() -> T:
        return await coro

    if not own_thread:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()
