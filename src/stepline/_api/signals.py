"""Signals to a waiting run, as flows, and the errors they raise.

A function waits with ``ctx.step.wait_for_signal(step_id, signal=name, timeout=...)``;
``client.get_run(run_id).signal(name, data)`` completes that step (``POST
/v1/runs/{id}/signals/{name}``), and ``client.signal_key(key, data)`` completes a wait by
its key (``POST /v1/signals``): a run's token (``ctx.signal_token(name)``) or the key an
official SDK's ``step.waitForSignal`` waits under. A signal completes a wait once.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from stepline import _settings
from stepline._api import runs as _runs
from stepline._transport import effects

__all__ = [
    "SignalAlreadyReceivedError",
    "SignalNotWaitingError",
    "key_flow",
    "signal_flow",
]


class SignalNotWaitingError(_runs.RunNotFoundError):
    """No such run, or nothing in it waits for that signal (yet, or any more)."""

    code = "signal_not_waiting"


class SignalAlreadyReceivedError(_runs.ManagementError):
    """The wait that signal addresses was already completed (or timed out)."""

    code = "signal_already_received"


def _sent(settings: _settings.Settings, path: str, body: object, what: str) -> effects.Flow[str]:
    try:
        raw = yield from _runs.call(settings, "POST", path, body, what=what)
    except _runs.RunNotFoundError as exc:
        raise SignalNotWaitingError(exc.message, status=404) from None
    except _runs.RunNotStartedError as exc:  # the engine's 409
        raise SignalAlreadyReceivedError(exc.message, status=409) from None
    return str(raw.get("run_id")) if isinstance(raw, dict) else ""


def signal_flow(
    settings: _settings.Settings, run_id: str, name: str, data: Any
) -> effects.Flow[str]:
    """``POST /v1/runs/{run_id}/signals/{name}``; returns the run id."""
    quote = urllib.parse.quote
    path = f"/v1/runs/{quote(run_id, safe='')}/signals/{quote(name, safe='')}"
    return (yield from _sent(settings, path, {"data": data}, f"{run_id} signal {name}"))


def key_flow(settings: _settings.Settings, key: str, data: Any) -> effects.Flow[str]:
    """``POST /v1/signals``; returns the id of the run the signal resumed."""
    return (yield from _sent(settings, "/v1/signals", {"signal": key, "data": data}, "signal"))
