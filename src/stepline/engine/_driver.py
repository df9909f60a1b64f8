"""How the engine reaches apps: pooled HTTP, or a ``CommHandler`` in this process."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import httpx

from stepline.engine._response import RawResponse

if TYPE_CHECKING:
    from stepline._comm.handler import CommHandler

#: URLs of apps served in this process: ``inprocess://<app id>/...``.
IN_PROCESS_SCHEME = "inprocess"


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


class HttpDriver:
    """HTTP with keep-alive pooling (one ``httpx.AsyncClient`` per engine)."""

    def __init__(self, *, max_connections: int = 200) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=100)
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False)

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """POST/PUT/GET ``url``; errors (refused, reset, timeout) become ``error``."""
        try:
            response = await self._client.request(
                method, url, content=body, headers=dict(headers), timeout=timeout
            )
        except httpx.HTTPError as exc:
            return RawResponse(0, {}, b"", error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        return RawResponse(response.status_code, dict(response.headers), response.content)

    async def close(self) -> None:
        """Close the pool."""
        await self._client.aclose()


class InProcessDriver:
    """Calls ``CommHandler``s registered under ``inprocess://<app id>``, with no HTTP."""

    def __init__(self) -> None:
        self._handlers: dict[str, CommHandler] = {}

    def add(self, app_id: str, handler: CommHandler) -> str:
        """Attach a handler; returns the base URL the engine registers for it."""
        self._handlers[app_id] = handler
        return f"{IN_PROCESS_SCHEME}://{urllib.parse.quote(app_id, safe='')}/api/inngest"

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """Hand the request to the app's handler, as an adapter would."""
        from stepline._comm.messages import CommRequest

        host = urllib.parse.unquote(urllib.parse.urlsplit(url).netloc)
        handler = self._handlers.get(host)
        if handler is None:
            return RawResponse(0, {}, b"", error=f"no in-process app {host!r}")
        request = CommRequest.build(method=method, url=url, headers=headers, body=body)
        try:
            response = await handler.handle(request)
        except Exception as exc:  # a crash in the app's handler is a failed attempt
            return RawResponse(0, {}, b"", error=f"{type(exc).__name__}: {exc}")
        content = response.body
        if response.stream is not None:
            content = b"".join([chunk async for chunk in response.stream])
        return RawResponse(response.status, response.headers, content)

    async def close(self) -> None:
        """Close every attached handler's pools."""
        for handler in self._handlers.values():
            handler.close()


class Router:
    """Sends ``inprocess://`` URLs to the in-process driver and the rest over HTTP."""

    def __init__(self, http: Driver, local: InProcessDriver) -> None:
        self.http = http
        self.local = local

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """Route by URL scheme."""
        driver: Driver = self.local if url.startswith(IN_PROCESS_SCHEME + ":") else self.http
        return await driver.request(method, url, body, headers, timeout)

    async def close(self) -> None:
        """Close both drivers."""
        await self.http.close()
        await self.local.close()
