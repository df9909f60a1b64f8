"""Deploy-check reports over REST, on both stores: ``POST /v1/deploy-checks`` stores what a
CI job's deploy check found, ``GET /v1/deploy-checks`` lists them newest first.

A report comes back as it was sent, with its id, when it was received and the apps it
covers; a report whose top level is wrong is refused naming the field, one over 1 MiB is
413; each app keeps its newest 100; in production the upload wants the signing key and
a dashboard session may only read. A database from before the reports is migrated to them.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._http.api import build_app
from stepline.engine._http.dashboard import COOKIE, CSRF_HEADER
from stepline.engine._store import Store, sqlite_schema
from stepline.engine._store import postgres_schema as _postgres_schema
from stepline.engine._store.deploy_checks import KEEP, DeployCheck
from stepline.engine._store.rows import statements
from tests._support.aio import arun
from tests._support.databases import postgres_schema
from tests._support.engines import running

from .test_store_contract import with_store

START = 1_800_000_000.0
SIGNING_KEY = "signkey-prod-" + "e5f6" * 16
DASHBOARD_KEY = "sixteen-char-key"
JSON = {"content-type": "application/json"}


def report(*apps: str, ok: bool = False, target: str = "shop.functions:client") -> dict[str, Any]:
    """A deploy check's report with one function per app (a diverged run in each)."""
    counts = {"runs": 3, "ok": 2, "diverged": 1, "failed": 0, "inconclusive": 0}
    return {
        "format": "stepline.deploy-check/1",
        "checked_at": "2026-11-27T06:00:00Z",
        "target": target,
        "ok": ok,
        "counts": {k: v * len(apps) for k, v in counts.items()},
        "functions": [
            {
                "function_id": f"{app}-checkout",
                "app_id": app,
                "counts": counts,
                "results": [
                    {"run_id": "01RUN", "verdict": "diverged", "summary": "s", "fix": "f"},
                    {"run_id": "01RUM", "verdict": "ok"},
                ],
            }
            for app in apps
        ],
    }


@contextlib.asynccontextmanager
async def api(db: str) -> AsyncIterator[tuple[httpx.AsyncClient, ManualClock]]:
    clock = ManualClock(start=START)
    async with running(db, clock=clock) as engine:
        transport = httpx.ASGITransport(app=build_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http, clock


async def upload(http: httpx.AsyncClient, body: Any) -> str:
    answer = await http.post("/v1/deploy-checks", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["id"])


async def listed(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    answer = await http.get("/v1/deploy-checks", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["data"]
    return found


def test_a_report_comes_back_as_sent_newest_first_by_app(db: str) -> None:
    async def scenario() -> None:
        async with api(db) as (http, clock):
            sent = report("shop")
            answer = await http.post("/v1/deploy-checks", json=sent)
            assert answer.status_code == 201, answer.text
            first = answer.json()["data"]
            assert set(first) == {"id", "received_at"}
            assert first["received_at"].startswith("2027-01-15T08:00:00")  # the engine's clock

            clock.advance(60)
            both = await upload(http, report("billing", "shop", ok=True))
            clock.advance(60)
            billing = await upload(http, report("billing"))

            everything = await listed(http)
            assert [c["id"] for c in everything] == [billing, both, first["id"]]
            [shop_last] = await listed(http, app_id="shop", limit=1)
            assert shop_last["id"] == both
            assert shop_last["app_ids"] == ["billing", "shop"]
            assert shop_last["ok"] is True
            assert shop_last["counts"] == both_counts()
            assert shop_last["report"] == report("billing", "shop", ok=True)
            shop = await listed(http, app_id="shop")
            assert [c["id"] for c in shop] == [both, first["id"]]
            assert shop[1]["report"] == sent
            assert shop[1]["received_at"] == first["received_at"]
            assert await listed(http, app_id="nobody") == []
            assert len(await listed(http, limit=2)) == 2

            for bad in ("0", "101", "x", "-1"):
                refused = await http.get("/v1/deploy-checks", params={"limit": bad})
                assert refused.status_code == 400, bad
                assert "limit: want an integer from 1 to 100" in refused.json()["error"]

    arun(scenario())


def both_counts() -> dict[str, int]:
    return {"runs": 6, "ok": 4, "diverged": 2, "failed": 0, "inconclusive": 0}


def _without(body: dict[str, Any], *path: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


def _with(body: dict[str, Any], value: Any, *path: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def test_a_report_with_a_wrong_top_level_is_refused_naming_the_field(db: str) -> None:
    good = report("shop")
    cases: list[tuple[Any, str]] = [
        ([good], "a deploy-check report is a JSON object, got list"),
        (_with(good, "stepline.run/1", "format"), "format: want 'stepline.deploy-check/1'"),
        (_without(good, "format"), "format: want 'stepline.deploy-check/1', got None"),
        (_without(good, "target"), "target: want a non-empty string"),
        (_with(good, "yesterday", "checked_at"), "checked_at: want an RFC 3339 time"),
        (_with(good, "yes", "ok"), "ok: want true or false, got 'yes'"),
        (_without(good, "counts"), "counts: want an object of runs, ok, diverged"),
        (_with(good, -1, "counts", "diverged"), "counts.diverged: want a whole number >= 0"),
        (_with(good, True, "counts", "runs"), "counts.runs: want a whole number >= 0"),
        (_with(good, {}, "functions"), "functions: want a list, got dict"),
        (_with(good, [7], "functions"), "functions[0]: want an object, got int"),
        (_without(good, "functions", 0, "app_id"), "functions[0].app_id: want a non-empty"),
        (_with(good, "", "functions", 0, "function_id"), "functions[0].function_id: want"),
        (_without(good, "functions", 0, "counts", "failed"), "functions[0].counts.failed:"),
        (_with(good, None, "functions", 0, "results"), "functions[0].results: want a list"),
    ]

    async def scenario() -> None:
        async with api(db) as (http, _clock):
            for body, message in cases:
                answer = await http.post("/v1/deploy-checks", json=body)
                assert answer.status_code == 400, (message, answer.text)
                assert message in answer.json()["error"], answer.text
            not_json = await http.post("/v1/deploy-checks", content=b"{nope", headers=JSON)
            assert not_json.status_code == 400
            assert await listed(http) == [], "nothing refused was stored"

            big = _with(good, "x" * (1024 * 1024), "target")
            too_big = await http.post("/v1/deploy-checks", json=big)
            assert too_big.status_code == 413, too_big.text
            just_under = _with(good, "x" * (1024 * 1024 - 1024), "target")
            await upload(http, just_under)  # 1 MiB, tighter than the engine's 16 MiB
            assert len(await listed(http)) == 1

    arun(scenario())


def test_each_app_keeps_its_newest_hundred(db: str) -> None:
    async def scenario() -> None:
        async with api(db) as (http, clock):
            shared = await upload(http, report("shop", "billing"))
            oldest_shop = await upload(http, report("shop"))
            ids = []
            for _ in range(KEEP - 1):
                clock.advance(1)
                ids.append(await upload(http, report("shop")))
            shop = await listed(http, app_id="shop", limit=100)
            assert [c["id"] for c in shop] == [*reversed(ids), oldest_shop]
            assert shared not in {c["id"] for c in shop}, "past the newest 100 of shop"
            [kept] = await listed(http, app_id="billing")
            assert kept["id"] == shared, "billing still keeps it"
            assert kept["app_ids"] == ["billing", "shop"]

            clock.advance(1)
            newest = await upload(http, report("shop"))
            shop = await listed(http, app_id="shop", limit=100)
            assert len(shop) == KEEP
            assert shop[0]["id"] == newest
            assert oldest_shop not in {c["id"] for c in shop}
            assert oldest_shop not in {c["id"] for c in await listed(http, limit=100)}

            none = await upload(http, {**report(), "functions": []})
            [no_app] = await listed(http, limit=1)
            assert (no_app["id"], no_app["app_ids"]) == (none, [])

    arun(scenario())


@contextlib.contextmanager
def production(db: Path) -> Iterator[tuple[TestClient, str]]:
    settings = EngineSettings(
        mode="start",
        database_url=str(db),
        signing_keys=(SIGNING_KEY,),
        dashboard_keys=(DASHBOARD_KEY,),
        poll_interval=0.05,
    )
    with TestClient(build_app(Engine(settings))) as http:
        signed_in = http.post("/login", data={"key": DASHBOARD_KEY}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        session = signed_in.cookies[COOKIE]
        http.cookies.clear()
        yield http, session


def test_in_production_uploads_want_the_key_and_a_session_may_only_read(tmp_path: Path) -> None:
    with production(tmp_path / "e.db") as (http, session):
        key = {"authorization": signing.bearer_token(SIGNING_KEY)}
        browser = {
            "cookie": f"{COOKIE}={session}",
            CSRF_HEADER: "1",
            "sec-fetch-site": "same-origin",
        }
        assert http.post("/v1/deploy-checks", json=report("shop")).status_code == 401
        assert http.get("/v1/deploy-checks").status_code == 401
        by_session = http.post("/v1/deploy-checks", json=report("shop"), headers=browser)
        assert by_session.status_code in (401, 403), by_session.text
        stored = http.post("/v1/deploy-checks", json=report("shop"), headers=key)
        assert stored.status_code == 201, stored.text
        for headers in (key, browser):
            read = http.get("/v1/deploy-checks", params={"app_id": "shop"}, headers=headers)
            assert read.status_code == 200, read.text
            assert [c["id"] for c in read.json()["data"]] == [stored.json()["data"]["id"]]


async def _round_trip(store: Store) -> None:
    check = DeployCheck("01CHECK", START, ("shop",), False, '{"runs":1}', '{"format":"x"}')
    await store.atomic(lambda tx: tx.deploy_checks.put_check(check))
    assert await store.read(lambda tx: tx.deploy_checks.list_checks("shop", 5)) == [check]


def _adding_deploy_checks(migrations: tuple[str, ...]) -> int:
    """The index of the migration that adds the tables (the database's version before it)."""
    [found] = [n for n, script in enumerate(migrations) if "CREATE TABLE deploy_checks" in script]
    return found


def test_a_sqlite_database_from_before_deploy_checks_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = _adding_deploy_checks(sqlite_schema.MIGRATIONS)
    conn = sqlite3.connect(path)
    for script in sqlite_schema.MIGRATIONS[:old]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {old}")
    conn.commit()
    conn.close()
    with_store(str(path), _round_trip)
    with sqlite3.connect(path) as done:
        assert done.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_schema.MIGRATIONS)


@pytest.mark.postgres
def test_a_postgres_database_from_before_deploy_checks_is_migrated() -> None:
    old = _adding_deploy_checks(_postgres_schema.MIGRATIONS)
    with postgres_schema() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE stepline_schema (version INTEGER NOT NULL)")
            for number, script in enumerate(_postgres_schema.MIGRATIONS[:old], start=1):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO stepline_schema (version) VALUES (%s)", (number,))
        with_store(url, _round_trip)
