"""The ``X-Stepline-Nondeterminism`` answer header is untrusted input.

Answers' bodies are signature-checked in production, headers are not: the engine caps
the header, checks its shape and keeps only sane step ids. A malformed header is ignored
with one log line and never fails the call nor changes the run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepline.engine import RunStatus
from stepline.engine._wire.response import (
    MAX_REPORT_BYTES,
    MAX_REPORT_IDS,
    Completed,
    Failed,
    Ops,
    RawResponse,
    RecordedDivergence,
    decode,
)
from tests._support.aio import arun
from tests._support.engines import finished, only_run
from tests._support.stub_server import StubServer
from tests.engine.test_protocol_stub import SDK, start

HEADER = "X-Stepline-Nondeterminism"


def answer(status: int, body: Any, report: str | None, **extra: str) -> RawResponse:
    headers = {**SDK, **extra}
    if report is not None:
        headers[HEADER] = report
    return RawResponse(status, headers, json.dumps(body).encode())


STEP = [{"op": "StepRun", "id": "hb", "name": "b", "data": 1}]


def test_a_valid_report_is_read_on_every_kind_of_outcome() -> None:
    report = json.dumps({"policy": "warn", "missing": ["ha"], "reordered": ["hx"], "new": ["hb"]})
    expected = RecordedDivergence("warn", ("ha",), ("hx",), ("hb",), "sdk")
    ops = decode(answer(206, STEP, report), now=0.0)
    done = decode(answer(200, "ok", report), now=0.0)
    failed = decode(answer(500, {"name": "E", "message": "m"}, report), now=0.0)
    assert isinstance(ops, Ops)
    assert isinstance(done, Completed)
    assert isinstance(failed, Failed)
    assert ops.divergence == done.divergence == failed.divergence == expected
    # header names are compared case-insensitively; missing lists are empty
    lower = decode(
        answer(200, "ok", None, **{HEADER.lower(): '{"policy":"fail","new":["x"]}'}), now=0
    )
    assert lower.divergence == RecordedDivergence("fail", (), (), ("x",))


def test_a_report_inside_a_streamed_answers_envelope_is_read() -> None:
    report = json.dumps({"policy": "warn", "missing": ["ha"]})
    envelope = {"status": 200, "headers": {**SDK, HEADER: report}, "body": '"ok"'}
    outcome = decode(RawResponse(201, SDK, json.dumps(envelope).encode()), now=0.0)
    assert isinstance(outcome, Completed)
    assert outcome.divergence == RecordedDivergence("warn", ("ha",))


def test_no_header_means_no_divergence() -> None:
    assert decode(answer(206, STEP, None), now=0.0).divergence is None


@pytest.mark.parametrize(
    ("report", "why"),
    [
        ("not json", "policy"),
        ("[]", "policy"),
        ('{"policy": "ignore", "missing": ["a"]}', "policy"),
        ('{"policy": "warn", "missing": "a"}', "lists of step ids"),
        ('{"policy": "warn", "missing": [1, null, {"id": "a"}, ""]}', "no valid step id"),
        ('{"policy": "warn"}', "no valid step id"),
        (json.dumps({"policy": "warn", "missing": ["a" * (MAX_REPORT_BYTES + 1)]}), "longer"),
    ],
)
def test_a_malformed_report_is_ignored_with_one_log_line(
    report: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stepline.engine"):
        outcome = decode(answer(206, STEP, report), now=0.0)
    assert isinstance(outcome, Ops)
    assert outcome.divergence is None
    assert [op.id for op in outcome.ops] == ["hb"]  # the answer itself is read as usual
    [line] = [r.message for r in caplog.records if HEADER in r.message]
    assert why in line


def test_only_sane_ids_are_kept_and_at_most_the_cap() -> None:
    ids = [f"h{i}" for i in range(MAX_REPORT_IDS + 50)]
    junk = ["", "x" * 201, "nul\x00", 7, None, "h0"]  # h0 again: deduplicated
    report = json.dumps({"policy": "warn", "missing": [*ids, *junk], "new": ["ok"]})
    outcome = decode(answer(200, "ok", report), now=0.0)
    assert outcome.divergence is not None
    assert outcome.divergence.missing == tuple(ids[:MAX_REPORT_IDS])
    assert outcome.divergence.new == ("ok",)


def test_a_refused_answer_carries_no_report() -> None:
    raw = RawResponse(
        401, {HEADER: '{"policy":"warn","missing":["a"]}'}, b"", error="unsigned", error_name="E"
    )
    assert decode(raw, now=0.0).divergence is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_header_text_decodes_without_raising(text: str) -> None:
    outcome = decode(answer(200, "ok", text), now=0.0)
    assert isinstance(outcome, Completed)


@pytest.mark.slow
def test_a_malformed_report_does_not_change_the_run(db: str, stub_server: StubServer) -> None:
    def reply(req: dict[str, Any]) -> tuple[Any, ...]:
        if not req["body"]["steps"]:
            return 206, STEP, {**SDK, HEADER: "{" * 4_000}  # (over 8 KiB: aiohttp refuses it)
        return 200, "done", {**SDK, HEADER: '{"policy": "warn", "missing": [[["deep"]]]}'}

    stub_server.answer = reply

    async def scenario() -> Any:
        engine = await start(db, stub_server)
        try:
            await engine.send({"name": "s/go"})
            return await finished(engine, await only_run(engine, "stub-fn"))
        finally:
            await engine.stop()

    run = arun(scenario())
    assert (run.status, json.loads(run.output or "")) == (RunStatus.COMPLETED, "done")
    assert run.notices == []
