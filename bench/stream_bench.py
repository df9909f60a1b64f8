"""Run streams: messages/s published, and publish-to-reader latency through the SSE route.

The engine is the real command line, ``python -m stepline.engine dev`` (SQLite on disk,
default settings), on a fresh file per round, with running runs written into the file
before it starts (no app: this is the stream API alone). Three measurements per round:

* ``lightweight``: ``--messages`` messages published to one run in batches of
  ``--batch`` (default 100) per ``POST /v1/runs/{id}/stream``, no durable ids, one
  connection, back to back: how the SDK's background flush of ``ctx.publish`` sends.
* ``durable``: ``--durable`` messages published one per request, each with its own
  durable id (as ``ctx.step.publish`` does, one step each), one connection.
* ``latency``: a reader follows ``GET /v1/runs/{id}/stream`` as Server-Sent Events
  (what a browser's ``EventSource`` does) while ``--samples`` messages are published one
  at a time, ``--gap`` seconds apart (randomised +-50%); the time from just before the
  ``POST`` is written to the reader parsing that message's event, on one clock.

The client is a minimal HTTP/1.1 keep-alive loop on asyncio streams in the bench process
(as ``ingest_bench.py``), so the engine is the bottleneck; each answer's seqs are
checked, and afterwards the reader must have seen every message once, in order.
Rounds interleave nothing (each is one engine); the report gives the best round and the
median for the rates, and latency percentiles pooled over rounds (nearest rank).

Run: ``.venv/bin/python bench/stream_bench.py [--rounds 2] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _servers

import stepline
from stepline._status import RunStatus
from stepline.engine._model import Run
from stepline.engine._store.sqlite import SqliteStore

RUNS = {"lightweight": "01BENCHSTREAMLIGHT00000001", "durable": "01BENCHSTREAMDURABLE000001",
        "latency": "01BENCHSTREAMLATENCY000001"}  # fmt: skip


async def _seed(db: str) -> None:
    store = SqliteStore(db)
    await store.open()
    now = time.time()

    def write(tx: Any) -> None:
        for run_id in RUNS.values():
            run = Run(
                run_id=run_id,
                function_id="bench-stream",
                app_id="bench",
                status=RunStatus.RUNNING,
                events=[{"name": "bench/stream", "data": {}}],
                event_ids=[],
                created_at=now,
            )
            tx.insert_run(run)

    await store.atomic(write)
    await store.close()


# -- a minimal keep-alive HTTP/1.1 client ------------------------------------------------------


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def close(self) -> None:
        self.writer.close()

    async def publish(self, run_id: str, messages: list[dict[str, Any]]) -> list[int]:
        body = json.dumps({"messages": messages}).encode()
        head = (
            f"POST /v1/runs/{run_id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        data = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"stream_bench: publish answered {status}: {data[:300]!r}")
        seqs: list[int] = json.loads(data)["data"]["seqs"]
        return seqs


async def _lightweight(port: int, total: int, batch: int) -> float:
    conn = await Connection(port).open()
    try:
        began, expected = time.perf_counter(), 1
        for first in range(0, total, batch):
            messages = [{"topic": "tokens", "data": {"i": i, "text": "lorem ipsum"}}
                        for i in range(first, min(total, first + batch))]  # fmt: skip
            seqs = await conn.publish(RUNS["lightweight"], messages)
            if seqs != list(range(expected, expected + len(messages))):
                raise RuntimeError(f"stream_bench: unexpected seqs {seqs[:3]}...")
            expected += len(messages)
        return total / (time.perf_counter() - began)
    finally:
        conn.close()


async def _durable(port: int, total: int) -> float:
    conn = await Connection(port).open()
    try:
        began = time.perf_counter()
        for i in range(total):
            message = {"topic": "progress", "data": {"done": i, "of": total}, "id": f"step-{i}"}
            if await conn.publish(RUNS["durable"], [message]) != [i + 1]:
                raise RuntimeError("stream_bench: a durable message got an unexpected seq")
        return total / (time.perf_counter() - began)
    finally:
        conn.close()


async def _follow(port: int, arrived: dict[int, float], ready: asyncio.Event) -> None:
    """An SSE reader: records when each message's event is parsed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/runs/{RUNS['latency']}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    try:
        await reader.readuntil(b"\r\n\r\n")
        ready.set()
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                now = time.perf_counter()
                message = json.loads(line[6:])
                if message["seq"] in arrived:
                    raise RuntimeError(f"stream_bench: seq {message['seq']} arrived twice")
                arrived[message["seq"]] = now
    finally:
        writer.close()


async def _latency(port: int, samples: int, gap: float) -> list[float]:
    arrived: dict[int, float] = {}
    ready = asyncio.Event()
    following = asyncio.create_task(_follow(port, arrived, ready))
    await ready.wait()
    conn = await Connection(port).open()
    sent: dict[int, float] = {}
    try:
        for i in range(samples):
            began = time.perf_counter()
            (seq,) = await conn.publish(RUNS["latency"], [{"topic": "t", "data": {"i": i}}])
            sent[seq] = began
            deadline = time.perf_counter() + 10
            while seq not in arrived:  # the reader is on this loop: let it run
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"stream_bench: seq {seq} never reached the reader")
                await asyncio.sleep(0.0005)
            await asyncio.sleep(gap * random.uniform(0.5, 1.5))
    finally:
        conn.close()
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    if sorted(arrived) != sorted(sent):
        raise RuntimeError("stream_bench: the reader did not see every message once")
    return [(arrived[s] - sent[s]) * 1000 for s in sorted(sent)]


def one_round(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    db = tmp / "stream.db"
    _servers.remove_db(db)
    asyncio.run(_seed(str(db)))
    port = _servers.free_port()
    command = _servers.cli_engine_command(port, str(db))
    with _servers.processes([("engine", command, f"http://127.0.0.1:{port}/health")], tmp):
        light = asyncio.run(_lightweight(port, args.messages, args.batch))
        durable = asyncio.run(_durable(port, args.durable))
        latencies = asyncio.run(_latency(port, args.samples, args.gap))
    return {"lightweight": light, "durable": durable, "latencies_ms": latencies}


def _rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def summarise(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    pooled = [x for r in rounds for x in r["latencies_ms"]]
    rates = {
        shape: {
            "best": max(r[shape] for r in rounds),
            "median": statistics.median(r[shape] for r in rounds),
            "rounds": [r[shape] for r in rounds],
        }
        for shape in ("lightweight", "durable")
    }
    rates["lightweight"]["batch"] = args.batch
    return {
        "benchmark": "streams: POST and SSE GET /v1/runs/{id}/stream, SQLite",
        "publish": rates,
        "latency": {
            "samples": len(pooled),
            "p50_ms": _rank(pooled, 0.5),
            "p90_ms": _rank(pooled, 0.9),
            "p99_ms": _rank(pooled, 0.99),
            "max_ms": max(pooled),
        },
        "rounds": len(rounds),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "stepline": stepline.__version__,
    }


def report(s: dict[str, Any]) -> str:
    light, durable, lat = s["publish"]["lightweight"], s["publish"]["durable"], s["latency"]

    def row(measure: str, rate: dict[str, Any]) -> str:
        figure = f"{rate['best']:,.0f} ({rate['median']:,.0f})"
        return f"{measure:<46}{figure:>22}"

    return "\n".join(
        [
            "streams: `stepline dev` (SQLite on disk), one connection each; "
            f"{s['rounds']} rounds; {s['cpus']} CPUs (python {s['python']})",
            f"{'measure':<46}{'best (median)':>22}",
            row(f"messages/s, lightweight, batches of {light['batch']}", light),
            row("messages/s, durable, one per request", durable),
            f"publish -> SSE reader, ms ({lat['samples']} samples): p50 {lat['p50_ms']:.2f}, "
            f"p90 {lat['p90_ms']:.2f}, p99 {lat['p99_ms']:.2f}, max {lat['max_ms']:.2f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds, one engine each")
    parser.add_argument("--messages", type=int, default=20_000, help="lightweight messages")
    parser.add_argument("--batch", type=int, default=100, help="lightweight messages per POST")
    parser.add_argument("--durable", type=int, default=1_000, help="durable messages")
    parser.add_argument("--samples", type=int, default=300, help="latency samples per round")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between samples")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.messages, args.durable, args.samples = 1, 500, 50, 30
    if min(args.rounds, args.messages, args.batch, args.durable, args.samples) < 1:
        parser.error("--rounds, --messages, --batch, --durable and --samples must be >= 1")
    if args.batch > 500:
        parser.error("--batch: a publish carries at most 500 messages")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as name:
        for r in range(args.rounds):
            found = one_round(args, Path(name))
            rounds.append(found)
            print(
                f"round {r + 1}/{args.rounds}: lightweight {found['lightweight']:,.0f} msg/s, "
                f"durable {found['durable']:,.0f} msg/s, latency p50 "
                f"{statistics.median(found['latencies_ms']):.2f} ms",
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(rounds, args)
    print(json.dumps(summary, indent=2) if args.json else report(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
