"""The client composes, the handles act: one ``EngineConnection`` shared by the client and
every handle it makes, operations on one run or one function on its handle, and the async
and blocking faces alike. No engine: a recording transport answers."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import pytest

import stepline
from stepline._transport import effects, performers

client = stepline.Client("shop", is_production=False, api_base_url="http://engine.test")


@client.function(id="charge", trigger=stepline.TriggerEvent(event="shop/charge"))
async def charge(ctx: stepline.Context) -> None:
    return None


ANSWERS: dict[str, Any] = {
    "/signals/": {"data": {"run_id": "r1"}},
    "/attributes": {"data": {"attributes": {"stage": "done"}}},
    "/replay": {"data": {"run_id": "r2"}},
    "/pause": {"data": {"paused": {"at": "2026-01-01T00:00:00Z", "crons": "skip"}}},
    "/resume": {"data": {"resumed": True}},
}


class Recording(performers.SyncTransport):
    """Answers every request with ``ANSWERS``' body for its path, and keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, Any]] = []

    def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
        path = request.url.removeprefix("http://engine.test")
        self.seen.append((request.method, path, request.value))
        [body] = [answer for part, answer in ANSWERS.items() if part in path]
        return effects.HttpResponse(200, {}, json.dumps(body).encode())


class AsyncRecording(performers.AsyncTransport):
    def __init__(self, sync: Recording) -> None:
        super().__init__()
        self.sync = sync

    async def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
        return self.sync.request(request)


@pytest.fixture
def recorded() -> tuple[stepline.Client, Recording]:
    """A client whose connection's transports answer from ``ANSWERS``."""
    made = stepline.Client("shop", is_production=False, api_base_url="http://engine.test")
    sync = Recording()
    made.connection.sync_transport = sync
    made.connection.async_transport = AsyncRecording(sync)
    return made, sync


def test_the_client_stacks_no_mixins_and_shares_its_connection() -> None:
    assert stepline.Client.__bases__ == (object,)
    handles = [
        client.get_run("r1"),
        client.get_run_sync("r1"),
        client.get_function(charge),
        client.get_function_sync("charge"),
        client.get_bulk("b1"),
        client.get_bulk_sync("b1"),
    ]
    assert all(handle.connection is client.connection for handle in handles)
    assert client.settings is client.connection.settings


def test_a_function_handle_names_the_function_by_its_engine_id() -> None:
    assert client.get_function(charge).function_id == "shop-charge"
    assert client.get_function_sync("charge").function_id == "shop-charge"
    assert client.get_function("shop-charge").function_id == "shop-charge"


@pytest.mark.parametrize(
    ("async_face", "sync_face"),
    [
        (stepline.RunHandle, stepline.SyncRunHandle),
        (stepline.FunctionHandle, stepline.SyncFunctionHandle),
        (stepline.BulkHandle, stepline.SyncBulkHandle),
    ],
)
def test_each_handle_and_its_blocking_twin_have_the_same_methods(
    async_face: type, sync_face: type
) -> None:
    def public(cls: type) -> set[str]:
        return {name for name in vars(cls) if not name.startswith("_")}

    assert public(async_face) == public(sync_face)


def test_every_async_client_method_has_a_blocking_twin() -> None:
    def is_async(value: object) -> bool:
        return inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)

    names = {n for n, v in vars(stepline.Client).items() if is_async(v) and n != "aclose"}
    assert names >= {"start", "execute", "list_runs", "rerun", "send", "bulk_cancel"}
    assert {f"{name}_sync" for name in names} <= set(vars(stepline.Client))
    for getter in ("get_run", "get_function", "get_bulk"):
        assert f"{getter}_sync" in vars(stepline.Client)


def test_the_run_handle_signals_sets_attributes_and_replays(
    recorded: tuple[stepline.Client, Recording],
) -> None:
    client, recording = recorded
    run = client.get_run_sync("r1")
    run.signal("approved", {"by": "ana"})
    assert run.set_attributes({"stage": "done"}) == {"stage": "done"}
    replayed = run.replay(from_step="charge")
    assert isinstance(replayed, stepline.SyncRunHandle)
    assert (replayed.run_id, replayed.connection) == ("r2", client.connection)
    assert recording.seen == [
        ("POST", "/v1/runs/r1/signals/approved", {"data": {"by": "ana"}}),
        ("POST", "/v1/runs/r1/attributes", {"attributes": {"stage": "done"}}),
        ("POST", "/v1/runs/r1/replay", {"from_step": "charge"}),
    ]


def test_the_async_function_handle_pauses_and_resumes(
    recorded: tuple[stepline.Client, Recording],
) -> None:
    client, recording = recorded

    async def main() -> tuple[stepline.PausedFunction, bool]:
        fn = client.get_function(charge)
        return await fn.pause(crons="skip", reason="down"), await fn.resume()

    paused, resumed = asyncio.run(main())
    assert (paused.function_id, paused.crons, resumed) == ("shop-charge", "skip", True)
    assert recording.seen == [
        ("POST", "/v1/functions/shop-charge/pause", {"crons": "skip", "reason": "down"}),
        ("POST", "/v1/functions/shop-charge/resume", {}),
    ]
