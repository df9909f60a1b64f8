"""The Connect suite's shared stack: one engine and one official worker per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Node, Workers, node, workers


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Workers]]:
    """A dev-mode engine with the worker ``w1`` connected."""
    tmp = tmp_path_factory.mktemp("connect")
    with node(str(tmp / "e.db")) as engine, workers(tmp) as found:
        found.start(engine, "w1")
        yield engine, found
