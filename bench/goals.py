"""The current round's performance goals, each read from ``all.py``'s results.

``all.py`` prints these under its table (and adds them to ``--json`` as ``goals``): one
line a goal, with today's figure, the target and ``met`` / ``NOT met``, computed from the
same best rounds as the table and never adjusted. A goal whose benchmark did not run (or
was skipped) is listed as ``not measured``.

The goals (performance round three, set against the run of the round before):

* embedded step by step, one run at a time, at crash durability (Stepline's default
  ``synchronous=NORMAL`` against DBOS in WAL mode with ``NORMAL``): 5x DBOS;
* the same over HTTP (engine and app as two processes): 2x DBOS;
* a durable endpoint of 3 steps at ``NORMAL``: under 1 ms added to the plain route's p50,
  and 4x DBOS's added p50 at the same durability;
* Postgres, embedded step by step, one run at a time: 3x DBOS on the same server;
* Postgres, CPU a step-by-step step, every process and the server's backends: 0.7 ms;
* an event to its run's first step, p50 idle: under 2 ms on SQLite, 3 ms on Postgres.

Run on saved results: ``.venv/bin/python bench/all.py --json > run.json`` then
``.venv/bin/python bench/goals.py run.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

Results = dict[str, Any]  # all.py's results: bench name -> that bench's JSON


@dataclasses.dataclass(frozen=True)
class Reading:
    """Today's figure for a goal: the value compared, and how the table shows it."""

    value: float
    text: str


@dataclasses.dataclass(frozen=True)
class Goal:
    """One target: what is measured, the bound, and how to read it from the results."""

    measure: str
    relation: str  # ">=": reach the target; "<" or "<=": stay under it
    target: float
    unit: str  # "x" for a ratio to the peer, else the figure's unit
    read: Callable[[Results], Reading | None]

    def bound(self) -> str:
        unit = "x" if self.unit == "x" else f" {self.unit}"
        return f"{self.relation} {self.target:g}{unit}"

    def met(self, value: float) -> bool:
        if self.relation == ">=":
            return value >= self.target
        return value < self.target if self.relation == "<" else value <= self.target


def _steps_ratio(bench: str, variant: str, mode: str) -> Callable[[Results], Reading | None]:
    """Stepline's step-by-step ratio to DBOS one run at a time, at crash durability."""

    def read(results: Results) -> Reading | None:
        d = results.get(bench)
        if not d or "cells" not in d:
            return None
        cells = d["cells"]
        for x in d["ratios"]:
            c = cells[x["stepline"]]
            shape = c.get("variant", c.get("transport"))
            if (shape, c["mode"], c["inflight"]) != (variant, mode, 1):
                continue
            if x.get("journal", "wal") != "wal":  # Postgres has one DBOS configuration
                continue
            peer = cells[x["dbos"]]["steps_per_s"]["best"]
            mine = c["steps_per_s"]["best"]
            return Reading(x["ratio_best"], f"{x['ratio_best']:.2f}x ({mine:,.0f} / {peer:,.0f})")
        return None

    return read


def _endpoint(what: str) -> Callable[[Results], Reading | None]:
    """The 3-step durable endpoint at NORMAL: its added p50, or its ratio to DBOS in WAL."""

    def read(results: Results) -> Reading | None:
        d = results.get("endpoint")
        if not d or "cells" not in d:
            return None
        for key, c in d["cells"].items():
            if c["system"] != "stepline" or c["level"] != "NORMAL":
                continue
            if what == "added":
                return Reading(c["added_p50_ms"], f"{c['added_p50_ms']:.2f} ms")
            for x in d["ratios"]:
                if x["stepline"] == key and x["journal"] == "wal":
                    peer = d["cells"][x["dbos"]]["added_p50_ms"]
                    return Reading(x["ratio"], f"{x['ratio']:.2f}x (DBOS {peer:.2f} ms)")
        return None

    return read


def _pg_cpu(results: Results) -> Reading | None:
    d = results.get("pg-steps")
    if not d or "cells" not in d:
        return None
    found: dict[str, float] = {}
    for c in d["cells"].values():
        # DBOS's cells have no mode: each of its steps is committed before the next
        stepwise = (c["mode"], c["transport"]) == ("step", "embedded") or c["system"] == "dbos"
        if c.get("per_step") and c["inflight"] == 1 and stepwise:
            found[c["system"]] = sum(c["cpu_ms_per_step"].values())
    if "stepline" not in found:
        return None
    peer = f" (DBOS {found['dbos']:.2f})" if "dbos" in found else ""
    return Reading(found["stepline"], f"{found['stepline']:.2f} ms{peer}")


def _first_step(bench: str) -> Callable[[Results], Reading | None]:
    def read(results: Results) -> Reading | None:
        d = results.get(bench)
        if not d or "summaries" not in d:
            return None
        idle = d["summaries"]["idle"]
        return Reading(idle["p50_ms"], f"{idle['p50_ms']:.2f} ms")

    return read


GOALS = (
    Goal(
        "embedded step by step, one at a time, crash durability (vs DBOS WAL)",
        ">=", 5.0, "x", _steps_ratio("steps", "embedded", "step"),
    ),
    Goal(
        "HTTP step by step, one at a time, crash durability (vs DBOS WAL)",
        ">=", 2.0, "x", _steps_ratio("steps", "http", "step"),
    ),
    Goal("durable endpoint, 3 steps, NORMAL: added p50", "<", 1.0, "ms", _endpoint("added")),
    Goal(
        "durable endpoint, 3 steps, NORMAL: ratio to DBOS WAL",
        ">=", 4.0, "x", _endpoint("ratio"),
    ),
    Goal(
        "Postgres embedded step by step, one at a time (vs DBOS)",
        ">=", 3.0, "x", _steps_ratio("pg-steps", "embedded", "step"),
    ),
    Goal("Postgres CPU a step-by-step step, all processes", "<=", 0.7, "ms", _pg_cpu),
    Goal("event -> first step p50 idle, SQLite", "<", 2.0, "ms", _first_step("latency")),
    Goal("event -> first step p50 idle, Postgres", "<", 3.0, "ms", _first_step("pg-latency")),
)  # fmt: skip


def evaluate(results: Results) -> list[dict[str, Any]]:
    """Each goal with today's figure and whether it is met (None: not measured)."""
    out = []
    for goal in GOALS:
        try:
            reading = goal.read(results)
        except (KeyError, TypeError, ValueError):
            reading = None
        out.append(
            {
                "measure": goal.measure,
                "goal": goal.bound(),
                "today": reading.text if reading else "not measured",
                "value": reading.value if reading else None,
                "met": goal.met(reading.value) if reading else None,
            }
        )
    return out


def table(results: Results) -> str:
    """The goals as aligned text lines, for all.py's output."""
    rows = [("goal (this round)", "today", "target", "")]
    for g in evaluate(results):
        verdict = "" if g["met"] is None else ("met" if g["met"] else "NOT met")
        rows.append((g["measure"], g["today"], g["goal"], verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    )


def markdown(results: Results) -> str:
    """The goals as a Markdown table, for the README."""
    lines = ["| goal | today | target | |", "| --- | ---: | --- | --- |"]
    for g in evaluate(results):
        verdict = "" if g["met"] is None else ("met" if g["met"] else "**NOT met**")
        lines.append(f"| {g['measure']} | {g['today']} | {g['goal']} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or (len(args) == 2 and args[1] != "--markdown"):
        usage = "usage: goals.py RESULTS.json [--markdown]  (RESULTS: all.py --json)"
        print(usage, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        results = json.load(f)["results"]
    print(markdown(results) if args[1:] else table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
