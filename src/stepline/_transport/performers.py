"""Effect performers over httpx: the only place outgoing HTTP and backoff sleeps happen.

``SyncTransport`` and ``AsyncTransport`` are twins with the same method names. Both turn
an ``HttpRequest`` into an ``HttpResponse`` and never raise for network failures: those
become ``status=0`` with ``error`` set, so retry decisions stay in the pure flows.

httpx is imported on first use, not with the package: a blocking client on plain HTTP
never needs it, and ``import stepline`` (every CLI command, every serverless cold start)
is a sixth faster without it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from stepline._transport import effects as _effects
from stepline._transport import keepalive

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncTransport", "SyncTransport"]


def _network_errors() -> tuple[type[Exception], ...]:
    """What a request through httpx raises for a network failure (evaluated only when
    something was raised: httpx is imported by then). InvalidURL is not an HTTPError;
    OSError covers anything httpx fails to wrap."""
    import httpx

    return (httpx.HTTPError, httpx.InvalidURL, OSError)


#: Every transport, so a forked child (gunicorn --preload, multiprocessing) drops the
#: parent's connections instead of sharing its sockets.
_LIVE: weakref.WeakSet[SyncTransport | AsyncTransport] = weakref.WeakSet()


def _after_fork() -> None:
    for transport in list(_LIVE):
        transport._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class SyncTransport:
    """Performs effects with blocking calls; safe to share between threads.

    Plain-HTTP origins go over keep-alive ``http.client`` connections when no proxy is
    configured (``_http11``: a quarter of httpx's CPU per request); HTTPS and proxied
    requests over one lazily created ``httpx.Client``.
    """

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._pool = keepalive.Pool() if keepalive.direct() else None
        self._lock = threading.Lock()
        _LIVE.add(self)

    def _forget(self) -> None:
        self._client = None  # the parent's: not ours to close
        self._pool = keepalive.Pool() if self._pool is not None else None
        self._lock = threading.Lock()

    def perform(self, effect: object) -> _effects.HttpResponse | None:
        """Perform an ``HttpRequest`` (returns its ``HttpResponse``) or a ``Sleep``."""
        if isinstance(effect, _effects.Sleep):
            time.sleep(effect.seconds)
            return None
        return self.request(_as_request(effect))

    def request(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
        """Send one request; network errors and timeouts come back as ``status=0``."""
        pool = self._pool
        if pool is not None and request.url.startswith("http://"):
            try:
                answer = pool.request(request)
            except keepalive.ERRORS as exc:
                return _failure(exc)
            if answer is not None:
                return answer
        try:
            raw = self._get_client().request(
                request.method,
                request.url,
                headers=dict(request.headers),
                content=request.body,
                timeout=request.timeout,
            )
        except _network_errors() as exc:
            return _failure(exc)
        return _to_response(raw)

    def close(self) -> None:
        """Close the underlying client; a later request opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._pool is not None:
            self._pool.close()

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client()
            return self._client


class AsyncTransport:
    """Performs effects with awaitable calls, one ``httpx.AsyncClient`` per event loop.

    An async client is bound to the loop it first ran on, so each loop (for example one
    per thread, or one per ``asyncio.run``) gets its own. Call ``aclose()`` from every loop
    that used the transport before that loop ends.
    """

    def __init__(self) -> None:
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def _forget(self) -> None:
        self._clients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    async def perform(self, effect: object) -> _effects.HttpResponse | None:
        """Perform an ``HttpRequest`` (returns its ``HttpResponse``) or a ``Sleep``."""
        if isinstance(effect, _effects.Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        return await self.request(_as_request(effect))

    async def request(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
        """Send one request; network errors and timeouts come back as ``status=0``."""
        try:
            raw = await self._get_client().request(
                request.method,
                request.url,
                headers=dict(request.headers),
                content=request.body,
                timeout=request.timeout,
            )
        except _network_errors() as exc:
            return _failure(exc)
        return _to_response(raw)

    async def aclose(self) -> None:
        """Close the running loop's client; a later request opens a new one."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _get_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                import httpx

                client = self._clients[loop] = httpx.AsyncClient()
            return client


def _as_request(effect: object) -> _effects.HttpRequest:
    if not isinstance(effect, _effects.HttpRequest):
        raise TypeError(f"transports cannot perform {effect!r}")
    return effect


def _to_response(raw: httpx.Response) -> _effects.HttpResponse:
    headers = {name.lower(): value for name, value in raw.headers.items()}
    return _effects.HttpResponse(status=raw.status_code, headers=headers, body=raw.content)


def _failure(exc: Exception) -> _effects.HttpResponse:
    # Some httpx errors (e.g. timeouts) carry no message; the class name still helps.
    error = str(exc) or type(exc).__name__
    return _effects.HttpResponse(status=0, headers={}, body=b"", error=error)
