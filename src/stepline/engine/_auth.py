"""Who may call the engine: bearer tokens for SDK/REST routes, event keys for ``/e``.

Pure predicates over the resolved settings; ``_api`` turns a ``False`` into a 401.
"""

from __future__ import annotations

import hmac

from stepline._protocol import signing
from stepline.engine._config import EngineSettings


def bearer_ok(authorization: str | None, settings: EngineSettings) -> bool:
    """Whether an ``Authorization`` header may use the SDK-facing and REST routes.

    Dev mode is open, as the Go dev server is (SDKs send ``Bearer undefined`` or
    nothing there). In start mode the token must be a configured signing key or its
    hash, with or without the ``signkey-<env>-`` prefix.

    Args:
        authorization: the header value, if any.
        settings: the engine's settings.

    Returns:
        True if the request is allowed.
    """
    if settings.mode != "start":
        return True
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    # any() would stop at the first match; the fallback key is compared either way,
    # which keeps the timing independent of which key matched
    matches = [signing.keys_match(token, key) for key in settings.signing_keys]
    return any(matches)


def event_key_ok(key: str, settings: EngineSettings) -> bool:
    """Whether ``POST /e/{key}`` may ingest with this key.

    Args:
        key: the key from the URL.
        settings: the engine's settings; no configured keys accepts any key.

    Returns:
        True if the key is accepted.
    """
    if not settings.event_keys:
        return True
    presented = key.encode()
    matches = [hmac.compare_digest(presented, k.encode()) for k in settings.event_keys]
    return any(matches)
