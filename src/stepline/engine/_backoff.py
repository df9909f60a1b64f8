"""How long to wait before retrying a failed call. Pure."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal

#: The Go executor's table: 15 s, 30 s, 1 m, 2 m, 5 m, 10 m, 20 m, 40 m, 1 h, 2 h.
INNGEST_TABLE = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 2400.0, 3600.0, 7200.0)
#: A table for local development: 1 s, 2 s, 4 s, 8 s, 15 s, 30 s, then every minute, so
#: a fix to a failing step is tried within seconds rather than after 15-45 s.
SHORT_TABLE = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
#: The most jitter the short table adds (its first delays are a few seconds).
SHORT_JITTER = 1.0
#: The backoffs an engine may use: ``inngest`` (the Go executor's, the default; Inngest's
#: dev server uses it too) or ``short`` (``stepline dev --retry-backoff short``).
BackoffName = Literal["inngest", "short"]
NAMES: tuple[BackoffName, ...] = ("inngest", "short")


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff from a table, plus a deterministic jitter.

    Args:
        table: delays in seconds for attempts 0, 1, 2...; the last repeats.
        jitter: at most this many seconds are added, derived from the job id so every
            node (and every replay of a test) computes the same delay.
        scale: multiplies every delay (``0.001`` makes retries quick in development).
    """

    table: tuple[float, ...] = INNGEST_TABLE
    jitter: float = 30.0
    scale: float = 1.0

    @classmethod
    def named(cls, name: BackoffName, *, jitter: float = 30.0, scale: float = 1.0) -> Backoff:
        """The backoff called ``name``; the short one adds at most ``SHORT_JITTER``."""
        if name == "short":
            return cls(SHORT_TABLE, min(jitter, SHORT_JITTER), scale)
        return cls(INNGEST_TABLE, jitter, scale)

    def delay(self, attempt: int, key: str) -> float:
        """Seconds to wait before retry number ``attempt + 1`` of ``key``."""
        base = self.table[min(attempt, len(self.table) - 1)]
        digest = hashlib.sha256(f"{key}:{attempt}".encode()).digest()
        fraction = int.from_bytes(digest[:4], "big") / 2**32
        return (base + fraction * self.jitter) * self.scale
