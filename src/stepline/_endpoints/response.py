"""What a durable endpoint's handler returns, and how it is recorded and answered.

A handler returns any JSON-able value (a 200 ``application/json`` response, strings
too, as FastAPI answers them) or an ``EndpointResponse`` for another status, headers or
a text/bytes body. The run's output
records it as ``{"status", "headers", and one of "json" / "text" / "base64"}``: the kit's
result route shows it, and a retried request with the same idempotency key gets it back.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from stepline import _errors, _serde

__all__ = ["EndpointResponse", "encode", "parts"]

#: The response header naming the request's run.
RUN_ID_HEADER = "x-stepline-run-id"


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointResponse:
    """A durable endpoint's response with its own status, headers or body type.

    Attributes:
        body: ``bytes`` or ``str`` (sent as is), or any value a step may return (sent as
            JSON).
        status: the HTTP status (100-599).
        headers: extra response headers.
        media_type: the ``content-type``; defaults to JSON for values, ``text/plain``
            for ``str`` and ``application/octet-stream`` for ``bytes``.
    """

    body: Any = None
    status: int = 200
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    media_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise _errors.ConfigError(
                f"EndpointResponse status must be 100-599, not {self.status!r}"
            )


def encode(value: object) -> dict[str, Any]:
    """The run output recording what the handler returned (a plain value is JSON)."""
    response = value if isinstance(value, EndpointResponse) else EndpointResponse(value)
    headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
    body = response.body
    out: dict[str, Any] = {"status": response.status, "headers": headers}
    if isinstance(body, bytes | bytearray):
        headers.setdefault("content-type", response.media_type or "application/octet-stream")
        out["base64"] = base64.b64encode(bytes(body)).decode("ascii")
    elif isinstance(body, str) and response is value:
        headers.setdefault("content-type", response.media_type or "text/plain; charset=utf-8")
        out["text"] = body
    else:
        headers.setdefault("content-type", response.media_type or "application/json")
        out["json"] = _serde.to_jsonable(body, what="the endpoint's response")
    return out


def parts(output: object) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a recorded output (``encode``'s); JSON 200 otherwise."""
    if not isinstance(output, dict) or not isinstance(output.get("status"), int):
        body = json.dumps(output, separators=(",", ":")).encode()
        return 200, {"content-type": "application/json"}, body
    headers = {str(k): str(v) for k, v in (output.get("headers") or {}).items()}
    if "base64" in output:
        raw = base64.b64decode(str(output["base64"]))
    elif "text" in output:
        raw = str(output["text"]).encode()
    else:
        raw = json.dumps(output.get("json"), separators=(",", ":")).encode()
    return int(output["status"]), headers, raw
