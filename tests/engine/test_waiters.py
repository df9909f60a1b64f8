"""``RunWaiters``: callers waiting for runs share one read per commit, and miss none."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

import stepline
from stepline.engine._errors import EngineStopped
from stepline.engine._model import Run, RunStatus
from stepline.engine._runs.waiters import RECHECK_SECONDS, RunWaiters
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running
from tests._support.polling import await_until, wait_until


class Runs:
    """A stand-in for the store: run statuses, and every read made."""

    def __init__(self) -> None:
        self.status: dict[str, RunStatus] = {}
        self.reads: list[list[str]] = []

    async def read(self, run_ids: Sequence[str]) -> list[Run]:
        self.reads.append(list(run_ids))
        seen = [self.run(i) for i in run_ids if i in self.status]  # the snapshot it reads
        await asyncio.sleep(0.001)  # a read takes a moment: commits land meanwhile
        return seen

    def run(self, run_id: str) -> Run:
        return Run(run_id, "app-fn", "app", self.status[run_id], [], [], 0.0)


def test_one_read_answers_every_waiter_and_commits_coalesce() -> None:
    async def scenario() -> None:
        runs = Runs()
        waiters = RunWaiters(runs.read)
        ids = [f"r{i}" for i in range(20)]
        for run_id in ids:
            runs.status[run_id] = RunStatus.RUNNING
        tasks = [asyncio.create_task(waiters.wait(i, 5.0)) for i in ids]
        await await_until(lambda: waiters.count == 20, message="the 20 waiters")
        runs.reads.clear()
        for run_id in ids:
            runs.status[run_id] = RunStatus.COMPLETED
        for _ in range(50):  # fifty commits in a burst
            waiters.changed()
        done = await asyncio.gather(*tasks)
        assert [r.run_id for r in done] == ids
        assert all(r.status is RunStatus.COMPLETED for r in done)
        assert 1 <= len(runs.reads) <= 2, runs.reads  # not one per commit, nor per waiter
        assert sorted(runs.reads[0]) == sorted(ids)  # one read covered everyone
        assert waiters.count == 0

    arun(scenario())


def test_a_run_ended_before_the_wait_answers_at_once_and_others_time_out() -> None:
    async def scenario() -> None:
        runs = Runs()
        runs.status.update(done=RunStatus.FAILED, going=RunStatus.RUNNING)
        waiters = RunWaiters(runs.read)
        ended = await asyncio.wait_for(waiters.wait("done", 5.0), 3.0)  # not its 5 s
        assert ended.status is RunStatus.FAILED
        with pytest.raises(asyncio.TimeoutError):
            await waiters.wait("going", 0.3)
        assert waiters.count == 0

    arun(scenario())


def test_a_commit_during_a_read_is_not_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    # a missed commit would be found only by the recheck: made too late to pass for news
    monkeypatch.setattr("stepline.engine._runs.waiters.RECHECK_SECONDS", 30.0)

    async def scenario() -> None:
        runs = Runs()
        runs.status["r"] = RunStatus.RUNNING
        waiters = RunWaiters(runs.read)
        task = asyncio.create_task(waiters.wait("r", 60.0))
        await asyncio.sleep(0)  # the waiter's own first read is now in flight
        runs.status["r"] = RunStatus.COMPLETED
        waiters.changed()  # ... and this commit lands during it
        started = asyncio.get_running_loop().time()
        run = await task
        assert run.status is RunStatus.COMPLETED
        assert asyncio.get_running_loop().time() - started < 10  # not the 30 s recheck

    arun(scenario())


def test_a_caller_that_reads_the_run_itself_costs_no_batched_check() -> None:
    """``now``: the caller's own read, made once it is registered, replaces the first check."""

    async def scenario() -> None:
        runs = Runs()
        runs.status.update(done=RunStatus.COMPLETED, going=RunStatus.RUNNING)
        waiters = RunWaiters(runs.read)
        ended = await waiters.wait("done", 5.0, now=lambda: _now(runs, "done"))
        assert ended.status is RunStatus.COMPLETED
        task = asyncio.create_task(waiters.wait("going", 5.0, now=lambda: _now(runs, "going")))
        await await_until(lambda: waiters.count == 1, message="the caller waiting")
        assert runs.reads == [], "no batched read: the callers read their runs themselves"
        runs.status["going"] = RunStatus.CANCELLED
        waiters.ended(runs.run("going"))  # its commit names it
        assert (await task).status is RunStatus.CANCELLED
        assert runs.reads == []
        assert waiters.count == 0

    arun(scenario())


def test_a_watched_start_waits_with_no_read_and_misses_no_end() -> None:
    """``watch``: registered when the run's start committed, so no read is needed; an end
    committed before the caller gets to ``wait`` still answers it."""

    async def scenario() -> None:
        runs = Runs()
        runs.status.update(fast=RunStatus.RUNNING, slow=RunStatus.RUNNING)
        waiters = RunWaiters(runs.read)

        async def never() -> Run:
            raise AssertionError("a watched wait reads nothing")

        fast = waiters.watch("fast")
        runs.status["fast"] = RunStatus.COMPLETED
        waiters.ended(runs.run("fast"))  # ended before its caller waits
        got = await asyncio.wait_for(waiters.wait("fast", 5.0, now=never, watched=fast), 3.0)
        assert got.status is RunStatus.COMPLETED
        slow = waiters.watch("slow")
        task = asyncio.create_task(waiters.wait("slow", 5.0, now=never, watched=slow))
        await asyncio.sleep(0.05)
        runs.status["slow"] = RunStatus.FAILED
        waiters.ended(runs.run("slow"))
        assert (await task).status is RunStatus.FAILED
        with pytest.raises(asyncio.TimeoutError):
            await waiters.wait("late", 0.05, now=never, watched=waiters.watch("late"))
        assert runs.reads == []
        assert waiters.count == 0

    arun(scenario())


def test_an_end_committed_during_the_callers_read_is_not_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("stepline.engine._runs.waiters.RECHECK_SECONDS", 30.0)

    async def scenario() -> None:
        runs = Runs()
        runs.status["r"] = RunStatus.RUNNING
        waiters = RunWaiters(runs.read)

        async def stale() -> Run:  # reads RUNNING; the end commits before it returns
            seen = runs.run("r")
            runs.status["r"] = RunStatus.COMPLETED
            waiters.changed()
            return seen

        started = asyncio.get_running_loop().time()
        run = await waiters.wait("r", 60.0, now=stale)
        assert run.status is RunStatus.COMPLETED
        assert asyncio.get_running_loop().time() - started < 10  # not the 30 s recheck

    arun(scenario())


def test_the_callers_read_failing_leaves_no_waiter() -> None:
    async def scenario() -> None:
        waiters = RunWaiters(Runs().read)

        async def missing() -> Run:
            raise LookupError("run 'x' not found")

        with pytest.raises(LookupError):
            await waiters.wait("x", 5.0, now=missing)
        assert waiters.count == 0

    arun(scenario())


async def _now(runs: Runs, run_id: str) -> Run:
    await asyncio.sleep(0.001)
    return runs.run(run_id)


# -- callers on other threads (wait_blocking) ----------------------------------------------


class Blocked:
    """``wait_blocking`` on a thread of its own; what it returned or raised, and its reads."""

    def __init__(self, waiters: RunWaiters, runs: Runs, run_id: str, timeout: float = 5.0):
        self.reads = 0
        self.outcome: Run | BaseException | None = None

        def now() -> Run:
            self.reads += 1
            return runs.run(run_id)

        def wait() -> None:
            try:
                self.outcome = waiters.wait_blocking(run_id, timeout, now)
            except BaseException as exc:
                self.outcome = exc

        self.thread = threading.Thread(target=wait)
        self.thread.start()

    def result(self) -> Run | BaseException | None:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.outcome


def test_a_blocked_caller_is_woken_by_the_commit_that_ends_its_run() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.RUNNING
    waiters = RunWaiters(runs.read)
    caller = Blocked(waiters, runs, "r")
    wait_until(lambda: caller.reads == 1 and waiters.count == 1)
    runs.status["r"] = RunStatus.COMPLETED
    waiters.ended(runs.run("r"))  # on the loop, once the commit is known
    outcome = caller.result()
    assert isinstance(outcome, Run)
    assert outcome.status is RunStatus.COMPLETED
    assert caller.reads == 1, "woken with the run, not by a recheck"
    assert runs.reads == []
    assert waiters.count == 0


def test_a_blocked_caller_reads_an_ended_run_once_and_returns() -> None:
    runs = Runs()
    runs.status["done"] = RunStatus.FAILED
    waiters = RunWaiters(runs.read)
    outcome = Blocked(waiters, runs, "done").result()
    assert isinstance(outcome, Run)
    assert outcome.status is RunStatus.FAILED
    assert waiters.count == 0


def test_an_end_during_the_blocked_callers_read_is_not_missed() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.RUNNING
    waiters = RunWaiters(runs.read)

    def stale() -> Run:  # reads RUNNING; the end commits before it returns
        seen = runs.run("r")
        runs.status["r"] = RunStatus.COMPLETED
        waiters.ended(runs.run("r"))
        return seen

    began = time.monotonic()
    run = waiters.wait_blocking("r", 5.0, stale)
    assert run.status is RunStatus.COMPLETED
    assert time.monotonic() - began < RECHECK_SECONDS  # the event was set: no recheck


@pytest.mark.slow
def test_a_blocked_caller_rechecks_on_its_own_and_times_out() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.RUNNING
    waiters = RunWaiters(runs.read)
    caller = Blocked(waiters, runs, "r", timeout=0.6)
    outcome = caller.result()
    assert isinstance(outcome, TimeoutError), outcome
    assert caller.reads >= 2, "another process may end the run: it looks again"
    assert waiters.count == 0


def test_the_batched_check_answers_blocked_callers_too() -> None:
    async def scenario() -> None:
        runs = Runs()
        runs.status.update(a=RunStatus.RUNNING, b=RunStatus.RUNNING)
        waiters = RunWaiters(runs.read)
        callers = [Blocked(waiters, runs, run_id) for run_id in ("a", "b")]
        while waiters.count < 2 or sum(c.reads for c in callers) < 2:
            await asyncio.sleep(0.005)
        runs.status.update(a=RunStatus.COMPLETED, b=RunStatus.CANCELLED)
        waiters.changed()  # a commit that does not say which runs it ended
        outcomes = await asyncio.to_thread(lambda: [c.result() for c in callers])
        assert [getattr(o, "status", o) for o in outcomes] == [
            RunStatus.COMPLETED,
            RunStatus.CANCELLED,
        ]
        assert [sorted(ids) for ids in runs.reads] == [["a", "b"]]
        assert [c.reads for c in callers] == [1, 1]

    arun(scenario())


def test_close_lets_blocked_callers_go_and_open_waits_again() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.RUNNING
    waiters = RunWaiters(runs.read)
    caller = Blocked(waiters, runs, "r", timeout=30.0)
    wait_until(lambda: caller.reads == 1)
    began = time.monotonic()
    waiters.close()
    assert isinstance(caller.result(), EngineStopped)
    assert time.monotonic() - began < 5.0, "at once, not after its timeout"
    with pytest.raises(EngineStopped):
        waiters.wait_blocking("r", 5.0, lambda: runs.run("r"))
    waiters.open()
    runs.status["r"] = RunStatus.COMPLETED
    assert waiters.wait_blocking("r", 5.0, lambda: runs.run("r")).status is RunStatus.COMPLETED


def test_a_failing_read_leaves_no_blocked_caller() -> None:
    waiters = RunWaiters(Runs().read)

    def missing() -> Run:
        raise LookupError("run 'x' not found")

    with pytest.raises(LookupError):
        waiters.wait_blocking("x", 5.0, missing)
    assert waiters.count == 0


def test_a_read_failing_because_the_engine_stopped_is_engine_stopped() -> None:
    waiters = RunWaiters(Runs().read)

    def closing() -> Run:  # the engine stops and closes its store under the read
        waiters.close()
        raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(EngineStopped):
        waiters.wait_blocking("x", 5.0, closing)
    assert waiters.count == 0


# -- a run started from a blocking caller, then waited for (fresh) -------------------------


def test_a_wait_for_a_fresh_start_reads_nothing_and_is_woken_by_its_end() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.RUNNING
    waiters = RunWaiters(runs.read)
    waiters.fresh("r")  # its start committed; its first call not dispatched yet
    caller = Blocked(waiters, runs, "r")
    wait_until(lambda: waiters.count == 1)
    runs.status["r"] = RunStatus.COMPLETED
    waiters.ended(runs.run("r"))
    outcome = caller.result()
    assert isinstance(outcome, Run)
    assert outcome.status is RunStatus.COMPLETED
    assert caller.reads == 0, "watched from its start: no read to know it had not ended"
    assert waiters.count == 0


def test_a_fresh_start_ended_before_its_wait_is_read_and_returned() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.RUNNING
    waiters = RunWaiters(runs.read)
    waiters.fresh("r")
    runs.status["r"] = RunStatus.COMPLETED
    waiters.ended(runs.run("r"))  # before anyone waits: the watch is let go
    caller = Blocked(waiters, runs, "r")
    outcome = caller.result()
    assert isinstance(outcome, Run)
    assert outcome.status is RunStatus.COMPLETED
    assert caller.reads == 1


def test_a_fresh_start_ended_by_another_process_is_found_by_the_recheck() -> None:
    runs = Runs()
    runs.status["r"] = RunStatus.CANCELLED  # no end committed here tells this one
    waiters = RunWaiters(runs.read)
    waiters.fresh("r")
    began = time.monotonic()
    run = waiters.wait_blocking("r", 5.0, lambda: runs.run("r"))
    assert run.status is RunStatus.CANCELLED
    assert time.monotonic() - began < RECHECK_SECONDS * 4


def test_fresh_starts_are_bounded_and_let_go_when_the_engine_stops() -> None:
    from stepline.engine._runs import waiters as _waiters

    runs = Runs()
    waiters = RunWaiters(runs.read)
    for i in range(_waiters.FRESH + 10):
        runs.status[f"r{i}"] = RunStatus.RUNNING
        waiters.fresh(f"r{i}")
    assert waiters.count == 0, "unclaimed watches wait for nobody (no check covers them)"
    oldest = Blocked(waiters, runs, "r0", timeout=0.1)  # dropped: it reads
    assert isinstance(oldest.result(), TimeoutError)
    assert oldest.reads >= 1
    newest = Blocked(waiters, runs, f"r{_waiters.FRESH + 9}", timeout=0.1)
    assert isinstance(newest.result(), TimeoutError)
    # still watched from its start: no first read (the one at its timeout only)
    assert newest.reads == oldest.reads - 1
    waiters.close()
    waiters.open()
    restarted = Blocked(waiters, runs, f"r{_waiters.FRESH + 8}", timeout=0.1)
    assert isinstance(restarted.result(), TimeoutError)
    assert restarted.reads >= 1, "a restarted engine's waits read first"


def test_an_end_told_from_the_committing_thread_wakes_blocked_callers_only() -> None:
    async def scenario() -> None:
        runs = Runs()
        runs.status["r"] = RunStatus.RUNNING
        waiters = RunWaiters(runs.read)
        future = waiters.watch("r")  # an async caller: the loop answers it
        caller = Blocked(waiters, runs, "r")
        while caller.reads < 1 or waiters.count < 2:
            await asyncio.sleep(0.005)
        runs.status["r"] = RunStatus.COMPLETED
        # from another thread, as the SDK's thread that committed the end
        await asyncio.to_thread(waiters.ended_blocking, runs.run("r"))
        outcome = await asyncio.to_thread(caller.result)
        assert isinstance(outcome, Run)
        assert outcome.status is RunStatus.COMPLETED
        assert not future.done(), "the loop's futures wait for ended() on the loop"
        waiters.ended(runs.run("r"))
        assert (await future).status is RunStatus.COMPLETED
        assert waiters.count == 0

    arun(scenario())


def test_a_commit_concerns_the_loop_only_when_a_caller_waits_for_its_runs() -> None:
    async def scenario() -> None:
        runs = Runs()
        for run_id in ("a", "b", "c"):
            runs.status[run_id] = RunStatus.COMPLETED
        runs.status["b"] = RunStatus.RUNNING
        waiters = RunWaiters(runs.read)
        # nobody waits: a commit from another thread need not wake the loop
        assert not waiters.concern(None)
        assert not waiters.concern([runs.run("a")])
        assert not waiters.concern([])
        future = waiters.watch("a")  # an async caller
        assert waiters.concern(None)
        assert waiters.concern([runs.run("a")])
        assert not waiters.concern([runs.run("b")])
        waiters.ended(runs.run("a"))
        assert (await future).run_id == "a"
        assert not waiters.concern(None)
        waiters.fresh("c")  # a blocking start's run, watched for the wait that claims it
        assert waiters.concern([runs.run("c")])
        assert not waiters.concern(None), "a fresh run is no waiter until claimed"
        caller = Blocked(waiters, runs, "b")  # a caller on another thread
        await await_until(lambda: waiters.count == 1, message="the blocked caller")
        assert waiters.concern(None)
        assert waiters.concern([runs.run("b")])
        assert not waiters.concern([runs.run("a")])
        waiters.close()
        assert isinstance(await asyncio.to_thread(caller.result), EngineStopped)

    arun(scenario())


def test_a_run_the_shared_check_finds_ended_is_the_run_get_run_reads(db: str) -> None:
    """A caller answered by the batched check (its run ended before it waited, or on
    another node) gets the whole run: its ``stack`` and attributes, as ``get_run``."""
    client = dev_client("w")

    @client.function(id="three", trigger=stepline.TriggerEvent(event="w/go"), retries=0)
    def three(ctx: stepline.SyncContext) -> int:
        for i in range(3):
            ctx.step.run(f"s{i}", lambda i=i: i)
        return 3

    async def scenario() -> None:
        async with running(db, apps=[(client, [three])]) as engine:
            await engine.send({"name": "w/go"})
            run_id = await only_run(engine, "w-three")
            await finished(engine, run_id)
            waited = await engine.wait_for_run(run_id, timeout=5)  # read by the check
            assert len(waited.stack) == 3
            assert waited == await engine.get_run(run_id)

    arun(scenario())
