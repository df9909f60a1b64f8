"""Structured logs: ``ctx.logger`` says each line once, and every line says which run."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline import _logs, logs
from stepline.engine import Engine
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import fast_settings, running


class Lines(logging.Handler):
    """Keeps every record, and its JSON rendering, as a handler configured by ``logs`` would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(logs.RunContextFilter())
        self.setFormatter(logs.JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.json: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.json.append(json.loads(self.format(record)))

    def messages(self, logger: str) -> list[str]:
        return [r.getMessage() for r in self.records if r.name == logger]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    watched = [logging.getLogger(n) for n in ("obs.fn", "obs.app", "stepline.engine")]
    saved = [(lg.level, lg.propagate) for lg in watched]
    for lg in watched:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
    yield handler
    for lg, (level, propagate) in zip(watched, saved, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)
        lg.propagate = propagate


def run_to_end(tmp_path: Path, client: stepline.Client, fn: stepline.Function, **kw: Any) -> str:
    async def scenario() -> str:
        engine = Engine(fast_settings(tmp_path / "engine.db", **kw))
        async with running(engine, apps=[(client, [fn])]):
            await engine.send({"name": "obs/go"})
            [run] = await engine.list_runs()
            await engine.wait_for_run(run.run_id, timeout=20)
            return run.run_id

    return arun(scenario())


@pytest.mark.parametrize("checkpointing", [False, True])
def test_replayed_code_does_not_log_twice(
    tmp_path: Path, lines: Lines, checkpointing: bool
) -> None:
    client = dev_client("obs", checkpointing=checkpointing, logger=logging.getLogger("obs.fn"))

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="obs/go"))
    def fn(ctx: stepline.SyncContext) -> int:
        ctx.logger.info("start")
        a = ctx.step.run("a", lambda: 1)
        ctx.logger.info("after a")

        def inside(value: int) -> int:
            ctx.logger.info("inside %s", value)
            return value

        # parallel steps are planned, then run by calls targeting one step each: the
        # code before them runs again in every such call
        b, c = ctx.step.parallel(
            [lambda: ctx.step.run("b", inside, 2), lambda: ctx.step.run("c", inside, 3)]
        )
        ctx.logger.info("after parallel")
        d = ctx.step.run("d", inside, 4)
        ctx.logger.warning("done")
        return a + b + c + d

    run_id = run_to_end(tmp_path, client, fn)
    assert sorted(lines.messages("obs.fn")) == sorted(
        ["start", "after a", "inside 2", "inside 3", "after parallel", "inside 4", "done"]
    )
    assert {r.run_id for r in lines.records if r.name == "obs.fn"} == {run_id}  # type: ignore[attr-defined]


def test_a_call_planned_ahead_does_not_log_again(tmp_path: Path, lines: Lines) -> None:
    """With immediate execution off, each step is planned in one call and run in the next."""
    from stepline._execution.call import ExecutionState
    from stepline._protocol.execution import CallContext, ExecutionRequest

    def state(steps: dict[str, Any], target: str = "step") -> ExecutionState:
        ctx = CallContext(run_id="r", step_id=target, disable_immediate_execution=True)
        return ExecutionState(ExecutionRequest({"name": "e"}, [], steps, ctx))

    from stepline._protocol.hashing import hash_step_id

    first = state({})
    assert not first.is_rerunning  # new code: it logs
    targeted = state({}, hash_step_id("a"))
    assert targeted.is_rerunning  # runs the same code again to reach step "a"
    replaying = state({hash_step_id("a"): {"data": 1}})
    assert replaying.is_rerunning
    assert replaying.is_replaying


def test_json_lines_carry_run_function_step_and_attempt(tmp_path: Path, lines: Lines) -> None:
    client = dev_client("obs", checkpointing=False, logger=logging.getLogger("obs.fn"))
    app_logger = logging.getLogger("obs.app")

    def charge() -> str:
        client.logger.info("never through the bare logger")  # not ctx.logger: not replay-aware
        app_logger.info("charging")  # any logger, inside a step
        return "ok"

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="obs/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.logger.info("begin")
        result = ctx.step.run("charge", charge)
        ctx.logger.info("end", extra={"order": 12})
        return result

    run_id = run_to_end(tmp_path, client, fn)
    by_message = {line["message"]: line for line in lines.json}
    begin, charging, end = by_message["begin"], by_message["charging"], by_message["end"]
    for line in (begin, charging, end):
        assert line["run_id"] == run_id
        assert line["function_id"] == "obs-fn"
        assert line["attempt"] == 0
        assert set(line) >= {"time", "level", "logger", "message", *logs.FIELDS}
    assert (begin["step_id"], charging["step_id"], end["step_id"]) == (None, "charge", None)
    assert charging["logger"] == "obs.app"
    assert charging["level"] == "info"
    assert end["order"] == 12
    assert begin["time"].endswith("Z")


def test_engine_lines_name_the_run_and_attempt(tmp_path: Path, lines: Lines) -> None:
    client = dev_client("obs", checkpointing=False)

    @client.function(id="boom", retries=1, trigger=stepline.TriggerEvent(event="obs/go"))
    def boom(ctx: stepline.SyncContext) -> None:
        raise RuntimeError("no")

    run_id = run_to_end(tmp_path, client, boom)
    failures = [line for line in lines.json if line["level"] == "warning"]
    assert [(f["run_id"], f["function_id"], f["attempt"]) for f in failures] == [
        (run_id, "obs-boom", 0),
        (run_id, "obs-boom", 1),
    ]
    assert {f["step_id"] for f in failures} == {"step"}
    assert all(f["level"] == "warning" for f in failures)


def test_configure_writes_json_lines_to_the_root_logger() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    stream = io.StringIO()
    try:
        logs.configure(json_lines=True, level="INFO", stream=stream)
        token = _logs.bind({"run_id": "r1", "function_id": "f", "step_id": "s", "attempt": 2})
        try:
            logging.getLogger("anything").info("hello %s", "world")
        finally:
            _logs.unbind(token)
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("anything").exception("failed")
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    hello, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert hello["message"] == "hello world"
    assert (hello["run_id"], hello["function_id"], hello["step_id"], hello["attempt"]) == (
        "r1",
        "f",
        "s",
        2,
    )
    assert failed["run_id"] is None
    assert "ValueError: bad" in failed["exc"]
