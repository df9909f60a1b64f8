"""Cross-site request forgery: which state-changing requests a browser could send unasked.

A page on another site may POST ``text/plain``, a form encoding or no content type at all
without a CORS preflight (a "simple request"), and the browser attaches the user's
cookies. ``Content-Type: application/json`` (or ``+json``) or the ``X-Stepline-Csrf``
header cannot be sent cross-site without the server's CORS permission, so a request
carrying either came from a page the server allows. The check is pure: adapters hand over
the headers and answer with the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["HEADER", "is_json", "refusal"]

#: The header state-changing routes accept instead of a JSON content type (any value;
#: send ``1``), e.g. on a body-less ``POST .../cancel``.
HEADER = "X-Stepline-Csrf"
_HEADER = HEADER.lower()


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
