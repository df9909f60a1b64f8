"""Observability fixtures: an in-memory span exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.otel import Otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    telemetry = Otel()
    yield telemetry
    telemetry.provider.shutdown()
