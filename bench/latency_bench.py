"""Event-to-first-step latency: ``POST /e/{key}`` to the first step starting, idle and loaded.

The engine is the real command line, ``python -m stepline.engine dev`` (SQLite on disk,
default settings; with ``--postgres`` on a fresh schema of the local Postgres, see
``pg_steps_bench.py`` for the URL), in its own process. The app is served by uvicorn
(``stepline.asgi.serve``) on a thread of the bench process itself, so the step and the
sender read the same clock: the sender takes ``time.perf_counter_ns()`` just before it
sends the event (``httpx``, keep-alive), and the function's first step takes it again
as the step starts. One event at a time, with a random gap (``--gap``, +-50%) between
samples so they do not fall into step with the engine's own timers.

Two phases, interleaved over ``--rounds``:

* ``idle``: nothing else runs (the engine is first left to finish any backlog).
* ``load``: a second process (this file, ``--load-proc``) serves another app with the
  10-step function of ``steps_bench.py`` and sends it ``--load-rate`` events per second
  (open loop), so the engine runs ``10 x rate`` steps/s besides the samples.

It prints p50, p90, p99 and max over all samples of a phase (pooled over rounds;
nearest-rank percentiles), the engine's CPU use, the acknowledgement time of the
``POST`` itself, the load actually completed, and a loopback floor: the round trip of
``GET /health`` on the same connection.

Run: ``.venv/bin/python bench/latency_bench.py [--samples 150] [--rounds 2] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _servers
import httpx

import stepline
import stepline.asgi

EVENT = "bench/latency"
LOAD_APP = "bench-load"
GOAL_P50_MS = 5.0
GOAL_P99_MS = 25.0
PHASES = ("idle", "load")


# -- the app whose first step is timed ------------------------------------------------------


class Marks:
    """Sample number -> the ``perf_counter_ns`` at which its first step started."""

    def __init__(self) -> None:
        self.times: dict[int, int] = {}
        self._events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def expect(self, seq: int) -> threading.Event:
        with self._lock:
            event = self._events[seq] = threading.Event()
        return event

    def mark(self, seq: int, now: int) -> None:
        with self._lock:
            if seq in self.times:  # a retried or replayed step: keep the first start
                return
            self.times[seq] = now
            event = self._events.get(seq)
        if event is not None:
            event.set()


def probe_app(engine_url: str, marks: Marks) -> Any:
    client = stepline.Client(
        "bench-latency",
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        environ={},
    )

    @client.function(id="first", trigger=stepline.TriggerEvent(event=EVENT), retries=0)
    async def first(ctx: stepline.Context) -> int:
        seq = int(ctx.event.data["seq"])

        def started() -> dict[str, int]:
            marks.mark(seq, time.perf_counter_ns())
            return {"seq": seq}

        await ctx.step.run("first", started)
        return seq

    return stepline.asgi.serve(client, [first])


# -- the load process (this file, --load-proc) ---------------------------------------------------


def load_proc(engine_url: str, rate: float) -> None:
    """Serve the 10-step app and send it ``rate`` events/s until killed."""
    client = stepline.Client(
        LOAD_APP,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        environ={},
    )
    app = stepline.asgi.serve(client, [_servers.ten_steps(client)])
    with _servers.ServerThread(app, "load-app") as server, httpx.Client() as http:
        _servers.register(server.url + _servers.SERVE_PATH)
        print("ready", flush=True)
        interval = 1.0 / rate
        due = time.perf_counter()
        k = 0
        while True:
            k += 1
            body = json.dumps({"name": _servers.EVENT, "data": {"k": k}})
            sent = http.post(
                f"{engine_url}/e/bench",
                content=body,
                headers={"content-type": "application/json"},
                timeout=30,
            )
            if sent.status_code != 200:
                sys.exit(f"load: POST /e failed: {sent.status_code} {sent.text}")
            due += interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            elif pause < -1.0:  # more than a second behind: do not burst to catch up
                due = time.perf_counter()


@contextlib.contextmanager
def load(engine_url: str, rate: float, logdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (logdir / "load.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--load-proc", engine_url, str(rate)],
        stdout=subprocess.PIPE,
        stderr=log,
        env=_servers.child_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            proc.wait(10)
            sys.exit(
                f"latency_bench: the load process failed:\n{(logdir / 'load.log').read_text()}"
            )
        time.sleep(1.0)  # let the load reach a steady state
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- sampling ----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    acks_ms: list[float] = field(default_factory=list)
    engine_cores: list[float] = field(default_factory=list)
    load_offered: list[float] = field(default_factory=list)
    load_completed: list[float] = field(default_factory=list)
    load_backlog: list[int] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Sampler:
    def __init__(self, engine_url: str, marks: Marks, gap: float) -> None:
        self.engine_url = engine_url
        self.marks = marks
        self.gap = gap
        self.http = httpx.Client(timeout=30)
        self.seq = 0

    def one(self) -> tuple[float, float]:
        """(event-to-first-step ms, POST acknowledgement ms) of one new event."""
        self.seq += 1
        seq = self.seq
        arrived = self.marks.expect(seq)
        body = json.dumps({"name": EVENT, "data": {"seq": seq}}).encode()
        headers = {"content-type": "application/json"}
        sent_at = time.perf_counter_ns()
        answer = self.http.post(f"{self.engine_url}/e/bench", content=body, headers=headers)
        acked_at = time.perf_counter_ns()
        if answer.status_code != 200:
            sys.exit(f"latency_bench: POST /e failed: {answer.status_code} {answer.text}")
        if not arrived.wait(30):
            sys.exit(f"latency_bench: the first step of event {seq} did not start within 30 s")
        started_at = self.marks.times[seq]
        return (started_at - sent_at) / 1e6, (acked_at - sent_at) / 1e6

    def many(self, count: int) -> tuple[list[float], list[float]]:
        latencies, acks = [], []
        for _ in range(count):
            latency, ack = self.one()
            latencies.append(latency)
            acks.append(ack)
            time.sleep(random.uniform(0.5, 1.5) * self.gap)
        return latencies, acks

    def floor_ms(self, count: int = 200) -> float:
        """p50 of ``GET /health`` round trips on the same keep-alive connection."""
        times = []
        for _ in range(count):
            began = time.perf_counter_ns()
            self.http.get(f"{self.engine_url}/health")
            times.append((time.perf_counter_ns() - began) / 1e6)
        return statistics.median(times)


def unfinished(db: str) -> int:
    return int(_servers.db_row(db, "SELECT COUNT(*) FROM runs WHERE ended_at IS NULL")[0])


def load_runs(db: str) -> tuple[int, int]:
    """(created, ended) runs of the load app's function so far."""
    row = _servers.db_row(
        db,
        "SELECT COUNT(*), COUNT(ended_at) FROM runs WHERE function_id LIKE ?",
        (f"{LOAD_APP}-%",),
    )
    return int(row[0]), int(row[1])


def wait_quiet(db: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while unfinished(db):
        if time.monotonic() > deadline:
            sys.exit(f"latency_bench: runs still unfinished after {timeout:.0f} s")
        time.sleep(0.05)


def run(
    samples: int, rounds: int, warmup: int, gap: float, rate: float, postgres: bool = False
) -> dict[str, Any]:
    phases = {name: Phase(name) for name in PHASES}
    marks = Marks()
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as name:
        tmp = Path(name)
        port = _servers.free_port()
        engine_url = f"http://127.0.0.1:{port}"
        with (
            _servers.database(postgres, tmp, "latency") as db,
            _servers.processes(
                [("engine", _servers.cli_engine_command(port, db), f"{engine_url}/health")], tmp
            ) as procs,
            _servers.ServerThread(probe_app(engine_url, marks), "probe-app") as app,
        ):
            engine_pid = procs[0].pid
            _servers.register(app.url + _servers.SERVE_PATH)
            sampler = Sampler(engine_url, marks, gap)
            sampler.many(warmup)
            floor = sampler.floor_ms()
            for r in range(rounds):
                order = PHASES if r % 2 == 0 else tuple(reversed(PHASES))
                for phase_name in order:
                    phase = phases[phase_name]
                    with contextlib.ExitStack() as stack:
                        loader = None
                        if phase_name == "load":
                            loader = stack.enter_context(load(engine_url, rate, tmp))
                            created0, ended0 = load_runs(db)
                        else:
                            wait_quiet(db)
                        cpu0, began = _servers.proc_cpu(engine_pid), time.perf_counter()
                        latencies, acks = sampler.many(samples)
                        seconds = time.perf_counter() - began
                        phase.engine_cores.append((_servers.proc_cpu(engine_pid) - cpu0) / seconds)
                        if loader is not None and loader.poll() is not None:
                            sys.exit(
                                "latency_bench: the load process died:\n"
                                + (tmp / "load.log").read_text()
                            )
                        if phase_name == "load":
                            created1, ended1 = load_runs(db)
                            phase.load_offered.append((created1 - created0) / seconds)
                            phase.load_completed.append((ended1 - ended0) / seconds)
                            phase.load_backlog.append(created1 - ended1)
                    phase.latencies_ms += latencies
                    phase.acks_ms += acks
                    print(
                        f"round {r + 1}/{rounds}: {phase_name}: "
                        f"p50 {percentile(latencies, 50):.2f} ms, "
                        f"p99 {percentile(latencies, 99):.2f} ms ({len(latencies)} samples)",
                        file=sys.stderr,
                        flush=True,
                    )
            sampler.http.close()
    return {"floor_ms": floor, "phases": phases}


def summary(phase: Phase) -> dict[str, Any]:
    lat = phase.latencies_ms
    out: dict[str, Any] = {
        "samples": len(lat),
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
        "mean_ms": statistics.fmean(lat),
        "ack_p50_ms": percentile(phase.acks_ms, 50),
        "engine_cores": statistics.fmean(phase.engine_cores),
        "goal_p50_met": percentile(lat, 50) < GOAL_P50_MS,
        "goal_p99_met": percentile(lat, 99) < GOAL_P99_MS,
    }
    if phase.load_offered:
        out["load_runs_per_s_started"] = statistics.fmean(phase.load_offered)
        out["load_runs_per_s_completed"] = statistics.fmean(phase.load_completed)
        out["load_backlog_at_end"] = max(phase.load_backlog)
    return out


def report(result: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "latency: POST /e/{key} to the first step starting; `stepline dev` "
        f"({'Postgres' if meta['database'] == 'postgres' else 'SQLite on disk'}) "
        f"+ app over loopback HTTP, {meta['cpus']} CPUs "
        f"(python {meta['python']}, stepline {meta['stepline']})",
        f"{meta['samples']} samples per phase per round x {meta['rounds']} rounds (pooled), "
        f"gap ~{meta['gap'] * 1000:g} ms; load: {meta['load_rate']:g} runs/s of the "
        "10-step function",
        f"{'phase':<7}{'samples':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'POST ack p50':>14}{'engine cores':>14}   load completed",
    ]
    for name, s in result["summaries"].items():
        extra = ""
        if "load_runs_per_s_completed" in s:
            extra = (
                f"{s['load_runs_per_s_completed']:.1f} runs/s "
                f"({s['load_runs_per_s_completed'] * _servers.STEPS:.0f} steps/s), "
                f"backlog {s['load_backlog_at_end']}"
            )
        lines.append(
            f"{name:<7}{s['samples']:>8}{s['p50_ms']:>9.2f}{s['p90_ms']:>9.2f}"
            f"{s['p99_ms']:>9.2f}{s['max_ms']:>9.2f}{s['ack_p50_ms']:>11.2f} ms"
            f"{s['engine_cores']:>14.2f}   {extra}"
        )
    lines.append(
        f"floor: a GET /health round trip to the engine on the same connection, p50 "
        f"{result['floor_ms']:.2f} ms"
    )
    for name, s in result["summaries"].items():
        lines.append(
            f"goal {name}: p50 < {GOAL_P50_MS:g} ms {'met' if s['goal_p50_met'] else 'NOT met'}, "
            f"p99 < {GOAL_P99_MS:g} ms {'met' if s['goal_p99_met'] else 'NOT met'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--load-proc"]:
        load_proc(args_in[1], float(args_in[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=150, help="samples per phase per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=20, help="untimed samples first")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between samples")
    parser.add_argument(
        "--load-rate", type=float, default=25.0, help="runs/s of background load (10 steps each)"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the engine on Postgres (a fresh schema of STEPLINE_BENCH_POSTGRES_URL, else "
        "STEPLINE_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument("--quick", action="store_true", help="20 samples, 1 round (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(args_in)
    if args.quick:
        args.samples, args.rounds, args.warmup = 20, 1, 5
    if args.samples < 1 or args.rounds < 1 or args.load_rate <= 0 or args.gap < 0:
        parser.error("--samples and --rounds must be >= 1, --load-rate > 0, --gap >= 0")
    result = run(args.samples, args.rounds, args.warmup, args.gap, args.load_rate, args.postgres)
    result["summaries"] = {name: summary(p) for name, p in result.pop("phases").items()}
    meta = {
        "benchmark": "latency: POST /e/{key} to the first step starting",
        "database": "postgres" if args.postgres else "sqlite",
        "samples": args.samples,
        "rounds": args.rounds,
        "gap": args.gap,
        "load_rate": args.load_rate,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "stepline": stepline.__version__,
        "goals": {"p50_ms": GOAL_P50_MS, "p99_ms": GOAL_P99_MS},
    }
    print(json.dumps({**meta, **result}, indent=2) if args.json else report(result, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
