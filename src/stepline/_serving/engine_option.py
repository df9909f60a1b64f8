"""The ``engine=`` option of the adapters, resolved in one place for every framework.

``engine="embedded"`` makes an ``EmbeddedEngine`` for the client; an ``EmbeddedEngine``
you built is used as it is; None means an engine elsewhere. The checks are the strictest
the adapters ever made: your own engine must belong to the same client and takes no
``database=`` or settings here (they went to its constructor), and ``database=`` or
settings without an engine to make are a mistake, not something to ignore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline.embedded import EmbeddedEngine

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["check", "resolve", "start_for"]


def check(
    client: Client,
    engine: object,
    database: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """Refuse an ``engine=`` with arguments that cannot go together.

    Raises:
        ConfigError: ``engine`` is neither None, ``"embedded"`` nor an ``EmbeddedEngine``;
            an ``EmbeddedEngine`` of another client; ``database=`` or settings with your
            own engine, or with none to make.
    """
    extra = database is not None or bool(settings)
    if engine is None:
        if extra:
            raise _errors.ConfigError(
                "database= goes with the engine serve makes: database= and engine settings "
                "need engine='embedded'"
            )
    elif isinstance(engine, EmbeddedEngine):
        if engine.client is not client:
            raise _errors.ConfigError(
                "the EmbeddedEngine belongs to another client: build it with this one"
            )
        if extra:
            raise _errors.ConfigError(
                "database= and engine settings go to your own EmbeddedEngine's constructor"
            )
    elif engine != "embedded":
        raise _errors.ConfigError(f"engine: want 'embedded' or an EmbeddedEngine, not {engine!r}")


def resolve(
    client: Client,
    functions: Sequence[Function],
    engine: object,
    database: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> EmbeddedEngine | None:
    """The engine ``engine=`` asks for: yours, a new one (``"embedded"``), or None.

    Raises:
        ConfigError: as ``check``.
    """
    check(client, engine, database, settings)
    if engine is None or isinstance(engine, EmbeddedEngine):
        return engine
    return EmbeddedEngine(client, functions, database=database, **dict(settings or {}))


def start_for(client: Client) -> None:
    """Start the ``EmbeddedEngine`` built for ``client``, if any, leasing work.

    For the adapters without ``engine=`` (``stepline.asgi``'s lifespan, ``stepline.aiohttp``'s
    startup): the process serves, so a process its manager restarted resumes lapsed runs
    and due sleeps without waiting for a Stepline call.

    Raises:
        Exception: the engine could not start.
    """
    from stepline.embedded import _lifecycle

    _lifecycle.start_for(client)
