"""Durable endpoints: the latency a 3-step durable FastAPI route adds, stepline vs DBOS.

Every app is a FastAPI app under uvicorn in a process of its own (the same FastAPI,
uvicorn, httptools and uvloop versions on both sides: ``_peers.py`` pins stepline's), on
a fresh SQLite file, and serves two routes:

* ``POST /plain``: the baseline, ``async def`` returning ``{"c": 3}``, no durability;
* ``POST /three``: the same answer from a durable function of three trivial steps
  (``1``, ``a + 1``, ``b + 1``), run inline in the request.

Sides (a process each, ``--serve`` modes of this file):

* ``stepline/NORMAL``, ``stepline/FULL``: ``@stepline.fastapi.durable(client)`` on an
  ``async def`` handler, the embedded engine in the app's process
  (``EmbeddedEngine(client, [], database=file, sqlite_synchronous=...)``). A request is
  one inline start, a checkpoint after each step but the last, and the answer: four
  engine calls, each committed to SQLite before the handler goes on.
* ``dbos/default/async``: DBOS as its docs put it in FastAPI, the route decorated
  ``@DBOS.workflow()`` over ``async def`` ``@DBOS.step()``s, ``DBOS.launch()`` in the
  app's lifespan; its system database on SQLite with DBOS's defaults (rollback journal,
  ``synchronous=FULL``), as ``steps_bench.py`` runs it. ``dbos/default/sync`` is the same
  workflow in plain ``def``s (FastAPI runs the route in its thread pool), against a plain
  ``def`` baseline. ``dbos/wal/...`` (``--dbos-journal wal``): the file in WAL mode with
  ``synchronous=NORMAL``, as ``dbos_peer.py`` sets it.

Durability: a stepline commit with ``synchronous=FULL`` survives a power loss, as DBOS's
SQLite defaults do, so ``stepline/FULL`` against ``dbos/default`` is the like-for-like
pair (``*``); ``stepline/NORMAL`` (its default: survives a process crash) pairs with
``dbos/wal``. Against each DBOS journal the faster of its two styles is the peer.

The bench process sends the requests with ``httpx`` (one keep-alive connection), one at
a time, alternating ``/plain`` and ``/three`` so both see the same conditions, and checks
every answer (200, ``{"c": 3}``). Rounds interleave the sides, rotating their order; each
side gets a fresh process and file every round, ``--warmup`` untimed pairs, then
``--requests`` timed pairs. Afterwards the file must hold every run completed with its
three steps (DBOS: three ``operation_outputs`` per run).

Reported: p50/p99 of each route over all rounds' samples (nearest-rank); the added
latency, each round's durable p50 minus the same app's plain p50, as the best round (the
figure the ratios and goals use, as ``all.py``'s table does) and the median round, and
the pooled p99s' difference; the app process' CPU per request pair; the ratios DBOS
added / stepline added; and the goals: added p50 under 3 ms at NORMAL, and
at least 2x DBOS's added latency at equal durability.

Run: ``.venv/bin/python bench/endpoint_bench.py [--requests 300] [--rounds 3] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
STEPS = 3
ANSWER = {"c": 3}
GOAL_ADDED_P50_MS = 3.0
GOAL_RATIO = 2.0
LEVELS = ("NORMAL", "FULL")
JOURNALS = ("default", "wal")
STYLES = ("async", "sync")
#: stepline's level with a DBOS journal's durability
LIKE_FOR_LIKE = {"default": "FULL", "wal": "NORMAL"}


# -- the apps (``--serve``: run in their own process) ----------------------------------------


def stepline_app(db: str, synchronous: str, **settings: Any) -> Any:
    """The stepline app: ``/plain`` and the durable ``/three`` on an embedded engine (its
    lifespan starts the engine; ``settings``: more of the engine's)."""
    import fastapi

    import stepline
    import stepline.fastapi
    from stepline.embedded import EmbeddedEngine

    client = stepline.Client("bench-endpoint", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/plain")
    async def plain() -> dict[str, int]:
        return {"c": 3}

    @app.post("/three")
    @stepline.fastapi.durable(client)
    async def three(ctx: stepline.EndpointContext) -> dict[str, int]:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: a + 1)
        c = await ctx.step.run("c", lambda: b + 1)
        return {"c": c}

    engine = EmbeddedEngine(client, [], database=db, sqlite_synchronous=synchronous, **settings)
    stepline.fastapi.serve(app, client, [], engine=engine)
    app.state.engine = engine  # a caller may start it first, with its own timeout
    return app


def serve_stepline(port: int, db: str, synchronous: str) -> None:
    """The stepline app under uvicorn, in this process."""
    import uvicorn

    uvicorn.run(stepline_app(db, synchronous), host="127.0.0.1", port=port, log_level="warning")


def serve_dbos(port: int, db: str, journal: str, style: str) -> None:
    """The DBOS app (peers' venv): ``/plain`` and the ``@DBOS.workflow()`` route ``/three``."""
    import contextlib as _contextlib
    import logging

    import dbos_peer
    import fastapi
    import uvicorn

    dbos_peer.configure_sqlite(db, journal)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    from dbos import DBOS

    @_contextlib.asynccontextmanager
    async def lifespan(_app: fastapi.FastAPI) -> Any:
        DBOS.launch()
        yield
        DBOS.destroy()

    app = fastapi.FastAPI(lifespan=lifespan)
    DBOS(
        config={
            "name": "stepline-endpoint-bench",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
        }
    )

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    if style == "async":

        @DBOS.step()
        async def step_a() -> int:
            return 1

        @DBOS.step()
        async def step_b(a: int) -> int:
            return a + 1

        @DBOS.step()
        async def step_c(b: int) -> int:
            return b + 1

        @app.post("/plain")
        async def plain() -> dict[str, int]:
            return {"c": 3}

        @app.post("/three")
        @DBOS.workflow()
        async def three() -> dict[str, int]:
            a = await step_a()
            b = await step_b(a)
            c = await step_c(b)
            return {"c": c}

    else:

        @DBOS.step()
        def sync_a() -> int:
            return 1

        @DBOS.step()
        def sync_b(a: int) -> int:
            return a + 1

        @DBOS.step()
        def sync_c(b: int) -> int:
            return b + 1

        @app.post("/plain")
        def plain_sync() -> dict[str, int]:
            return {"c": 3}

        @app.post("/three")
        @DBOS.workflow()
        def three_sync() -> dict[str, int]:
            return {"c": sync_c(sync_b(sync_a()))}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- sides ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    system: str  # stepline | dbos
    level: str  # stepline: NORMAL | FULL; dbos: default | wal
    style: str = "async"  # dbos: async | sync

    @property
    def key(self) -> str:
        if self.system == "stepline":
            return f"stepline/{self.level}"
        return f"dbos/{self.level}/{self.style}"

    def command(self, port: int, db: str, peers_python: str) -> list[str]:
        if self.system == "stepline":
            return [sys.executable, __file__, "--serve", "stepline", str(port), db, self.level]
        argv = [peers_python, __file__, "--serve", "dbos", str(port), db, self.level, self.style]
        return argv


@dataclass
class Samples:
    """One side's timings over the rounds (milliseconds)."""

    side: Side
    plain: list[float] = field(default_factory=list)
    three: list[float] = field(default_factory=list)
    rounds_added_p50: list[float] = field(default_factory=list)
    cpu_ms_per_pair: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def check_db(side: Side, db: str, runs: int) -> None:
    """Exit unless the file holds ``runs`` completed runs with their steps recorded."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        if side.system == "stepline":
            done = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'Completed'").fetchone()
            steps = conn.execute("SELECT COUNT(*) FROM steps").fetchone()
            got = (done[0], steps[0])
        else:
            done = conn.execute(
                "SELECT COUNT(*) FROM workflow_status WHERE status = 'SUCCESS'"
            ).fetchone()
            steps = conn.execute("SELECT COUNT(*) FROM operation_outputs").fetchone()
            got = (done[0], steps[0])
    if got[0] != runs or got[1] < runs * STEPS:
        sys.exit(
            f"endpoint_bench: {side.key}: {got[0]} runs completed and {got[1]} steps recorded, "
            f"want {runs} and {runs * STEPS}"
        )


def measure(
    side: Side, samples: Samples, *, requests: int, warmup: int, tmp: Path, peers_python: str
) -> None:
    """One round of one side: a fresh process and file, warm-up, then timed request pairs."""
    import _servers
    import httpx

    port = _servers.free_port()
    db = str(tmp / f"{side.key.replace('/', '-')}.db")
    _servers.remove_db(db)
    url = f"http://127.0.0.1:{port}"
    command = side.command(port, db, peers_python)
    with (
        _servers.processes([(side.key.replace("/", "-"), command, f"{url}/health")], tmp) as procs,
        httpx.Client(base_url=url, timeout=30) as http,
    ):

        def call(path: str) -> float:
            start = time.perf_counter()
            answer = http.post(path)
            elapsed = (time.perf_counter() - start) * 1000
            if answer.status_code != 200 or answer.json() != ANSWER:
                sys.exit(
                    f"endpoint_bench: {side.key} POST {path}: "
                    f"{answer.status_code} {answer.text[:300]}"
                )
            return elapsed

        for _ in range(warmup):
            call("/plain")
            call("/three")
        cpu = _servers.proc_cpu(procs[0].pid)
        began = time.perf_counter()
        plain, three = [], []
        for _ in range(requests):
            plain.append(call("/plain"))
            three.append(call("/three"))
        samples.seconds.append(time.perf_counter() - began)
        samples.cpu_ms_per_pair.append(
            (_servers.proc_cpu(procs[0].pid) - cpu) * 1000 / max(requests, 1)
        )
    check_db(side, db, warmup + requests)
    _servers.remove_db(db)
    samples.plain += plain
    samples.three += three
    samples.rounds_added_p50.append(statistics.median(three) - statistics.median(plain))


# -- figures ----------------------------------------------------------------------------------


def summary(s: Samples) -> dict[str, Any]:
    base50, base99 = percentile(s.plain, 50), percentile(s.plain, 99)
    dur50, dur99 = percentile(s.three, 50), percentile(s.three, 99)
    return {
        "system": s.side.system,
        "level": s.side.level,
        "style": s.side.style,
        "samples": len(s.three),
        "baseline": {"p50_ms": base50, "p99_ms": base99},
        "durable": {"p50_ms": dur50, "p99_ms": dur99},
        # the best round's (the goals and ratios use it), the median round's, pooled p99
        "added_p50_ms": min(s.rounds_added_p50),
        "added_p50_median_ms": statistics.median(s.rounds_added_p50),
        "added_p50_pooled_ms": dur50 - base50,
        "added_p99_ms": dur99 - base99,
        "rounds_added_p50_ms": s.rounds_added_p50,
        "cpu_ms_per_pair": statistics.median(s.cpu_ms_per_pair),
        "seconds": s.seconds,
    }


def peers(cells: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Journal -> the DBOS cell with the smallest added p50 (the faster style)."""
    best: dict[str, str] = {}
    for key, c in cells.items():
        if c["system"] != "dbos":
            continue
        now = best.get(c["level"])
        if now is None or c["added_p50_ms"] < cells[now]["added_p50_ms"]:
            best[c["level"]] = key
    return best


def ratios(cells: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key, c in cells.items():
        if c["system"] != "stepline":
            continue
        for journal, peer in peers(cells).items():
            ratio = cells[peer]["added_p50_ms"] / max(c["added_p50_ms"], 1e-6)
            median = cells[peer]["added_p50_median_ms"] / max(c["added_p50_median_ms"], 1e-6)
            like = LIKE_FOR_LIKE[journal] == c["level"]
            out.append(
                {
                    "stepline": key,
                    "dbos": peer,
                    "journal": journal,
                    "ratio": ratio,
                    "ratio_median": median,
                    "like_for_like": like,
                    "goal": GOAL_RATIO if like else None,
                    "met": ratio >= GOAL_RATIO if like else None,
                }
            )
    return out


def goals(cells: dict[str, dict[str, Any]], rats: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    normal = cells.get("stepline/NORMAL")
    if normal is not None:
        out["added_p50_normal"] = {
            "goal_ms": GOAL_ADDED_P50_MS,
            "value_ms": normal["added_p50_ms"],
            "met": normal["added_p50_ms"] < GOAL_ADDED_P50_MS,
        }
    for r in rats:
        if r["like_for_like"]:
            out[f"vs_dbos_{r['journal']}"] = {
                "goal": GOAL_RATIO,
                "stepline": r["stepline"],
                "dbos": r["dbos"],
                "ratio": r["ratio"],
                "met": r["met"],
            }
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(cells: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    v = meta["versions"]
    lines = [
        f"durable endpoints: stepline {v['stepline']} vs DBOS {v.get('dbos', '?')}, FastAPI "
        f"{v.get('fastapi', '?')} under uvicorn {v.get('uvicorn', '?')}, python {v['python']}, "
        f"{meta['cpus']} CPUs",
        f"{meta['requests']} request pairs (/plain, /three) per side and round, {meta['rounds']} "
        f"round(s), {meta['warmup']} warm-up pairs. plain and 3 steps: percentiles over all "
        "rounds' samples; added p50: durable p50 - plain p50 in each round, the best round "
        "(median round); added p99: pooled p99s",
        "",
        f"{'side':<20} {'plain p50/p99':>14} {'3 steps p50/p99':>16} {'added p50 (median)':>19} "
        f"{'added p99':>9}  {'rounds: added p50':<19} {'CPU ms/pair':>11}",
    ]
    for key, c in cells.items():
        rounds = " ".join(f"{x:.2f}" for x in c["rounds_added_p50_ms"])
        lines.append(
            f"{key:<20} {c['baseline']['p50_ms']:>6.2f}/{c['baseline']['p99_ms']:<7.2f} "
            f"{c['durable']['p50_ms']:>7.2f}/{c['durable']['p99_ms']:<8.2f} "
            f"{c['added_p50_ms']:>10.2f} ({c['added_p50_median_ms']:.2f}) "
            f"{c['added_p99_ms']:>9.2f}  {rounds:<19} {c['cpu_ms_per_pair']:>11.2f}"
        )
    lines.append("(milliseconds)")
    rats = ratios(cells)
    if rats:
        lines += [
            "",
            "DBOS added p50 / stepline added p50, best rounds (median rounds); DBOS: its faster "
            "style per journal:",
        ]
        for r in rats:
            star = " *" if r["like_for_like"] else "  "
            goal = f"  >= {GOAL_RATIO:g}x {_met(r['met'])}" if r["like_for_like"] else ""
            lines.append(
                f"  {r['stepline']:<16} vs {r['dbos']:<20} {r['ratio']:6.2f}x "
                f"({r['ratio_median']:.2f}x){star}{goal}".rstrip()
            )
    lines.append("")
    for name, g in goals(cells, rats).items():
        if name == "added_p50_normal":
            lines.append(
                f"goal: added p50 at NORMAL < {g['goal_ms']:g} ms: {g['value_ms']:.2f} ms, "
                f"{_met(g['met'])}"
            )
        else:
            lines.append(
                f"goal: >= {g['goal']:g}x DBOS at equal durability ({g['stepline']} vs "
                f"{g['dbos']}): {g['ratio']:.2f}x, {_met(g['met'])}"
            )
    lines.append(
        "* = equal durability: stepline FULL and DBOS's SQLite defaults (rollback journal, "
        "synchronous=FULL) survive a power loss; stepline NORMAL and DBOS in WAL with "
        "synchronous=NORMAL survive a process crash."
    )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def versions(peers_python: str | None) -> dict[str, str]:
    import importlib.metadata as md
    import subprocess

    import stepline

    out = {
        "python": platform.python_version(),
        "stepline": stepline.__version__,
        "fastapi": md.version("fastapi"),
        "uvicorn": md.version("uvicorn"),
    }
    if peers_python:
        done = subprocess.run(
            [peers_python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            out["dbos"] = done.stdout.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed pairs per side, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20, help="untimed pairs first")
    parser.add_argument(
        "--sqlite-synchronous", choices=[x.lower() for x in LEVELS], action="append",
        help="stepline's durability (repeatable; default both)",
    )  # fmt: skip
    parser.add_argument("--no-dbos", action="store_true")
    parser.add_argument(
        "--dbos-journal", choices=JOURNALS, action="append",
        help="DBOS's SQLite setup (repeatable; default both)",
    )  # fmt: skip
    parser.add_argument(
        "--dbos-style", choices=STYLES, action="append",
        help="DBOS's workflow and route: async def or def (repeatable; default both)",
    )  # fmt: skip
    parser.add_argument("--dbos-python", help="python with dbos (default: the peers' venv)")
    parser.add_argument("--quick", action="store_true", help="20 pairs, 1 round: a smoke run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.warmup = 20, 1, 5

    levels = [x.upper() for x in args.sqlite_synchronous or [x.lower() for x in LEVELS]]
    sides = [Side("stepline", level) for level in levels]
    peers_python = None
    if not args.no_dbos:
        if args.dbos_python:
            peers_python = args.dbos_python
        else:
            import _peers

            peers_python = str(_peers.ensure())
        for journal in args.dbos_journal or JOURNALS:
            for style in args.dbos_style or STYLES:
                sides.append(Side("dbos", journal, style))

    samples = {s.key: Samples(s) for s in sides}
    began = time.monotonic()
    tmp_root = os.environ.get("STEPLINE_BENCH_TMP") or None
    with tempfile.TemporaryDirectory(prefix="endpoint-bench-", dir=tmp_root) as tmp:
        for r in range(args.rounds):
            order = sides[r % len(sides) :] + sides[: r % len(sides)]
            for side in order:
                print(
                    f"endpoint: round {r + 1}/{args.rounds} {side.key}...",
                    file=sys.stderr,
                    flush=True,
                )
                s = samples[side.key]
                measure(
                    side, s, requests=args.requests, warmup=args.warmup, tmp=Path(tmp),
                    peers_python=peers_python or "",
                )  # fmt: skip
                print(
                    f"endpoint:   plain p50 {statistics.median(s.plain[-args.requests :]):.2f} "
                    f"ms, 3 steps p50 {statistics.median(s.three[-args.requests :]):.2f} ms, "
                    f"added {s.rounds_added_p50[-1]:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    cells = {key: summary(s) for key, s in samples.items()}
    rats = ratios(cells)
    meta = {
        "requests": args.requests,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "versions": versions(peers_python),
        "seconds": time.monotonic() - began,
    }
    if args.json:
        out = {**meta, "cells": cells, "ratios": rats, "goals": goals(cells, rats)}
        print(json.dumps(out, indent=2))
    else:
        print(report(cells, meta))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        kind, port_text, db_path, *rest = sys.argv[2:]
        if kind == "stepline":
            serve_stepline(int(port_text), db_path, rest[0])
        else:
            serve_dbos(int(port_text), db_path, rest[0], rest[1])
    else:
        raise SystemExit(main())
