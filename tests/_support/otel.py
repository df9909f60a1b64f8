"""OpenTelemetry spans kept in memory, for the tracing tests."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests._support.polling import wait_until


class Otel:
    """A tracer provider whose spans end up in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 20.0) -> list[ReadableSpan]:
        def missing() -> str:
            return f"{count} {name!r} span(s) to end; have {sorted(s.name for s in self.spans())}"

        wait_until(lambda: len(self.spans(name)) >= count, timeout=timeout, message=missing)
        return self.spans(name)
