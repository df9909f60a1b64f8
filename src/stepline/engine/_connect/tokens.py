"""The session and sync tokens ``POST /v0/connect/start`` hands a worker. Pure.

A token is ``<kind>.<connection id>.<expiry>.<mac>``: an HMAC-SHA256 over the first three
parts, keyed by a key derived from the engine's signing key (``start``) or from a random
secret of this process (``dev``, which has no key: a restarted dev engine asks its workers
to start again, which they do on every reconnect anyway). It is bound to one connection
id and lives ``TOKEN_SECONDS``: the worker opens its socket right after the start call.
Nothing is stored: with the signing keys, any engine sharing them can check a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from stepline._protocol import signing

__all__ = ["TOKEN_SECONDS", "Tokens"]

#: How long a token is accepted after the start call that issued it.
TOKEN_SECONDS = 120.0
_ID = re.compile(r"^[0-9A-Za-z_-]{8,64}$")


class Tokens:
    """Issues and checks tokens with ``secrets`` (the first signs; any one verifies).

    Args:
        secrets: the signing keys (current, then fallback), or one random secret.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("tokens need at least one secret")
        self._keys = [
            hashlib.sha256(
                ("stepline-connect\0" + signing.strip_key_prefix(secret)).encode()
            ).digest()
            for secret in secrets
        ]

    def issue(self, kind: str, connection_id: str, *, now: float) -> str:
        """A token of ``kind`` (``session`` or ``sync``) for ``connection_id``."""
        payload = f"{kind}.{connection_id}.{int(now + TOKEN_SECONDS)}"
        return f"{payload}.{_mac(self._keys[0], payload)}"

    def check(self, token: str, kind: str, connection_id: str, *, now: float) -> str | None:
        """Why ``token`` is not a live ``kind`` token for ``connection_id``; None if it is."""
        parts = token.split(".")
        if len(parts) != 4 or not all(p.isascii() for p in parts):
            return "malformed token"
        got_kind, got_id, expiry, mac = parts
        if got_kind != kind or not _ID.match(got_id) or not expiry.isdigit() or len(expiry) > 12:
            return "malformed token"
        payload = f"{got_kind}.{got_id}.{expiry}"
        matches = [hmac.compare_digest(mac.encode(), _mac(k, payload).encode()) for k in self._keys]
        if not any(matches):
            return "token not signed by this engine"
        if not hmac.compare_digest(got_id.encode(), connection_id.encode()):
            return "token issued for another connection"
        if not now < int(expiry) <= now + TOKEN_SECONDS:
            return "token expired: call /v0/connect/start again"
        return None


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
