"""OpenTelemetry: one trace from the request that sent the event, through the run, to steps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import starlette.applications
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import stepline
import stepline.starlette
from stepline._api import runs as _runs
from stepline._execution import tracing as _tracing
from stepline.engine import Engine, EngineConfigError, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._model import Run, RunStatus
from stepline.engine._observe import tracing as engine_tracing
from tests._support.aio import arun
from tests._support.clients import closing_client, dev_client
from tests._support.engines import fast_settings, running
from tests._support.otel import Otel
from tests._support.polling import await_until
from tests._support.server_thread import ServerThread

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


@pytest.mark.slow
def test_one_trace_from_the_web_request_through_run_calls_and_steps(
    tmp_path: Path, otel: Otel
) -> None:
    engine = Engine(fast_settings(tmp_path / "engine.db"), tracer_provider=otel.provider)
    engine_server = ServerThread("engine", lifespan="on")
    app_server = ServerThread("app", lifespan="on")
    engine_url, app_url = engine_server.url, app_server.url
    client = dev_client(
        "obs",
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=False,
        tracer_provider=otel.provider,
    )

    @client.function(id="signup", trigger=stepline.TriggerEvent(event="obs/signup"))
    async def signup(ctx: stepline.Context) -> dict[str, Any]:
        user = await ctx.step.run("create-user", lambda: {"id": 7})
        sent = await ctx.step.run("send-email", lambda: "sent")
        return {"user": user, "email": sent}

    web_app = starlette.applications.Starlette()
    stepline.starlette.serve(web_app, client, [signup])
    try:
        engine_server.start(build_app(engine))
        app_server.start(closing_client(web_app, client))
        synced = httpx.post(f"{engine_url}/v1/apps/sync", json={"url": f"{app_url}/api/inngest"})
        assert synced.json()["data"]["ok"] is True

        web_tracer = otel.provider.get_tracer("the-web-app")
        with web_tracer.start_as_current_span("POST /signup", kind=SpanKind.SERVER) as web:
            [event_id] = client.send_sync(
                stepline.Event(name="obs/signup", data={"email": "a@example.com"})
            )
        [run_span] = otel.wait_for("stepline.run")
    finally:
        client.close()
        engine_server.stop()  # first: it closes its connections to the app
        app_server.stop()

    trace_id = web.get_span_context().trace_id
    spans = otel.spans()
    assert {s.context.trace_id for s in spans} == {trace_id}  # one trace, end to end

    # the run: a child of the web request, with the run's identity
    assert parent_id(run_span) == web.get_span_context().span_id
    assert attr(run_span, "stepline.function_id") == "obs-signup"
    assert attr(run_span, "stepline.run.status") == "Completed"
    assert attr(run_span, "stepline.event.id") == event_id
    assert attr(run_span, "stepline.event.name") == "obs/signup"
    run_id = attr(run_span, "stepline.run_id")
    run_span_id = run_span.context.span_id

    # one engine call per SDK request (no checkpointing: a step each, then the return)
    calls = sorted(otel.spans("stepline.engine.call"), key=lambda s: s.start_time or 0)
    assert len(calls) == 3
    assert {parent_id(c) for c in calls} == {run_span_id}
    assert [attr(c, "stepline.call.result") for c in calls] == ["steps", "steps", "completed"]
    assert all(c.kind is SpanKind.CLIENT and attr(c, "stepline.run_id") == run_id for c in calls)
    assert [attr(c, "stepline.ops") for c in calls[:2]] == [("create-user",), ("send-email",)]
    assert [attr(c, "http.response.status_code") for c in calls] == [206, 206, 200]

    # the SDK continues each call's trace: one function span per call...
    functions = otel.spans("stepline.function")
    assert len(functions) == 3
    assert sorted(parent_id(f) or 0 for f in functions) == sorted(c.context.span_id for c in calls)
    assert all(f.kind is SpanKind.SERVER for f in functions)
    assert {attr(f, "stepline.run_id") for f in functions} == {run_id}
    assert sorted(attr(f, "stepline.outcome") for f in functions) == ["completed", "steps", "steps"]

    # ...and a span per step it ran, under the function's span, each step exactly once
    sdk_steps = otel.spans("stepline.step")
    assert sorted(attr(s, "stepline.step_id") for s in sdk_steps) == ["create-user", "send-email"]
    function_ids = {f.context.span_id for f in functions}
    assert all(parent_id(s) in function_ids for s in sdk_steps)
    assert all(attr(s, "stepline.attempt") == 0 for s in sdk_steps)

    # the engine records each step's result under the run
    engine_steps = otel.spans("stepline.engine.step")
    assert sorted(attr(s, "stepline.step_name") for s in engine_steps) == [
        "create-user",
        "send-email",
    ]
    assert {parent_id(s) for s in engine_steps} == {run_span_id}
    assert {attr(s, "stepline.op") for s in engine_steps} == {"StepRun"}

    # the run span covers its calls
    assert run_span.start_time is not None
    assert run_span.end_time is not None
    assert run_span.start_time <= min(c.start_time or 0 for c in calls)
    assert run_span.end_time >= max(c.end_time or 0 for c in calls) - 50_000_000  # clock skew


def test_a_run_without_a_sender_is_the_root_of_its_own_trace(tmp_path: Path, otel: Otel) -> None:
    client = dev_client("obs", checkpointing=False, tracer_provider=otel.provider)

    @client.function(id="nightly", trigger=stepline.TriggerEvent(event="obs/nightly"))
    def nightly(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("count", lambda: 3)

    async def scenario() -> str:
        engine = Engine(fast_settings(tmp_path / "engine.db"), tracer_provider=otel.provider)
        async with running(engine, apps=[(client, [nightly])]):
            await engine.send({"name": "obs/nightly"})
            [run] = await engine.list_runs()
            await engine.wait_for_run(run.run_id, timeout=20)
            return run.run_id

    run_id = arun(scenario())
    [run_span] = otel.wait_for("stepline.run")
    assert run_span.parent is None
    trace_id, span_id = engine_tracing.run_span_ids(run_id)
    assert (run_span.context.trace_id, run_span.context.span_id) == (trace_id, span_id)
    assert {s.context.trace_id for s in otel.spans()} == {trace_id}
    [step] = otel.spans("stepline.step")
    assert attr(step, "stepline.step_id") == "count"


def test_a_failed_run_and_step_are_marked_as_errors(tmp_path: Path, otel: Otel) -> None:
    client = dev_client("obs", checkpointing=False, tracer_provider=otel.provider)

    def explode() -> None:
        raise ValueError("no")

    @client.function(id="boom", retries=0, trigger=stepline.TriggerEvent(event="obs/boom"))
    def boom(ctx: stepline.SyncContext) -> None:
        ctx.step.run("explode", explode)

    async def scenario() -> None:
        engine = Engine(fast_settings(tmp_path / "engine.db"), tracer_provider=otel.provider)
        async with running(engine, apps=[(client, [boom])]):
            await engine.send(
                {"name": "obs/boom"}, headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}
            )
            [run] = await engine.list_runs()
            ended = await engine.wait_for_run(run.run_id, timeout=20)
            assert ended.status is RunStatus.FAILED

    arun(scenario())
    [run_span] = otel.wait_for("stepline.run")
    assert run_span.context.trace_id == int(TRACE, 16)
    assert parent_id(run_span) == int(PARENT, 16)
    assert run_span.status.status_code is StatusCode.ERROR
    [step] = otel.spans("stepline.step")
    assert step.status.status_code is StatusCode.ERROR
    assert [e.name for e in step.events] == ["exception"]
    [engine_step] = otel.spans("stepline.engine.step")
    assert attr(engine_step, "stepline.step.status") == "Failed"


def test_events_keep_the_trace_context_only_when_tracing(tmp_path: Path, otel: Otel) -> None:
    header = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "k=v"}

    async def stored(tracer_provider: Any, where: Path) -> dict[str, Any]:
        engine = Engine(fast_settings(where / "engine.db"), tracer_provider=tracer_provider)
        async with running(engine):
            [event_id] = await engine.send({"name": "obs/any"}, headers=header)
            return (await engine.get_event(event_id)).payload

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert arun(stored(otel.provider, tmp_path / "a"))["trace"] == header
    assert "trace" not in arun(stored(None, tmp_path / "b"))


def test_traceparent_parsing_and_carriers() -> None:
    assert engine_tracing.parse_traceparent(f"00-{TRACE}-{PARENT}-01") == (
        int(TRACE, 16),
        int(PARENT, 16),
        1,
    )
    for bad in (None, "", "00-xyz", f"01-{TRACE}-{PARENT}-01", f"00-{'0' * 32}-{PARENT}-01"):
        assert engine_tracing.parse_traceparent(bad) is None
    assert engine_tracing.carrier({"TraceParent": f"00-{TRACE}-{PARENT}-00", "x": "y"}) == {
        "traceparent": f"00-{TRACE}-{PARENT}-00"
    }
    assert engine_tracing.carrier({"traceparent": "garbage"}) == {}
    run = Run("r1", "f", "a", RunStatus.QUEUED, [{"name": "e"}], ["e1"], 0.0)
    trace_id, span_id = engine_tracing.run_span_ids("r1")
    assert engine_tracing.run_trace(run) == (trace_id, span_id, 1)
    run.events[0]["trace"] = {"traceparent": f"00-{TRACE}-{PARENT}-00"}
    assert engine_tracing.run_trace(run) == (int(TRACE, 16), span_id, 0)


def test_sending_an_event_inside_a_span_carries_its_context(otel: Otel) -> None:
    assert _tracing.outgoing_headers() == {}  # no current span: nothing to carry
    with otel.provider.get_tracer("t").start_as_current_span("request") as span:
        carried = _tracing.outgoing_headers()
    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert carried["traceparent"] == expected


def test_starting_a_run_inside_a_span_continues_its_trace(tmp_path: Path, otel: Otel) -> None:
    client = dev_client("obs", checkpointing=False)

    @client.function(id="started", trigger=stepline.TriggerEvent(event="obs/started"))
    def started(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("one", lambda: 1)

    # the SDK: client.start() carries the current span's context (and nothing without one)
    flow = _runs.start_flow(client.settings, "obs-started", {}, None)
    assert "traceparent" not in next(flow).headers
    with otel.provider.get_tracer("t").start_as_current_span("web request") as caller:
        flow = _runs.start_flow(client.settings, "obs-started", {}, None)
        carried = next(flow).headers
    context = caller.get_span_context()
    flags = f"{context.trace_flags:02x}"
    assert carried["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"

    # the engine: POST /v1/functions/{id}/runs keeps it, so the run's span continues it
    async def scenario() -> str:
        engine = Engine(fast_settings(tmp_path / "engine.db"), tracer_provider=otel.provider)
        async with running(engine, apps=[(client, [started])]):
            transport = httpx.ASGITransport(app=build_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as api:
                answer = await api.post(
                    "/v1/functions/obs-started/runs", json={"data": {}}, headers=carried
                )
            assert answer.status_code == 201, answer.text
            run_id = str(answer.json()["data"]["run_id"])
            await engine.wait_for_run(run_id, timeout=20)
            return run_id

    run_id = arun(scenario())
    [run_span] = otel.wait_for("stepline.run")
    assert run_span.context.trace_id == context.trace_id
    assert parent_id(run_span) == context.span_id
    assert run_span.context.span_id == engine_tracing.run_span_ids(run_id)[1]


@pytest.mark.slow
def test_a_run_started_by_step_invoke_continues_its_parent_s_trace(
    tmp_path: Path, otel: Otel
) -> None:
    client = dev_client("obs", checkpointing=False)

    @client.function(id="child", trigger=stepline.TriggerEvent(event="obs/child"))
    def child(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("work", lambda: 2)

    @client.function(id="parent", trigger=stepline.TriggerEvent(event="obs/parent"))
    def parent(ctx: stepline.SyncContext) -> int:
        return int(ctx.step.invoke("call-child", function=child, data={})) + 1

    async def scenario() -> tuple[str, str]:
        engine = Engine(fast_settings(tmp_path / "engine.db"), tracer_provider=otel.provider)
        async with running(engine, apps=[(client, [parent, child])]):
            await engine.send({"name": "obs/parent"})

            async def both() -> dict[str, str] | None:
                ids = {r.function_id: r.run_id for r in await engine.list_runs()}
                return ids if len(ids) == 2 else None

            ids = await await_until(both, timeout=10.0, interval=0.025, message="both runs")
            for run_id in ids.values():
                assert (await engine.wait_for_run(run_id, timeout=20)).status is RunStatus.COMPLETED
            return ids["obs-parent"], ids["obs-child"]

    parent_run, child_run = arun(scenario())
    spans = {attr(s, "stepline.run_id"): s for s in otel.wait_for("stepline.run", count=2)}
    parent_trace, parent_span = engine_tracing.run_span_ids(parent_run)
    assert spans[parent_run].context.trace_id == parent_trace  # a root run: its own trace
    assert spans[child_run].context.trace_id == parent_trace  # the child joins it ...
    assert parent_id(spans[child_run]) == parent_span  # ... under the parent run's span


def test_tracing_without_opentelemetry_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(EngineConfigError, match=r"stepline\[otel\]"):
        Engine(fast_settings(tmp_path / "engine.db", tracing=True))


@pytest.mark.process
def test_without_the_extra_nothing_imports_opentelemetry(tmp_path: Path) -> None:
    """A whole run, engine and SDK, with OpenTelemetry impossible to import."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        import stepline
        from stepline.engine import Engine, EngineSettings

        client = stepline.Client("plain", is_production=False, checkpointing=False)
        FINISHED = 'stepline_runs_finished_total{{function="plain-fn",status="completed"}} 1'

        @client.function(id="fn", trigger=stepline.TriggerEvent(event="plain/go"))
        def fn(ctx):
            ctx.logger.info("running")
            return ctx.step.run("a", lambda: 1) + ctx.step.run("b", lambda: 2)

        async def main():
            settings = EngineSettings(database_url={str(tmp_path / "db")!r}, poll_interval=0.05)
            engine = Engine(settings)
            await engine.start()
            await engine.serve(client, [fn])
            assert client.send_sync is not None
            await engine.send({{"name": "plain/go"}})
            [run] = await engine.list_runs()
            run = await engine.wait_for_run(run.run_id, timeout=20)
            # the end is counted by the thread that committed it once its transaction
            # returns; a wait that read the run from the store can be a moment ahead
            for _ in range(200):
                metrics = await engine.metrics()
                if FINISHED in metrics:
                    break
                await asyncio.sleep(0.05)
            await engine.stop()
            return run.status.value, metrics

        status, metrics = asyncio.run(main())
        assert status == "Completed", status
        assert FINISHED in metrics, metrics
        assert not [m for m in sys.modules if m.startswith("opentelemetry.")], "imported"
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert time.monotonic() - started < 50


def test_no_provider_means_no_step_observer(tmp_path: Path) -> None:
    client = dev_client("obs", checkpointing=False)
    seen: list[object] = []

    @client.function(id="plain", trigger=stepline.TriggerEvent(event="obs/plain"))
    def plain(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("a", lambda: seen.append(ctx.step._state.observer) or 1)

    async def scenario() -> None:
        engine = Engine(EngineSettings(database_url=str(tmp_path / "db"), poll_interval=0.05))
        assert engine.observer is not None
        assert engine.observer.tracer is None
        async with running(engine, apps=[(client, [plain])]):
            await engine.send({"name": "obs/plain"})
            [run] = await engine.list_runs()
            await await_until(lambda: _ended(engine, run.run_id))

    arun(scenario())
    assert seen == [None]


async def _ended(engine: Engine, run_id: str) -> bool:
    return (await engine.get_run(run_id)).status.terminal
