"""The engine's metrics: what is counted and how outcomes map to label values. Pure.

``EngineMetrics`` owns the families ``GET /metrics`` shows; the ``record_*`` methods take
plain values (durations, records, outcomes) so that the shell that measures them
(``_observer``) stays thin and the mapping is testable without an engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from stepline._protocol import headers
from stepline._protocol.opcodes import Opcode
from stepline.engine._model import Run, StepRecord
from stepline.engine._observe.prometheus import LONG_BUCKETS, MetricRegistry
from stepline.engine._wire.response import Completed, Failed, Ops, Outcome, RawResponse

_STEP_OPS = frozenset({Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_ERROR, Opcode.STEP_FAILED})
#: Ops whose code runs inside an SDK call; their latency is the call's.
EXECUTED_OPS = frozenset(op.value for op in _STEP_OPS)
_FAILURE_NAMES = frozenset({"NonSDKResponse", "InvalidResponse", "StreamError"})
#: ops that carry the function's result (a checkpointed call's, or ``run_on``'s last step)
_ENDS = frozenset({Opcode.RUN_COMPLETE, Opcode.SYNC_RUN_COMPLETE})
#: The states ``stepline_queue_jobs`` reports (``Tx.queue.queue_summary``).
QUEUE_STATES = ("due", "running", "parked", "scheduled")


class EngineMetrics:
    """Counters, gauges and histograms of one engine, rendered by ``render``."""

    def __init__(self) -> None:
        r = self.registry = MetricRegistry()
        self.runs_started = r.counter(
            "stepline_runs_started_total", "Runs created, per function.", ["function"]
        )
        self.runs_finished = r.counter(
            "stepline_runs_finished_total",
            "Runs that ended, per function and final status (completed, failed, cancelled).",
            ["function", "status"],
        )
        self.run_duration = r.histogram(
            "stepline_run_duration_seconds",
            "Time from a run's creation to its end.",
            ["function", "status"],
            LONG_BUCKETS,
        )
        self.step_duration = r.histogram(
            "stepline_step_duration_seconds",
            "Step latency: for steps run by the SDK, their share of the call that ran them; "
            "for sleeps, waits, invokes and gateway calls, the time until their result.",
            ["function", "op"],
        )
        self.sdk_calls = r.counter(
            "stepline_sdk_calls_total",
            "Execution requests sent to apps, per function and result "
            "(steps, completed, function_error, sdk_error, unreachable).",
            ["function", "result"],
        )
        self.sdk_call_errors = r.counter(
            "stepline_sdk_call_errors_total",
            "Execution requests that got no usable answer from the SDK "
            "(unreachable, or not a protocol answer).",
            ["function", "reason"],
        )
        self.sdk_call_duration = r.histogram(
            "stepline_sdk_call_duration_seconds",
            "Round trip of one execution request to an app.",
            ["function"],
        )
        self.flow_holds = r.counter(
            "stepline_flow_control_holds_total",
            "Runs or calls flow control held back, per reason "
            "(throttled, concurrency, debounced, batched, priority).",
            ["reason"],
        )
        self.flow_delay = r.histogram(
            "stepline_flow_control_delay_seconds",
            "Time from a run's creation to its first call, per function and the reason "
            "flow control gave for holding it ('none' when it was not held).",
            ["function", "reason"],
            LONG_BUCKETS,
        )
        self.queue_jobs = r.gauge(
            "stepline_queue_jobs",
            "Jobs in the queue at scrape time: due (ready to run), running (leased), "
            "parked (waiting for a concurrency slot), scheduled (due later: sleeps, "
            "retries, timeouts, crons).",
            ["state"],
        )
        self.queue_lag = r.gauge(
            "stepline_queue_lag_seconds",
            "Age of the oldest due job at scrape time (0 when nothing is due).",
        )
        self.store_latency = r.histogram(
            "stepline_store_seconds",
            "Store operations, including the wait for a connection: atomic (write "
            "transactions) and read.",
            ["kind"],
        )
        self.store_errors = r.counter(
            "stepline_store_errors_total", "Store operations that raised.", ["kind"]
        )
        self.store_faults = r.counter(
            "stepline_store_faults_total",
            "Store operations the database refused for a known reason, per cause (locked, "
            "disk full, read-only, I/O error, unreachable, schema missing); answered 503.",
            ["cause"],
        )
        self.store_degraded = r.gauge(
            "stepline_store_degraded",
            "1 while the last write failed with a database fault and none has succeeded "
            "since (what /ready answers 503 for), else 0.",
        )
        self.schema_too_new = r.gauge(
            "stepline_schema_too_new",
            "1 once the database's schema version is past the newest this engine knows "
            "(another node migrated it): it leases no more work and /ready answers 503 "
            "until it is restarted on a release that knows the schema; else 0.",
        )
        self.schema_too_new.set(0.0)
        self.sqlite_wal_bytes = r.gauge(
            "stepline_sqlite_wal_bytes",
            "Size of the SQLite write-ahead log file at scrape time (a long-lived reader "
            "makes it grow; see docs/operations.md). Absent on Postgres.",
        )
        self.nondeterminism = r.counter(
            "stepline_nondeterminism_total",
            "Non-determinism notices recorded on runs (a replay that no longer matched "
            "the recorded history), per function; each divergence is counted once per run.",
            ["function"],
        )
        self.retention_removed = r.counter(
            "stepline_retention_removed_total",
            "Rows the retention sweeper deleted, per table (runs, steps, events, ...).",
            ["table"],
        )
        self.stream_messages = r.counter(
            "stepline_stream_messages_total",
            "Messages runs published to their streams (a durable one once), per function.",
            ["function"],
        )

    def render(self) -> str:
        """The Prometheus text exposition."""
        return self.registry.render()

    # -- runs and steps (from committed transactions) ------------------------------------

    def record_started(self, run: Run) -> None:
        """A run was created."""
        self.runs_started.inc(run.function_id)
        if run.waiting:
            self.record_hold(run.waiting)

    def record_notices(self, run: Run, notices: list[dict[str, object]]) -> None:
        """A transaction added ``notices`` to ``run``."""
        for notice in notices:
            if notice.get("kind") == "nondeterminism":
                self.nondeterminism.inc(run.function_id)

    def record_finished(self, run: Run) -> None:
        """A run reached a terminal status."""
        status = run.status.value.lower()
        self.runs_finished.inc(run.function_id, status)
        if run.ended_at is not None:
            self.run_duration.observe(
                max(0.0, run.ended_at - run.created_at), run.function_id, status
            )

    def record_step(self, function_id: str, step: StepRecord) -> None:
        """A step the engine waited on (sleep, wait, invoke, gateway) got its result."""
        if step.op in EXECUTED_OPS or step.started_at is None or step.ended_at is None:
            return  # executed steps are timed by the call that ran them
        self.step_duration.observe(max(0.0, step.ended_at - step.started_at), function_id, step.op)

    def record_hold(self, waiting: Mapping[str, object]) -> None:
        """Flow control held a run or a call back."""
        self.flow_holds.inc(str(waiting.get("reason") or "unknown"))

    def record_published(self, function_id: str, count: int) -> None:
        """A run of ``function_id`` published ``count`` new messages to its stream."""
        self.stream_messages.inc(function_id, amount=float(count))

    # -- SDK calls (measured by the worker) -------------------------------------------------

    def record_first_call(self, run: Run, now: float) -> None:
        """A queued run's first call is being made: how long flow control held it."""
        reason = str((run.waiting or {}).get("reason") or "none")
        self.flow_delay.observe(max(0.0, now - run.created_at), run.function_id, reason)

    def record_call(
        self, function_id: str, raw: RawResponse, outcome: Outcome, seconds: float
    ) -> str:
        """One execution request's answer; returns its result label."""
        result = call_result(raw, outcome)
        self.sdk_calls.inc(function_id, result)
        self.sdk_call_duration.observe(seconds, function_id)
        if result in ("unreachable", "sdk_error"):
            self.sdk_call_errors.inc(function_id, result)
        if isinstance(outcome, Ops):
            executed: dict[Opcode, int] = {}
            for op in outcome.ops:
                if op.op in _STEP_OPS:
                    executed[op.op] = executed.get(op.op, 0) + 1
            share = seconds / max(sum(executed.values()), 1)  # each step's part of the call
            for opcode, times in executed.items():
                self.step_duration.observe_many(share, times, function_id, opcode.wire)
        return result

    # -- queue and store ------------------------------------------------------------------

    def record_queue(self, counts: Mapping[str, int], lag: float) -> None:
        """The queue as a scrape finds it: jobs per state, and the oldest due job's age."""
        for state in QUEUE_STATES:
            self.queue_jobs.set(counts.get(state, 0), state)
        self.queue_lag.set(max(0.0, lag))

    def record_store(self, kind: str, seconds: float, *, failed: bool) -> None:
        """One store operation."""
        self.store_latency.observe(seconds, kind)
        if failed:
            self.store_errors.inc(kind)

    def record_fault(self, cause: str) -> None:
        """The database refused an operation (``_store.faults``)."""
        self.store_faults.inc(cause)

    def record_health(self, degraded: bool, wal_bytes: int | None) -> None:
        """The store's condition at scrape time."""
        self.store_degraded.set(1.0 if degraded else 0.0)
        if wal_bytes is not None:
            self.sqlite_wal_bytes.set(float(wal_bytes))

    def record_schema_too_new(self, found: int, known: int) -> None:
        """The database's schema moved past this engine's (``_worker/schema_watch``)."""
        self.schema_too_new.set(1.0 if found > known else 0.0)

    def record_removed(self, removed: Mapping[str, int]) -> None:
        """A retention batch deleted these rows, per table."""
        for table, rows in removed.items():
            self.retention_removed.inc(table, amount=float(rows))


def call_result(raw: RawResponse, outcome: Outcome) -> str:
    """What an execution request came to, as a label value.

    ``steps`` (206), ``completed`` (the function returned: a 200, or a 206 whose ops end
    with its result), ``function_error`` (the function or a step raised: the SDK answered
    with an error), ``sdk_error`` (an answer, but not one from an SDK or not in the
    protocol), ``unreachable`` (no answer: refused, reset, timed out).
    """
    if raw.error is not None:
        return "unreachable"
    if isinstance(outcome, Completed):
        return "completed"
    if isinstance(outcome, Ops):
        return "steps" if _ENDS.isdisjoint([op.op for op in outcome.ops]) else "completed"
    assert isinstance(outcome, Failed)
    if outcome.error.get("name") in _FAILURE_NAMES:
        return "sdk_error"
    sdk = any(k.lower() == headers.SDK for k in raw.headers)
    return "function_error" if sdk else "sdk_error"
