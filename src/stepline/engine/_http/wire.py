"""What the engine's REST API reads and writes: bounded JSON bodies, query parameters and
JSON answers, and ``ApiError``, the refusal they raise (``api._failure`` answers it).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import http
from typing import Any

import starlette.requests
import starlette.responses

from stepline import _json, _serde
from stepline._protocol import durations
from stepline._status import RunStatus
from stepline.engine._model import storable

Request = starlette.requests.Request
Response = starlette.responses.Response
MAX_LIMIT = 500
#: The longest a ``GET /v1/runs/{id}?wait=`` long-poll holds the request.
MAX_WAIT = 60.0
_STATUSES = {s.value.lower(): s for s in RunStatus}


class ApiError(Exception):
    """A request the API refuses; ``body`` overrides the default ``{"error": message}``."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


#: the error object's own fields; any other a refusal carries is also its ``details``
_ERROR_FIELDS = ("code", "message", "details", "error")


def error_code(status: int) -> str:
    """The ``code`` of a refusal that names none: its status's phrase (``not_found``)."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return "client_error" if status < 500 else "server_error"
    return phrase.lower().replace(" ", "_").replace("-", "_")


def error_object(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (``{"error": message, ...}``) as the one error object every ``/v1`` refusal is.

    ``code`` (a stable name: the refusal's own, else the status's), ``message`` (for
    people), ``details`` (an object: the refusal's ``details``, else its other fields,
    else empty), then ``error`` (the message again, as clients before ``message`` read
    it) and the refusal's other fields, kept where they were.
    """
    message = body.get("message", body.get("error"))
    message = message if isinstance(message, str) else error_code(status).replace("_", " ")
    code = body.get("code")
    extra = {k: v for k, v in body.items() if k not in _ERROR_FIELDS}
    details = body.get("details")
    return {
        "code": code if isinstance(code, str) and code else error_code(status),
        "message": message,
        "details": details if isinstance(details, dict) else extra,
        "error": message,
        **extra,
    }


def error_body(status: int, message: str, **fields: Any) -> dict[str, Any]:
    """The error object of a refusal with ``message`` (``fields``: ``code``, ``details``...)."""
    return error_object(status, {"error": message, **fields})


async def read_json(request: Request, limit: int, *, required: bool = True) -> Any:
    """The request's JSON body (strict), at most ``limit`` bytes; None if empty and optional."""
    return json_body(await read_body(request, limit), required=required)


def json_body(raw: bytes, *, required: bool = True) -> Any:
    """``raw`` as a request's JSON body (strict); None if empty and optional."""
    if not raw.strip():
        if required:
            raise ApiError(400, "request body is empty; want JSON")
        return None
    try:
        return _serde.loads(raw)  # strict: no NaN, no 1e400, no stack-deep nesting
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length", "")
    # by length first: int() raises past 4,300 digits
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise ApiError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # stream rather than request.body(): a lying or absent Content-Length must not let a
    # client make us buffer an unbounded body
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body larger than {limit} bytes")
            chunks.append(chunk)
    except starlette.requests.ClientDisconnect:
        raise ApiError(400, "client disconnected before sending the whole body") from None
    return b"".join(chunks)


def wait_seconds(text: str | None) -> float:
    """``?wait=`` seconds for a long-poll, 0 to 60."""
    if text is None or text == "":
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:
        raise ApiError(400, f"wait: want seconds from 0 to {MAX_WAIT:g}, got {text!r}")
    return seconds


def page_limit(text: str | None) -> int:
    """``?limit=``: a page size from 1 to ``MAX_LIMIT`` (50 when absent)."""
    if text is None or text == "":
        return 50
    # isascii: "²".isdigit() is True, but int("²") raises
    if (
        not (text.isascii() and text.isdigit() and len(text) <= 6)
        or not 1 <= int(text) <= MAX_LIMIT
    ):
        raise ApiError(400, f"limit: want an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def timestamp(text: str | None, name: str) -> float | None:
    """An RFC 3339 timestamp or unix seconds, as epoch seconds.

    Only a time the API can show again is taken: a filter is stored with a bulk action and
    rendered as RFC 3339 each time the action is read, so ``1e34``, ``inf`` or ``nan``
    seconds are refused here rather than failing every later read.
    """
    if text is None or text == "":
        return None
    seconds: float | None = None
    with contextlib.suppress(ValueError):
        seconds = float(text)
    try:
        if seconds is None:
            seconds = durations.parse_timestamp(text).timestamp()
        _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)  # shown as RFC 3339 later
    except (ValueError, OverflowError, OSError):  # OSError: out of the platform's time_t
        raise ApiError(
            400, f"{name}: want an RFC 3339 time or unix seconds, got {text!r}"[:300]
        ) from None
    return seconds


def idempotency_key(value: object) -> str | None:
    """A body's ``idempotency_key``: a string of 1-256 characters every store can hold
    (Postgres refuses NUL in text), or None when absent."""
    if value is None:
        return None
    if not (isinstance(value, str) and 0 < len(value) <= 256 and storable(value)):
        raise ApiError(400, "idempotency_key: want a string of 1-256 characters, without NUL")
    return value


def run_statuses(text: str | None) -> tuple[RunStatus, ...]:
    """``?status=``: comma-separated run statuses, any case."""
    if not text:
        return ()
    wanted = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part not in _STATUSES:
            known = ", ".join(s.value for s in RunStatus)
            raise ApiError(400, f"status: unknown run status {part!r}; want one of {known}")
        wanted.append(_STATUSES[part])
    return tuple(wanted)


class _Encoded(starlette.responses.JSONResponse):
    """Starlette's JSON response, encoded by ``stepline._json`` (orjson when installed).

    What it encodes came from the store or from strict JSON, so it holds no ``NaN``.
    """

    def render(self, content: Any) -> bytes:
        return _json.dumpb(content)


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` as a JSON answer."""
    return _Encoded(body, status_code=status)
