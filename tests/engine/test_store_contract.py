"""One contract for every store: the same ``Tx`` behaviour on SQLite and on Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from stepline.engine import EngineSettings
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    StepRecord,
    StepStatus,
)
from stepline.engine._store import EventFilter, RunFilter, Store, Tx, store_for
from tests._support.aio import arun

T = TypeVar("T")


def run_record(run_id: str, **changes: Any) -> Run:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "function_id": "app-fn",
        "app_id": "app",
        "status": RunStatus.QUEUED,
        "events": [{"name": "e", "data": {"n": 1}}],
        "event_ids": ["E1"],
        "created_at": 100.0,
    }
    fields.update(changes)
    return Run(**fields)


def job(job_id: str, at: float, **changes: Any) -> Job:
    fields: dict[str, Any] = {"job_id": job_id, "kind": JobKind.EXECUTE, "available_at": at}
    fields.update(changes)
    return Job(**fields)


async def opened(db: str) -> Store:
    store = store_for(EngineSettings(database_url=db))
    await store.open()
    return store


def with_store(db: str, body: Callable[[Store], Any]) -> None:
    async def scenario() -> None:
        store = await opened(db)
        try:
            await body(store)
        finally:
            await store.close()

    arun(scenario())


async def atomic(store: Store, work: Callable[[Tx], T]) -> T:
    return await store.atomic(work)


def test_runs_round_trip_and_insert_is_idempotent(db: str) -> None:
    async def body(store: Store) -> None:
        run = run_record("R1", waiting={"reason": "throttled", "until": 5.0}, flow={"boost": 3})
        assert await atomic(store, lambda tx: tx.insert_run(run))
        assert not await atomic(store, lambda tx: tx.insert_run(run_record("R1", app_id="x")))
        got = await store.read(lambda tx: tx.get_run("R1"))
        assert got == run
        run.status, run.output = RunStatus.COMPLETED, '{"ok":1}'
        await atomic(store, lambda tx: tx.update_run(run))
        await atomic(store, lambda tx: tx.set_waiting("R1", None))
        got = await store.read(lambda tx: tx.get_run("R1"))
        assert got is not None
        assert (got.status, got.output, got.stack, got.waiting) == (
            RunStatus.COMPLETED,
            '{"ok":1}',
            [],  # the completion order is the steps' (``stack_of``), not on the run's row
            None,
        )
        assert await store.read(lambda tx: tx.get_run("nope")) is None

    with_store(db, body)


def test_list_runs_filters_and_pages_newest_first(db: str) -> None:
    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            for i in range(7):
                status = RunStatus.FAILED if i % 3 == 0 else RunStatus.COMPLETED
                fid = "app-a" if i < 4 else "app-b"
                tx.insert_run(run_record(f"R{i:02d}", status=status, function_id=fid))

        await atomic(store, seed)
        first = await store.read(lambda tx: tx.list_runs(RunFilter(limit=3)))
        assert [r.run_id for r in first] == ["R06", "R05", "R04"]
        rest = await store.read(lambda tx: tx.list_runs(RunFilter(cursor="R04", limit=10)))
        assert [r.run_id for r in rest] == ["R03", "R02", "R01", "R00"]
        failed = RunFilter(status=(RunStatus.FAILED,), function_id="app-a")
        assert [r.run_id for r in await store.read(lambda tx: tx.list_runs(failed))] == [
            "R03",
            "R00",
        ]

    with_store(db, body)


def test_steps_upsert_and_keep_completion_order(db: str) -> None:
    async def body(store: Store) -> None:
        def write(tx: Tx) -> None:
            tx.put_step(StepRecord("R", "s2", "two", "StepRun", StepStatus.PLANNED))
            tx.put_step(
                StepRecord(
                    "R", "s1", "one", "StepRun", StepStatus.COMPLETED, memo={"data": 1}, seq=0
                )
            )
            tx.put_step(
                StepRecord(
                    "R", "s2", "two", "StepRun", StepStatus.COMPLETED, memo={"data": 2}, seq=1
                )
            )

        await atomic(store, write)
        steps = await store.read(lambda tx: tx.get_steps("R"))
        assert [(s.step_id, s.memo, s.status) for s in steps] == [
            ("s1", {"data": 1}, StepStatus.COMPLETED),
            ("s2", {"data": 2}, StepStatus.COMPLETED),
        ]

    with_store(db, body)


def test_leasing_is_exclusive_ordered_and_expires(db: str) -> None:
    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            assert tx.queue.enqueue(job("late", 50.0))
            assert tx.queue.enqueue(job("early", 10.0))
            assert tx.queue.enqueue(job("future", 500.0))
            assert not tx.queue.enqueue(job("early", 1.0))  # the id makes enqueueing idempotent

        await atomic(store, seed)
        assert await store.read(lambda tx: tx.queue.next_job_at()) == 10.0
        first = await atomic(store, lambda tx: tx.queue.lease_jobs("w1", 100.0, 130.0, 1))
        assert [j.job_id for j in first] == ["early"]  # the most overdue first
        leased = first + await atomic(store, lambda tx: tx.queue.lease_jobs("w1", 100.0, 130.0, 5))
        assert sorted(j.job_id for j in leased) == ["early", "late"]
        assert all(j.lease_owner == "w1" and j.available_at == 130.0 for j in leased)
        assert await atomic(store, lambda tx: tx.queue.lease_jobs("w2", 110.0, 140.0, 5)) == []
        await atomic(store, lambda tx: tx.queue.extend_leases("w1", ["early"], 160.0))
        # w1 died: "late" comes back when its lease ran out, "early" was extended
        taken = await atomic(store, lambda tx: tx.queue.lease_jobs("w2", 135.0, 165.0, 5))
        assert [j.job_id for j in taken] == ["late"]
        await atomic(store, lambda tx: tx.queue.delete_job("late"))
        assert await store.read(lambda tx: tx.queue.get_job("late")) is None
        assert await store.read(lambda tx: tx.queue.next_job_at()) == 160.0

    with_store(db, body)


def test_a_run_s_next_call_is_leased_by_run_unless_queued_for_a_reason(db: str) -> None:
    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            tx.queue.enqueue(job("r1-next", 90.0, run_id="r1", step_id="step"))
            tx.queue.enqueue(job("r1-later", 95.0, run_id="r1", step_id="s2"))
            tx.queue.enqueue(job("r2-wake", 90.0, run_id="r2", kind=JobKind.WAKE))
            tx.queue.enqueue(job("r3-future", 200.0, run_id="r3"))
            keyed = {"keys": [["fn:app-fn", 1]]}
            tx.queue.enqueue(job("r4-keyed", 90.0, run_id="r4", payload=keyed))
            tx.queue.enqueue(job("r5-parked", 90.0, run_id="r5"))
            tx.queue.park_job("r5-parked", "fn:app-fn", 95.0)

        await atomic(store, seed)

        def lease(run_id: str) -> Callable[[Tx], Job | None]:
            return lambda tx: tx.queue.lease_run_call(run_id, "w1", 100.0, 130.0)

        taken = await atomic(store, lease("r1"))
        assert taken is not None
        assert taken.job_id == "r1-next"
        assert (taken.lease_owner, taken.lease_expires) == ("w1", 130.0)
        stored = await store.read(lambda tx: tx.queue.get_job("r1-next"))
        assert stored is not None
        assert stored.lease_owner == "w1"
        assert stored.available_at == 130.0
        again = await atomic(store, lease("r1"))  # a leased call is not leased twice
        assert again is not None
        assert again.job_id == "r1-later"
        assert await atomic(store, lease("r1")) is None
        assert await atomic(store, lease("r2")) is None  # not a call
        assert await atomic(store, lease("r3")) is None  # not due yet
        assert await atomic(store, lease("r4")) is None  # concurrency keys: it queues
        assert await atomic(store, lease("r5")) is None  # parked on a key
        assert await atomic(store, lease("none")) is None

    with_store(db, body)


def test_concurrent_leases_never_share_a_job(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(
            store, lambda tx: [tx.queue.enqueue(job(f"j{i:03d}", float(i))) for i in range(60)]
        )
        batches = await asyncio.gather(
            *(
                store.atomic(lambda tx, w=w: tx.queue.lease_jobs(f"w{w}", 1000.0, 2000.0, 7))
                for w in range(6)
            )
        )
        ids = [j.job_id for batch in batches for j in batch]
        assert len(ids) == len(set(ids)) == 42

    with_store(db, body)


def test_a_failed_unit_of_work_leaves_nothing(db: str) -> None:
    async def body(store: Store) -> None:
        def broken(tx: Tx) -> None:
            tx.insert_run(run_record("R9"))
            tx.queue.enqueue(job("j9", 1.0))
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await atomic(store, broken)
        assert await store.read(lambda tx: tx.get_run("R9")) is None
        assert await store.read(lambda tx: tx.queue.get_job("j9")) is None

    with_store(db, body)


def test_events_links_and_idempotency_keys(db: str) -> None:
    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            for i in range(5):
                event = EventRecord(f"E{i}", "shop/order", {"id": f"E{i}", "name": "x"}, float(i))
                assert tx.insert_event(event)
            assert not tx.insert_event(EventRecord("E0", "other", {}, 0.0))
            tx.link_event(EventRunLink("E1", "app-fn", "R1", None, 1.0))
            tx.link_event(EventRunLink("E2", "app-fn", None, "rate_limited", 2.0))
            tx.update_link("E1", "R1", "debounced")

        await atomic(store, seed)
        page = await store.read(lambda tx: tx.list_events(EventFilter(limit=2)))
        assert [e.internal_id for e in page] == ["E4", "E3"]
        after = await store.read(lambda tx: tx.list_events(EventFilter(cursor="E3", since=1.0)))
        assert [e.internal_id for e in after] == ["E2", "E1"]
        links = await store.read(lambda tx: tx.event_links("E1"))
        assert [(link.run_id, link.reason) for link in links] == [("R1", "debounced")]
        assert await atomic(store, lambda tx: tx.claim_key("s", "k", 10.0, 0.0))
        assert not await atomic(store, lambda tx: tx.claim_key("s", "k", 10.0, 5.0))
        assert await atomic(store, lambda tx: tx.claim_key("s", "k", 30.0, 10.0))  # expired

    with_store(db, body)


def test_a_batch_of_events_is_stored_once_in_multi_row_inserts(db: str) -> None:
    def event(i: int) -> EventRecord:
        return EventRecord(f"B{i:04d}", "shop/order", {"id": f"B{i:04d}", "data": {"i": i}}, 1.0)

    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_event(event(7)))  # sent before, in a batch
        batch = [event(i) for i in range(450)]  # more than one INSERT's worth of rows
        stored = await atomic(store, lambda tx: tx.insert_events(batch))
        assert stored == {f"B{i:04d}" for i in range(450)} - {"B0007"}
        assert await atomic(store, lambda tx: tx.insert_events(batch[:3])) == set()  # a retry
        got = await store.read(lambda tx: tx.get_event("B0449"))
        assert got is not None
        assert got.payload["data"] == {"i": 449}
        assert len(await store.read(lambda tx: tx.list_events(EventFilter(limit=500)))) == 450

    with_store(db, body)


def test_noted_event_names_answer_waits_without_missing_one_added_later(db: str) -> None:
    def pause(pause_id: str, name: str) -> Pause:
        return Pause(pause_id, "R1", PauseKind.WAIT, name, expires_at=99.0)

    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_pause(pause("P1", "a")))

        def batch(tx: Tx) -> list[list[str]]:
            tx.note_event_names({"a", "b", "c"})
            seen = [[p.pause_id for p in tx.pauses_for_event(name)] for name in ("a", "b")]
            tx.insert_pause(pause("P2", "c"))  # a wait begun in the same transaction
            seen.append([p.pause_id for p in tx.pauses_for_event("c")])
            seen.append([p.pause_id for p in tx.pauses_for_event("d")])  # never noted
            return seen

        assert await atomic(store, batch) == [["P1"], [], ["P2"], []]

    with_store(db, body)


def test_a_run_s_close_deletes_its_rows_alone_and_notes_the_waits_of_its_end(db: str) -> None:
    def pause(pause_id: str, run_id: str, name: str) -> Pause:
        return Pause(pause_id, run_id, PauseKind.WAIT, name, expires_at=99.0)

    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            for run_id in ("R1", "R2"):
                tx.insert_run(run_record(run_id))
                tx.queue.enqueue(job(f"J{run_id}", 1.0, run_id=run_id))
                tx.flow.set_singleton("f", f"k{run_id}", run_id)
                tx.flow.set_bucket("f", f"b{run_id}", run_id, 99.0)
            tx.attributes.set_attributes("R1", {"b": "2", "a": "1"})
            tx.insert_pause(pause("P1", "R1", "ended"))  # the closing run's own: deleted
            tx.insert_pause(pause("P2", "R2", "done"))

        await atomic(store, seed)

        def close(tx: Tx) -> tuple[dict[str, str], list[list[str]]]:
            attributes = tx.close_run("R1", ["ended", "done", "quiet"])
            waits = [[p.pause_id for p in tx.pauses_for_event(n)] for n in ("ended", "done")]
            tx.insert_pause(pause("P3", "R2", "quiet"))  # begun after: still found
            waits.append([p.pause_id for p in tx.pauses_for_event("quiet")])
            return attributes, waits

        attributes, waits = await atomic(store, close)
        assert list(attributes.items()) == [("a", "1"), ("b", "2")]
        assert waits == [[], ["P2"], ["P3"]]

        def left(tx: Tx) -> list[object]:
            return [
                tx.queue.get_job("JR1"),
                tx.queue.get_job("JR2") is not None,
                tx.flow.singleton_run("f", "kR1"),
                tx.flow.singleton_run("f", "kR2"),
                tx.flow.get_bucket("f", "bR1"),
                tx.flow.get_bucket("f", "bR2"),
                [p.pause_id for p in tx.run_pauses("R1")],
                tx.attributes.get_attributes(["R1"]),
            ]

        assert await store.read(left) == [
            None,
            True,
            None,
            "R2",
            None,
            ("R2", 99.0),
            [],
            {"R1": {"a": "1", "b": "2"}},
        ]

    with_store(db, body)


def test_flow_control_state(db: str) -> None:
    async def body(store: Store) -> None:
        def write(tx: Tx) -> None:
            assert tx.flow.get_limit("rate:f", "k") is None
            tx.flow.set_limit("rate:f", "k", 12.5, 20.0)
            tx.flow.set_limit("rate:f", "k", 13.5, 20.0)
            tx.flow.set_singleton("f", "k", "R1")
            tx.flow.set_bucket("f", "batch:k", "R1", 99.0)
            tx.flow.set_bucket("f", "batch:j", "R2", 50.0)

        await atomic(store, write)
        assert await store.read(lambda tx: tx.flow.get_limit("rate:f", "k")) == 13.5
        assert await store.read(lambda tx: tx.flow.singleton_run("f", "k")) == "R1"
        assert await store.read(lambda tx: tx.flow.get_bucket("f", "batch:k")) == ("R1", 99.0)
        await atomic(store, lambda tx: tx.flow.release_claims("R1"))
        assert await store.read(lambda tx: tx.flow.singleton_run("f", "k")) is None
        assert await store.read(lambda tx: tx.flow.get_bucket("f", "batch:k")) is None
        assert await store.read(lambda tx: tx.flow.get_bucket("f", "batch:j")) == ("R2", 50.0)

    with_store(db, body)


def test_concurrency_slots_park_and_wake_in_queue_order(db: str) -> None:
    async def body(store: Store) -> None:
        keys = [("fn:f:", 2)]

        def fill(tx: Tx) -> list[str | None]:
            for name, queued in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 0.5)):
                tx.queue.enqueue(job(name, queued, run_id=f"R{name}"))
            return [tx.flow.acquire_slots(name, keys, 10.0, 40.0) for name in "abc"]

        assert await atomic(store, fill) == [None, None, "fn:f:"]
        assert await store.read(lambda tx: tx.flow.count_slots("fn:f:", 10.0)) == 2

        def park(tx: Tx) -> None:
            tx.queue.park_job("c", "fn:f:", 100.0)
            tx.queue.park_job("d", "fn:f:", 100.0)

        await atomic(store, park)
        assert await store.read(lambda tx: tx.queue.next_job_at()) == 1.0  # parked jobs are not due
        released = await atomic(store, lambda tx: tx.flow.release_slots("a"))
        assert released == ["fn:f:"]
        woken = await atomic(store, lambda tx: tx.queue.unpark_jobs("fn:f:", 1))
        assert woken == ["Rd"]  # queued first
        d = await store.read(lambda tx: tx.queue.get_job("d"))
        assert d is not None
        assert (d.available_at, d.job_id) == (0.5, "d")
        # b's lease (and slot) expire at 40: the slot comes back without a release
        assert await atomic(store, lambda tx: tx.flow.acquire_slots("d", keys, 20.0, 50.0)) is None
        assert (
            await atomic(store, lambda tx: tx.flow.acquire_slots("c", keys, 20.0, 50.0)) == "fn:f:"
        )
        assert await atomic(store, lambda tx: tx.flow.expire_slots(45.0)) == {"fn:f:": 1}
        assert await atomic(store, lambda tx: tx.flow.acquire_slots("c", keys, 45.0, 80.0)) is None

    with_store(db, body)


def test_apps_and_functions(db: str) -> None:
    async def body(store: Store) -> None:
        app = AppRecord("app", "http://x/api", "py:v1", "flask", 1.0, "c1")
        fns = [FunctionRecord("app-f", "app", "f", {"id": "app-f", "triggers": []}, 1.0)]
        assert await atomic(store, lambda tx: tx.apps.put_app(app, fns))
        assert not await atomic(store, lambda tx: tx.apps.put_app(app, fns))  # same checksum
        await atomic(store, lambda tx: tx.apps.set_app_error("http://x/api", "unreachable", 2.0))
        [got] = await store.read(lambda tx: tx.apps.list_apps())
        assert (got.error, got.synced_at) == ("unreachable", 2.0)
        assert [f.config for f in await store.read(lambda tx: tx.apps.list_functions())] == [
            {"id": "app-f", "triggers": []}
        ]

    with_store(db, body)
