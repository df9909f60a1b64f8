"""Durable AI agents: what durability adds per model request and per tool call, stepline vs DBOS.

One Pydantic AI agent (``_ai_run.py``: a ``FunctionModel`` answering at once and one
async tool ``lookup``), three shapes of run (``single``: 1 request; ``chain``: N + 1
requests and N tool calls, one per request; ``fan``: 2 requests and N tool calls from
one), timed three ways:

* **plain**: the agent itself, ``await agent.run(prompt)``: no durability, the baseline;
* **stepline**: the same agent in ``stepline.ai.DurableAgent`` inside an ``async def``
  Stepline function, the embedded engine in this process on a fresh SQLite file, each
  run ``client.execute_sync(fn, {"prompt": ...})`` (started, run, its output awaited).
  Each model request and each tool call is a step committed to the engine as it
  completes. ``stream=False, topic=None``: the steps only, what DBOS does; the cell
  ``+stream`` is the durable agent's default (``stream=True``: every request streamed,
  its text on the run's stream, a durable ``done`` marker per request);
* **dbos**: the same agent in Pydantic AI's own ``DBOSAgent``, in the peers' venv
  (``ai_dbos_peer.py``, a process per measurement, a fresh SQLite file): a workflow
  whose model requests are DBOS steps, and the tool a ``@DBOS.step()``, so each tool
  call is recorded once too (DBOS runs function tools unrecorded otherwise).

Each side's process times the plain agent too, and a side's **added** time per run of a
shape is its time less the plain agent's in the same process. From the three shapes'
added times (medians over runs, then over rounds), three equations give the added cost
per run, per model request and per tool call (``_ai_run.solve``). The ratios are DBOS's
added cost / stepline's (higher: stepline adds less); the goal is stepline adding less
than DBOS per model request and per tool call, at equal durability (``*``):
``stepline/FULL`` (SQLite ``synchronous=FULL``: a commit survives a power loss) against
``dbos/default`` (DBOS's SQLite defaults: rollback journal, ``synchronous=FULL``), and
``stepline/NORMAL`` (its default: survives a process crash) against ``dbos/wal`` (WAL,
``synchronous=NORMAL``).

Every run's output is checked; a verification run per shape must record its requests and
tool calls as steps (DBOS: its step outputs in ``operation_outputs``).

Run: ``.venv/bin/python bench/ai_bench.py [--n 10] [--runs 30] [--rounds 3] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _ai_run

import stepline
from stepline.ai import DurableAgent
from stepline.embedded import EmbeddedEngine

LEVELS = ("NORMAL", "FULL")
JOURNALS = ("default", "wal")
#: the like-for-like durability pairs: stepline's level -> DBOS's journal
SAME = {"FULL": "default", "NORMAL": "wal"}
RESULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Side:
    system: str  # "stepline" | "dbos"
    level: str  # stepline: NORMAL | FULL; dbos: a JOURNALS key
    stream: bool = False

    @property
    def key(self) -> str:
        return f"{self.system}/{self.level}" + ("+stream" if self.stream else "")


def measure_stepline(side: Side, n: int, runs: int, warmup: int, tmp: Path) -> dict[str, Any]:
    db = tmp / "stepline-ai.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{db}{suffix}")
    client = stepline.Client("ai-bench", is_production=False, environ={})
    topic = "ai" if side.stream else None
    durable = DurableAgent(_ai_run.agent("bench"), stream=side.stream, topic=topic)

    @client.function(id="ask", trigger=stepline.TriggerEvent(event="bench/ask"))
    async def ask(ctx: stepline.Context) -> str:
        data = ctx.event.data
        assert isinstance(data, dict)
        result = await durable.on(ctx).run(data["prompt"])
        return result.output

    plain = _ai_run.agent("bench")
    engine = EmbeddedEngine(client, [ask], database=str(db), sqlite_synchronous=side.level)
    engine.start()
    loop = asyncio.new_event_loop()
    try:

        def run_plain(text: str) -> str:
            return loop.run_until_complete(plain.run(text)).output

        def run_durable(text: str) -> object:
            return client.execute_sync(ask, {"prompt": text}, timeout=RESULT_TIMEOUT)

        times = _ai_run.timed({"plain": run_plain, "durable": run_durable}, n, runs, warmup)
        for shape in _ai_run.SHAPES:  # one more run of each, its steps checked
            handle = client.start_sync(ask, {"prompt": _ai_run.prompt(shape, n)})
            handle.result(timeout=RESULT_TIMEOUT)
            names = [step.name for step in handle.steps()]
            requests, tools = _ai_run.counts(shape, n)
            want = requests * (2 if side.stream else 1) + tools
            if len(names) != want or not all(name.startswith("bench:") for name in names):
                sys.exit(f"ai_bench: {side.key} {shape}: steps {names}, want {want}")
    finally:
        loop.close()
        engine.stop()
        client.close()
    return {"plain": _ai_run.medians(times["plain"]), "durable": _ai_run.medians(times["durable"])}


def measure_dbos(
    side: Side, n: int, runs: int, warmup: int, tmp: Path, python: str
) -> dict[str, Any]:
    command = [
        python, str(Path(__file__).with_name("ai_dbos_peer.py")), "--db", str(tmp / "dbos-ai.db"),
        "--n", str(n), "--runs", str(runs), "--warmup", str(warmup), "--journal", side.level,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"ai_bench: {side.key} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def summary(rounds: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """A side's figures: per shape the median over rounds; the added costs solved from them."""
    plain = {s: statistics.median(r["plain"][s] for r in rounds) for s in _ai_run.SHAPES}
    durable = {s: statistics.median(r["durable"][s] for r in rounds) for s in _ai_run.SHAPES}
    each = [_ai_run.solve(_ai_run.added(r["durable"], r["plain"]), n) for r in rounds]
    return {
        "plain_ms": plain,
        "durable_ms": durable,
        "plain": _ai_run.solve(plain, n),
        "added": _ai_run.solve(_ai_run.added(durable, plain), n),
        "rounds_added": each,
    }


def ratios(cells: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """DBOS's added cost / stepline's, per model request and per tool call, per pair."""
    out = []
    for key, cell in cells.items():
        if not key.startswith("stepline/") or key.endswith("+stream"):
            continue
        level = key.split("/")[1]
        for journal in JOURNALS:
            peer = cells.get(f"dbos/{journal}")
            if peer is None:
                continue
            same = SAME[level] == journal
            for what in ("request_ms", "tool_ms"):
                mine, theirs = cell["added"][what], peer["added"][what]
                ratio = theirs / mine if mine > 0 and theirs > 0 else None  # noise: none
                out.append(
                    {
                        "stepline": key, "dbos": f"dbos/{journal}", "what": what,
                        "ratio": ratio, "like_for_like": same,
                        "met": (mine < theirs) if same else None,
                    }
                )  # fmt: skip
    return out


def report(cells: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"AI agent: {meta['n']} = N, {meta['runs']} runs x {meta['rounds']} rounds per side, "
        f"pydantic-ai {meta['versions'].get('pydantic_ai', '?')}, "
        f"DBOS {meta['versions'].get('dbos', '-')}",
        f"{'side':<24}{'plain req/tool':>16}{'added run':>12}{'added req':>12}{'added tool':>12}"
        "  rounds: added req / tool",
    ]
    for key, c in cells.items():
        p, a = c["plain"], c["added"]
        spread = "  ".join(f"{r['request_ms']:.2f}/{r['tool_ms']:.2f}" for r in c["rounds_added"])
        lines.append(
            f"{key:<24}{p['request_ms']:>8.3f}/{p['tool_ms']:<7.3f}{a['run_ms']:>12.2f}"
            f"{a['request_ms']:>12.2f}{a['tool_ms']:>12.2f}  {spread}"
        )
    lines.append("(milliseconds; added = the side's time less the plain agent's, same process)")
    lines.append("")
    for r in ratios(cells):
        mark = " *" if r["like_for_like"] else ""
        met = "" if r["met"] is None else ("  met" if r["met"] else "  NOT met")
        what = "per model request" if r["what"] == "request_ms" else "per tool call"
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"  {r['stepline']:<16} vs {r['dbos']:<13} {what:<18} {ratio:>7}{mark}{met}")
    lines.append("ratio = DBOS's added cost / stepline's (higher: stepline adds less); * = equal")
    lines.append("durability, where the goal (stepline adds less) applies.")
    return "\n".join(lines)


def versions(peers_python: str | None) -> dict[str, str]:
    import importlib.metadata

    out = {
        "python": platform.python_version(),
        "stepline": stepline.__version__,
        "pydantic_ai": importlib.metadata.version("pydantic-ai-slim"),
    }
    if peers_python:
        done = subprocess.run(
            [peers_python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        out["dbos"] = done.stdout.strip() or "?"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="tool calls per chain and fan run")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per shape and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per shape first")
    parser.add_argument("--no-dbos", action="store_true")
    parser.add_argument("--no-stream", action="store_true", help="no stepline +stream side")
    parser.add_argument("--dbos-python", help="python with dbos (default: the peers' venv)")
    parser.add_argument("--quick", action="store_true", help="N=3, 3 runs, 1 round: a smoke run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.runs, args.rounds, args.warmup = 3, 3, 1, 1
    if args.n < 2:
        parser.error("--n is at least 2 (the chain and fan shapes tell requests from tools)")

    sides = [Side("stepline", level) for level in LEVELS]
    if not args.no_stream:
        sides.append(Side("stepline", "NORMAL", stream=True))
    peers_python = None
    if not args.no_dbos:
        if args.dbos_python:
            peers_python = args.dbos_python
        else:
            import _peers

            peers_python = str(_peers.ensure())
        sides += [Side("dbos", journal) for journal in JOURNALS]

    measured: dict[str, list[dict[str, Any]]] = {s.key: [] for s in sides}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix="ai-bench-", dir=os.environ.get("STEPLINE_BENCH_TMP") or None
    ) as tmp:
        for r in range(args.rounds):
            for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
                print(f"ai: round {r + 1}/{args.rounds} {side.key}...", file=sys.stderr, flush=True)
                if side.system == "stepline":
                    got = measure_stepline(side, args.n, args.runs, args.warmup, Path(tmp))
                else:
                    assert peers_python is not None
                    got = measure_dbos(
                        side, args.n, args.runs, args.warmup, Path(tmp), peers_python
                    )
                measured[side.key].append(got)
                added = _ai_run.solve(_ai_run.added(got["durable"], got["plain"]), args.n)
                print(
                    f"ai:   added per request {added['request_ms']:.2f} ms, per tool call "
                    f"{added['tool_ms']:.2f} ms, per run {added['run_ms']:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    cells = {key: summary(rounds, args.n) for key, rounds in measured.items()}
    meta = {
        "n": args.n,
        "runs": args.runs,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "versions": versions(peers_python),
        "seconds": time.monotonic() - began,
    }
    if args.json:
        print(json.dumps({**meta, "cells": cells, "ratios": ratios(cells)}, indent=2))
    else:
        print(report(cells, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
