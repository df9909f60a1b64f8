"""Postgres gone (restarting, failing over, a network cut): the engine answers 503 naming
it within seconds, not after the pool's whole wait, and takes work again once it is back.
The database is cut with a TCP forwarder (``tcp_cut``), not stopped: the
server is shared with the rest of the suite."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse

import httpx
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.databases import postgres_schema
from tests._support.logs import captured_logs
from tests._support.polling import await_until

from .tcp_cut import cuttable

pytestmark = [pytest.mark.postgres]

#: how long a request may wait before the 503 (the pool's checkout timeout, and slack)
ANSWERED_WITHIN = 8.0


def _through(url: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = f"{parts.username or ''}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id="pgcut", is_production=False, checkpointing=False)

    @client.function(id="two", trigger=stepline.TriggerEvent(event="pgcut/go"))
    async def two(ctx: stepline.Context) -> int:
        one = await ctx.step.run("one", lambda: 1)
        return int(one) + 1

    return client, [two]


@pytest.mark.timeout(120)
def test_a_cut_database_answers_503_within_seconds_and_work_resumes_after() -> None:
    with postgres_schema("pgcut") as url:
        target = urllib.parse.urlsplit(url)
        with cuttable((target.hostname or "127.0.0.1", target.port or 5432)) as proxy:
            settings = EngineSettings(
                database_url=_through(url, proxy.port), poll_interval=0.1, shutdown_grace=1.0
            )
            engine = Engine(settings)

            async def scenario() -> dict[str, float]:
                transport = httpx.ASGITransport(app=build_app(engine))
                async with (
                    engine,
                    httpx.AsyncClient(transport=transport, base_url="http://localhost") as http,
                ):
                    await engine.serve(*_app())
                    assert (await http.post("/e/key", json={"name": "pgcut/go"})).status_code == 200
                    proxy.cut()
                    started = time.monotonic()
                    sent = await http.post("/e/key", json={"name": "pgcut/go"})
                    answered = time.monotonic() - started
                    assert sent.status_code == 503, sent.text
                    assert sent.json()["cause"] == "unreachable", sent.text
                    assert sent.headers["retry-after"].isdigit()
                    ready = await http.get("/ready")
                    assert ready.status_code == 503, ready.text
                    proxy.mend()
                    mended = time.monotonic()

                    async def accepted() -> bool:
                        sent = await http.post("/e/key", json={"name": "pgcut/go"})
                        return sent.status_code == 200

                    await await_until(accepted, timeout=30, interval=0.2, message="an event taken")
                    back = time.monotonic() - mended

                    async def all_done() -> bool:
                        runs = await engine.list_runs()
                        return len(runs) >= 2 and all(r.status.value == "Completed" for r in runs)

                    await await_until(all_done, timeout=30, interval=0.2, message="runs to end")
                    return {"answered": answered, "back": back}

            with captured_logs("stepline", level=logging.INFO) as lines:
                times = asyncio.run(scenario())
    print(f"503 after {times['answered']:.2f} s; events taken {times['back']:.2f} s after")
    assert times["answered"] < ANSWERED_WITHIN, times
    assert any("(unreachable)" in line for line in lines), "\n".join(lines)


#: seconds the database stays away in the checkout test: past the pool's first try (a
#: connect refused, again a second later, then it gives up), well short of the
#: checkout's whole wait (``CHECKOUT_TIMEOUT``, 5 s)
AWAY = 2.5


@pytest.mark.timeout(60)
def test_a_transaction_waiting_when_the_database_returns_gets_a_connection_within_seconds() -> None:
    """A transaction that began waiting for a connection while the database was away is
    served soon after it returns: psycopg_pool tries to connect only when a checkout
    begins to wait, so one long wait would outlast its one try (about a second) and see
    nothing of the return until it timed out."""
    from stepline.engine._store.postgres import CHECKOUT_SLICE, CHECKOUT_TIMEOUT, PostgresStore

    def probe(tx: object) -> object:
        return tx.execute("SELECT 1").fetchone()  # type: ignore[attr-defined]

    with postgres_schema("pgwait") as url:
        target = urllib.parse.urlsplit(url)
        with cuttable((target.hostname or "127.0.0.1", target.port or 5432)) as proxy:
            store = PostgresStore(_through(url, proxy.port), pool_size=2)

            async def scenario() -> tuple[float, float]:
                await store.open()
                try:
                    assert await store.read(probe) == (1,)
                    proxy.cut()
                    began = time.monotonic()
                    waiting = asyncio.ensure_future(store.read(probe))
                    await asyncio.sleep(AWAY)
                    proxy.mend()
                    mended = time.monotonic()
                    assert await waiting == (1,)
                    return mended - began, time.monotonic() - mended
                finally:
                    await store.close()

            away, lag = asyncio.run(scenario())
    print(f"away {away:.2f} s; the waiting transaction served {lag:.2f} s after the return")
    assert away < CHECKOUT_TIMEOUT - CHECKOUT_SLICE, "the premise: it was still waiting"
    assert lag < CHECKOUT_SLICE + 0.5, f"served {lag:.2f} s after the database returned"
