"""Step throughput on Postgres: stepline (embedded and HTTP) against DBOS on the same server.

The workload of ``steps_bench.py`` (``--runs`` runs of ten trivial steps, sequential and
8 in flight; stepline step-by-step and checkpointed, embedded and over HTTP), on the
local Postgres instead of SQLite files:

* stepline: a fresh schema for every measurement (``options=-csearch_path=...`` in the
  URL, dropped afterwards) on ``STEPLINE_BENCH_POSTGRES_URL``, else
  ``STEPLINE_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``;
  the engine's defaults (a pool of 10 connections). ``embedded`` runs the engine on a
  thread of the bench process, ``http`` as its own process (``bench/_servers.py``) with
  the app in another.
* DBOS (``dbos_peer.py --postgres`` in the peers' venv, a fresh process per measurement):
  its system database is a database of its own on the same server
  (``dbos_bench_<random>``), created before and dropped after every measurement; DBOS's
  defaults otherwise. 8 in flight: 8 threads calling the workflow.

Both sides commit every step before the next one starts in step-by-step mode (DBOS
always); checkpointed stepline commits several steps per transaction. Postgres commits
with its server settings (``synchronous_commit``, ``fsync``) for both sides alike.

Besides steps/s it measures, in the timed window of the median round, **what a step
costs**: CPU seconds per 1,000 steps of each process (``bench``: the bench process, for
``embedded`` the engine, app and drivers together; ``engine`` and ``app`` for ``http``;
``dbos``: the peer's process) and of the Postgres backends serving it (``postgres``,
from ``/proc`` of the pids ``pg_stat_activity`` lists: the server must be local); and,
counted at psycopg in the process that talks to Postgres (``_pgcount``; stepline
``embedded`` and DBOS), statements, round trips, commits and rows written per step.

Run: ``.venv/bin/python bench/pg_steps_bench.py [--runs 200] [--rounds 3] [--quick] [--json]``
(``--no-dbos``, ``--transport embedded|http``, ``--dbos-python``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _pgcount
import _servers
import psycopg
import steps_bench

import stepline
from stepline.embedded import EmbeddedEngine

BENCH = Path(__file__).resolve().parent
STEPS = _servers.STEPS
INFLIGHT = steps_bench.INFLIGHT
MODES = steps_bench.MODES
#: stepline steps/s over DBOS's on Postgres: checkpointed at either
#: concurrency, step-by-step with 8 in flight
GOALS = {"checkpoint": 3.0, "step": 1.5, "perstep": 1.5}
POSTGRES_URL = _servers.POSTGRES_URL


@dataclass(frozen=True)
class Cell:
    system: str  # "stepline" | "dbos"
    transport: str  # stepline: "embedded" | "http"; dbos: "postgres"
    mode: str  # a MODES key; dbos: "-"
    inflight: int

    @property
    def key(self) -> str:
        return f"{self.system}/{self.transport}/{self.mode}/{self.inflight}"

    @property
    def label(self) -> str:
        if self.system == "dbos":
            return "DBOS"
        return f"stepline {self.transport} {MODES[self.mode]}"


@dataclass
class Sample:
    seconds: float
    cpu: dict[str, float]  # CPU seconds by process, "postgres" = its backends
    counts: dict[str, int] | None  # _pgcount's, where the process could be counted


@dataclass
class Result:
    cell: Cell
    samples: list[Sample] = field(default_factory=list)

    def rates(self, runs: int) -> list[float]:
        return [runs * STEPS / s.seconds for s in self.samples]

    def best(self, runs: int) -> float:
        return max(self.rates(runs))

    def median(self, runs: int) -> float:
        return statistics.median(self.rates(runs))

    def typical(self) -> Sample:
        ordered = sorted(self.samples, key=lambda s: s.seconds)
        return ordered[(len(ordered) - 1) // 2]


# -- Postgres -------------------------------------------------------------------------------


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards, whatever happens)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield with_database(POSTGRES_URL, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def check_schema(url: str, total: int) -> None:
    """Every run Completed and every step recorded in the schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'Completed'), "
            "(SELECT COUNT(*) FROM steps WHERE op = 'StepRun' AND status = 'Completed')"
        ).fetchone()
    runs, steps = row if row else (0, 0)
    if runs != total or steps != total * STEPS:
        sys.exit(
            f"pg_steps_bench: {runs} runs Completed and {steps} steps recorded, "
            f"want {total} and {total * STEPS}"
        )


def server_version() -> str:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        rows = [conn.execute(f"SHOW {x}").fetchone() for x in ("server_version", "fsync")]
    version, sync = (str(r[0]) if r else "?" for r in rows)
    return f"{version.split()[0]}, fsync={sync}"


# -- stepline -----------------------------------------------------------------------------


def measure_stepline(cell: Cell, runs: int, warmup: int, tmp: Path) -> Sample:
    name = f"stepline_bench_{uuid.uuid4().hex[:8]}"
    with (
        _servers.fresh_schema("pgsteps", f"&application_name={name}") as url,
        psycopg.connect(POSTGRES_URL, autocommit=True) as admin,
    ):
        backends = _pgcount.BackendCpu(admin, application_name=name)
        if cell.transport == "embedded":
            sample = _embedded(cell, url, runs, warmup, backends)
        else:
            sample = _http(cell, url, runs, warmup, backends, tmp)
        check_schema(url, warmup + runs)
    return sample


def _embedded(
    cell: Cell, url: str, runs: int, warmup: int, backends: _pgcount.BackendCpu
) -> Sample:
    checkpointing = cell.mode != "step"
    option = _servers.client_checkpointing(cell.mode)
    client = stepline.Client(_servers.APP_ID, is_production=False, checkpointing=option, environ={})
    fn = _servers.ten_steps(client)
    engine = EmbeddedEngine(client, [fn], database=url, checkpointing=checkpointing)
    engine.start()
    try:

        def start(k: int) -> object:
            return client.execute_sync(fn, {"k": k}, timeout=steps_bench.RESULT_TIMEOUT)

        steps_bench.drive(start, 0, warmup, 1)
        backends.start()
        counted = _pgcount.snapshot()
        seconds, cpu = steps_bench.drive(start, warmup, runs, cell.inflight)
        counts = _pgcount.delta(counted, _pgcount.snapshot())
        cpu["postgres"] = backends.stop()
    finally:
        engine.stop()
        client.close()
    return Sample(seconds, cpu, counts)


def _http(
    cell: Cell, url: str, runs: int, warmup: int, backends: _pgcount.BackendCpu, tmp: Path
) -> Sample:
    checkpointing = cell.mode != "step"
    engine_port, app_port = _servers.free_port(), _servers.free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    app_url = f"http://127.0.0.1:{app_port}{_servers.SERVE_PATH}"
    commands = [
        (
            "engine",
            _servers.engine_command(engine_port, url, checkpointing=checkpointing),
            f"{engine_url}/health",
        ),
        ("app", _servers.app_command(app_port, engine_url, mode=cell.mode), app_url),
    ]
    with _servers.processes(commands, tmp) as (engine, app):
        _servers.register(app_url)
        client = _servers.driver_client(engine_url)
        try:

            def start(k: int) -> object:
                return client.execute_sync("ten", {"k": k}, timeout=steps_bench.RESULT_TIMEOUT)

            steps_bench.drive(start, 0, warmup, 1)
            backends.start()
            pids = {"engine": engine.pid, "app": app.pid}
            seconds, cpu = steps_bench.drive(start, warmup, runs, cell.inflight, pids)
            cpu["postgres"] = backends.stop()
        finally:
            client.close()
    return Sample(seconds, cpu, None)


# -- DBOS ----------------------------------------------------------------------------------


def measure_dbos(python: str, inflight: int, runs: int, warmup: int) -> Sample:
    """One DBOS measurement: a fresh process and a fresh system database."""
    with fresh_database("dbos_bench") as url:
        argv = [
            python, str(BENCH / "dbos_peer.py"), "--postgres", url, "--runs", str(runs),
            "--warmup", str(warmup), "--inflight", str(inflight),
            "--how", "seq" if inflight == 1 else "threads",
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, check=False, env=steps_bench._peer_env()
        )
    if done.returncode != 0:
        sys.exit(f"pg_steps_bench: dbos_peer.py failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = {"dbos": float(result["cpu_seconds"]), "postgres": float(result["pg_cpu_seconds"])}
    return Sample(float(result["seconds"]), cpu, result["counts"])


# -- the rounds ------------------------------------------------------------------------------


def cells(transports: list[str], dbos: bool) -> list[Cell]:
    out = []
    for inflight in (1, INFLIGHT):
        for transport in transports:
            for mode in MODES:
                out.append(Cell("stepline", transport, mode, inflight))
        if dbos:
            out.append(Cell("dbos", "postgres", "-", inflight))
    return out


def run(
    runs: int, rounds: int, warmup: int, transports: list[str], dbos_python: str | None
) -> list[Result]:
    chosen = cells(transports, dbos_python is not None)
    results = {c.key: Result(c) for c in chosen}
    with tempfile.TemporaryDirectory(prefix="pg-steps-bench-") as name:
        for r in range(rounds):
            shift = r % len(chosen)
            for cell in chosen[shift:] + chosen[:shift]:  # rotate who goes first
                if cell.system == "dbos":
                    assert dbos_python is not None
                    sample = measure_dbos(dbos_python, cell.inflight, runs, warmup)
                else:
                    sample = measure_stepline(cell, runs, warmup, Path(name))
                results[cell.key].samples.append(sample)
                inflight = "sequential" if cell.inflight == 1 else f"{cell.inflight} in flight"
                print(
                    f"round {r + 1}/{rounds}: {cell.label}, {inflight}: "
                    f"{runs * STEPS / sample.seconds:,.0f} steps/s",
                    file=sys.stderr,
                    flush=True,
                )
    return list(results.values())


# -- reporting -------------------------------------------------------------------------------


def ratios(results: list[Result], runs: int) -> list[dict[str, Any]]:
    by = {r.cell.key: r for r in results}
    out = []
    for r in results:
        c = r.cell
        peer = by.get(f"dbos/postgres/-/{c.inflight}")
        if c.system != "stepline" or peer is None:
            continue
        goal = GOALS[c.mode] if c.mode == "checkpoint" or c.inflight > 1 else None
        if c.mode == "perstep" and c.transport != "embedded":
            goal = None  # the goal is set for the embedded engine (DBOS's shape)
        best = r.best(runs) / peer.best(runs)
        out.append(
            {
                "stepline": c.key,
                "dbos": peer.cell.key,
                "transport": c.transport,
                "mode": c.mode,
                "inflight": c.inflight,
                "ratio_best": best,
                "ratio_median": r.median(runs) / peer.median(runs),
                "goal": goal,
                "met": None if goal is None else best >= goal,
            }
        )
    return out


def cost(r: Result, runs: int) -> dict[str, Any]:
    """Per step in the median round: CPU ms (= CPU s per 1,000 steps) and driver counts."""
    t = r.typical()
    steps = runs * STEPS
    out: dict[str, Any] = {"cpu_ms_per_step": {who: s * 1000 / steps for who, s in t.cpu.items()}}
    if t.counts is not None:
        out["per_step"] = {name: n / steps for name, n in t.counts.items()}
    return out


def report(results: list[Result], meta: dict[str, Any]) -> str:
    runs = meta["runs"]
    lines = [
        f"pg-steps: {runs} runs x {STEPS} trivial steps on Postgres {meta['postgres']} "
        f"(stepline: a fresh schema, DBOS: a fresh database, each measurement); "
        f"{meta['cpus']} CPUs, load average {meta['loadavg']} at start "
        f"(python {meta['versions']['python']}, stepline {meta['versions']['stepline']}"
        + (f", dbos {meta['versions']['dbos']}" if meta["versions"].get("dbos") else "")
        + ")",
        f"{meta['rounds']} interleaved rounds after {meta['warmup']} warm-up runs; steps/s "
        "as best (median)",
        f"{'':<38}{'sequential steps/s':>22}{f'{INFLIGHT} in flight steps/s':>24}",
    ]
    pairs: dict[str, list[Result | None]] = {}
    for r in results:
        pairs.setdefault(r.cell.label, [None, None])[0 if r.cell.inflight == 1 else 1] = r
    for label, pair in pairs.items():
        cols = [f"{f'{x.best(runs):,.0f} ({x.median(runs):,.0f})' if x else '-':>22}" for x in pair]
        lines.append(f"{label:<38}{cols[0]}{cols[1]:>24}")
    lines.append(
        "cost per step, median round: CPU ms (= CPU s per 1,000 steps) by process, "
        "postgres = its backends;"
    )
    lines.append(
        "  counted at psycopg: statements / round trips / commits / rows written "
        "(stepline embedded and DBOS)"
    )
    for r in results:
        c = cost(r, runs)
        cpu = c["cpu_ms_per_step"]
        where = "seq" if r.cell.inflight == 1 else f"{r.cell.inflight}x"
        text = f"{sum(cpu.values()):.2f} = " + " + ".join(f"{w} {ms:.2f}" for w, ms in cpu.items())
        if "per_step" in c:
            p = c["per_step"]
            text += (
                f"; {p['statements']:.2f} stmts, {p['round_trips']:.2f} round trips, "
                f"{p['commits']:.2f} commits, {p['rows']:.2f} rows"
            )
        lines.append(f"  {r.cell.label + ', ' + where:<44}{text}")
    table = ratios(results, runs)
    if table:
        lines.append(f"{'ratio stepline/DBOS steps/s':<44}{'best (median)':>16}   goal")
        for x in table:
            inflight = "sequential" if x["inflight"] == 1 else f"{x['inflight']} in flight"
            goal = ""
            if x["goal"]:
                goal = f">= {x['goal']:g}x {'met' if x['met'] else 'NOT met'}"
            text = f"{x['ratio_best']:.2f}x ({x['ratio_median']:.2f}x)"
            row = f"{x['transport']} {MODES[x['mode']]}, {inflight}"
            lines.append(f"  {row:<42}{text:>16}   {goal}".rstrip())
    return "\n".join(lines)


def to_json(results: list[Result], meta: dict[str, Any]) -> str:
    runs = meta["runs"]
    out: dict[str, Any] = {**meta, "cells": {}}
    for r in results:
        c = r.cell
        out["cells"][c.key] = {
            "system": c.system,
            "transport": c.transport,
            "mode": c.mode,
            "inflight": c.inflight,
            "label": c.label,
            "steps_per_s": {
                "best": r.best(runs),
                "median": r.median(runs),
                "rounds": r.rates(runs),
            },
            **cost(r, runs),
        }
    out["ratios"] = ratios(results, runs)
    return json.dumps(out, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument(
        "--transport", choices=("embedded", "http"), action="append", help="(default both)"
    )
    parser.add_argument("--dbos-python", help="python of a venv with dbos (default: peers')")
    parser.add_argument("--no-dbos", action="store_true", help="measure stepline only")
    parser.add_argument("--quick", action="store_true", help="20 runs, 1 round (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds, args.warmup = 20, 1, 2
    if args.runs < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--runs and --rounds must be >= 1, --warmup >= 0")
    _pgcount.install()
    dbos_python = None
    if not args.no_dbos:
        if args.dbos_python:
            dbos_python = args.dbos_python
        else:
            import _peers

            dbos_python = str(_peers.ensure())
    versions = {"python": platform.python_version(), "stepline": stepline.__version__}
    if dbos_python:
        versions["dbos"] = steps_bench.dbos_version(dbos_python)
    meta = {
        "benchmark": f"pg-steps: runs of {STEPS} trivial steps, Postgres",
        "postgres": server_version(),
        "versions": versions,
        "runs": args.runs,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    began = time.monotonic()
    results = run(
        args.runs, args.rounds, args.warmup, args.transport or ["embedded", "http"], dbos_python
    )
    meta["seconds"] = time.monotonic() - began
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(to_json(results, meta) if args.json else report(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
