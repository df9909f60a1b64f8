"""Step timeouts: a step's code that runs too long fails its attempt with ``StepTimeoutError``.

``ctx.step.run(..., timeout=)`` (else the function's ``Timeouts(step=)``) bounds how long
one attempt of a step's code may run:

- async code (a coroutine) runs under ``asyncio.wait_for``: it is cancelled at the
  timeout, so its ``finally`` blocks run and its sockets close;
- sync code (any plain callable, on either face) runs on a daemon thread of its own and
  the caller waits at most the timeout: Python cannot stop a thread, so the attempt is
  abandoned, the thread runs on, and what it returns or raises later is ignored. Its
  side effects may still happen: make such steps idempotent, as any retried step;
- a result that arrives after the timeout in any other way (sync work blocking the event
  loop past it) is ignored too.

Either way the step reports a failed attempt (``StepError`` op) with the error's name,
so the engine retries it with the function's retries and backoff; after the last
attempt the step fails for good (``StepFailed``) and, unless the function catches the
``StepError`` it raises, so does the run. The engine bounds each call to the app as well
(``Timeouts(call=)``), whichever SDK answers it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime as _dt
import functools
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from stepline import _errors
from stepline._protocol import durations

__all__ = ["call_async", "call_sync", "seconds"]

#: Seconds cancelled async code gets to unwind, and the slack of the late-result check.
_GRACE = 0.1


def seconds(value: _dt.timedelta | int | str | None, where: str = "timeout") -> float | None:
    """A timeout in seconds (None: none), from a timedelta, int milliseconds or ``"30s"``.

    Raises:
        ConfigError: not a positive duration.
    """
    if value is None:
        return None
    try:
        delta = durations.to_timedelta(value)
    except (TypeError, ValueError) as exc:
        raise _errors.ConfigError(f"invalid {where} {value!r}: {exc}") from None
    if delta.total_seconds() <= 0:
        raise _errors.ConfigError(f"{where} must be positive, got {value!r}")
    return delta.total_seconds()


def _timed_out(step_id: str, timeout: float, how: str) -> _errors.StepTimeoutError:
    return _errors.StepTimeoutError(
        f'step "{step_id}" ran longer than its timeout of {timeout:g}s ({how})'
    )


def _is_async(handler: Callable[..., Any]) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with async __call__
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _on_thread(
    handler: Callable[..., Any], args: tuple[Any, ...]
) -> concurrent.futures.Future[Any]:
    """Run ``handler(*args)`` on a daemon thread (the caller's context vars copied)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            value = context.run(handler, *args)
        except BaseException as exc:  # handed to the waiting caller
            if not future.cancelled():
                future.set_exception(exc)
        else:
            if not future.cancelled():
                future.set_result(value)

    future.set_running_or_notify_cancel()
    threading.Thread(target=target, name="stepline-step", daemon=True).start()
    return future


def call_sync(
    step_id: str, handler: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
) -> Any:
    """``handler(*args)``, abandoned after ``timeout`` seconds (None: no limit).

    Raises:
        StepTimeoutError: it did not return in time (it may still be running).
    """
    if timeout is None:
        return handler(*args)
    future = _on_thread(handler, args)
    done, _ = concurrent.futures.wait([future], timeout=timeout)
    if not done:
        raise _timed_out(step_id, timeout, "abandoned; a late result is ignored")
    return future.result()


async def _within(work: Any, timeout: float) -> tuple[bool, Any]:
    """``(True, value)`` of awaitable ``work`` if it ends within ``timeout``; else cancel it
    (its ``finally`` blocks get a moment to run) and ``(False, None)``.

    Its own errors (a ``TimeoutError`` of its own included) are raised as they are.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # the caller was cancelled: so is the step
        task.cancel()
        raise
    if done:
        return True, task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=_GRACE)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning
    return False, None


async def call_async(
    step_id: str, handler: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
) -> Any:
    """``handler(*args)`` awaited if awaitable; cancelled (async) or abandoned (sync) at
    ``timeout`` seconds (None: no limit).

    Raises:
        StepTimeoutError: it did not finish in time.
    """
    if timeout is None:
        out = handler(*args)
        return await out if inspect.isawaitable(out) else out
    started = time.monotonic()
    if _is_async(handler):
        out = handler(*args)
    else:  # sync code must not block the loop past its timeout: a thread of its own
        ended, out = await _within(asyncio.wrap_future(_on_thread(handler, args)), timeout)
        if not ended:
            raise _timed_out(step_id, timeout, "abandoned; a late result is ignored")
    if inspect.isawaitable(out):
        left = max(timeout - (time.monotonic() - started), 0.0)
        ended, out = await _within(out, left)
        if not ended:
            raise _timed_out(step_id, timeout, "cancelled")
    if time.monotonic() - started > timeout + _GRACE:  # it held the loop past its timeout
        raise _timed_out(step_id, timeout, "finished late; its result is ignored")
    return out
