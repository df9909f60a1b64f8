"""Rate arithmetic for flow control. Pure."""

from __future__ import annotations


def gcra(tat: float | None, now: float, *, limit: int, period: float) -> float | None:
    """Generic cell rate algorithm: ``limit`` per ``period``, all of it usable as a burst.

    Args:
        tat: the stored theoretical arrival time for the key (None if never seen).
        now: the current time.
        limit: events allowed per period.
        period: the period in seconds.

    Returns:
        The new theoretical arrival time if this event is allowed, else None.
    """
    interval = period / limit
    start = now if tat is None else max(tat, now)
    if start - now > period - interval + 1e-9:
        return None
    return start + interval
