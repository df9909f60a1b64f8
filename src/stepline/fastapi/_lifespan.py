"""``lifespan()`` owning the client (and an embedded engine), and ``get_client``/``ClientDep``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

import anyio.to_thread
import fastapi

from stepline import _errors
from stepline._client import Client
from stepline._definition.function import Function
from stepline._serving import engine_option
from stepline.embedded import EmbeddedEngine

__all__ = ["ClientDep", "get_client", "lifespan"]


def lifespan(
    client: Client,
    *,
    functions: Sequence[Function] = (),
    engine: Literal["embedded"] | EmbeddedEngine | None = None,
    database: str | None = None,
    **engine_settings: Any,
) -> Callable[[fastapi.FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` owning the client (and an embedded engine).

    At startup it stores the client as ``app.state.stepline_client`` (what ``get_client``
    returns) and, with ``engine``, starts an embedded engine running ``functions`` (one
    that ``serve(..., engine=...)`` made for this client is reused). At shutdown it stops
    the engine and closes the client with ``await client.aclose()``. The engine is
    ``app.state.stepline_engine``. To combine this with your own lifespan, enter it inside
    yours: ``async with stepline_lifespan(app): ...; yield``.

    Args:
        engine: ``"embedded"`` or your own ``EmbeddedEngine``.
        database: the embedded engine's database; ``engine_settings`` are more
            ``EngineSettings`` fields (``poll_interval``...).

    Raises:
        ConfigError: ``engine`` is not ``"embedded"`` or an ``EmbeddedEngine``, or
            ``functions``, ``database`` or settings are given without it.
    """
    if engine is None and (functions or database or engine_settings):
        raise _errors.ConfigError("lifespan: functions/database/settings need engine='embedded'")
    engine_option.check(client, engine, database, engine_settings)

    @contextlib.asynccontextmanager
    async def run(app: fastapi.FastAPI) -> AsyncIterator[None]:
        app.state.stepline_client = client
        embedded: EmbeddedEngine | None = None
        if engine is not None:
            embedded = getattr(app.state, "stepline_engine", None)
            if (
                isinstance(engine, EmbeddedEngine)
                or embedded is None
                or embedded.client is not client
            ):
                embedded = engine_option.resolve(
                    client, functions, engine, database, engine_settings
                )
            app.state.stepline_engine = embedded
        try:
            if embedded is not None:
                await anyio.to_thread.run_sync(embedded.start)
            yield
        finally:
            if embedded is not None:
                await anyio.to_thread.run_sync(embedded.stop)
            await client.aclose()

    return run


def get_client(request: fastapi.Request) -> Client:
    """A dependency: the client that ``lifespan`` or ``serve`` stored on ``app.state``.

    Raises:
        ConfigError: neither ran for this app (or the lifespan has not started).
    """
    client = getattr(request.app.state, "stepline_client", None)
    if not isinstance(client, Client):
        raise _errors.ConfigError(
            "no Stepline client on app.state: use FastAPI(lifespan=stepline.fastapi.lifespan("
            "client)) or stepline.fastapi.serve(app, client, ...)"
        )
    return client


#: ``client: ClientDep`` in a path operation receives the shared client.
ClientDep = Annotated[Client, fastapi.Depends(get_client)]
