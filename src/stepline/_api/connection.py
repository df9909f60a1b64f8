"""``EngineConnection``: an app's settings, its two transports, and the running of flows.

Every call to the engine (managing runs, sending events, publishing on a stream,
setting attributes from a run) is a flow of effects written once; this object runs one
on the blocking transport (``run_sync``) or the async one (``run_async``). The client
owns one and hands it to its handles, the publisher of each call and the web kit, so
each reads the settings and transports at the moment it uses them.
"""

from __future__ import annotations

from typing import TypeVar

from stepline import _settings
from stepline._transport import effects, performers

__all__ = ["EngineConnection"]

T = TypeVar("T")


class EngineConnection:
    """An app's link to its engine: resolved settings, the transports, the flow drivers.

    The attributes may be replaced while the connection is in use (the embedded engine
    and the test env route ``ORIGIN`` to an engine in the process); everything that
    holds the connection reads them at each use.

    Attributes:
        settings: the client's resolved settings.
        sync_transport: performs the effects of blocking calls.
        async_transport: performs the effects of async calls.
    """

    def __init__(
        self,
        settings: _settings.Settings,
        sync_transport: performers.SyncTransport | None = None,
        async_transport: performers.AsyncTransport | None = None,
    ) -> None:
        self.settings = settings
        self.sync_transport = sync_transport or performers.SyncTransport()
        self.async_transport = async_transport or performers.AsyncTransport()

    def __repr__(self) -> str:
        return f"<EngineConnection {self.settings.api_base_url}>"

    def run_sync(self, flow: effects.Flow[T]) -> T:
        """Run ``flow`` to its end with the blocking transport."""
        return effects.drive_sync(flow, self.sync_transport.perform)

    async def run_async(self, flow: effects.Flow[T]) -> T:
        """Run ``flow`` to its end with the async transport."""
        return await effects.drive_async(flow, self.async_transport.perform)

    def perform_sync(self, effect: object) -> effects.HttpResponse | None:
        """Perform one effect with the blocking transport (for a driver of its own)."""
        return self.sync_transport.perform(effect)

    async def perform_async(self, effect: object) -> effects.HttpResponse | None:
        """Perform one effect with the async transport (for a driver of its own)."""
        return await self.async_transport.perform(effect)

    async def aclose(self) -> None:
        """Close the connections this event loop and blocking calls opened."""
        await self.async_transport.aclose()
        self.sync_transport.close()

    def close(self) -> None:
        """Close the connections of blocking calls (``aclose`` also closes async ones)."""
        self.sync_transport.close()
