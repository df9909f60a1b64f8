"""Step throughput: stepline (embedded and HTTP) against DBOS, 10-step runs on SQLite.

``--runs`` runs (default 200) of a function of ten trivial steps (each returns
``{"i": i}``), on a durable SQLite file on disk, fresh for every measurement; the runs go
one after another (``sequential``) and with 8 in flight (8 threads, each starting a run
and waiting for its result). Reported as steps/s and runs/s.

stepline, two transports:

* ``embedded``: ``stepline.embedded.EmbeddedEngine`` runs the engine on a thread of the
  bench process and serves the app in-process (no HTTP, no second process); runs are
  started and awaited with ``client.execute_sync(fn, data)`` (start, then the output).
* ``http``: the engine (as ``stepline dev`` builds it) and the app (uvicorn +
  ``stepline.asgi.serve``) are two processes on loopback HTTP; the bench process starts
  and awaits runs through the engine's REST API with ``client.execute_sync`` (one request
  that starts a run and answers once it ends).

each at two durabilities: SQLite ``synchronous=NORMAL`` (the engine's default: a commit
survives a crash of the engine process) and, as ``embedded+full`` / ``http+full``,
``synchronous=FULL`` (``--sqlite-synchronous full``: a commit also survives power loss,
as with DBOS's defaults); and two modes: ``step-by-step`` (engine and client
``checkpointing=False``: one SDK call per step, each step committed before the next
starts, DBOS's guarantee) and ``checkpointed`` (the default: the SDK runs several steps
per call, the engine commits them in one transaction).

DBOS (PyPI ``dbos``, in the peers' venv, ``bench/dbos_peer.py``, one process per
measurement) runs the same ten ``@DBOS.step()`` in a ``@DBOS.workflow()``, on SQLite in
two configurations: ``default`` (what its SQLite URL gives: rollback journal,
``synchronous=FULL``) and ``wal`` (WAL, ``synchronous=NORMAL``: stepline's SQLite
setting, so the same durability). For 8 in flight DBOS is driven by 8 threads either
calling the workflow or ``DBOS.start_workflow(...).get_result()``: a probe before the
rounds times both and the faster is used (the report says which).

Every measurement warms up with ``--warmup`` untimed runs, then times ``--runs`` runs; it
checks each run's output and, afterwards, that the file holds every run Completed and
every step recorded. Rounds interleave all the measurements, rotating the order; the
report shows the best round and, in parentheses, the median.

Run: ``.venv/bin/python bench/steps_bench.py [--runs 200] [--rounds 3] [--quick] [--json]``
(``--no-dbos`` for stepline only; ``--dbos-python`` to use another venv's python;
``--sqlite-synchronous normal|full`` for one durability only).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _servers

import stepline
from stepline.embedded import EmbeddedEngine

BENCH = Path(__file__).resolve().parent
STEPS = _servers.STEPS
INFLIGHT = 8
RESULT_TIMEOUT = 120.0
MODES = {"step": "step-by-step", "checkpoint": "checkpointed", "perstep": "per-step ckpt"}
JOURNALS = {
    "default": "defaults (rollback journal, synchronous=FULL)",
    "wal": "WAL, synchronous=NORMAL (stepline's setting)",
}
#: stepline steps/s over DBOS's: checkpointed, step-by-step with 8 in flight, and per-step
#: checkpoints (a step committed before the next starts, as DBOS does: 3x at equal durability)
GOALS = {"checkpoint": 5.0, "step": 2.0, "perstep": 3.0}
#: modes whose goal holds at either concurrency (step-by-step's only with 8 in flight)
ALWAYS = ("checkpoint", "perstep")
#: stepline's SQLite durability: a variant suffix, and the DBOS configuration that has the
#: same (a commit survives a process crash / also a power loss).
SYNCS = {"normal": ("", "wal"), "full": ("+full", "default")}


@dataclass(frozen=True)
class Cell:
    """One measurement: a system, its transport/configuration, a mode and a concurrency."""

    system: str  # "stepline" or "dbos"
    variant: (
        str  # stepline: "embedded" | "http", "+full" for synchronous=FULL; dbos: a JOURNALS key
    )
    mode: str  # stepline: a MODES key; dbos: "-"
    inflight: int

    @property
    def key(self) -> str:
        return f"{self.system}/{self.variant}/{self.mode}/{self.inflight}"

    @property
    def label(self) -> str:
        if self.system == "dbos":
            return f"DBOS {self.variant}"
        return f"stepline {self.variant} {MODES[self.mode]}"

    @property
    def transport(self) -> str:
        return self.variant.split("+")[0]

    @property
    def synchronous(self) -> str:
        """stepline's SQLite ``synchronous`` pragma for this cell."""
        return "FULL" if self.variant.endswith("+full") else "NORMAL"

    @property
    def like_for_like(self) -> str:
        """The DBOS configuration with this stepline cell's durability."""
        return SYNCS["full" if self.synchronous == "FULL" else "normal"][1]


#: CPU seconds used during the timed window, by whom: "bench" (the bench process:
#: embedded engine + app + drivers, or the HTTP drivers), "engine", "app", "dbos".
Cpu = dict[str, float]


@dataclass
class Result:
    cell: Cell
    seconds: list[float] = field(default_factory=list)
    cpu: list[Cpu] = field(default_factory=list)

    def rates(self, runs: int) -> list[float]:
        return [runs / s for s in self.seconds]

    def best(self, runs: int) -> float:
        return max(self.rates(runs))

    def median(self, runs: int) -> float:
        return statistics.median(self.rates(runs))

    def typical_cpu(self) -> Cpu:
        """The CPU split of the median-duration round."""
        order = sorted(range(len(self.seconds)), key=lambda i: self.seconds[i])
        return self.cpu[order[(len(order) - 1) // 2]]


# -- stepline --------------------------------------------------------------------------------


def drive(
    start: Callable[[int], object],
    first: int,
    count: int,
    inflight: int,
    pids: dict[str, int] | None = None,
) -> tuple[float, Cpu]:
    """Run ``count`` runs (``inflight`` at a time); the seconds it took and the CPU used.

    CPU: this process's (``bench``) and that of each process in ``pids``.
    """
    pids = pids or {}
    keys = list(range(first, first + count))
    cpu0 = {name: _servers.proc_cpu(pid) for name, pid in pids.items()}
    mine0 = time.process_time()
    began = time.perf_counter()
    if inflight == 1:
        outputs = [start(k) for k in keys]
    else:
        with concurrent.futures.ThreadPoolExecutor(inflight) as pool:
            outputs = list(pool.map(start, keys))
    elapsed = time.perf_counter() - began
    cpu = {"bench": time.process_time() - mine0}
    cpu.update({name: _servers.proc_cpu(pid) - cpu0[name] for name, pid in pids.items()})
    if outputs != keys:
        sys.exit(f"steps_bench: wrong run outputs {outputs[:5]}..., want {keys[:5]}...")
    return elapsed, cpu


def check_db(path: Path, total: int) -> None:
    """Every run Completed and every step recorded in the SQLite file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        runs = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'Completed'").fetchone()[0]
        steps = conn.execute(
            "SELECT COUNT(*) FROM steps WHERE op = 'StepRun' AND status = 'Completed'"
        ).fetchone()[0]
    if runs != total or steps != total * STEPS:
        sys.exit(
            f"steps_bench: {path.name}: {runs} runs Completed and {steps} steps recorded, "
            f"want {total} and {total * STEPS}"
        )


@contextlib.contextmanager
def embedded(
    mode: str, db: Path, synchronous: str = "NORMAL", start_timeout: float = 30.0, **settings: Any
) -> Iterator[Callable[[int], object]]:
    """An ``EmbeddedEngine`` on a fresh ``db`` serving the bench function in ``mode``
    (``settings``: more of the engine's); yields ``start(k)``, which runs it with
    ``{"k": k}`` and returns the run's output."""
    _servers.remove_db(db)
    option = _servers.client_checkpointing(mode)
    client = stepline.Client(_servers.APP_ID, is_production=False, checkpointing=option, environ={})
    fn = _servers.ten_steps(client)
    engine = EmbeddedEngine(
        client,
        [fn],
        database=str(db),
        checkpointing=mode != "step",
        sqlite_synchronous=synchronous,
        **settings,
    )
    engine.start(start_timeout)
    try:

        def start(k: int) -> object:
            return client.execute_sync(fn, {"k": k}, timeout=RESULT_TIMEOUT)

        yield start
    finally:
        engine.stop()
        client.close()


def measure_embedded(
    mode: str, inflight: int, runs: int, warmup: int, tmp: Path, synchronous: str = "NORMAL"
) -> tuple[float, Cpu]:
    db = tmp / "embedded.db"
    with embedded(mode, db, synchronous) as start:
        drive(start, 0, warmup, 1)
        seconds, cpu = drive(start, warmup, runs, inflight)
    check_db(db, warmup + runs)
    return seconds, cpu


def measure_http(
    mode: str, inflight: int, runs: int, warmup: int, tmp: Path, synchronous: str = "NORMAL"
) -> tuple[float, Cpu]:
    db = tmp / "http.db"
    _servers.remove_db(db)
    checkpointing = mode != "step"
    engine_port, app_port = _servers.free_port(), _servers.free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    app_url = f"http://127.0.0.1:{app_port}{_servers.SERVE_PATH}"
    commands = [
        (
            "engine",
            _servers.engine_command(
                engine_port, str(db), checkpointing=checkpointing, synchronous=synchronous
            ),
            f"{engine_url}/health",
        ),
        ("app", _servers.app_command(app_port, engine_url, mode=mode), app_url),
    ]
    with _servers.processes(commands, tmp) as (engine, app):
        _servers.register(app_url)
        client = _servers.driver_client(engine_url)
        try:

            def start(k: int) -> object:
                return client.execute_sync("ten", {"k": k}, timeout=RESULT_TIMEOUT)

            drive(start, 0, warmup, 1)
            pids = {"engine": engine.pid, "app": app.pid}
            seconds, cpu = drive(start, warmup, runs, inflight, pids)
        finally:
            client.close()
    check_db(db, warmup + runs)
    return seconds, cpu


# -- DBOS --------------------------------------------------------------------------------------


def measure_dbos(
    python: str, journal: str, how: str, inflight: int, runs: int, warmup: int, tmp: Path
) -> tuple[float, Cpu]:
    """One DBOS measurement in a fresh process of the peers' venv: seconds and CPU."""
    argv = [
        python,
        str(BENCH / "dbos_peer.py"),
        "--db",
        str(tmp / "dbos.db"),
        "--runs",
        str(runs),
        "--warmup",
        str(warmup),
        "--inflight",
        str(inflight),
        "--how",
        how,
        "--journal",
        journal,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=_peer_env())
    if done.returncode != 0:
        sys.exit(f"steps_bench: dbos_peer.py failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), {"dbos": float(result["cpu_seconds"])}


def _peer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS_", "PYTHONPATH"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def dbos_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def probe_dbos_how(python: str, runs: int, warmup: int, tmp: Path) -> tuple[str, dict[str, float]]:
    """Time 8 threads calling the workflow vs 8 x start_workflow+get_result; the faster."""
    rates = {}
    for how in ("threads", "start"):
        seconds, _cpu = measure_dbos(python, "default", how, INFLIGHT, runs, warmup, tmp)
        rates[how] = runs * STEPS / seconds
    best = max(rates, key=lambda how: rates[how])
    shown = ", ".join(f"{how} {rate:,.0f}" for how, rate in rates.items())
    print(f"DBOS probe, 8 in flight (steps/s): {shown}; using {best}", file=sys.stderr, flush=True)
    return best, rates


# -- the rounds ------------------------------------------------------------------------------------


def cells(
    include_stepline: bool,
    transports: list[str],
    journals: list[str],
    syncs: tuple[str, ...] = tuple(SYNCS),
) -> list[Cell]:
    out = []
    for inflight in (1, INFLIGHT):
        if include_stepline:
            for transport in transports:
                for sync in syncs:
                    for mode in MODES:
                        out.append(Cell("stepline", transport + SYNCS[sync][0], mode, inflight))
        for journal in journals:
            out.append(Cell("dbos", journal, "-", inflight))
    return out


def run(
    *,
    runs: int,
    rounds: int,
    warmup: int,
    transports: list[str],
    dbos_python: str | None,
    journals: list[str],
    probe_runs: int,
    include_stepline: bool = True,
    syncs: tuple[str, ...] = tuple(SYNCS),
) -> tuple[list[Result], dict[str, Any]]:
    """Measure every cell ``rounds`` times, interleaved; returns results and DBOS metadata."""
    chosen = cells(include_stepline, transports, journals if dbos_python else [], syncs)
    results = {c.key: Result(c) for c in chosen}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="steps-bench-", dir=_tmp_root()) as name:
        tmp = Path(name)
        how = "threads"
        if dbos_python:
            how, probe = probe_dbos_how(dbos_python, probe_runs, warmup, tmp)
            extra = {
                "dbos_how": how,
                "dbos_probe_steps_per_s": probe,
                "dbos_probe_runs": probe_runs,
            }
        for r in range(rounds):
            shift = r % len(chosen)
            for cell in chosen[shift:] + chosen[:shift]:  # rotate who goes first
                seconds, cpu = measure(cell, runs, warmup, tmp, dbos_python, how)
                results[cell.key].seconds.append(seconds)
                results[cell.key].cpu.append(cpu)
                inflight = "sequential" if cell.inflight == 1 else f"{cell.inflight} in flight"
                print(
                    f"round {r + 1}/{rounds}: {cell.label}, {inflight}: "
                    f"{runs * STEPS / seconds:,.0f} steps/s",
                    file=sys.stderr,
                    flush=True,
                )
    return list(results.values()), extra


def measure(
    cell: Cell, runs: int, warmup: int, tmp: Path, dbos_python: str | None, how: str
) -> tuple[float, Cpu]:
    if cell.system == "dbos":
        assert dbos_python is not None
        kind = "seq" if cell.inflight == 1 else how
        return measure_dbos(dbos_python, cell.variant, kind, cell.inflight, runs, warmup, tmp)
    if cell.transport == "embedded":
        return measure_embedded(cell.mode, cell.inflight, runs, warmup, tmp, cell.synchronous)
    return measure_http(cell.mode, cell.inflight, runs, warmup, tmp, cell.synchronous)


def _tmp_root() -> str | None:
    """Measure on a disk-backed directory: ``STEPLINE_BENCH_TMP``, else the default tmp."""
    return os.environ.get("STEPLINE_BENCH_TMP") or None


# -- reporting -------------------------------------------------------------------------------------


def ratios(results: list[Result], runs: int) -> list[dict[str, Any]]:
    """stepline steps/s over DBOS's, same concurrency, for every pair measured."""
    by = {r.cell.key: r for r in results}
    out = []
    for r in results:
        c = r.cell
        if c.system != "stepline":
            continue
        for journal in JOURNALS:
            peer = by.get(f"dbos/{journal}/-/{c.inflight}")
            if peer is None:
                continue
            target = GOALS[c.mode] if c.mode in ALWAYS or c.inflight > 1 else None
            if c.mode == "perstep" and c.transport != "embedded":
                target = None  # the goal is set for the embedded engine (DBOS's shape)
            best = r.best(runs) / peer.best(runs)
            out.append(
                {
                    "stepline": c.key,
                    "dbos": peer.cell.key,
                    "transport": c.variant,
                    "mode": c.mode,
                    "inflight": c.inflight,
                    "journal": journal,
                    "like_for_like": journal == c.like_for_like,
                    "ratio_best": best,
                    "ratio_median": r.median(runs) / peer.median(runs),
                    "goal": target,
                    "met": None if target is None else best >= target,
                }
            )
    return out


def report(results: list[Result], meta: dict[str, Any]) -> str:
    runs = meta["runs"]
    v = meta["versions"]
    lines = [
        f"steps: {runs} runs x {STEPS} trivial steps, SQLite file on disk (fresh each), "
        f"{meta['cpus']} CPUs (python {v['python']}, stepline {v['stepline']}"
        + (f", dbos {v['dbos']}" if v.get("dbos") else "")
        + ")",
        f"{meta['rounds']} interleaved rounds after {meta['warmup']} warm-up runs; "
        "steps/s (runs/s = steps/s / 10) as best (median)",
        f"{'':<42}{'sequential steps/s':>22}{f'{INFLIGHT} in flight steps/s':>24}",
    ]
    labels: dict[str, tuple[Result | None, Result | None]] = {}
    for r in results:
        pair = labels.get(r.cell.label, (None, None))
        labels[r.cell.label] = (r, pair[1]) if r.cell.inflight == 1 else (pair[0], r)
    for label, (seq, par) in labels.items():
        cols = [
            f"{f'{x.best(runs) * STEPS:,.0f} ({x.median(runs) * STEPS:,.0f})':>22}"
            if x
            else f"{'-':>22}"
            for x in (seq, par)
        ]
        lines.append(f"{label:<42}{cols[0]}{cols[1]:>24}")
    lines.append(
        "CPU ms per step in the median round, every process involved (bench = the bench "
        "process:\n  the embedded engine, app and drivers, or the HTTP drivers)"
    )
    lines.append(f"{'':<42}{'sequential':<46}{INFLIGHT} in flight")
    for label, pair in labels.items():
        cols = [f"{cpu_text(x, runs) if x else '-':<46}" for x in pair]
        lines.append(f"{label:<42}{cols[0]}{cols[1]}".rstrip())
    if meta.get("dbos_how"):
        how = {
            "threads": "8 threads calling the workflow",
            "start": "8 threads doing start_workflow().get_result()",
        }
        probe = ", ".join(f"{k} {x:,.0f}" for k, x in meta["dbos_probe_steps_per_s"].items())
        lines.append(
            f"DBOS {INFLIGHT} in flight: {how[meta['dbos_how']]} (faster in a probe of "
            f"{meta['dbos_probe_runs']} runs, steps/s: {probe})"
        )
        lines.append(
            "DBOS default = " + JOURNALS["default"] + "; DBOS wal = " + JOURNALS["wal"] + "."
        )
        lines.append(
            "stepline +full = SQLite synchronous=FULL (survives power loss: the durability of "
            "DBOS default); without it NORMAL (that of DBOS wal). * = the same durability."
        )
    table = ratios(results, runs)
    if table:
        lines.append(
            f"{'ratio stepline/DBOS steps/s, best (median)':<42}"
            + "".join(f"{f'vs DBOS {j}':>18}" for j in JOURNALS)
            + "   goal"
        )
        rows: dict[str, dict[str, Any]] = {}
        for x in table:
            inflight = "sequential" if x["inflight"] == 1 else f"{x['inflight']} in flight"
            rows.setdefault(f"{x['transport']} {MODES[x['mode']]}, {inflight}", {})[
                x["journal"]
            ] = x
        for row, by_journal in rows.items():
            cols = "".join(f"{ratio_text(by_journal.get(j)):>18}" for j in JOURNALS)
            lines.append(f"{row:<42}{cols}   {goal_text(by_journal)}".rstrip())
    return "\n".join(lines)


def cpu_per_step(r: Result, runs: int) -> dict[str, float]:
    """Milliseconds of CPU per step in the median round, by process."""
    return {who: sec * 1000 / (runs * STEPS) for who, sec in r.typical_cpu().items()}


def cpu_text(r: Result, runs: int) -> str:
    split = cpu_per_step(r, runs)
    parts = ", ".join(f"{who} {ms:.2f}" for who, ms in split.items())
    return f"{sum(split.values()):.2f} ({parts})"


def ratio_text(x: dict[str, Any] | None) -> str:
    if x is None:
        return "-"
    return f"{x['ratio_best']:.2f}x ({x['ratio_median']:.2f}x)" + (
        "*" if x["like_for_like"] else ""
    )


def goal_text(by_journal: dict[str, dict[str, Any]]) -> str:
    """``>= 5x: met vs default*, NOT met vs wal`` (empty where no goal applies).

    ``*`` marks the DBOS configuration with the same durability as the stepline cell.
    """
    goals = [x for x in by_journal.values() if x["goal"]]
    if not goals:
        return ""
    verdicts = ", ".join(
        f"{'met' if x['met'] else 'NOT met'} vs {x['journal']}{'*' if x['like_for_like'] else ''}"
        for x in goals
    )
    return f">= {goals[0]['goal']:g}x: {verdicts}"


def to_json(results: list[Result], meta: dict[str, Any]) -> str:
    runs = meta["runs"]
    out: dict[str, Any] = {**meta, "cells": {}}
    for r in results:
        c = r.cell
        out["cells"][c.key] = {
            "system": c.system,
            "variant": c.variant,
            "synchronous": c.synchronous if c.system == "stepline" else None,
            "mode": c.mode,
            "inflight": c.inflight,
            "label": c.label,
            "steps_per_s": {
                "best": r.best(runs) * STEPS,
                "median": r.median(runs) * STEPS,
                "rounds": [x * STEPS for x in r.rates(runs)],
            },
            "runs_per_s": {"best": r.best(runs), "median": r.median(runs)},
            "cpu_seconds": r.cpu,
            "cpu_ms_per_step": cpu_per_step(r, runs),
        }
    out["ratios"] = ratios(results, runs)
    return json.dumps(out, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument(
        "--transport",
        choices=("embedded", "http"),
        action="append",
        help="stepline transport (repeatable; default both)",
    )
    parser.add_argument(
        "--dbos-python",
        help="python of a venv with dbos (default: bench/.peers-venv, created if missing)",
    )
    parser.add_argument("--no-dbos", action="store_true", help="measure stepline only")
    parser.add_argument(
        "--dbos-journal",
        choices=tuple(JOURNALS),
        action="append",
        help="DBOS SQLite configuration (repeatable; default both)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        choices=tuple(SYNCS),
        action="append",
        help="stepline's SQLite durability (repeatable; default both)",
    )
    parser.add_argument("--quick", action="store_true", help="20 runs, 1 round (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds, args.warmup = 20, 1, 2
    if args.runs < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--runs and --rounds must be >= 1, --warmup >= 0")
    dbos_python = None
    if not args.no_dbos:
        if args.dbos_python:
            dbos_python = args.dbos_python
        else:
            import _peers

            dbos_python = str(_peers.ensure())
    versions = {"python": platform.python_version(), "stepline": stepline.__version__}
    if dbos_python:
        versions["dbos"] = dbos_version(dbos_python)
    results, extra = run(
        runs=args.runs,
        rounds=args.rounds,
        warmup=args.warmup,
        transports=args.transport or ["embedded", "http"],
        dbos_python=dbos_python,
        journals=args.dbos_journal or list(JOURNALS),
        probe_runs=max(10, args.runs // 4),
        syncs=tuple(args.sqlite_synchronous or SYNCS),
    )
    meta = {
        "benchmark": f"steps: runs of {STEPS} trivial steps, SQLite on disk",
        "versions": versions,
        "runs": args.runs,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        **extra,
    }
    print(to_json(results, meta) if args.json else report(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
