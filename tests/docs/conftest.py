"""The docs tier: every code block of README.md and docs/*.md (see test_blocks.py)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "docs: runs the Python, shell and console blocks of README.md and docs/*.md "
        "(in-process engines on a virtual clock, the stepline CLI as subprocesses, "
        "loopback only; no database server, no network)",
    )
