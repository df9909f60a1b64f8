"""How ``stepline dev|start`` stop: gracefully on a first SIGTERM/SIGINT, at once on a second.

uvicorn's own handling would re-raise the signal once it has shut down (the process then
dies of it, exit code -15 for SIGTERM), and only a second SIGINT would cut it short. Here
the first signal stops the server and lets the engine drain (``shutdown_grace``), the
second cuts the grace short and skips uvicorn's wait for open connections, and the
process exits 0 either way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server(uvicorn.Server):
    """A uvicorn server whose second stop signal calls ``halt`` (cut the grace short)."""

    def __init__(self, config: uvicorn.Config, *, halt: Callable[[], object]) -> None:
        super().__init__(config)
        self._halt = halt

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
