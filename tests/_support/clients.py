"""SDK clients as the tests make them: in dev mode, and closed by the server they run in."""

from __future__ import annotations

from typing import Any

import stepline


def dev_client(app_id: str = "t", **kwargs: Any) -> stepline.Client:
    """A dev-mode client that never reaches the network on its own."""
    return stepline.Client(app_id=app_id, is_production=False, **kwargs)


def closing_client(app: Any, client: Any) -> Any:
    """``app`` closing ``client``'s async connection pool when its server shuts down.

    The SDK keeps one pool per event loop (it calls the engine from the server's); only
    that loop can close it.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receiving() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await client.connection.async_transport.aclose()
            return message

        await app(scope, receiving, send)

    return wrapped
