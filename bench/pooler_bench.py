"""Postgres itself against PgBouncer in session and in transaction mode, same machine.

Two figures per path, on a fresh database (``stepline_pooler_<random>``, dropped after)
of ``STEPLINE_BENCH_POSTGRES_URL``, else ``STEPLINE_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``, through a PgBouncer started here on free
ports (``pgbouncer`` on the ``PATH``; as root it runs with ``-u nobody``):

* **one small transaction**: a run read by id, as a read and as a write transaction, one
  after another on one store (``--count`` each, after 50 untimed); the least of
  ``--rounds`` rounds, in microseconds;
* **the burst** of ``tests/engine/test_pg_pooler.py``: two engines in this process, 200
  runs of a function of 3 steps (2 ms each), half sent to each, runs/s until every run
  completed; the best round and, in parentheses, the median.

The paths: ``direct`` (Postgres itself), ``session`` and ``transaction`` (through
PgBouncer, ``STEPLINE_DB_POOLER`` set, the direct URL for ``LISTEN`` and migrations) and
``transaction+schema`` (the engine's tables in a schema named by ``STEPLINE_DB_SCHEMA``:
``SET LOCAL search_path`` in every transaction). Rounds interleave the paths.

Run: ``.venv/bin/python bench/pooler_bench.py [--rounds 5] [--count 300] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._store.postgres import PostgresStore

SERVER = (
    os.environ.get("STEPLINE_BENCH_POSTGRES_URL")
    or os.environ.get("STEPLINE_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
RUNS, STEPS = 200, 3


@contextlib.contextmanager
def _database() -> Iterator[str]:
    name = f"stepline_pooler_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            url = urllib.parse.urlunsplit(urllib.parse.urlsplit(SERVER)._replace(path=f"/{name}"))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE SCHEMA bench")
            yield url
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _pgbouncer(directory: Path, mode: str, servers: int) -> Iterator[int]:
    server, port = urllib.parse.urlsplit(SERVER), _free_port()
    config = directory / f"{mode}.ini"
    config.write_text(
        f"[databases]\n* = host={server.hostname} port={server.port or 5432} "
        f"user={server.username or 'postgres'}\n[pgbouncer]\npool_mode = {mode}\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = any\n"
        f"default_pool_size = {servers}\nmax_client_conn = 1000\n"
    )
    directory.chmod(0o755)
    config.chmod(0o644)
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([binary, "-q", *user, str(config)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"pgbouncer ({mode}) did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _through(port: int, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


async def _transactions(store: PostgresStore, count: int) -> tuple[float, float]:
    """Microseconds a small read, and a small write, transaction took (one at a time)."""
    figures = []
    for run in (store.read, store.atomic):
        for _ in range(50):  # warm: the pool's connections opened, the code paths hot
            await run(lambda tx: tx.get_run("none"))
        began = time.perf_counter()
        for _ in range(count):
            await run(lambda tx: tx.get_run("none"))
        figures.append((time.perf_counter() - began) / count * 1e6)
    return figures[0], figures[1]


def _app(counted: list[int]) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id="pooled", is_production=False)

    def step() -> int:
        counted.append(1)
        time.sleep(0.002)
        return 1

    @client.function(id="burst", trigger=stepline.TriggerEvent(event="pool/go"))
    def burst(ctx: stepline.SyncContext) -> int:
        return sum(ctx.step.run(f"s{index}", step) for index in range(STEPS))

    return client, [burst]


def _completed(direct: str, schema: str | None) -> int:
    table = f"{schema}.runs" if schema else "runs"
    with psycopg.connect(direct, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE status = 'Completed'")
        return int(row.fetchone()[0])  # type: ignore[index]


async def _burst(url: str, direct: str, settings: dict[str, Any]) -> float:
    """Runs/s of the burst on two engines, until every run completed (each step once)."""
    schema = settings.get("db_schema")
    counted: list[int] = []
    engines = []
    for _ in range(2):
        engine = Engine(EngineSettings(database_url=url, retry_jitter=0.0, **settings))
        await engine.start()
        await engine.serve(*_app(counted))
        engines.append(engine)
    try:
        before = await asyncio.to_thread(_completed, direct, schema)
        began = time.monotonic()
        events = [{"name": "pool/go", "data": {"i": i}} for i in range(RUNS)]
        await asyncio.gather(*(e.send(events[i::2]) for i, e in enumerate(engines)))
        while await asyncio.to_thread(_completed, direct, schema) < before + RUNS:
            await asyncio.sleep(0.02)
        rate = RUNS / (time.monotonic() - began)
        if len(counted) != RUNS * STEPS:
            raise AssertionError(f"{len(counted)} step executions, not {RUNS * STEPS}")
        return rate
    finally:
        for engine in engines:
            await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="pooler-bench-"))
    paths: dict[str, tuple[str, dict[str, Any]]] = {}
    results: dict[str, dict[str, list[float]]] = {}
    with contextlib.ExitStack() as stack:
        direct = stack.enter_context(_database())
        session = stack.enter_context(_pgbouncer(directory, "session", 40))
        transaction = stack.enter_context(_pgbouncer(directory, "transaction", 8))
        pooled = {"database_direct_url": direct}
        paths["direct"] = (direct, {})
        paths["session"] = (_through(session, direct), {"db_pooler": "session", **pooled})
        tx_url = _through(transaction, direct)
        paths["transaction"] = (tx_url, {"db_pooler": "transaction", **pooled})
        paths["transaction+schema"] = (
            tx_url,
            {"db_pooler": "transaction", "db_schema": "bench", **pooled},
        )
        for round_number in range(args.rounds):
            for name, (url, settings) in paths.items():
                figures = results.setdefault(name, {"read_us": [], "write_us": [], "runs_s": []})
                store = PostgresStore(
                    url,
                    direct_url=settings.get("database_direct_url"),
                    pooler=settings.get("db_pooler", "none"),
                    db_schema=settings.get("db_schema"),
                )

                async def measure(store: PostgresStore = store) -> tuple[float, float]:
                    await store.open()
                    try:
                        return await _transactions(store, args.count)
                    finally:
                        await store.close()

                read, write = asyncio.run(measure())
                figures["read_us"].append(read)
                figures["write_us"].append(write)
                figures["runs_s"].append(asyncio.run(_burst(url, direct, settings)))
                print(f"round {round_number + 1}: {name} done", file=sys.stderr)
    if args.json:
        print(json.dumps({"runs": RUNS, "steps": STEPS, "results": results}))
        return
    print(f"{'path':20} {'read':>8} {'write':>8}   runs/s best (median)")
    for name, figures in results.items():
        runs = figures["runs_s"]
        print(
            f"{name:20} {min(figures['read_us']):6.0f}us {min(figures['write_us']):6.0f}us"
            f"   {max(runs):.0f} ({statistics.median(runs):.0f})"
        )


if __name__ == "__main__":
    main()
