"""Postgres wake-ups: a commit that queues work wakes every other node, never its own.

A node already knows what its own commits queued and ended (the worker and the API call
``Engine.committed`` themselves, as on SQLite, which has no notifications); answering the
echo of its own ``NOTIFY`` would cost two more transactions per step.
"""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from stepline.engine import EngineSettings
from stepline.engine._model import Job, JobKind
from stepline.engine._store import Store, Tx, store_for
from stepline.engine._store.postgres import CHANNEL, STREAMS
from tests._support.aio import arun
from tests._support.databases import postgres_database
from tests._support.polling import await_until

pytestmark = [pytest.mark.postgres]


class Heard:
    """What one store's subscriber was told, from the listener's thread."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self._event = threading.Event()

    def __call__(self, what: str) -> None:
        self.said.append(what)
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        return await asyncio.to_thread(self._event.wait, seconds)


def _enqueue(job_id: str) -> object:
    def work(tx: Tx) -> None:
        tx.queue.enqueue(Job(job_id=job_id, kind=JobKind.EXECUTE, available_at=0.0))

    return work


async def _listening(url: str) -> tuple[Store, Heard]:
    store = store_for(EngineSettings(database_url=url))
    await store.open()
    heard = Heard()
    store.subscribe(heard)
    return store, heard


async def _listeners(url: str, count: int) -> None:
    """Wait until ``count`` sessions of this database have run their last LISTEN."""

    def listening() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            row = conn.execute(sql + "AND query = %s", (f"LISTEN {STREAMS}",)).fetchone()
        return row is not None and row[0] >= count

    await await_until(lambda: asyncio.to_thread(listening), message=f"{count} listeners")


def test_a_commit_wakes_the_other_node_and_not_its_own() -> None:
    async def scenario(url: str) -> None:
        (one, heard_one), (two, heard_two) = await _listening(url), await _listening(url)
        try:
            await _listeners(url, 2)
            await one.atomic(_enqueue("j1"))  # type: ignore[arg-type]
            assert await heard_two.wait(5), "the other node was not woken"
            assert heard_two.said == ["jobs"]
            await two.atomic(_enqueue("j2"))  # type: ignore[arg-type]
            assert await heard_one.wait(5)
            assert heard_one.said == ["jobs"]  # j2 only: its own j1 was not echoed back
            assert heard_two.said == ["jobs"]
        finally:
            await one.close()
            await two.close()

    with postgres_database("wake") as url:  # channels are per database: no other test's
        arun(scenario(url))


def test_a_node_of_the_previous_release_still_wakes_this_one() -> None:
    # a node of the previous release sends the bare "jobs" / "apps", with no origin
    async def scenario(url: str) -> None:
        store, heard = await _listening(url)
        try:
            await _listeners(url, 1)
            with psycopg.connect(url, autocommit=True) as old_node:
                old_node.execute("SELECT pg_notify(%s, 'apps')", (CHANNEL,))
            assert await heard.wait(5)
            assert heard.said == ["apps"]
        finally:
            await store.close()

    with postgres_database("wake") as url:  # channels are per database: no other test's
        arun(scenario(url))
