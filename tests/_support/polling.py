"""Bounded polling: call a check until it holds, or fail saying what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

#: What a check returns while the awaited thing has not happened yet.
NOT_YET = (None, False)


def _describe(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "the condition",
) -> T:
    """Call ``predicate`` until it returns something other than None or False; return that.

    Raises AssertionError after ``timeout`` seconds, naming ``message`` (a callable is
    called then, so it can show the latest state or a log's tail). An exception raised
    by ``predicate`` (an ``assert`` on a process still being alive) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {_describe(message)}")
        time.sleep(interval)


# overloads: a checker infers ``T`` from an async predicate as from a plain one
@overload
async def await_until(
    predicate: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...


@overload
async def await_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...


async def await_until(
    predicate: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "the condition",
) -> T:
    """``wait_until`` for a coroutine: ``predicate`` may be async; sleeps without blocking."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {_describe(message)}")
        await asyncio.sleep(interval)
