"""The web request a durable endpoint runs for, recorded with its run.

The request is stored as the run's trigger data, so the handler sees the same request
when the engine resumes the run later from the app's serve endpoint. Credentials are
not stored (``redaction``: headers by an allowlist, credential-like query values
redacted): authenticate in the framework before the handler runs (naming the caller with
the endpoint's ``caller`` or ``authorize``), and read who it is from ``ctx.principal``.
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

from stepline import _errors, _serde

__all__ = ["EndpointRequest"]


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointRequest:
    """The request, as the handler sees it on the first run and on every resumption.

    Attributes:
        method: the HTTP method (``POST``).
        path: the request's path (``/orders/42``).
        query: the query parameters (the last value of a repeated name); a value whose
            name looks like a credential is ``[redacted]`` unless the endpoint keeps it.
        headers: the headers, names lower-cased: those in ``redaction.STORED_HEADERS``
            and the endpoint's ``keep_headers``, no other.
        body: the raw body.
        path_params: the route's path parameters (``{"order_id": "42"}``).
        principal: who the endpoint's ``authorize`` (or ``caller``) said is calling, if anyone.
    """

    method: str
    path: str
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""
    path_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    principal: str | None = None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (strictly: no NaN, no lone surrogates).

        Raises:
            BodyInvalidError: the body is not JSON; return a 400 from the handler
                (``EndpointResponse(..., status=400)``) rather than let it fail the run.
        """
        try:
            return _serde.loads(self.body or b"null")
        except ValueError as exc:
            raise _errors.BodyInvalidError(f"the request body is not JSON: {exc}") from None

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (last value wins)."""
        return dict(urllib.parse.parse_qsl(self.text, keep_blank_values=True))

    def to_data(self) -> dict[str, Any]:
        """The run's trigger data: JSON only, the body as text or base64."""
        try:
            body: dict[str, str] = {"text": self.body.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"base64": base64.b64encode(self.body).decode("ascii")}
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "body": body,
            "path_params": _serde.to_jsonable(dict(self.path_params), what="path parameters"),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, principal: str | None = None) -> EndpointRequest:
        """The request recorded in a run's trigger data (``to_data``'s output).

        The caller is not part of the data (anyone who may start a run could write it):
        ``principal`` is the run's starter as the engine recorded it.
        """
        body = data.get("body") or {}
        raw = (
            base64.b64decode(body["base64"])
            if "base64" in body
            else str(body.get("text", "")).encode()
        )
        return cls(
            method=str(data.get("method", "GET")),
            path=str(data.get("path", "/")),
            query=dict(data.get("query") or {}),
            headers=dict(data.get("headers") or {}),
            body=raw,
            path_params=dict(data.get("path_params") or {}),
            principal=principal,
        )
