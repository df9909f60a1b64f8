"""A function's metrics (``GET /v1/functions/{id}/metrics``) on both stores.

Runs are stored at known times, durations and statuses straight through ``Tx`` (no SDK
calls): every figure per bucket is asserted exactly (counts, failure rate, p50/p95 of
durations and start delays, the queue's depth at each bucket's end), and the queue now
(a concurrency-limited function with three runs parked behind the one running, a
throttled run, a due call). Windows that cannot be drawn are 400s, never 500s.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http import function_metrics
from stepline.engine._http.api import build_app
from stepline.engine._http.wire import ApiError
from stepline.engine._model import AppRecord, FunctionRecord, Job, JobKind, Run, RunStatus
from stepline.engine._store import Tx, store_for
from tests._support.aio import arun
from tests._support.engines import with_seeded_api
from tests._support.server_thread import ServerThread

T0 = 1_800_000_000.0  # a bucket edge (a multiple of 60 and of 300)
NOW = T0 + 290
FN = "app-limited"
WINDOW = {"since": str(T0), "until": str(T0 + 300), "bucket": "60"}
Q, C, R, D, F, X = (
    RunStatus.QUEUED,
    RunStatus.COMPLETED,
    RunStatus.RUNNING,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    None,
)

#: run id: (created, first call, end, status, waiting, job: (available_at, leased, parked))
RUNS: dict[str, tuple[float, float | None, float | None, RunStatus, str | None, Any]] = {
    "O": (-1000, -999, -900, C, None, X),  # long before: in nothing
    "P": (-100, None, None, Q, "paused", X),  # waiting since before the window
    "Q": (-50, 5, None, R, None, X),  # waited from before the window, started in it
    "A": (10, 11, 21, C, None, X),
    "B": (20, 22, 62, C, None, X),
    "C": (70, 100, 130, D, None, X),
    "D": (130, 131, 150, D, None, X),
    "E": (140, None, 170, F, None, X),  # cancelled before it started
    "F": (200, 201, None, R, None, (320, True, False)),  # holds the concurrency slot
    "G": (210, None, None, Q, "concurrency", (300, False, True)),
    "H": (220, None, None, Q, "concurrency", (300, False, True)),
    "I": (230, None, None, Q, "concurrency", (300, False, True)),
    "J": (250, None, None, Q, "throttled", (400, False, False)),
    "K": (280, None, None, Q, None, (280, False, False)),  # due, not leased yet
}


def _seed(tx: Tx) -> None:
    config = {"id": FN, "name": "limited", "triggers": [{"event": "a/go"}]}
    other = {"id": "app-other", "name": "other", "triggers": [{"event": "a/go"}]}
    app = AppRecord("app", "http://127.0.0.1:9/api", "py:stepline", None, T0, "x")
    tx.apps.put_app(app, [FunctionRecord(FN, "app", "limited", config, T0)])
    tx.apps.put_app(
        AppRecord("app2", "http://127.0.0.1:9/b", "py:stepline", None, T0, "y"),
        [FunctionRecord("app-other", "app2", "other", other, T0)],
    )
    for run_id, (created, started, ended, status, reason, job) in RUNS.items():
        waiting = None if reason is None else {"reason": reason, "since": T0 + created}
        tx.insert_run(
            Run(
                run_id=run_id,
                function_id=FN,
                app_id="app",
                status=status,
                events=[{"name": "a/go", "data": {}}],
                event_ids=[f"E{run_id}"],
                created_at=T0 + created,
                started_at=None if started is None else T0 + started,
                ended_at=None if ended is None else T0 + ended,
                waiting=waiting,
            )
        )
        if job is not None:
            available, leased, parked = job
            tx.queue.enqueue(Job(f"J{run_id}", JobKind.EXECUTE, T0 + available, run_id=run_id))
            if leased:
                tx.queue.lease_job(f"J{run_id}", "worker-1", T0 + available, T0 + available)
            if parked:
                tx.queue.park_job(f"J{run_id}", f"fn:{FN}:", T0 + available)
    # another function's runs in the window count for it only
    tx.insert_run(
        Run("OTHER", "app-other", "app2", C, [], [], T0 + 15, T0 + 16, T0 + 30),
    )


def _with_api(db: str, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    with_seeded_api(db, _seed, NOW, body)


def _column(buckets: list[dict[str, Any]], name: str) -> list[Any]:
    return [b[name] for b in buckets]


def test_every_figure_per_bucket_on_both_stores(db: str) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        answer = await http.get(f"/v1/functions/{FN}/metrics", params=WINDOW)
        assert answer.status_code == 200, answer.text
        got = answer.json()["data"]
        assert (got["since"], got["until"]) == (
            "2027-01-15T08:00:00.000Z",
            "2027-01-15T08:05:00.000Z",
        )
        assert (got["bucket_seconds"], got["window"]) == (60, None)
        buckets = got["buckets"]
        assert _column(buckets, "start")[1] == "2027-01-15T08:01:00.000Z"
        assert _column(buckets, "started") == [2, 1, 2, 4, 2]
        assert _column(buckets, "completed") == [1, 1, 0, 0, 0]
        assert _column(buckets, "failed") == [0, 0, 2, 0, 0]
        assert _column(buckets, "cancelled") == [0, 0, 1, 0, 0]
        assert _column(buckets, "failure_rate") == [0.0, 0.0, 1.0, None, None]
        # completed and failed runs, first call to end, by end time
        assert _column(buckets, "duration_count") == [1, 1, 2, 0, 0]
        assert _column(buckets, "duration_p50_ms") == [10_000, 40_000, 24_500, None, None]
        assert _column(buckets, "duration_p95_ms") == [10_000, 40_000, 29_450, None, None]
        assert _column(buckets, "duration_max_ms") == [10_000, 40_000, 30_000, None, None]
        # waiting to start at each bucket's end: P and Q before, then arrivals less starts
        assert _column(buckets, "queued") == [1, 1, 1, 4, 6]
        # creation to first call, by first call: Q waited 55 s, C 30 s
        assert _column(buckets, "delay_count") == [3, 1, 1, 1, 0]
        assert _column(buckets, "delay_p50_ms") == [2_000, 30_000, 1_000, 1_000, None]
        assert _column(buckets, "delay_p95_ms") == [49_700, 30_000, 1_000, 1_000, None]
        assert _column(buckets, "delay_max_ms") == [55_000, 30_000, 1_000, 1_000, None]
        assert got["totals"] == {
            "started": 11,
            "completed": 2,
            "failed": 2,
            "cancelled": 1,
            "failure_rate": 0.5,
            "duration_count": 4,
            "duration_p50_ms": 24_500,
            "duration_p95_ms": 38_500,
            "duration_max_ms": 40_000,
            "delay_count": 6,
            "delay_p50_ms": 1_500,
            "delay_p95_ms": 48_750,
            "delay_max_ms": 55_000,
        }
        assert got["queue"] == {
            "queued_runs": 6,
            "running_runs": 2,
            "held": {"concurrency": 3, "paused": 1, "throttled": 1},
            "jobs": {"due": 1, "running": 1, "parked": 3, "scheduled": 1},
        }

    _with_api(db, body)


def test_preset_windows_are_whole_buckets_ending_with_the_one_holding_now(db: str) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        url = f"/v1/functions/{FN}/metrics"
        default = (await http.get(url)).json()["data"]
        assert default["window"] == "24h"
        for name, span, bucket in (
            ("1h", 3600, 60),
            ("6h", 21_600, 600),
            ("24h", 86_400, 1800),
            ("7d", 604_800, 14_400),
        ):
            got = (await http.get(url, params={"window": name})).json()["data"]
            assert (got["window"], got["bucket_seconds"]) == (name, bucket)
            assert len(got["buckets"]) == span // bucket
            # NOW is 290 s past T0: the last bucket holds it
            last = function_metrics.window({"window": name}, NOW)
            assert last.until - bucket <= NOW < last.until
            assert got["totals"]["started"] == len(RUNS)  # O, P and Q too: within the hour
        one_hour = (await http.get(url, params={"window": "1h"})).json()["data"]
        assert one_hour["queue"]["queued_runs"] == 6
        assert sum(_column(one_hour["buckets"], "started")) == len(RUNS)

    _with_api(db, body)


def test_auto_takes_the_smallest_window_that_holds_the_functions_history(db: str) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        url = f"/v1/functions/{FN}/metrics"
        # the oldest run, O, was created 1000 s before T0: within the hour
        got = (await http.get(url, params={"window": "auto"})).json()["data"]
        assert (got["window"], got["bucket_seconds"], len(got["buckets"])) == ("1h", 60, 60)
        assert got["totals"]["started"] == len(RUNS)
        # another function with no runs at all: the hour too
        other = (await http.get("/v1/functions/app-other/metrics?window=auto")).json()["data"]
        assert other["window"] == "1h"
        tokens = await http.get(f"/v1/functions/{FN}/tokens", params={"window": "auto"})
        assert tokens.status_code == 400  # the dashboard asks with the window metrics took
        mixed = await http.get(url, params={"window": "auto", "since": str(T0)})
        assert mixed.status_code == 400
        # a bucket too small for a window auto could pick is refused whichever it picks
        tiny = await http.get(url, params={"window": "auto", "bucket": "600"})
        assert tiny.status_code == 400
        assert "bucket" in tiny.json()["error"]

    _with_api(db, body)


@pytest.mark.parametrize(
    ("ages", "picked"),
    [
        ((), "1h"),
        ((600.0,), "1h"),
        ((600.0, 3_599.0), "1h"),
        ((3_601.0,), "6h"),
        ((7 * 3_600.0,), "24h"),
        ((2 * 86_400.0,), "7d"),
        ((90 * 86_400.0, 60.0), "7d"),
    ],
)
def test_pick_is_the_smallest_preset_no_run_precedes(ages: tuple[float, ...], picked: str) -> None:
    asked: list[float] = []

    def older(when: float) -> bool:
        asked.append(when)
        return any(NOW - age < when for age in ages)

    assert function_metrics.pick(NOW, older) == picked
    span, bucket = function_metrics.WINDOWS[picked]
    assert 30 <= span / bucket <= 60  # enough bars to read, few enough to tell apart
    assert all(when < NOW for when in asked)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"window": "2h"}, "window: want one of 1h, 6h, 24h, 7d"),
        ({"window": "1h", "since": "1"}, "either window or since/until"),
        ({"until": "100"}, "until: give since too"),
        ({"since": "200", "until": "100"}, "until: must be after since"),
        ({"since": "100", "until": "100"}, "until: must be after since"),
        ({"since": "yesterday"}, "since: want an RFC 3339 time"),
        ({"since": "nan"}, "since: want a time between"),
        ({"since": "1", "until": "inf"}, "until: want a time between"),
        ({"since": "-5"}, "since: want a time between"),
        ({"bucket": "0"}, "bucket: want seconds"),
        ({"bucket": "-60"}, "bucket: want seconds"),
        ({"bucket": "nan"}, "bucket: want seconds"),
        ({"bucket": "5 parsecs"}, "bucket: want seconds"),
        ({"bucket": "1e400"}, "bucket: want seconds"),
        ({"window": "7d", "bucket": "60"}, "bucket: too small for the window"),
        ({"since": "0", "bucket": "1"}, "bucket: too small for the window"),
    ],
)
def test_a_window_that_cannot_be_drawn_is_a_400_naming_it(
    query: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ApiError) as raised:
        function_metrics.window(query, NOW)
    assert raised.value.status == 400
    assert fragment in raised.value.message


def test_the_route_answers_400_and_404_as_json(tmp_path: Path) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        bad = await http.get(f"/v1/functions/{FN}/metrics", params={"window": "2h"})
        assert bad.status_code == 400
        assert "window" in bad.json()["error"]
        tiny = await http.get(f"/v1/functions/{FN}/metrics", params={"bucket": "0.001"})
        assert tiny.status_code == 400
        missing = await http.get("/v1/functions/app-nope/metrics")
        assert missing.status_code == 404
        assert "app-nope" in missing.json()["error"]
        # a custom window without bucket gets a round one (60 buckets at most)
        got = (await http.get(f"/v1/functions/{FN}/metrics", params={"since": str(T0)})).json()
        assert (got["data"]["bucket_seconds"], len(got["data"]["buckets"])) == (5, 58)

    _with_api(str(tmp_path / "e.db"), body)


def test_sqlite_reads_the_window_through_the_function_index(tmp_path: Path) -> None:
    _with_api(str(tmp_path / "e.db"), _no_request)
    conn = sqlite3.connect(tmp_path / "e.db")
    try:
        plans = _plans(conn)
    finally:
        conn.close()
    assert plans, "no runs query was explained"
    for detail in plans:
        assert "SCAN runs" not in detail, detail
    assert any("runs_function_ended" in d for d in plans)


async def _no_request(http: httpx.AsyncClient) -> None:
    return None


def _plans(conn: sqlite3.Connection) -> list[str]:
    """The query plan steps touching ``runs``, of every query the metrics make."""

    class Explaining:
        def __init__(self) -> None:
            self.plans: list[str] = []

        def execute(self, sql: str, args: Any = ()) -> Any:
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args):
                if " runs" in row[3] or "jobs" in row[3]:
                    self.plans.append(str(row[3]))
            return conn.execute(sql, args)

    from stepline.engine._store.sqlite import SqliteTx

    explaining = Explaining()
    tx = SqliteTx(explaining)
    tx.metrics.function_metrics(FN, since=T0, bucket=60, count=5, now=NOW)
    return explaining.plans


def test_the_client_reads_the_same_figures(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")

    async def fill() -> None:
        store = store_for(EngineSettings(database_url=db))
        await store.open()
        try:
            await store.atomic(_seed)
        finally:
            await store.close()

    arun(fill())
    # the real clock: T0 is in 2027, so none of the seeded jobs comes due meanwhile
    server = ServerThread("engine-metrics")
    server.start(build_app(Engine(EngineSettings(database_url=db))))
    client = stepline.Client("app", is_production=False, api_base_url=server.url)
    try:
        since = dt.datetime.fromtimestamp(T0, tz=dt.timezone.utc)
        limited = client.get_function_sync("limited")
        got = limited.metrics(
            since=since,
            until=since + dt.timedelta(minutes=5),
            bucket=dt.timedelta(minutes=1),
        )
        assert [b["started"] for b in got["buckets"]] == [2, 1, 2, 4, 2]
        assert got["totals"]["failure_rate"] == 0.5
        assert got["queue"]["held"] == {"concurrency": 3, "paused": 1, "throttled": 1}
        assert limited.metrics("1h")["window"] == "1h"
        with pytest.raises(stepline.FunctionNotFoundError):
            client.get_function_sync("nope").metrics()
        with pytest.raises(stepline.ManagementError, match="bucket"):
            limited.metrics(bucket=dt.timedelta(milliseconds=5))

        async def in_async() -> dict[str, Any]:
            try:
                return await client.get_function("app-limited").metrics("7d")
            finally:
                await client.aclose()  # its pool belongs to this loop

        assert arun(in_async())["bucket_seconds"] == 14_400
    finally:
        client.close()
        server.stop()
