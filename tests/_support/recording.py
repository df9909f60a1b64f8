"""ASGI wrappers keeping what an app receives.

``AppCalls`` keeps every request and its answer; ``RequestLog`` only each request's method
and path; ``Recorder`` what SDKs sent to the engine's SDK-facing routes, body decoded.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any


class AppCalls:
    """ASGI middleware keeping each request (method, query, headers, body, time received)
    and its answer (status, headers, body) in ``calls``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        call = {
            "method": scope["method"],
            "query": dict(urllib.parse.parse_qsl(scope["query_string"].decode())),
            "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            "body": body,
            "received": time.time(),
        }
        self.calls.append(call)

        async def replay() -> Any:
            return {"type": "http.request", "body": body, "more_body": False}

        async def keep(message: Any) -> None:
            if message["type"] == "http.response.start":
                call["status"] = message["status"]
                call["answer_headers"] = {
                    k.decode().lower(): v.decode() for k, v in message["headers"]
                }
            elif message["type"] == "http.response.body":
                call["answer"] = call.get("answer", b"") + message.get("body", b"")
            await send(message)

        await self.app(scope, replay, keep)

    def of(self, method: str, **query: str) -> list[dict[str, Any]]:
        """The calls with this method whose query holds these values."""
        return [
            c
            for c in self.calls
            if c["method"] == method and all(c["query"].get(k) == v for k, v in query.items())
        ]


class RequestLog:
    """ASGI wrapper remembering ``(method, path)`` of every HTTP request served."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Seen:
    """One request an SDK made to the engine."""

    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class Recorder:
    """An ASGI wrapper keeping what SDKs sent to the engine's SDK-facing routes.

    Only requests whose path starts with one of ``prefixes`` are kept, with their JSON
    body (raw bytes if it is not JSON) and ``Authorization`` header.
    """

    app: Any
    prefixes: tuple[str, ...] = ("/fn/", "/v1/checkpoint/")
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    raw = b"".join(chunks)
                    try:
                        body = json.loads(raw or b"null")
                    except ValueError:
                        body = raw  # kept as bytes: the test asserting on it will say so
                    headers = dict(scope["headers"])
                    auth = headers.get(b"authorization")
                    seen = Seen(scope["method"], path, body, auth and auth.decode("latin-1"))
                    with self.lock:
                        self.requests.append(seen)
            return message

        await self.app(scope, recording, send)

    def to(self, path: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.requests if seen.path == path]

    def bodies(self, path: str) -> list[Any]:
        return [seen.body for seen in self.to(path)]
