"""The engine driving an app written with the official ``inngest`` npm SDK (v4, express).

The engine is served over real HTTP (uvicorn in a thread; the module runs once per store,
a temp SQLite file then a fresh Postgres schema); the app is ``js_app/app.js`` under Node.
Its npm dependencies are installed once per session into ``js_app/node_modules``
(git-ignored) from the committed ``package-lock.json``.

Without Node, or when the install fails, the module is skipped locally and fails under CI
(``CI`` set), so CI can never silently stop covering the official JS SDK.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol.signing import hash_signing_key
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support import node_apps, npm, refusing
from tests._support.ci import unavailable
from tests._support.databases import database
from tests._support.polling import wait_until
from tests._support.recording import Recorder
from tests._support.server_thread import ServerThread

# Fixture setup (npm install, process start) is bounded by its own timeouts; each test's
# own body keeps the suite's 60 s limit.
pytestmark = [pytest.mark.process, pytest.mark.timeout(60, func_only=True)]

JS_APP = Path(__file__).resolve().parent / "js_app"
INNGEST_VERSION = "4.24.0"
APP_ID = "js-app"
FUNCTIONS = {
    f"{APP_ID}-{name}"
    for name in (
        "two-steps",
        "sleeper",
        "waiter",
        "parallel",
        "child",
        "invoker",
        "doomed",
        "flaky",
        "catcher",
        "sender",
    )
}
TERMINAL = {"Completed", "Failed", "Cancelled"}
SIGNING_KEY = "signkey-test-" + "5eed" * 16
EVENT_KEY = "js-event-key"
MIN_NODE = 20


@pytest.fixture(scope="session")
def js_app() -> Path:
    """``js_app`` with its npm dependencies installed (again only if the lock changed)."""
    node = shutil.which("node")
    if node is None:
        unavailable("node and npm, for the official JS SDK tests (apt-get install -y nodejs npm)")
    version = _output([node, "--version"])
    if int(version.lstrip("v").split(".")[0] or 0) < MIN_NODE:
        unavailable(f"inngest {INNGEST_VERSION} needs Node >= {MIN_NODE}, found {version!r}")
    npm.installed(JS_APP)
    check = (
        "require('express'); require('inngest/express');"
        "console.log(require('./node_modules/inngest/package.json').version)"
    )
    installed = _output([node, "-e", check])
    if installed != INNGEST_VERSION:
        unavailable(f"installed inngest is {installed!r}, not {INNGEST_VERSION}")
    return JS_APP


def _output(command: list[str]) -> str:
    done = subprocess.run(
        command, cwd=JS_APP, capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else f"<failed: {done.stderr.strip()}>"


# -- the engine over HTTP ------------------------------------------------------------------


@dataclass
class Stack:
    """The engine and the js app, both listening."""

    base: str
    app_url: str
    recorder: Recorder
    http: httpx.Client
    event_key: str = "any-key-in-dev"

    # engine API

    def send(self, name: str, data: dict[str, Any]) -> str:
        response = self.http.post(
            f"{self.base}/e/{self.event_key}", json={"name": name, "data": data}
        )
        assert response.status_code == 200, response.text
        ids: list[str] = response.json()["ids"]
        return ids[0]

    def run_of(self, event_id: str, function_id: str) -> str:
        def find() -> str | None:
            runs = self.http.get(f"{self.base}/v1/events/{event_id}/runs").json()["data"]
            found = [r["run_id"] for r in runs if r["function_id"] == function_id]
            assert len(found) <= 1, runs
            return found[0] if found else None

        return str(wait_until(find, message=f"a {function_id} run for event {event_id}"))

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()["data"]
        return run

    def finished(self, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in TERMINAL else None

        result: dict[str, Any] = wait_until(ended, timeout=timeout, message=f"run {run_id} to end")
        return result

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base}/v1/runs/{run_id}/steps")
        assert response.status_code == 200, response.text
        steps: list[dict[str, Any]] = response.json()["data"]
        return steps

    def step_in(self, run_id: str, name: str, status: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next(
                (s for s in self.steps(run_id) if s["name"] == name and s["status"] == status),
                None,
            )

        found: dict[str, Any] = wait_until(
            find, message=f"step {name} of run {run_id} to be {status}"
        )
        return found

    # the js app's own logs

    def ran(self, run_id: str) -> list[tuple[str, int]]:
        entries = self.http.get(f"{self.app_origin}/log", params={"run": run_id}).json()
        return [(e["step"], e["attempt"]) for e in entries]

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.http.get(
            f"{self.app_origin}/calls", params={"run": run_id}
        ).json()
        return calls

    @property
    def app_origin(self) -> str:
        return self.app_url.removesuffix("/api/inngest")


@contextlib.contextmanager
def serve_engine(db: str, *, signed: bool) -> Iterator[tuple[str, Recorder]]:
    """The engine's ASGI app under uvicorn in a thread, on a free loopback port.

    ``signed`` runs it in start (production) mode: calls are signed, the API wants the
    signing key as a bearer token and events an event key.
    """
    settings = EngineSettings(
        mode="start" if signed else "dev",
        signing_keys=(SIGNING_KEY,) if signed else (),
        event_keys=(EVENT_KEY,) if signed else (),
        database_url=db,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.05,
    )
    recorder = Recorder(build_app(Engine(settings)))
    server = ServerThread("stepline-engine", lifespan="on")
    try:
        server.start(recorder, timeout=15)
        yield server.url, recorder
    finally:
        server.stop()


@contextlib.contextmanager
def run_js_app(app_dir: Path, engine_url: str, log: Path, *, signed: bool) -> Iterator[str]:
    """``node app.js`` pointed at the engine; yields its serve URL."""
    env: dict[str, str] = {}
    if signed:  # cloud mode: the SDK verifies every call's signature
        env.update(INNGEST_SIGNING_KEY=SIGNING_KEY, INNGEST_EVENT_KEY=EVENT_KEY)
    with node_apps.serving(app_dir, "app.js", [engine_url, "0"], log, env) as origin:
        yield f"{origin}/api/inngest"


@contextlib.contextmanager
def synced_stack(js_app: Path, tmp: Path, db: str, *, signed: bool) -> Iterator[Stack]:
    """An engine on database ``db`` and the js app, synced."""
    headers = {"authorization": f"Bearer {SIGNING_KEY}"} if signed else {}
    with (
        serve_engine(db, signed=signed) as (base, recorder),
        run_js_app(js_app, base, tmp / "node.log", signed=signed) as app_url,
        httpx.Client(timeout=10.0, headers=headers) as http,
    ):
        synced = http.post(f"{base}/v1/apps/sync", json={"url": app_url})
        assert synced.status_code == 200, synced.text
        assert synced.json()["data"]["ok"] is True, synced.text
        stack = Stack(base, app_url, recorder, http)
        if signed:
            stack.event_key = EVENT_KEY
        yield stack


@pytest.fixture(scope="module")
def stack(
    js_app: Path, module_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One dev engine and one dev-mode js app for the module; tests use their own events."""
    tmp = tmp_path_factory.mktemp("official-js")
    with synced_stack(js_app, tmp, module_db, signed=False) as stack:
        yield stack


@pytest.fixture(scope="module")
def signed_stack(
    js_app: Path, module_store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A start-mode engine (its own database, on the same store) and a cloud-mode js app
    sharing a signing key."""
    tmp = tmp_path_factory.mktemp("official-js-signed")
    with (
        database(module_store, tmp) as db,
        synced_stack(js_app, tmp, db, signed=True) as stack,
    ):
        yield stack


# -- tests ---------------------------------------------------------------------------------


def test_sync_registers_every_function(stack: Stack) -> None:
    (body,) = stack.recorder.bodies("/fn/register")
    assert body["appName"] == APP_ID
    assert body["deployType"] == "ping"
    assert body["sdk"] == f"js:v{INNGEST_VERSION}"
    assert body["framework"] == "express"
    assert body["url"] == stack.app_url

    functions = stack.http.get(f"{stack.base}/v1/functions").json()["data"]
    assert {f["function_id"] for f in functions} == FUNCTIONS
    by_id = {f["function_id"]: f for f in functions}
    assert by_id[f"{APP_ID}-two-steps"]["triggers"] == [{"event": "js/two"}]
    step = by_id[f"{APP_ID}-flaky"]["config"]["steps"]["step"]
    assert step["retries"] == {"attempts": 2}
    assert step["runtime"]["url"] == f"{stack.app_url}?fnId={APP_ID}-flaky&stepId=step"

    (app,) = stack.http.get(f"{stack.base}/v1/apps").json()["data"]
    assert app["app_id"] == APP_ID
    assert app["url"] == stack.app_url


def test_sequential_steps_are_checkpointed_in_one_call(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/two", {"n": 41}), f"{APP_ID}-two-steps")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"a": 42, "b": 84}

    steps = stack.steps(run_id)
    assert [(s["name"], s["op"], s["status"], s["output"]) for s in steps] == [
        ("add-one", "StepRun", "Completed", 42),
        ("double", "StepRun", "Completed", 84),
    ]
    # both steps reached the engine through /v1/checkpoint/{run}/async, not in a 206
    checkpoints = stack.recorder.bodies(f"/v1/checkpoint/{run_id}/async")
    assert checkpoints, "the js SDK never checkpointed"
    checkpointed = [op for body in checkpoints for op in body["steps"]]
    assert [op["id"] for op in checkpointed] == [s["id"] for s in steps]
    assert all(op["op"] == "StepRun" for op in checkpointed)
    assert all(body["run_id"] == run_id for body in checkpoints)
    # one call did everything: the SDK answered it with RunComplete
    (call,) = stack.calls(run_id)
    assert call["stepId"] == "step"
    assert call["qi"], "the engine did not send ctx.qi_id, so js could not checkpoint"
    assert stack.ran(run_id) == [("add-one", 0), ("double", 0)]


def test_sleep_between_steps(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/sleep", {}), f"{APP_ID}-sleeper")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"slept": True}

    before, nap, after = stack.steps(run_id)
    assert (before["name"], before["op"], before["status"]) == ("before", "StepRun", "Completed")
    assert (nap["name"], nap["op"], nap["status"]) == ("nap", "Sleep", "Completed")
    assert nap["output"] is None
    assert (after["name"], after["op"], after["status"]) == ("after", "StepRun", "Completed")
    assert after["output"] - before["output"] >= 1000
    assert stack.ran(run_id) == [("before", 0), ("after", 0)]
    # the first call ran "before" and reported the sleep; the wake-up call did the rest
    assert len(stack.calls(run_id)) == 2


def test_wait_for_event_with_match_if_and_timeout(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/wait", {"ticket": "T-1"}), f"{APP_ID}-waiter")

    by_match = stack.step_in(run_id, "by-match", "Waiting")
    assert by_match["op"] == "WaitForEvent"
    assert by_match["wait"]["event"] == "js/approved"
    stack.send("js/approved", {"ticket": "T-2", "by": "mallory"})  # another ticket
    stack.send("js/approved", {"ticket": "T-1", "by": "alice"})

    by_if = stack.step_in(run_id, "by-if", "Waiting")
    assert by_if["wait"]["if"] == "async.data.ticket == event.data.ticket && async.data.ok == true"
    stack.send("js/shipped", {"ticket": "T-1", "ok": False})  # the expression is false
    stack.send("js/shipped", {"ticket": "T-1", "ok": True})

    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"approvedBy": "alice", "shipped": "T-1", "missed": None}
    steps = stack.steps(run_id)
    assert [(s["name"], s["status"]) for s in steps] == [
        ("ready", "Completed"),
        ("by-match", "Completed"),
        ("by-if", "Completed"),
        ("timed-out", "Completed"),
    ]
    assert steps[3]["output"] is None
    assert stack.ran(run_id) == [("ready", 0)]


def test_parallel_steps_are_planned_and_run_once_each(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/parallel", {"base": 10}), f"{APP_ID}-parallel")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"parts": [10, 11, 12], "total": 33}

    steps = stack.steps(run_id)
    assert sorted(s["name"] for s in steps[:3]) == ["part-a", "part-b", "part-c"]
    assert steps[3]["name"] == "total"
    assert all(s["status"] == "Completed" and s["attempts"] == 1 for s in steps)
    assert sorted(stack.ran(run_id)) == [
        ("part-a", 0),
        ("part-b", 0),
        ("part-c", 0),
        ("total", 0),
    ]
    # each part ran in its own targeted call, after a discovery call planned all three
    targeted = [c["stepId"] for c in stack.calls(run_id) if c["stepId"] != "step"]
    assert sorted(targeted) == sorted(s["id"] for s in steps[:3])


def test_invoke_another_js_function(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/invoke", {"x": 3}), f"{APP_ID}-invoker")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"child": {"times": 30}}

    (step,) = stack.steps(run_id)
    assert (step["name"], step["op"]) == ("call-child", "InvokeFunction")
    assert step["status"] == "Completed"
    assert step["output"] == {"times": 30}
    assert step["wait"]["function_id"] == f"{APP_ID}-child"

    children = stack.http.get(
        f"{stack.base}/v1/runs", params={"function_id": f"{APP_ID}-child"}
    ).json()["data"]
    (child,) = [c for c in children if c["parent_run_id"] == run_id]
    assert child["status"] == "Completed"
    assert child["output"] == {"times": 30}
    assert stack.ran(child["run_id"]) == [("times-ten", 0)]


def test_non_retriable_error_fails_without_retrying(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/doomed", {}), f"{APP_ID}-doomed")
    run = stack.finished(run_id)
    assert run["status"] == "Failed"
    assert run["output"]["name"] == "NonRetriableError"
    assert run["output"]["message"] == "this cannot work"

    (step,) = stack.steps(run_id)
    assert (step["name"], step["status"], step["output"]) == ("fine", "Completed", "ok")
    # retries: 3, but the error said not to: one call, each body once
    assert [c["attempt"] for c in stack.calls(run_id)] == [0]
    assert stack.ran(run_id) == [("fine", 0), ("throw", 0)]

    def failed_event() -> dict[str, Any] | None:
        events = stack.http.get(
            f"{stack.base}/v1/events", params={"name": "inngest/function.failed"}
        ).json()["data"]
        return next((e for e in events if e["data"].get("run_id") == run_id), None)

    event = wait_until(failed_event, message="inngest/function.failed")
    assert event["data"]["function_id"] == f"{APP_ID}-doomed"
    assert event["data"]["error"]["name"] == "NonRetriableError"
    assert event["data"]["error"]["message"] == "this cannot work"


def test_failing_step_is_retried_then_succeeds(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/flaky", {}), f"{APP_ID}-flaky")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"value": "ok on attempt 1"}

    (step,) = stack.steps(run_id)
    assert (step["name"], step["op"], step["status"]) == ("wobbly", "StepRun", "Completed")
    assert step["attempts"] == 2
    assert step["output"] == "ok on attempt 1"
    assert "error" not in step
    assert stack.ran(run_id) == [("wobbly", 0), ("wobbly", 1)]
    # js checkpoints nothing on a retry (attempt > 0): it reports the step in a 206, and a
    # fresh discovery call (attempt 0 again) finishes the run
    assert [c["attempt"] for c in stack.calls(run_id)] == [0, 1, 0]


def test_step_failing_every_attempt_is_caught_by_the_function(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/catch", {}), f"{APP_ID}-catcher")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    # the StepFailed error memo went back to js intact enough to rebuild the error
    assert run["output"] == {
        "caught": {"name": "TypeError", "message": "boom"},
        "after": "recovered",
    }

    failed, after = stack.steps(run_id)
    assert (failed["name"], failed["op"], failed["status"]) == (
        "always-fails",
        "StepFailed",
        "Failed",
    )
    assert failed["attempts"] == 2
    assert failed["error"]["name"] == "TypeError"
    assert failed["error"]["message"] == "boom"
    assert (after["name"], after["status"], after["output"]) == (
        "after-failure",
        "Completed",
        "recovered",
    )
    # retries: 1 is two attempts of the step, then the rest in one discovery call
    assert stack.ran(run_id) == [("always-fails", 0), ("always-fails", 1), ("after-failure", 0)]
    assert [c["attempt"] for c in stack.calls(run_id)] == [0, 1, 0]


def test_send_event_from_a_step_starts_a_run(stack: Stack) -> None:
    run_id = stack.run_of(stack.send("js/send", {"x": 7}), f"{APP_ID}-sender")
    run = stack.finished(run_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"count": 1}

    (step,) = stack.steps(run_id)
    assert (step["name"], step["status"]) == ("emit", "Completed")
    (event_id,) = step["output"]["ids"]
    child_id = stack.run_of(event_id, f"{APP_ID}-child")
    child = stack.finished(child_id)
    assert child["output"] == {"times": 70}
    assert child["events"][0]["name"] == "js/child"
    assert child["events"][0]["data"] == {"x": 7}


def test_signed_calls_in_start_mode(signed_stack: Stack) -> None:
    stack = signed_stack
    # the app really checks signatures: an unsigned call is refused
    unsigned = stack.http.post(
        f"{stack.app_url}?fnId={APP_ID}-two-steps&stepId=step",
        json={"event": {"name": "js/two", "data": {"n": 1}}, "steps": {}, "ctx": {}},
    )
    assert unsigned.status_code == 401, unsigned.text

    run_id = stack.run_of(stack.send("js/two", {"n": 1}), f"{APP_ID}-two-steps")
    run = stack.finished(run_id)
    assert run["status"] == "Completed", run["output"]
    assert run["output"] == {"a": 2, "b": 4}
    assert stack.ran(run_id) == [("add-one", 0), ("double", 0)]

    # js authenticates to the engine with the hashed key (prefix kept), which it accepts
    bearer = f"Bearer signkey-test-{hash_signing_key(SIGNING_KEY)}"
    (register,) = stack.recorder.to("/fn/register")
    assert register.body["appName"] == APP_ID
    assert register.authorization == bearer
    checkpoints = stack.recorder.to(f"/v1/checkpoint/{run_id}/async")
    assert checkpoints
    assert {c.authorization for c in checkpoints} == {bearer}
    refused = httpx.post(f"{stack.base}/v1/checkpoint/{run_id}/async", json={"steps": []})
    assert refused.status_code == 401


def test_moving_the_signed_app_to_another_origin_needs_the_trust_probe(
    signed_stack: Stack,
) -> None:
    """A registration moving the app is accepted once the js SDK answers the signed probe."""
    stack = signed_stack
    registered = stack.recorder.to("/fn/register")[0].body
    text = json.dumps(registered)
    assert stack.app_url in text

    def register(url: str) -> httpx.Response:
        return stack.http.post(
            f"{stack.base}/fn/register", json=json.loads(text.replace(stack.app_url, url))
        )

    def registered_url() -> str:
        [app] = stack.http.get(f"{stack.base}/v1/apps").json()["data"]
        return str(app["url"])

    refused = register(refusing.url("/api/inngest"))  # nothing answers the probe there
    assert refused.status_code == 403, refused.text
    assert registered_url() == stack.app_url
    moved = stack.app_url.replace("://127.0.0.1:", "://localhost:")
    accepted = register(moved)  # the same js app under another origin: a signed answer
    assert accepted.status_code == 200, accepted.text
    assert registered_url() == moved
    back = register(stack.app_url)
    assert back.status_code == 200, back.text
    assert registered_url() == stack.app_url
