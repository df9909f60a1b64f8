"""Where a queued transaction's result goes: an awaiting coroutine's future, or a slot a
blocked thread waits on; settled from whichever thread ran the transaction."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any


class Slot:
    """Where a blocked thread's transaction result goes (``atomic_blocking``, and the
    loop's own inline transactions): a lock held until the result is in, lighter than a
    ``concurrent.futures.Future``."""

    __slots__ = ("_lock", "done", "ok", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.done, self.ok, self.value = False, False, None

    def settle(self, ok: bool, value: Any) -> None:
        self.ok, self.value, self.done = ok, value, True
        self._lock.release()

    def result(self) -> Any:
        self._lock.acquire()
        if not self.ok:
            assert isinstance(self.value, BaseException)
            raise self.value
        return self.value


#: Where a queued transaction's result goes: an awaiting coroutine's, or a thread's.
Waiter = asyncio.Future[Any] | Slot


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller was cancelled; the work was done (or not) all the same
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def deliver(waiter: Waiter, ok: bool, value: Any) -> None:
    """Settle ``waiter`` from the thread that ran the transaction."""
    if isinstance(waiter, Slot):
        waiter.settle(ok, value)
    else:
        waiter.get_loop().call_soon_threadsafe(_settle, waiter, ok, value)


def deliver_all(
    batch: Sequence[tuple[object, Waiter]], outcomes: Sequence[tuple[bool, Any]]
) -> None:
    """Settle each waiter of ``batch`` with its outcome, waking each event loop once (a
    wake-up per transaction cost the loop a self-pipe read each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_, waiter), (ok, value) in zip(batch, outcomes, strict=True):
        if isinstance(waiter, Slot):
            waiter.settle(ok, value)
        else:
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, ok, value))
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        _settle(future, ok, value)
