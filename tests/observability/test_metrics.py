"""``GET /metrics``: a scrape after a known workload, and the exposition format itself."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import httpx
import pytest

import stepline
from stepline._comm import app_sync
from stepline._comm.handler import CommHandler
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._http.api import build_app
from stepline.engine._observe import prometheus as prom
from stepline.engine._observe.metrics import call_result
from stepline.engine._wire.response import Completed, Failed, RawResponse
from tests._support import refusing
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import fast_settings, running, settle
from tests._support.polling import await_until

_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition, keyed by name and label set (strictly parsed)."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        found = _LINE.match(line)
        assert found is not None, f"not an exposition line: {line!r}"
        name = found["name"]
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no # TYPE"
        labels = frozenset(_LABEL.findall(found["labels"] or ""))
        samples[(name, labels)] = float(found["value"])
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_scrape_after_a_known_workload(tmp_path: Path) -> None:
    client = dev_client("obs", checkpointing=False)

    @client.function(id="ok", trigger=stepline.TriggerEvent(event="obs/ok"))
    def ok(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("a", lambda: 1) + ctx.step.run("b", lambda: 2)

    @client.function(id="boom", retries=0, trigger=stepline.TriggerEvent(event="obs/boom"))
    def boom(ctx: stepline.SyncContext) -> None:
        raise RuntimeError("no")

    @client.function(id="waits", trigger=stepline.TriggerEvent(event="obs/waits"))
    def waits(ctx: stepline.SyncContext) -> None:
        ctx.step.wait_for_event("w", event="obs/never", timeout="1h")

    @client.function(id="nap", trigger=stepline.TriggerEvent(event="obs/nap"))
    def nap(ctx: stepline.SyncContext) -> str:
        ctx.step.sleep("nap", "10s")
        return "rested"

    @client.function(
        id="slow",
        trigger=stepline.TriggerEvent(event="obs/slow"),
        throttle=stepline.Throttle(limit=1, period="60s"),
    )
    def slow(ctx: stepline.SyncContext) -> str:
        return "done"

    gone = dev_client("gone")

    @gone.function(id="fn", retries=0, trigger=stepline.TriggerEvent(event="obs/gone"))
    def unreachable(ctx: stepline.SyncContext) -> None:
        raise AssertionError("never called")

    clock = ManualClock(float(int(time.time())))  # the SDK times sleeps by the wall clock

    async def scenario() -> tuple[str, str]:
        engine = Engine(fast_settings(tmp_path / "engine.db"), clock=clock)
        async with running(engine, apps=[(client, [ok, boom, waits, nap, slow])]):
            # an app that no longer answers: its calls are SDK call errors
            handler = CommHandler(client=gone, functions=[unreachable], framework="test")
            dead = refusing.url("/api/inngest")
            await engine.register(app_sync.register_payload(handler.endpoint, dead))
            for name in ("ok", "ok", "ok", "boom", "waits", "nap", "slow", "slow", "gone"):
                await engine.send({"name": f"obs/{name}"})

            async def settled() -> bool:
                runs = await engine.list_runs()
                live = [r for r in runs if not r.status.terminal]
                return len(runs) == 9 and [r.function_id for r in live] == ["obs-waits"]

            await settle(engine, clock, until=settled)
            transport = httpx.ASGITransport(app=build_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                before = (await http.get("/metrics")).text
                [waiting] = [r for r in await engine.list_runs() if not r.status.terminal]
                await engine.cancel(waiting.run_id)
                await await_until(engine.idle)  # the events a cancel emits are fanned out
                answer = await http.get("/metrics")
                assert answer.status_code == 200
                assert answer.headers["content-type"] == prom.CONTENT_TYPE
            ended = {r.function_id: r.status for r in await engine.list_runs()}
            assert ended["gone-fn"] is RunStatus.FAILED
            handler.close()
            return before, answer.text

    before, after = arun(scenario())
    pending, m = parse(before), parse(after)

    # runs started and ended, per function and status
    started = "stepline_runs_started_total"
    finished = "stepline_runs_finished_total"
    assert sample(m, started, function="obs-ok") == 3
    assert sample(m, started, function="obs-slow") == 2
    assert sample(m, finished, function="obs-ok", status="completed") == 3
    assert sample(m, finished, function="obs-boom", status="failed") == 1
    assert sample(m, finished, function="gone-fn", status="failed") == 1
    assert sample(m, finished, function="obs-nap", status="completed") == 1
    assert sample(m, finished, function="obs-waits", status="cancelled") == 1
    assert sample(pending, finished, function="obs-waits", status="cancelled") == 0
    count = "stepline_run_duration_seconds_count"
    assert sample(m, count, function="obs-ok", status="completed") == 3
    napped = sample(m, "stepline_run_duration_seconds_sum", function="obs-nap", status="completed")
    assert 10 <= napped < 15  # the sleep is timed from the SDK's wall clock, a moment later

    # SDK calls: per ok run, one call per step, the last one with the result (run_on)
    calls = "stepline_sdk_calls_total"
    assert sample(m, calls, function="obs-ok", result="steps") == 3
    assert sample(m, calls, function="obs-ok", result="completed") == 3
    assert sample(m, calls, function="obs-boom", result="function_error") == 1
    assert sample(m, calls, function="gone-fn", result="unreachable") == 1
    assert sample(m, "stepline_sdk_call_duration_seconds_count", function="obs-ok") == 6
    errors = "stepline_sdk_call_errors_total"
    assert sample(m, errors, function="gone-fn", reason="unreachable") == 1
    assert sample(m, errors, function="obs-boom", reason="unreachable") == 0

    # step latency: run steps by their calls, the sleep by how long it slept
    steps = "stepline_step_duration_seconds_count"
    assert sample(m, steps, function="obs-ok", op="StepRun") == 6
    assert sample(m, steps, function="obs-nap", op="Sleep") == 1
    slept = sample(m, "stepline_step_duration_seconds_sum", function="obs-nap", op="Sleep")
    assert 10 <= slept < 15
    bucket = "stepline_step_duration_seconds_bucket"
    assert sample(m, bucket, function="obs-nap", op="Sleep", le="5") == 0
    assert sample(m, bucket, function="obs-nap", op="Sleep", le="30") == 1
    assert sample(m, bucket, function="obs-nap", op="Sleep", le="+Inf") == 1

    # flow control: the second throttled run waited its turn (a minute at limit 1/60s)
    assert sample(m, "stepline_flow_control_holds_total", reason="throttled") == 1
    delay = "stepline_flow_control_delay_seconds"
    assert sample(m, f"{delay}_count", function="obs-slow", reason="throttled") == 1
    assert sample(m, f"{delay}_count", function="obs-slow", reason="none") == 1
    assert sample(m, f"{delay}_sum", function="obs-slow", reason="throttled") >= 59

    # the queue: the waiting run had its timeout scheduled; nothing is left after cancelling
    assert sample(pending, "stepline_queue_jobs", state="scheduled") == 1
    assert sample(m, "stepline_queue_jobs", state="scheduled") == 0
    assert sample(m, "stepline_queue_jobs", state="due") == 0
    assert ("stepline_queue_jobs", frozenset({("state", "parked")})) in m
    assert sample(m, "stepline_queue_lag_seconds") == 0

    # the store: every transaction timed
    assert sample(m, "stepline_store_seconds_count", kind="atomic") > 20
    assert sample(m, "stepline_store_seconds_count", kind="read") > 0
    assert sample(m, "stepline_store_errors_total", kind="atomic") == 0


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    async def scenario() -> int:
        engine = Engine(fast_settings(tmp_path / "engine.db", metrics=False))
        assert engine.observer is None  # and so no wrapped store, no per-job hooks
        async with running(engine):
            transport = httpx.ASGITransport(app=build_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
                return (await http.get("/metrics")).status_code

    assert arun(scenario()) == 404


def test_metrics_need_the_signing_key_in_start_mode(tmp_path: Path) -> None:
    key = "signkey-prod-" + "ab" * 32

    async def scenario() -> tuple[int, int]:
        engine = Engine(
            fast_settings(
                tmp_path / "engine.db", mode="start", signing_keys=(key,), event_keys=("e",)
            )
        )
        async with running(engine):
            transport = httpx.ASGITransport(app=build_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
                anonymous = (await http.get("/metrics")).status_code
                bearer = {"authorization": f"Bearer {key}"}
                allowed = (await http.get("/metrics", headers=bearer)).status_code
        return anonymous, allowed

    assert arun(scenario()) == (401, 200)


def test_the_exposition_format() -> None:
    registry = prom.MetricRegistry()
    counter = registry.counter("t_events_total", "Events.\nTwo lines \\ here.", ["kind"])
    gauge = registry.gauge("t_depth", "Depth.")
    histogram = registry.histogram("t_seconds", "Time.", ["op"], buckets=(0.1, 1.0))
    counter.inc('say "hi"\n')
    counter.inc("b\\c", amount=2.5)
    gauge.set(3)
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value, "x")
    assert registry.render() == (
        "# HELP t_events_total Events.\\nTwo lines \\\\ here.\n"
        "# TYPE t_events_total counter\n"
        't_events_total{kind="b\\\\c"} 2.5\n'
        't_events_total{kind="say \\"hi\\"\\n"} 1\n'
        "# HELP t_depth Depth.\n"
        "# TYPE t_depth gauge\n"
        "t_depth 3\n"
        "# HELP t_seconds Time.\n"
        "# TYPE t_seconds histogram\n"
        't_seconds_bucket{op="x",le="0.1"} 2\n'
        't_seconds_bucket{op="x",le="1"} 3\n'
        't_seconds_bucket{op="x",le="+Inf"} 4\n'
        't_seconds_sum{op="x"} 7.65\n'
        't_seconds_count{op="x"} 4\n'
    )
    assert histogram.count("x") == 4
    assert math.isclose(histogram.total("x"), 7.65)
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc()
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("t_depth", "again")


def test_observing_many_at_once_is_observing_each() -> None:
    one, many = prom.MetricRegistry(), prom.MetricRegistry()
    each = one.histogram("t_seconds", "Time.", ["op"], buckets=(0.1, 1.0))
    batched = many.histogram("t_seconds", "Time.", ["op"], buckets=(0.1, 1.0))
    for _ in range(7):
        each.observe(0.25, "StepRun")
    each.observe(3.0, "Sleep")
    batched.observe_many(0.25, 7, "StepRun")
    batched.observe_many(3.0, 1, "Sleep")
    assert many.render() == one.render()
    with pytest.raises(ValueError, match="takes labels"):
        batched.observe_many(1.0, 2)


def test_call_results() -> None:
    sdk = {"X-Inngest-SDK": "py:v1"}
    assert call_result(RawResponse(0, {}, b"", error="refused"), Failed("", {})) == "unreachable"
    assert call_result(RawResponse(200, sdk, b"1"), Completed("1")) == "completed"
    assert call_result(RawResponse(500, sdk, b"{}"), Failed("", {"name": "E"})) == "function_error"
    assert (
        call_result(RawResponse(502, {}, b"bad gateway"), Failed("", {"name": "E"})) == "sdk_error"
    )
    not_sdk = Failed("", {"name": "NonSDKResponse"})
    assert call_result(RawResponse(200, {}, b"<html>"), not_sdk) == "sdk_error"
