"""The deploy check's verdict on one run, in process: the replay core against changed code.

Each test records a run of "v1" by hand (as the engine records it: hashed ids, completion
order, the step the run is in) and replays it against a "v2" of the function. Every step
body appends to ``ran``: a check must never run one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import stepline
from stepline._replay.local import Replayer
from stepline._replay.verdict import CheckReport, RunVerdict
from tests._support.clients import dev_client
from tests._support.journals import ran, recorded, sleeping, slept

client = dev_client("shop")
ran_steps: list[str] = []
NAP = dt.timedelta(seconds=30)


@pytest.fixture(autouse=True)
def _no_step_ran() -> Iterator[None]:
    ran_steps.clear()
    yield
    assert ran_steps == [], f"a check ran step code: {ran_steps}"


def step_body(name: str) -> Callable[[], str]:
    def body() -> str:
        ran_steps.append(name)
        return name

    return body


def flow(
    fn_id: str, names: list[str], *, nap_after: str | None = None, is_async: bool = False
) -> stepline.Function:
    """v2 of a function: ``names`` as steps in that order, a sleep after ``nap_after``."""
    trigger = stepline.TriggerEvent(event="t/go")
    if is_async:

        @client.function(id=fn_id, trigger=trigger)
        async def run_async(ctx: stepline.Context) -> list[str]:
            out = []
            for name in names:
                out.append(await ctx.step.run(name, step_body(name)))
                if name == nap_after:
                    await ctx.step.sleep("nap", NAP)
            return out

        return run_async

    @client.function(id=fn_id, trigger=trigger)
    def run_sync(ctx: stepline.SyncContext) -> list[str]:
        out = []
        for name in names:
            out.append(ctx.step.run(name, step_body(name)))
            if name == nap_after:
                ctx.step.sleep("nap", NAP)
        return out

    return run_sync


def check(fn: stepline.Function, journal: Any) -> RunVerdict:
    replayer = Replayer(client, [fn])
    try:
        return replayer.check_sync(journal)
    finally:
        replayer.close()


#: v1: steps a then b, then asleep in "nap" (c comes after it)
V1 = recorded("shop-order", [ran("a", "a"), ran("b", "b")], [sleeping("nap")])


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_steps_appended_after_the_record_pass(is_async: bool) -> None:
    fn = flow("order", ["a", "b", "c", "d"], nap_after="b", is_async=is_async)
    verdict = check(fn, V1)
    assert (verdict.verdict, verdict.missing, verdict.reordered) == ("ok", (), ())
    assert verdict.fix() is None


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_removed_step_is_named_with_where_the_code_now_goes(is_async: bool) -> None:
    fn = flow("order", ["b", "c"], nap_after="b", is_async=is_async)
    verdict = check(fn, V1)
    assert verdict.verdict == "diverged"
    assert [s.name for s in verdict.missing] == ["a"]
    assert [s.name for s in verdict.new] == ["c"]
    # where the change is: the code reaches "b" where the record has "a"
    assert verdict.departs is not None
    assert verdict.expected is not None
    assert (verdict.departs.name, verdict.expected.name) == ("b", "a")
    assert verdict.new[0].location is not None
    assert verdict.new[0].location.startswith("tests/replay/test_local.py:")
    fix = verdict.fix()
    assert fix is not None
    assert 'ctx.patched("a-change")' in fix
    assert verdict.new[0].location in fix


def test_two_reordered_steps_are_named() -> None:
    fn = flow("order", ["b", "a", "c"], nap_after="a")
    verdict = check(fn, V1)
    assert verdict.verdict == "diverged"
    assert {s.name for s in verdict.reordered} == {"a", "b"}
    assert "out of order" in verdict.summary()


def test_the_sleep_the_run_is_in_must_still_be_reached() -> None:
    fn = flow("order", ["a", "b", "c"])  # the nap is gone
    verdict = check(fn, V1)
    assert verdict.verdict == "diverged"
    assert [s.name for s in verdict.missing] == ["nap"]


def test_a_change_behind_ctx_patched_passes_and_old_runs_keep_the_old_steps() -> None:
    seen: list[bool] = []

    @client.function(id="order", trigger=stepline.TriggerEvent(event="t/go"))
    def patched(ctx: stepline.SyncContext) -> list[str]:
        new = ctx.patched("drop-a")
        seen.append(new)
        first = [] if new else [ctx.step.run("a", step_body("a"))]
        out = [*first, ctx.step.run("b", step_body("b"))]
        ctx.step.sleep("nap", NAP)
        return [*out, ctx.step.run("c", step_body("c"))]

    assert check(patched, V1).verdict == "ok"
    assert seen == [False]  # a run recorded before the patch takes the old branch
    fresh = recorded("shop-order", [], [], status="Queued")
    assert check(patched, fresh).verdict == "ok"
    assert seen == [False, True]


def test_steps_completed_in_parallel_in_any_order_pass() -> None:
    @client.function(id="fan", trigger=stepline.TriggerEvent(event="t/go"))
    def fan(ctx: stepline.SyncContext) -> tuple[str, ...]:
        both = ctx.step.parallel(
            [lambda: ctx.step.run("x", step_body("x")), lambda: ctx.step.run("y", step_body("y"))]
        )
        ctx.step.run("z", step_body("z"))
        return both

    # y completed before x: the group's order is free
    journal = recorded("shop-fan", [ran("y", "y"), ran("x", "x")], [("z", "StepRun", "Planned")])
    assert check(fan, journal).verdict == "ok"


def test_a_function_gone_from_the_new_code_fails_the_check() -> None:
    fn = flow("other", ["a"])
    verdict = check(fn, V1)
    assert verdict.verdict == "failed"
    assert verdict.error is not None
    assert '"shop-order" is not in the new code' in verdict.error


def test_code_raising_before_it_is_past_the_record_fails() -> None:
    @client.function(id="order", trigger=stepline.TriggerEvent(event="t/go"))
    def strict_input(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", step_body("a"))
        return str(ctx.event.data["customer"])  # v2 reads a field v1's events lack

    verdict = check(strict_input, V1)
    assert verdict.verdict == "failed"
    assert verdict.error is not None
    assert "KeyError" in verdict.error
    assert "tests/replay/test_local.py:" in verdict.error


def test_code_raising_past_a_wait_answered_with_a_stand_in_is_inconclusive() -> None:
    @client.function(id="approve", trigger=stepline.TriggerEvent(event="t/go"))
    def approve(ctx: stepline.SyncContext) -> str:
        ctx.step.run("ask", step_body("ask"))
        answer = ctx.step.wait_for_event("reply", event="t/reply", timeout=NAP)
        return str(answer.data["ok"])  # type: ignore[union-attr]  # v2 forgot the timeout

    journal = recorded("shop-approve", [ran("ask", "ask")], [("reply", "WaitForEvent", "Waiting")])
    verdict = check(approve, journal)
    assert verdict.verdict == "inconclusive"
    assert verdict.error is not None
    assert '"reply"' in verdict.error


def test_an_ended_run_that_failed_failing_the_same_way_passes() -> None:
    @client.function(id="pay", trigger=stepline.TriggerEvent(event="t/go"))
    def pay(ctx: stepline.SyncContext) -> str:
        return str(ctx.step.run("charge", step_body("charge")))

    failure = {"name": "Error", "message": "card declined"}
    journal = recorded(
        "shop-pay",
        [("charge", "StepRun", {"error": failure})],
        status="Failed",
        output={"name": "StepError", "message": "card declined"},
    )
    assert check(pay, journal).verdict == "ok"


class _CountingServer:
    """A TCP server on loopback that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_the_code_between_steps_cannot_reach_the_network_and_the_check_says_so() -> None:
    server = _CountingServer()
    try:

        @client.function(id="order", trigger=stepline.TriggerEvent(event="t/go"))
        def chatty(ctx: stepline.SyncContext) -> None:
            ctx.step.run("a", step_body("a"))
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            ctx.step.run("b", step_body("b"))
            ctx.step.sleep("nap", NAP)

        verdict = check(chatty, V1)
        assert verdict.verdict == "inconclusive"
        # create_connection looks the address up first: refused there
        assert verdict.notes == (f"refused: look up 127.0.0.1:{server.port}",)
        assert server.accepted == 0
        # outside a check, the same code reaches the server: the count can move
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        for _ in range(200):
            if server.accepted:
                break
            threading.Event().wait(0.01)
        assert server.accepted == 1
    finally:
        server.close()


def test_code_that_reads_ctx_dry_run_skips_its_side_effects_and_passes() -> None:
    flags: list[bool] = []

    @client.function(id="order", trigger=stepline.TriggerEvent(event="t/go"))
    def careful(ctx: stepline.SyncContext) -> None:
        flags.append(ctx.dry_run)
        if not ctx.dry_run:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        ctx.step.run("a", step_body("a"))
        ctx.step.run("b", step_body("b"))
        ctx.step.sleep("nap", NAP)

    assert check(careful, V1).verdict == "ok"
    assert flags == [True]


def test_a_run_that_slept_through_its_nap_replays_past_it() -> None:
    fn = flow("order", ["a", "b", "c"], nap_after="b")
    journal = recorded(
        "shop-order", [ran("a", "a"), ran("b", "b"), slept("nap")], [("c", "StepRun", "Planned")]
    )
    assert check(fn, journal).verdict == "ok"


def test_the_report_fails_on_divergence_and_under_strict_on_inconclusive() -> None:
    ok = check(flow("order", ["a", "b", "c"], nap_after="b"), V1)
    unsure = RunVerdict.of(V1, "inconclusive", error="tried the network")
    report = CheckReport(target="app:client", engine="http://127.0.0.1:8288", checked_at="now")
    for verdict in (ok, unsure):
        report.add(verdict)
    assert report.ok
    assert "PASSED: no run would diverge (1 inconclusive" in report.render()
    report.strict = True
    assert not report.ok
    report.strict = False
    report.add(check(flow("order", ["b", "a"], nap_after="a"), V1))
    document = report.to_json()
    assert not report.ok
    assert document["ok"] is False
    assert document["counts"] == {
        "runs": 3,
        "ok": 1,
        "diverged": 1,
        "failed": 0,
        "inconclusive": 1,
    }
    text = report.render()
    assert "FAIL shop-order: 1 of 3 run(s) would diverge or fail" in text
    assert "fix: wrap the change at tests/replay/test_local.py:" in text
    assert text.rstrip().endswith("FAILED: 1 run(s) would diverge or fail")


def test_runs_of_an_on_failure_handler_are_checked_against_it() -> None:
    def alert(ctx: stepline.SyncContext) -> None:
        ctx.step.run("page", step_body("page"))

    @client.function(id="pay", trigger=stepline.TriggerEvent(event="t/go"), on_failure=alert)
    def pay(ctx: stepline.SyncContext) -> None:
        ctx.step.run("charge", step_body("charge"))

    handler = pay.on_failure
    assert handler is not None
    journal = recorded(handler.composite_id, [], [("page", "StepRun", "Planned")])
    assert check(pay, journal).verdict == "ok"
    gone = recorded(handler.composite_id, [ran("other", 1)], [])
    assert check(pay, gone).verdict == "diverged"


def test_the_fix_names_what_the_apps_sdk_has() -> None:
    """Stepline's SDK (in process, or over the wire) gets ctx.patched with where to put it;
    an app on an official SDK, which has no ctx.patched, a pin or a new function id."""
    verdict = check(flow("order", ["b", "c"], nap_after="b"), V1)
    stepline_fix = verdict.fix()
    assert stepline_fix is not None
    assert 'if ctx.patched("a-change"):' in stepline_fix
    over_the_wire = dataclasses.replace(verdict, sdk="stepline-py:v0.1.0")
    assert not over_the_wire.official_sdk
    assert over_the_wire.fix() == stepline_fix

    official = dataclasses.replace(verdict, sdk="inngest-py:v0.5.19")
    assert official.official_sdk
    fix = official.fix()
    assert fix is not None
    assert "ctx.patched(" not in fix
    assert "has no ctx.patched" in fix
    assert "inngest-py:v0.5.19" in fix
    assert "inngest.Inngest(app_version=...)" in fix
    assert "new function id" in fix
    assert 'keep step "a"' in fix
    assert official.to_json()["sdk"] == "inngest-py:v0.5.19"
    assert official.to_json()["fix"] == fix
    assert verdict.to_json()["sdk"] is None
    assert dataclasses.replace(official, verdict="ok", missing=(), new=()).fix() is None


def test_github_annotations_point_at_the_line_where_the_code_departs() -> None:
    report = CheckReport(target="app:client", engine="http://127.0.0.1:8288", checked_at="now")
    report.add(check(flow("order", ["a", "b", "c"], nap_after="b"), V1))
    assert report.annotations() == []
    diverged = check(flow("order", ["b", "c"], nap_after="b"), V1)
    report.add(diverged)
    report.add(RunVerdict.of(V1, "inconclusive", error="tried the network, 100% sure"))

    error, warning = report.annotations()
    where = diverged.location()
    assert where is not None
    assert where.startswith("tests/replay/test_local.py:")
    path, line = where.split(":")
    assert error.startswith(
        f"::error file={path},line={line},title=stepline deploy check%3A shop-order::"
        f"run {V1.run_id} (Running): diverged: recorded step no longer reached"
    )
    assert "%0Afix: wrap the change at" in error, "the fix on a line of its own"
    assert "\n" not in error
    assert warning.startswith("::warning title=stepline deploy check%3A shop-order::run ")
    assert warning.endswith("tried the network, 100%25 sure"), "escaped as Actions reads it"
    report.strict = True
    assert report.annotations()[1].startswith("::error ")

    markdown = report.markdown()
    assert markdown.startswith("### stepline deploy check **failed**\n\n```text\n")
    assert report.render() in markdown
