"""Signing keys, request signatures and bearer tokens, sans I/O.

A request signature (``X-Inngest-Signature: t=<unix seconds>&s=<hex>``) is
HMAC-SHA256 over the body bytes followed by the decimal timestamp, keyed with the
signing key minus its ``signkey-<env>-`` prefix, used as ASCII text (not hex-decoded).

A bearer token is the SHA-256 of the hex-decoded key. Neither value is a secret-free
identifier: the hashed key authenticates against the engine API.

The clock is a parameter (``now``) so that every function here is pure.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Sequence

from stepline import _errors
from stepline._protocol import jcs

__all__ = [
    "KEY_PREFIX",
    "MAX_SIGNATURE_AGE",
    "bearer_token",
    "hash_event_key",
    "hash_signing_key",
    "keys_match",
    "sign",
    "strip_key_prefix",
    "verify",
]

#: The ``signkey-<env>-`` prefix of a signing key (``test``, ``branch``, ``prod``, ...).
KEY_PREFIX: re.Pattern[str] = re.compile(r"^signkey-\w+-")

#: How far a signature timestamp may be from ``now``, in either direction.
MAX_SIGNATURE_AGE = datetime.timedelta(minutes=5)

_HEX = re.compile(r"[0-9a-fA-F]*")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
#: Digits a signature timestamp may have (unix seconds until the year 33658).
_MAX_TIMESTAMP_DIGITS = 12


def strip_key_prefix(key: str) -> str:
    """Remove a leading ``signkey-<env>-`` prefix, if there is one.

    Args:
        key: a signing key or hashed signing key.

    Returns:
        ``key`` without its prefix.
    """
    return KEY_PREFIX.sub("", key, count=1)


def hash_signing_key(key: str) -> str:
    """Hash a signing key the way the engine API expects it as a bearer token.

    Args:
        key: the signing key, with or without its ``signkey-<env>-`` prefix.

    Returns:
        Lowercase hex SHA-256 of the hex-decoded key (prefix removed).

    Raises:
        ConfigError: the key, minus its prefix, is empty or not even-length hex.
    """
    material = strip_key_prefix(key)
    # bytes.fromhex tolerates whitespace, so check the shape explicitly.
    if not material or len(material) % 2 or not _HEX.fullmatch(material):
        raise _errors.ConfigError(
            "Signing key is invalid: after the optional 'signkey-<env>-' prefix it must be "
            "a non-empty, even-length hexadecimal string."
        )
    return hashlib.sha256(bytes.fromhex(material)).hexdigest()


def hash_event_key(key: str) -> str:
    """Hash an event key for the authenticated introspection body.

    Args:
        key: the raw event key.

    Returns:
        Lowercase hex SHA-256 of the UTF-8 key.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(key: str) -> str:
    """Build the ``Authorization`` header value for calls to the engine API.

    Like inngest-py, the token is the bare hash, without a ``signkey-`` prefix.

    Args:
        key: the signing key.

    Returns:
        ``"Bearer <hash_signing_key(key)>"``.

    Raises:
        ConfigError: the key is not valid hex (see `hash_signing_key`).
    """
    return f"Bearer {hash_signing_key(key)}"


def keys_match(presented: str, configured: str) -> bool:
    """Check a bearer token against a configured signing key (engine side).

    Accepts the plain key or its hash, each with or without a ``signkey-<env>-``
    prefix, on either side, as the Go server does.

    Args:
        presented: the token from the request, without the ``Bearer `` scheme.
        configured: the signing key the engine was started with.

    Returns:
        Whether ``presented`` authenticates as ``configured``. Always ``False`` when
        either side is empty.
    """
    token = strip_key_prefix(presented).encode()
    plain = strip_key_prefix(configured)
    if not token or not plain:
        return False
    try:
        hashed = hash_signing_key(plain)
    except _errors.ConfigError:
        hashed = ""  # a non-hex key has no hash form; only the plain form can match
    plain_ok = hmac.compare_digest(token, plain.encode())
    hashed_ok = bool(hashed) and hmac.compare_digest(token, hashed.encode())
    return plain_ok or hashed_ok


def sign(body: bytes, key: str, *, now: float) -> str:
    """Sign a body for the ``X-Inngest-Signature`` header.

    Args:
        body: the exact bytes to sign (the caller canonicalizes if it wants to).
        key: the signing key, with or without its ``signkey-<env>-`` prefix.
        now: the current unix time in seconds; truncated to an integer.

    Returns:
        ``"t=<unix seconds>&s=<hex HMAC-SHA256>"``.
    """
    timestamp = str(int(now))
    return f"t={timestamp}&s={_mac(body, key, timestamp)}"


def verify(
    body: bytes,
    header: str | None,
    keys: Sequence[str],
    *,
    now: float,
    max_age: datetime.timedelta = MAX_SIGNATURE_AGE,
) -> str:
    """Verify an ``X-Inngest-Signature`` header and return the key that signed it.

    The raw body is tried first; if no key matches and the body is not empty, the
    RFC 8785 canonical form of the body is tried too, because the Go server signs the
    canonical form.

    Args:
        body: the request body as received.
        header: the ``X-Inngest-Signature`` header value, or ``None`` if absent.
        keys: candidate signing keys in order (primary, then fallback); empty strings
            are skipped.
        now: the current unix time in seconds.
        max_age: how far the signature timestamp may be from ``now``, past or future.

    Returns:
        The first entry of ``keys`` that validates the signature.

    Raises:
        SignatureVerificationError: the header is missing or malformed, its timestamp
            is outside the freshness window, no key is configured, or no key matches.
    """
    if not header:
        raise _errors.SignatureVerificationError("X-Inngest-Signature header is missing.")
    issued, signature = _parse_header(header)
    timestamp = str(issued)  # normalized, as the Go server formats it when signing
    skew = now - issued
    window = max_age.total_seconds()
    if skew > window:
        raise _errors.SignatureVerificationError(
            f"Signature timestamp is too old: {skew:.0f}s ago, more than {window:.0f}s."
        )
    if -skew > window:
        raise _errors.SignatureVerificationError(
            f"Signature timestamp is {-skew:.0f}s in the future, more than {window:.0f}s."
        )
    candidates = [key for key in keys if key]
    if not candidates:
        raise _errors.SignatureVerificationError(
            "Cannot verify the signature: no signing key is configured."
        )
    matched = _first_match(body, timestamp, signature, candidates)
    if matched is None and body:
        try:
            canonical = jcs.canonicalize_bytes(body)
        except ValueError:
            canonical = body  # not JSON: the raw bytes were the only candidate
        if canonical != body:
            matched = _first_match(canonical, timestamp, signature, candidates)
    if matched is None:
        raise _errors.SignatureVerificationError(
            "Signature does not match the request body for any configured signing key."
        )
    return matched


def _mac(body: bytes, key: str, timestamp: str) -> str:
    mac = hmac.new(strip_key_prefix(key).encode(), body, hashlib.sha256)
    mac.update(timestamp.encode())
    return mac.hexdigest()


def _first_match(body: bytes, timestamp: str, signature: str, keys: list[str]) -> str | None:
    for key in keys:
        if hmac.compare_digest(_mac(body, key, timestamp), signature):
            return key
    return None


def _parse_header(header: str) -> tuple[int, str]:
    """Split ``t=<int>&s=<hex>`` (fields in any order) into ``(t, lowercase s)``."""
    fields: dict[str, str] = {}
    for part in header.strip().split("&"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name in fields:
            raise _errors.SignatureVerificationError(
                "X-Inngest-Signature header is malformed: expected 't=<unix seconds>&s=<hex>'."
            )
        fields[name] = value.strip()
    timestamp = fields.get("t")
    signature = fields.get("s")
    if timestamp is None or signature is None:
        raise _errors.SignatureVerificationError(
            "X-Inngest-Signature header is malformed: both 't' and 's' are required."
        )
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise _errors.SignatureVerificationError(
            "X-Inngest-Signature header is malformed: 't' must be an integer unix timestamp."
        )
    # before int(): past 4,300 digits it raises ValueError, and a number past a double's
    # range cannot be compared with the clock; no fresh timestamp has more digits than this
    if len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise _errors.SignatureVerificationError(
            "X-Inngest-Signature timestamp is out of range: 't' must be unix seconds."
        )
    if not _SIGNATURE.fullmatch(signature):
        raise _errors.SignatureVerificationError(
            "X-Inngest-Signature header is malformed: 's' must be 64 hexadecimal characters."
        )
    return int(timestamp), signature.lower()
