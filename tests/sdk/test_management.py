"""Run management on the client (start, result, cancel, list, rerun...) against real engines.

Every test runs on two engines, each serving the app in-process: a real engine over HTTP
(uvicorn on loopback) and an ``EmbeddedEngine`` on a background thread; and through both
faces of the client, the blocking ``*_sync`` methods and the async ones (on an event loop
in another thread). The engines live for the module; tests keep apart by their own data.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import stepline
from stepline import RunStatus
from stepline.embedded import EmbeddedEngine
from tests._support.engines import FAST
from tests._support.processes import free_port
from tests.apps import run_management
from tests.apps.run_management import EVENT_KEY, SIGNING_KEY

from . import stacks
from .embedded_support import EngineServer, Face, faces, poll
from .stacks import Stack


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


def sleeping(face: Face, app: run_management.App) -> object:
    """A run of ``sleeper``, once it is parked on its hour-long sleep."""
    handle = face.start(app.sleeper)
    poll(lambda: [s for s in handle.steps() if s.name == "nap" and s.status == "Sleeping"])
    return handle


def test_start_then_result_describe_and_steps(face: Face, app: run_management.App) -> None:
    handle = face.start(app.order, {"x": 1})
    assert handle.created is True
    assert handle.result(timeout=20) == {"n": 2, "x": 1}
    info = handle.describe()
    assert (info.run_id, info.function_id) == (handle.run_id, "shop-order")
    assert info.status is RunStatus.COMPLETED
    assert info.output == {"n": 2, "x": 1}
    assert info.error is None
    assert info.created_at is not None
    assert info.ended_at is not None
    assert info.ended_at >= info.created_at
    assert info.to_json()["status"] == "Completed"
    assert handle.status() is RunStatus.COMPLETED
    steps = handle.steps()
    assert [(s.name, s.status, s.output) for s in steps] == [
        ("a", "Completed", 1),
        ("b", "Completed", 2),
    ]
    # a bare id gets the app's prefix; a prefixed one is taken as it is
    assert face.start("order", {"x": 2}).result(timeout=20) == {"n": 2, "x": 2}
    assert face.start("shop-order", {"x": 3}).result(timeout=20) == {"n": 2, "x": 3}
    assert face.get_run(handle.run_id).result(timeout=20) == {"n": 2, "x": 1}


def test_idempotency_key_returns_the_first_run(face: Face, app: run_management.App) -> None:
    key = uuid.uuid4().hex
    first = face.start(app.order, {"x": "first"}, idempotency_key=key)
    again = face.start("order", {"x": "second"}, idempotency_key=key)
    assert first.created is True
    assert again.created is False
    assert again.run_id == first.run_id
    assert again.result(timeout=20) == {"n": 2, "x": "first"}
    # the key is per function, and another key starts another run
    assert face.start(app.order, {"x": 1}, idempotency_key=key + "-2").run_id != first.run_id
    other = face.start(app.limited, {"k": key}, idempotency_key=key)
    assert other.created is True
    assert other.run_id != first.run_id


def test_concurrent_starts_with_one_key_make_one_run(face: Face, app: run_management.App) -> None:
    key = uuid.uuid4().hex
    if face.kind == "sync":
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            calls = [
                pool.submit(face.start, app.order, {"x": i}, idempotency_key=key) for i in range(6)
            ]
            handles = [call.result() for call in calls]
        pairs = [(h.run_id, h.created) for h in handles]
    else:

        async def race() -> list[stepline.RunHandle]:
            starts = [face.client.start(app.order, {"x": i}, idempotency_key=key) for i in range(6)]
            return await asyncio.gather(*starts)

        pairs = [(h.run_id, h.created) for h in face._loop.run(race())]  # type: ignore[union-attr]
    assert len({run_id for run_id, _ in pairs}) == 1, pairs
    assert sorted(created for _, created in pairs) == [False] * 5 + [True]
    runs, _ = face.list_runs(function=app.order, limit=500)
    assert [r.run_id for r in runs].count(pairs[0][0]) == 1


def test_failed_run_raises_run_failed_error(face: Face, app: run_management.App) -> None:
    handle = face.start(app.order, {"fail": True})
    with pytest.raises(stepline.RunFailedError) as failed:
        handle.result(timeout=20)
    error = failed.value
    assert isinstance(error, stepline.ManagementError)
    assert error.error["name"] == "NonRetriableError"
    assert error.error["message"] == "boom"
    assert "NonRetriableError: boom" in str(error)
    assert handle.run_id in str(error)
    assert error.run.status is RunStatus.FAILED
    info = handle.describe()
    assert info.status is RunStatus.FAILED
    assert info.output is None
    assert info.error is not None
    assert info.error["message"] == "boom"


def test_cancel_a_sleeping_run(face: Face, app: run_management.App) -> None:
    handle = sleeping(face, app)
    assert handle.status() is RunStatus.RUNNING
    assert handle.cancel() is RunStatus.CANCELLED
    with pytest.raises(stepline.RunCancelledError, match="was cancelled") as cancelled:
        handle.result(timeout=20)
    assert cancelled.value.run.status is RunStatus.CANCELLED
    assert handle.cancel() is RunStatus.CANCELLED  # an ended run keeps its status
    done = face.start(app.order, {"x": 1})
    done.result(timeout=20)
    assert done.cancel() is RunStatus.COMPLETED


def test_result_times_out(face: Face, app: run_management.App) -> None:
    handle = sleeping(face, app)
    with pytest.raises(stepline.RunTimeoutError, match=r"still Running after 0\.2s"):
        handle.result(timeout=0.2)
    with pytest.raises(TimeoutError):  # also a builtin TimeoutError
        handle.result(timeout=0)
    handle.cancel()


def test_data_must_be_json(face: Face, app: run_management.App) -> None:
    with pytest.raises(stepline.ManagementError, match="not JSON-serializable"):
        face.start(app.order, {"x": object()})


def test_long_poll_on_the_engine(stack: Stack) -> None:
    # a bad wait is refused before the run is looked up
    assert stack.get("/v1/runs/01NOSUCHRUN?wait=abc")[0] == 400
    assert stack.get("/v1/runs/01NOSUCHRUN?wait=1")[0] == 404
    handle = sleeping(stack.face("sync"), stack.app)
    status, answer = stack.get(f"/v1/runs/{handle.run_id}?wait=0.1")
    assert (status, answer["data"]["status"]) == (200, "Running")
    handle.cancel()
    status, answer = stack.get(f"/v1/runs/{handle.run_id}?wait=20")
    assert (status, answer["data"]["status"]) == (200, "Cancelled")


def test_unknown_run_and_unknown_function(face: Face, app: run_management.App) -> None:
    missing = face.get_run("01NOSUCHRUN")
    for act in (missing.status, missing.steps, missing.cancel, lambda: missing.result(timeout=1)):
        with pytest.raises(stepline.RunNotFoundError, match="01NOSUCHRUN") as error:
            act()
        assert error.value.http_status == 404
    with pytest.raises(stepline.FunctionNotFoundError, match="shop-nope") as unknown:
        face.start("nope")
    # says how to sync the app, and old ``except RunNotFoundError`` clauses still catch it
    assert "stepline dev -u" in unknown.value.message
    assert "PUT" in unknown.value.message
    assert isinstance(unknown.value, stepline.RunNotFoundError)
    assert unknown.value.http_status == 404
    with pytest.raises(stepline.RunNotFoundError):
        face.rerun("01NOSUCHRUN")


def test_rate_limited_start_is_not_started(face: Face, app: run_management.App) -> None:
    key = uuid.uuid4().hex
    assert face.start(app.limited, {"k": key}).result(timeout=20) == "ran"
    with pytest.raises(stepline.RunNotStartedError, match="rate_limited") as refused:
        face.start(app.limited, {"k": key})
    assert refused.value.http_status == 409
    assert face.start(app.limited, {"k": key + "-other"}).result(timeout=20) == "ran"


def test_list_runs_filters_and_pages(face: Face, app: run_management.App) -> None:
    tag = uuid.uuid4().hex
    good = [face.start(app.order, {"x": f"{tag}-{i}"}) for i in range(3)]
    bad = face.start(app.order, {"x": tag, "fail": True})
    for handle in good:
        handle.result(timeout=20)
    with pytest.raises(stepline.RunFailedError):
        bad.result(timeout=20)
    seen: list[stepline.RunInfo] = []
    cursor = None
    pages = 0
    while True:
        runs, cursor = face.list_runs(
            function=app.order, status=["Completed"], limit=2, cursor=cursor
        )
        assert len(runs) <= 2
        pages += 1
        seen.extend(runs)
        if cursor is None:
            break
        assert len(runs) == 2
    ids = [r.run_id for r in seen]
    assert len(ids) == len(set(ids)), "a run came twice across pages"
    assert pages >= 2
    assert {h.run_id for h in good} <= set(ids)
    assert bad.run_id not in ids
    assert {(r.function_id, r.status) for r in seen} == {("shop-order", RunStatus.COMPLETED)}
    created = [r.created_at for r in seen]
    assert all(a is not None and b is not None and a >= b for a, b in itertools.pairwise(created))

    failed, _ = face.list_runs(function="order", status=[RunStatus.FAILED], limit=500)
    assert bad.run_id in [r.run_id for r in failed]
    assert {r.status for r in failed} == {RunStatus.FAILED}
    both, _ = face.list_runs(function=app.order, status=["Completed", "Failed"], limit=500)
    assert {h.run_id for h in [*good, bad]} <= {r.run_id for r in both}
    others, _ = face.list_runs(function=app.hidden, limit=500)
    assert not {h.run_id for h in [*good, bad]} & {r.run_id for r in others}
    everything, _ = face.list_runs(limit=500)
    assert {h.run_id for h in [*good, bad]} <= {r.run_id for r in everything}


def test_rerun_starts_a_new_run_with_the_same_data(face: Face, app: run_management.App) -> None:
    first = face.start(app.order, {"x": "again"})
    assert first.result(timeout=20) == {"n": 2, "x": "again"}
    second = face.rerun(first.run_id)
    assert second.run_id != first.run_id
    assert second.result(timeout=20) == {"n": 2, "x": "again"}
    assert second.describe().function_id == "shop-order"


def test_send_event_then_find_its_run(face: Face, app: run_management.App) -> None:
    token = uuid.uuid4().hex
    waiting = face.start(app.waiter, {"token": token})
    poll(lambda: [s for s in waiting.steps() if s.name == "go" and s.status == "Waiting"])
    face.send(stepline.Event(name="shop/go", data={"token": token, "value": 7}))
    assert waiting.result(timeout=20) == 7


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_unreachable_engine_is_a_management_error(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    app = run_management.build(api_base_url=url, event_api_base_url=url)
    with faces(app.client) as make:
        face = make(kind)
        for act in (
            lambda: face.start(app.order),
            lambda: face.get_run("01ANY").status(),
            face.list_runs,
            lambda: face.rerun("01ANY"),
        ):
            with pytest.raises(stepline.ManagementError, match="unreachable") as error:
                act()
            assert type(error.value) is stepline.ManagementError
            assert url in str(error.value)
            assert error.value.http_status == 0


# -- production mode ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_production_client_against_an_engine_in_start_mode(kind: str, tmp_path: Path) -> None:
    server = EngineServer(
        str(tmp_path / "prod.db"),
        mode="start",
        signing_keys=(SIGNING_KEY,),
        event_keys=(EVENT_KEY,),
        **FAST,
    )
    urls = {"api_base_url": server.url, "event_api_base_url": server.url}
    app = run_management.build(
        is_production=True, signing_key=SIGNING_KEY, event_key=EVENT_KEY, **urls
    )
    server.serve(app.client, app.functions)
    wrong = run_management.build(
        is_production=True, signing_key="signkey-prod-" + "0bad" * 16, event_key="nope", **urls
    )
    with server, faces(app.client) as make, faces(wrong.client) as make_wrong:
        face = make(kind)
        handle = face.start(app.order, {"x": "prod"})
        assert handle.result(timeout=20) == {"n": 2, "x": "prod"}
        assert [s.name for s in handle.steps()] == ["a", "b"]
        token = uuid.uuid4().hex
        waiting = face.start(app.waiter, {"token": token})
        poll(lambda: [s for s in waiting.steps() if s.status == "Waiting"])
        face.send(stepline.Event(name="shop/go", data={"token": token, "value": 1}))
        assert waiting.result(timeout=20) == 1

        bad = make_wrong(kind)
        with pytest.raises(stepline.ManagementError, match="signing key") as refused:
            bad.start(app.order)
        assert refused.value.http_status == 401
        assert "401" in str(refused.value)
        with pytest.raises(stepline.ManagementError, match="signing key"):
            bad.get_run(handle.run_id).status()
        with pytest.raises(stepline.SendEventError):
            bad.send(stepline.Event(name="shop/go", data={}))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_production_client_with_an_embedded_engine(kind: str, tmp_path: Path) -> None:
    app = run_management.build(is_production=True, signing_key=SIGNING_KEY, event_key=EVENT_KEY)
    embedded = EmbeddedEngine(app.client, app.functions, database=str(tmp_path / "e.db"), **FAST)
    try:
        with faces(app.client) as make:
            face = make(kind)
            assert face.start(app.order, {"x": "emb"}).result(timeout=20) == {"n": 2, "x": "emb"}
            assert embedded.engine.settings.mode == "start"
            assert embedded.engine.settings.signing_keys == (SIGNING_KEY,)
            ids = face.send(stepline.Event(name="shop/order", data={"x": "event"}))
            assert len(ids) == 1

            def event_run_done() -> bool:
                runs, _ = face.list_runs(function=app.order, status=["Completed"])
                return any(r.output == {"n": 2, "x": "event"} for r in runs)

            poll(event_run_done)
    finally:
        embedded.stop()
