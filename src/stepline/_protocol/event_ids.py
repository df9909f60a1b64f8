"""ULIDs and the ``X-Inngest-Event-Id-Seed`` algorithm: event ids a sender knows in advance.

The engine derives the ids of a batch of events from the seed header the sender chose, so a
sender that keeps the seed knows the ids before the engine has seen the events, and a
retried send (same seed) gets the same ids back. The outbox writes the seed into its row
and returns ``seeded(seed, n)`` to the caller before the transaction commits; the engine
runs the same function on delivery: one algorithm, here on the floor.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time

__all__ = ["ALPHABET", "SEED_BYTES", "SeedError", "new_run_id", "new_seed", "seeded", "ulid"]

#: Crockford's base32, the ULID alphabet.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Random bytes in a seed (after ``<ms>,``).
SEED_BYTES = 10


class SeedError(ValueError):
    """``X-Inngest-Event-Id-Seed`` is not ``<ms>,<base64 of 10 bytes>``."""


#: Every pair of Crockford digits, by the 10 bits they write.
_PAIRS = [high + low for high in ALPHABET for low in ALPHABET]
_TEN_BITS = 1023


def _encode(value: int) -> str:
    """A 128-bit value in 26 Crockford base32 digits, most significant first: 13 pairs of
    digits, each written for 10 bits of the value (the first pair's top two are zeros).

    Per pair, one table lookup: a third of ``base64.b32encode``'s cost, which on Python
    3.11 encodes in Python, five bits at a time.
    """
    p, m = _PAIRS, _TEN_BITS
    return "".join((
        p[value >> 120], p[(value >> 110) & m], p[(value >> 100) & m], p[(value >> 90) & m],
        p[(value >> 80) & m], p[(value >> 70) & m], p[(value >> 60) & m], p[(value >> 50) & m],
        p[(value >> 40) & m], p[(value >> 30) & m], p[(value >> 20) & m], p[(value >> 10) & m],
        p[value & m],
    ))  # fmt: skip


def ulid(ms: int, entropy: bytes | None = None) -> str:
    """A ULID for time ``ms`` (milliseconds) with 10 bytes of ``entropy``.

    Without ``entropy``, random, and monotonic within a millisecond in this process (the
    ULID spec's monotonic mode): a second id for the same ``ms`` is the last one plus 1,
    so ids made one after the other sort in the order they were made (events listed
    newest first stay in order however fast they came).
    """
    ms &= 2**48 - 1
    if entropy is not None:
        return _encode((ms << 80) | int.from_bytes(entropy[:10], "big"))
    with _LAST.lock:
        same = ms == _LAST.ms and _LAST.rand + 1 < 2**80
        rand = _LAST.rand + 1 if same else _random()
        _LAST.ms, _LAST.rand = ms, rand
    return _encode((ms << 80) | rand)


def _random() -> int:
    return int.from_bytes(os.urandom(10), "big") >> 1  # room to count up within the ms


class _Last:
    """The last random id's ms and random part (reset in a forked child: it counts from
    fresh randomness, never on from its parent's last id)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms = -1
        self.rand = 0

    def forget(self) -> None:
        self.lock = threading.Lock()  # the parent's may have been held as it forked
        self.ms = -1
        self.rand = 0


_LAST = _Last()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LAST.forget)


def seeded(seed: str, count: int) -> list[str]:
    """Event ids from an ``X-Inngest-Event-Id-Seed`` header, one per event (1-based).

    The same seed gives the same ids, so a client retrying after a lost response gets
    back the ids of the events it already sent.

    Raises:
        SeedError: the header is malformed.
    """
    ms_text, _, b64 = seed.partition(",")
    try:
        ms = int(ms_text)
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error):
        raise SeedError(f"invalid X-Inngest-Event-Id-Seed {seed!r}") from None
    if len(raw) != SEED_BYTES or ms < 0:
        raise SeedError(f"invalid X-Inngest-Event-Id-Seed {seed!r}: want <ms>,<10 bytes b64>")
    head, tail = raw[:6], int.from_bytes(raw[6:], "big")
    return [ulid(ms, head + ((tail + i) % 2**32).to_bytes(4, "big")) for i in range(1, count + 1)]


def new_seed(ms: int | None = None, entropy: bytes | None = None) -> str:
    """A fresh ``X-Inngest-Event-Id-Seed`` value: ``<ms>,<base64 of 10 random bytes>``.

    Args:
        ms: its time in milliseconds (now if None).
        entropy: its 10 bytes (random if None).
    """
    stamp = int(time.time() * 1000) if ms is None else ms
    raw = os.urandom(SEED_BYTES) if entropy is None else entropy
    if len(raw) != SEED_BYTES:
        raise ValueError(f"entropy must be {SEED_BYTES} bytes, not {len(raw)}")
    return f"{stamp},{base64.b64encode(raw).decode('ascii')}"


def new_run_id(ms: int | None = None) -> str:
    """A fresh run id: a ULID for now (or ``ms``) with random entropy."""
    return ulid(int(time.time() * 1000) if ms is None else ms)
