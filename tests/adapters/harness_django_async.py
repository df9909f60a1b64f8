"""Contract harness for ``stepline.django``'s async view over ``django.test.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import django.test

import stepline
import stepline.django

from .harness import Reply
from .harness_django import configure, mount, reply, split_headers


class DjangoAsyncHarness:
    framework = "django"
    streaming = True

    def __init__(self) -> None:
        configure()
        self.client: stepline.Client | None = None

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        self.client = client
        mount(stepline.django.serve(client, functions, async_mode=True, **options))

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return asyncio.run(self._request(method, path, headers, body))

    async def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        content_type, rest = split_headers(headers)
        http = django.test.AsyncClient(enforce_csrf_checks=True, raise_request_exception=True)
        try:
            response = await http.generic(method, path, body, content_type, headers=rest)
            if response.streaming:
                chunks = [chunk async for chunk in response.streaming_content]
                return reply(response, b"".join(chunks))
            return reply(response, response.content)
        finally:
            if self.client is not None:  # its httpx client is bound to this loop
                await self.client.connection.async_transport.aclose()
