"""Cross-site request forgery: which state-changing requests a browser could send unasked.

A page on another site may POST ``text/plain``, a form encoding or no content type at all
without a CORS preflight (a "simple request"), and the browser attaches the user's
cookies. ``Content-Type: application/json`` (or ``+json``) or the ``X-Stepline-Csrf``
header cannot be sent cross-site without the server's CORS permission, so a request
carrying either came from a page the server allows. The check is pure: adapters hand over
the headers and answer with the refusal.

``cross_site`` is the looser rule for routes that take forms (durable endpoints): it
refuses only what a browser sent from another site without a preflight, as told by
``Sec-Fetch-Site`` (every current browser sends it) or, failing that, by ``Origin``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

__all__ = ["HEADER", "cross_site", "is_json", "refusal"]

#: The header state-changing routes accept instead of a JSON content type (any value;
#: send ``1``), e.g. on a body-less ``POST .../cancel``.
HEADER = "X-Stepline-Csrf"
_HEADER = HEADER.lower()
#: The content types a page may POST to another site without a CORS preflight ("" is none).
_SIMPLE = frozenset({"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
#: The ``Sec-Fetch-Site`` values of a request the page's own site sent, or the user typed.
_SAME = frozenset({"same-origin", "none"})


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` value names JSON (``application/json``, ``…+json``)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def refusal(method: str, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """The status and message refusing a request a browser could send cross-site, or None.

    Args:
        method: the request's method (call this for state-changing ones only).
        path: the path, for the message.
        headers: the request's headers, names lower-cased.
    """
    if headers.get(_HEADER, "").strip():
        return None
    content_type = headers.get("content-type", "")
    if is_json(content_type):
        return None
    ask = f"send Content-Type: application/json (with a JSON body) or the header {HEADER}: 1"
    kind = content_type.split(";", 1)[0].strip()
    if kind:
        return 415, f"{method} {path}: Content-Type {kind} is not accepted; {ask}"
    return 403, f"{method} {path} needs a JSON content type or a header (cross-site guard); {ask}"


def cross_site(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a browser may have sent this request from another site unasked, or None.

    A ``POST`` with a simple content type (a form, ``text/plain``, none) and without
    ``X-Stepline-Csrf`` needs no CORS preflight, so a page on any site can make the
    browser send it with the user's cookies. It is cross-site when ``Sec-Fetch-Site``
    says so (``cross-site``, or ``same-site``: a sibling subdomain is another origin) or,
    from a browser without that header, when ``Origin`` is not the request's ``Host``.
    A request with neither header comes from no browser (a webhook, a script) and passes;
    other methods and JSON bodies cannot be sent cross-site without the app's CORS
    permission, and pass too.

    Args:
        method: the request's method.
        headers: the request's headers, names lower-cased.
    """
    if method.upper() != "POST" or headers.get(_HEADER, "").strip():
        return None
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in _SIMPLE:
        return None
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site:
        return None if site in _SAME else f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin", "").strip()
    if not origin:
        return None
    host = headers.get("host", "").strip().lower()
    if origin.lower() == "null" or urllib.parse.urlsplit(origin).netloc.lower() != host:
        return f"Origin: {origin}"
    return None
