"""The kit's SSE stream of a run cancelled while a step waits: the
step's last event is ``Cancelled``, sent before the ``result``; never "Waiting" forever.
Both faces, on the embedded engine of ``test_webkit_core``'s fixtures."""

from __future__ import annotations

from typing import Any

from tests.apps.run_management import App

from .embedded_support import LoopThread
from .test_webkit_core import Caller, app, face, loop, routes_for, start

__all__ = ["app", "face", "loop"]  # the fixtures this module uses


def test_events_of_a_run_cancelled_while_waiting(app: App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app), face, loop)
    run_id = start(call, "waiter", {"token": f"cancel-{face}"})
    cancelled: list[str] = []

    def on_event(name: str, data: Any) -> None:
        if name == "step" and data["status"] == "Waiting" and not cancelled:
            cancelled.append(app.client.get_run_sync(run_id).cancel().value)

    events = call.events(call("GET", f"/runs/{run_id}/events"), on_event)
    assert cancelled == ["Cancelled"]
    steps = [(d["name"], d["status"]) for name, d in events if name == "step"]
    assert steps[-2:] == [("go", "Waiting"), ("go", "Cancelled")]
    assert [name for name, _ in events][-1] == "result"
    assert events[-1][1]["status"] == "Cancelled"
    [last_step] = [d for name, d in events if name == "step" and d["status"] == "Cancelled"]
    assert last_step["ended_at"] is not None
