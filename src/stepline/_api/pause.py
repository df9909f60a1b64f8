"""The client's methods for pausing and resuming functions (async, and ``*_sync`` twins).

While a function is paused its runs are still created, but none of its calls runs: new
runs wait, runs in flight stop before their next call to the app, and cron ticks start
runs that wait (``crons="queue"``) or none (``crons="skip"``). Resuming runs what waited,
oldest first, with flow control applied as usual.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from typing import TYPE_CHECKING, Any, Literal

from stepline import _settings
from stepline._api import management
from stepline._api import runs as _runs
from stepline._transport import effects, performers

if TYPE_CHECKING:
    from stepline._definition.function import Function

__all__ = ["PauseMixin", "PausedFunction", "pause_flow", "resume_flow"]


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
        where = f"the engine at {settings.api_base_url}"
        message = _runs.not_registered_message(function_id, where)
        raise _runs.FunctionNotRegisteredError(message, status=404) from None


def _paused(function_id: str, raw: dict[str, Any]) -> PausedFunction:
    at = str(raw.get("at") or "")
    try:
        when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        when = dt.datetime.now(dt.timezone.utc)
    crons: Literal["queue", "skip"] = "skip" if raw.get("crons") == "skip" else "queue"
    reason = raw.get("reason")
    return PausedFunction(function_id, when, crons, reason if isinstance(reason, str) else None)


class PauseMixin:
    """Mixed into ``Client``: pausing and resuming functions."""

    settings: _settings.Settings
    _sync_transport: performers.SyncTransport
    _async_transport: performers.AsyncTransport

    async def pause(
        self,
        function: Function | str,
        *,
        crons: Literal["queue", "skip"] = "queue",
        reason: str | None = None,
    ) -> PausedFunction:
        """Pause ``function``: its runs are created but none of its calls runs until resumed.

        A call already running finishes (with checkpointing, the steps the SDK runs in
        that call); the run stops before its next call. Sleeps and waits keep their
        timers. Pausing a paused function changes its ``crons`` and ``reason``.

        Args:
            function: the function, or its id (``"app-fn"``; a bare id gets this app's prefix).
            crons: what its cron ticks do meanwhile: ``"queue"`` starts runs that wait,
                ``"skip"`` starts none.
            reason: why (shown in the dashboard and ``stepline functions list``).

        Raises:
            FunctionNotRegisteredError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the request.
        """
        flow = pause_flow(self.settings, self._fn_id(function), crons, reason)
        return await effects.drive_async(flow, self._async_transport.perform)

    def pause_sync(
        self,
        function: Function | str,
        *,
        crons: Literal["queue", "skip"] = "queue",
        reason: str | None = None,
    ) -> PausedFunction:
        """Blocking twin of ``pause``."""
        flow = pause_flow(self.settings, self._fn_id(function), crons, reason)
        return effects.drive_sync(flow, self._sync_transport.perform)

    async def resume(self, function: Function | str) -> bool:
        """Resume a paused function: what waited runs, oldest first.

        Returns:
            Whether the function was paused.

        Raises:
            FunctionNotRegisteredError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the request.
        """
        flow = resume_flow(self.settings, self._fn_id(function))
        return await effects.drive_async(flow, self._async_transport.perform)

    def resume_sync(self, function: Function | str) -> bool:
        """Blocking twin of ``resume``."""
        flow = resume_flow(self.settings, self._fn_id(function))
        return effects.drive_sync(flow, self._sync_transport.perform)

    def _fn_id(self, function: Function | str) -> str:
        return management.function_id(self.settings.app_id, function)
