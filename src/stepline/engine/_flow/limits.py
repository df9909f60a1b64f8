"""Rate arithmetic for flow control (the generic cell rate algorithm). Pure.

State per key is one number, the theoretical arrival time (``tat``): when the key
would be back to an empty bucket. ``interval`` is ``period / limit``; ``burst`` is how
many events may pass at once from an empty bucket.
"""

from __future__ import annotations

#: Times are epoch seconds as floats (about 2.4e-7 s apart near 2026): compare with slack,
#: or an event exactly on its slot would be refused by rounding.
_EPSILON = 1e-6


def gcra(tat: float | None, now: float, *, interval: float, burst: int) -> float | None:
    """Admit an event now or refuse it (rate limit: refused events are dropped).

    Args:
        tat: the stored theoretical arrival time for the key (None if never seen).
        now: the current time.
        interval: seconds one event uses up.
        burst: events allowed at once from an empty bucket (at least 1).

    Returns:
        The new theoretical arrival time if this event is allowed, else None.
    """
    start = now if tat is None else max(tat, now)
    if start + interval - burst * interval > now + _EPSILON:
        return None
    return start + interval


def gcra_reserve(
    tat: float | None, due: float, *, interval: float, burst: int
) -> tuple[float, float]:
    """The earliest time at or after ``due`` an event may pass (throttle: it waits).

    Returns:
        ``(slot, new_tat)``: when the event passes, and the key's state after it.
    """
    if tat is None:
        return due, due + interval
    slot = tat - (burst - 1) * interval
    if slot <= due + _EPSILON:
        slot = due
    return slot, max(tat, slot) + interval
