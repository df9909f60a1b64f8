"""Version pinning: one app registered in several versions at once.

Two scripted SDKs (real HTTP servers) play v1 and v2 of one app: each answers a run's
first call with a one-hour sleep and its second with the version it is, so a run's output
says which registration finished it. The engine runs in process, on both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from stepline.engine import (
    Engine,
    EngineSettings,
    ManualClock,
    RunStatus,
)
from stepline.engine._apps import registry as _registry
from stepline.engine._apps import versions as _versions
from stepline.engine._http.api import build_app
from stepline.engine._model import Run
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.engines import advance, quiet
from tests._support.stub_server import StubServer

from .test_protocol_stub import SDK

pytestmark = [pytest.mark.slow]

APP = "shop"
FN = "shop-checkout"


def body(stub: StubServer, version: str | None, **config: Any) -> dict[str, Any]:
    """A register body of app ``shop`` served by ``stub``, declaring ``version``."""
    url = f"{stub.url}/api/inngest"
    found: dict[str, Any] = {
        "appName": APP,
        "url": url,
        "sdk": "py:v0.5.19",
        "framework": "test",
        "functions": [
            {
                "id": FN,
                "name": "checkout",
                "triggers": [{"event": "shop/checkout"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {"type": "http", "url": f"{url}?fnId={FN}&stepId=step"},
                    }
                },
                **config,
            }
        ],
    }
    if version is not None:
        found["appVersion"] = version
    return found


def serving(name: str) -> StubServer:
    """A stub SDK: a first call sleeps an hour, the next one returns ``name``."""
    stub = StubServer()

    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        if not req["body"]["steps"]:
            sleep = {"op": "Sleep", "id": "nap", "name": "nap", "opts": {"duration": "1h"}}
            return 206, [sleep], SDK
        return 200, name, SDK

    stub.answer = answer
    return stub.start()


@pytest.fixture
def stubs() -> Iterator[tuple[StubServer, StubServer]]:
    one, two = serving("v1"), serving("v2")
    yield one, two
    one.stop()
    two.stop()


@contextlib.asynccontextmanager
async def engine_on(db: str) -> AsyncIterator[tuple[Engine, ManualClock]]:
    clock = ManualClock(1_800_000_000.0)
    options: dict[str, Any] = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.05}
    engine = Engine(EngineSettings(database_url=db, **options), clock=clock)
    await engine.start()
    try:
        yield engine, clock
    finally:
        await engine.stop()


async def start_run(engine: Engine) -> str:
    run_id, _ = await engine.start_function(FN, {})
    await quiet(engine)
    return run_id


async def sleeping(engine: Engine, run_id: str) -> Run:
    run = await engine.get_run(run_id)
    assert run.status is RunStatus.RUNNING, run
    return run


def calls(stub: StubServer) -> int:
    return sum(1 for r in stub.requests if r["method"] == "POST")


def latest(engine: Engine) -> str | None:
    """The latest version of app ``shop`` in the engine's registry."""
    found = engine.registry.versions.latest(APP)
    return None if found is None else found.version


def rest(engine: Engine) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(engine))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8288")


def test_pinned_runs_finish_on_their_version_while_new_runs_start_on_the_latest(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, clock):
            await engine.register(body(one, "v1"))
            old = await start_run(engine)
            assert (await sleeping(engine, old)).app_version == "v1"
            await engine.register(body(two, "v2"))
            new = await start_run(engine)
            assert (await sleeping(engine, new)).app_version == "v2"
            await advance(engine, clock, 3601)
            first, second = await engine.get_run(old), await engine.get_run(new)
            assert (first.status, first.output, first.app_version) == (
                RunStatus.COMPLETED,
                '"v1"',
                "v1",
            )
            assert (second.status, second.output, second.app_version) == (
                RunStatus.COMPLETED,
                '"v2"',
                "v2",
            )
            assert first.notices == []
            assert second.notices == []
            assert (calls(one), calls(two)) == (2, 2)
            # the apps table holds the latest registration, as every other path reads it
            app = next(a for a in await engine.list_apps() if a.app_id == APP)
            assert app.url == f"{two.url}/api/inngest"

    arun(main())


def test_latest_policy_moves_a_run_to_the_newest_version_with_a_notice(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, clock):
            await engine.register(body(one, "v1", versioning="latest"))
            run_id = await start_run(engine)
            await engine.register(body(two, "v2", versioning="latest"))
            await advance(engine, clock, 3601)
            run = await engine.get_run(run_id)
            assert (run.status, run.output, run.app_version) == (
                RunStatus.COMPLETED,
                '"v2"',
                "v2",
            )
            assert [(n["kind"], n["from"], n["to"], n["reason"]) for n in run.notices] == [
                ("version_moved", "v1", "v2", "latest")
            ]
            assert "v1" in run.notices[0]["message"]
            assert "v2" in run.notices[0]["message"]
            assert (calls(one), calls(two)) == (1, 1)

    arun(main())


def test_a_version_synced_from_the_same_url_replaces_the_old_one(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    one, _ = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, clock):
            await engine.register(body(one, "v1"))
            run_id = await start_run(engine)
            await engine.register(body(one, "v2"))  # the same URL now serves v2's code
            listed = await engine.store.read(lambda tx: _versions.listing(tx, APP))
            assert [(v["version"], v["latest"]) for v in listed] == [("v2", True)]
            run = await engine.get_run(run_id)
            assert run.app_version == "v2"
            assert [(n["from"], n["to"], n["reason"]) for n in run.notices] == [
                ("v1", "v2", "redeployed")
            ]
            await advance(engine, clock, 3601)
            assert (await engine.get_run(run_id)).status is RunStatus.COMPLETED

    arun(main())


def test_resyncing_an_older_unchanged_version_keeps_the_latest(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, _clock):
            await engine.register(body(one, "v1"))
            await engine.register(body(two, "v2"))
            await engine.register(body(one, "v1"))  # a poll or a restart of the v1 process
            listed = await engine.store.read(lambda tx: _versions.listing(tx, APP))
            assert [(v["version"], v["latest"]) for v in listed] == [
                ("v2", True),
                ("v1", False),
            ]
            run_id = await start_run(engine)
            assert (await engine.get_run(run_id)).app_version == "v2"
            # a registration without a version re-syncs the version its URL serves
            await engine.register(body(one, None))
            listed = await engine.store.read(lambda tx: _versions.listing(tx, APP))
            assert sorted(v["version"] for v in listed) == ["v1", "v2"]

    arun(main())


def test_retiring_a_version_with_live_runs_needs_force_and_moves_them(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, clock), rest(engine) as http:
            await engine.register(body(one, "v1"))
            pinned = [await start_run(engine) for _ in range(3)]
            await engine.register(body(two, "v2"))
            fresh = await start_run(engine)

            listed = (await http.get(f"/v1/apps/{APP}/versions")).json()["data"]
            assert [(v["version"], v["latest"], v["live_runs"]) for v in listed] == [
                ("v2", True, 1),
                ("v1", False, 3),
            ]
            assert listed[1]["url"] == f"{one.url}/api/inngest"
            by_version = (await http.get("/v1/runs", params={"version": "v1"})).json()["data"]
            assert sorted(r["run_id"] for r in by_version) == sorted(pinned)
            only_new = (await http.get("/v1/runs", params={"version": "v2"})).json()["data"]
            assert [r["run_id"] for r in only_new] == [fresh]

            refused = await http.delete(f"/v1/apps/{APP}/versions/v1")
            assert refused.status_code == 409, refused.text
            assert refused.json()["live_runs"] == 3
            assert refused.json()["error"].startswith(
                "3 runs started on v1 are still live; retry with ?force=true (CLI: --force) "
                "to move them to the latest version"
            )
            latest = await http.delete(f"/v1/apps/{APP}/versions/v2?force=true")
            assert latest.status_code == 409
            assert "v2 is the latest version" in latest.json()["error"]
            missing = await http.delete(f"/v1/apps/{APP}/versions/v9")
            assert missing.status_code == 404
            assert (await http.get("/v1/apps/nope/versions")).status_code == 404

            forced = await http.delete(f"/v1/apps/{APP}/versions/v1", params={"force": "true"})
            assert forced.status_code == 200, forced.text
            assert forced.json()["data"] == {"app_id": APP, "version": "v1", "moved": 3, "to": "v2"}
            listed = (await http.get(f"/v1/apps/{APP}/versions")).json()["data"]
            assert [(v["version"], v["live_runs"]) for v in listed] == [("v2", 4)]

            await advance(engine, clock, 3601)
            for run_id in pinned:
                run = await engine.get_run(run_id)
                assert (run.status, run.output, run.app_version) == (
                    RunStatus.COMPLETED,
                    '"v2"',
                    "v2",
                )
                assert [(n["kind"], n["reason"]) for n in run.notices] == [
                    ("version_moved", "unregistered")
                ]
            assert calls(one) == 3  # their first calls only

    arun(main())


def test_a_pinned_run_whose_version_vanished_moves_once_at_its_next_call(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    """A run that started on a version in a race with its retirement moves when it is called."""
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, clock):
            await engine.register(body(one, "v1"))
            run_id = await start_run(engine)
            await engine.register(body(two, "v2"))
            # the version goes without moving the run (as a retirement racing its start)
            await engine.store.atomic(lambda tx: tx.versions.delete_app_versions(APP, ["v1"]))
            await engine.reload()
            await advance(engine, clock, 3601)
            run = await engine.get_run(run_id)
            assert (run.status, run.output, run.app_version) == (
                RunStatus.COMPLETED,
                '"v2"',
                "v2",
            )
            assert [(n["from"], n["to"], n["reason"]) for n in run.notices] == [
                ("v1", "v2", "unregistered")
            ]

    arun(main())


def test_an_app_without_versions_behaves_as_before(
    db: str, stubs: tuple[StubServer, StubServer]
) -> None:
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, clock):
            await engine.register(body(one, None))
            run_id = await start_run(engine)
            await engine.register(body(two, None))  # the app moves, as it always did
            await advance(engine, clock, 3601)
            run = await engine.get_run(run_id)
            assert (run.output, run.app_version, run.notices) == ('"v2"', None, [])
            assert await engine.store.read(lambda tx: tx.versions.list_app_versions()) == []
            assert await engine.list_runs(RunFilter(version="v1")) == []

    arun(main())


def test_the_deploy_id_is_the_version_unless_the_engine_issued_it(
    stubs: tuple[StubServer, StubServer],
) -> None:
    one, _ = stubs
    declared = _registry.parse_app(body(one, "1.2.0"), deploy_id="d-77")
    assert declared.version == "1.2.0"
    assert _registry.parse_app(body(one, None), deploy_id="d-77").version == "d-77"
    assert _registry.parse_app(body(one, None), deploy_id="stepline-abc").version is None
    assert _registry.parse_app(body(one, None)).version is None
    forged = body(one, None)
    forged["functions"][0][_registry.VERSION_KEY] = "v0"  # only the engine writes this key
    assert _registry.parse_app(forged).functions[0].version is None


def test_an_earlier_reload_ending_last_does_not_bring_back_the_old_latest(
    db: str, stubs: tuple[StubServer, StubServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reloads overlap (a sync's own, a lookup of an unknown function, another node's
    # notice) and their reads end in any order: a stale one ending last once made new
    # runs start on v1 right after v2's sync.
    one, two = stubs

    async def main() -> None:
        async with engine_on(db) as (engine, _):
            await engine.register(body(one, "v1"))
            read, held, release = engine.store.read, asyncio.Event(), asyncio.Event()

            async def slow_first(work: Any, **how: Any) -> Any:
                found = await read(work, **how)
                if work is _registry.stored and not held.is_set():
                    held.set()  # this reload read before v2's sync: it ends after it
                    await release.wait()
                return found

            monkeypatch.setattr(engine.store, "read", slow_first)
            stale = asyncio.ensure_future(engine.reload())
            await held.wait()
            await engine.register(body(two, "v2"))
            assert latest(engine) == "v2"
            release.set()
            await stale
            assert latest(engine) == "v2"
            run_id = await start_run(engine)
            assert (await sleeping(engine, run_id)).app_version == "v2"
            assert calls(two) == 1
            assert calls(one) == 0

    arun(main())
