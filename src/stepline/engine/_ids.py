"""ULIDs: sortable ids for events and runs, optionally derived from a seed.

The ULID encoding and the seed algorithm live on the SDK's floor
(``stepline._protocol.event_ids``) so the outbox computes the same ids the engine does.
"""

from __future__ import annotations

import hashlib

from stepline._protocol.event_ids import ALPHABET as _ALPHABET
from stepline._protocol.event_ids import SeedError, seeded, ulid

__all__ = ["SeedError", "derived", "ms_of", "seeded", "ulid"]


def derived(ms: int, *parts: str) -> str:
    """A ULID whose entropy is a hash of ``parts``: the same inputs give the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return ulid(ms, digest[:10])


def ms_of(ulid_text: str) -> int:
    """The timestamp (ms) of a ULID."""
    value = 0
    for char in ulid_text:
        value = value * 32 + _ALPHABET.index(char)
    return value >> 80
