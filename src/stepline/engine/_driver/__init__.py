"""How the engine reaches apps: pooled HTTP, or a ``CommHandler`` in this process."""

from __future__ import annotations

import asyncio
import functools
import io
import urllib.parse
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx

from stepline.engine._driver import exchange, httpx_stream
from stepline.engine._driver.framing import too_large
from stepline.engine._driver.h1 import H1Driver
from stepline.engine._wire.response import RawResponse

if TYPE_CHECKING:
    from stepline._comm.handler import CommHandler
    from stepline._comm.messages import CommRequest
    from stepline._comm.pool import SdkPool
    from stepline._protocol.execution import ExecutionRequest
    from stepline.engine._driver.local import LocalCheckpoints

T = TypeVar("T")

#: Bodies above this many bytes are streamed to aiohttp rather than handed over whole.
_LARGE = 512 * 1024
#: URLs of apps served in this process: ``inprocess://<app id>/...``.
IN_PROCESS_SCHEME = "inprocess"
#: URLs of apps served by Connect workers over their sockets: ``connect://<app id>/...``.
CONNECT_SCHEME = "connect"
#: The most of an answer read (``EngineSettings.max_body_bytes``'s default).
DEFAULT_MAX_ANSWER = 16 * 1024 * 1024
_CHUNK = 64 * 1024


class Driver(Protocol):
    """Sends one request to an app and returns its answer (never raises for I/O)."""

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """Perform the request; a transport failure comes back as ``RawResponse.error``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def default_driver(*, max_bytes: int = DEFAULT_MAX_ANSWER) -> Driver:
    """Plain HTTP on the engine's own HTTP/1.1 connections (``h1``); HTTPS through the
    fastest client installed: aiohttp's (about 4x less CPU per call than httpx), else httpx.

    Args:
        max_bytes: the most of an answer read; a longer one fails (``too_large``).
    """
    try:
        import aiohttp  # noqa: F401
    except ImportError:  # pragma: no cover - aiohttp ships with the engine extra
        return H1Driver(HttpDriver(max_bytes=max_bytes), max_bytes=max_bytes)
    return H1Driver(AiohttpDriver(max_bytes=max_bytes), max_bytes=max_bytes)


class AiohttpDriver:
    """HTTP with keep-alive pooling over one ``aiohttp.ClientSession`` (created on first use).

    The engine's calls to HTTPS apps (``h1`` calls plain-HTTP ones itself): aiohttp parses
    HTTP in C, about a quarter of the CPU httpx costs per call. Two things are read as
    Go's ``net/http`` (Inngest's server) reads them (``_aioconn``): an HTTP/1.0 answer's
    Transfer-Encoding is ignored, and a request that failed on a pooled connection the
    app's server had closed while idle (nothing of an answer arrived) is sent again once,
    on a new connection, without counting as an attempt.
    """

    def __init__(self, *, max_connections: int = 200, max_bytes: int = DEFAULT_MAX_ANSWER) -> None:
        self._max = max_connections
        self.max_bytes = max_bytes
        self._session: Any = None
        self._fresh: Any = None

    def _get(self, *, fresh: bool = False) -> Any:
        import aiohttp

        from stepline.engine._driver import aioconn

        session = self._fresh if fresh else self._session
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aioconn.connector(limit=self._max, fresh=fresh),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            if fresh:
                self._fresh = session
            else:
                self._session = session
        return session

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """POST/PUT/GET ``url``; errors (refused, reset, timeout) become ``error``."""

        async def send(fresh: bool, seconds: float) -> tuple[RawResponse, BaseException | None]:
            session = self._get(fresh=fresh)
            return await self._send(
                session, method, url, body=body, headers=headers, timeout=seconds
            )

        return await exchange.sent(send, _stale, timeout=timeout, what=f"{method} {url}")

    async def _send(
        self,
        session: Any,
        method: str,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> tuple[RawResponse, BaseException | None]:
        """One request; the answer, and the exception that made it a failure (if one did)."""
        import aiohttp

        try:
            async with session.request(
                method,
                url,
                # aiohttp writes a large bytes body in one blocking call (and warns);
                # a file-like one is written in chunks
                data=io.BytesIO(body) if len(body) > _LARGE else body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                content = await _read_aiohttp(response, self.max_bytes)
                if content is None:
                    response.close()  # the rest is never read: the connection is not reused
                    return too_large(self.max_bytes), None
                found = {name.lower(): value for name, value in response.headers.items()}
                return RawResponse(response.status, found, content), None
        except asyncio.TimeoutError as exc:
            error = f"ReadTimeout: no answer within {timeout:g}s"
            return RawResponse(0, {}, b"", error=error), exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return RawResponse(0, {}, b"", error=error), exc

    async def close(self) -> None:
        """Close the pools."""
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None


def _stale(use: exchange.Exchange, failure: BaseException | None) -> bool:
    """Whether a failed request met a pooled connection the server had already closed.

    Only a reused connection that delivered no byte of an answer, failing as a closed
    connection does (a disconnect, or a reset/broken pipe writing the request) counts;
    never a timeout, never a failure once an answer began, never a new connection.
    """
    import aiohttp

    if failure is None or not use.reused or use.answered:
        return False
    if isinstance(failure, asyncio.TimeoutError):
        return False
    return isinstance(
        failure, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)
    )


class HttpDriver:
    """HTTP with keep-alive pooling (one ``httpx.AsyncClient`` per engine).

    What ``AiohttpDriver`` does, with httpx: an HTTP/1.0 answer's Transfer-Encoding is
    ignored, and a request that failed on a pooled connection the app's server had closed
    while idle (nothing of an answer arrived) is sent again once, on a new connection. The
    pool tests a connection for a pending close before reusing it, but a server whose
    keep-alive runs out just then closes it after the test.
    """

    def __init__(self, *, max_connections: int = 200, max_bytes: int = DEFAULT_MAX_ANSWER) -> None:
        self._max = max_connections
        self.max_bytes = max_bytes
        self._client = self._new_client(keep_alive=100)
        self._fresh: httpx.AsyncClient | None = None

    def _new_client(self, *, keep_alive: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self._max, max_keepalive_connections=keep_alive)
        client = httpx.AsyncClient(limits=limits, follow_redirects=False)
        return httpx_stream.lenient(client)

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """POST/PUT/GET ``url``; errors (refused, reset, timeout) become ``error``."""

        async def send(fresh: bool, seconds: float) -> tuple[RawResponse, BaseException | None]:
            client = self._client
            if fresh:
                if self._fresh is None:  # it keeps no connection: each one is new
                    self._fresh = self._new_client(keep_alive=0)
                client = self._fresh
            return await self._send(
                client, method, url, body=body, headers=headers, timeout=seconds
            )

        return await exchange.sent(send, _stale_httpx, timeout=timeout, what=f"{method} {url}")

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> tuple[RawResponse, BaseException | None]:
        """One request; the answer, and the exception that made it a failure (if one did)."""
        try:
            request = client.build_request(
                method, url, content=body, headers=dict(headers), timeout=timeout
            )
            response = await client.send(request, stream=True)
            try:
                content = await read_httpx(response, self.max_bytes)
            finally:
                await response.aclose()
        except Exception as exc:  # not only HTTPError: InvalidURL, and an ExceptionGroup
            # from the connection pool for a port out of range; a driver answers, it never
            # raises (the job would fail inside the engine, again and again)
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return RawResponse(0, {}, b"", error=error), exc
        if content is None:
            return too_large(self.max_bytes), None
        return RawResponse(response.status_code, dict(response.headers), content), None

    async def close(self) -> None:
        """Close the pools."""
        for client in (self._client, self._fresh):
            if client is not None:
                await client.aclose()
        self._fresh = None


def _stale_httpx(use: exchange.Exchange, failure: BaseException | None) -> bool:
    """``_stale`` for httpx: a reused connection, no byte of an answer, and a failure as a
    closed connection's (the server's disconnect, a reset reading or writing)."""
    if failure is None or not use.reused or use.answered:
        return False
    closed = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
    return isinstance(failure, closed)


async def _read_aiohttp(response: Any, limit: int) -> bytes | None:
    """The body, read a chunk at a time; None once it passes ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_httpx(response: httpx.Response, limit: int) -> bytes | None:
    """The (decoded) body of a streamed httpx response; None once it passes ``limit``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class InProcessDriver:
    """Calls ``CommHandler``s registered under ``inprocess://<app id>``, with no HTTP."""

    def __init__(self, sink: LocalCheckpoints) -> None:
        self._handlers: dict[str, CommHandler] = {}
        #: the engine's own checkpoint path, handed to the calls it makes
        self.sink = sink

    def add(self, app_id: str, handler: CommHandler) -> str:
        """Attach a handler; returns the base URL the engine registers for it."""
        self._handlers[app_id] = handler
        return self.url(app_id)

    def url(self, app_id: str) -> str:
        """The base URL an app served in this process is registered at."""
        return f"{IN_PROCESS_SCHEME}://{urllib.parse.quote(app_id, safe='')}/api/inngest"

    def handler(self, app_id: str) -> CommHandler | None:
        """The handler serving ``app_id`` in this process, if any."""
        return self._handlers.get(app_id)

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """Hand the request to the app's handler, as an adapter would."""
        found = self._request(method, url, body, headers)
        if isinstance(found, RawResponse):
            return found
        handler, request = found
        try:  # bounded as an HTTP call is: a function's Timeouts(call=), else the engine's
            response = await _within(handler.handle_pooled(request), timeout)
        except asyncio.TimeoutError:
            return RawResponse(0, {}, b"", error=f"ReadTimeout: no answer within {timeout:g}s")
        except Exception as exc:  # a crash in the app's handler is a failed attempt
            return RawResponse(0, {}, b"", error=f"{type(exc).__name__}: {exc}")
        content = response.body
        if response.stream is not None:
            content = b"".join([chunk async for chunk in response.stream])
        return RawResponse(response.status, response.headers, content)

    def pool(self, url: str, function_id: str) -> SdkPool | None:
        """The SDK thread pool ``request`` runs a call of ``function_id`` at ``url`` on (a
        sync function's); None when it runs on the loop, or the app is not served here."""
        handler = self._handlers.get(_target(url)[0])
        return None if handler is None else handler.pool_for(function_id)

    def call_blocking(
        self, url: str, call: ExecutionRequest, headers: Mapping[str, str]
    ) -> RawResponse:
        """A call of a sync function on the calling thread, one of ``pool``'s (the caller
        bounds the wait, ``_flow.onthread``): the execution request handed over as an
        object, its state the SDK's own copy (``_request.execution``), with no JSON to
        write and read back and no signature (``CommHandler.call_in_process``). The
        answer is the one HTTP carries."""
        host, query = _target(url)
        handler = self._handlers.get(host)
        if handler is None:
            return RawResponse(0, {}, b"", error=f"no in-process app {host!r}")
        fn_id = dict(query).get("fnId", "")
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            response = handler.call_in_process(fn_id, call, lowered, self.sink, run_on=True)
        except Exception as exc:  # a crash in the app's handler is a failed attempt
            return RawResponse(0, {}, b"", error=f"{type(exc).__name__}: {exc}")
        return RawResponse(response.status, response.headers, response.body)

    def _request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[CommHandler, CommRequest] | RawResponse:
        """The handler of ``url``'s app and the request as an adapter hands it over."""
        from stepline._comm.messages import CommRequest

        host, query = _target(url)
        handler = self._handlers.get(host)
        if handler is None:
            return RawResponse(0, {}, b"", error=f"no in-process app {host!r}")
        request = CommRequest.build(
            method=method, url=url, headers=headers, body=body, query=dict(query), local=self.sink
        )
        return handler, request

    async def close(self) -> None:
        """Close every attached handler's pools."""
        for handler in self._handlers.values():
            handler.close()


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """An in-process URL's app id and query (the engine's calls repeat a few URLs)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.unquote(parts.netloc), tuple(urllib.parse.parse_qsl(parts.query))


#: ``asyncio.timeout`` (Python 3.11+): bounds an await without ``wait_for``'s extra task
_TIMEOUT: Any = getattr(asyncio, "timeout", None)


async def _within(call: Coroutine[Any, Any, T], timeout: float) -> T:
    """``asyncio.wait_for(call, timeout)``, without its task where Python can."""
    if _TIMEOUT is None:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(call, timeout)
    async with _TIMEOUT(timeout):
        return await call


class Router:
    """Sends ``inprocess://`` URLs to the in-process driver, ``connect://`` ones to the
    Connect gateway's workers and the rest over HTTP."""

    def __init__(self, http: Driver, local: InProcessDriver, connect: Driver | None = None) -> None:
        self.http = http
        self.local = local
        self.connect = connect

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """Route by URL scheme."""
        driver: Driver = self.local if url.startswith(IN_PROCESS_SCHEME + ":") else self.http
        if self.connect is not None and url.startswith(CONNECT_SCHEME + ":"):
            driver = self.connect
        return await driver.request(method, url, body, headers, timeout)

    async def close(self) -> None:
        """Close the drivers (Connect first: its workers are told to reconnect)."""
        if self.connect is not None:
            await self.connect.close()
        await self.http.close()
        await self.local.close()
