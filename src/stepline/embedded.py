"""The engine inside your web process: durable functions with no second process.

``EmbeddedEngine`` runs a Stepline engine on a background thread (its own event loop) on a
SQLite file, serves the client's functions to it in-process, and routes the client's
engine traffic (``send``, ``start``, ``get_run``...) to it without HTTP. Several worker
processes (gunicorn, uvicorn ``--workers``) may share the file: they share the queue, and
each run executes once. The engine starts lazily on first use and again in a forked
child, so ``gunicorn --preload`` is safe.

The engine's REST API and dashboard can be mounted under the web app (``asgi_app`` /
``wsgi_app``; the framework adapters' ``serve(..., engine="embedded")`` does it). They are
open to whoever reaches them, so they are mounted only for a dev-mode client unless you
pass ``expose_api=True``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # registers its exit hook now: ours must come after it
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from stepline import _asgi_call, _effects, _errors, _transport
from stepline._client import Client
from stepline._function import Function

__all__ = ["ORIGIN", "EmbeddedEngine"]

#: The origin the client's engine requests are addressed to; they never leave the process.
ORIGIN = "http://stepline.embedded"
DEFAULT_DATABASE = ".stepline/embedded.db"
_ALL: weakref.WeakSet[EmbeddedEngine] = weakref.WeakSet()
_ORPHANS: list[object] = []  # in a forked child: the parent's engines, never to be used


class EmbeddedEngine:
    """An engine on a background thread of this process, serving ``functions``.

    Args:
        client: the app's client; its engine traffic is routed here from now on.
        functions: the functions to run.
        database: a SQLite path (default ``STEPLINE_DATABASE_URL`` or
            ``.stepline/embedded.db``); ``postgresql://`` works too.
        expose_api: allow ``asgi_app``/``wsgi_app`` for a production client.
        settings: more ``EngineSettings`` fields (``poll_interval``, ``retry_scale``...).
    """

    def __init__(
        self,
        client: Client,
        functions: Sequence[Function],
        *,
        database: str | None = None,
        expose_api: bool = False,
        **settings: Any,
    ) -> None:
        self.client = client
        self.functions = list(functions)
        self.database = database or os.environ.get("STEPLINE_DATABASE_URL") or DEFAULT_DATABASE
        self.expose_api = expose_api or client.settings.is_dev
        self._settings = settings
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._api: _asgi_call.ASGIApp | None = None
        self._stopping: asyncio.Event | None = None
        self._calls: set[asyncio.Task[Any]] = set()  # requests from other threads, in flight
        self._resume: Callable[[], None] | None = None
        self._route_client()
        _ALL.add(self)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<stepline.EmbeddedEngine {self.database!r} {state}>"

    @property
    def running(self) -> bool:
        """True while the engine thread is up."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def engine(self) -> Any:
        """The ``stepline.engine.Engine`` (started on first access)."""
        self.start()
        return self._engine

    # -- life cycle -----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the engine thread if it is not running; wait until it serves."""
        with self._lock:
            if self.running:
                return
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._thread = threading.Thread(
                target=self._main, args=(ready,), name="stepline-embedded", daemon=True
            )
            self._thread.start()
            try:
                ready.result(timeout)
            except BaseException:
                if ready.done():  # it failed to start: its thread is ending, let it go
                    self._thread.join(timeout)
                    self._thread = None
                raise

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine; runs in flight resume at the next start (here or in another process).

        Callers blocked on it (``handle.result()``) get a ``ManagementError`` saying so.
        """
        with self._lock:
            thread, loop, stopping = self._thread, self._loop, self._stopping
            if thread is None or loop is None or stopping is None or not thread.is_alive():
                return
            loop.call_soon_threadsafe(stopping.set)
            thread.join(timeout)
            self._thread = None

    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        from stepline.engine import Engine, EngineSettings
        from stepline.engine._api import build_app

        engine = None
        try:
            engine = Engine(EngineSettings(**self._engine_settings()))
            await engine.start(worker=False, sync=False)
            await engine.serve(self.client, self.functions)
            engine.start_worker()  # not before: its app must be served to run its calls
        except BaseException as exc:
            if engine is not None:  # opened, then failed: close what it opened
                with contextlib.suppress(Exception):
                    await engine.stop()
            ready.set_exception(exc)
            return
        self._engine, self._loop, self._stopping = (
            engine,
            asyncio.get_running_loop(),
            asyncio.Event(),
        )
        self._api = build_app(engine)
        ready.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            # callers blocked on a request (a long-poll for a result) get a clear "stopped"
            # answer now, rather than a CancelledError from the loop's teardown
            calls = list(self._calls)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await engine.stop()

    def _engine_settings(self) -> dict[str, Any]:
        own = self.client.settings
        options: dict[str, Any] = {"database_url": self.database}
        if not own.is_dev:  # production: the engine signs calls and checks keys as a server would
            options["mode"] = "start"
            options["signing_keys"] = own.signing_keys
            options["event_keys"] = (own.event_key,) if own.event_key else ()
        options.update(self._settings)
        return options

    def _suspend(self) -> None:
        """Before a fork: close the engine's SQLite file, so the child inherits none of it."""
        suspend = getattr(getattr(self._engine, "store", None), "suspend", None)
        self._resume = None
        if self.running and suspend is not None:
            # RuntimeError: stopping meanwhile, its threads are gone and so is its file
            with contextlib.suppress(RuntimeError):
                self._resume = suspend()

    def _resumed(self) -> None:
        """After a fork, in the parent: reopen the file and carry on."""
        resume, self._resume = self._resume, None
        if resume is not None:
            resume()

    def _forget(self) -> None:
        """In a forked child: the parent's thread is gone; start afresh on next use."""
        # kept, never finalized here: closing the parent's connections from the child
        # would end them for the parent too (a Postgres socket is shared after fork)
        _ORPHANS.append((self._engine, self._loop, self._api))
        self._lock = threading.Lock()
        self._thread = self._loop = self._engine = self._api = self._stopping = None
        self._calls = set()
        self._resume = None

    # -- requests ------------------------------------------------------------------------

    def _submit(
        self, request: _effects.HttpRequest
    ) -> concurrent.futures.Future[_effects.HttpResponse] | _effects.HttpResponse:
        """Hand ``request`` to the engine's loop; an answer right away if it cannot run."""
        try:
            self.start()
        except Exception as exc:  # as transports do: a failure to reach is status 0
            return _unreachable(f"the embedded engine could not start: {exc!r}")
        loop, stopping, calls = self._loop, self._stopping, self._calls
        assert loop is not None
        assert stopping is not None

        async def call() -> _effects.HttpResponse:
            task = asyncio.current_task()
            assert task is not None
            calls.add(task)
            try:
                return await self._perform(request)
            except asyncio.CancelledError:
                if stopping.is_set():
                    return _unreachable("the embedded engine stopped")
                raise  # the caller gave up
            finally:
                calls.discard(task)

        coroutine = call()
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # stopped between start() and now: its loop is closed
            coroutine.close()
            return _unreachable("the embedded engine stopped")

    async def _perform(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
        assert self._api is not None
        try:
            return await _asgi_call.call(self._api, request)
        except Exception as exc:  # the engine app failed: report it as transports do
            return _effects.HttpResponse(0, {}, b"", error=f"embedded engine: {exc!r}")

    def request_sync(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
        """Perform a request against the engine from any thread but the engine's."""
        if threading.current_thread() is self._thread:
            raise _errors.ConfigError("request_sync called on the embedded engine's own thread")
        future = self._submit(request)
        if isinstance(future, _effects.HttpResponse):
            return future
        try:
            # in-process calls have no socket timeout: bound the wait as httpx would
            return future.result(request.timeout + _GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return _unreachable(f"no answer from the embedded engine in {request.timeout:g}s")
        except concurrent.futures.CancelledError:  # its loop went away under the request
            return _unreachable("the embedded engine stopped")

    async def request_async(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
        """Perform a request against the engine from any event loop."""
        if threading.current_thread() is self._thread:
            return await self._perform(request)
        future = self._submit(request)
        if isinstance(future, _effects.HttpResponse):
            return future
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), request.timeout + _GRACE)
        except asyncio.TimeoutError:
            return _unreachable(f"no answer from the embedded engine in {request.timeout:g}s")

    def _route_client(self) -> None:
        owner = self
        sync_base, async_base = self.client._sync_transport, self.client._async_transport

        class Sync(_transport.SyncTransport):
            def request(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
                if request.url.startswith(ORIGIN):
                    return owner.request_sync(request)
                return sync_base.request(request)

        class Async(_transport.AsyncTransport):
            async def request(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
                if request.url.startswith(ORIGIN):
                    return await owner.request_async(request)
                return await async_base.request(request)

        self.client._sync_transport = Sync()
        self.client._async_transport = Async()
        self.client.settings = _with_origin(self.client.settings)

    # -- mounting --------------------------------------------------------------------------

    def asgi_app(self) -> Callable[..., Awaitable[None]]:
        """The engine's REST API and dashboard as an ASGI app to mount (request/response)."""
        self._check_exposed()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            path = scope.get("path", "/")
            root = scope.get("root_path", "")
            if root and path.startswith(root):  # Starlette mounts keep the prefix in path
                path = path[len(root) :] or "/"
            query = scope.get("query_string", b"").decode("latin-1")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            response = await self.request_async(_proxy(scope["method"], path, query, headers, body))
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status or 502,
                    "headers": _out_headers(response),
                }
            )
            await send({"type": "http.response.body", "body": response.body})

        return app

    def wsgi_app(self) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        """The engine's REST API and dashboard as a WSGI app to mount."""
        self._check_exposed()

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            headers = {
                key[5:].replace("_", "-").lower(): value
                for key, value in environ.items()
                if key.startswith("HTTP_")
            }
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            path = environ.get("PATH_INFO") or "/"
            request = _proxy(
                environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), headers, body
            )
            response = self.request_sync(request)
            status = response.status or 502
            start_response(
                f"{status} {_REASONS.get(status, 'Status')}",
                [(k.decode(), v.decode()) for k, v in _out_headers(response)],
            )
            return [response.body]

        return app

    def _check_exposed(self) -> None:
        if not self.expose_api:
            raise _errors.ConfigError(
                "the embedded engine's API and dashboard are open to anyone who reaches them; "
                "they are mounted for a dev-mode client only, or with expose_api=True "
                "(put your own authentication in front)"
            )
        if not self.client.settings.is_dev and not self.client.settings.event_key:
            # with no event key the engine takes events under any key: open to the world
            raise _errors.ConfigError(
                "exposing a production embedded engine needs an event key on the client "
                "(event_key= or STEPLINE_EVENT_KEY), or anyone could send it events"
            )


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized"}
_REASONS.update({403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict"})
_REASONS.update({413: "Content Too Large", 500: "Internal Server Error", 502: "Bad Gateway"})
_HOP = {"content-length", "transfer-encoding", "connection"}
#: Seconds an in-process request may take beyond its own timeout before it is abandoned.
_GRACE = 5.0


def _unreachable(why: str) -> _effects.HttpResponse:
    return _effects.HttpResponse(0, {}, b"", error=why)


def _proxy(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> _effects.HttpRequest:
    url = f"{ORIGIN}{path}" + (f"?{query}" if query else "")
    kept = {k: v for k, v in headers.items() if k not in _HOP and k != "host"}
    return _effects.HttpRequest(method, url, kept, body or None, timeout=90.0)


def _out_headers(response: _effects.HttpResponse) -> list[tuple[bytes, bytes]]:
    pairs = [(k.encode(), v.encode()) for k, v in response.headers.items() if k not in _HOP]
    return [*pairs, (b"content-length", str(len(response.body)).encode())]


def _with_origin(settings: Any) -> Any:
    import dataclasses

    return dataclasses.replace(settings, api_base_url=ORIGIN, event_api_base_url=ORIGIN)


def _before_fork() -> None:
    for embedded in list(_ALL):
        embedded._suspend()


def _after_fork_in_parent() -> None:
    for embedded in list(_ALL):
        embedded._resumed()


def _after_fork_in_child() -> None:
    for embedded in list(_ALL):
        embedded._forget()


def _at_exit() -> None:
    for embedded in list(_ALL):
        embedded.stop(timeout=5)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
# Stop engines before concurrent.futures refuses new work at interpreter exit: its hook
# runs before atexit's, and the engine's store needs its executor to stop cleanly.
# threading's exit hooks run last-registered first, so this one runs before that one.
getattr(threading, "_register_atexit", atexit.register)(_at_exit)
