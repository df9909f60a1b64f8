"""``client.execute`` / ``execute_sync``: start a run and return its output once it ends.

The flow (``_runs.execute_flow``) is first driven by hand with made-up answers: one
``POST /v1/functions/{id}/runs?wait=`` whose answer carries the ended run is the whole
exchange; an answer without it (an engine that ignores ``?wait``), or with a run still
going, goes on with ``GET /v1/runs/{id}?wait=``. Then against real engines, as
``test_management`` does it: a real engine over HTTP (uvicorn on loopback, the engine's
own ASGI app) and an ``EmbeddedEngine`` (its mount, the same app), through the blocking
and the async face of the client; and the engine's route itself, ``?wait=`` included.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import stepline
from stepline import RunStatus, _settings
from stepline._api import runs as _runs
from stepline._transport import effects
from tests.apps import run_management

from . import stacks
from .embedded_support import Face, poll
from .stacks import Stack

API = "http://127.0.0.1:8288"
RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
FUNCTION = "app-f"


# -- the flow, driven by hand -------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings() -> _settings.Settings:
    return _settings.resolve(app_id="app", environ={}, is_production=False, api_base_url=API)


def flow(
    clock: Clock | None = None, timeout: float | None = None, **options: Any
) -> effects.Flow[Any]:
    arguments: dict[str, Any] = {"idempotency_key": None, "started_by": None, "attributes": None}
    arguments.update(options)
    return _runs.execute_flow(
        settings(),
        FUNCTION,
        {"x": 1},
        timeout=timeout,
        clock=clock or Clock(),
        **arguments,
    )


def reply(status: int, payload: object) -> effects.HttpResponse:
    return effects.HttpResponse(
        status, {"content-type": "application/json"}, json.dumps(payload).encode()
    )


def run_view(status: str, output: object = None) -> dict[str, Any]:
    """A run as ``GET /v1/runs/{id}`` shows it (the fields the client reads)."""
    return {"run_id": RUN_ID, "function_id": FUNCTION, "status": status, "output": output}


def started(run: dict[str, Any] | None = None, status: int = 201) -> effects.HttpResponse:
    data: dict[str, Any] = {"run_id": RUN_ID, "function_id": FUNCTION, "created": status == 201}
    if run is not None:
        data["run"] = run
    return reply(status, {"data": data})


def finish(running: effects.Flow[Any], answer: effects.HttpResponse) -> Any:
    """Send the last answer; the flow must return (no further request)."""
    try:
        request = running.send(answer)
    except StopIteration as stop:
        return stop.value
    pytest.fail(f"a further request: {request.method} {request.url}")


def next_request(running: effects.Flow[Any], answer: effects.HttpResponse) -> effects.HttpRequest:
    request = running.send(answer)
    assert isinstance(request, effects.HttpRequest)
    return request


def test_a_run_that_ends_within_the_wait_is_one_request() -> None:
    running = flow(idempotency_key="k1", started_by="alice", attributes={"tag": "t"})
    request = next(running)
    assert isinstance(request, effects.HttpRequest)
    assert request.method == "POST"
    assert request.url == f"{API}/v1/functions/{FUNCTION}/runs?wait=25"
    assert request.timeout > 25, "the socket outlasts the engine's wait"
    body = {"data": {"x": 1}, "idempotency_key": "k1", "started_by": "alice"}
    assert request.value == {**body, "attributes": {"tag": "t"}}
    assert json.loads(request.body or b"") == request.value
    assert finish(running, started(run_view("Completed", {"ok": True}))) == {"ok": True}
    # an idempotent start (200) of a run that had ended answers alike
    running = flow()
    next(running)
    assert finish(running, started(run_view("Completed", [1, 2]), status=200)) == [1, 2]


@pytest.mark.parametrize(
    ("timeout", "query"),
    [(None, "?wait=25"), (60.0, "?wait=25"), (3.0, "?wait=3"), (0.5, "?wait=0.5")],
)
def test_the_start_waits_up_to_25_seconds_or_the_timeout(timeout: float | None, query: str) -> None:
    request = next(flow(timeout=timeout))
    assert (request.method, request.url) == ("POST", f"{API}/v1/functions/{FUNCTION}/runs{query}")


def test_an_engine_that_ignores_wait_is_long_polled() -> None:
    clock = Clock()
    running = flow(clock, timeout=40.0)
    assert next(running).url.endswith("/runs?wait=25")
    clock.now += 25.0  # the start took its time: 15 s are left
    poll_request = next_request(running, started())  # no ``run``: the engine did not wait
    assert (poll_request.method, poll_request.url) == ("GET", f"{API}/v1/runs/{RUN_ID}?wait=15")
    assert finish(running, reply(200, {"data": run_view("Completed", "done")})) == "done"

    running = flow()  # no timeout: polls of 25 s until the run ends
    next(running)
    poll_request = next_request(running, started(status=200))
    assert poll_request.url == f"{API}/v1/runs/{RUN_ID}?wait=25"
    again = next_request(running, reply(200, {"data": run_view("Running")}))
    assert again.url == f"{API}/v1/runs/{RUN_ID}?wait=25"
    assert finish(running, reply(200, {"data": run_view("Completed", 7)})) == 7


@pytest.mark.parametrize("status", ["Running", "Queued"])
def test_a_run_still_going_after_the_wait_is_long_polled(status: str) -> None:
    clock = Clock()
    running = flow(clock, timeout=30.0)
    assert next(running).url.endswith("/runs?wait=25")
    clock.now += 25.0
    poll_request = next_request(running, started(run_view(status)))
    assert (poll_request.method, poll_request.url) == ("GET", f"{API}/v1/runs/{RUN_ID}?wait=5")
    assert finish(running, reply(200, {"data": run_view("Completed", "late")})) == "late"


def test_a_run_still_going_at_the_timeout_raises_run_timeout_error() -> None:
    clock = Clock()
    running = flow(clock, timeout=2.0)
    assert next(running).url.endswith("/runs?wait=2")
    clock.now += 2.0
    last = next_request(running, started(run_view("Running")))  # one look, no wait left
    assert last.url == f"{API}/v1/runs/{RUN_ID}"
    with pytest.raises(stepline.RunTimeoutError, match=r"still Running after 2s"):
        running.send(reply(200, {"data": run_view("Running")}))

    running = flow(Clock(), timeout=0.0)  # no time at all: the start does not wait
    assert next(running).url == f"{API}/v1/functions/{FUNCTION}/runs"


def test_an_ended_run_in_the_first_answer_raises_as_result_does() -> None:
    running = flow()
    next(running)
    error = {"error": {"name": "NonRetriableError", "message": "boom", "stack": "..."}}
    with pytest.raises(stepline.RunFailedError, match="NonRetriableError: boom") as failed:
        running.send(started(run_view("Failed", error)))
    assert failed.value.error["message"] == "boom"
    assert failed.value.run.run_id == RUN_ID

    running = flow()
    next(running)
    cancelled = {**run_view("Cancelled"), "cancel_reason": "by test"}
    with pytest.raises(stepline.RunCancelledError, match=r"was cancelled \(by test\)"):
        running.send(started(cancelled))


def test_refused_starts_raise_as_start_does() -> None:
    running = flow()
    next(running)
    with pytest.raises(stepline.FunctionNotFoundError, match="app-f") as unknown:
        running.send(reply(404, {"error": "function not found"}))
    assert unknown.value.http_status == 404

    running = flow()
    next(running)
    with pytest.raises(stepline.RunNotStartedError, match="rate_limited"):
        running.send(reply(409, {"error": "'app-f' started no run: rate_limited"}))

    running = flow()
    next(running)
    with pytest.raises(stepline.ManagementError, match=r"POST /v1/functions/app-f/runs with 400"):
        running.send(reply(400, {"error": "wait: want seconds from 0 to 60"}))


# -- against real engines -------------------------------------------------------------------


@pytest.fixture(scope="module", params=["http", "embedded"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    database = str(tmp_path_factory.mktemp(request.param) / "engine.db")
    with stacks.stack(request.param, database) as built:
        yield built


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, stack: Stack) -> Face:
    return stack.face(request.param)


@pytest.fixture
def app(stack: Stack) -> run_management.App:
    return stack.app


def execute(face: Face, *args: Any, **kwargs: Any) -> Any:
    """``execute_sync`` or ``await execute`` (on the face's loop), as the face is."""
    return face._call("execute", *args, **kwargs)


def tagged(face: Face, function: stepline.Function, tag: str) -> list[stepline.RunInfo]:
    runs, _ = face.list_runs(function=function, attributes={"tag": tag}, limit=500)
    return list(runs)


def test_execute_returns_the_output(
    face: Face, app: run_management.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex

    def no_polls(*args: object, **kwargs: object) -> object:
        raise AssertionError("execute polled: the start's answer had no ended run")

    # the engines answer the start with the ended run: nothing more to ask
    monkeypatch.setattr(_runs, "get_flow", no_polls)
    assert execute(face, app.order, {"x": 1}, attributes={"tag": tag}) == {"n": 2, "x": 1}
    assert execute(face, "order", {"x": 2}, timeout=20) == {"n": 2, "x": 2}
    assert execute(face, "shop-order") == {"n": 2, "x": None}
    [run] = tagged(face, app.order, tag)
    assert (run.status, run.output) == (RunStatus.COMPLETED, {"n": 2, "x": 1})


def test_execute_records_started_by_and_attributes(face: Face, app: run_management.App) -> None:
    tag = uuid.uuid4().hex
    execute(face, app.order, {"x": tag}, started_by="user-7", attributes={"tag": tag, "n": 3})
    [run] = tagged(face, app.order, tag)
    assert run.started_by == "user-7"
    assert run.attributes == {"tag": tag, "n": "3"}


def test_execute_raises_run_failed_error(face: Face, app: run_management.App) -> None:
    tag = uuid.uuid4().hex
    with pytest.raises(stepline.RunFailedError, match="NonRetriableError: boom") as failed:
        execute(face, app.order, {"fail": True}, attributes={"tag": tag})
    assert isinstance(failed.value, stepline.ManagementError)
    assert failed.value.error["name"] == "NonRetriableError"
    assert failed.value.error["message"] == "boom"
    assert failed.value.run.status is RunStatus.FAILED
    [run] = tagged(face, app.order, tag)
    assert run.run_id == failed.value.run.run_id
    assert run.status is RunStatus.FAILED


def test_execute_times_out_and_the_run_goes_on(face: Face, app: run_management.App) -> None:
    tag = uuid.uuid4().hex
    began = time.monotonic()
    with pytest.raises(
        stepline.RunTimeoutError, match=r"still (Queued|Running) after 0\.3s"
    ) as timed_out:
        execute(face, app.sleeper, timeout=0.3, attributes={"tag": tag})
    assert isinstance(timed_out.value, TimeoutError)
    assert time.monotonic() - began < 10, "waited past the timeout"
    [run] = tagged(face, app.sleeper, tag)
    assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING), "the run is not cancelled"
    handle = face.get_run(run.run_id)
    poll(lambda: [s for s in handle.steps() if s.name == "nap" and s.status == "Sleeping"])
    assert handle.status() is RunStatus.RUNNING
    assert handle.cancel() is RunStatus.CANCELLED


def test_execute_with_an_idempotency_key_returns_the_first_runs_output(
    face: Face, app: run_management.App
) -> None:
    key = tag = uuid.uuid4().hex
    first = execute(face, app.order, {"x": "first"}, idempotency_key=key, attributes={"tag": tag})
    assert first == {"n": 2, "x": "first"}
    again = execute(face, "order", {"x": "second"}, idempotency_key=key, attributes={"tag": tag})
    assert again == first
    assert len(tagged(face, app.order, tag)) == 1, "a second run was started"


def test_execute_an_unknown_or_refused_function(face: Face, app: run_management.App) -> None:
    with pytest.raises(stepline.FunctionNotFoundError, match="shop-nope") as unknown:
        execute(face, "nope")
    assert unknown.value.http_status == 404
    assert "stepline dev -u" in unknown.value.message
    key = uuid.uuid4().hex
    assert execute(face, app.limited, {"k": key}) == "ran"
    with pytest.raises(stepline.RunNotStartedError, match="rate_limited") as refused:
        execute(face, app.limited, {"k": key})
    assert refused.value.http_status == 409


def test_execute_data_must_be_json(face: Face, app: run_management.App) -> None:
    with pytest.raises(stepline.ManagementError, match="not JSON-serializable"):
        execute(face, app.order, {"x": object()})


# -- the engine's route: POST /v1/functions/{id}/runs?wait= ---------------------------------------


ORDER_RUNS = "/v1/functions/shop-order/runs"


def test_a_start_with_wait_answers_with_the_ended_run(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    body = {"data": {"x": tag}, "idempotency_key": tag, "attributes": {"tag": tag}}
    status, answer = stack.call("POST", f"{ORDER_RUNS}?wait=5", body)
    assert status == 201, answer
    data = answer["data"]
    assert (data["function_id"], data["created"]) == ("shop-order", True)
    run = data["run"]
    assert (run["run_id"], run["status"]) == (data["run_id"], "Completed")
    assert run["output"] == {"n": 2, "x": tag}
    # the run as GET /v1/runs/{id} shows it
    assert stack.call("GET", f"/v1/runs/{data['run_id']}", None) == (200, {"data": run})

    # the same key again: the same run, 200
    status, again = stack.call("POST", f"{ORDER_RUNS}?wait=5", body)
    assert status == 200, again
    assert again["data"] == {**data, "created": False}


def test_a_start_with_wait_answers_with_a_failed_run(stack: Stack) -> None:
    status, answer = stack.call("POST", f"{ORDER_RUNS}?wait=5", {"data": {"fail": True}})
    assert status == 201, answer
    run = answer["data"]["run"]
    assert run["status"] == "Failed"
    assert "boom" in json.dumps(run["output"])


def test_a_start_with_wait_answers_with_a_run_still_going_after_the_wait(stack: Stack) -> None:
    began = time.monotonic()
    status, answer = stack.call("POST", "/v1/functions/shop-sleeper/runs?wait=0.3", {})
    assert status == 201, answer
    assert time.monotonic() - began < 10
    data = answer["data"]
    assert data["run"]["run_id"] == data["run_id"]
    assert data["run"]["status"] in ("Queued", "Running")
    assert stack.face("sync").get_run(data["run_id"]).cancel() is RunStatus.CANCELLED


def test_a_start_without_wait_answers_without_the_run(stack: Stack) -> None:
    status, answer = stack.call("POST", ORDER_RUNS, {"data": {"x": 1}})
    assert status == 201, answer
    assert answer["data"].keys() == {"run_id", "function_id", "created"}
    status, answer = stack.call("POST", f"{ORDER_RUNS}?wait=0", {"data": {"x": 1}})
    assert status == 201, answer
    assert "run" not in answer["data"]


@pytest.mark.parametrize("wait", ["abc", "61", "-1", "nan", "inf"])
def test_a_bad_wait_is_refused_and_starts_nothing(stack: Stack, wait: str) -> None:
    tag = uuid.uuid4().hex
    body = {"data": {"x": tag}, "attributes": {"tag": tag}}
    status, answer = stack.call("POST", f"{ORDER_RUNS}?wait={wait}", body)
    assert status == 400, answer
    assert "wait" in answer["error"]
    assert tagged(stack.face("sync"), stack.app.order, tag) == []
    status, answer = stack.call("POST", "/v1/functions/shop-nope/runs?wait=abc", {})
    assert status == 400, "the wait is checked first"
