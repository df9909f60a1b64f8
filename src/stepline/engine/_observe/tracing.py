"""OpenTelemetry spans of the engine: one per run, per SDK call and per recorded step.

A run outlives any one request, and may outlive the process that started it, so its
span cannot stay open while it runs. Instead its ids are derived from the run id
(``run_span_ids``), the call and step spans made while it runs name that span as their
parent, and the run span itself is written when the run ends, with the times the store
kept and the derived ids. The trace is the one of the request that sent the triggering
event: its W3C ``traceparent`` travels with the event (``stamp``) and so with the run.

Only ``EngineTracer`` touches OpenTelemetry (``pip install 'stepline[otel]'``); the id
and carrier helpers are pure.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from stepline._identity import VERSION
from stepline._status import RunStatus
from stepline.engine._model import EventRecord, Job, Run, StepRecord, StepStatus

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

#: Where a stored event keeps the trace context it was sent with.
TRACE_KEY = "trace"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SAMPLED = 0x01


# -- pure helpers ---------------------------------------------------------------------------


def parse_traceparent(text: object) -> tuple[int, int, int] | None:
    """``(trace id, span id, flags)`` of a version-00 W3C ``traceparent``; None if invalid."""
    if not isinstance(text, str):
        return None
    found = _TRACEPARENT.match(text.strip().lower())
    if found is None:
        return None
    trace_id, span_id, flags = (int(part, 16) for part in found.groups())
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, flags


def carrier(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace context among request headers (names compared lower-case); {} if none."""
    lowered = {k.lower(): v for k, v in headers.items() if k.lower() in (TRACEPARENT, TRACESTATE)}
    if parse_traceparent(lowered.get(TRACEPARENT)) is None:
        return {}
    return lowered


def stamp(records: Iterable[EventRecord], context: Mapping[str, str]) -> None:
    """Keep a sender's trace context with the events it sent (``payload["trace"]``)."""
    if not context:
        return
    for record in records:
        record.payload[TRACE_KEY] = dict(context)


def sender_of(run: Run) -> dict[str, str]:
    """The trace context the run's triggering event was sent with ({} if none)."""
    trace = run.events[0].get(TRACE_KEY) if run.events else None
    if not isinstance(trace, dict):
        return {}
    return {k: v for k, v in trace.items() if isinstance(k, str) and isinstance(v, str)}


def run_span_ids(run_id: str) -> tuple[int, int]:
    """``(trace id, span id)`` derived from a run id; the trace id is used for root runs."""
    digest = hashlib.sha256(run_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def run_trace(run: Run) -> tuple[int, int, int]:
    """``(trace id, run span id, flags)`` of a run: the sender's trace, or its own."""
    trace_id, span_id = run_span_ids(run.run_id)
    sent = parse_traceparent(sender_of(run).get(TRACEPARENT))
    if sent is None:
        return trace_id, span_id, _SAMPLED
    return sent[0], span_id, sent[2]


def child_of(run: Run) -> dict[str, str]:
    """The trace context under the run's own span (what ``step.invoke`` passes on)."""
    trace_id, span_id, flags = run_trace(run)
    return {TRACEPARENT: f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}


def nanos(seconds: float) -> int:
    """Epoch seconds as the nanoseconds OpenTelemetry takes."""
    return int(seconds * 1_000_000_000)


# -- OpenTelemetry ------------------------------------------------------------------------


class _PinnedIds:
    """Wraps a tracer's id generator so that the next span can get ids chosen in advance."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._local = threading.local()

    def pin(self, trace_id: int | None, span_id: int) -> None:
        self._local.trace_id, self._local.span_id = trace_id, span_id

    def clear(self) -> None:
        self._local.trace_id = self._local.span_id = None

    def generate_span_id(self) -> int:
        pinned: int | None = getattr(self._local, "span_id", None)
        if pinned is not None:
            self._local.span_id = None
            return pinned
        return int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        pinned: int | None = getattr(self._local, "trace_id", None)
        if pinned is not None:
            self._local.trace_id = None
            return pinned
        return int(self.inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        check = getattr(self.inner, "is_trace_id_random", None)
        return bool(check()) if check is not None else False


def _pins(tracer: object) -> _PinnedIds | None:
    """Pin support on an OpenTelemetry SDK tracer (None for API-only or vendor tracers)."""
    inner = getattr(tracer, "id_generator", None)
    if inner is None:
        return None
    if isinstance(inner, _PinnedIds):
        return inner
    pinned = _PinnedIds(inner)
    tracer.id_generator = pinned  # type: ignore[attr-defined]
    return pinned


class EngineTracer:
    """Makes the engine's spans with one ``TracerProvider``.

    Without id pinning (a tracer that is not the OpenTelemetry SDK's) no run span is
    written and call and step spans hang directly under the sender's span.
    """

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation import tracecontext

        self._api = trace
        self._propagator = tracecontext.TraceContextTextMapPropagator()
        self._tracer = provider.get_tracer("stepline.engine", VERSION)
        self._pinned = _pins(self._tracer)

    def _sender_context(self, run: Run) -> Context:
        return self._propagator.extract(sender_of(run))

    def run_context(self, run: Run) -> Context:
        """A context whose current span is the run's span (which is written at its end)."""
        if self._pinned is None:
            return self._sender_context(run)
        trace_id, span_id, flags = run_trace(run)
        span_context = self._api.SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=self._api.TraceFlags(flags)
        )
        return self._api.set_span_in_context(self._api.NonRecordingSpan(span_context))

    def start_call(self, run: Run, job: Job) -> tuple[Span, dict[str, str]]:
        """Start the span of one SDK call; returns it and the headers that carry it."""
        span = self._tracer.start_span(
            "stepline.engine.call",
            context=self.run_context(run),
            kind=self._api.SpanKind.CLIENT,
            attributes={
                "stepline.run_id": run.run_id,
                "stepline.function_id": run.function_id,
                "stepline.app_id": run.app_id,
                "stepline.step_id": job.step_id or "step",
                "stepline.attempt": job.attempt,
            },
        )
        headers: dict[str, str] = {}
        self._propagator.inject(headers, context=self._api.set_span_in_context(span))
        return span, headers

    def end_call(self, span: Span, *, status: int, result: str, ops: list[str]) -> None:
        """End a call's span with what the SDK answered."""
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("stepline.call.result", result)
        if ops:
            span.set_attribute("stepline.ops", ops)
        if result not in ("steps", "completed"):
            span.set_status(self._api.Status(self._api.StatusCode.ERROR, result))
        span.end()

    def run_ended(self, run: Run) -> None:
        """Write the span of a run that ended (creation to end, with its derived ids)."""
        if self._pinned is None or run.ended_at is None:
            return
        trace_id, span_id, _ = run_trace(run)
        parent = self._sender_context(run)
        rooted = not sender_of(run)
        self._pinned.pin(trace_id if rooted else None, span_id)
        try:
            span = self._tracer.start_span(
                "stepline.run",
                context=parent,
                kind=self._api.SpanKind.CONSUMER,
                attributes=_run_attributes(run),
                start_time=nanos(run.created_at),
            )
        finally:
            self._pinned.clear()
        if run.status is RunStatus.FAILED:
            span.set_status(self._api.Status(self._api.StatusCode.ERROR, "run failed"))
        span.end(end_time=nanos(max(run.ended_at, run.created_at)))

    def step_recorded(self, run: Run, step: StepRecord) -> None:
        """Write the span of a step whose result the engine just recorded."""
        start = step.started_at if step.started_at is not None else step.ended_at
        if start is None:
            return
        end = step.ended_at if step.ended_at is not None else start
        span = self._tracer.start_span(
            "stepline.engine.step",
            context=self.run_context(run),
            attributes={
                "stepline.run_id": run.run_id,
                "stepline.function_id": run.function_id,
                "stepline.step_id": step.step_id,
                "stepline.step_name": step.name,
                "stepline.op": step.op,
                "stepline.step.status": step.status.value,
                "stepline.step.attempts": step.attempts,
            },
            start_time=nanos(start),
        )
        if step.status is StepStatus.FAILED:
            span.set_status(self._api.Status(self._api.StatusCode.ERROR, "step failed"))
        span.end(end_time=nanos(max(end, start)))


def _run_attributes(run: Run) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "stepline.run_id": run.run_id,
        "stepline.function_id": run.function_id,
        "stepline.app_id": run.app_id,
        "stepline.run.status": run.status.value,
        "stepline.event.name": str(run.events[0].get("name", "")) if run.events else "",
    }
    if run.event_ids:
        attributes["stepline.event.id"] = run.event_ids[0]
    if run.cancel_reason:
        attributes["stepline.run.cancel_reason"] = run.cancel_reason
    if run.parent_run_id:
        attributes["stepline.parent_run_id"] = run.parent_run_id
    return attributes
