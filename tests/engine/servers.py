"""What the engine, observability, dashboard and fault suites share around real HTTP.

Request capture (``RequestLog``, ``Recorder``), an app closing its client's pool at
shutdown, and a fresh Postgres schema per test. uvicorn in a thread, polling and child
processes live in ``tests._support``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests._support.ci import under_ci

#: The Postgres the suites run against (a fresh schema per test); CI fails without it.
POSTGRES_URL = os.environ.get(
    "STEPLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A database URL whose ``search_path`` is a new, empty schema (dropped afterwards).

    Fails under CI (``CI=true``) when Postgres is unreachable, skips elsewhere.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with _postgres_admin() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{name}"
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@contextlib.contextmanager
def postgres_database(prefix: str = "t") -> Iterator[str]:
    """A URL of a new, empty database (dropped afterwards): for what a schema does not
    isolate, such as ``LISTEN``/``NOTIFY`` channels, which are per database."""
    import urllib.parse

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with _postgres_admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield urllib.parse.urlunsplit(
                urllib.parse.urlsplit(POSTGRES_URL)._replace(path=f"/{name}")
            )
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _postgres_admin() -> Any:
    """An autocommit connection to ``POSTGRES_URL``: fails under CI, skips elsewhere."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if under_ci():
            pytest.fail(f"Postgres is required under CI ({POSTGRES_URL}): {exc}")
        pytest.skip(f"no Postgres at {POSTGRES_URL}: {exc}")


def closing_client(app: Any, client: Any) -> Any:
    """``app`` closing ``client``'s async connection pool when its server shuts down.

    The SDK keeps one pool per event loop (it calls the engine from the server's); only
    that loop can close it.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receiving() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await client.connection.async_transport.aclose()
            return message

        await app(scope, receiving, send)

    return wrapped


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
