"""Pausing and resuming a function, as flows (``FunctionHandle.pause``/``resume`` run them).

While a function is paused its runs are still created, but none of its calls runs: new
runs wait, runs in flight stop before their next call to the app, and cron ticks start
runs that wait (``crons="queue"``) or none (``crons="skip"``). Resuming runs what waited,
oldest first, with flow control applied as usual.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from typing import Any, Literal

from stepline import _settings
from stepline._api import runs as _runs
from stepline._protocol import durations
from stepline._transport import effects

__all__ = ["PausedFunction", "pause_flow", "resume_flow"]


@dataclasses.dataclass(frozen=True, slots=True)
class PausedFunction:
    """A paused function, as the engine holds it.

    Attributes:
        function_id: the function's id on the engine (``"app-fn"``).
        paused_at: since when it is paused.
        crons: what its cron ticks do while paused: ``"queue"`` (start runs that wait)
            or ``"skip"`` (start none).
        reason: why, if the pause said.
    """

    function_id: str
    paused_at: dt.datetime
    crons: Literal["queue", "skip"]
    reason: str | None = None


def pause_flow(
    settings: _settings.Settings,
    function_id: str,
    crons: Literal["queue", "skip"],
    reason: str | None,
) -> effects.Flow[PausedFunction]:
    """``POST /v1/functions/{id}/pause``; returns the function's pause."""
    if crons not in ("queue", "skip"):
        raise ValueError(f'crons: want "queue" or "skip", got {crons!r}')
    body: dict[str, Any] = {"crons": crons}
    if reason is not None:
        body["reason"] = reason
    raw = yield from _call(settings, function_id, "pause", body)
    paused = raw.get("paused") if isinstance(raw, dict) else None
    if not isinstance(paused, dict):
        raise _runs.ManagementError(f"the engine did not pause {function_id!r}: {raw!r}"[:300])
    return _paused(function_id, paused)


def resume_flow(settings: _settings.Settings, function_id: str) -> effects.Flow[bool]:
    """``POST /v1/functions/{id}/resume``; returns whether the function was paused."""
    raw = yield from _call(settings, function_id, "resume", {})  # JSON: the dev CSRF guard
    return bool(raw.get("resumed")) if isinstance(raw, dict) else False


def _call(
    settings: _settings.Settings, function_id: str, action: str, body: object
) -> effects.Flow[Any]:
    path = f"/v1/functions/{urllib.parse.quote(function_id, safe='')}/{action}"
    try:
        return (yield from _runs.call(settings, "POST", path, body, what=function_id))
    except _runs.RunNotFoundError:  # the only 404 of these routes: no such function
        raise _runs.unknown_function(settings, function_id) from None


def _paused(function_id: str, raw: dict[str, Any]) -> PausedFunction:
    at = str(raw.get("at") or "")
    try:
        when = durations.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        when = dt.datetime.now(dt.timezone.utc)
    crons: Literal["queue", "skip"] = "skip" if raw.get("crons") == "skip" else "queue"
    reason = raw.get("reason")
    return PausedFunction(function_id, when, crons, reason if isinstance(reason, str) else None)
