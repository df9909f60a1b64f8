"""Real HTTP for the end-to-end engine tests: uvicorn in a thread, request capture, polling.

Shared by the suites that drive the engine with the official SDKs (``test_official_*``):
the engine (and, for Python, the SDK app) is served by uvicorn on a loopback socket bound
up front, and the tests poll the engine's REST API until what they wait for happens.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn


class ServerThread:
    """uvicorn serving an ASGI app on a socket bound up front (no free-port race)."""

    def __init__(self, name: str, *, lifespan: Literal["auto", "on", "off"] = "auto") -> None:
        self.name = name
        self.lifespan = lifespan
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, app: Any, *, timeout: float = 20.0) -> None:
        """Serve ``app`` in a daemon thread; return once uvicorn listens."""
        config = uvicorn.Config(
            app, log_level="warning", lifespan=self.lifespan, timeout_graceful_shutdown=3
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

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for its thread (bounded) and close the socket."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
        self.sock.close()


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


def poll(
    check: Callable[[], Any],
    *,
    timeout: float = 20.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Call ``check`` until it returns something other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
