"""The embedded engine's ASGI and WSGI mounts read a body as the adapters do: bounded.

A body past the engine's ``max_body_bytes`` is read only up to the limit (and one chunk)
and the engine answers 413, so a client cannot make a mount buffer whatever it sends.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline.embedded import EmbeddedEngine

LIMIT = 1024
HEADERS = {"host": "localhost", "content-type": "application/json"}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EmbeddedEngine]:
    client = stepline.Client("mounts", is_production=False, environ={})
    own = EmbeddedEngine(
        client, [], database=str(tmp_path / "m.db"), max_body_bytes=LIMIT, poll_interval=0.05
    )
    try:
        yield own
    finally:
        own.stop()


def wsgi_call(
    engine: EmbeddedEngine, method: str, path: str, body: bytes
) -> tuple[str, bytes, int]:
    """The status line, the body, and how many bytes of the request were read."""
    stream = io.BytesIO(body)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": HEADERS["content-type"],
        "HTTP_HOST": HEADERS["host"],
        "wsgi.input": stream,
    }
    seen: list[str] = []
    out = b"".join(engine.wsgi_app()(environ, lambda status, headers: seen.append(status)))
    return seen[0], out, stream.tell()


def test_the_wsgi_mount_stops_reading_past_the_limit(engine: EmbeddedEngine) -> None:
    sent = json.dumps({"x": "y" * 5000}).encode()
    status, body, read = wsgi_call(engine, "POST", "/e/any", sent)
    assert status.startswith("413 "), (status, body)
    assert read == LIMIT + 1, "read up to the limit (and a byte), the rest left unread"


def test_the_wsgi_mount_names_statuses_as_http_does(engine: EmbeddedEngine) -> None:
    status, _, _ = wsgi_call(engine, "GET", "/health", b"")
    assert status == "200 OK"
    status, _, _ = wsgi_call(engine, "GET", "/v1/no-such-route", b"")
    assert status == "404 Not Found"


def test_the_asgi_mount_stops_reading_past_the_limit(engine: EmbeddedEngine) -> None:
    chunks = [b"x" * 1000 for _ in range(5)]
    taken: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        taken.append(1)
        more = len(taken) < len(chunks)
        return {"type": "http.request", "body": chunks[len(taken) - 1], "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/stepline/e/any",
        "root_path": "/stepline",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in HEADERS.items()],
    }
    asyncio.run(engine.asgi_app()(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(taken) == 2, "read up to the limit and one chunk, the rest left unread"
