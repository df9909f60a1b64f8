"""Contract harness for ``stepline.fastapi`` over FastAPI's test client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastapi
import fastapi.testclient

import stepline
import stepline.fastapi

from .harness import Reply


class FastAPIHarness:
    framework = "fast_api"
    streaming = True

    def __init__(self) -> None:
        self.app = fastapi.FastAPI()

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        stepline.fastapi.serve(self.app, client, functions, **options)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        http = fastapi.testclient.TestClient(self.app)
        response = http.request(method, path, headers=headers, content=body)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )
