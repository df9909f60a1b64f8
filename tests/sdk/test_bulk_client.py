"""The client's bulk actions and replays, both faces, against a real
engine over HTTP (uvicorn on loopback) serving the app in-process."""

from __future__ import annotations

import collections
import datetime as dt
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import stepline
from tests._support.engines import FAST
from tests._support.polling import wait_until

from .embedded_support import Blocking, EngineServer, LoopThread

pytestmark = [pytest.mark.slow]

COUNTS: collections.Counter[str] = collections.Counter()
FAIL = {"step-2": True}


def build(url: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("bc", is_production=False, api_base_url=url, event_api_base_url=url)

    @client.function(id="naps", trigger=stepline.TriggerEvent(event="bc/nap"))
    async def naps(ctx: stepline.Context) -> None:
        await ctx.step.sleep("nap", dt.timedelta(hours=1))

    @client.function(id="three", retries=0, trigger=stepline.TriggerEvent(event="bc/three"))
    def three(ctx: stepline.SyncContext) -> str:
        def step(name: str) -> str:
            COUNTS[f"{ctx.event.data['tag']}:{name}"] += 1
            if FAIL.get(name):
                raise ValueError(f"{name} broke")
            return name

        return "".join(ctx.step.run(f"step-{n}", step, f"step-{n}") for n in (1, 2, 3))

    return client, [naps, three]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineServer, Any]]:
    database = str(tmp_path_factory.mktemp("bulk") / "engine.db")
    engine = EngineServer(database, bulk_batch_size=3, bulk_pause=0.01, **FAST)
    client, functions = build(engine.url)
    engine.serve(client, functions)
    loop = LoopThread()
    with engine:
        yield engine, client
    loop.run(client.aclose())
    loop.close()


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, server: tuple[EngineServer, Any]) -> Iterator[Face]:
    _, client = server
    loop = LoopThread() if request.param == "async" else None
    yield Face(client, loop)
    if loop is not None:
        loop.close()


class Face:
    """The client through its ``*_sync`` methods, or its async ones run on a loop thread
    (their handles' coroutine methods too): called alike, blocking."""

    def __init__(self, client: stepline.Client, loop: LoopThread | None) -> None:
        self.client = client
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        if self.loop is None:
            return getattr(self.client, f"{name}_sync")
        method, loop = getattr(self.client, name), self.loop

        def call(*args: Any, **kwargs: Any) -> Any:
            found = method(*args, **kwargs)
            if inspect.isawaitable(found):
                found = loop.run(found)
            handles = (stepline.BulkHandle, stepline.RunHandle)
            return Blocking(found, loop) if isinstance(found, handles) else found

        return call


def runs_of(client: stepline.Client, function: str, **filters: Any) -> list[stepline.RunInfo]:
    found, _ = client.list_runs_sync(function=function, limit=200, **filters)
    return found


def send(client: stepline.Client, name: str, count: int, tag: str) -> list[str]:
    ids = [client.send_sync(stepline.Event(name=name, data={"tag": tag}))[0] for _ in range(count)]
    fn = {"bc/nap": "naps", "bc/three": "three"}[name]

    def started() -> Any:
        runs = [r for r in runs_of(client, fn) if r.event_ids and r.event_ids[0] in ids]
        return runs if len(runs) == count else None

    return [r.run_id for r in wait_until(started, timeout=20, message="the runs")]


def test_bulk_cancel_waits_with_progress(face: Face, server: tuple[EngineServer, Any]) -> None:
    _, client = server
    tag = f"cancel-{face.loop is None}"
    ids = send(client, "bc/nap", 7, tag)
    keep = send(client, "bc/nap", 2, f"{tag}-keep")
    handle = face.bulk_cancel(
        function="naps", status=["Queued", "Running"], if_exp=f'event.data.tag == "{tag}"'
    )
    assert handle.created
    seen: list[stepline.BulkInfo] = []
    info = handle.wait(timeout=30, on_progress=seen.append)
    assert (info.status, info.matched, info.applied, info.skipped) == ("completed", 7, 7, 0)
    assert info.done
    assert seen[-1] == info
    assert info.filter["if"] == f'event.data.tag == "{tag}"'
    statuses = {client.get_run_sync(r).status() for r in ids}
    assert statuses == {stepline.RunStatus.CANCELLED}
    assert {client.get_run_sync(r).status() for r in keep} != {stepline.RunStatus.CANCELLED}
    again = face.bulk_cancel(function="naps", idempotency_key=f"{tag}-key")
    same = face.bulk_cancel(function="bc-naps", idempotency_key=f"{tag}-key")
    assert (again.created, same.created) == (True, False)
    assert same.bulk_id == again.bulk_id


def test_bad_expression_is_a_management_error(face: Face) -> None:
    with pytest.raises(stepline.ManagementError, match=r"filter\.if: .*column"):
        face.bulk_replay(function="three", if_exp="event.data.tag ==")


def test_replay_from_a_step_and_bulk_replay(face: Face, server: tuple[EngineServer, Any]) -> None:
    _, client = server
    tag = f"replay-{face.loop is None}"
    FAIL["step-2"] = True
    [failed] = send(client, "bc/three", 1, tag)
    with pytest.raises(stepline.RunFailedError):
        client.get_run_sync(failed).result(timeout=20)
    FAIL["step-2"] = False
    run_id = face.get_run(failed).replay(from_step="step-2").run_id
    assert client.get_run_sync(run_id).result(timeout=20) == "step-1step-2step-3"
    assert [COUNTS[f"{tag}:step-{n}"] for n in (1, 2, 3)] == [1, 2, 1]
    with pytest.raises(stepline.RunNotFoundError):
        face.get_run(failed).replay(from_step="step-7")

    bulk = face.bulk_replay(function="three", if_exp=f'event.data.tag == "{tag}"')
    info = client.get_bulk_sync(bulk.bulk_id).wait(timeout=30)
    # the failed original and its replay, each replayed once more
    assert (info.matched, info.applied) == (2, 2)
    wait_until(  # both again from the start: every step once more each
        lambda: [COUNTS[f"{tag}:step-{n}"] for n in (1, 2, 3)] == [3, 4, 3], timeout=20
    )
    assert client.get_run_sync(run_id).describe().status is stepline.RunStatus.COMPLETED


def test_bulk_cancel_by_run_attributes(face: Face, server: tuple[EngineServer, Any]) -> None:
    _, client = server
    tag = f"attrs-{face.loop is None}"
    mine = [client.start_sync("naps", {"tag": tag}, attributes={"batch": tag}) for _ in range(3)]
    other = client.start_sync("naps", {"tag": tag}, attributes={"batch": f"{tag}-other"})
    handle = face.bulk_cancel(attributes={"batch": tag})
    info = handle.wait(timeout=30)
    assert (info.status, info.matched, info.applied) == ("completed", 3, 3)
    assert info.filter["attributes"] == {"batch": tag}
    assert {h.status() for h in mine} == {stepline.RunStatus.CANCELLED}
    assert other.status() != stepline.RunStatus.CANCELLED
