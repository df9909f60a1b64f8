"""An ASGI wrapper keeping every request an app receives, and its answer."""

from __future__ import annotations

import time
import urllib.parse
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
