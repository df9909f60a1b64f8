"""Prometheus metrics without a dependency: counters, gauges, histograms and their text.

Pure bookkeeping: nothing here reads a clock or does I/O. ``MetricRegistry.render`` writes the
text exposition format (version 0.0.4) that Prometheus scrapes. Updates are plain dict
operations; the engine makes them from its event loop thread only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

#: ``Content-Type`` of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds, from a fast in-process call to a slow SDK call.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds, for things that wait on purpose (runs, sleeps, flow control).
LONG_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)

Labels = tuple[str, ...]


class _Family:
    """One metric name with its help text, kind and label names."""

    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)

    def _check(self, values: Labels) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")

    def header(self) -> list[str]:
        """The ``# HELP`` and ``# TYPE`` lines."""
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        """The sample lines (without the header)."""
        raise NotImplementedError


class Counter(_Family):
    """A value that only goes up (name it ``*_total``)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` (default 1) to the series with these label values."""
        if labels not in self._values:
            self._check(labels)
            self._values[labels] = 0.0
        self._values[labels] += amount

    def value(self, *labels: str) -> float:
        """The series' current value (0 if never incremented)."""
        return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        """One line per series."""
        return [
            f"{self.name}{_labels(self.labels, key)} {_number(value)}"
            for key, value in sorted(self._values.items())
        ]


class Gauge(_Family):
    """A value that is set, not accumulated (queue depth, lag)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        """Set the series with these label values."""
        if labels not in self._values:
            self._check(labels)
        self._values[labels] = value

    def value(self, *labels: str) -> float:
        """The series' current value (0 if never set)."""
        return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        """One line per series."""
        return [
            f"{self.name}{_labels(self.labels, key)} {_number(value)}"
            for key, value in sorted(self._values.items())
        ]


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0


class Histogram(_Family):
    """Observations counted into buckets (``le`` upper bounds), with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds:
            raise ValueError(f"{name} needs at least one finite bucket")
        self.buckets = tuple(bounds)
        self._series: dict[Labels, _Series] = {}

    def observe(self, value: float, *labels: str) -> None:
        """Count one observation into the series with these label values."""
        series = self._series.get(labels)
        if series is None:
            self._check(labels)
            series = self._series[labels] = _Series(len(self.buckets) + 1)
        series.counts[bisect.bisect_left(self.buckets, value)] += 1
        series.sum += value

    def observe_many(self, value: float, times: int, *labels: str) -> None:
        """``observe(value, *labels)`` ``times`` times, in one update."""
        series = self._series.get(labels)
        if series is None:
            self._check(labels)
            series = self._series[labels] = _Series(len(self.buckets) + 1)
        series.counts[bisect.bisect_left(self.buckets, value)] += times
        series.sum += value * times

    def count(self, *labels: str) -> int:
        """How many observations the series has (0 if none)."""
        series = self._series.get(labels)
        return 0 if series is None else sum(series.counts)

    def total(self, *labels: str) -> float:
        """The sum of the series' observations."""
        series = self._series.get(labels)
        return 0.0 if series is None else series.sum

    def lines(self) -> list[str]:
        """Cumulative ``_bucket`` lines, then ``_sum`` and ``_count``, per series."""
        out: list[str] = []
        bounds = [*(_number(b) for b in self.buckets), "+Inf"]
        for key, series in sorted(self._series.items()):
            running = 0
            for bound, count in zip(bounds, series.counts, strict=True):
                running += count
                labels = _labels((*self.labels, "le"), (*key, bound))
                out.append(f"{self.name}_bucket{labels} {running}")
            plain = _labels(self.labels, key)
            out.append(f"{self.name}_sum{plain} {_number(series.sum)}")
            out.append(f"{self.name}_count{plain} {running}")
        return out


class MetricRegistry:
    """The metric families one engine exposes, rendered in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _add(self, family: _Family) -> None:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} is already registered")
        self._families[family.name] = family

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        """Register and return a counter."""
        family = Counter(name, help, labels)
        self._add(family)
        return family

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        """Register and return a gauge."""
        family = Gauge(name, help, labels)
        self._add(family)
        return family

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """Register and return a histogram."""
        family = Histogram(name, help, labels, buckets)
        self._add(family)
        return family

    def render(self) -> str:
        """The text exposition of every family (families with no series show only headers)."""
        lines: list[str] = []
        for family in self._families.values():
            lines.extend(family.header())
            lines.extend(family.lines())
        return "\n".join(lines) + "\n"


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = [f'{n}="{_escape_value(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
