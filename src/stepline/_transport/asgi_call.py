"""Call an ASGI app in-process: one request in, the whole answer out (no socket, no httpx).

The embedded engine routes its client's requests to the engine's REST API this way:
the API's own routing, checks and answers, without building an HTTP client request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from stepline._transport import effects

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


async def call(app: ASGIApp, request: effects.HttpRequest) -> effects.HttpResponse:
    """Perform ``request`` against ``app``; the response body is read whole.

    Raises:
        Exception: whatever the app raised before it answered.
    """
    url = urllib.parse.urlsplit(request.url)
    host = url.hostname or "localhost"
    port = url.port or (443 if url.scheme == "https" else 80)
    headers = [(b"host", url.netloc.encode("latin-1"))]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
        if name.lower() != "host"
    ]
    body = request.body or b""
    if body and not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    path = url.path or "/"
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.upper(),
        "scheme": url.scheme or "http",
        "path": urllib.parse.unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": url.query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": (host, port),
        "extensions": {},
    }
    sent = False
    answered = asyncio.Event()
    status = 0
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:  # the body was read: the caller stays connected until the answer is out
            await answered.wait()
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers", []):
                out_headers[bytes(name).decode("latin-1").lower()] = bytes(value).decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body"):
                answered.set()

    try:
        await app(scope, receive, send)
    finally:
        answered.set()
    if status == 0:
        raise RuntimeError("the app returned without answering")
    return effects.HttpResponse(status, out_headers, b"".join(chunks))
