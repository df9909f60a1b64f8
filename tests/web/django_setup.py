"""Django for the web-kit tests: configured once per process, one URLconf to mount into.

``tests/adapters/harness_django`` owns the configuration (so these tests and the adapter
tests share it in any order). Modules testing the Django kit import ``_django`` (an
autouse fixture: configured before each test, the URLconf emptied after) and ``mount``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest


def harness() -> ModuleType:
    """``tests/adapters/harness_django``: configures Django once, owns the URLconf."""
    return importlib.import_module("tests.adapters.harness_django")


@pytest.fixture(autouse=True)
def _django() -> Iterator[None]:
    harness().configure()
    yield
    harness().mount()


def mount(*patterns: Any) -> None:
    harness().mount(*patterns)
