"""What of a durable endpoint's request is stored with its run, and what looks like a credential.

The request is the run's trigger data: it stays in the engine for the run's retention,
is returned by ``GET /v1/runs/{id}`` and shown in the dashboard. So it keeps the least:

- headers by an allowlist (``STORED_HEADERS``, plus the endpoint's ``keep_headers``):
  a proxy's or gateway's credential header (``X-Forwarded-Access-Token``,
  ``Cf-Access-Jwt-Assertion``, Kong's ``apikey``...) is dropped whatever its name;
- query parameters whose names look like credentials (``looks_secret``: ``access_token``,
  ``api_key``, ``sig``, OAuth's ``code``...) keep their name with the value ``REDACTED``,
  unless named in the endpoint's ``keep_query``.

``carries_credentials`` tells whether a request authenticated itself somehow (a cookie, an
``Authorization`` header, a token in a header or the query): an ``Idempotency-Key`` on such
a request needs to know whose it is. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "REDACTED",
    "STORED_HEADERS",
    "carries_credentials",
    "looks_secret",
    "stored_headers",
    "stored_query",
]

#: The headers stored with a run by default: what a handler typically reads, no credential.
STORED_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-language",
        "content-type",
        "host",
        "idempotency-key",
        "traceparent",
        "tracestate",
        "user-agent",
        "x-correlation-id",
        "x-request-id",
    }
)

#: The value stored in place of a query parameter that looks like a credential.
REDACTED = "[redacted]"

# A fragment anywhere in a name ("x-forwarded-access-token", "apikey", "jwt_assertion")...
_SECRET_PART = re.compile(
    r"auth|token|key|secret|passw|pwd|session|jwt|cookie|csrf|xsrf|signature|credential"
    r"|assertion|hmac|bearer|saml|ticket",
    re.IGNORECASE,
)
# ...or one of these as a whole word of it ("sig", OAuth's "code", "otp").
_SECRET_WORDS = frozenset({"sig", "code", "otp", "pass", "pin", "sid"})
# Sent by the kit's own clients to prove a JSON-less POST is same-origin: not a credential.
_NOT_CREDENTIALS = frozenset({"x-stepline-csrf"})


def looks_secret(name: str) -> bool:
    """Whether a header or query parameter's name looks like it carries a credential."""
    if _SECRET_PART.search(name):
        return True
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", name.lower()))


def stored_headers(headers: Mapping[str, str], keep: Iterable[str]) -> dict[str, str]:
    """The headers stored with a run: ``STORED_HEADERS`` and those kept, lower-cased."""
    kept = STORED_HEADERS | {name.lower() for name in keep}
    return {name.lower(): value for name, value in headers.items() if name.lower() in kept}


def stored_query(query: Mapping[str, str], keep: Iterable[str]) -> dict[str, str]:
    """The query stored with a run: credential-looking values ``REDACTED`` unless kept."""
    kept = set(keep)
    return {
        name: REDACTED if looks_secret(name) and name not in kept else value
        for name, value in query.items()
    }


def carries_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Whether the request carries something that authenticates it (a cookie, a token)."""
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in STORED_HEADERS or lowered in _NOT_CREDENTIALS or not value.strip():
            continue  # an empty header (a test client's ``Cookie:``) authenticates nothing
        if looks_secret(lowered):
            return True
    return any(looks_secret(name) and value for name, value in query.items())
