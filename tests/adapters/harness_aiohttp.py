"""Contract harness for ``stepline.aiohttp`` over aiohttp's test client and server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import test_utils, web

import stepline
import stepline.aiohttp

from .harness import Reply


class AiohttpHarness:
    framework = "aiohttp"
    streaming = True

    def __init__(self) -> None:
        self.served: tuple[stepline.Client, Sequence[stepline.Function], dict[str, Any]] | None
        self.served = None

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        stepline.aiohttp.serve(web.Application(), client, functions, **options)  # fail early
        self.served = (client, functions, options)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        assert self.served is not None, "serve() first"
        return asyncio.run(self._request(method, path, headers, body))

    async def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        # An aiohttp app is bound to the first loop that runs it: build one per request.
        assert self.served is not None
        client, functions, options = self.served
        app = web.Application()
        stepline.aiohttp.serve(app, client, functions, **options)
        async with test_utils.TestClient(test_utils.TestServer(app)) as http:
            response = await http.request(method, path, headers=headers, data=body)
            content = await response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, content)
