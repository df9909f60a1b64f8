"""Any run as a test: a recorded run played back to its end against the current code.

The records here are written by hand as the engine keeps them (tests/replay/test_export_replay.py
plays back runs a real engine recorded and exported). Every step body appends to ``ran``:
playback answers steps from the record and never runs one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

import stepline
from stepline._replay.journal import JournalError
from stepline.testing import Playback, TestEnv
from stepline.testing.plugin import ReplayFactory
from tests._support.clients import dev_client
from tests._support.journals import ran, recorded, sleeping, slept

client = dev_client("shop")
ran_steps: list[str] = []


@pytest.fixture(autouse=True)
def _no_step_ran() -> Iterator[None]:
    ran_steps.clear()
    yield
    assert ran_steps == [], f"playback ran step code: {ran_steps}"


def body(name: str, value: Any) -> Any:
    def run() -> Any:
        ran_steps.append(name)
        return value

    return run


@client.function(id="child", trigger=stepline.TriggerEvent(event="t/child"))
def child(ctx: stepline.SyncContext) -> int:
    return 1


@client.function(id="checkout", trigger=stepline.TriggerEvent(event="t/go"))
def checkout(ctx: stepline.SyncContext) -> dict[str, Any]:
    """A run with a bit of everything: a step, a sleep, a wait, an invoke, a parallel group."""
    total = ctx.step.run("price", body("price", 0))
    ctx.step.sleep("cool-off", dt.timedelta(minutes=5))
    reply = ctx.step.wait_for_event("confirm", event="t/confirm", timeout=dt.timedelta(hours=1))
    points = ctx.step.invoke("points", function=child, data={"total": total})
    mail, sms = ctx.step.parallel(
        [
            lambda: ctx.step.run("mail", body("mail", "m")),
            lambda: ctx.step.run("sms", body("sms", "s")),
        ]
    )
    return {
        "total": total,
        "confirmed": reply is not None,
        "points": points,
        "sent": [mail, sms],
    }


CONFIRM = {"name": "t/confirm", "data": {"ok": True}, "id": "e2", "ts": 1}
OUTPUT = {"total": 42, "confirmed": True, "points": 7, "sent": ["m", "s"]}
RECORD = recorded(
    "shop-checkout",
    [
        ran("price", 42),
        slept("cool-off"),
        ("confirm", "WaitForEvent", CONFIRM),
        ("points", "InvokeFunction", {"data": 7}),
        ran("sms", "s"),  # the group's steps completed in either order
        ran("mail", "m"),
    ],
    output=OUTPUT,
    times=[
        "2026-11-27T06:00:01Z",
        "2026-11-27T06:05:01Z",
        "2026-11-27T06:20:00Z",
        "2026-11-27T06:20:02Z",
        "2026-11-27T06:20:03Z",
        "2026-11-27T06:20:03Z",
    ],
)


def play(fn: stepline.Function, journal: Any = RECORD, **kwargs: Any) -> Playback:
    with TestEnv(client, [fn, child]) as env:
        return env.replay_sync(journal, **kwargs)


def test_a_run_with_every_kind_of_step_plays_back_the_same() -> None:
    played = play(checkout)
    played.assert_same()
    assert played.same
    assert played.output == OUTPUT
    assert [s.name for s in played.steps] == [
        "price",
        "cool-off",
        "confirm",
        "points",
        "mail",
        "sms",
    ]
    assert played.steps[0].output == 42
    assert played.steps[0].location is not None
    assert played.steps[0].location.startswith("tests/replay/test_playback.py:")


@pytest.mark.anyio
async def test_playback_from_an_async_test_on_its_loop() -> None:
    async with TestEnv(client, [checkout, child]) as env:
        played = await env.replay(RECORD.to_json())
    assert played.same
    assert played.output == OUTPUT


def test_a_changed_order_is_the_first_difference() -> None:
    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="t/go"))
    def swapped(ctx: stepline.SyncContext) -> None:
        ctx.step.sleep("cool-off", dt.timedelta(minutes=5))
        ctx.step.run("price", body("price", 0))

    played = play(swapped)
    assert not played.same
    assert played.difference is not None
    assert played.difference == (
        'at step 1: the code reaches step "cool-off" where the record has "price" next'
    )
    with pytest.raises(AssertionError, match="does not replay as recorded"):
        played.assert_same()


def test_a_new_step_names_where_it_is_and_what_the_record_has_next() -> None:
    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="t/go"))
    def extra(ctx: stepline.SyncContext) -> None:
        ctx.step.run("price", body("price", 0))
        ctx.step.run("tax", body("tax", 0))

    played = play(extra)
    assert played.difference is not None
    assert played.difference.startswith('at step 2: the code reaches step "tax"')
    assert "tests/replay/test_playback.py:" in played.difference
    assert 'next in the record: "cool-off"' in played.difference


def test_a_different_output_is_a_difference() -> None:
    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="t/go"))
    def rounding(ctx: stepline.SyncContext) -> dict[str, Any]:
        out = checkout.handler(ctx)  # type: ignore[arg-type]
        return {**out, "total": out["total"] + 1}

    played = play(rounding)
    assert played.difference is not None
    assert "the output differs" in played.difference
    assert '"total": 43' in played.difference


def test_a_step_exported_without_its_output_is_answered_by_the_test() -> None:
    dropped = RECORD.without_outputs(["price"])
    assert "output:price" in dropped.redacted
    with pytest.raises(JournalError, match=r"pass outputs=\{'price': \.\.\.\}"):
        play(checkout, dropped)
    played = play(checkout, dropped, outputs={"price": 42})
    assert played.same
    assert played.output == OUTPUT


def test_a_run_exported_live_plays_back_to_the_step_it_waits_on() -> None:
    live = recorded("shop-checkout", [ran("price", 42)], [sleeping("cool-off")])
    played = play(checkout, live)
    assert played.same
    assert [s.name for s in played.steps] == ["price", "cool-off"]


def test_the_fixture_fails_the_test_at_the_first_difference(
    stepline_replay: ReplayFactory, tmp_path: Any
) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(RECORD.to_json()))
    assert stepline_replay(str(path), client, [checkout, child]).output == OUTPUT

    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="t/go"))
    def short(ctx: stepline.SyncContext) -> int:
        return int(ctx.step.run("price", body("price", 0)))

    with pytest.raises(AssertionError, match="returns before the recorded step"):
        stepline_replay(path, client, [short, child])


def test_a_file_that_is_not_a_journal_is_refused_with_what_to_do(tmp_path: Any) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"format": "something/else"}')
    with pytest.raises(JournalError, match="stepline runs export RUN_ID"):
        play(checkout, str(path))
    with pytest.raises(JournalError, match="cannot read the run journal"):
        play(checkout, str(tmp_path / "missing.json"))


def test_a_run_the_test_engine_recorded_plays_back_the_same() -> None:
    @client.function(id="greet", trigger=stepline.TriggerEvent(event="t/greet"))
    def greet(ctx: stepline.SyncContext) -> str:
        name = ctx.step.run("name", body("name", "ada"))
        ctx.step.sleep("wait", dt.timedelta(hours=1))
        return f"hi {ctx.step.run('title', body('title', name.title()))}"

    with TestEnv(client, [greet]) as env:
        run = env.start_sync(greet)
        assert run.result_sync() == "hi Ada"
        journal = env.export_sync(run)
    assert ran_steps == ["name", "title"]
    assert [s.name for s in journal.steps] == ["name", "wait", "title"]
    ran_steps.clear()
    with TestEnv(client, [greet]) as env:
        played = env.replay_sync(journal)
    assert played.same
    assert played.output == "hi Ada"


def test_the_calls_see_the_records_times_as_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The virtual clock: each call of the function reads the record's time at that point
    of the run (its start, then each answered step's end), not the wall clock, so a sleep
    the code plans is timed from where the run was."""
    from stepline._execution import invocation

    seen: list[dt.datetime] = []
    real = invocation.call_sync

    def spying(*args: Any) -> Any:
        seen.append(args[-1]())  # the clock the step tools read
        return real(*args)

    monkeypatch.setattr(invocation, "call_sync", spying)
    played = play(checkout)
    assert played.same, played.difference

    def at(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert seen[0] == at("2026-11-27T06:00:00Z"), "the run's start"
    assert seen == sorted(seen), "the clock never goes back"
    assert at("2026-11-27T06:05:01Z") in seen, "after the sleep: its end, 5 minutes on"
    assert seen[-1] == at("2026-11-27T06:20:03Z"), "the last step's end"
