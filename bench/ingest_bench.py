"""Event ingest: events/s that ``POST /e/{key}`` accepts (200 OK: committed), single and batched.

The engine is the real command line, ``python -m stepline.engine dev`` (SQLite on disk,
default settings; with ``--postgres`` a fresh schema of the local Postgres, see
``pg_steps_bench.py`` for the URL), on a fresh file (schema) per measurement, with no
app: the events trigger no function, so this is the event API alone (parse, validate,
commit, answer).

Two shapes of request:

* ``single``: one event per request, from ``--clients`` concurrent keep-alive
  connections (default 8).
* ``batch``: ``--batch`` events (default 100) per request, as a JSON array, from
  ``--batch-clients`` connections (default 2).

The client is a minimal HTTP/1.1 keep-alive loop on asyncio streams in the bench
process (a request written, the answer read by its ``content-length``), so the engine,
not the client, is the bottleneck; the report shows the CPU each used. Each
measurement sends for ``--warmup`` seconds, then counts answers for ``--seconds``.
Anything but 200 stops the benchmark. Afterwards the engine is killed with SIGKILL, no
shutdown, and the file must hold at least every event it acknowledged: an answer is
only sent once its events are committed (WAL, ``synchronous=NORMAL``: durable across a
process crash).

Rounds interleave the shapes; the report shows the best round and the median.

Run: ``.venv/bin/python bench/ingest_bench.py [--seconds 2] [--rounds 3] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _servers

import stepline

EVENT = {"name": "bench/ingest", "data": {"user": "u-123", "plan": "pro", "amount": 42}}
SHAPES = ("single", "batch")


# -- a minimal keep-alive HTTP/1.1 client ------------------------------------------------------


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise RuntimeError("ingest_bench: chunked answers are not supported")
    if length is None:
        raise RuntimeError("ingest_bench: an answer without content-length")
    body = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"ingest_bench: status {status}: {body[:300]!r}")
    return status


async def _connection(
    port: int, request: bytes, warm_until: float, stop_at: float, counts: list[int]
) -> None:
    """Send ``request`` back to back; counts[0]: all answers, counts[1]: timed answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            writer.write(request)
            await _read_answer(reader)
            now = time.perf_counter()
            counts[0] += 1
            if now > stop_at:
                return
            if now >= warm_until:
                counts[1] += 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /e/bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _blast(port: int, body: bytes, clients: int, warmup: float, seconds: float) -> list[int]:
    counts = [0, 0]
    began = time.perf_counter()
    warm_until, stop_at = began + warmup, began + warmup + seconds
    request = _request(port, body)
    await asyncio.gather(
        *(_connection(port, request, warm_until, stop_at, counts) for _ in range(clients))
    )
    return counts


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Sample:
    events_per_s: float
    requests_per_s: float
    engine_cores: float
    client_cores: float
    acknowledged: int
    stored: int


@dataclass
class Result:
    shape: str
    per_request: int
    clients: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [s.events_per_s for s in self.samples]

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def measure(
    per_request: int, clients: int, warmup: float, seconds: float, tmp: Path, postgres: bool
) -> Sample:
    port = _servers.free_port()
    url = f"http://127.0.0.1:{port}"
    body = json.dumps(EVENT if per_request == 1 else [EVENT] * per_request).encode()
    with _servers.database(postgres, tmp, "ingest") as db:
        command = _servers.cli_engine_command(port, db)
        with _servers.processes([("engine", command, f"{url}/health")], tmp) as procs:
            engine = procs[0]
            cpu0 = _servers.proc_cpu(engine.pid)
            mine0 = time.process_time()
            total, timed = asyncio.run(_blast(port, body, clients, warmup, seconds))
            engine_cores = (_servers.proc_cpu(engine.pid) - cpu0) / (warmup + seconds)
            client_cores = (time.process_time() - mine0) / (warmup + seconds)
            engine.send_signal(signal.SIGKILL)  # a crash: whatever was acknowledged is there
            engine.wait()
        acknowledged = total * per_request
        stored = int(_servers.db_row(db, "SELECT COUNT(*) FROM events")[0])
    if stored < acknowledged:
        sys.exit(
            f"ingest_bench: {acknowledged} events acknowledged but only {stored} in the file "
            "after the engine was killed"
        )
    return Sample(
        timed * per_request / seconds,
        timed / seconds,
        engine_cores,
        client_cores,
        acknowledged,
        stored,
    )


def run(
    rounds: int,
    warmup: float,
    seconds: float,
    clients: int,
    batch: int,
    batch_clients: int,
    postgres: bool = False,
) -> list[Result]:
    results = [Result("single", 1, clients), Result("batch", batch, batch_clients)]
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as name:
        for r in range(rounds):
            order = results if r % 2 == 0 else list(reversed(results))
            parts = []
            for res in order:
                sample = measure(
                    res.per_request, res.clients, warmup, seconds, Path(name), postgres
                )
                res.samples.append(sample)
                parts.append(f"{res.shape} {sample.events_per_s:,.0f} events/s")
            print(f"round {r + 1}/{rounds}: " + "; ".join(parts), file=sys.stderr, flush=True)
    return results


def _typical(res: Result) -> Sample:
    ordered = sorted(res.samples, key=lambda s: s.events_per_s)
    return ordered[(len(ordered) - 1) // 2]


def report(results: list[Result], meta: dict[str, Any]) -> str:
    lines = [
        "ingest: POST /e/{key} to `stepline dev` "
        f"({'Postgres' if meta['database'] == 'postgres' else 'SQLite on disk'}, no app), "
        "200 = committed; "
        f"{meta['cpus']} CPUs (python {meta['python']}, stepline {meta['stepline']})",
        f"{meta['rounds']} interleaved rounds x {meta['seconds']:g} s (after "
        f"{meta['warmup']:g} s warm-up); events/s as best (median); CPU from the median round",
        f"{'shape':<26}{'events/s':>20}{'requests/s':>12}{'engine cores':>14}{'client cores':>14}",
    ]
    for res in results:
        t = _typical(res)
        shape = (
            f"single, {res.clients} clients"
            if res.per_request == 1
            else f"batch of {res.per_request}, {res.clients} cl."
        )
        lines.append(
            f"{shape:<26}{f'{res.best:,.0f} ({res.median:,.0f})':>20}"
            f"{t.requests_per_s:>12,.0f}{t.engine_cores:>14.2f}{t.client_cores:>14.2f}"
        )
    stored = sum(s.stored for r in results for s in r.samples)
    acked = sum(s.acknowledged for r in results for s in r.samples)
    lines.append(
        f"durable: after SIGKILL of the engine, the databases held {stored:,} events for "
        f"{acked:,} acknowledged"
    )
    return "\n".join(lines)


def to_json(results: list[Result], meta: dict[str, Any]) -> str:
    out: dict[str, Any] = {**meta, "shapes": {}}
    for res in results:
        t = _typical(res)
        out["shapes"][res.shape] = {
            "events_per_request": res.per_request,
            "clients": res.clients,
            "best": res.best,
            "median": res.median,
            "rounds": res.rates,
            "requests_per_s": t.requests_per_s,
            "engine_cores": t.engine_cores,
            "client_cores": t.client_cores,
            "acknowledged": [s.acknowledged for s in res.samples],
            "stored": [s.stored for s in res.samples],
        }
    return json.dumps(out, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per shape")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds first")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--clients", type=int, default=8, help="connections, single events")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request")
    parser.add_argument("--batch-clients", type=int, default=2, help="connections, batches")
    parser.add_argument(
        "--postgres", action="store_true", help="the engine on a fresh Postgres schema"
    )
    parser.add_argument("--quick", action="store_true", help="0.3 s, 1 round (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.rounds = 0.3, 0.1, 1
    if (
        args.seconds <= 0
        or args.rounds < 1
        or min(args.clients, args.batch_clients, args.batch) < 1
    ):
        parser.error("--seconds must be > 0; --rounds, --clients, --batch* >= 1")
    results = run(
        args.rounds,
        args.warmup,
        args.seconds,
        args.clients,
        args.batch,
        args.batch_clients,
        args.postgres,
    )
    meta = {
        "benchmark": "ingest: POST /e/{key}, "
        + ("Postgres" if args.postgres else "SQLite")
        + ", no app",
        "database": "postgres" if args.postgres else "sqlite",
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "stepline": stepline.__version__,
    }
    print(to_json(results, meta) if args.json else report(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
