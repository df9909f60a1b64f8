"""``EngineHost``: where a test env's engine runs, and how the app's client reaches it.

The engine runs either on the caller's event loop (``async with TestEnv(...)``) or on a
thread of its own (``with TestEnv(...)``); everything else is the same. While the host is
open, the client's engine traffic (``client.send``, ``client.start``, run handles...) goes
to the engine's real REST API in-process, so the app's own routes reach it unchanged.
One thing is added on the way: a long poll for a run's end first waits through the env's
``poll`` (auto-skip moves the virtual clock for it, as for ``TestRun.result``), since a
clock that moves only when told would otherwise never bring a sleep or a retry due.
Closing the host gives the client back its transports and settings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import dataclasses
import re
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import httpx

from stepline import _errors
from stepline._client import Client
from stepline._definition.function import Function
from stepline._endpoints import registry as _endpoints
from stepline._settings import Settings
from stepline._transport import effects, performers
from stepline.engine import Engine, EngineSettings
from stepline.testing._clock import VirtualClock
from stepline.testing._mailbox import Mailbox

T = TypeVar("T")

#: The origin the client's engine requests are addressed to; they never leave the process.
ORIGIN = "http://stepline.testing"

#: A client's long poll for a run's end (``RunHandle.result``): ``GET /v1/runs/{id}?wait=``.
_POLL = re.compile(
    re.escape(ORIGIN) + r"(?P<path>/v1/runs/(?P<run>[^/?#]+))\?wait=(?P<wait>[^&#]+)"
)
#: A start that asks the engine to hold its answer until the run ends (``client.execute``).
_HELD_START = re.compile(re.escape(ORIGIN) + r"(?P<path>/v1/functions/[^/?#]+/runs)\?wait=[^&#]+")

#: Waits, for a client's long poll of the run ``run_id``, at most ``seconds`` real seconds.
Poll = Callable[[str, float], Awaitable[None]]


class EngineHost:
    """Runs an engine for one app and routes the app's client to it.

    Args:
        client: the app's client.
        functions: the (instrumented) functions to serve.
        settings: the engine's settings.
        clock: the engine's clock.
        mailbox: where worker threads post calls for a waiting thread, if anywhere.
        inline: the (instrumented) copies durable endpoints run inline, by composite id.
        poll: what a client's long poll of a run waits through before the engine answers
            it (the env's auto-skip); None: the engine answers it as any engine does.
    """

    def __init__(
        self,
        client: Client,
        functions: Sequence[Function],
        settings: EngineSettings,
        clock: VirtualClock,
        mailbox: Mailbox | None,
        *,
        inline: Mapping[str, Function] | None = None,
        poll: Poll | None = None,
    ) -> None:
        self.client = client
        self.poll = poll
        self.inline = dict(inline or {})
        self.functions = list(functions)
        self.settings = settings
        self.clock = clock
        self.mailbox = mailbox
        self.loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = None
        self._http: httpx.AsyncClient | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._saved: tuple[performers.SyncTransport, performers.AsyncTransport, Settings] | None
        self._saved = None

    @property
    def is_open(self) -> bool:
        """True while the engine serves."""
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        """The running engine."""
        if self._engine is None:
            raise _errors.ConfigError("the test env is not open: use `with` or `async with`")
        return self._engine

    # -- life cycle, on the engine's loop ---------------------------------------------------

    async def open(self) -> None:
        """Start the engine on the running loop, serve the app and route its client here."""
        from stepline._comm import app_sync
        from stepline._comm.handler import CommHandler
        from stepline.engine._http.api import build_app

        if self.client.settings.api_base_url == ORIGIN:
            raise _errors.ConfigError(
                f"client {self.client.app_id!r} already talks to an open test env: "
                "two test envs cannot share a client"
            )
        engine = Engine(self.settings, clock=self.clock)
        await engine.start(sync=False)
        # in process, never reached by a browser: no dev-mode guard (its Host is not loopback)
        transport = httpx.ASGITransport(app=build_app(engine, guard=False))
        self._http = httpx.AsyncClient(transport=transport, base_url=ORIGIN)
        self._engine, self.loop = engine, asyncio.get_running_loop()
        self._route()
        try:
            # the app checks signatures against the virtual time the engine signs with
            handler = CommHandler(
                client=_served(self.client),
                functions=self.functions,
                framework="testing",
                wall_clock=self.clock.now,
            )
            url = engine.local.add(self.client.app_id, handler)
            await engine.register(app_sync.register_payload(handler.endpoint, url))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Give the client back, stop the engine."""
        self._unroute()
        if self.mailbox is not None:
            self.mailbox.close()
        engine, http, self._engine, self._http = self._engine, self._http, None, None
        if http is not None:
            await http.aclose()
        if engine is not None:
            await engine.stop()

    # -- life cycle on a thread of its own ----------------------------------------------------

    def open_thread(self, timeout: float = 30.0) -> None:
        """Start the engine on a new thread with its own loop; return once it serves."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready)), name="stepline-testing", daemon=True
        )
        self._thread.start()
        ready.result(timeout)

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._stopping = asyncio.Event()
        try:
            await self.open()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            await self.close()

    def close_thread(self, timeout: float = 30.0) -> None:
        """Stop the engine thread and wait for it."""
        thread, loop, stopping = self._thread, self.loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        self._thread = None

    # -- calls into the engine's loop -----------------------------------------------------------

    def call_sync(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the engine's loop and block for its result (not from that loop)."""
        loop = self._loop()
        if _running_loop() is loop:
            raise _errors.ConfigError(
                "a blocking test-env call on the engine's own event loop would deadlock: "
                "use the async method (await env.x() instead of env.x_sync())"
            )
        future = asyncio.run_coroutine_threadsafe(_awaited(make), loop)
        return future.result() if self.mailbox is None else self.mailbox.wait(future)

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` on the engine's loop, from any loop."""
        loop = self._loop()
        if asyncio.get_running_loop() is loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_awaited(make), loop))

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None or self._engine is None:
            raise _errors.ConfigError("the test env is not open: use `with` or `async with`")
        return self.loop

    # -- the client's traffic -------------------------------------------------------------------

    async def _perform(self, request: effects.HttpRequest) -> effects.HttpResponse:
        assert self._http is not None
        url = request.url if self.poll is None else await self._polled(request)
        raw = await self._http.request(
            request.method,
            url,
            headers=dict(request.headers),
            content=request.body,
            timeout=request.timeout,
        )
        headers = {name.lower(): value for name, value in raw.headers.items()}
        return effects.HttpResponse(raw.status_code, headers, raw.content)

    async def _polled(self, request: effects.HttpRequest) -> str:
        """The URL to send ``request`` to, once a long poll of a run has waited through
        ``poll`` (the rest of its ``wait``, if any, is the engine's). A start that would be
        held until its run ends is answered at once instead: the client then long-polls
        the run, which ``poll`` sees."""
        assert self.poll is not None
        url = request.url
        if request.method == "POST" and (held := _HELD_START.fullmatch(url)):
            return ORIGIN + held["path"]
        if request.method != "GET" or not (polled := _POLL.fullmatch(url)):
            return url
        try:
            wait = float(polled["wait"])
        except ValueError:
            return url  # the engine's 400 says what is wrong with it
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.poll(urllib.parse.unquote(polled["run"]), wait)
        left = wait - (loop.time() - started)
        return ORIGIN + polled["path"] + (f"?wait={left:.3f}" if left > 0.001 else "")

    def _route(self) -> None:
        client, host = self.client, self
        connection = client.connection
        sync_base, async_base = connection.sync_transport, connection.async_transport

        class Sync(performers.SyncTransport):
            def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
                if request.url.startswith(ORIGIN):
                    return host.call_sync(lambda: host._perform(request))
                return sync_base.request(request)

        class Async(performers.AsyncTransport):
            async def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
                if request.url.startswith(ORIGIN):
                    return await host.call(lambda: host._perform(request))
                return await async_base.request(request)

        self._saved = (sync_base, async_base, connection.settings)
        _endpoints.substitute(client, self.inline)
        connection.sync_transport, connection.async_transport = Sync(), Async()
        connection.settings = dataclasses.replace(
            connection.settings, api_base_url=ORIGIN, event_api_base_url=ORIGIN
        )

    def _unroute(self) -> None:
        if self._saved is None:
            return
        sync_base, async_base, settings = self._saved
        self._saved = None
        connection = self.client.connection
        connection.sync_transport, connection.async_transport = sync_base, async_base
        connection.settings = settings
        _endpoints.substitute(self.client, None)


def _served(client: Client) -> Client:
    """The client the functions are served with: a cloud-mode client without a signing key
    (tests rarely have one) is served as in dev mode, since nothing could sign its calls."""
    if client.settings.is_dev or client.settings.signing_keys:
        return client
    served = copy.copy(client)
    served.connection = copy.copy(client.connection)  # shares the routed transports
    served.connection.settings = dataclasses.replace(client.settings, mode="dev")
    return served


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
