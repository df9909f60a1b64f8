"""OpenTelemetry in the SDK: a span per function call and per step, and propagation.

Optional (``pip install 'stepline[otel]'``): nothing here imports OpenTelemetry unless
a client was given a ``tracer_provider``, or (for ``outgoing_headers``) the package is
installed. The engine's execution request carries a W3C ``traceparent``; the function's
span continues that trace, and each step's span is a child of the function's span and
the current span while the step's code runs, so spans the app makes inside nest there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from stepline._identity import VERSION

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from stepline._execution.call import Outcome, StepSlot
    from stepline._protocol.execution import CallContext


@functools.lru_cache(maxsize=1)
def _propagator() -> Any:
    """The W3C trace-context propagator, or None when OpenTelemetry is not installed."""
    try:
        from opentelemetry.trace.propagation import tracecontext
    except ImportError:
        return None
    return tracecontext.TraceContextTextMapPropagator()


def outgoing_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, for an outgoing request.

    Empty without OpenTelemetry or outside a valid span, so sending events costs nothing
    extra then.
    """
    propagator = _propagator()
    if propagator is None:
        return {}
    carrier: dict[str, str] = {}
    propagator.inject(carrier)
    return carrier


class SdkTracer:
    """Makes the SDK's spans with one ``TracerProvider``.

    Args:
        provider: an OpenTelemetry ``TracerProvider`` (``trace.get_tracer_provider()``
            for the global one).
    """

    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace

        self._api = trace
        self._context = context
        self._tracer = provider.get_tracer("stepline", VERSION)
        self._propagator = _propagator()

    @classmethod
    def create(cls, provider: Any) -> SdkTracer | None:
        """A tracer for ``provider``; None when there is no provider (tracing is off)."""
        return None if provider is None else cls(provider)

    def execution(
        self, headers: Mapping[str, str], ctx: CallContext, function_id: str
    ) -> ExecutionTrace:
        """The spans of one execution request, continuing the trace its headers carry."""
        parent = self._propagator.extract(headers)
        return ExecutionTrace(self, parent, ctx, function_id)


class ExecutionTrace:
    """The spans of one execution request: the function's, and one per step it runs.

    It is the ``ExecutionState``'s step observer (``step_started``/``step_ended``).
    """

    def __init__(
        self, tracer: SdkTracer, parent: Context, ctx: CallContext, function_id: str
    ) -> None:
        self._owner = tracer
        self._parent = parent
        self._current = parent
        self._span: Any = None
        self.attributes: dict[str, Any] = {
            "stepline.run_id": ctx.run_id,
            "stepline.function_id": function_id,
            "stepline.attempt": ctx.attempt,
        }
        self._target = ctx.step_id

    @contextlib.contextmanager
    def function_call(self) -> Iterator[None]:
        """The function's span, current while the function runs in this thread or task."""
        api = self._owner._api
        self._span = span = self._owner._tracer.start_span(
            "stepline.function",
            context=self._parent,
            kind=api.SpanKind.SERVER,
            attributes={**self.attributes, "stepline.step_id": self._target},
        )
        self._current = api.set_span_in_context(span, self._parent)
        token = self._owner._context.attach(self._current)
        try:
            yield
        finally:
            self._owner._context.detach(token)
            span.end()

    def finished(self, outcome: Outcome) -> Outcome:
        """Record how the call ended on the function's span; returns ``outcome``."""
        span = self._span
        if span is None:
            return outcome
        if outcome.ops is not None:
            span.set_attribute("stepline.outcome", "steps")
            span.set_attribute("stepline.ops", [op.user_id for op in outcome.ops])
        elif outcome.error is not None:
            span.set_attribute("stepline.outcome", "error")
            span.record_exception(outcome.error)
            api = self._owner._api
            span.set_status(api.Status(api.StatusCode.ERROR, type(outcome.error).__name__))
        else:
            span.set_attribute("stepline.outcome", "completed")
        return outcome

    def step_started(self, slot: StepSlot) -> object:
        """Start a step's span and make it current; returns what ``step_ended`` needs."""
        api = self._owner._api
        span = self._owner._tracer.start_span(
            "stepline.step",
            context=self._current,
            attributes={
                **self.attributes,
                "stepline.step_id": slot.user_id,
                "stepline.step_hash": slot.hashed_id,
            },
        )
        token = self._owner._context.attach(api.set_span_in_context(span, self._current))
        return span, token

    def step_ended(self, handle: object, error: BaseException | None) -> None:
        """End a step's span (recording the error it raised, if any)."""
        span, token = cast("tuple[Any, Any]", handle)
        self._owner._context.detach(token)
        if error is not None and isinstance(error, Exception):
            span.record_exception(error)
            api = self._owner._api
            span.set_status(api.Status(api.StatusCode.ERROR, type(error).__name__))
        span.end()
