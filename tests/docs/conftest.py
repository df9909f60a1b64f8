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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Sums the blocks the docs tests ran and the fragments they counted (with xdist too)."""
    ran = setup = 0
    fragments: list[str] = []
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == "docs_blocks":
                ran += value["ran"]
                setup += value["setup"]
                fragments += value["fragments"]
    if not ran and not fragments:
        return
    terminalreporter.section("docs blocks")
    terminalreporter.write_line(
        f"{ran} blocks run, {len(fragments)} fragments, {setup} invisible setup blocks"
    )
    for fragment in fragments:
        terminalreporter.write_line(f"  fragment {fragment}")
