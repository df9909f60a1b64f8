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
from stepline._serving.access import Role
from stepline.engine import _users
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
# A session is ``<expires>.<nonce>.<name>.<mac>`` (the name in hex): an HMAC over the first
# three parts, keyed by a key derived from a signing key (and the configured dashboard keys
# and users, so changing those signs everyone out). The role is looked up by name at each
# request, so a session names who signed in and the configuration says what they may do.
# Nothing is stored server-side: any engine sharing the keys accepts it.

SESSION_SECONDS = 12 * 3600
#: The session cookie's name.
COOKIE = "stepline_session"
#: Digits a session's expiry (unix seconds) may have.
_MAX_EXPIRY_DIGITS = 12


def login_ok(presented: str, settings: EngineSettings) -> bool:
    """Whether a key typed on the dashboard's login page signs the user in."""
    return login_user(presented, settings) is not None


def login_user(presented: str, settings: EngineSettings) -> str | None:
    """Who a key typed on the dashboard's login page signs in, or None.

    Args:
        presented: the key from the form.
        settings: the engine's settings; a signing key (or its hash), an unnamed
            dashboard key or a dashboard user's key is accepted.

    Returns:
        ``signing-key``, ``dashboard`` or the user's name.
    """
    presented = presented.strip()
    if not presented:
        return None
    # every key is compared, whichever matches, so the time taken names none of them
    signing_matches = [signing.keys_match(presented, key) for key in settings.signing_keys]
    shared_matches = [
        hmac.compare_digest(presented.encode(), key.encode()) for key in settings.dashboard_keys
    ]
    user_matches = [
        user.name
        for user in settings.dashboard_users
        if hmac.compare_digest(presented.encode(), user.key.encode())
    ]
    if any(signing_matches):
        return _users.SIGNING_KEY_NAME
    if any(shared_matches):
        return _users.SHARED_KEY_NAME
    return user_matches[0] if user_matches else None


def role_of(name: str, settings: EngineSettings) -> Role | None:
    """The role of whoever signed in as ``name`` (None: no such user any more)."""
    if name in (_users.SIGNING_KEY_NAME, _users.SHARED_KEY_NAME):
        return Role.ADMIN
    for user in settings.dashboard_users:
        if hmac.compare_digest(name.encode(), user.name.encode()):
            return user.role
    return None


def new_session(
    settings: EngineSettings, *, now: float, nonce: str, name: str = _users.SIGNING_KEY_NAME
) -> str:
    """A session token for ``name``, valid for ``SESSION_SECONDS`` from ``now``.

    Args:
        settings: the engine's settings; the current signing key signs the token.
        now: the current time (epoch seconds).
        nonce: random text (hex) so two sessions never share a token.
        name: who signed in (``login_user``).

    Returns:
        The token to put in the session cookie.
    """
    key = settings.signing_key
    if key is None:
        raise ValueError("a session needs a signing key")
    payload = f"{int(now + SESSION_SECONDS)}.{nonce}.{name.encode().hex()}"
    return f"{payload}.{_session_mac(payload, key, settings)}"


def session_ok(token: str | None, settings: EngineSettings, *, now: float) -> bool:
    """Whether a session cookie is genuine and unexpired, and names a known user."""
    return session_user(token, settings, now=now) is not None


def session_user(token: str | None, settings: EngineSettings, *, now: float) -> str | None:
    """Who a session cookie signed in, if it is genuine and unexpired and they still may.

    Args:
        token: the cookie value, if any.
        settings: the engine's settings; a token signed with any configured signing key
            (current or fallback) is accepted.
        now: the current time (epoch seconds).

    Returns:
        The name, or None.
    """
    parts = (token or "").split(".")
    if len(parts) != 4 or not all(p.isascii() for p in parts):  # "²".isdigit() is True
        return None
    if not parts[0].isdigit() or not parts[1].isalnum() or not _hex(parts[2]):
        return None
    if len(parts[0]) > _MAX_EXPIRY_DIGITS:  # int() refuses 4,300+ digits: a 401, not a 500
        return None
    payload, mac = ".".join(parts[:3]), parts[3]
    if not now < int(parts[0]) <= now + SESSION_SECONDS:
        return None
    matches = [
        hmac.compare_digest(mac.encode(), _session_mac(payload, key, settings).encode())
        for key in settings.signing_keys
    ]
    if not any(matches):
        return None
    try:
        name = bytes.fromhex(parts[2]).decode()
    except UnicodeDecodeError:
        return None
    return name if role_of(name, settings) is not None else None


def _hex(text: str) -> bool:
    return (
        0 < len(text) <= 256 and len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)
    )


def _session_mac(payload: str, signing_key: str, settings: EngineSettings) -> str:
    users = (f"{u.name}\x01{u.role.value}\x01{u.key}" for u in settings.dashboard_users)
    material = "\0".join(
        (
            "stepline-dashboard-session",
            signing.strip_key_prefix(signing_key),
            *settings.dashboard_keys,
            *users,
        )
    )
    key = hashlib.sha256(material.encode()).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
