"""The SQL of a function's metrics over a window of time buckets (the function page's charts).

``tx.metrics``, a part of both stores' transactions (``part``); Postgres' transaction
takes ``PostgresMetricsSql``, which floors with ``FLOOR`` (its ``CAST`` rounds) and
computes percentiles with ``percentile_cont``. SQLite has no percentile function: the
window's values are read in order and interpolated in Python the way ``percentile_cont``
does, so both stores answer the same figures.

Every figure is read from the runs that matter to the window, found through the
``runs_function_ended (function_id, ended_at)`` index in two ranges: the runs that ended
at or after its start, and the live ones (``ended_at IS NULL``). A run created, started or
ended inside the window is in one of them (it ends after it starts, after it is created),
and so is every run still waiting to start when the window opened: runs started, ended,
their durations, start delays and the queue's depth at each bucket's end come from that
one set, counted with ``GROUP BY`` on the bucket number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from stepline.engine._store.part import Part

#: ``waiting.reason`` values flow control writes (``_flow``) and a paused function's
_HELD = ("concurrency", "throttled", "debounced", "batched", "priority", "paused")
#: The percentiles the charts show
P50, P95 = 0.5, 0.95


@dataclasses.dataclass(frozen=True, slots=True)
class Spread:
    """A percentile summary of one bucket's values (seconds)."""

    count: int
    p50: float
    p95: float
    max: float


@dataclasses.dataclass(slots=True)
class FunctionMetrics:
    """A function's figures per bucket (index 0 starts at ``since``) and its queue now.

    ``left`` counts the runs that stopped waiting to start in a bucket (their first call,
    or their end if they never started); ``waiting_before`` the runs still waiting when
    the window opened: with ``created`` they give the queue's depth at each bucket's end.
    """

    count: int
    created: list[int]
    ended: dict[str, list[int]]
    left: list[int]
    waiting_before: int
    #: by bucket (``-1``: the whole window): run durations (by end), start delays (by start)
    durations: dict[int, Spread]
    delays: dict[int, Spread]
    #: now: live runs per status, those flow control holds per reason, jobs per state
    live: dict[str, int]
    held: dict[str, int]
    jobs: dict[str, int]

    def queued(self) -> list[int]:
        """Runs waiting to start at each bucket's end (at ``now`` for the last one)."""
        depth, out = self.waiting_before, []
        for arrived, gone in zip(self.created, self.left, strict=True):
            depth += arrived - gone
            out.append(depth)
        return out


class MetricsSql(Part):
    """``Tx.metrics``: a function's figures over time buckets."""

    __slots__ = ()

    @staticmethod
    def _floor(expr: str) -> str:
        # times in the window are at or after its start: truncation is the floor
        return f"CAST({expr} AS INTEGER)"

    def function_metrics(
        self, function_id: str, *, since: float, bucket: float, count: int, now: float
    ) -> FunctionMetrics:
        """``function_id``'s runs in ``count`` buckets of ``bucket`` seconds from ``since``."""
        until = since + bucket * count
        runs = (
            "SELECT created_at, started_at, ended_at, status FROM runs "
            "WHERE function_id = ? AND ended_at >= ? AND created_at < ? UNION ALL "
            "SELECT created_at, started_at, ended_at, status FROM runs "
            "WHERE function_id = ? AND ended_at IS NULL AND created_at < ?"
        )
        runs_args = (function_id, since, until, function_id, until)
        left = "COALESCE(started_at, ended_at)"

        def b(expr: str) -> str:
            return self._floor(f"(({expr}) - ?) / ?")

        counts = self._x(
            f"WITH r AS ({runs}) "
            f"SELECT 'created' AS kind, {b('created_at')} AS b, COUNT(*) FROM r "
            "WHERE created_at >= ? GROUP BY b UNION ALL "
            f"SELECT status, {b('ended_at')} AS b, COUNT(*) FROM r "
            "WHERE ended_at < ? GROUP BY status, b UNION ALL "
            f"SELECT 'left', {b(left)} AS b, COUNT(*) FROM r "
            f"WHERE {left} >= ? AND {left} < ? GROUP BY b UNION ALL "
            f"SELECT 'before', 0, COUNT(*) FROM r WHERE created_at < ? "
            f"AND ({left} IS NULL OR {left} >= ?)",
            (
                *runs_args,
                *(since, bucket, since),
                *(since, bucket, until),
                *(since, bucket, since, until),
                *(since, since),
            ),
        ).fetchall()
        created, left_at = [0] * count, [0] * count
        ended: dict[str, list[int]] = {}
        before = 0
        for kind, index, n in counts:
            at = int(index)
            if kind == "before":
                before = int(n)
            elif not 0 <= at < count:
                continue  # a clock step put a time past the window's end
            elif kind == "created":
                created[at] = int(n)
            elif kind == "left":
                left_at[at] = int(n)
            else:
                ended.setdefault(str(kind), [0] * count)[at] = int(n)
        # durations of runs that completed or failed (a cancelled run's time says little
        # about the function), by end; start delays by first call (kind 0 and 1: numbers
        # sort faster than text)
        values = (
            f"WITH r AS ({runs}) "
            f"SELECT 0 AS kind, {b('ended_at')} AS b, "
            "ended_at - COALESCE(started_at, created_at) AS v FROM r "
            "WHERE ended_at < ? AND status IN ('Completed', 'Failed') UNION ALL "
            f"SELECT 1, {b('started_at')}, started_at - created_at FROM r "
            "WHERE started_at >= ? AND started_at < ?"
        )
        values_args = (*runs_args, *(since, bucket, until), *(since, bucket, since, until))
        spreads = self._percentiles(values, values_args)
        live = self._x(
            "SELECT status, reason, COUNT(*) FROM ("
            # waiting is compact JSON (``_json.dumps``: no spaces); the patterns are
            # parameters, as a literal % would be a placeholder to psycopg
            "SELECT status, CASE "
            + "WHEN waiting LIKE ? THEN ? "
            * len(_HELD)
            + "WHEN waiting IS NULL THEN NULL ELSE 'other' END AS reason FROM runs "
            "WHERE function_id = ? AND ended_at IS NULL) AS x GROUP BY status, reason",
            (*(a for r in _HELD for a in (f'%"reason":"{r}"%', r)), function_id),
        ).fetchall()
        statuses: dict[str, int] = {}
        held: dict[str, int] = {}
        for status, reason, n in live:
            statuses[str(status)] = statuses.get(str(status), 0) + int(n)
            if reason is not None:
                held[str(reason)] = held.get(str(reason), 0) + int(n)
        jobs = self._x(
            "SELECT CASE WHEN j.parked_on IS NOT NULL THEN 'parked' "
            "WHEN j.available_at <= ? THEN 'due' "
            "WHEN j.lease_owner IS NOT NULL THEN 'running' ELSE 'scheduled' END AS state, "
            "COUNT(*) FROM runs r JOIN jobs j ON j.run_id = r.run_id "
            "WHERE r.function_id = ? AND r.ended_at IS NULL GROUP BY state",
            (now, function_id),
        ).fetchall()
        return FunctionMetrics(
            count=count,
            created=created,
            ended=ended,
            left=left_at,
            waiting_before=before,
            durations=spreads.get(0, {}),
            delays=spreads.get(1, {}),
            live=statuses,
            held=held,
            jobs={str(state): int(n) for state, n in jobs},
        )

    def _percentiles(self, values: str, args: Sequence[Any]) -> dict[int, dict[int, Spread]]:
        """p50, p95 and max of ``values`` (rows of kind, bucket, value) per kind and bucket,
        and per kind over the window (bucket ``-1``).

        SQLite has no percentile function, and numbering the rows with window functions
        costs more than reading the window's values in order (one pass of the index-backed
        range, a few thousand numbers for a busy function's week): they are read sorted and
        interpolated here as ``percentile_cont`` does.
        """
        rows = self._x(f"SELECT kind, b, v FROM ({values}) AS x ORDER BY kind, b, v", args)
        grouped: dict[tuple[int, int], list[float]] = {}
        for kind, index, v in rows.fetchall():
            grouped.setdefault((int(kind), int(index)), []).append(float(v))
        whole: dict[int, list[float]] = {}
        for (kind, _), sorted_values in grouped.items():
            whole.setdefault(kind, []).extend(sorted_values)
        out: dict[int, dict[int, Spread]] = {}
        for (kind, index), sorted_values in grouped.items():
            out.setdefault(kind, {})[index] = _spread(sorted_values)
        for kind, merged in whole.items():
            merged.sort()  # runs of sorted buckets: timsort merges them in linear time
            out.setdefault(kind, {})[-1] = _spread(merged)
        return out


class PostgresMetricsSql(MetricsSql):
    """Postgres' flavour: ``FLOOR`` and ``percentile_cont``."""

    __slots__ = ()

    @staticmethod
    def _floor(expr: str) -> str:
        return f"FLOOR({expr})"

    def _percentiles(self, values: str, args: Sequence[Any]) -> dict[int, dict[int, Spread]]:
        rows = self._x(
            f"SELECT kind, b, COUNT(*), percentile_cont({P50}) WITHIN GROUP (ORDER BY v), "
            f"percentile_cont({P95}) WITHIN GROUP (ORDER BY v), MAX(v) FROM ({values}) AS x "
            "GROUP BY GROUPING SETS ((kind, b), (kind))",
            args,
        ).fetchall()
        out: dict[int, dict[int, Spread]] = {}
        for kind, index, n, p50, p95, top in rows:
            spread = Spread(int(n), float(p50), float(p95), float(top))
            out.setdefault(int(kind), {})[-1 if index is None else int(index)] = spread
        return out


def _spread(ordered: list[float]) -> Spread:
    """p50, p95 and max of ``ordered`` (ascending, not empty)."""
    return Spread(len(ordered), _interpolate(ordered, P50), _interpolate(ordered, P95), ordered[-1])


def _interpolate(ordered: list[float], p: float) -> float:
    """``percentile_cont``: between the values ranked around ``p * (n - 1)`` (0-based)."""
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (position - low) * (ordered[low + 1] - ordered[low])
