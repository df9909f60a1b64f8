"""What the engine builds for each SDK call: the call's URL (cached per function, the step
id appended) and the step records it compares to see what an answer changed."""

from __future__ import annotations

import dataclasses
import urllib.parse

import pytest

from stepline import _json
from stepline._status import RunStatus
from stepline.engine._model import Job, JobKind, Run, StepRecord, StepStatus
from stepline.engine._wire import request


def _reference(step_url: str, function_id: str, step_id: str) -> str:
    """The URL as built before the cache: parse, drop fnId/stepId, add both, join."""
    parts = urllib.parse.urlsplit(step_url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    query += [("fnId", function_id), ("stepId", step_id)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@pytest.mark.parametrize(
    "url",
    [
        "http://app:8000/api/inngest",
        "http://app:8000/api/inngest?",
        "https://app.example/api/inngest?deployId=7&x=a%20b",
        "http://app/api/inngest?fnId=old&stepId=old&keep=1",
        "http://app/api/inngest?probe=1#frag",
        "http://[::1]:9/serve?a=1&a=2",
    ],
)
@pytest.mark.parametrize("step_id", ["step", "a1b2c3", "with space&amp=?", "ünï"])
def test_call_url_is_the_registered_url_with_fn_and_step_ids(url: str, step_id: str) -> None:
    for function_id in ("app-fn", "app-other fn"):
        assert request.call_url(url, function_id, step_id) == _reference(url, function_id, step_id)
        parsed = urllib.parse.parse_qs(
            urllib.parse.urlsplit(request.call_url(url, function_id, step_id)).query
        )
        assert (parsed["fnId"], parsed["stepId"]) == ([function_id], [step_id])


def test_a_step_record_copy_has_every_field_and_is_its_own_object() -> None:
    values: dict[str, object] = {
        "run_id": "r", "step_id": "s", "name": "n", "op": "StepRun",
        "status": StepStatus.COMPLETED, "mode": "race", "memo": {"data": 1}, "attempts": 3,
        "started_at": 1.5, "ended_at": 2.5, "seq": 7, "error": {"name": "E"},
        "wait": {"event": "e"},
    }  # fmt: skip
    assert set(values) == {f.name for f in dataclasses.fields(StepRecord)}, "a new field?"
    step = StepRecord(**values)  # type: ignore[arg-type]
    copied = step.copy()
    assert copied == step
    assert copied is not step
    copied.attempts += 1
    assert step.attempts == 3  # a change to the copy is a difference RunView.save sees


@pytest.mark.parametrize(
    ("limit", "dropped"), [(1 << 20, ()), (900, ("steps",)), (300, ("steps", "events"))]
)
def test_a_calls_body_is_encoded_once_and_sent_as_encoded(
    monkeypatch: pytest.MonkeyPatch, limit: int, dropped: tuple[str, ...]
) -> None:
    event = {"name": "shop/order", "data": {"pad": "e" * 200}, "id": "e1", "ts": 1}
    run = Run("r1", "app-fn", "app", RunStatus.RUNNING, [event], ["e1"], 1.0, stack=["s1"])
    memo = StepRecord("r1", "s1", "s1", "StepRun", StepStatus.COMPLETED, memo={"data": "m" * 500})
    job = Job("r1:step:d1", JobKind.EXECUTE, 1.0, "r1", "step")
    encodings: list[object] = []
    real = _json.dumpb

    def counted(value: object, **options: object) -> bytes:
        encodings.append(value)
        return real(value, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(_json, "dumpb", counted)
    body, compact = request.built(
        run, [memo], job, max_attempts=3, checkpoint=False, max_inline=limit
    )
    assert len(encodings) == 1 + len(dropped)  # the size check's encoding, once per shrink
    assert compact == real(body)
    assert ("s1" in body["steps"], body["events"] == [event]) == (
        "steps" not in dropped,
        "events" not in dropped,
    )
    assert body["use_api"] is bool(dropped)
    sent, _ = request.encode(body, signing_key=None, now=1.0, compact=compact)
    assert sent is compact
    assert len(encodings) == 1 + len(dropped)  # no second encoding
