"""How ``stepline dev|start`` stop: gracefully on a first SIGTERM/SIGINT, at once on a second.

uvicorn's own handling would re-raise the signal once it has shut down (the process then
dies of it, exit code -15 for SIGTERM), and only a second SIGINT would cut it short. Here
the first signal stops the server and starts one grace (``shutdown_grace``) that the
whole stop shares: the server first drains (``drain_delay``: ``/ready`` answers 503 while
requests are still served, so a load balancer moves traffic away; ``_http/draining.py``),
then stops listening; the engine's calls in flight finish next (their Connect answers come
over sockets still open), then uvicorn waits what is left of it for the requests still
open (streams, long polls), so the process is gone within the grace whatever is
connected. The second signal cuts every wait short, and the process exits 0 either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from types import FrameType

import uvicorn

from stepline.engine._engine import Engine
from stepline.engine._http import draining

SIGNALS = (signal.SIGINT, signal.SIGTERM)
logger = logging.getLogger("stepline.engine")
#: What a drain cut short at the end of the grace (or by a second signal) still gets to
#: hand its calls back (a write to the store).
HAND_BACK = 1.0
#: How often a wait looks whether a second signal came.
_LOOK = 0.05


class Server(uvicorn.Server):
    """A uvicorn server stopping within one ``grace``; a second stop signal calls ``halt``.

    Args:
        config: uvicorn's configuration.
        grace: seconds the whole stop may take, from the first signal.
        halt: cuts the engine's drain short (a second signal, or the grace is over).
        closing: the drain, given the seconds left: run after the server stops listening
            and before uvicorn closes the open sockets.
        drain: the server's drain, begun at the first signal (``/ready`` answers 503).
        drain_delay: the most seconds the server goes on listening while it drains.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        grace: float,
        halt: Callable[[], object],
        closing: Callable[[float], Awaitable[None]] | None = None,
        drain: draining.Drain | None = None,
        drain_delay: float = 0.0,
    ) -> None:
        super().__init__(config)
        self._grace = grace
        self._halt = halt
        self._closing = closing
        self._drain_state = drain or draining.Drain()
        self._drain_delay = drain_delay
        self._deadline: float | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, run ``closing``, then uvicorn's shutdown (which closes sockets),
        all within the grace that started with the first signal.

        ``closing`` drains the engine's calls in flight and tells the Connect workers,
        while their sockets are still open, that this gateway closes (GATEWAY_CLOSING):
        they reconnect once the engine is back. uvicorn then gets what is left of the
        grace to let the open requests finish before it cancels them.
        """
        if self._deadline is None:  # stopped by other means than a signal
            self._deadline = time.monotonic() + self._grace
        deadline = self._deadline
        await self._linger(deadline)
        for server in self.servers:
            server.close()  # a worker told to reconnect must not reach this server again
        if self._closing is not None:
            await self._drain(self._closing, deadline)
        left = deadline - time.monotonic()
        # uvicorn takes whole seconds (and logs an error at 0); a second signal ends its
        # wait at once anyway
        self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
        await super().shutdown(sockets)

    async def _linger(self, deadline: float) -> None:
        """Go on serving while the drain lasts, the grace allows and no second signal came."""
        drain = self._drain_state
        drain.begin()
        if drain.over(self._drain_delay):
            return
        began = time.monotonic()
        logger.warning(
            "stopping: /ready answers 503 while requests are still served (up to %g s)",
            self._drain_delay,
        )
        while not drain.over(self._drain_delay) and not self.force_exit:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_LOOK)
        logger.warning(
            "stopping: drained in %.2f s; closing the listener", time.monotonic() - began
        )

    async def _drain(self, closing: Callable[[float], Awaitable[None]], deadline: float) -> None:
        """Run ``closing`` until it ends, the grace is over or a second signal comes; past
        either, the drain is halted and given ``HAND_BACK`` to hand its calls back."""
        task = asyncio.ensure_future(closing(max(deadline - time.monotonic(), 0.0)))
        while not task.done() and not self.force_exit and time.monotonic() < deadline:
            await asyncio.wait((task,), timeout=_LOOK)
        if not task.done():
            self._halt()
            await asyncio.wait((task,), timeout=HAND_BACK)
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
        if task.cancelled():
            logger.warning("the engine's drain did not end within its grace: cut short")
        elif task.exception() is not None:  # never in the way of the shutdown itself
            error = task.exception()
            logger.error("could not drain the engine or tell its Connect workers", exc_info=error)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: stop within the grace; any later one: stop at once."""
        if self.should_exit:
            self.force_exit = True
            self._halt()
        elif self._deadline is None:
            self._deadline = time.monotonic() + self._grace
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


def gateway_closing(engine: Engine) -> Callable[[float], Awaitable[None]]:
    """What runs before uvicorn closes the sockets: the calls in flight finish first.

    The worker stops leasing and gives its calls in flight the seconds left of the grace,
    as ``Engine.stop`` would, but before uvicorn's wait for open requests rather than
    after it (so the two share one grace), and while the Connect sockets are still open
    (the answers of Connect calls come back over them); then every Connect worker is told
    GATEWAY_CLOSING, to reconnect once the engine is back.
    """

    async def closing(left: float) -> None:
        await engine.worker.stop(left)
        await engine.connect.close()

    return closing
