"""How many readers follow runs' streams at once: per run and per caller, bounded.

A reader holds at most one page (``service.PAGE_BYTES`` of message data, and its
encoding) while the server sends it, so these bounds, with the page's, bound the memory
readers can make the engine hold. A read past one is refused (``TooManyReadersError``,
answered with 429) before anything is read. Pure bookkeeping, on the event loop.
"""

from __future__ import annotations

import collections

__all__ = ["ReaderTicket", "Readers", "TooManyReadersError"]


class TooManyReadersError(Exception):
    """A read past a bound on concurrent readers (answered with 429, naming the bound)."""


class ReaderTicket:
    """One admitted reader; ``release`` (idempotent) lets the next one in."""

    __slots__ = ("_caller", "_readers", "_run_id")

    def __init__(self, readers: Readers, run_id: str, caller: str) -> None:
        self._readers: Readers | None = readers
        self._run_id = run_id
        self._caller = caller

    def release(self) -> None:
        """The reader is gone (a second call does nothing)."""
        readers, self._readers = self._readers, None
        if readers is not None:
            readers._left(self._run_id, self._caller)


class Readers:
    """The readers of one engine's streams, counted per run and per caller.

    Args:
        per_run: the most readers one run's stream may have at once.
        per_caller: the most readers one caller (a client address) may hold at once.
    """

    def __init__(self, per_run: int, per_caller: int) -> None:
        self.per_run = per_run
        self.per_caller = per_caller
        self._runs: collections.Counter[str] = collections.Counter()
        self._callers: collections.Counter[str] = collections.Counter()

    def admit(self, run_id: str, caller: str) -> ReaderTicket:
        """A ticket for one more reader of ``run_id`` by ``caller``.

        Raises:
            TooManyReadersError: the run or the caller has as many readers as allowed.
        """
        if self._runs[run_id] >= self.per_run:
            raise TooManyReadersError(
                f"run {run_id} has {self.per_run} stream readers already, the most one run "
                "may have at once (max_stream_readers_per_run: --max-stream-readers-per-run, "
                "STEPLINE_MAX_STREAM_READERS_PER_RUN); retry when one has left"
            )
        if self._callers[caller] >= self.per_caller:
            raise TooManyReadersError(
                f"this client ({caller or 'unknown address'}) holds {self.per_caller} stream "
                "readers already, the most one caller may hold at once "
                "(max_stream_readers_per_caller: --max-stream-readers-per-caller, "
                "STEPLINE_MAX_STREAM_READERS_PER_CALLER); retry when one has left"
            )
        self._runs[run_id] += 1
        self._callers[caller] += 1
        return ReaderTicket(self, run_id, caller)

    def count(self, run_id: str) -> int:
        """How many readers ``run_id`` has now."""
        return self._runs[run_id]

    def _left(self, run_id: str, caller: str) -> None:
        for counts, key in ((self._runs, run_id), (self._callers, caller)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
