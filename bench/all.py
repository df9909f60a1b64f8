"""Every benchmark in one command, and one table of figures, ratios and goals.

Runs, each as its own process with ``--json`` (their progress lines pass through on
stderr):

1. ``handler_bench.py``: stepline's CommHandler vs the official ``inngest`` SDK's.
2. ``steps_bench.py``: step throughput, stepline (embedded and HTTP, step-by-step and
   checkpointed) vs DBOS, on SQLite.
3. ``latency_bench.py``: ``POST /e/{key}`` to the first step, idle and under load.
4. ``ingest_bench.py``: events/s accepted and committed, single and batched.
5. ``engine_nodes.py``: runs/s with 1, 2, 3 engine processes on Postgres (skipped, and
   said so, when no Postgres answers).
6. ``stream_bench.py``: run streams, messages/s published (lightweight batches, durable
   one by one) and publish-to-SSE-reader latency.
7. ``endpoint_bench.py``: the latency a 3-step durable FastAPI route adds over the same
   route without steps, stepline (SQLite NORMAL and FULL) vs DBOS, in the same framework.
8. ``pg_steps_bench.py`` (``pg-steps``): the step benchmark on Postgres, stepline vs DBOS
   on the same server, with each step's cost (CPU, round trips, rows written).
9. ``latency_bench.py --postgres`` and ``ingest_bench.py --postgres`` (``pg-latency``,
   ``pg-ingest``): the same two on Postgres.
10. ``ai_bench.py`` (``ai``): what a durable Pydantic AI agent adds per model request and
    per tool call over the plain agent, stepline (SQLite NORMAL and FULL) vs Pydantic AI's
    own DBOS agent, on the same function model and runs.
11. ``large_tables.py`` (``large``, slow: it fills 1M ended runs per store, so only with
    ``--only large`` or ``--slow``): steps/s, fan-out, the dashboard's lists and leasing on
    an empty database and on a filled one, SQLite and Postgres (which it skips, and says
    so, without a Postgres), with the plans of the store's queries.
12. ``deploy_check_bench.py`` (``deploy-check``): ``stepline deploy check`` over 1,000 live
    runs of 10 steps, a child process end to end (goal: under 10 s).
13. ``instructions_bench.py`` (``instructions``): instructions per step under callgrind
    and Python calls per step, for each step mode and a durable endpoint's request: figures
    that do not move with the VM's speed (skipped, and said so, without valgrind).
14. ``growth_bench.py`` (``growth``, slow: about 20 minutes, so only with ``--only growth``
    or ``--slow``): the costs that grow with the work, on SQLite and Postgres: 100,000
    sleeping runs coming due within a minute, 100 to 10,000 runs stepping at once, a
    fan-out of 1,000 invoked children, a run of 10,000 steps; its plots are written to
    ``bench/img/`` (``growth_plots.py``).

Under the table, this round's goals (``goals.py``), each with today's figure and met or
not; ``--json`` has them as ``goals``.

Also ``django_tasks_bench.py`` (``django-tasks``): tasks/s enqueued and completed through
Django's Tasks framework, Stepline's ``SteplineBackend`` (embedded engine) against
django-tasks-db's ``DatabaseBackend`` and its ``db_worker``, both on SQLite.

The Postgres benchmarks (5, 8, 9) are skipped, and the table says why, when no Postgres
answers.

The peers (``dbos``, ``inngest``) are installed from PyPI into ``bench/.peers-venv`` on
first use (``_peers.py``). ``--quick`` runs every benchmark at a tiny size: a smoke run
of the whole chain, DBOS included, whose figures mean nothing.

Run: ``.venv/bin/python bench/all.py [--quick] [--only steps] [--json]`` (or ``make bench``)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _peers
import goals

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]


BENCHES = (
    Bench(
        "handler", "handler_bench.py", (), ("--seconds", "0.2", "--rounds", "1", "--warmup", "0")
    ),
    Bench("steps", "steps_bench.py", ("--rounds", "2"), ("--quick",)),
    Bench("latency", "latency_bench.py", (), ("--quick",)),
    Bench("ingest", "ingest_bench.py", (), ("--quick",)),
    Bench("outbox", "outbox_bench.py", (), ("--quick",)),
    Bench(
        "nodes",
        "engine_nodes.py",
        ("--runs", "300", "--rounds", "2"),
        ("--runs", "30", "--rounds", "1"),
    ),
    Bench("stream", "stream_bench.py", (), ("--quick",)),
    Bench("endpoint", "endpoint_bench.py", (), ("--quick",)),
    Bench("ai", "ai_bench.py", (), ("--quick",)),
    Bench("django-tasks", "django_tasks_bench.py", (), ("--quick",)),
    Bench("pg-steps", "pg_steps_bench.py", ("--rounds", "2"), ("--quick",)),
    Bench("pg-latency", "latency_bench.py", ("--postgres",), ("--quick", "--postgres")),
    Bench("pg-ingest", "ingest_bench.py", ("--postgres",), ("--quick", "--postgres")),
    Bench("large", "large_tables.py", (), ("--quick",)),
    Bench("deploy-check", "deploy_check_bench.py", (), ("--quick",)),
    Bench("instructions", "instructions_bench.py", (), ("--quick",)),
    Bench("growth", "growth_bench.py", (), ("--quick",)),
)
NAMES = tuple(b.name for b in BENCHES)
#: the benchmarks that need Postgres (skipped, with the reason, without one)
POSTGRES = ("nodes", "pg-steps", "pg-latency", "pg-ingest")
#: the benchmarks run only when named (``--only``) or with ``--slow``
SLOW = ("large", "growth")


# -- running one benchmark ------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    data: dict[str, Any] | None = None
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0


def run_one(bench: Bench, python: str, extra: list[str], env: dict[str, str]) -> Outcome:
    """Run a benchmark with ``--json``; relay its stderr live, parse its stdout."""
    argv = [python, str(BENCH / bench.script), *extra, "--json"]
    print(f"== {bench.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    tail: collections.deque[str] = collections.deque(maxlen=30)

    def relay() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            sys.stderr.write(f"   {line}")
            sys.stderr.flush()

    relaying = threading.Thread(target=relay, daemon=True)
    relaying.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    relaying.join(10)
    seconds = time.monotonic() - began
    if proc.returncode != 0:
        why = "".join(tail).strip().splitlines()
        return Outcome(
            bench.name,
            error=f"exit {proc.returncode}: {why[-1] if why else '(no output)'}",
            seconds=seconds,
        )
    try:
        return Outcome(bench.name, data=json.loads(out), seconds=seconds)
    except ValueError:
        return Outcome(bench.name, error=f"not JSON: {out[:200]!r}", seconds=seconds)


def handler_python(peers_python: str) -> tuple[str, dict[str, str]]:
    """This venv if it has ``inngest`` (the dev extra pins it), else the peers' venv + src/."""
    env = dict(os.environ)
    if importlib.util.find_spec("inngest") is not None:
        return sys.executable, env
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return peers_python, env


def postgres_problem() -> str | None:
    """Why the Postgres benchmarks cannot run here, or None."""
    url = os.environ.get(
        "STEPLINE_BENCH_POSTGRES_URL",
        os.environ.get("STEPLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'stepline[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as exc:
        return f"no Postgres at {url.split('@')[-1]}: {str(exc).strip().splitlines()[0]}"


# -- the table -------------------------------------------------------------------------------------


Row = tuple[str, str, str, str, str]  # measure, stepline, peer, ratio, goal


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def handler_rows(d: dict[str, Any]) -> list[Row]:
    rows = []
    for variant, v in d["variants"].items():
        ratio = v["ratio_best"]
        rows.append(
            (
                f"handler {variant}, req/s",
                f"{v['stepline']['best']:,.0f}",
                f"{v['inngest']['best']:,.0f} inngest",
                f"{ratio:.2f}x",
                f">= 2x {_met(ratio >= 2)}",
            )
        )
    return rows


def _same(ratio: dict[str, Any]) -> str:
    """``*`` on a ratio against the DBOS configuration with stepline's durability."""
    return "*" if ratio.get("like_for_like") else ""


#: how the table names a step benchmark's modes (a step committed before the next starts:
#: one call per step, or several steps per call each committed on its own)
MODE_NAMES = {
    "step": "step-by-step",
    "checkpoint": "checkpointed",
    "perstep": "per-step checkpointed",
}


def steps_rows(d: dict[str, Any]) -> list[Row]:
    cells = d["cells"]
    ratios: dict[str, dict[str, Any]] = {}
    for x in d["ratios"]:
        ratios.setdefault(x["stepline"], {})[x["journal"]] = x
    rows = []
    for key, c in cells.items():
        if c["system"] != "stepline":
            continue
        inflight = "seq" if c["inflight"] == 1 else f"{c['inflight']} in flight"
        mode = MODE_NAMES[c["mode"]]
        by = ratios.get(key, {})
        peers = [
            cells[x["dbos"]]["steps_per_s"]["best"] for x in (by.get("default"), by.get("wal")) if x
        ]
        pair = [x for x in (by.get("default"), by.get("wal")) if x]
        ratio = " / ".join(f"{x['ratio_best']:.2f}x{_same(x)}" for x in pair)
        targets = [x for x in pair if x["goal"]]
        goal = ""
        if targets:
            goal = f">= {targets[0]['goal']:g}x " + " / ".join(
                _met(x["met"]) + _same(x) for x in targets
            )
        rows.append(
            (
                f"steps/s {c['variant']} {mode}, {inflight}",
                f"{c['steps_per_s']['best']:,.0f}",
                " / ".join(f"{p:,.0f}" for p in peers),
                ratio,
                goal,
            )
        )
    return rows


def _on(d: dict[str, Any]) -> str:
    """``"postgres "`` for a figure measured on Postgres, else nothing (SQLite)."""
    return "postgres " if d.get("database") == "postgres" else ""


def latency_rows(d: dict[str, Any]) -> list[Row]:
    rows = []
    for phase, s in d["summaries"].items():
        load = ""
        if "load_runs_per_s_completed" in s:
            load = f" (load {s['load_runs_per_s_completed']:.0f} runs/s)"
        rows.append(
            (
                f"{_on(d)}event->first step {phase}, p50 / p99 ms{load}",
                f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}",
                "",
                "",
                f"<5 / <25 ms {_met(s['goal_p50_met'])} / {_met(s['goal_p99_met'])}",
            )
        )
    floor = f"{_on(d)}loopback floor: GET /health round trip, ms"
    rows.append((floor, f"{d['floor_ms']:.2f}", "", "", ""))
    return rows


def ingest_rows(d: dict[str, Any]) -> list[Row]:
    rows = []
    for shape, s in d["shapes"].items():
        what = (
            f"single events, {s['clients']} clients"
            if shape == "single"
            else f"batches of {s['events_per_request']}, {s['clients']} clients"
        )
        rows.append((f"{_on(d)}ingest events/s, {what}", f"{s['best']:,.0f}", "", "", ""))
    return rows


def nodes_rows(d: dict[str, Any]) -> list[Row]:
    return [
        (
            f"postgres runs/s, {n} node{'s' if n != '1' else ''}",
            f"{x['best']:,.1f}",
            "",
            f"{x['ratio_best']:.2f}x vs 1 node",
            "",
        )
        for n, x in d["nodes"].items()
    ]


def stream_rows(d: dict[str, Any]) -> list[Row]:
    light, durable, lat = d["publish"]["lightweight"], d["publish"]["durable"], d["latency"]
    return [
        (f"stream messages/s, batches of {light['batch']}", f"{light['best']:,.0f}", "", "", ""),
        ("stream messages/s, durable, one per request", f"{durable['best']:,.0f}", "", "", ""),
        (
            "stream publish->SSE reader, p50 / p99 ms",
            f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}",
            "",
            "",
            "",
        ),
    ]


def endpoint_rows(d: dict[str, Any]) -> list[Row]:
    cells = d["cells"]
    by: dict[str, dict[str, Any]] = {}
    for x in d["ratios"]:
        by.setdefault(x["stepline"], {})[x["journal"]] = x
    rows = []
    for key, c in cells.items():
        if c["system"] != "stepline":
            continue
        pair = [x for x in (by.get(key, {}).get(j) for j in ("default", "wal")) if x]
        targets = []
        if c["level"] == "NORMAL":
            targets.append(f"<3 ms {_met(c['added_p50_ms'] < 3.0)}")
        targets += [f">= {x['goal']:g}x {_met(x['met'])}*" for x in pair if x["goal"]]
        rows.append(
            (
                f"endpoint +3 steps {c['level']}, added p50 / p99 ms",
                f"{c['added_p50_ms']:.2f} / {c['added_p99_ms']:.2f}",
                " / ".join(f"{cells[x['dbos']]['added_p50_ms']:.2f}" for x in pair),
                " / ".join(f"{x['ratio']:.2f}x{_same(x)}" for x in pair),
                "; ".join(targets),
            )
        )
    plain = [c["baseline"]["p50_ms"] for c in cells.values() if c["system"] == "stepline"]
    peer = [c["baseline"]["p50_ms"] for c in cells.values() if c["system"] == "dbos"]
    if plain:
        rows.append(
            (
                "endpoint baseline route (no steps), p50 ms",
                f"{min(plain):.2f}",
                f"{min(peer):.2f}" if peer else "",
                "",
                "",
            )
        )
    return rows


def ai_rows(d: dict[str, Any]) -> list[Row]:
    cells = d["cells"]
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for x in d["ratios"]:
        by.setdefault((x["stepline"], x["what"]), {})[x["dbos"]] = x
    rows = []
    for key, c in cells.items():
        if not key.startswith("stepline/"):
            continue
        level = key.split("/")[1].replace("+stream", ", streamed")
        for what, label in (("request_ms", "model request"), ("tool_ms", "tool call")):
            found = by.get((key, what), {})
            pair = [x for x in (found.get(f"dbos/{j}") for j in ("default", "wal")) if x]
            rows.append(
                (
                    f"ai agent added per {label} {level}, ms",
                    f"{c['added'][what]:.2f}",
                    " / ".join(f"{cells[x['dbos']]['added'][what]:.2f}" for x in pair),
                    " / ".join(
                        ("n/a" if x["ratio"] is None else f"{x['ratio']:.2f}x") + _same(x)
                        for x in pair
                    ),
                    "; ".join(f"< DBOS {_met(x['met'])}*" for x in pair if x["like_for_like"]),
                )
            )
    plain = [c["plain"] for c in cells.values()]
    if plain:
        request = statistics.median(p["request_ms"] for p in plain)
        tool = statistics.median(p["tool_ms"] for p in plain)
        rows.append(
            ("ai plain Pydantic AI per model request / tool call, ms",
             f"{request:.2f} / {tool:.2f}", "", "", "")
        )  # fmt: skip
    return rows


def django_tasks_rows(d: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    sides = d["sides"]
    for variant, label in (("add", "add two numbers"), ("payload", "1 KB argument")):
        for key, what in (
            ("enqueue_per_s", "enqueued"),
            ("completed_per_s", "completed"),
            ("drained_per_s", "drained from a backlog"),
        ):
            ratio = d["ratios"].get(variant)
            rows.append(
                (
                    f"django tasks/s {what}, {label}, {d['tasks']} tasks",
                    f"{sides['stepline'][variant][key]:,.0f}" if "stepline" in sides else "",
                    f"{sides['db'][variant][key]:,.0f} django-tasks-db" if "db" in sides else "",
                    f"{ratio[key]:.2f}x" if ratio else "",
                    "",
                )
            )
    for side, why in d["skipped"].items():
        rows.append((f"django tasks: {side} skipped: {why}", "", "", "", ""))
    return rows


def pg_steps_rows(d: dict[str, Any]) -> list[Row]:
    cells = d["cells"]
    by = {x["stepline"]: x for x in d["ratios"]}
    rows = []
    for key, c in cells.items():
        if c["system"] != "stepline":
            continue
        inflight = "seq" if c["inflight"] == 1 else f"{c['inflight']} in flight"
        mode = MODE_NAMES[c["mode"]]
        x = by.get(key)
        peer = cells[x["dbos"]]["steps_per_s"]["best"] if x else None
        goal = f">= {x['goal']:g}x {_met(x['met'])}" if x and x["goal"] else ""
        rows.append(
            (
                f"postgres steps/s {c['transport']} {mode}, {inflight}",
                f"{c['steps_per_s']['best']:,.0f}",
                f"{peer:,.0f}" if peer is not None else "",
                f"{x['ratio_best']:.2f}x" if x else "",
                goal,
            )
        )
    for c in cells.values():
        per = c.get("per_step")
        if per and c["inflight"] == 1:
            cpu = c["cpu_ms_per_step"]
            rows.append(
                (
                    f"  per step, {c['label']}, seq: CPU ms (of it postgres), round trips",
                    f"{sum(cpu.values()):.2f} ({cpu.get('postgres', 0):.2f})",
                    f"{per['round_trips']:.1f} rt",
                    "",
                    "",
                )
            )
    return rows


def large_rows(d: dict[str, Any]) -> list[Row]:
    """Each store's figures with the history filled; peer = on the empty database."""
    rows: list[Row] = []
    for store, s in d["stores"].items():
        if "skipped" in s:
            rows.append((f"large {store}: skipped, {s['skipped']}", "", "", "", ""))
            continue
        for key, empty in s["empty"].items():
            filled = s["filled"].get(key)
            if filled is None:
                continue
            fmt = "{:,.0f}" if key.startswith("steps/s") else "{:.2f}"
            ratio = f"{filled / empty:.2f}x" if empty else ""
            rows.append(
                (
                    f"large {store} {key}",
                    fmt.format(filled),
                    f"{fmt.format(empty)} empty",
                    ratio,
                    "",
                )
            )
    rows += [(f"large finding: {x}", "", "", "", "") for x in d["findings"]]
    return rows


def growth_rows(d: dict[str, Any]) -> list[Row]:
    """Each store's figures of the costs that grow with the work (growth_bench.py)."""
    rows: list[Row] = []

    def row(name: str, value: str, ratio: str = "") -> None:
        rows.append((name, value, "", ratio, ""))

    for store, s in d["stores"].items():
        if "skipped" in s:
            row(f"growth {store}: skipped, {s['skipped']}", "")
            continue
        for x in s.get("sleep", []):
            waking = x.get("waking", x["sleepers"])
            due = f" ({waking:,} due)" if waking != x["sleepers"] else ""
            head = f"growth {store} {x['sleepers']:,} sleeping{due}"
            row(f"{head}: woke late p50 / p99, s", f"{x['late_p50_s']:.2f} / {x['late_p99_s']:.2f}")
            rss, peak = x["rss_kib_asleep"] / 1024, x["rss_peak_kib_waking"] / 1024
            row(f"{head}: RSS asleep / peak waking, MiB", f"{rss:.0f} / {peak:.0f}")
            size = x["db_bytes"] / 2**20
            row(f"{head}: database MiB; engine start s", f"{size:,.0f}; {x['start_s_asleep']:.2f}")
        for x in s.get("active", []):
            row(
                f"growth {store} {x['runs']:,} active: steps/s; new event p99 ms",
                f"{x['steps_per_s']:,.0f}; {x['probe_first_p99_ms']:,.1f}",
            )
        for x in s.get("fanout", []):
            row(
                f"growth {store} fan-out of {x['width']:,}: s; ms/child",
                f"{x['seconds']:.2f}; {x['ms_per_child']:.2f}",
            )
        for x in s.get("long", []):
            row(
                f"growth {store} {x['steps']:,} steps {x['mode']}: ms/step last / first",
                f"{x['last_ms']:.3f} / {x['first_ms']:.3f}",
                f"{x['ratio']:.1f}x",
            )
    return rows


def deploy_check_rows(d: dict[str, Any]) -> list[Row]:
    goal = f"< {d['goal_s']:g} s {_met(d['met'])}" if d["runs"] == d["goal_runs"] else ""
    return [
        (
            f"deploy check {d['runs']:,} live runs of {d['steps_per_run']} steps, s end to end",
            f"{d['median_wall_s']:.2f}",
            "",
            "",
            goal,
        ),
        (
            "  runs/s; of the time: the check itself / start and imports, s",
            f"{d['runs_per_s']:,.0f}",
            f"{d['median_check_s']:.2f} / {d['startup_s']:.2f}",
            "",
            "",
        ),
    ]


def instructions_rows(d: dict[str, Any]) -> list[Row]:
    """Per mode: instructions per step (per request for the endpoint), Python calls."""
    rows: list[Row] = []
    for cell in d["modes"].values():
        per = "step" if cell["unit"] == "run" else cell["unit"]
        value = cell["ir_per_step"] if per == "step" else cell["ir_per_unit"]
        calls = cell["python_calls_per_step"] if per == "step" else cell["python_calls_per_unit"]
        spread = f"spread {cell['ir_spread']:.1%}"
        rows.append((f"instructions/{per} {cell['label']} (Ir)", f"{value:,.0f}", spread, "", ""))
        rows.append((f"Python calls/{per} {cell['label']}", f"{calls:,.0f}", "", "", ""))
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "handler": handler_rows,
    "steps": steps_rows,
    "latency": latency_rows,
    "ingest": ingest_rows,
    "nodes": nodes_rows,
    "stream": stream_rows,
    "endpoint": endpoint_rows,
    "ai": ai_rows,
    "django-tasks": django_tasks_rows,
    "pg-steps": pg_steps_rows,
    "pg-latency": latency_rows,
    "pg-ingest": ingest_rows,
    "large": large_rows,
    "outbox": lambda d: [(r[0], r[1], r[2], r[3], r[4]) for r in d["rows_table"]],
    "deploy-check": deploy_check_rows,
    "instructions": instructions_rows,
    "growth": growth_rows,
}


def table(outcomes: list[Outcome], meta: dict[str, Any]) -> str:
    v = meta["versions"]
    lines = [
        f"stepline {v['stepline']} benchmarks, python {v['python']}, "
        f"{meta['cpus']} CPUs, load average {meta['loadavg']} at start"
        + (" (QUICK: smoke sizes, figures meaningless)" if meta["quick"] else ""),
        "best of the interleaved rounds; peer: inngest 0.5.19 (handler), "
        f"DBOS {v.get('dbos', '?')} defaults / WAL+synchronous=NORMAL (steps, endpoint, ai)",
    ]
    header: Row = ("measure", "stepline", "peer", "ratio", "goal")
    rows: list[Row] = []
    for o in outcomes:
        if o.data is not None:
            try:
                rows += ROWS[o.name](o.data)
            except (KeyError, TypeError, ValueError) as exc:
                rows.append((f"{o.name}: unexpected JSON ({exc!r})", "", "", "", ""))
        else:
            rows.append((f"{o.name}: {'skipped' if o.skipped else 'FAILED'}", "", "", "", ""))
            rows.append((f"  {o.skipped or o.error}", "", "", "", ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    widths[0] = min(widths[0], 60)

    def fmt(r: Row) -> str:
        return (
            f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
            f"{r[3]:>{widths[3]}}  {r[4]}"
        ).rstrip()

    lines.append(fmt(header))
    lines += [fmt(r) for r in rows]
    ran = {o.name for o in outcomes if o.data}
    if "large" in ran:
        lines.append(
            "large: stepline = with the history of ended runs filled, peer = on the empty "
            "database, ratio = filled / empty (large_tables.py prints the plans)."
        )
    if "pg-steps" in ran:
        lines.append(
            "postgres steps: peer = DBOS on the same Postgres (its own system database, its "
            "defaults); both commit with the server's settings; per step = the median "
            "sequential round, CPU of every process involved and of the Postgres backends, "
            "round trips counted at psycopg (pg_steps_bench.py prints the rest)."
        )
    if "instructions" in ran:
        lines.append(
            "instructions: Ir counted by callgrind over fixed segments of sequential runs "
            "after a warm-up (the interpreter's start and imports not counted), the mean of "
            "the segments; spread = (max - min) / mean of the segments; Python calls: "
            "cProfile on every thread; a request's figure for the endpoint "
            "(instructions_bench.py prints the top C and Python functions)."
        )
    if "steps" in ran:
        lines.append(
            "steps: peer = DBOS with its SQLite defaults (rollback journal, synchronous=FULL: "
            "survives power loss) / in WAL mode with synchronous=NORMAL (survives a process "
            "crash); ratio and goal likewise; +full = stepline with synchronous=FULL (else "
            "NORMAL, its default); * = the same durability on both sides; "
            "runs/s = steps/s / 10."
        )
    if "ai" in ran:
        lines.append(
            "ai: added = a durable agent's time less the plain Pydantic AI agent's, per model "
            "request and per tool call (solved from three shapes of run); peer = Pydantic AI's "
            "DBOSAgent, its tool a DBOS step (defaults / WAL); ratio = DBOS's added / "
            "stepline's (higher: stepline adds less); streamed = stepline's default "
            "(tokens on the run's stream), no peer."
        )
    if any(o.name == "endpoint" and o.data for o in outcomes):
        lines.append(
            "endpoint (all rounds pooled): added = the durable route's p50 (p99) minus its "
            "app's plain route's; "
            "peer = DBOS's added p50 (defaults / WAL, the faster of its async and sync "
            "workflows); ratio = DBOS's added p50 / stepline's (higher: stepline faster)."
        )
    steps = next((o.data for o in outcomes if o.name == "steps" and o.data), None)
    if steps and steps.get("dbos_how"):
        how = {"threads": "calling the workflow", "start": "start_workflow().get_result()"}
        lines.append(
            f"DBOS 8 in flight: 8 threads {how[steps['dbos_how']]} (the faster way in a probe)."
        )
    lines.append(
        "Figures depend on the machine and on whatever else it runs: compare ratios, and "
        "rerun before quoting (each script prints its own detail with --help)."
    )
    timings = ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes)
    lines.append(f"took {meta['seconds']:.0f} s ({timings})")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


def versions(peers_python: str) -> dict[str, str]:
    import stepline

    out = {"python": platform.python_version(), "stepline": stepline.__version__}
    done = subprocess.run(
        [
            peers_python,
            "-c",
            "import importlib.metadata as m; print(m.version('dbos'), m.version('inngest'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    with contextlib.suppress(ValueError):
        out["dbos"], out["inngest"] = done.stdout.split()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--only", choices=NAMES, action="append", help="run only these")
    parser.add_argument("--skip", choices=NAMES, action="append", help="do not run these")
    parser.add_argument("--slow", action="store_true", help="also the slow ones (large, growth)")
    parser.add_argument("--json", action="store_true", help="print every result as JSON")
    args = parser.parse_args(argv)
    chosen = [
        b
        for b in BENCHES
        if (b.name in args.only if args.only else args.slow or b.name not in SLOW)
    ]
    chosen = [b for b in chosen if b.name not in (args.skip or ())]
    began = time.monotonic()
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    peers_python = str(_peers.ensure())
    outcomes = []
    for bench in chosen:
        extra = list(bench.quick if args.quick else bench.args)
        python, env = sys.executable, dict(os.environ)
        if bench.name == "handler":
            python, env = handler_python(peers_python)
        elif bench.name in ("steps", "endpoint", "pg-steps", "ai"):
            extra += ["--dbos-python", peers_python]
        if bench.name == "instructions" and shutil.which("valgrind") is None:
            problem = "valgrind is not installed (apt-get install -y valgrind)"
            print(f"== {bench.name}: skipped, {problem}", file=sys.stderr, flush=True)
            outcomes.append(Outcome(bench.name, skipped=problem))
            continue
        if bench.name in POSTGRES:
            problem = postgres_problem()
            if problem is not None:
                print(f"== {bench.name}: skipped, {problem}", file=sys.stderr, flush=True)
                outcomes.append(Outcome(bench.name, skipped=problem))
                continue
        outcomes.append(run_one(bench, python, extra, env))
    meta = {
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "loadavg": loadavg,
        "versions": versions(peers_python),
        "seconds": time.monotonic() - began,
    }
    growth = next((o.data for o in outcomes if o.name == "growth" and o.data), None)
    if growth is not None and not args.quick:
        import growth_plots

        for path in growth_plots.plot(growth, growth_plots.OUT):
            print(f"growth: wrote {path}", file=sys.stderr, flush=True)
    measured = {o.name: o.data for o in outcomes if o.data is not None}
    if args.json:
        results = {
            o.name: o.data if o.data is not None else {"skipped": o.skipped, "error": o.error}
            for o in outcomes
        }
        out = {**meta, "results": results, "goals": goals.evaluate(measured)}
        print(json.dumps(out, indent=2))
    else:
        print(table(outcomes, meta))
        print()
        print(goals.table(measured))
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
