"""Real HTTP for the test suites: uvicorn in a thread, request capture, polling, databases.

The one home of the server and process scaffolding the engine, observability, dashboard
and fault suites share (they import it as ``engine.servers``): the engine (and SDK apps)
are served by uvicorn on a loopback socket bound up front, and the tests poll until what
they wait for happens. Also: a free port for child processes and a fresh Postgres schema.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest
import uvicorn

T = TypeVar("T")
#: The Postgres the suites run against (a fresh schema per test); CI fails without it.
POSTGRES_URL = os.environ.get(
    "STEPLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    """A localhost port nobody listens on right now (for child processes to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A database URL whose ``search_path`` is a new, empty schema (dropped afterwards).

    Fails under CI (``CI=true``) when Postgres is unreachable, skips elsewhere.
    """
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Postgres is required under CI ({POSTGRES_URL}): {exc}")
        pytest.skip(f"no Postgres at {POSTGRES_URL}: {exc}")
    with admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{name}"
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


class ServerThread:
    """uvicorn serving an ASGI app on a socket bound up front (no free-port race)."""

    def __init__(
        self,
        name: str,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        log_level: str = "warning",
        graceful: int = 3,
        join: float = 15,
    ) -> None:
        self.name = name
        self.lifespan = lifespan
        self.log_level = log_level
        self.graceful = graceful
        self.join_timeout = join
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, app: Any, *, timeout: float = 20.0) -> ServerThread:
        """Serve ``app`` in a daemon thread; return (``self``) once uvicorn listens."""
        config = uvicorn.Config(
            app,
            log_level=self.log_level,
            lifespan=self.lifespan,
            timeout_graceful_shutdown=self.graceful,
        )
        self.server = server = uvicorn.Server(config)
        self.thread = thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.sock]}, name=self.name, daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for its thread (bounded) and close the socket."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(self.join_timeout)
        self.sock.close()


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
                await client._async_transport.aclose()
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


def wait_for(
    check: Callable[[], T | None], *, what: str, timeout: float = 20.0, interval: float = 0.02
) -> T:
    """Call ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def poll(
    check: Callable[[], Any],
    *,
    timeout: float = 20.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Call ``check`` until it returns something other than None (bounded)."""
    return wait_for(check, what=what, timeout=timeout, interval=interval)
