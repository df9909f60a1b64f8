"""ULIDs: sortable ids for events and runs, optionally derived from a seed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid(ms: int, entropy: bytes | None = None) -> str:
    """A ULID for time ``ms`` (milliseconds) with 10 bytes of entropy (random if None)."""
    rand = os.urandom(10) if entropy is None else entropy
    return _encode(((ms & (2**48 - 1)) << 80) | int.from_bytes(rand[:10], "big"))


def derived(ms: int, *parts: str) -> str:
    """A ULID whose entropy is a hash of ``parts``: the same inputs give the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return ulid(ms, digest[:10])


class SeedError(ValueError):
    """``X-Inngest-Event-Id-Seed`` is not ``<ms>,<base64 of 10 bytes>``."""


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
    if len(raw) != 10 or ms < 0:
        raise SeedError(f"invalid X-Inngest-Event-Id-Seed {seed!r}: want <ms>,<10 bytes b64>")
    head, tail = raw[:6], int.from_bytes(raw[6:], "big")
    return [ulid(ms, head + ((tail + i) % 2**32).to_bytes(4, "big")) for i in range(1, count + 1)]


def ms_of(ulid_text: str) -> int:
    """The timestamp (ms) of a ULID."""
    value = 0
    for char in ulid_text:
        value = value * 32 + _ALPHABET.index(char)
    return value >> 80
