"""Contract harness for the bare ``stepline.asgi`` app, driven by httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

import stepline
import stepline.asgi

from .harness import Reply


class ASGIHarness:
    framework = "asgi"
    streaming = True

    def __init__(self) -> None:
        self.app: stepline.asgi.ASGIApp | None = None

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        self.app = stepline.asgi.serve(client, functions, **options)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        assert self.app is not None, "serve() first"
        return asyncio.run(self._request(self.app, method, path, headers, body))

    @staticmethod
    async def _request(
        app: stepline.asgi.ASGIApp, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.request(method, path, headers=headers, content=body)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )
