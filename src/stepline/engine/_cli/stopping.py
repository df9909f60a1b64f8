"""How ``stepline dev|start`` stop: gracefully on a first SIGTERM/SIGINT, at once on a second.

uvicorn's own handling would re-raise the signal once it has shut down (the process then
dies of it, exit code -15 for SIGTERM), and only a second SIGINT would cut it short. Here
the first signal stops the server and lets the engine drain (``shutdown_grace``), the
second cuts the grace short and skips uvicorn's wait for open connections, and the
process exits 0 either way.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Generator
from types import FrameType

import uvicorn

from stepline.engine._engine import Engine

SIGNALS = (signal.SIGINT, signal.SIGTERM)
logger = logging.getLogger("stepline.engine")


class Server(uvicorn.Server):
    """A uvicorn server whose second stop signal calls ``halt`` (cut the grace short)."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        halt: Callable[[], object],
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(config)
        self._halt = halt
        self._closing = closing

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, run ``closing``, then uvicorn's shutdown (which closes sockets).

        ``closing`` tells the Connect workers, while their sockets are still open, that
        this gateway closes (GATEWAY_CLOSING): they reconnect once the engine is back.
        """
        for server in self.servers:
            server.close()  # a worker told to reconnect must not reach this server again
        if self._closing is not None:
            try:
                await self._closing()
            except Exception:  # never in the way of the shutdown itself
                logger.exception("could not tell the Connect workers the engine stops")
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: stop gracefully; any later one: stop at once."""
        if self.should_exit:
            self.force_exit = True
            self._halt()
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT/SIGTERM while serving; restore the old handlers, re-raise nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def gateway_closing(engine: Engine) -> Callable[[], Awaitable[None]]:
    """What runs before uvicorn closes the sockets: Connect's calls in flight finish first.

    With Connect workers connected, the worker stops leasing and gives its calls in flight
    ``shutdown_grace``, as ``Engine.stop`` would (their answers come back over the
    sockets, which uvicorn would otherwise close first); then every worker is told
    GATEWAY_CLOSING, to reconnect once the engine is back.
    """

    async def closing() -> None:
        if engine.connect.workers():
            await engine.worker.stop(engine.settings.shutdown_grace)
        await engine.connect.close()

    return closing
