"""SQL statements per step, by statement, for the modes of ``instructions_bench.py``.

A Python call or an instruction is a cost of this process; a statement is also a round
trip on Postgres and a lock held longer on both stores. This runs each mode's workload
(``instructions_bench.workload``: the same set-up, SQLite ``synchronous=NORMAL``) in this
process, warms it up, then counts every statement the engine's transactions send
(a wrapper around ``SqlTx.execute`` and ``SqlTx.execute_many``, one count per call: an
``executemany`` counts once) over ``--runs`` units, and prints the statements per step
with each statement's share (its first 110 characters). Deterministic: the same
workload sends the same statements.

Run: ``.venv/bin/python bench/statements_bench.py [--modes embedded-step,endpoint]
[--runs 20] [--warmup 5] [--json]``
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import instructions_bench  # noqa: E402  (after the path: a sibling script)

from stepline.engine._store import sql  # noqa: E402
from stepline.engine._worker import onthread  # noqa: E402

WIDTH = 110


def count(modes: Sequence[str], runs: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Each mode's statements per step, in total and by statement."""
    counts: collections.Counter[str] = collections.Counter()
    counting = [False]
    execute, execute_many = sql.SqlTx.execute, sql.SqlTx.execute_many

    def counted(self: sql.SqlTx, text: str, args: Sequence[Any] = ()) -> Any:
        if counting[0]:
            counts[" ".join(text.split())[:WIDTH]] += 1
        return execute(self, text, args)

    def counted_many(self: sql.SqlTx, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if counting[0] and rows:
            counts["(many) " + " ".join(text.split())[:WIDTH]] += 1
        execute_many(self, text, rows)

    sql.SqlTx.execute, sql.SqlTx.execute_many = counted, counted_many  # type: ignore[method-assign]
    onthread.SLICE = instructions_bench.SLICE  # the run's calls stay on one thread
    out: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="statements-bench-") as name:
            k = 0
            for mode in modes:
                with instructions_bench.workload(mode, Path(name)) as one:
                    for _ in range(warmup):
                        one(k)
                        k += 1
                    counts.clear()
                    counting[0] = True
                    for _ in range(runs):
                        one(k)
                        k += 1
                    counting[0] = False
                steps = runs * (instructions_bench.MODES[mode].steps or 1)
                out[mode] = {
                    "per_step": sum(counts.values()) / steps,
                    "statements": {s: n / steps for s, n in counts.most_common()},
                }
    finally:
        sql.SqlTx.execute, sql.SqlTx.execute_many = execute, execute_many  # type: ignore[method-assign]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="embedded-step,embedded-checkpoint,endpoint")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in instructions_bench.MODES]
    if unknown:
        sys.exit(f"statements_bench: unknown mode(s) {', '.join(unknown)}")
    found = count(modes, args.runs, args.warmup)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    for mode, figures in found.items():
        print(f"{instructions_bench.MODES[mode].label}: {figures['per_step']:.2f} statements/step")
        for statement, per_step in figures["statements"].items():
            print(f"  {per_step:6.2f}  {statement}")


if __name__ == "__main__":
    main()
