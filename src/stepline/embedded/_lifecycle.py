"""The embedded engine's life cycle: its thread and loop, lazy start, stop, fork and exit.

It starts on a client's first use, or when its process serves (``start``, the adapters'
``on_request``, a server hook's ``start_all``). Under a pre-fork server (``_prefork``) a
process that has not served runs it without its worker, for each call only: it records,
it never leases, and it leaves no thread behind for a fork.

``EmbeddedEngine`` owns three parts and gives each only what it uses: the client's
requests (``_routing.Requests``: a lazy start, the engine as it runs, a use count), the
mounts (``_mounts.Mounts``: the requests, the client, the engine's settings) and the
dashboard's announcer (``_announce.Announcer``: nothing).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # registers its exit hook now: ours must come after it
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from stepline import _extras, _loops
from stepline._client import Client
from stepline._definition.function import Function
from stepline._endpoints import registry as _endpoints
from stepline._transport import effects
from stepline.embedded import _announce, _mounts, _options, _prefork, _routing

__all__ = ["DEFAULT_DATABASE", "RETRY", "EmbeddedEngine", "start_all", "start_for"]

DEFAULT_DATABASE = ".stepline/embedded.db"
_ALL: weakref.WeakSet[EmbeddedEngine] = weakref.WeakSet()
_ORPHANS: list[object] = []  # in a forked child: the parent's engines, never to be used
#: Seconds before a request tries again to start an engine that failed to start.
RETRY = 5.0


logger = logging.getLogger("stepline.embedded")


class EmbeddedEngine:
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
        self._thread: threading.Thread | None = None
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()  # its start's
        self._running: _routing.Running | None = None  # the last start's, kept once stopped
        self._resume: Callable[[], None] | None = None
        self._leasing = False  # its worker runs: it leases and runs calls in this process
        self._retry_at = 0.0  # on_request: no new try before (after a failed start)
        self._users = threading.Lock()  # guards _using: the client's requests under way
        self._using = 0
        self._requests = _routing.Requests(self._start_lazily, self._current, self._in_use)
        self._mounts = _mounts.Mounts(
            self._requests,
            client,
            expose_api=self.expose_api,
            engine_settings=self._engine_settings,
        )
        self._announcer = _announce.Announcer()
        _routing.route_client(client, self._requests)
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
    def leasing(self) -> bool:
        """True while the engine runs its worker: it leases work and runs calls here.

        False while it records events and starts only (a pre-fork master: ``start_all``).
        """
        return self._leasing and self.running

    @property
    def database_fault(self) -> str | None:
        """The database fault the engine is in (``"locked"``, ``"disk full"``...), or None.

        Set while its last write failed with a fault and none has succeeded since: what
        ``/ready`` (503) and ``stepline_store_degraded`` say, without mounting the API.
        None while it is stopped. Cheap, from any thread (docs/operations.md).
        """
        running = self._running  # one attribute read each: the engine's loop writes them
        cause: str | None = running.engine.health.cause if running and self.running else None
        return cause

    @property
    def engine(self) -> Any:
        """The ``stepline.engine.Engine`` (started on first access, as a client's use does)."""
        running = self._start_lazily()
        return running.engine if running is not None else None

    @property
    def announced(self) -> bool:
        """True once this process logged where the dashboard is."""
        return self._announcer.announced

    def announce(self, origin: str | None, mount: str) -> bool:
        """Log the dashboard's URL, the first time an origin is known (once per process).

        Args:
            origin: the app's public origin, with any root path it is served under
                (``serve_origin``, or a request's ``scheme://host``); None: not known yet.
            mount: where the adapter mounted the engine's API and dashboard.

        Returns:
            True when this call logged it.
        """
        return self._announcer.announce(origin, mount)

    def asgi_app(self) -> Callable[..., Awaitable[None]]:
        """The engine's REST API and dashboard as an ASGI app to mount (request/response).

        Raises:
            ConfigError: the API is not exposed (``expose_api``), or a production
                client has no event key.
        """
        return self._mounts.asgi_app()

    def wsgi_app(self) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        """The engine's REST API and dashboard as a WSGI app to mount.

        Raises:
            ConfigError: as ``asgi_app``.
        """
        return self._mounts.wsgi_app()

    def request_sync(
        self, request: effects.HttpRequest, *, client: bool = False
    ) -> effects.HttpResponse:
        """Perform a request against the engine from any thread but the engine's.

        ``client``: the routed client's own request, which may skip the engine's ASGI
        app (``_routing.Requests.request_sync``).
        """
        return self._requests.request_sync(request, client=client)

    async def request_async(
        self, request: effects.HttpRequest, *, client: bool = False
    ) -> effects.HttpResponse:
        """Perform a request against the engine from any event loop (``client``: as for
        ``request_sync``)."""
        return await self._requests.request_async(request, client=client)

    def start(self, timeout: float = 30.0) -> None:
        """Start the engine, leasing work; wait until it serves. Call it where the app serves.

        It says this process serves requests (a worker, not a pre-fork master): an engine
        that a client's use started without its worker starts leasing too.
        """
        _prefork.mark_serving()
        self._start(lease=True, timeout=timeout)

    def on_request(self) -> None:
        """The adapters' hook, on each request: this process serves; start leasing, once.

        Cheap once it leases. A failure to start is logged, not raised: the request goes
        on, and one ``RETRY`` seconds later tries again.
        """
        if self.leasing or time.monotonic() < self._retry_at:
            return
        try:
            self.start()
        except Exception:
            self._retry_at = time.monotonic() + RETRY
            logger.exception("the embedded engine could not start; retrying in %gs", RETRY)

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        """Held while a client's request is under way.

        When the last one ends, an engine that does not lease stops. Such an engine is a
        possible pre-fork master's: it keeps no thread between calls, since uwsgi forks
        without Python's fork hooks and a thread alive at a fork can leave the child
        deadlocked. The next call starts it again (a new one waits meanwhile).
        """
        with self._users:
            self._using += 1
        try:
            yield
        finally:
            with self._users:
                self._using -= 1
                if self._using == 0 and self.running and not self._leasing:
                    with self._lock:
                        if not self._leasing:
                            self._stop_locked(timeout=10)

    def _current(self) -> _routing.Running | None:
        """The engine as it last ran (None: it never ran in this process)."""
        return self._running

    def _start_lazily(self) -> _routing.Running | None:
        """A client's use: start the engine, leasing unless a pre-fork master could be here.

        Returns the engine running (None: it stopped meanwhile).
        """
        running = self._running  # a closed loop is a stopped engine's: it may be starting
        if running is not None and not running.loop.is_closed() and self.running:
            return running
        held = _prefork.held_back()
        if self._start(lease=held is None) and held is not None and not _Warned.held:
            _Warned.held = True
            _warn_held(held)
        return self._running

    def _start(self, *, lease: bool, timeout: float = 30.0) -> bool:
        """Start the thread (True), or make a running engine lease when asked (False).

        An engine still starting (an earlier wait for it ran out) is waited for first.
        """
        with self._lock:  # held until the engine serves: a second caller waits for it
            if self.running:
                self._wait_ready(timeout)
                if lease and not self._leasing:
                    self._lease(timeout)
                return False
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._ready = ready
            self._thread = threading.Thread(
                target=self._main, args=(ready, lease), name="stepline-embedded", daemon=True
            )
            self._thread.start()
            try:
                self._wait_ready(timeout)
            except BaseException:
                if ready.done():  # it failed to start: its thread is ending, let it go
                    self._thread.join(timeout)
                    self._thread = None
                raise
            return True

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the thread's engine serves (or raise why it could not start)."""
        try:
            self._ready.result(timeout)
        except concurrent.futures.TimeoutError:
            from stepline.engine._store import dsn

            raise TimeoutError(
                f"the embedded engine on {dsn.redact(self.database)} did not start within"
                f" {timeout:g} s: give start(timeout=...) a longer wait on a slow machine,"
                " else see the log for what it waited on"
            ) from None

    def _lease(self, timeout: float) -> None:
        """Start the running engine's worker (it recorded only until now)."""
        running = self._running
        assert running is not None

        async def lease() -> None:
            running.engine.start_worker()
            self._leasing = True

        asyncio.run_coroutine_threadsafe(lease(), running.loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine; runs in flight resume at the next start (here or in another process).

        Callers blocked on it (``handle.result()``) get a ``ManagementError`` saying so.
        """
        with self._lock:
            self._stop_locked(timeout)

    def _stop_locked(self, timeout: float) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(BaseException):  # still starting: stop what it started
            self._ready.result(timeout)
        running = self._running
        if running is None or not self._ready.done() or self._ready.exception() is not None:
            return
        running.loop.call_soon_threadsafe(running.stopping.set)
        thread.join(timeout)
        self._thread = None
        self._leasing = False

    def _main(self, ready: concurrent.futures.Future[None], lease: bool) -> None:
        _loops.run(self._serve(ready, lease))  # on uvloop when installed

    async def _serve(self, ready: concurrent.futures.Future[None], lease: bool) -> None:
        from stepline.engine import Engine, EngineSettings
        from stepline.engine._http.api import build_app
        from stepline.engine._http.endpoints import Direct

        engine = None
        try:
            engine = Engine(EngineSettings(**self._engine_settings()))
            await engine.start(worker=False, sync=False)
            await engine.serve(self.client, self.functions)
            if lease:  # not before: its app must be served to run its calls
                engine.start_worker()
        except BaseException as exc:
            if engine is not None:  # opened, then failed: close what it opened
                with contextlib.suppress(Exception):
                    await engine.stop()
            ready.set_exception(exc)
            return
        running = self._running = _routing.Running(
            engine=engine,
            loop=asyncio.get_running_loop(),
            thread=threading.current_thread(),
            # in-process callers only: browsers reach the engine through the mounts, which guard
            api=build_app(engine, guard=False),
            stopping=asyncio.Event(),
        )
        self._leasing = lease
        unwatch = _endpoints.watch(self.client, self._reregister)  # late durable endpoints
        # durable endpoints reach this engine in process, without HTTP
        _endpoints.set_direct(self.client, Direct(engine, running.loop))
        ready.set_result(None)
        try:
            await running.stopping.wait()
        finally:
            _endpoints.set_direct(self.client, None)
            unwatch()
            # callers blocked on a request (a long-poll for a result) get a clear "stopped"
            # answer now, rather than a CancelledError from the loop's teardown
            calls = list(running.calls)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await engine.stop()

    def _reregister(self) -> None:
        """A durable endpoint was declared after the app was served: register it too.

        Waits for the registration (it is declared at import, in a request's thread), so
        that the request that imported it finds its function registered.
        """
        running = self._running
        if running is None or running.loop.is_closed():
            return
        loop, engine = running.loop, running.engine
        if threading.current_thread() is running.thread:  # never wait on our own loop
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
        """Before a fork: close the engine's SQLite file, so the child inherits none of it.

        An engine that does not lease is a pre-fork master's (``_start_lazily``): it stops,
        and its children start their own. A master keeps no engine once it forks.
        """
        self._resume = None
        if self.running and not self._leasing:
            self.stop(timeout=10)
            return
        engine = self._running.engine if self._running is not None else None
        suspend = getattr(getattr(engine, "store", None), "suspend", None)
        if self.running and suspend is not None:
            # RuntimeError: stopping meanwhile, its threads are gone and so is its file
            with contextlib.suppress(RuntimeError):
                self._resume = suspend()

    def _resumed(self) -> None:
        """After a fork, in the parent: reopen the file and carry on."""
        resume, self._resume = self._resume, None
        if resume is None:
            return
        try:
            resume()
        except Exception as exc:  # its file is gone or unreadable: nothing can run
            logger.error(
                "the embedded engine cannot reopen its database after this process forked "
                "(%s); it stops. Keep the database file in place while the app runs",
                exc,
            )
            # stopping joins threads: not from inside the fork's hook
            threading.Thread(target=self.stop, name="stepline-embedded-stop", daemon=True).start()

    def _forget(self) -> None:
        """In a forked child: the parent's thread is gone; start afresh on next use."""
        # kept, never finalized here: closing the parent's connections from the child
        # would end them for the parent too (a Postgres socket is shared after fork)
        _ORPHANS.append(self._running)
        self._lock = threading.Lock()
        self._thread = self._running = None
        self._resume = None
        self._leasing = False
        self._retry_at = 0.0
        self._users = threading.Lock()
        self._using = 0
        self._announcer = _announce.Announcer()  # a new process: it says so again


def start_all(timeout: float = 30.0) -> None:
    """This process serves: start every embedded engine in it, leasing work.

    For a server hook that runs in each worker before (or without) any request: gunicorn's
    ``post_worker_init(worker)`` or uwsgi's ``@uwsgidecorators.postfork``; or an app's own
    startup (an aiohttp ``on_startup``, an ASGI lifespan). Never in a pre-fork master.

    Raises:
        Exception: an engine that could not start (the others were tried first).
    """
    _prefork.mark_serving()
    failed: BaseException | None = None
    for embedded in list(_ALL):
        try:
            embedded.start(timeout)
        except Exception as exc:  # each engine gets its chance
            failed = failed or exc
    if failed is not None:
        raise failed


def start_for(client: Client) -> None:
    """Start the embedded engines routed for ``client``, if any (an adapter's startup).

    Raises:
        Exception: an engine that could not start.
    """
    for embedded in list(_ALL):
        if embedded.client is client:
            embedded.start()


class _Warned:
    held = False  # this process logged that its engine records only


def _warn_held(server: str) -> None:
    logger.warning(
        "the embedded engine records but does not run work in pid %d: it runs under %s and "
        "has not served a request (a pre-fork master must not lease); it runs once this "
        "process serves, or calls stepline.embedded.start_all() (gunicorn's post_worker_init, "
        "uwsgi's @postfork)",
        os.getpid(),
        server,
    )


def _before_fork() -> None:
    for embedded in list(_ALL):
        embedded._suspend()


def _after_fork_in_parent() -> None:
    for embedded in list(_ALL):
        embedded._resumed()


def _after_fork_in_child() -> None:
    _prefork.forked()
    _Warned.held = False  # a new process: it says so again
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
