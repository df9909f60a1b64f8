"""Client routing: the client's engine requests go to the engine, never the network.

``Requests`` holds the calls in flight; the engine's life cycle (``EmbeddedEngine``) gives
it the loop, the in-process API and a ``_start_lazily`` to call on first use. A start
and a read of a run are answered directly (``_direct``), a blocking caller's on its own
thread; every other request goes through the engine's ASGI app on its loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._transport import asgi_call, effects, performers

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline.embedded._direct import Call

__all__ = ["GRACE", "ORIGIN", "Requests", "route_client", "unreachable"]

#: The origin the client's engine requests are addressed to; they never leave the process.
ORIGIN = "http://stepline.embedded"
#: Seconds an in-process request may take beyond its own timeout before it is abandoned.
GRACE = 5.0


class Requests:
    """Requests to the engine from any thread or loop (mixed into ``EmbeddedEngine``)."""

    _lock: threading.Lock
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _api: asgi_call.ASGIApp | None
    _engine: Any
    _stopping: asyncio.Event | None
    _calls: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # the engine's life cycle provides it

        def _start_lazily(self) -> None: ...

        def _enter(self) -> None: ...

        def _leave(self) -> None: ...

    def _submit(
        self, request: effects.HttpRequest, client: bool = False
    ) -> concurrent.futures.Future[effects.HttpResponse] | effects.HttpResponse:
        """Hand ``request`` to the engine's loop; an answer right away if it cannot run."""
        try:
            self._start_lazily()
        except Exception as exc:  # as transports do: a failure to reach is status 0
            return unreachable(f"the embedded engine could not start: {exc!r}")
        loop, stopping, calls = self._loop, self._stopping, self._calls
        assert loop is not None
        assert stopping is not None

        async def call() -> effects.HttpResponse:
            task = asyncio.current_task()
            assert task is not None
            calls.add(task)
            try:
                return await self._perform(request, client)
            except asyncio.CancelledError:
                if stopping.is_set():
                    return unreachable("the embedded engine stopped")
                raise  # the caller gave up
            finally:
                calls.discard(task)

        coroutine = call()
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # stopped between start() and now: its loop is closed
            coroutine.close()
            return unreachable("the embedded engine stopped")

    async def _perform(
        self, request: effects.HttpRequest, client: bool = False
    ) -> effects.HttpResponse:
        assert self._api is not None
        from stepline.embedded import _direct  # the engine's modules: loaded by now

        try:
            call = _direct.match(request, ORIGIN) if client else None
            if call is not None and self._engine is not None:
                return await _direct.answer_async(self._engine, call)
            return await asgi_call.call(self._api, request)
        except Exception as exc:  # the engine app failed: report it as transports do
            return effects.HttpResponse(0, {}, b"", error=f"embedded engine: {exc!r}")

    def request_sync(
        self, request: effects.HttpRequest, *, client: bool = False
    ) -> effects.HttpResponse:
        """Perform a request against the engine from any thread but the engine's.

        ``client``: the routed client's own request. Its starts and run reads skip the
        ASGI app (``_direct``), answered on this thread; a mount's (a browser's, which a
        dashboard session may authorize) always go through the app.
        """
        if threading.current_thread() is self._thread:
            raise _errors.ConfigError("request_sync called on the embedded engine's own thread")
        from stepline.embedded import _direct  # not at import: it loads the engine's modules

        self._enter()
        try:
            call = _direct.match(request, ORIGIN) if client else None
            if call is not None:
                return self._direct_sync(call)
            return self._request_sync(request)
        finally:
            self._leave()

    def _direct_sync(self, call: Call) -> effects.HttpResponse:
        """A start or a read of a run, on the calling thread (``_direct``)."""
        from stepline.embedded import _direct
        from stepline.engine._errors import EngineStopped

        try:
            self._start_lazily()
        except Exception as exc:  # as transports do: a failure to reach is status 0
            return unreachable(f"the embedded engine could not start: {exc!r}")
        engine = self._engine
        if engine is None:
            return unreachable("the embedded engine stopped")
        try:
            return _direct.answer_sync(engine, call)
        except EngineStopped:
            return unreachable("the embedded engine stopped")

    def _request_sync(self, request: effects.HttpRequest) -> effects.HttpResponse:
        future = self._submit(request)
        if isinstance(future, effects.HttpResponse):
            return future
        try:
            # in-process calls have no socket timeout: bound the wait as httpx would
            return future.result(request.timeout + GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return unreachable(f"no answer from the embedded engine in {request.timeout:g}s")
        except concurrent.futures.CancelledError:  # its loop went away under the request
            return unreachable("the embedded engine stopped")

    async def request_async(
        self, request: effects.HttpRequest, *, client: bool = False
    ) -> effects.HttpResponse:
        """Perform a request against the engine from any event loop (``client``: as for
        ``request_sync``; its starts and run reads are answered on the engine's loop)."""
        if threading.current_thread() is self._thread:
            return await self._perform(request, client)
        self._enter()
        try:
            return await self._request_async(request, client)
        finally:
            self._leave()

    async def _request_async(
        self, request: effects.HttpRequest, client: bool
    ) -> effects.HttpResponse:
        future = self._submit(request, client)
        if isinstance(future, effects.HttpResponse):
            return future
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), request.timeout + GRACE)
        except asyncio.TimeoutError:
            return unreachable(f"no answer from the embedded engine in {request.timeout:g}s")


def route_client(client: Client, engine: Requests) -> None:
    """Send ``client``'s engine traffic (addressed to ``ORIGIN``) to ``engine`` from now on."""
    connection = client.connection
    sync_base, async_base = connection.sync_transport, connection.async_transport

    class Sync(performers.SyncTransport):
        def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
            if request.url.startswith(ORIGIN):
                return engine.request_sync(request, client=True)
            return sync_base.request(request)

    class Async(performers.AsyncTransport):
        async def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
            if request.url.startswith(ORIGIN):
                return await engine.request_async(request, client=True)
            return await async_base.request(request)

    connection.sync_transport = Sync()
    connection.async_transport = Async()
    connection.settings = dataclasses.replace(
        connection.settings, api_base_url=ORIGIN, event_api_base_url=ORIGIN
    )


def unreachable(why: str) -> effects.HttpResponse:
    """The answer of a request that could not reach the engine (status 0, as transports)."""
    return effects.HttpResponse(0, {}, b"", error=why)
