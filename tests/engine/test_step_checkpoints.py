"""Per-step checkpointing (``Checkpointing(buffered_steps=n)``), end to end.

Each step's code looks at what the engine has recorded when it starts: with per-step
checkpoints every earlier step is committed, in one call with no replay; batched
checkpointing commits them with the answer; one call per step commits each but replays.
The in-process engine takes the checkpoints with no HTTP (``LocalCheckpoints``); an app
on its own socket posts them to ``/v1/checkpoint/{run}/async``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline.engine import Engine, RunStatus
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running
from tests._support.processes import APPS

from .test_publish_runs import stack

STEPS = 5
TRIGGER = stepline.TriggerEvent(event="cp/go")
PER_STEP = stepline.Checkpointing(buffered_steps=1)

#: mode -> (what each step saw recorded when it started, times the function was entered)
EXPECTED: dict[str, tuple[list[int], int]] = {
    "per-step": ([0, 1, 2, 3, 4], 1),
    "buffered-2": ([0, 0, 2, 2, 4], 1),
    "batched": ([0, 0, 0, 0, 0], 1),
    "one-call-per-step": ([0, 1, 2, 3, 4], STEPS + 1),
}
OPTIONS: dict[str, bool | stepline.Checkpointing] = {
    "per-step": PER_STEP,
    "buffered-2": stepline.Checkpointing(buffered_steps=2),
    "batched": True,
    "one-call-per-step": False,
}


def recorder(
    client: stepline.Client, engine: list[Engine], faces: str, count: int = STEPS
) -> tuple[stepline.Function, list[int], list[str]]:
    """A function of ``count`` steps (five) noting how many steps were recorded as each
    step began."""
    seen: list[int] = []
    entered: list[str] = []

    async def recorded(run_id: str) -> int:
        steps = await engine[0].run_steps(run_id)
        return sum(1 for s in steps if s.status.value == "Completed")

    if faces == "async":

        @client.function(id="five", trigger=TRIGGER, retries=0)
        async def five(ctx: stepline.Context) -> int:
            entered.append(ctx.run_id)
            for i in range(count):

                async def look(i: int = i) -> int:
                    seen.append(await recorded(ctx.run_id))
                    return i

                await ctx.step.run(f"s{i}", look)
            return count

        return five, seen, entered

    loop = asyncio.get_running_loop()

    @client.function(id="five", trigger=TRIGGER, retries=0)
    def sync_five(ctx: stepline.SyncContext) -> int:
        entered.append(ctx.run_id)
        for i in range(count):

            def look(i: int = i) -> int:
                future = asyncio.run_coroutine_threadsafe(recorded(ctx.run_id), loop)
                seen.append(future.result(timeout=10))
                return i

            ctx.step.run(f"s{i}", look)
        return count

    return sync_five, seen, entered


@pytest.mark.parametrize("faces", ["sync", "async"])
@pytest.mark.parametrize("mode", list(EXPECTED))
def test_what_each_step_finds_recorded_in_process(db: str, mode: str, faces: str) -> None:
    client = dev_client("cp", checkpointing=OPTIONS[mode])
    holder: list[Engine] = []

    async def scenario() -> tuple[list[int], list[str]]:
        fn, seen, entered = recorder(client, holder, faces)
        checkpointing = mode != "one-call-per-step"
        async with running(db, apps=[(client, [fn])], checkpointing=checkpointing) as engine:
            holder.append(engine)
            await engine.send({"name": "cp/go"})
            run = await finished(engine, await only_run(engine, "cp-five"))
            assert run.status is RunStatus.COMPLETED, run.output
            steps = await engine.run_steps(run.run_id)
            assert [(s.name, s.status.value, s.seq) for s in steps] == [
                (f"s{i}", "Completed", i) for i in range(STEPS)
            ]
            assert run.stack == [s.step_id for s in steps]
        return seen, entered

    seen, entered = arun(scenario())
    want_seen, want_calls = EXPECTED[mode]
    if mode == "one-call-per-step" and faces == "sync":
        want_calls = STEPS  # a sync function's last step answers with its result (run_on)
    assert seen == want_seen
    assert len(entered) == want_calls


@pytest.mark.parametrize("faces", ["sync", "async"])
def test_a_long_batched_run_commits_each_batch_and_goes_on_in_the_same_call(
    db: str, faces: str
) -> None:
    """Batched checkpointing (the default) reports a call's steps with its answer, up to
    a batch of 100: past that, the batch is committed before the next step's code runs
    and the call goes on, instead of answering and being called again, which would
    replay the run from its start (a long run's cost quadratic in its steps)."""
    count = 250
    client = dev_client("cp", checkpointing=True)
    holder: list[Engine] = []

    async def scenario() -> tuple[list[int], list[str]]:
        fn, seen, entered = recorder(client, holder, faces, count)
        async with running(db, apps=[(client, [fn])]) as engine:
            holder.append(engine)
            await engine.send({"name": "cp/go"})
            run = await finished(engine, await only_run(engine, "cp-five"))
            assert run.status is RunStatus.COMPLETED, run.output
            assert run.output == str(count)  # as stored: JSON text
            steps = await engine.run_steps(run.run_id)
            assert [(s.name, s.seq) for s in steps] == [(f"s{i}", i) for i in range(count)]
        return seen, entered

    seen, entered = arun(scenario())
    assert seen == [0] * 100 + [100] * 100 + [200] * 50  # committed a batch at a time
    assert len(entered) == 1  # one call: no replay


def test_a_cancelled_run_stops_at_the_next_step_boundary(db: str) -> None:
    client = dev_client("cp", checkpointing=PER_STEP)
    ran: list[str] = []
    holder: list[Engine] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        @client.function(id="five", trigger=TRIGGER, retries=0)
        def five(ctx: stepline.SyncContext) -> int:
            for i in range(STEPS):

                def work(i: int = i) -> int:
                    ran.append(f"s{i}")
                    if i == 1:  # cancelled while this step runs: s2 must never start
                        cancel = holder[0].cancel(ctx.run_id)
                        assert asyncio.run_coroutine_threadsafe(cancel, loop).result(10)
                    return i

                ctx.step.run(f"s{i}", work)
            return STEPS

        async with running(db, apps=[(client, [five])]) as engine:
            holder.append(engine)
            await engine.send({"name": "cp/go"})
            run = await finished(engine, await only_run(engine, "cp-five"))
            assert run.status is RunStatus.CANCELLED
            steps = await engine.run_steps(run.run_id)
            assert [s.name for s in steps if s.status.value == "Completed"] == ["s0"]

    arun(scenario())
    assert ran == ["s0", "s1"]


@pytest.mark.slow
def test_an_app_on_its_own_socket_posts_each_step_before_the_next(db: str) -> None:
    """Over HTTP: the checkpoints go to ``POST /v1/checkpoint/{run}/async``."""
    seen: list[int] = []
    entered: list[int] = []

    def declare(client: stepline.Client) -> list[stepline.Function]:
        @client.function(id="five", trigger=TRIGGER, retries=0)
        def five(ctx: stepline.SyncContext) -> int:
            entered.append(1)
            for i in range(STEPS):

                def look(i: int = i) -> int:
                    steps = client.get_run_sync(ctx.run_id).steps()
                    seen.append(sum(1 for s in steps if s.status == "Completed"))
                    return i

                ctx.step.run(f"s{i}", look)
            return STEPS

        return [five]

    with stack(db, declare, checkpointing=PER_STEP) as env:
        assert env.client.start_sync("five").result(timeout=30) == STEPS
    assert seen == [0, 1, 2, 3, 4]
    assert entered == [1]


def test_the_checkpoint_route_refuses_a_call_no_longer_leased(db: str) -> None:
    """A checkpoint naming a call that is not leased (or of an ended run) answers 409."""
    client = dev_client("cp", checkpointing=PER_STEP)
    answers: dict[str, Any] = {}

    @client.function(id="one", trigger=TRIGGER)
    def one(ctx: stepline.SyncContext) -> str:
        return "done"

    async def scenario() -> None:
        async with running(db, apps=[(client, [one])]) as engine:
            await engine.send({"name": "cp/go"})
            run_id = await only_run(engine, "cp-one")
            await finished(engine, run_id)
            transport = httpx.ASGITransport(app=build_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                step = {"op": "StepRun", "id": "abc", "name": "late", "data": 1}
                for name, qi_id in (("gone call", "01NOSUCHJOB"), ("ended run", None)):
                    body = {"run_id": run_id, "steps": [step]}
                    if qi_id is not None:
                        body["qi_id"] = qi_id
                    answer = await http.post(f"/v1/checkpoint/{run_id}/async", json=body)
                    answers[name] = (answer.status_code, answer.json())
            steps = await engine.run_steps(run_id)
            assert [s.name for s in steps] == []

    arun(scenario())
    assert answers["gone call"][0] == 409
    assert "no longer leased" in answers["gone call"][1]["error"]
    assert answers["ended run"][0] == 409
    assert "has ended" in answers["ended run"][1]["error"]


def test_a_checkpoint_of_a_call_given_up_and_leased_again_is_refused(db: str) -> None:
    """The call's lease epoch travels in its ``qi_id``: once the job is leased again (here by
    the same node, as a node cut off from its database past its lease does), the old
    call's per-step checkpoint is refused, its answer is fenced off too, and the run goes
    on from the new lease with each step recorded once."""
    import threading

    client = dev_client("cp", checkpointing=PER_STEP)
    held, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @client.function(id="fenced", trigger=TRIGGER, retries=0)
    def fenced(ctx: stepline.SyncContext) -> str:
        def first() -> str:
            ran.append("s0")
            if len(ran) == 1:  # the first call waits while its job is leased again
                held.set()
                release.wait(20)
            return "a"

        ctx.step.run("s0", first)
        ctx.step.run("s1", lambda: ran.append("s1") or "b")
        return "done"

    async def scenario() -> tuple[list[str], list[str]]:
        async with running(db, apps=[(client, [fenced])], lease_seconds=2.0) as engine:
            await engine.send({"name": "cp/go"})
            run_id = await only_run(engine, "cp-fenced")
            await asyncio.to_thread(held.wait, 20)
            [job_id] = list(engine.worker._inflight)
            job = await engine.store.read(lambda tx: tx.queue.get_job(job_id))
            assert job is not None
            owner, until = engine.worker.owner, job.available_at
            again = await engine.store.atomic(
                lambda tx: tx.queue.lease_job(job_id, owner, until, until + 1.0)
            )
            assert again is not None
            assert again.lease_epoch == job.lease_epoch + 1
            release.set()
            await finished(engine, run_id)
            steps = await engine.run_steps(run_id)
            return [s.name for s in steps], list(ran)

    names, calls = arun(scenario())
    # the first call stopped at its refused checkpoint; the second ran both steps
    assert calls == ["s0", "s0", "s1"]
    assert sorted(names) == ["s0", "s1"]


def test_checkpointing_option_is_checked() -> None:
    with pytest.raises(stepline.ConfigError, match="buffered_steps"):
        stepline.Checkpointing(buffered_steps=0)
    with pytest.raises(stepline.ConfigError, match="max_runtime"):
        stepline.Checkpointing(max_runtime=0)
    with pytest.raises(stepline.ConfigError, match="checkpointing must be"):
        stepline.Client("cp", is_production=False, checkpointing="yes")  # type: ignore[arg-type]


@pytest.mark.process
@pytest.mark.parametrize(
    ("mode", "log"),
    [
        # per step: s0..s2 were committed before s3 began; only s3 runs again
        ("per-step", ["s0", "s1", "s2", "s3", "s3", "s4"]),
        # batched: nothing of the call was committed; the whole call runs again
        ("batched", ["s0", "s1", "s2", "s3", "s0", "s1", "s2", "s3", "s4"]),
    ],
)
def test_a_process_killed_mid_step_runs_no_committed_step_again(
    tmp_path: Path, mode: str, log: list[str]
) -> None:
    """SIGKILL in the middle of the fourth step, then a new process on the same file."""
    db, steps_log = str(tmp_path / "crash.db"), tmp_path / "steps.log"
    script = [sys.executable, str(APPS / "checkpoint_crash.py")]
    args = [db, str(steps_log), mode]
    first = subprocess.run(
        [*script, *args, "start"], capture_output=True, text=True, timeout=60, check=False
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    run_id = first.stdout.strip()
    second = subprocess.run(
        [*script, *args, "resume", run_id], capture_output=True, text=True, timeout=60, check=False
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.strip() == "[0, 1, 2, 3, 4]"
    assert steps_log.read_text().split() == log
