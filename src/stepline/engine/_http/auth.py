"""Who may call the engine: bearer tokens, event keys and dashboard sessions.

Bearer tokens guard the SDK/REST routes, event keys ``/e``, and signed session cookies
let a signed-in dashboard use the management routes. Which route takes which is the table
``stepline._serving.access.ENGINE``; ``gate`` applies these predicates to it and turns a request
that presents none of its route's kinds into a 401. Pure predicates over the resolved
settings.
"""

from __future__ import annotations

import hashlib
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


# -- dashboard sessions ---------------------------------------------------------------------
#
# A session is ``<expires>.<nonce>.<mac>``: an HMAC over the first two parts, keyed by a
# key derived from a signing key (and the configured dashboard keys, so changing those
# signs everyone out). Nothing is stored server-side: any engine sharing the keys accepts it.

SESSION_SECONDS = 12 * 3600
#: Digits a session's expiry (unix seconds) may have.
_MAX_EXPIRY_DIGITS = 12


def login_ok(presented: str, settings: EngineSettings) -> bool:
    """Whether a key typed on the dashboard's login page signs the user in.

    Args:
        presented: the key from the form.
        settings: the engine's settings; a signing key (or its hash) or a configured
            dashboard key is accepted.

    Returns:
        True if the key is accepted.
    """
    presented = presented.strip()
    if not presented:
        return False
    signing_matches = [signing.keys_match(presented, key) for key in settings.signing_keys]
    dashboard_matches = [
        hmac.compare_digest(presented.encode(), key.encode()) for key in settings.dashboard_keys
    ]
    return any(signing_matches) or any(dashboard_matches)


def new_session(settings: EngineSettings, *, now: float, nonce: str) -> str:
    """A session token valid for ``SESSION_SECONDS`` from ``now``.

    Args:
        settings: the engine's settings; the current signing key signs the token.
        now: the current time (epoch seconds).
        nonce: random text (hex) so two sessions never share a token.

    Returns:
        The token to put in the session cookie.
    """
    key = settings.signing_key
    if key is None:
        raise ValueError("a session needs a signing key")
    payload = f"{int(now + SESSION_SECONDS)}.{nonce}"
    return f"{payload}.{_session_mac(payload, key, settings)}"


def session_ok(token: str | None, settings: EngineSettings, *, now: float) -> bool:
    """Whether a session cookie is genuine and unexpired.

    Args:
        token: the cookie value, if any.
        settings: the engine's settings; a token signed with any configured signing key
            (current or fallback) is accepted.
        now: the current time (epoch seconds).

    Returns:
        True if the session is valid.
    """
    parts = (token or "").split(".")
    if len(parts) != 3 or not all(p.isascii() for p in parts):  # "²".isdigit() is True
        return False
    if not parts[0].isdigit() or not parts[1].isalnum():
        return False
    if len(parts[0]) > _MAX_EXPIRY_DIGITS:  # int() refuses 4,300+ digits: a 401, not a 500
        return False
    payload, mac = f"{parts[0]}.{parts[1]}", parts[2]
    if not now < int(parts[0]) <= now + SESSION_SECONDS:
        return False
    matches = [
        hmac.compare_digest(mac.encode(), _session_mac(payload, key, settings).encode())
        for key in settings.signing_keys
    ]
    return any(matches)


def _session_mac(payload: str, signing_key: str, settings: EngineSettings) -> str:
    material = "\0".join(
        (
            "stepline-dashboard-session",
            signing.strip_key_prefix(signing_key),
            *settings.dashboard_keys,
        )
    )
    key = hashlib.sha256(material.encode()).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
