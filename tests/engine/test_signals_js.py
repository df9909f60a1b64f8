"""The official JS SDK's ``step.waitForSignal`` / ``step.sendSignal`` against the engine.

``js_app/signal_app.js`` (inngest 4.24.0 under Node) waits for a signal the test names;
the engine runs over real HTTP (uvicorn in a thread), on both stores. A signal sent to
Inngest's ``POST /v1/signals`` (or from the app's own ``sendSignal`` step) resumes the
wait with ``{signal, data}``; a timeout with null; a second signal finds nothing waiting
(404 by key, as Inngest answers; 409 by run and name); ``onConflict`` fails the second
waiter or lets it take the key over; the unauthenticated hook refuses an app's key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine._cli.commands import main
from stepline.engine._cli.signals import EXIT_ALREADY
from tests._support import node_apps
from tests._support.polling import wait_until

from .test_official_js import TERMINAL, js_app, serve_engine

pytestmark = [pytest.mark.process, pytest.mark.timeout(90, func_only=True)]

__all__ = ["js_app"]  # the fixture, imported for this module's tests


@contextlib.contextmanager
def signal_app(app_dir: Path, engine_url: str, log: Path) -> Iterator[str]:
    """``node signal_app.js`` pointed at the engine; yields its serve URL."""
    with node_apps.serving(app_dir, "signal_app.js", [engine_url, "0"], log) as origin:
        yield f"{origin}/api/inngest"


class Stack:
    def __init__(self, base: str, http: httpx.Client) -> None:
        self.base = base
        self.http = http

    def start(self, event: str, data: dict[str, Any]) -> str:
        sent = self.http.post(f"{self.base}/e/dev", json={"name": event, "data": data})
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["ids"][0]

        def find() -> str | None:
            runs = self.http.get(f"{self.base}/v1/events/{event_id}/runs").json()["data"]
            return runs[0]["run_id"] if runs else None

        return str(wait_until(find, message=f"a run for {event}"))

    def waiting(self, run_id: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            steps = self.http.get(f"{self.base}/v1/runs/{run_id}/steps").json()["data"]
            return next((s for s in steps if s["status"] == "Waiting"), None)

        found: dict[str, Any] = wait_until(find, message=f"run {run_id} to wait")
        return found

    def finished(self, run_id: str) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run = self.http.get(f"{self.base}/v1/runs/{run_id}").json()["data"]
            return run if run["status"] in TERMINAL else None

        found: dict[str, Any] = wait_until(ended, timeout=30, message=f"run {run_id} to end")
        return found

    def signal(self, key: str, data: Any) -> httpx.Response:
        return self.http.post(f"{self.base}/v1/signals", json={"signal": key, "data": data})


@pytest.fixture
def stack(js_app: Path, db: str, tmp_path: Path) -> Iterator[Stack]:
    with (
        serve_engine(db, signed=False) as (base, _recorder),
        signal_app(js_app, base, tmp_path / "node.log") as app_url,
        httpx.Client(timeout=10.0) as http,
    ):
        synced = http.post(f"{base}/v1/apps/sync", json={"url": app_url})
        assert synced.status_code == 200, synced.text
        assert synced.json()["data"]["ok"], synced.text
        yield Stack(base, http)


def test_wait_for_signal_resumes_once_with_signal_and_data(stack: Stack) -> None:
    run_id = stack.start("js/wait-signal", {"signal": f"order-{id(stack)}-paid"})
    step = stack.waiting(run_id)
    key = step["wait"]["key"]
    assert step["op"] == "WaitForSignal"
    assert step["wait"]["signal"] == key
    # the hook takes only run tokens the engine issued: an app's own key is refused
    hook = stack.http.post(f"{stack.base}/v1/signals/hooks/{key}", json={"x": 1})
    assert hook.status_code == 404
    answer = stack.signal(key, {"amount": 42})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"data": {"run_id": run_id}}
    run = stack.finished(run_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"got": {"signal": key, "data": {"amount": 42}}}
    assert stack.signal(key, {"amount": 1}).status_code == 404  # nothing waits: Inngest's 404
    again = stack.http.post(f"{stack.base}/v1/runs/{run_id}/signals/{key}", json={"data": 1})
    assert again.status_code == 409, again.text
    assert "already received" in again.json()["error"]


def test_a_timeout_resumes_with_null(stack: Stack) -> None:
    run_id = stack.start("js/wait-signal", {"signal": "never-sent", "timeout": "1s"})
    run = stack.finished(run_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"got": None}


def test_send_signal_from_the_apps_own_step(stack: Stack) -> None:
    key = f"handoff-{id(stack)}"
    waiter = stack.start("js/wait-signal", {"signal": key})
    stack.waiting(waiter)
    sender = stack.start("js/send-signal", {"signal": key, "payload": {"ok": True}})
    assert stack.finished(sender)["output"] == {"sent": {"runId": waiter}}
    assert stack.finished(waiter)["output"] == {"got": {"signal": key, "data": {"ok": True}}}


def test_on_conflict_fail_and_replace(stack: Stack) -> None:
    key = f"shared-{id(stack)}"
    first = stack.start("js/wait-signal", {"signal": key, "timeout": "4s"})
    stack.waiting(first)
    refused = stack.start("js/wait-signal", {"signal": key, "onConflict": "fail"})
    run = stack.finished(refused)
    assert run["status"] == "Failed", run
    assert "SignalConflictError" in str(run["output"]) or "already waits" in str(run["output"])
    taker = stack.start("js/wait-signal", {"signal": key, "onConflict": "replace"})
    stack.waiting(taker)
    assert stack.signal(key, "mine").status_code == 200
    assert stack.finished(taker)["output"] == {"got": {"signal": key, "data": "mine"}}
    # the replaced wait stayed pending until its own timeout
    assert stack.finished(first)["output"] == {"got": None}


def test_the_cli_signals_a_run(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    key = f"cli-{id(stack)}"
    run_id = stack.start("js/wait-signal", {"signal": key})
    stack.waiting(run_id)
    signal = ["runs", "signal", run_id, key, "--url", stack.base]
    assert main([*signal, "--data", "not json"]) == 2
    assert main([*signal, "--data", '{"from": "cli"}']) == 0
    assert f"signal '{key}' delivered to run {run_id}" in capsys.readouterr().out
    assert stack.finished(run_id)["output"] == {"got": {"signal": key, "data": {"from": "cli"}}}
    assert main(signal) == EXIT_ALREADY
    assert "already received" in capsys.readouterr().err
    assert main(["runs", "signal", run_id, "other", "--url", stack.base]) == 1
    assert "not waiting for signal 'other'" in capsys.readouterr().err
