"""Signal tokens: the key a Stepline run waits under, which an outside system may hold.

A Stepline function waits for a signal by name (``ctx.step.wait_for_signal(...,
signal="approved")``). The key the wait is stored under is the run's *token* for that
name, ``sig_<run id>_<mac>``, where ``mac`` is an HMAC-SHA256 of the run id and the name
under a key derived from the app's signing key (the key the engine signs its calls with
and checks answers against; rotation: the engine accepts a token made with the current
key or the fallback). So:

- it is deterministic: every replay of the run computes the same token, and the function
  can hand it out (``ctx.signal_token(name)``) before it waits, without recording a step;
- it is unguessable without the signing key (256 bits of MAC, 43 characters): knowing a
  run id does not let anyone complete its waits, which makes the token a capability that
  the engine's unauthenticated webhook route (``POST /v1/signals/hooks/{token}``) accepts;
- the engine checks it: a hook request completes a wait only when the MAC matches the
  wait's run and name under one of the engine's signing keys; a key an official SDK
  waits under (``step.waitForSignal``'s ``signal``, chosen by the app, often guessable)
  never passes, so those complete only through the bearer-authenticated routes;
- the run id in clear lets the engine tell a signal to a wait already completed (409)
  from a token it never issued (404) without a second index.

With no signing key (dev mode) the MAC is made under an empty key: stable, but anyone
who knows the run id can compute it, as anyone can call every dev-mode route anyway.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from stepline._protocol.signing import strip_key_prefix

__all__ = ["PREFIX", "run_of", "token", "verify"]

#: Every token starts with this.
PREFIX = "sig_"
_MAC_CHARS = 43  # 32 bytes, base64url without padding
_DOMAIN = b"stepline signal token v1"


def _mac(signing_key: str | None, run_id: str, name: str) -> str:
    material = strip_key_prefix(signing_key).encode() if signing_key else b""
    # a key of its own, so no message a signature covers can ever equal a token
    derived = hmac.new(material, _DOMAIN, hashlib.sha256).digest()
    message = run_id.encode() + b"\x00" + name.encode()
    digest = hmac.new(derived, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token(signing_key: str | None, run_id: str, name: str) -> str:
    """The token of signal ``name`` in run ``run_id`` under ``signing_key`` (None: dev).

    Args:
        signing_key: the app's (and the engine's) signing key, with or without its
            ``signkey-<env>-`` prefix; None or empty without one.
        run_id: the run.
        name: the signal's name within the run.
    """
    return f"{PREFIX}{run_id}_{_mac(signing_key, run_id, name)}"


def run_of(value: str) -> str | None:
    """The run id a token names, or None if ``value`` is not shaped like a token."""
    if not value.startswith(PREFIX):
        return None
    run_id, sep, mac = value[len(PREFIX) :].partition("_")
    if not sep or not run_id or len(mac) != _MAC_CHARS:
        return None
    return run_id


def verify(value: str, run_id: str, name: str, signing_keys: Sequence[str]) -> bool:
    """True if ``value`` is the token of ``name`` in ``run_id`` under one of the keys.

    ``signing_keys`` empty: the dev-mode (keyless) token. Compared in constant time.
    """
    keys: Sequence[str | None] = signing_keys or (None,)
    return any(hmac.compare_digest(value, token(key, run_id, name)) for key in keys)
