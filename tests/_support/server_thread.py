"""uvicorn serving an ASGI app from a thread of the test process.

``ServerThread`` binds its socket up front (its ``url`` is known before ``start``);
``AppServer`` is one as a ``with`` block; ``serving`` yields the URL and checks that every
response ended.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

from tests._support.polling import wait_until


class ServerThread:
    """uvicorn serving an ASGI app on a socket bound up front (no free-port race).

    ``graceful`` bounds uvicorn's wait for open responses at shutdown (None: no bound,
    so a response that never ends keeps the thread alive and ``alive`` tells).
    """

    def __init__(
        self,
        name: str,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        log_level: str = "warning",
        graceful: int | None = 3,
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

        def started() -> bool:
            if not thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            return server.started

        try:
            wait_until(started, timeout=timeout, message=f"{self.name} to start")
        except AssertionError:
            raise RuntimeError(f"{self.name} did not start") from None
        return self

    @property
    def alive(self) -> bool:
        """Whether uvicorn's thread still runs."""
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for its thread (bounded) and close the socket."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(self.join_timeout)
        self.sock.close()


class AppServer(ServerThread):
    """A ``ServerThread`` serving ``app`` for the length of a ``with`` block."""

    def __init__(self, app: Any, *, name: str = "app", quiet: bool = False) -> None:
        # quiet: injected hang-ups make uvicorn log a traceback per fault
        level = "critical" if quiet else "warning"
        super().__init__(name, log_level=level, graceful=2, join=10)
        self.app = app
        self.base = self.url

    def __enter__(self) -> AppServer:
        self.start(self.app)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", join: float = 30
) -> Iterator[str]:
    """Serve ``app`` with uvicorn from a thread; yields its URL.

    Leaving waits for uvicorn's graceful shutdown, which waits for every response: a
    stream that kept polling after its client left fails the check that the thread ended.
    """
    server = ServerThread("uvicorn", lifespan=lifespan, graceful=None, join=join).start(app)
    try:
        yield server.url
    finally:
        server.stop()
        assert not server.alive, "uvicorn did not shut down: a response never ended"
