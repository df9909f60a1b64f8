"""Fixtures of the ``stepline.testing`` suite."""

from __future__ import annotations

import pytest

# the plugin as users get it through its entry point (this checkout may not be reinstalled)
from stepline.testing.plugin import stepline_env  # noqa: F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
