"""Run queries: a CEL expression over runs, compiled to SQL where its fields are columns.

The compiler's SQL must select exactly the runs CEL's evaluation keeps (``exact``), or a
superset the engine checks in Python: both are held to ``RunQuery.matches`` over every run
of a seeded store, on SQLite and Postgres, for written and generated queries. The REST API
takes ``?query=``, answers a 400 locating a bad one, and pages through a query's runs.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stepline
from stepline import _json
from stepline._status import RunStatus
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._http.api import build_app
from stepline.engine._model import Run
from stepline.engine._store import RunFilter, Store, Tx, store_for
from stepline.engine._store.run_query import (
    FIELDS,
    MAX_DEPTH,
    MAX_LENGTH,
    QueryError,
    compile_query,
)
from tests._support.aio import arun
from tests._support.engines import with_seeded_api
from tests._support.in_process import to_engine

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z
NOW = T0 + 10_000
FUNCTIONS = ("app-charge", "app-refund", "app-email")
STATUSES = tuple(RunStatus)
VERSIONS = (None, "v1", "v2")
TENANTS = (None, "acme", "globex")
PLANS = ("free", "pro")
ERRORS = ("TimeoutError", "ValueError")
N_RUNS = 240


def _runs() -> list[Run]:
    """Runs with every field varied (a fixed seed: the same runs on every store)."""
    rng = random.Random(62)
    runs = []
    for n in range(N_RUNS):
        status = rng.choice(STATUSES)
        created = T0 + n * 30 + rng.randrange(0, 1000) / 1000
        started = None if status is RunStatus.QUEUED else created + rng.randrange(0, 5000) / 1000
        ended = None
        if status.terminal and started is not None:
            ended = started + rng.choice((0.25, 1.0, 3.5, 61.0, 600.0))
        output: Any = None
        if status is RunStatus.COMPLETED:
            output = {"total": rng.randrange(0, 500)}
        elif status is RunStatus.FAILED:
            output = {"name": rng.choice(ERRORS), "message": "boom"}
        run = Run(
            run_id=f"01J{n:023d}",
            function_id=rng.choice(FUNCTIONS),
            app_id=rng.choice(("app", "billing")),
            status=status,
            events=[{"name": "shop/order", "data": {"plan": rng.choice(PLANS), "n": n}}],
            event_ids=[f"E{n}"],
            created_at=created,
            started_at=started,
            ended_at=ended,
            output=None if output is None else _json.dumps(output),
            app_version=rng.choice(VERSIONS),
        )
        tenant = rng.choice(TENANTS)
        run.attributes = {} if tenant is None else {"tenant": tenant}
        if rng.random() < 0.3:
            run.attributes = {**run.attributes, "region": rng.choice(("eu", "us"))}
        runs.append(run)
    return runs


RUNS = _runs()


_SEEDED: set[str] = set()


def _seed(tx: Tx) -> None:
    for run in RUNS:
        tx.insert_run(run)
        if run.attributes:
            tx.attributes.set_attributes(run.run_id, run.attributes)


@asynccontextmanager
async def _store(db: str) -> AsyncIterator[Store]:
    store = store_for(EngineSettings(database_url=db))
    await store.open()
    try:
        if db not in _SEEDED:  # once per database: hypothesis's examples share the test's
            await store.atomic(_seed)
            _SEEDED.add(db)
        yield store
    finally:
        await store.close()


def _expected(text: str) -> list[str]:
    """The runs CEL keeps, newest first (what the SQL must agree with)."""
    query = compile_query(text, NOW)
    return sorted((r.run_id for r in RUNS if query.matches(r)), reverse=True)


async def _selected(store: Store, text: str) -> tuple[list[str], bool]:
    """The runs the compiled SQL selects, and whether it claims to be exact."""
    query = compile_query(text, NOW)
    where = RunFilter(limit=N_RUNS + 1, condition=query.where, condition_args=query.args)
    found = await store.read(lambda tx: tx.list_runs(where))
    return [r.run_id for r in found], query.exact


WRITTEN = (
    'status == "Failed"',
    'status != "Failed" && function_id == "app-charge"',
    'status in ["Failed", "Cancelled"]',
    '!(status in ["Failed", "Cancelled"])',
    'version == "v1"',
    'version != "v1"',
    "version == null",
    "version != null",
    '!(version == "v2") || status == "Queued"',
    'app_id == "app"',
    'app_id != "app"',
    'attributes.tenant == "acme"',
    'attributes["tenant"] != "acme"',
    '!(attributes.tenant == "acme")',
    "has(attributes.region)",
    "!has(attributes.region) && has(attributes.tenant)",
    'created >= timestamp("2026-05-28T21:00:00Z")',
    'created < timestamp("2026-05-28T21:00:00Z") || status == "Running"',
    'ended > now - duration("2h")',
    '!(ended > now - duration("2h"))',
    'started == timestamp("2026-05-28T20:26:40Z")',
    'duration > duration("1m")',
    'duration <= duration("1s")',
    '!(duration < duration("3s"))',
    'duration == duration("3.5s")',
    'error == "TimeoutError"',
    'status == "Completed" && output.total > 250',
    'event.data.plan == "pro" && function_id == "app-email"',
    'event.name == "shop/order" && !(status == "Completed")',
    'run_id == "01J00000000000000000000007"',
    'status == "Failed" ? error == "ValueError" : false',
    "true",
    "false",
    'status == 3 || function_id == "app-refund"',
)


@pytest.mark.parametrize("text", WRITTEN)
def test_the_compiled_sql_selects_what_cel_keeps(db: str, text: str) -> None:
    async def scenario() -> None:
        async with _store(db) as store:
            selected, exact = await _selected(store, text)
            expected = _expected(text)
            if exact:
                assert selected == expected
            else:
                assert set(expected) <= set(selected)

    arun(scenario())


def test_column_comparisons_compile_exactly_and_payload_paths_do_not() -> None:
    assert compile_query('status == "Failed" && function_id == "a"', NOW).exact
    assert compile_query('attributes.tenant == "acme"', NOW).exact
    assert compile_query('created > now - duration("1h")', NOW).exact
    narrowed = compile_query('status == "Failed" && event.data.plan == "pro"', NOW)
    assert not narrowed.exact
    assert narrowed.where == "status = ?"
    assert narrowed.args == ("Failed",)
    assert compile_query('event.data.plan == "pro"', NOW).where is None
    # one side that may hold for any run leaves an OR nothing to narrow with
    assert compile_query('status == "Failed" || output.total > 1', NOW).where is None
    # values are parameters, never SQL text
    hostile = compile_query('function_id == "x\'; DROP TABLE runs; --"', NOW)
    assert hostile.where == "function_id = ?"
    assert hostile.args == ("x'; DROP TABLE runs; --",)


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ('status == "Failed" &&', 22, "unexpected end"),
        ('statuz == "Failed"', 1, "unknown field 'statuz'"),
        ('status == "Failed" && plan == "pro"', 23, "unknown field 'plan'"),
        ('status == "Fa', 11, "unterminated"),
    ],
)
def test_a_bad_query_names_its_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        compile_query(text, NOW)
    assert caught.value.column == column, caught.value
    assert reason in caught.value.reason
    assert caught.value.details()["column"] == column


def test_long_or_deep_queries_are_refused() -> None:
    with pytest.raises(QueryError, match="longer than"):
        compile_query('status == "x" || ' * 200 + "true", NOW)
    assert len('status == "x" || ' * 200) > MAX_LENGTH
    with pytest.raises(QueryError, match="nested") as caught:
        compile_query("!" * (MAX_DEPTH + 1) + 'status == "Failed"', NOW)
    assert caught.value.column == 1
    # nesting is counted as written, before constants fold away
    with pytest.raises(QueryError, match="nested"):
        compile_query("[" * (MAX_DEPTH + 1) + "1" + "]" * (MAX_DEPTH + 1) + " == []", NOW)
    compile_query("(" * (MAX_DEPTH + 2) + "true" + ")" * (MAX_DEPTH + 2), NOW)  # no depth


def test_every_field_is_documented_and_offered_by_the_search_box() -> None:
    from importlib import resources

    script = (resources.files("stepline.engine._http") / "static" / "query.js").read_text()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text()
    reference = docs[docs.index("## Finding runs") :]
    for name in FIELDS:
        assert f'"{name}"' in script, name
        assert f"`{name}`" in reference, name


# --- generated queries: the SQL and CEL agree on every one ---------------------------

_STRING_FIELDS = {
    "status": [s.value for s in STATUSES] + ["Nope"],
    "function_id": [*FUNCTIONS, "app-none"],
    "version": ["v1", "v2", "v3"],
    "app_id": ["app", "other"],
}
_TIMES = ("created", "started", "ended")


def _leaf() -> st.SearchStrategy[str]:
    string = st.sampled_from(sorted(_STRING_FIELDS)).flatmap(
        lambda f: st.tuples(
            st.just(f),
            st.sampled_from(["==", "!=", "<", ">="]),
            st.sampled_from(_STRING_FIELDS[f]),
        ).map(lambda t: f'{t[0]} {t[1]} "{t[2]}"')
    )
    null = st.tuples(
        st.sampled_from(["version", "app_id", "started", "ended", "duration"]),
        st.sampled_from(["==", "!="]),
    ).map(lambda t: f"{t[0]} {t[1]} null")
    membership = st.tuples(
        st.sampled_from(sorted(_STRING_FIELDS)),
        st.lists(
            st.sampled_from(["Failed", "v1", "app-charge", "app", "Queued"]), min_size=1, max_size=3
        ),
    ).map(lambda t: f"{t[0]} in [{', '.join(repr(v).replace(chr(39), chr(34)) for v in t[1])}]")
    when = st.tuples(
        st.sampled_from(_TIMES),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.integers(min_value=-60, max_value=N_RUNS * 30 + 60),
    ).map(lambda t: f'{t[0]} {t[1]} timestamp("{_rfc3339(T0 + t[2])}")')
    lasting = st.tuples(
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.sampled_from(["250ms", "1s", "3.5s", "61s", "10m", "2s"]),
    ).map(lambda t: f'duration {t[0]} duration("{t[1]}")')
    attribute = st.tuples(
        st.sampled_from(["tenant", "region"]),
        st.sampled_from(["==", "!="]),
        st.sampled_from(["acme", "globex", "eu", "us"]),
    ).map(lambda t: f'attributes.{t[0]} {t[1]} "{t[2]}"')
    has = st.sampled_from(["tenant", "region"]).map(lambda n: f"has(attributes.{n})")
    payload = st.sampled_from(
        ['event.data.plan == "pro"', "output.total > 100", 'error == "ValueError"']
    )
    return st.one_of(string, null, membership, when, lasting, attribute, has, payload)


def _rfc3339(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_QUERIES = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        inner.map(lambda q: f"!({q})"),
        st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
    ),
    max_leaves=5,
)


@pytest.mark.slow  # 150 queries against a store: about 5 s
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=_QUERIES)
def test_generated_queries_select_in_sql_what_cel_keeps(db: str, text: str) -> None:
    async def scenario() -> None:
        async with _store(db) as store:
            selected, exact = await _selected(store, text)
        expected = _expected(text)
        if exact:
            assert selected == expected, text
        else:
            assert set(expected) <= set(selected), text

    arun(scenario())


# --- the REST API ----------------------------------------------------------------------


def _with_api(db: str, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    with_seeded_api(db, _seed, NOW, body)


async def _pages(http: httpx.AsyncClient, **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Every run a query lists, following ``next_cursor``; and each page's metadata."""
    ids: list[str] = []
    metas: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        answer = await http.get(
            "/v1/runs", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids += [r["run_id"] for r in page["data"]]
        metas.append(page["metadata"])
        cursor = page["metadata"]["next_cursor"]
        if cursor is None:
            return ids, metas
    raise AssertionError("paging did not end")


@pytest.mark.slow  # a dozen pages through the API: about 0.7 s
def test_the_runs_list_takes_a_query_and_pages_through_it(db: str) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        exact = 'status == "Failed" || attributes.tenant == "acme"'
        ids, metas = await _pages(http, query=exact, limit=7)
        assert ids == _expected(exact)
        assert len(metas) > 2
        assert all(m["exact"] for m in metas)
        # a payload path: checked in Python, narrowed by the column first
        scanned = 'function_id == "app-charge" && event.data.plan == "pro"'
        ids, metas = await _pages(http, query=scanned, limit=5)
        assert ids == _expected(scanned)
        assert not metas[0]["exact"]
        charged = sum(1 for r in RUNS if r.function_id == "app-charge")
        # each page read only that function's runs (the column narrowed the scan)
        assert all(m["scanned"] <= charged < N_RUNS for m in metas)
        assert metas[-1]["scan_complete"]
        # the page's runs carry their attributes, though the query reads none
        page = (await http.get("/v1/runs", params={"query": scanned, "limit": 50})).json()
        by_id = {r.run_id: r.attributes for r in RUNS}
        assert [r["attributes"] for r in page["data"]] == [by_id[r["run_id"]] for r in page["data"]]
        assert any(r["attributes"] for r in page["data"])
        # a scan limit smaller than the runs: pages go on where each scan stopped
        ids, metas = await _pages(http, query="event.data.n % 10 == 3", scan=25, limit=50)
        assert ids == _expected("event.data.n % 10 == 3")
        assert not metas[0]["scan_complete"]
        assert metas[0]["scanned"] == 25
        # the other filters still apply
        answer = await http.get(
            "/v1/runs", params={"query": 'status == "Failed"', "function_id": "app-email"}
        )
        listed = [r["run_id"] for r in answer.json()["data"]]
        assert listed == _expected('status == "Failed" && function_id == "app-email"')[:50]

    _with_api(db, body)


def test_a_bad_query_is_a_400_with_its_column(db: str) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        answer = await http.get("/v1/runs", params={"query": 'status == "Failed" && plan'})
        assert answer.status_code == 400
        error = answer.json()
        assert error["code"] == "invalid_query"
        assert error["details"]["column"] == 23
        assert "unknown field 'plan'" in error["error"]
        long = await http.get("/v1/runs", params={"query": "true && " * 300 + "true"})
        assert long.status_code == 400
        assert "longer than" in long.json()["error"]
        bad_scan = await http.get("/v1/runs", params={"query": "output.x == 1", "scan": "0"})
        assert bad_scan.status_code == 400
        assert "scan" in bad_scan.json()["error"]

    _with_api(db, body)


def test_the_client_lists_the_runs_a_query_matches(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = EngineSettings(database_url=str(tmp_path / "e.db"))
        store = store_for(settings)
        await store.open()
        try:
            await store.atomic(_seed)
        finally:
            await store.close()
        engine = Engine(settings, clock=ManualClock(NOW))
        client = stepline.Client("query", is_production=False)
        to_engine(client, build_app(engine))
        await engine.start(worker=False, sync=False)
        try:
            text = 'status == "Failed" && event.data.plan == "pro"'
            runs, after = await client.list_runs(query=text, limit=500)
            assert [r.run_id for r in runs] == _expected(text)
            assert after is None
            mixed, _ = await client.list_runs(query=text, status=["Failed"], function="x")
            assert mixed == []  # with the other filters (function "query-x": none)
            with pytest.raises(stepline.ManagementError, match="unknown field 'plan'"):
                await client.list_runs(query='plan == "pro"')
        finally:
            await engine.stop()

    arun(scenario())
