"""DBOS's side of the AI agent benchmark: one measurement, JSON on stdout.

Runs inside the peers' venv (``bench/.peers-venv``, see ``_peers.py``), never stepline's:
``ai_bench.py`` starts it once per measurement, so every measurement gets a fresh process
and a fresh SQLite file, as the stepline side gets a fresh engine and file.

Times, in one process and one event loop, the plain Pydantic AI agent and the same agent
wrapped in Pydantic AI's own ``DBOSAgent`` (``pydantic_ai.durable_exec.dbos``), on the
model, tool and shapes of ``_ai_run.py``. ``DBOSAgent.run`` is a DBOS workflow whose
model requests are DBOS steps; DBOS runs function tools inline in the workflow (not
recorded), so the tool is a ``@DBOS.step()`` here, as DBOS's docs ask of a tool with side
effects: each tool call is then recorded once, as stepline records it.

SQLite (``--journal``): ``default`` is what DBOS's SQLite URL gives (a rollback journal,
``synchronous=FULL``), ``wal`` is WAL with ``synchronous=NORMAL`` (stepline's setting);
see ``dbos_peer.py``.

Run (normally from ``ai_bench.py``):
``bench/.peers-venv/bin/python bench/ai_dbos_peer.py --db /tmp/x.db --runs 30``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import sqlite3
import sys
import warnings
from typing import Any

import _ai_run
import dbos_peer


def measure(db: str, n: int, runs: int, warmup: int, journal: str) -> dict[str, Any]:
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    dbos_peer.configure_sqlite(db, journal)
    logging.getLogger("dbos").setLevel(logging.WARNING)

    from dbos import DBOS  # type: ignore[import-not-found,unused-ignore]  # the peers' venv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DBOSAgent is deprecated for DBOSDurability
        from pydantic_ai.durable_exec.dbos import DBOSAgent

    DBOS(
        config={
            "name": "stepline-ai-bench",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
        }
    )

    @DBOS.step()  # type: ignore[untyped-decorator,unused-ignore]
    async def lookup(i: int) -> dict[str, int]:
        """The tool, as a DBOS step."""
        return {"i": i}

    plain = _ai_run.agent("bench")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        durable = DBOSAgent(_ai_run.agent("bench", lookup), name="bench")
    DBOS.launch()
    loop = asyncio.new_event_loop()
    try:

        def run_plain(text: str) -> str:
            return loop.run_until_complete(plain.run(text)).output

        def run_dbos(text: str) -> str:
            return loop.run_until_complete(durable.run(text)).output

        times = _ai_run.timed({"plain": run_plain, "durable": run_dbos}, n, runs, warmup)
    finally:
        loop.close()
        DBOS.destroy()
    with sqlite3.connect(db) as conn:
        recorded = conn.execute("SELECT COUNT(*) FROM operation_outputs").fetchone()[0]
        workflows = conn.execute(
            "SELECT COUNT(*) FROM workflow_status WHERE status = 'SUCCESS'"
        ).fetchone()[0]
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    want = (warmup + runs) * sum(sum(_ai_run.counts(s, n)) for s in _ai_run.SHAPES)
    if workflows < (warmup + runs) * len(_ai_run.SHAPES) or recorded < want:
        sys.exit(f"ai_dbos_peer: {workflows} workflows, {recorded} step outputs; want {want}")
    return {
        "plain": _ai_run.medians(times["plain"]),
        "durable": _ai_run.medians(times["durable"]),
        "recorded_steps": recorded,
        "journal": journal,
        "journal_mode": journal_mode,
        "dbos": importlib.metadata.version("dbos"),
        "pydantic_ai": importlib.metadata.version("pydantic-ai-slim"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite file (replaced)")
    parser.add_argument("--n", type=int, default=10, help="the shapes' N")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--journal", choices=("default", "wal"), default="default")
    args = parser.parse_args(argv)
    result = measure(args.db, args.n, args.runs, args.warmup, args.journal)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
