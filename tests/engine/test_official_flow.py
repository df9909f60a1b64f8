"""Flow control declared with the official ``inngest`` package, over real HTTP.

One engine (``build_app`` under uvicorn, fast retries) and one FastAPI app served with
``inngest.fast_api.serve`` run in background threads for the whole module, once per store
(``module_db``), as in ``test_official_py``. The app syncs by the SDK's own
``/fn/register`` call, whose body is captured on the way in: the first test checks that
every flow-control option the SDK can send arrives in the engine's registry with the same
values; the others send events with the SDK client and check, through the REST API, that
the engine enforces concurrency, batching, debounce, rate limits and throttling on the
SDK's functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime as dt
import itertools
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import fastapi
import httpx
import inngest
import pydantic.warnings
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._apps.registry import parse_app
from stepline.engine._flow.rules import FlowRules
from stepline.engine._http.api import build_app
from tests._support.polling import wait_until
from tests._support.recording import Recorder
from tests._support.server_thread import ServerThread

with warnings.catch_warnings():
    # inngest 0.5.19's comm_lib.CommRequest still declares a class-based pydantic
    # ``Config``; pydantic 2 warns once, when the module is imported. Nothing else.
    warnings.filterwarnings(
        "ignore",
        message="Support for class-based `config` is deprecated",
        category=pydantic.warnings.PydanticDeprecatedSince20,
    )
    import inngest.fast_api

APP_ID = "official-flow"
TERMINAL = ("Completed", "Failed", "Cancelled")
#: The config keys of the flow-control options, as the SDK sends them.
FLOW_KEYS = ("concurrency", "throttle", "rateLimit", "debounce", "batchEvents", "priority")
#: How long one step of the concurrency scenario takes.
STEP_SECONDS = 0.4


def event(name: str) -> str:
    return f"{APP_ID}/{name}"


def fid(local: str) -> str:
    return f"{APP_ID}-{local}"


# -- the app ------------------------------------------------------------------------------


@dataclasses.dataclass
class AppLog:
    """What the app's functions saw; written from the app's threads, read by the tests."""

    #: ``(user, i, entered, exited)`` of each concurrency step body that ran.
    spans: list[tuple[str, int, float, float]] = dataclasses.field(default_factory=list)
    #: ``time.monotonic()`` of each call of a function, by local function id.
    calls: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def call(self, local: str) -> None:
        with self.lock:
            self.calls.setdefault(local, []).append(time.monotonic())

    def span(self, user: str, i: int, entered: float, exited: float) -> None:
        with self.lock:
            self.spans.append((user, i, entered, exited))


def build(engine_url: str) -> tuple[inngest.Inngest, list[inngest.Function[Any]], AppLog]:
    """The client, the functions and the log of the flow-control app."""
    client = inngest.Inngest(
        app_id=APP_ID,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
    )
    log = AppLog()
    functions: list[inngest.Function[Any]] = []

    def fn(local: str, **options: Any) -> Callable[[Callable[..., Any]], inngest.Function[Any]]:
        options.setdefault("retries", 0)
        options.setdefault("trigger", inngest.TriggerEvent(event=event(local)))
        decorate = client.create_function(fn_id=local, **options)

        def register(handler: Callable[..., Any]) -> inngest.Function[Any]:
            function = decorate(handler)
            functions.append(function)
            return function

        return register

    # -- declared only: every option the SDK has, for the registration round trip -------

    @fn(
        "all-options",
        concurrency=[
            inngest.Concurrency(limit=5, key="event.data.tenant", scope="account"),
            inngest.Concurrency(limit=1, key="event.data.user"),
        ],
        throttle=inngest.Throttle(
            limit=100, period=dt.timedelta(days=7), burst=5, key="event.data.user"
        ),
        rate_limit=inngest.RateLimit(limit=3, period=90_000, key="event.data.tenant"),
        debounce=inngest.Debounce(
            period=dt.timedelta(seconds=30), timeout=dt.timedelta(hours=2), key="event.data.user"
        ),
        priority=inngest.Priority(run="event.data.plan == 'enterprise' ? 120 : 0"),
        singleton=inngest.Singleton(mode="cancel", key="event.data.user"),
    )
    def all_options(ctx: inngest.ContextSync) -> None:
        log.call("all-options")

    @fn(
        "all-batch",  # batching cannot be combined with debounce: a function of its own
        batch_events=inngest.Batch(
            max_size=50,
            timeout=5_000,
            key="event.data.tenant",
            if_exp="event.data.kind == 'bulk'",
        ),
        singleton=inngest.Singleton(mode="skip"),
    )
    def all_batch(ctx: inngest.ContextSync) -> None:
        log.call("all-batch")

    # -- behaviour ------------------------------------------------------------------------

    @fn("concurrency", concurrency=[inngest.Concurrency(limit=1, key="event.data.user")])
    async def concurrency(ctx: inngest.Context) -> str:
        log.call("concurrency")
        user, i = str(ctx.event.data["user"]), int(str(ctx.event.data["i"]))

        async def work() -> None:
            entered = time.monotonic()
            await asyncio.sleep(STEP_SECONDS)
            log.span(user, i, entered, time.monotonic())

        await ctx.step.run("work", work)
        return f"{user}{i}"

    @fn("batch", batch_events=inngest.Batch(max_size=3, timeout=dt.timedelta(seconds=10)))
    def batch(ctx: inngest.ContextSync) -> dict[str, Any]:
        log.call("batch")
        return {"first": ctx.event.data, "all": [e.data for e in ctx.events]}

    @fn("debounce", debounce=inngest.Debounce(period=dt.timedelta(seconds=1)))
    def debounce(ctx: inngest.ContextSync) -> dict[str, Any]:
        log.call("debounce")
        return {"data": ctx.event.data, "events": len(ctx.events)}

    @fn(
        "rate-limit",
        rate_limit=inngest.RateLimit(
            limit=1, period=dt.timedelta(minutes=1), key="event.data.user"
        ),
    )
    def rate_limit(ctx: inngest.ContextSync) -> Any:
        log.call("rate-limit")
        return ctx.event.data

    # the SDK's default burst is 1: limit + burst = 2 runs may start at once
    @fn("throttle", throttle=inngest.Throttle(limit=1, period=dt.timedelta(seconds=2)))
    def throttle(ctx: inngest.ContextSync) -> Any:
        log.call("throttle")
        return ctx.event.data

    @fn(
        "throttle-no-burst",
        throttle=inngest.Throttle(limit=1, period=dt.timedelta(seconds=2), burst=0),
    )
    def throttle_no_burst(ctx: inngest.ContextSync) -> Any:
        log.call("throttle-no-burst")
        return ctx.event.data

    return client, functions, log


# -- the stack ----------------------------------------------------------------------------


@dataclasses.dataclass
class Stack:
    """The running engine and app, and helpers that read the engine's REST API."""

    engine: Engine
    http: httpx.Client
    client: inngest.Inngest
    log: AppLog
    recorder: Recorder
    functions: list[inngest.Function[Any]]

    def send(self, local: str, *data: dict[str, Any]) -> list[str]:
        """Send events (one request) through the official client; their internal ids."""
        events = [inngest.Event(name=event(local), data=d) for d in data]
        ids: list[str] = self.client.send_sync(events)
        return ids

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def runs(self, local: str) -> list[dict[str, Any]]:
        """The function's runs, oldest first."""
        return list(self.get("/v1/runs", function_id=fid(local))["data"])[::-1]

    def wait_runs(self, local: str, count: int) -> list[dict[str, Any]]:
        """The function's runs (oldest first) once exactly ``count`` exist."""

        def found() -> list[dict[str, Any]] | None:
            runs = self.runs(local)
            assert len(runs) <= count, runs
            return runs if len(runs) == count else None

        runs: list[dict[str, Any]] = wait_until(found, message=f"{count} run(s) of {local}")
        return runs

    def finished(self, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The run once it has ended."""

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = self.get(f"/v1/runs/{run_id}")["data"]
            return run if run["status"] in TERMINAL else None

        run: dict[str, Any] = wait_until(ended, timeout=timeout, message=f"run {run_id} to end")
        return run

    def waiting(self, local: str, reason: str, timeout: float = 5.0) -> dict[str, Any]:
        """The first run of the function seen held back for ``reason``."""

        def held() -> dict[str, Any] | None:
            return next(
                (r for r in self.runs(local) if (r["waiting"] or {}).get("reason") == reason),
                None,
            )

        run: dict[str, Any] = wait_until(
            held, timeout=timeout, message=f"a {reason} run of {local}"
        )
        return run

    def event_runs(self, event_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.get(f"/v1/events/{event_id}/runs")
        return body


def started(run: dict[str, Any]) -> float:
    """A run's ``run_started_at`` in epoch seconds."""
    return dt.datetime.fromisoformat(run["run_started_at"].replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    engine_server = ServerThread("stepline-engine")
    app_server = ServerThread("inngest-flow-app")
    settings = EngineSettings(
        database_url=module_db,
        port=engine_server.port,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.05,
    )
    engine = Engine(settings)
    recorder = Recorder(build_app(engine), prefixes=("/fn/register",))
    client, functions, log = build(engine_server.url)
    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, functions)
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)  # LIFO: the engine stops after the app
        stop.callback(app_server.stop)
        engine_server.start(recorder)
        app_server.start(app)
        http = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30))
        # a PUT, as the dev server's ping: the SDK POSTs its register body to the engine
        synced = httpx.put(f"{app_server.url}/api/inngest", timeout=30)
        assert synced.status_code == 200, synced.text
        assert synced.json()["ok"] is True, synced.text
        yield Stack(engine, http, client, log, recorder, functions)


# -- registration -------------------------------------------------------------------------


def _text(program: Any) -> str | None:
    return None if program is None else str(program.text)


def describe(flow: FlowRules) -> dict[str, Any]:
    """Flow rules as plain values (expressions by their text), to compare whole."""
    t, r, d, b, s = flow.throttle, flow.rate_limit, flow.debounce, flow.batch, flow.singleton
    return {
        "concurrency": [(c.limit, c.scope, _text(c.key)) for c in flow.concurrency],
        "throttle": t and (t.limit, t.period, t.burst, _text(t.key)),
        "rate_limit": r and (r.limit, r.period, _text(r.key)),
        "debounce": d and (d.period, d.timeout, _text(d.key)),
        "batch": b and (b.max_size, b.timeout, _text(b.key), _text(b.condition)),
        "priority": _text(flow.priority),
        "singleton": s and (s.mode, _text(s.key)),
    }


NO_FLOW: dict[str, Any] = describe(FlowRules())


@pytest.mark.slow
def test_sdk_registration_round_trips_every_flow_option(stack: Stack) -> None:
    (body, *_) = stack.recorder.bodies("/fn/register")
    sent = {f["id"]: f for f in body["functions"]}
    assert set(sent) == {f.id for f in stack.functions}

    # what inngest-py puts on the wire: durations as strings, unset fields left out
    options = sent[fid("all-options")]
    assert options["concurrency"] == [
        {"key": "event.data.tenant", "limit": 5, "scope": "account"},
        {"key": "event.data.user", "limit": 1},
    ]
    assert options["throttle"] == {
        "key": "event.data.user",
        "limit": 100,
        "period": "1w",
        "burst": 5,
    }
    assert options["rateLimit"] == {"key": "event.data.tenant", "limit": 3, "period": "90s"}
    assert options["debounce"] == {"key": "event.data.user", "period": "30s", "timeout": "2h"}
    assert options["priority"] == {"run": "event.data.plan == 'enterprise' ? 120 : 0"}
    assert options["singleton"] == {"key": "event.data.user", "mode": "cancel"}
    assert "batchEvents" not in options
    assert sent[fid("all-batch")]["batchEvents"] == {
        "maxSize": 50,
        "timeout": "5s",
        "key": "event.data.tenant",
        "if": "event.data.kind == 'bulk'",
    }
    assert sent[fid("throttle")]["throttle"]["burst"] == 1, "the SDK's default burst"

    expected = {
        fid("all-options"): {
            "concurrency": [(5, "account", "event.data.tenant"), (1, "fn", "event.data.user")],
            "throttle": (100, 7 * 86_400.0, 5, "event.data.user"),
            "rate_limit": (3, 90.0, "event.data.tenant"),
            "debounce": (30.0, 7_200.0, "event.data.user"),
            "batch": None,
            "priority": "event.data.plan == 'enterprise' ? 120 : 0",
            "singleton": ("cancel", "event.data.user"),
        },
        fid("all-batch"): {
            **NO_FLOW,
            "batch": (50, 5.0, "event.data.tenant", "event.data.kind == 'bulk'"),
            "singleton": ("skip", None),
        },
        fid("concurrency"): {**NO_FLOW, "concurrency": [(1, "fn", "event.data.user")]},
        fid("batch"): {**NO_FLOW, "batch": (3, 10.0, None, None)},
        fid("debounce"): {**NO_FLOW, "debounce": (1.0, None, None)},
        fid("rate-limit"): {**NO_FLOW, "rate_limit": (1, 60.0, "event.data.user")},
        fid("throttle"): {**NO_FLOW, "throttle": (1, 2.0, 1, None)},
        fid("throttle-no-burst"): {**NO_FLOW, "throttle": (1, 2.0, 0, None)},
    }
    parsed = {f.function_id: describe(f.flow) for f in parse_app(body).functions}
    assert parsed == expected
    # the running engine's registry holds the same rules, and its API the config as sent
    registry = {f.function_id: describe(f.flow) for f in stack.engine.registry}
    assert {k: v for k, v in registry.items() if k.startswith(f"{APP_ID}-")} == expected
    stored = {f["function_id"]: f["config"] for f in stack.get("/v1/functions")["data"]}
    for function_id, config in sent.items():
        for key in (*FLOW_KEYS, "singleton"):
            assert stored[function_id].get(key) == config.get(key), (function_id, key)


@pytest.mark.parametrize(
    ("local", "change", "option"),
    [
        ("throttle", {"throttle": {"limit": 1, "period": "0s"}}, "throttle.period"),
        (
            "concurrency",
            {"concurrency": [{"limit": 1}, {"limit": 2, "key": "event.data.a"}, {"limit": 3}]},
            "concurrency",
        ),
        ("debounce", {"batchEvents": {"maxSize": 2, "timeout": "5s"}}, "batchEvents"),
        (
            "rate-limit",
            {"rateLimit": {"limit": 1, "period": "1m", "key": "event.("}},
            "rateLimit.key",
        ),
    ],
)
def test_malformed_flow_option_is_refused_naming_function_and_option(
    stack: Stack, local: str, change: dict[str, Any], option: str
) -> None:
    (sent, *_) = stack.recorder.bodies("/fn/register")
    # the SDK's own config for the function, altered by hand, under an app of its own
    bad_app = f"{APP_ID}-bad"
    [config] = copy.deepcopy([f for f in sent["functions"] if f["id"] == fid(local)])
    config.update(change, id=f"{bad_app}-{local}")
    body = {**copy.deepcopy(sent), "appname": bad_app, "functions": [config]}

    response = stack.http.post("/fn/register", json=body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert f"function '{bad_app}-{local}'" in error
    assert option in error
    assert bad_app not in {a["app_id"] for a in stack.get("/v1/apps")["data"]}
    assert not [f for f in stack.get("/v1/functions")["data"] if f["app_id"] == bad_app]


# -- behaviour ----------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrency_limit_per_key_never_overlaps_steps(stack: Stack) -> None:
    users = [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    stack.send("concurrency", *({"user": u, "i": i} for u, i in users))
    held = stack.waiting("concurrency", "concurrency")
    assert '"a"' in held["waiting"]["key"], held["waiting"]
    runs = stack.wait_runs("concurrency", 4)
    ended = [stack.finished(r["run_id"]) for r in runs]
    assert sorted(r["output"] for r in ended) == ["a0", "a1", "a2", "b0"]
    assert all(r["status"] == "Completed" for r in ended)

    with stack.log.lock:
        spans = sorted(stack.log.spans, key=lambda s: s[2])
    assert sorted((u, i) for u, i, _, _ in spans) == users, "each step body ran once"
    a_spans = [s for s in spans if s[0] == "a"]
    for before, after in itertools.pairwise(a_spans):
        assert after[2] >= before[3], f"steps of key a overlap: {before} and {after}"
    # the three a steps ran one after the other: they took at least three steps' time
    assert a_spans[-1][3] - a_spans[0][2] >= 3 * STEP_SECONDS
    # key b has its own slot: its step ran while key a's steps were running
    [(_, _, b_in, b_out)] = [s for s in spans if s[0] == "b"]
    assert any(b_in < a_out and a_in < b_out for _, _, a_in, a_out in a_spans), spans


def test_batch_of_three_events_starts_one_run(stack: Stack) -> None:
    began = time.monotonic()
    [first] = stack.send("batch", {"i": 0})
    gathering = stack.waiting("batch", "batched")
    assert (gathering["waiting"]["events"], gathering["waiting"]["max"]) == (1, 3)
    [second] = stack.send("batch", {"i": 1})
    [third] = stack.send("batch", {"i": 2})
    [run] = stack.wait_runs("batch", 1)
    run = stack.finished(run["run_id"])
    # the batch started when it was full, not at its 10 s timeout
    assert time.monotonic() - began < 8
    assert run["status"] == "Completed"
    assert run["output"] == {"first": {"i": 0}, "all": [{"i": 0}, {"i": 1}, {"i": 2}]}
    assert run["event_ids"] == [first, second, third]
    assert [e["data"] for e in run["events"]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    # one run, and no batch left gathering that could start another
    [only] = stack.runs("batch")
    assert not only["waiting"], only
    assert len(stack.log.calls["batch"]) == 1


@pytest.mark.slow
def test_debounce_starts_one_run_with_the_last_event(stack: Stack) -> None:
    stack.send("debounce", {"n": 1})
    debounced = stack.waiting("debounce", "debounced")
    assert debounced["waiting"]["until"]
    stack.send("debounce", {"n": 2})
    [last] = stack.send("debounce", {"n": 3})
    last_sent = time.monotonic()
    [run] = stack.wait_runs("debounce", 1)
    run = stack.finished(run["run_id"])
    assert run["status"] == "Completed"
    assert run["output"] == {"data": {"n": 3}, "events": 1}
    assert run["event_ids"] == [last]
    [called] = stack.log.calls["debounce"]
    assert called - last_sent >= 0.9, "the run started a period after the last event"
    [only] = stack.runs("debounce")  # and no debounce left pending that could start another
    assert not only["waiting"], only


def test_rate_limit_skips_the_second_event_of_a_key(stack: Stack) -> None:
    [first] = stack.send("rate-limit", {"user": "a", "n": 1})
    [run] = stack.wait_runs("rate-limit", 1)
    [second] = stack.send("rate-limit", {"user": "a", "n": 2})

    def skipped() -> list[dict[str, Any]] | None:
        body = stack.event_runs(second)
        return body["metadata"]["skipped"] or None

    assert wait_until(skipped, timeout=5, message="the second event to be skipped") == [
        {"function_id": fid("rate-limit"), "reason": "rate_limited"}
    ]
    assert stack.event_runs(second)["data"] == []
    assert [r["run_id"] for r in stack.event_runs(first)["data"]] == [run["run_id"]]
    # another key has its own limit
    [other] = stack.send("rate-limit", {"user": "b", "n": 3})
    runs = stack.wait_runs("rate-limit", 2)
    assert [r["run_id"] for r in stack.event_runs(other)["data"]] == [runs[1]["run_id"]]
    outputs = [stack.finished(r["run_id"])["output"] for r in runs]
    assert outputs == [{"user": "a", "n": 1}, {"user": "b", "n": 3}]
    later = stack.runs("rate-limit")  # the skipped event left nothing held back to start
    assert len(later) == 2
    assert not any(r["waiting"] for r in later), later


@pytest.mark.slow
def test_throttle_delays_starts_beyond_limit_and_burst(stack: Stack) -> None:
    # limit 1 per 2 s; SDK default burst 1: two start at once, the third 2 s later.
    # burst 0: the second waits 2 s. Both functions' waits overlap.
    stack.send("throttle", {"n": 1}, {"n": 2}, {"n": 3})
    stack.send("throttle-no-burst", {"n": 1}, {"n": 2})
    held = stack.waiting("throttle", "throttled")
    assert held["waiting"]["until"]
    assert stack.waiting("throttle-no-burst", "throttled")["waiting"]["until"]

    bursty = [stack.finished(r["run_id"]) for r in stack.wait_runs("throttle", 3)]
    steady = [stack.finished(r["run_id"]) for r in stack.wait_runs("throttle-no-burst", 2)]
    assert [r["status"] for r in bursty + steady] == ["Completed"] * 5
    assert sorted(r["output"]["n"] for r in bursty) == [1, 2, 3]
    one, two, three = sorted(started(r) for r in bursty)
    assert two - one < 1.0, "limit + burst = 2 runs start at once"
    assert 1.8 <= three - one < 4.0, "the third run waits one emission interval (2 s)"
    first, second = sorted(started(r) for r in steady)
    assert 1.8 <= second - first < 4.0, "without burst the second run waits 2 s"
    assert len(stack.log.calls["throttle"]) == 3
    assert len(stack.log.calls["throttle-no-burst"]) == 2
