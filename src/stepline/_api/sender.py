"""Sending events to the event API, written once as a generator of effects.

``send_flow`` decides everything (request, retries, backoff, result) without I/O;
``send_sync`` and ``send_async`` run it with a transport.
"""

from __future__ import annotations

import base64
import math
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from stepline import (
    _errors,
    _event,
    _identity,
    _settings,
)
from stepline._json import dumpb as json_dumpb
from stepline._json import loads_or_none as json_loads_or_none
from stepline._protocol import event_names, headers
from stepline._transport import effects as _effects
from stepline._transport import performers

__all__ = ["body", "listed", "send_async", "send_flow", "send_sync"]

#: Event key the dev server accepts when none is configured (Cloud answers 401).
NO_EVENT_KEY = "NO_EVENT_KEY_SET"
SEED_BYTES = 10
_BACKOFF_FIRST = 0.1
_BACKOFF_CAP = 2.0
#: the longest ``Retry-After`` a send waits out (a sender is often a web request)
_RETRY_AFTER_CAP = 10.0


def send_flow(
    settings: _settings.Settings,
    events: Sequence[_event.Event],
    *,
    now_ms: int,
    seed: bytes,
    trace: Mapping[str, str] | None = None,
) -> _effects.Flow[list[str]]:
    """Send events, retrying network errors and 5xx with exponential backoff.

    A 5xx's ``Retry-After`` (seconds; the engine sends one with a 503 while its database
    is locked or full) lengthens the wait before the next attempt, up to 10 s. The same
    request, including its ``X-Inngest-Event-Id-Seed`` header, is sent on every attempt,
    so the server mints the same event ids if an earlier response was lost.

    Args:
        settings: resolved settings (event API URL, key, env, attempts, timeout).
        events: the events to send, at least one.
        now_ms: current time in ms; the seed's time and the ``ts`` of events without one.
        seed: 10 random bytes for the event-id seed.
        trace: W3C trace-context headers of the sending request (``traceparent``), so
            the runs the events start continue its trace.

    Yields:
        ``HttpRequest`` and ``Sleep`` effects.

    Returns:
        The ids the server assigned, in input order.

    Raises:
        ConfigError: production mode with no engine URL configured.
        SendEventError: invalid events (before any I/O), or the last attempt failed.
    """
    settings.require_engine("send")
    request = _build_request(settings, events, now_ms=now_ms, seed=seed, trace=trace)
    response: _effects.HttpResponse = yield request
    attempt = 1
    while _retriable(response) and attempt < settings.send_max_attempts:
        backoff = min(_BACKOFF_CAP, _BACKOFF_FIRST * 2 ** (attempt - 1))
        yield _effects.Sleep(max(backoff, _retry_after(response)))
        attempt += 1
        response = yield request
    return _ids(response, attempt, settings.event_api_base_url)


def send_sync(
    transport: performers.SyncTransport,
    settings: _settings.Settings,
    events: Sequence[_event.Event],
    trace: Mapping[str, str] | None = None,
) -> list[str]:
    """Send events with blocking I/O; see ``send_flow``."""
    flow = send_flow(settings, events, now_ms=_now_ms(), seed=os.urandom(SEED_BYTES), trace=trace)
    return _effects.drive_sync(flow, transport.perform)


async def send_async(
    transport: performers.AsyncTransport,
    settings: _settings.Settings,
    events: Sequence[_event.Event],
    trace: Mapping[str, str] | None = None,
) -> list[str]:
    """Send events with async I/O; see ``send_flow``."""
    flow = send_flow(settings, events, now_ms=_now_ms(), seed=os.urandom(SEED_BYTES), trace=trace)
    return await _effects.drive_async(flow, transport.perform)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _build_request(
    settings: _settings.Settings,
    events: Sequence[_event.Event],
    *,
    now_ms: int,
    seed: bytes,
    trace: Mapping[str, str] | None = None,
) -> _effects.HttpRequest:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, not {len(seed)}")
    key = urllib.parse.quote(settings.event_key or NO_EVENT_KEY, safe="")
    request_headers = {
        headers.CONTENT_TYPE: headers.JSON,
        headers.SDK: _identity.SDK_HEADER,
        headers.REQ_VERSION: headers.REQUEST_VERSION,
        headers.USER_AGENT: _identity.SDK_HEADER,
        headers.EVENT_ID_SEED: f"{now_ms},{base64.b64encode(seed).decode('ascii')}",
    }
    if settings.env:
        request_headers[headers.ENV] = settings.env
    if trace:
        request_headers.update(trace)
    return _effects.HttpRequest(
        method="POST",
        url=f"{settings.event_api_base_url}/e/{key}",
        headers=request_headers,
        body=body(events, now_ms),
        timeout=settings.request_timeout,
    )


def listed(events: _event.Event | Sequence[_event.Event]) -> list[_event.Event]:
    """The events as a list; anything else (a dict is the usual slip) is a ``TypeError``."""
    found: list[object] = [events] if isinstance(events, (_event.Event, Mapping)) else list(events)
    for item in found:
        if not isinstance(item, _event.Event):
            hint = (
                ' (write stepline.Event(name="app/x", data={...}))'
                if isinstance(item, Mapping)
                else ""
            )
            raise TypeError(f"send() takes stepline.Event objects, got {type(item).__name__}{hint}")
    return [item for item in found if isinstance(item, _event.Event)]


def body(events: Sequence[_event.Event], now_ms: int) -> bytes:
    """The event API's request body: the events as JSON, ``ts`` defaulting to ``now_ms``.

    Raises:
        SendEventError: no events, a reserved name, or data that is not JSON.
    """
    if not events:
        raise _errors.SendEventError("no events to send")
    wire: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if not isinstance(event.name, str) or not event.name:
            raise _errors.SendEventError(f"event {index} has no name")
        if (reserved := event_names.reserved_problem(event.name)) is not None:
            raise _errors.SendEventError(f"event {index} name {event.name!r}: {reserved}")
        item = event.to_wire()
        if not event.ts:
            item["ts"] = now_ms
        wire.append(item)
    try:
        return json_dumpb(wire, finite=True)
    except (TypeError, ValueError) as exc:
        raise _errors.SendEventError(f"events are not JSON-serializable: {exc}") from exc


def _retry_after(response: _effects.HttpResponse) -> float:
    """The wait a response asks for, in seconds (0: none, or not a number of seconds)."""
    asked = response.retry_after
    return 0.0 if asked is None else min(asked, _RETRY_AFTER_CAP)  # none: the backoff alone


def _retriable(response: _effects.HttpResponse) -> bool:
    return response.status == 0 or response.status >= 500


def _ids(response: _effects.HttpResponse, attempts: int, origin: str) -> list[str]:
    if response.status == 0:
        raise _errors.SendEventError(
            f"event API at {origin} unreachable after {attempts} attempt(s): {response.error}"
        )
    payload = json_loads_or_none(response.body)
    if not response.ok:
        detail = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(detail, str) or not detail:
            detail = response.body[:200].decode("utf-8", "replace") or "no error message"
        stored = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(stored, list) or not all(isinstance(i, str) for i in stored):
            stored = []
        asked = response.retry_after
        raise _errors.SendEventError(
            f"event API answered {response.status} after {attempts} attempt(s): {detail}",
            ids=stored,
            http_status=response.status,
            retry_after=None if asked is None else math.ceil(asked),  # whole seconds, as a header
        )
    ids = payload.get("ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise _errors.SendEventError(
            f"event API answered {response.status} without ids", http_status=response.status
        )
    return ids
