"""An SDK client whose calls to the engine go to the engine's ASGI app in this process."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import stepline
from stepline._transport import asgi_call, effects, performers


def to_engine(client: stepline.Client, api: Any, *, base_url: str = "http://127.0.0.1") -> None:
    """Route ``client``'s engine calls to ``api`` (the engine's ASGI app), with no socket.

    Call it on the event loop the engine runs on: async calls are awaited there, and blocking
    calls (a sync function's, from its worker thread) are handed to that loop.
    """
    loop = asyncio.get_running_loop()

    class ToEngine(performers.AsyncTransport):
        async def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
            return await asgi_call.call(api, request)

    class ToEngineSync(performers.SyncTransport):
        def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
            return asyncio.run_coroutine_threadsafe(asgi_call.call(api, request), loop).result()

    client.connection.async_transport = ToEngine()
    client.connection.sync_transport = ToEngineSync()
    client.connection.settings = dataclasses.replace(client.settings, api_base_url=base_url)
