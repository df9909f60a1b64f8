"""Readers of runs' streams waiting for news, woken per run.

A reader registers (``listen``) before it reads the store, so a message committed
between its read and its wait still wakes it. ``published`` is called on the event
loop after a publish commits here; ``published_elsewhere`` from the store's listener
thread when another node's does (``"*"``: any run, after notifications were lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class StreamHub:
    """Per-run wake-ups for stream readers of one engine."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def count(self) -> int:
        """How many readers are listening."""
        return sum(len(events) for events in self._waiting.values())

    @contextlib.contextmanager
    def listen(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``run_id`` publishes, until the block ends."""
        self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._waiting.setdefault(run_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiting.get(run_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[run_id]

    def published(self, run_id: str) -> None:
        """``run_id`` published (or ended): wake its readers. On the event loop."""
        targets = self._waiting.values() if run_id == "*" else [self._waiting.get(run_id, set())]
        for events in targets:
            for event in events:
                event.set()

    def published_elsewhere(self, run_id: str) -> None:
        """Another node published to ``run_id``: wake its readers. From any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.published, run_id)
