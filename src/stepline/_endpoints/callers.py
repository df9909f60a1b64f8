"""Who calls a durable endpoint, when the app authenticates in the framework.

An app often authenticates before the view runs (a FastAPI dependency, a Flask login
decorator, Django's ``request.user``) rather than in the endpoint's ``authorize``. The
endpoint's ``caller`` hook tells it who that was: a function of the framework's request
returning the caller's id (``"user:42"``), a ``Principal``, or None for nobody. The id is
the run's starter, as a ``Principal`` from ``authorize`` is: the run is the caller's, and
an ``Idempotency-Key`` is scoped to them, so another user sending the same key starts a
run of their own instead of reading this one's response.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from stepline import _errors
from stepline._api.ownership import Principal

__all__ = ["Caller", "Identify", "caller_id", "identify_async", "identify_sync"]

#: ``caller(request)``: the framework's request in, the caller's id (or None) out.
Caller = Callable[[Any], "str | Principal | Awaitable[str | Principal | None] | None"]


@dataclasses.dataclass(frozen=True, slots=True)
class Identify:
    """The effect of asking the endpoint's ``caller`` hook who sent ``request``."""

    request: Any


def caller_id(answer: object) -> str | None:
    """The principal a ``caller`` hook's answer names (None: nobody in particular).

    Raises:
        ConfigError: the hook answered something else than a str, a Principal or None,
            or an id the engine cannot store.
    """
    if answer is None or isinstance(answer, Principal):
        return None if answer is None else answer.id
    if isinstance(answer, str):
        return Principal(answer).id  # checked as any principal is
    raise _errors.ConfigError(
        f"an endpoint's caller hook returned {type(answer).__name__}: want the caller's id "
        "(a str or a Principal), or None"
    )


def identify_sync(caller: Caller, request: Any) -> str | None:
    """The caller's id, from a sync framework (the hook must be a plain ``def``)."""
    answer = caller(request)
    if inspect.isawaitable(answer):
        close = getattr(answer, "close", None)
        if close is not None:
            close()
        raise _errors.ConfigError("the caller hook is async; a sync framework needs a sync hook")
    return caller_id(answer)


async def identify_async(caller: Caller, request: Any) -> str | None:
    """Async twin of ``identify_sync`` (the hook may be sync or async)."""
    answer = caller(request)
    return caller_id(await answer if inspect.isawaitable(answer) else answer)
