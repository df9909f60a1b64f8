"""The embedded engine's life cycle: its thread and loop, lazy start, stop, fork and exit."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # registers its exit hook now: ours must come after it
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from stepline import _asgi_call, _extras
from stepline._client import Client
from stepline._endpoints import registry as _endpoints
from stepline._function import Function
from stepline.embedded import _announce, _mounts, _options, _routing

__all__ = ["DEFAULT_DATABASE", "EmbeddedEngine"]

DEFAULT_DATABASE = ".stepline/embedded.db"
_ALL: weakref.WeakSet[EmbeddedEngine] = weakref.WeakSet()
_ORPHANS: list[object] = []  # in a forked child: the parent's engines, never to be used


logger = logging.getLogger("stepline.embedded")


class EmbeddedEngine(_routing.Requests, _mounts.Mounts, _announce.Announce):
    """An engine on a background thread of this process, serving ``functions``.

    Args:
        client: the app's client; its engine traffic is routed here from now on.
        functions: the functions to run.
        database: a SQLite path (default ``STEPLINE_DATABASE_URL`` or
            ``.stepline/embedded.db``); ``postgresql://`` works too.
        expose_api: allow ``asgi_app``/``wsgi_app`` for a production client.
        settings: more ``EngineSettings`` fields (``poll_interval``, ``retry_scale``...).
            Those in seconds take durations as the CLI does: ``retention="7d"``
            (``0``/``off`` keeps everything), ``shutdown_grace="30s"``, or a ``timedelta``.

    Raises:
        ConfigError: a missing extra, a setting the engine does not have, or a duration
            it cannot read (the message names the setting and a valid value).
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
        # a missing package fails here (at serve()), not as the engine thread's crash
        _extras.require("the embedded engine", "engine", _extras.ENGINE)
        if _extras.postgres(self.database):
            _extras.require(
                f"database={self.database.split(':')[0]}://", "postgres", _extras.POSTGRES
            )
        self.expose_api = expose_api or client.settings.is_dev
        self._settings = _options.check(settings)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._api: _asgi_call.ASGIApp | None = None
        self._stopping: asyncio.Event | None = None
        self._calls: set[asyncio.Task[Any]] = set()  # requests from other threads, in flight
        self._resume: Callable[[], None] | None = None
        _routing.route_client(client, self)
        _ALL.add(self)

    def __repr__(self) -> str:
        from stepline.engine._store import dsn

        state = "running" if self.running else "stopped"
        return f"<stepline.EmbeddedEngine {dsn.redact(self.database)!r} {state}>"

    @property
    def running(self) -> bool:
        """True while the engine thread is up."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def engine(self) -> Any:
        """The ``stepline.engine.Engine`` (started on first access)."""
        self.start()
        return self._engine

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
        from stepline.engine._http.api import build_app
        from stepline.engine._http.endpoints import Direct

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
        # in-process callers only: browsers reach the engine through the mounts, which guard
        self._api = build_app(engine, guard=False)
        unwatch = _endpoints.watch(self.client, self._reregister)  # late durable endpoints
        # durable endpoints reach this engine in process, without HTTP
        _endpoints.set_direct(self.client, Direct(engine, asyncio.get_running_loop()))
        ready.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            _endpoints.set_direct(self.client, None)
            unwatch()
            # callers blocked on a request (a long-poll for a result) get a clear "stopped"
            # answer now, rather than a CancelledError from the loop's teardown
            calls = list(self._calls)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await engine.stop()

    def _reregister(self) -> None:
        """A durable endpoint was declared after the app was served: register it too.

        Waits for the registration (it is declared at import, in a request's thread), so
        that the request that imported it finds its function registered.
        """
        loop, engine = self._loop, self._engine
        if loop is None or engine is None or loop.is_closed():
            return
        if threading.current_thread() is self._thread:  # never wait on our own loop
            loop.create_task(engine.reregister(self.client.app_id))
            return
        future = asyncio.run_coroutine_threadsafe(engine.reregister(self.client.app_id), loop)
        try:
            future.result(timeout=30)
        except Exception:
            logger.exception("could not register a late durable endpoint of %s", self.client.app_id)

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
        self._announced = False  # a new process: it says where its dashboard is again


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
