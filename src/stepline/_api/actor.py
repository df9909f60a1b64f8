"""On whose behalf the client calls the engine: ``X-Stepline-Actor`` on its REST calls.

A program holding the signing key may act for a person (the Django admin acts for its
signed-in user): inside ``acting_as(name)``, every REST call the client makes in this
context carries ``X-Stepline-Actor: <name>``, and the engine's audit log records the name,
with the signing key as the credential it came through. The engine believes the header
from the signing key only: a dashboard session cannot pass for someone else with it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["HEADER", "acting_as", "current"]

#: The header the engine reads the name from.
HEADER = "X-Stepline-Actor"
_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("stepline_actor", default=None)


@contextlib.contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Name ``name`` on every REST call made in this context (thread or task).

    Args:
        name: who the calls are made for (``django:alice``).
    """
    token = _ACTOR.set(name)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current() -> str | None:
    """The name calls made now are made for, if any."""
    return _ACTOR.get()
