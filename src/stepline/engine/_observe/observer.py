"""The thin shell between the engine and its metrics, spans and log fields.

The worker calls two hooks (``job_started``, and ``call`` around each SDK call it makes:
the observer watches the call, the worker makes it); everything else is seen by
wrapping the store (``ObservedStore``): each write transaction's ``Tx`` notes into a
``Seen`` it is given the runs it creates and ends and the step results it records,
and once the transaction has committed (never for one that rolled back or was retried)
they are counted and traced. With the observer off the engine holds None and pays one check per job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from stepline import _logs
from stepline._scope import Scope
from stepline._status import RunStatus
from stepline.engine._config import EngineSettings
from stepline.engine._model import EventRecord, Job, Run
from stepline.engine._observe import tracing
from stepline.engine._observe.metrics import EngineMetrics, call_result
from stepline.engine._store import Store, Tx
from stepline.engine._store.faults import StoreUnavailable
from stepline.engine._store.guard import GuardedStore, StoreHealth
from stepline.engine._store.seen import Seen
from stepline.engine._wire import response

if TYPE_CHECKING:
    from stepline.engine._observe.tracing import EngineTracer

T = TypeVar("T")


@dataclasses.dataclass
class WatchedCall:
    """One SDK call as the observer sees it: the headers to send, then the answer."""

    headers: Mapping[str, str]
    started: float = dataclasses.field(default_factory=time.perf_counter)
    seconds: float = 0.0
    raw: response.RawResponse | None = None
    #: the decoded answer, set by the caller
    outcome: response.Outcome | None = None
    #: the call's trace span, if traced
    span: Any = None
    #: the called run's function (its metrics' label)
    function_id: str = ""

    def answered(self, raw: response.RawResponse) -> None:
        """The answer is in: stop the clock."""
        self.seconds = time.perf_counter() - self.started
        self.raw = raw


def unwatched(headers: Mapping[str, str]) -> contextlib.nullcontext[WatchedCall]:
    """What ``Observer.call`` yields, with no observer: the same calls, nothing noted."""
    return contextlib.nullcontext(WatchedCall(headers))


class Observer:
    """Metrics (``metrics``), spans (``tracer``) and log fields of one engine.

    Args:
        metrics: where counts go; None turns metrics off.
        tracer: where spans go; None turns tracing off.
    """

    def __init__(self, *, metrics: EngineMetrics | None, tracer: EngineTracer | None) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self._health: StoreHealth | None = None
        #: the event loop and the SDK's threads (``atomic_blocking``, ``_flow.onthread``)
        #: record into the same metrics: one at a time
        self.lock = threading.Lock()

    @classmethod
    def build(cls, settings: EngineSettings, tracer_provider: Any = None) -> Observer | None:
        """The observer ``settings`` ask for; None when metrics and tracing are both off.

        Tracing is on with a ``tracer_provider``, or with ``settings.tracing`` (the global
        provider, as ``opentelemetry-instrument`` sets it).

        Raises:
            EngineConfigError: tracing is asked for without OpenTelemetry installed.
        """
        tracer = None
        if tracer_provider is not None or settings.tracing:
            tracer = _tracer(tracer_provider)
        metrics = EngineMetrics() if settings.metrics else None
        if metrics is None and tracer is None:
            return None
        return cls(metrics=metrics, tracer=tracer)

    def wrap(self, store: Store) -> Store:
        """``store``, observed (a guarded store's faults counted too)."""
        if isinstance(store, GuardedStore) and self.metrics is not None:
            self._health = store.health
            store.health.listeners.append(self.metrics.record_fault)
        return ObservedStore(store, self)

    # -- hooks --------------------------------------------------------------------------------

    def job_started(self, job: Job) -> None:
        """A leased job starts in its own task: bind its log fields there."""
        _logs.bind(
            {
                "run_id": job.run_id,
                "function_id": None,
                "step_id": job.step_id,
                "attempt": job.attempt,
            }
        )

    def call(
        self, run: Run, job: Job, headers: Mapping[str, str], now: float
    ) -> Scope[WatchedCall]:
        """Watch one SDK call the worker makes: time, trace and count it.

        The worker sends ``WatchedCall.headers`` (they carry the span's trace context),
        calls ``answered`` when the answer is in and sets ``outcome`` once decoded. A call
        the engine gives up on (it is stopping) ends its span as cancelled.
        """
        _logs.bind(
            {
                "run_id": run.run_id,
                "function_id": run.function_id,
                "step_id": job.step_id,
                "attempt": job.attempt,
            }
        )
        if self.metrics is not None and run.status is RunStatus.QUEUED:
            with self.lock:
                self.metrics.record_first_call(run, now)
        span = None
        if self.tracer is not None:
            span, carried = self.tracer.start_call(run, job)
            headers = {**headers, **carried}
        watched = WatchedCall(headers, span=span, function_id=run.function_id)
        return Scope(watched, self._called)

    def _called(self, watched: WatchedCall, raised: BaseException | None) -> bool:
        span, tracer = watched.span, self.tracer
        if raised is not None:  # the engine stopping (drivers answer failures, not raise)
            if span is not None and tracer is not None:
                tracer.end_call(span, status=0, result="cancelled", ops=[])
            return False
        raw, outcome = watched.raw, watched.outcome
        if raw is None or outcome is None:
            return False
        if self.metrics is not None:
            with self.lock:
                result = self.metrics.record_call(
                    watched.function_id, raw, outcome, watched.seconds
                )
        else:
            result = call_result(raw, outcome)
        if span is not None and tracer is not None:
            ops = (
                [op.display_name for op in outcome.ops] if isinstance(outcome, response.Ops) else []
            )
            tracer.end_call(span, status=raw.status, result=result, ops=ops)
        return False

    def received(self, records: Iterable[EventRecord], headers: Mapping[str, str]) -> None:
        """Events arrived with these request headers: keep their trace context."""
        if self.tracer is not None:
            tracing.stamp(records, tracing.carrier(headers))

    async def scrape(self, store: Store, now: float) -> str:
        """``GET /metrics``: read the queue, then render every metric."""
        if self.metrics is None:
            raise LookupError("metrics are turned off (STEPLINE_METRICS=0)")
        if self._health is not None:
            self.metrics.record_health(self._health.degraded, self._health.wal_bytes())
        try:
            summary = await store.read(lambda tx: tx.queue.queue_summary(now))
        except StoreUnavailable:  # the faults are what the scrape must still show
            return self.metrics.render()
        oldest = summary.get("due", (0, None))[1]
        lag = 0.0 if oldest is None else now - oldest
        self.metrics.record_queue({state: count for state, (count, _) in summary.items()}, lag)
        return self.metrics.render()

    # -- committed transactions -----------------------------------------------------------------

    def committed(self, seen: Seen) -> None:
        """Count and trace what a committed transaction did."""
        metrics, tracer = self.metrics, self.tracer
        for run in seen.started:
            if metrics is not None:
                metrics.record_started(run)
        for waiting in seen.holds:
            if metrics is not None:
                metrics.record_hold(waiting)
        for run_id, step in seen.steps:
            owner = seen.runs.get(run_id)
            if owner is None:
                continue
            if metrics is not None:
                metrics.record_step(owner.function_id, step)
            if tracer is not None:
                tracer.step_recorded(owner, step)
        for run_id, before in seen.notices.items():
            owner = seen.runs.get(run_id)
            if metrics is not None and owner is not None and len(owner.notices) > before:
                metrics.record_notices(owner, owner.notices[before:])
        for run in seen.finished:
            if metrics is not None:
                metrics.record_finished(run)
            if tracer is not None:
                tracer.run_ended(run)


def _tracer(provider: Any) -> EngineTracer:
    from stepline.engine._config import EngineConfigError

    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise EngineConfigError(
            "tracing needs OpenTelemetry: pip install 'stepline[otel]'"
        ) from exc
    from stepline.engine._observe.tracing import EngineTracer

    return EngineTracer(provider if provider is not None else trace.get_tracer_provider())


class ObservedStore:
    """A ``Store`` timing every operation and observing every committed write."""

    def __init__(self, store: Store, observer: Observer) -> None:
        self.inner = store
        self._observer = observer
        self._lock = observer.lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # e.g. SqliteStore.suspend

    async def open(self) -> None:
        """Open the store."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the store."""
        await self.inner.close()

    async def migrate(self) -> tuple[int, int]:
        """Migrate the store."""
        return await self.inner.migrate()

    def subscribe(self, notify: Callable[[str], None]) -> None:
        """Subscribe to other nodes' commits."""
        self.inner.subscribe(notify)

    def subscribe_streams(self, notify: Callable[[str], None]) -> None:
        """Subscribe to other nodes' stream publishes."""
        self.inner.subscribe_streams(notify)

    async def atomic(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        """Run ``work`` in a write transaction; count and trace what it did once committed."""
        holder: list[Seen] = []

        def observed(tx: Tx) -> T:
            tx.seen = seen = Seen()
            holder[:] = [seen]  # a retried attempt starts afresh
            return work(tx)

        result = await self._timed("atomic", self.inner.atomic(observed, small=small))
        if holder:
            with self._lock:
                self._observer.committed(holder[0])
        return result

    def atomic_blocking(self, work: Callable[[Tx], T]) -> T:
        """``atomic`` from a thread that may block: counted and traced the same way."""
        holder: list[Seen] = []

        def observed(tx: Tx) -> T:
            tx.seen = seen = Seen()
            holder[:] = [seen]
            return work(tx)

        started, failed = time.perf_counter(), True  # ``_timed_blocking``, inline: each step
        try:
            result = self.inner.atomic_blocking(observed)
            failed = False
        finally:
            self._record("atomic", started, failed=failed)
        if holder:
            with self._lock:
                self._observer.committed(holder[0])
        return result

    def _record(self, kind: str, started: float, *, failed: bool) -> None:
        metrics = self._observer.metrics
        if metrics is not None:
            with self._lock:
                metrics.record_store(kind, time.perf_counter() - started, failed=failed)

    async def read(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        """Run ``work`` on a read snapshot, timed."""
        return await self._timed("read", self.inner.read(work, small=small))

    def read_blocking(self, work: Callable[[Tx], T]) -> T:
        """``read`` from a thread that may block, timed."""
        return self._timed_blocking("read", functools.partial(self.inner.read_blocking, work))

    def _timed_blocking(self, kind: str, operation: Callable[[], T]) -> T:
        started, failed = time.perf_counter(), True
        try:
            result = operation()
            failed = False
        finally:
            self._record(kind, started, failed=failed)
        return result

    async def _timed(self, kind: str, operation: Awaitable[T]) -> T:
        if self._observer.metrics is None:
            return await operation
        started = time.perf_counter()
        try:
            result = await operation
        except Exception:
            self._record(kind, started, failed=True)
            raise
        self._record(kind, started, failed=False)
        return result
