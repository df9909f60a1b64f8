"""Client routing: the client's engine requests go to the engine, never the network.

``Requests`` sends requests to the running engine (a ``Running``: its loop, its
in-process API) from any thread or loop. The life cycle (``EmbeddedEngine``) gives it
three things only: a way to start the engine on first use, the engine as it runs, and a
count of the client's requests under way. A start and a read of a run are answered
directly (``_direct``), a blocking caller's on its own thread; every other request goes
through the engine's ASGI app on its loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._transport import asgi_call, effects, performers

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline.embedded._direct import DirectCall
    from stepline.engine import Engine

__all__ = ["GRACE", "ORIGIN", "Requests", "Running", "route_client", "unreachable"]

#: The origin the client's engine requests are addressed to; they never leave the process.
ORIGIN = "http://stepline.embedded"
#: Seconds an in-process request may take beyond its own timeout before it is abandoned.
GRACE = 5.0


@dataclasses.dataclass(frozen=True, eq=False)
class Running:
    """An engine as it runs on its thread; the life cycle makes one at each start.

    Attributes:
        engine: the ``stepline.engine.Engine``.
        loop: the engine thread's event loop.
        thread: the engine's thread.
        api: the engine's REST API for in-process callers (the mounts guard theirs).
        stopping: set to stop the engine.
        calls: requests from other threads in flight on ``loop``; cancelled at the stop,
            so that their callers get a clear "stopped" answer.
    """

    engine: Engine
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    api: asgi_call.ASGIApp
    stopping: asyncio.Event
    calls: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)


class Requests:
    """Requests to the engine from any thread or loop.

    Args:
        start: starts the engine unless it runs (a client's first use); returns it
            running, or None if it stopped meanwhile. Raises what the start raised.
        current: the engine as it last ran, without starting it (None: it never ran).
        using: held while a client's request is under way (an engine that does not
            lease stops when none is left).
    """

    def __init__(
        self,
        start: Callable[[], Running | None],
        current: Callable[[], Running | None],
        using: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        self._start = start
        self._current = current
        self._using = using

    def _on_engine_thread(self) -> Running | None:
        """The running engine when called on its own thread, else None."""
        running = self._current()
        on_it = running is not None and threading.current_thread() is running.thread
        return running if on_it else None

    def _submit(
        self, request: effects.HttpRequest, client: bool = False
    ) -> concurrent.futures.Future[effects.HttpResponse] | effects.HttpResponse:
        """Hand ``request`` to the engine's loop; an answer right away if it cannot run."""
        try:
            running = self._start()
        except Exception as exc:  # as transports do: a failure to reach is status 0
            return unreachable(f"the embedded engine could not start: {exc!r}")
        if running is None:
            return unreachable("the embedded engine stopped")
        stopping, calls = running.stopping, running.calls

        async def call() -> effects.HttpResponse:
            task = asyncio.current_task()
            assert task is not None
            calls.add(task)
            try:
                return await _perform(running, request, client)
            except asyncio.CancelledError:
                if stopping.is_set():
                    return unreachable("the embedded engine stopped")
                raise  # the caller gave up
            finally:
                calls.discard(task)

        coroutine = call()
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, running.loop)
        except RuntimeError:  # stopped between start() and now: its loop is closed
            coroutine.close()
            return unreachable("the embedded engine stopped")

    def request_sync(
        self, request: effects.HttpRequest, *, client: bool = False
    ) -> effects.HttpResponse:
        """Perform a request against the engine from any thread but the engine's.

        ``client``: the routed client's own request. Its starts and run reads skip the
        ASGI app (``_direct``), answered on this thread; a mount's (a browser's, which a
        dashboard session may authorize) always go through the app.
        """
        if self._on_engine_thread() is not None:
            raise _errors.ConfigError("request_sync called on the embedded engine's own thread")
        from stepline.embedded import _direct  # not at import: it loads the engine's modules

        with self._using():
            call = _direct.match(request, ORIGIN) if client else None
            if call is not None:
                return self._direct_sync(call)
            return self._request_sync(request)

    def _direct_sync(self, call: DirectCall) -> effects.HttpResponse:
        """A start or a read of a run, on the calling thread (``_direct``)."""
        from stepline.embedded import _direct
        from stepline.engine._errors import EngineStopped

        try:
            running = self._start()
        except Exception as exc:  # as transports do: a failure to reach is status 0
            return unreachable(f"the embedded engine could not start: {exc!r}")
        if running is None:
            return unreachable("the embedded engine stopped")
        try:
            return _direct.answer_sync(running.engine, call)
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
        running = self._on_engine_thread()
        if running is not None:
            return await _perform(running, request, client)
        with self._using():
            return await self._request_async(request, client)

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


async def _perform(
    running: Running, request: effects.HttpRequest, client: bool
) -> effects.HttpResponse:
    """``request`` answered on the engine's loop: directly (``_direct``) or by its app."""
    from stepline.embedded import _direct  # the engine's modules: loaded by now

    try:
        call = _direct.match(request, ORIGIN) if client else None
        if call is not None:
            return await _direct.answer_async(running.engine, call)
        return await asgi_call.call(running.api, request)
    except Exception as exc:  # the engine app failed: report it as transports do
        return effects.HttpResponse(0, {}, b"", error=f"embedded engine: {exc!r}")


def route_client(client: Client, requests: Requests) -> None:
    """Send ``client``'s engine traffic (addressed to ``ORIGIN``) to ``requests`` from now on."""
    connection = client.connection
    sync_base, async_base = connection.sync_transport, connection.async_transport

    class RoutedSync(performers.SyncTransport):
        def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
            if request.url.startswith(ORIGIN):
                return requests.request_sync(request, client=True)
            return sync_base.request(request)

    class RoutedAsync(performers.AsyncTransport):
        async def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
            if request.url.startswith(ORIGIN):
                return await requests.request_async(request, client=True)
            return await async_base.request(request)

    connection.sync_transport = RoutedSync()
    connection.async_transport = RoutedAsync()
    connection.settings = dataclasses.replace(
        connection.settings, api_base_url=ORIGIN, event_api_base_url=ORIGIN
    )


def unreachable(why: str) -> effects.HttpResponse:
    """The answer of a request that could not reach the engine (status 0, as transports)."""
    return effects.HttpResponse(0, {}, b"", error=why)
